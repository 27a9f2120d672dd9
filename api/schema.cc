// SchemaRegistry: loads the compiled-in schema documents (schema_v1alpha1.cc),
// and validates, defaults and prunes objects against them with the rules and
// messages of Kubernetes' CRD handling (apiextensions-apiserver on top of
// kube-openapi's validator), so kubectl users see errors they already know.
#include "api/schema.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <string>
#include <utility>

namespace corral::api {

namespace schema_data {
// Defined in schema_v1alpha1.cc.
std::string_view Definitions();
std::vector<std::string_view> Resources();
}  // namespace schema_data

using json = nlohmann::json;

// Every `pattern` of every schema, compiled once (std::regex construction is
// slow; matching a const regex is thread-safe).
using PatternMap = std::map<std::string, std::regex, std::less<>>;
constexpr size_t kMaxPatternInput = 1024;

struct SchemaRegistry::Impl {
  std::vector<ResourceInfo> resources;
  std::map<std::string, json, std::less<>> schemas;  // kind -> resolved structural schema
  store::KindRegistry kinds;
  PatternMap patterns;
};

namespace {

// ---------------------------------------------------------------- loading --

// A defect in the compiled-in schema is a programming error that every test
// run hits at once; there is no caller that could act on it.
[[noreturn]] void SchemaDefect(const std::string& what) {
  std::fprintf(stderr, "corral: built-in API schema is broken: %s\n", what.c_str());
  std::abort();
}

// Replaces every {"$ref": "Name", ...} by a copy of definitions[Name] with the
// node's other keys laid over it, recursively.
json Resolve(const json& node, const json& defs, int depth = 0) {
  if (depth > 32) SchemaDefect("$ref nesting deeper than 32 (a cycle?)");
  if (node.is_array()) {
    json out = json::array();
    for (const auto& v : node) out.push_back(Resolve(v, defs, depth));
    return out;
  }
  if (!node.is_object()) return node;
  json out = json::object();
  if (auto ref = node.find("$ref"); ref != node.end()) {
    if (!ref->is_string() || !defs.contains(ref->get<std::string>())) {
      SchemaDefect("unknown $ref " + ref->dump());
    }
    out = Resolve(defs.at(ref->get<std::string>()), defs, depth + 1);
  }
  for (const auto& [key, value] : node.items()) {
    if (key == "$ref") continue;
    if (key == "properties") {
      // A map of field name -> schema (a field may be named like a keyword).
      json props = json::object();
      for (const auto& [name, sub] : value.items()) props[name] = Resolve(sub, defs, depth);
      out[key] = std::move(props);
    } else if (key == "items" || key == "additionalProperties") {
      out[key] = Resolve(value, defs, depth);
    } else {
      // Keywords whose values are not schemas ("default", "enum", "required", ...).
      out[key] = value;
    }
  }
  return out;
}

void CollectPatterns(const json& schema, PatternMap& out) {
  if (!schema.is_object()) return;
  if (auto p = schema.find("pattern"); p != schema.end() && p->is_string()) {
    const std::string& text = p->get_ref<const std::string&>();
    if (!out.contains(text)) {
      try {
        out.emplace(text, std::regex(text, std::regex::ECMAScript));
      } catch (const std::regex_error& e) {
        SchemaDefect("pattern " + text + ": " + e.what());
      }
    }
  }
  if (auto props = schema.find("properties"); props != schema.end()) {
    for (const auto& [name, sub] : props->items()) CollectPatterns(sub, out);
  }
  if (auto items = schema.find("items"); items != schema.end()) CollectPatterns(*items, out);
  if (auto ap = schema.find("additionalProperties"); ap != schema.end() && ap->is_object()) {
    CollectPatterns(*ap, out);
  }
}

std::vector<std::string> Strings(const json& doc, const char* key) {
  std::vector<std::string> out;
  if (auto it = doc.find(key); it != doc.end()) {
    for (const auto& v : *it) out.push_back(v.get<std::string>());
  }
  return out;
}

// ------------------------------------------------------------- validation --

std::string Child(const std::string& path, std::string_view name) {
  return path.empty() ? std::string(name) : path + "." + std::string(name);
}
std::string Index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}
std::string Key(const std::string& path, std::string_view key) {
  return path + "[" + std::string(key) + "]";
}

// The JSON type name kube-openapi reports for a value.
std::string TypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "object";
    case json::value_t::array: return "array";
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    default: return "unknown";
  }
}

// A value as k8s.io/apimachinery/pkg/util/validation/field.Error prints it:
// strings quoted, numbers and booleans bare, null as "null", anything else as JSON.
std::string FormatValue(const json& v) { return v.is_null() ? "\"null\"" : v.dump(); }

bool IsInteger(const json& v) { return v.is_number_integer() || v.is_number_unsigned(); }

bool TypeMatches(const std::string& type, const json& v) {
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  if (type == "integer") return IsInteger(v);
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_boolean();
  return true;
}

bool Nullable(const json& schema) {
  auto it = schema.find("nullable");
  return it != schema.end() && it->is_boolean() && it->get<bool>();
}

bool PreservesUnknown(const json& schema) {
  auto it = schema.find("x-kubernetes-preserve-unknown-fields");
  return it != schema.end() && it->is_boolean() && it->get<bool>();
}

bool IntOrString(const json& schema) {
  auto it = schema.find("x-kubernetes-int-or-string");
  return it != schema.end() && it->is_boolean() && it->get<bool>();
}

// Number of Unicode code points (kube-openapi's min/maxLength count runes).
size_t RuneCount(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

// RFC 3339 date-time, as strfmt's "date-time" accepts it.
bool IsDateTime(const std::string& s) {
  // libstdc++'s regex recurses per character: never feed it long input.
  if (s.size() > 64) return false;
  static const std::regex kDateTime(
      R"(^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$)");
  return std::regex_match(s, kDateTime);
}

class Validator {
 public:
  Validator(const PatternMap& patterns, ValidationResult& out) : patterns_(patterns), out_(out) {}

  void Walk(const json& schema, const json& value, const std::string& path) {
    const std::string name = path.empty() ? "body" : path;
    if (value.is_null()) {
      if (Nullable(schema)) return;
      if (IntOrString(schema)) {
        TypeError(path, name, "integer or string", value);
      } else if (auto t = schema.find("type"); t != schema.end()) {
        TypeError(path, name, t->get<std::string>(), value);
      }
      return;
    }
    if (IntOrString(schema)) {
      if (!IsInteger(value) && !value.is_string()) {
        TypeError(path, name, "integer or string", value);
        return;
      }
    } else if (auto t = schema.find("type"); t != schema.end()) {
      const std::string& type = t->get_ref<const std::string&>();
      if (!TypeMatches(type, value)) {
        TypeError(path, name, type, value);
        return;
      }
    }

    if (auto e = schema.find("enum"); e != schema.end()) {
      if (std::find(e->begin(), e->end(), value) == e->end()) {
        std::string allowed;
        for (const auto& a : *e) {
          if (!allowed.empty()) allowed += ", ";
          allowed += a.dump();
        }
        Add(path, "Unsupported value: " + FormatValue(value) + ": supported values: " + allowed,
            "FieldValueNotSupported");
        return;
      }
    }

    if (value.is_number()) CheckNumber(schema, value, path, name);
    if (value.is_string()) CheckString(schema, value.get_ref<const std::string&>(), path, name);
    if (value.is_array()) CheckArray(schema, value, path, name);
    if (value.is_object()) CheckObject(schema, value, path);
  }

 private:
  void Add(const std::string& path, std::string message, std::string reason) {
    out_.errors.push_back({path, std::move(message), std::move(reason)});
  }
  void Invalid(const std::string& path, const json& value, const std::string& detail) {
    Add(path, "Invalid value: " + FormatValue(value) + ": " + detail, "FieldValueInvalid");
  }
  // kube-openapi reports the actual type as the value: `Invalid value:
  // "string": spec.replicas in body must be of type integer: "string"`.
  void TypeError(const std::string& path, const std::string& name, const std::string& want,
                 const json& value) {
    const std::string got = "\"" + TypeName(value) + "\"";
    Add(path,
        "Invalid value: " + got + ": " + name + " in body must be of type " + want + ": " + got,
        "FieldValueTypeInvalid");
  }

  void CheckNumber(const json& schema, const json& value, const std::string& path,
                   const std::string& name) {
    const double v = value.get<double>();
    if (auto m = schema.find("minimum"); m != schema.end()) {
      const bool exclusive = schema.value("exclusiveMinimum", false);
      const double min = m->get<double>();
      if (exclusive ? !(v > min) : !(v >= min)) {
        Invalid(path, value,
                name + " in body should be greater than " + (exclusive ? "" : "or equal to ") +
                    m->dump());
      }
    }
    if (auto m = schema.find("maximum"); m != schema.end()) {
      const bool exclusive = schema.value("exclusiveMaximum", false);
      const double max = m->get<double>();
      if (exclusive ? !(v < max) : !(v <= max)) {
        Invalid(
            path, value,
            name + " in body should be less than " + (exclusive ? "" : "or equal to ") + m->dump());
      }
    }
  }

  void CheckString(const json& schema, const std::string& s, const std::string& path,
                   const std::string& name) {
    const json value = s;
    if (auto m = schema.find("minLength"); m != schema.end()) {
      if (RuneCount(s) < m->get<size_t>()) {
        Invalid(path, value, name + " in body should be at least " + m->dump() + " chars long");
      }
    }
    if (auto m = schema.find("maxLength"); m != schema.end()) {
      if (RuneCount(s) > m->get<size_t>()) {
        Add(path, "Too long: may not be more than " + m->dump() + " characters",
            "FieldValueTooLong");
      }
    }
    if (auto p = schema.find("pattern"); p != schema.end()) {
      auto re = patterns_.find(p->get_ref<const std::string&>());
      // libstdc++'s regex recurses per character: a long value is refused
      // rather than matched (no pattern here is meant for long strings).
      if (re != patterns_.end() &&
          (s.size() > kMaxPatternInput || !std::regex_search(s, re->second))) {
        Invalid(path, value, name + " in body should match '" + re->first + "'");
      }
    }
    if (auto f = schema.find("format"); f != schema.end() && *f == "date-time") {
      if (!IsDateTime(s)) {
        Invalid(path, value, name + " in body must be of type date-time: " + value.dump());
      }
    }
  }

  void CheckArray(const json& schema, const json& value, const std::string& path,
                  const std::string& name) {
    if (auto m = schema.find("minItems"); m != schema.end() && value.size() < m->get<size_t>()) {
      Invalid(path, json(value.size()),
              name + " in body should have at least " + m->dump() + " items");
    }
    if (auto m = schema.find("maxItems"); m != schema.end() && value.size() > m->get<size_t>()) {
      Add(path,
          "Too many: " + std::to_string(value.size()) + ": must have at most " + m->dump() +
              " items",
          "FieldValueTooMany");
    }
    if (auto items = schema.find("items"); items != schema.end()) {
      for (size_t i = 0; i < value.size(); ++i) Walk(*items, value[i], Index(path, i));
    }
  }

  void CheckObject(const json& schema, const json& value, const std::string& path) {
    static const json kEmpty = json::object();
    auto props_it = schema.find("properties");
    const json& props = props_it != schema.end() ? *props_it : kEmpty;
    if (auto req = schema.find("required"); req != schema.end()) {
      for (const auto& r : *req) {
        if (!value.contains(r.get<std::string>())) {
          Add(Child(path, r.get<std::string>()), "Required value", "FieldValueRequired");
        }
      }
    }
    auto ap = schema.find("additionalProperties");
    for (const auto& [key, sub] : value.items()) {
      if (auto p = props.find(key); p != props.end()) {
        Walk(*p, sub, Child(path, key));
      } else if (ap != schema.end() && ap->is_object()) {
        Walk(*ap, sub, Key(path, key));
      } else if ((ap != schema.end() && ap->is_boolean() && ap->get<bool>()) ||
                 PreservesUnknown(schema)) {
        // Kept as is, unchecked.
      } else {
        out_.unknown_fields.push_back(Child(path, key));
      }
    }
  }

  const PatternMap& patterns_;
  ValidationResult& out_;
};

const json* Find(const json& object, std::initializer_list<const char*> path) {
  return FindPath(object, path);
}

bool IsZeroIntOrPercent(const json& v) {
  if (IsInteger(v)) return v.get<int64_t>() == 0;
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    return s == "0%" || s == "0";
  }
  return false;
}

// Rules that involve more than one field, which a structural schema cannot say.
void CrossFieldChecks(std::string_view kind, const json& object, ValidationResult& out) {
  if (kind == "ModelDeployment") {
    const json* min = Find(object, {"spec", "autoscaling", "minReplicas"});
    const json* max = Find(object, {"spec", "autoscaling", "maxReplicas"});
    if (min && max && IsInteger(*min) && IsInteger(*max) &&
        min->get<int64_t>() > max->get<int64_t>()) {
      out.errors.push_back({"spec.autoscaling.minReplicas",
                            "Invalid value: " + min->dump() +
                                ": must be less than or equal to maxReplicas (" + max->dump() + ")",
                            "FieldValueInvalid"});
    }
    const json* surge = Find(object, {"spec", "strategy", "rollingUpdate", "maxSurge"});
    const json* unavailable = Find(object, {"spec", "strategy", "rollingUpdate", "maxUnavailable"});
    if (surge && unavailable && IsZeroIntOrPercent(*surge) && IsZeroIntOrPercent(*unavailable)) {
      out.errors.push_back(
          {"spec.strategy.rollingUpdate.maxUnavailable",
           "Invalid value: " + unavailable->dump() + ": may not be 0 when `maxSurge` is 0",
           "FieldValueInvalid"});
    }
  } else if (kind == "Model") {
    const json* engine = Find(object, {"spec", "engine"});
    const json* source = Find(object, {"spec", "source"});
    if (engine && source && *engine == "llamacpp" && source->is_string() &&
        source->get_ref<const std::string&>().rfind("sim://", 0) == 0) {
      out.errors.push_back({"spec.source",
                            "Invalid value: " + source->dump() +
                                ": engine llamacpp cannot load a sim:// source (use engine sim, or "
                                "a file:// or http(s):// source)",
                            "FieldValueInvalid"});
    }
  }
}

// ---------------------------------------------------------------- updates --

bool EmptyValue(const json* v) {
  return v == nullptr || v->is_null() ||
         (v->is_string() && v->get_ref<const std::string&>().empty()) ||
         (v->is_object() && v->empty());
}

void CheckImmutable(const json& schema, const json* old_v, const json* new_v,
                    const std::string& path, std::vector<common::FieldCause>& out) {
  if (schema.value("x-corral-immutable", false)) {
    if (!EmptyValue(old_v) && (new_v == nullptr || *new_v != *old_v)) {
      out.push_back({path,
                     "Invalid value: " + (new_v ? FormatValue(*new_v) : std::string("\"null\"")) +
                         ": field is immutable",
                     "FieldValueInvalid"});
    }
    return;
  }
  auto props = schema.find("properties");
  if (props == schema.end()) return;
  for (const auto& [name, sub] : props->items()) {
    const json* o =
        (old_v && old_v->is_object() && old_v->contains(name)) ? &old_v->at(name) : nullptr;
    const json* n =
        (new_v && new_v->is_object() && new_v->contains(name)) ? &new_v->at(name) : nullptr;
    if (o == nullptr && n == nullptr) continue;
    CheckImmutable(sub, o, n, Child(path, name), out);
  }
}

// --------------------------------------------------------------- defaults --

void FillDefaults(const json& schema, json& value) {
  if (value.is_object()) {
    if (auto props = schema.find("properties"); props != schema.end()) {
      for (const auto& [name, sub] : props->items()) {
        auto it = value.find(name);
        auto def = sub.find("default");
        if (def != sub.end() && (it == value.end() || (it->is_null() && !Nullable(sub)))) {
          value[name] = *def;
        }
        it = value.find(name);
        if (it != value.end()) FillDefaults(sub, *it);
      }
    }
    if (auto ap = schema.find("additionalProperties"); ap != schema.end() && ap->is_object()) {
      for (auto& [key, sub] : value.items()) FillDefaults(*ap, sub);
    }
  } else if (value.is_array()) {
    if (auto items = schema.find("items"); items != schema.end()) {
      for (auto& v : value) FillDefaults(*items, v);
    }
  }
}

// ---------------------------------------------------------------- pruning --

void PruneNode(const json& schema, json& value, const std::string& path,
               std::vector<std::string>& removed) {
  if (value.is_object()) {
    auto props = schema.find("properties");
    auto ap = schema.find("additionalProperties");
    const bool keep_unknown =
        PreservesUnknown(schema) || (ap != schema.end() && ap->is_boolean() && ap->get<bool>());
    std::vector<std::string> drop;
    for (auto& [key, sub] : value.items()) {
      if (props != schema.end() && props->contains(key)) {
        PruneNode(props->at(key), sub, Child(path, key), removed);
      } else if (ap != schema.end() && ap->is_object()) {
        PruneNode(*ap, sub, Key(path, key), removed);
      } else if (!keep_unknown) {
        drop.push_back(key);
      }
    }
    for (const auto& key : drop) {
      value.erase(key);
      removed.push_back(Child(path, key));
    }
  } else if (value.is_array()) {
    if (auto items = schema.find("items"); items != schema.end()) {
      for (size_t i = 0; i < value.size(); ++i) {
        PruneNode(*items, value[i], Index(path, i), removed);
      }
    }
  }
}

}  // namespace

// ------------------------------------------------------------------ public --

bool ResourceInfo::HasSubresource(std::string_view name) const {
  return std::find(subresources.begin(), subresources.end(), name) != subresources.end();
}

SchemaRegistry::SchemaRegistry() {
  auto* impl = new Impl();  // lives as long as the process (Default() is a static)
  try {
    const json defs = json::parse(schema_data::Definitions());
    for (std::string_view text : schema_data::Resources()) {
      const json doc = json::parse(text);
      ResourceInfo r;
      r.kind = doc.at("kind").get<std::string>();
      r.list_kind = doc.at("listKind").get<std::string>();
      r.group = doc.at("group").get<std::string>();
      r.version = doc.at("version").get<std::string>();
      r.plural = doc.at("plural").get<std::string>();
      r.singular = doc.at("singular").get<std::string>();
      r.short_names = Strings(doc, "shortNames");
      r.categories = Strings(doc, "categories");
      r.subresources = Strings(doc, "subresources");
      r.namespaced = doc.at("namespaced").get<bool>();
      r.verbs = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"};
      impl->kinds.Add(
          {r.kind, r.group, r.version, r.plural, r.namespaced, Strings(doc, "selectableFields")});
      json schema = Resolve(doc.at("schema"), defs);
      CollectPatterns(schema, impl->patterns);
      impl->schemas.emplace(r.kind, std::move(schema));
      impl->resources.push_back(std::move(r));
    }
  } catch (const json::exception& e) {
    SchemaDefect(e.what());
  }
  impl_ = impl;
}

const SchemaRegistry& SchemaRegistry::Default() {
  static const SchemaRegistry* registry = new SchemaRegistry();
  return *registry;
}

const store::KindRegistry& SchemaRegistry::kinds() const { return impl_->kinds; }

const std::vector<ResourceInfo>& SchemaRegistry::Resources() const { return impl_->resources; }

const ResourceInfo* SchemaRegistry::Resource(std::string_view plural) const {
  for (const auto& r : impl_->resources) {
    if (r.plural == plural) return &r;
  }
  return nullptr;
}

const ResourceInfo* SchemaRegistry::Resource(std::string_view group,
                                             std::string_view plural) const {
  for (const auto& r : impl_->resources) {
    if (r.group == group && r.plural == plural) return &r;
  }
  return nullptr;
}

const ResourceInfo* SchemaRegistry::ResourceForKind(std::string_view kind) const {
  for (const auto& r : impl_->resources) {
    if (r.kind == kind) return &r;
  }
  return nullptr;
}

const json* SchemaRegistry::KindSchema(std::string_view kind) const {
  auto it = impl_->schemas.find(kind);
  return it == impl_->schemas.end() ? nullptr : &it->second;
}

ValidationResult SchemaRegistry::Validate(std::string_view kind, const json& object) const {
  ValidationResult out;
  const json* schema = KindSchema(kind);
  if (schema == nullptr) {
    std::string allowed;
    for (const auto& r : impl_->resources) {
      if (!allowed.empty()) allowed += ", ";
      allowed += "\"" + r.kind + "\"";
    }
    out.errors.push_back(
        {"kind",
         "Unsupported value: " + json(std::string(kind)).dump() + ": supported values: " + allowed,
         "FieldValueNotSupported"});
    return out;
  }
  Validator(impl_->patterns, out).Walk(*schema, object, "");
  CrossFieldChecks(kind, object, out);  // checks the types it relies on itself
  return out;
}

std::vector<common::FieldCause> SchemaRegistry::ValidateUpdate(std::string_view kind,
                                                               const json& old_obj,
                                                               const json& new_obj) const {
  std::vector<common::FieldCause> out;
  if (const json* schema = KindSchema(kind)) CheckImmutable(*schema, &old_obj, &new_obj, "", out);
  return out;
}

void SchemaRegistry::ApplyDefaults(std::string_view kind, json& object) const {
  if (const json* schema = KindSchema(kind)) FillDefaults(*schema, object);
}

std::vector<std::string> SchemaRegistry::Prune(std::string_view kind, json& object) const {
  std::vector<std::string> removed;
  const json* schema = KindSchema(kind);
  if (schema == nullptr || !object.is_object()) return removed;
  // metadata is the caller's (ObjectMeta has its own rules); everything else
  // follows the schema.
  json metadata;
  const bool had_metadata = object.contains("metadata");
  if (had_metadata) {
    metadata = std::move(object["metadata"]);
    object.erase("metadata");
  }
  PruneNode(*schema, object, "", removed);
  if (had_metadata) object["metadata"] = std::move(metadata);
  return removed;
}

const json* FindPath(const json& object, std::initializer_list<const char*> path) {
  const json* cur = &object;
  for (const char* p : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(p);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

}  // namespace corral::api
