// Field ownership and server-side apply; see apply.h for the contract.
//
// This follows sigs.k8s.io/structured-merge-diff (SMD) and
// k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager as they treat custom
// resources, without a schema:
//  - a field set is a set of paths; a path is a list of serialised path
//    elements exactly as FieldsV1 spells them ("f:spec", "k:{\"uid\":\"u1\"}",
//    "v:\"corral.dev/cleanup\""), so decoding and encoding FieldsV1 is a tree
//    walk and set algebra is std::set algebra;
//  - objects merge key by key; lists are atomic leaves except
//    metadata.ownerReferences (a map keyed by uid) and metadata.finalizers (a
//    set), which fall back to atomic when they cannot be keyed (an item
//    without a uid, a duplicate);
//  - a comparison reports leaves added/modified/removed and, like SMD's post
//    hook, a container (object, keyed list, keyed item) added or removed as a
//    whole; an empty object or list counts as a leaf;
//  - the set an applier owns is every leaf and keyed item it sent (an empty
//    object owns nothing, as in SMD's ToFieldSet);
//  - pruning after apply removes a path the applier owned last time (or an
//    ancestor of one) when no manager now owns it or anything under it
//    (SMD's EnsureNamedFieldsAreMembers + addBackOwnedItems/DanglingItems).
// The apiserver wrappers reproduced here: stripping server-owned metadata
// from the sets, "before-first-apply", skipping Update tracking on objects
// without managedFields, client-written managedFields (and [{}] / [] reset),
// the kubectl client-side-apply upgrade (lastAppliedManager/Updater), the cap
// of 10 Update entries ("ancient-changes"), timestamps kept on a no-op.
#include "api/apply.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace corral::api {
namespace {

using common::FieldCause;
using common::Result;
using common::Status;
using nlohmann::json;

using Path = std::vector<std::string>;
using FieldSet = std::set<Path>;

constexpr std::string_view kApply = "Apply";
constexpr std::string_view kUpdate = "Update";
constexpr std::string_view kLastApplied = "kubectl.kubernetes.io/last-applied-configuration";
// Kubernetes' FieldManagerMaxLength, DefaultMaxUpdateManagers and
// TotalAnnotationSizeLimitB.
constexpr size_t kMaxManagerLength = 128;
constexpr size_t kMaxUpdateManagers = 10;
constexpr size_t kMaxAnnotationBytes = 256 * 1024;
constexpr std::array<std::string_view, 4> kMetadataInScope = {"annotations", "finalizers", "labels",
                                                              "ownerReferences"};

// ---------------------------------------------------------------- encoding

// JSON as Go's encoding/json writes it (sorted keys, compact, <>& escaped), so
// "k:"/"v:" elements and the last-applied annotation match Kubernetes' bytes.
std::string GoJson(const json& v) {
  std::string raw = v.dump();
  std::string out;
  out.reserve(raw.size());
  for (char c : raw) {
    switch (c) {
      case '<': out += "\\u003c"; break;
      case '>': out += "\\u003e"; break;
      case '&': out += "\\u0026"; break;
      default: out += c;
    }
  }
  return out;
}

std::string Quote(const std::string& s) { return GoJson(json(s)); }

Path Child(const Path& p, std::string element) {
  Path out = p;
  out.push_back(std::move(element));
  return out;
}

std::string FieldElement(const std::string& name) { return "f:" + name; }

// --------------------------------------------------------- list semantics

enum class ListKind { kAtomic, kMapByUid, kSet };

ListKind ListKindAt(const Path& path) {
  if (path.size() == 2 && path[0] == "f:metadata") {
    if (path[1] == "f:ownerReferences") return ListKind::kMapByUid;
    if (path[1] == "f:finalizers") return ListKind::kSet;
  }
  return ListKind::kAtomic;
}

// The path element naming `item` in a keyed list; nullopt when it has no key.
std::optional<std::string> ItemElement(ListKind kind, const json& item) {
  if (kind == ListKind::kMapByUid) {
    if (!item.is_object()) return std::nullopt;
    auto uid = item.find("uid");
    if (uid == item.end() || !uid->is_string()) return std::nullopt;
    return "k:" + GoJson(json{{"uid", *uid}});
  }
  if (kind == ListKind::kSet && item.is_primitive() && !item.is_null()) return "v:" + GoJson(item);
  return std::nullopt;
}

using KeyedItems = std::vector<std::pair<std::string, const json*>>;

// The items of a keyed list in order, or nullopt when the list cannot be keyed
// (an item without a key, a duplicate): it is then treated as atomic. An
// absent list keys as empty.
std::optional<KeyedItems> KeyItems(ListKind kind, const json* list) {
  KeyedItems items;
  if (list == nullptr) return items;
  if (kind == ListKind::kAtomic || !list->is_array()) return std::nullopt;
  std::set<std::string> seen;
  for (const json& item : *list) {
    auto element = ItemElement(kind, item);
    if (!element || !seen.insert(*element).second) return std::nullopt;
    items.emplace_back(std::move(*element), &item);
  }
  return items;
}

// --------------------------------------------------------------- scopes

// Which part of an object a write may own: the status subresource owns
// .status only; everything else owns every top-level field but apiVersion,
// kind, metadata and status, plus the four user-owned metadata fields.
// (Kubernetes' reset fields: status for the main resource, spec for /status.)
bool IsStatusScope(const std::string& subresource) { return subresource == "status"; }

bool IsOutOfScopeTopLevel(const std::string& key) {
  return key == "apiVersion" || key == "kind" || key == "metadata" || key == "status";
}

json ScopeView(const json& object, bool status_scope) {
  json view = json::object();
  if (!object.is_object()) return view;
  if (status_scope) {
    auto status = object.find("status");
    if (status != object.end()) view["status"] = *status;
    return view;
  }
  for (const auto& [key, value] : object.items()) {
    if (!IsOutOfScopeTopLevel(key)) view[key] = value;
  }
  auto metadata = object.find("metadata");
  if (metadata != object.end() && metadata->is_object()) {
    json meta = json::object();
    for (std::string_view key : kMetadataInScope) {
      auto it = metadata->find(key);
      if (it != metadata->end()) meta[std::string(key)] = *it;
    }
    if (!meta.empty()) view["metadata"] = std::move(meta);
  }
  return view;
}

// Replaces the in-scope part of `object` by `view`.
void WriteBack(json& object, const json& view, bool status_scope) {
  if (status_scope) {
    object.erase("status");
    auto status = view.find("status");
    if (status != view.end()) object["status"] = *status;
    return;
  }
  for (auto it = object.begin(); it != object.end();) {
    if (IsOutOfScopeTopLevel(it.key())) {
      ++it;
    } else {
      it = object.erase(it);
    }
  }
  for (const auto& [key, value] : view.items()) {
    if (key != "metadata") object[key] = value;
  }
  json& metadata = object["metadata"];
  if (!metadata.is_object()) metadata = json::object();
  for (std::string_view key : kMetadataInScope) metadata.erase(std::string(key));
  auto meta_view = view.find("metadata");
  if (meta_view != view.end()) {
    for (const auto& [key, value] : meta_view->items()) metadata[key] = value;
  }
}

// ------------------------------------------------------------ field sets

// Every leaf and keyed item of `value` (SMD's ToFieldSet).
void CollectFields(const Path& path, const json& value, FieldSet& out) {
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) {
      CollectFields(Child(path, FieldElement(key)), child, out);
    }
    return;
  }
  ListKind kind = ListKindAt(path);
  if (value.is_array() && kind != ListKind::kAtomic) {
    if (auto items = KeyItems(kind, &value)) {
      for (const auto& [element, item] : *items) {
        Path item_path = Child(path, element);
        out.insert(item_path);
        if (item->is_object()) {
          for (const auto& [key, child] : item->items()) {
            CollectFields(Child(item_path, FieldElement(key)), child, out);
          }
        }
      }
      return;
    }
  }
  out.insert(path);
}

FieldSet ToFieldSet(const json& view) {
  FieldSet out;
  CollectFields({}, view, out);
  return out;
}

struct Comparison {
  FieldSet added;
  FieldSet modified;
  FieldSet removed;
};

void CompareAt(const Path& path, const json* l, const json* r, Comparison& c);

// A container present on one side only is itself added or removed (SMD's
// post-item hook): that is how an Update comes to own "f:labels": {".": {}}.
void CompareContainer(const Path& path, const json* l, const json* r, Comparison& c) {
  if (path.empty()) return;
  if (l == nullptr) {
    c.added.insert(path);
  } else if (r == nullptr) {
    c.removed.insert(path);
  }
}

void CompareLeaf(const Path& path, const json* l, const json* r, Comparison& c) {
  if (path.empty()) return;
  if (l == nullptr) {
    c.added.insert(path);
  } else if (r == nullptr) {
    c.removed.insert(path);
  } else if (*l != *r) {
    c.modified.insert(path);
  }
}

bool IsEmptyOrAbsent(const json* v) {
  return v == nullptr || ((v->is_object() || v->is_array()) && v->empty());
}

void CompareAt(const Path& path, const json* l, const json* r, Comparison& c) {
  if (l == nullptr && r == nullptr) return;
  bool both_empty = IsEmptyOrAbsent(l) && IsEmptyOrAbsent(r);
  ListKind kind = ListKindAt(path);
  if (kind != ListKind::kAtomic && !both_empty) {
    auto left = KeyItems(kind, l);
    auto right = KeyItems(kind, r);
    if (left && right) {
      std::map<std::string, std::pair<const json*, const json*>> items;
      for (const auto& [element, item] : *left) items[element].first = item;
      for (const auto& [element, item] : *right) items[element].second = item;
      for (const auto& [element, sides] : items) {
        CompareAt(Child(path, element), sides.first, sides.second, c);
      }
      CompareContainer(path, l, r, c);
      return;
    }
  }
  bool l_object = l == nullptr || l->is_object();
  bool r_object = r == nullptr || r->is_object();
  if (l_object && r_object && !both_empty) {
    std::map<std::string, std::pair<const json*, const json*>> fields;
    if (l != nullptr) {
      for (auto it = l->begin(); it != l->end(); ++it) fields[it.key()].first = &*it;
    }
    if (r != nullptr) {
      for (auto it = r->begin(); it != r->end(); ++it) fields[it.key()].second = &*it;
    }
    for (const auto& [key, sides] : fields) {
      CompareAt(Child(path, FieldElement(key)), sides.first, sides.second, c);
    }
    CompareContainer(path, l, r, c);
    return;
  }
  if (l != nullptr && r != nullptr && l_object != r_object) {
    // An object became a scalar or list (or back): its fields went away (or
    // appeared) and the field itself changed.
    const json* object = l_object ? l : r;
    for (auto it = object->begin(); it != object->end(); ++it) {
      CompareAt(Child(path, FieldElement(it.key())), l_object ? &*it : nullptr,
                r_object ? &*it : nullptr, c);
    }
    c.modified.insert(path);
    return;
  }
  CompareLeaf(path, l, r, c);
}

Comparison Compare(const json& before_view, const json& after_view) {
  Comparison c;
  CompareAt({}, &before_view, &after_view, c);
  // .metadata itself is never owned (Kubernetes' stripMetaManager).
  const Path metadata = {"f:metadata"};
  c.added.erase(metadata);
  c.modified.erase(metadata);
  c.removed.erase(metadata);
  return c;
}

FieldSet Union(const FieldSet& a, const FieldSet& b) {
  FieldSet out = a;
  out.insert(b.begin(), b.end());
  return out;
}

FieldSet Difference(const FieldSet& a, const FieldSet& b) {
  FieldSet out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

FieldSet Intersection(const FieldSet& a, const FieldSet& b) {
  FieldSet out;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

// The set with every ancestor of its paths added as a member.
FieldSet WithAncestors(const FieldSet& set) {
  FieldSet out;
  for (const Path& p : set) {
    for (size_t n = 1; n <= p.size(); ++n) out.insert(Path(p.begin(), p.begin() + n));
  }
  return out;
}

// ------------------------------------------------------- merge and prune

// `applied` merged onto `live` at `path`; nullopt when the result is "absent"
// (an applied null removes the field).
std::optional<json> MergeAt(const Path& path, const json* live, const json& applied) {
  if (applied.is_null()) return std::nullopt;
  ListKind kind = ListKindAt(path);
  if (kind != ListKind::kAtomic && live != nullptr && live->is_array() && applied.is_array()) {
    auto left = KeyItems(kind, live);
    auto right = KeyItems(kind, &applied);
    if (left && right) {
      // Live order first, new items after in applied order.
      std::map<std::string, const json*> applied_items(right->begin(), right->end());
      json out = json::array();
      for (const auto& [element, item] : *left) {
        auto it = applied_items.find(element);
        if (it == applied_items.end()) {
          out.push_back(*item);
          continue;
        }
        if (auto merged = MergeAt(Child(path, element), item, *it->second)) {
          out.push_back(std::move(*merged));
        }
        applied_items.erase(it);
      }
      for (const auto& [element, item] : *right) {
        if (applied_items.count(element) == 0) continue;
        if (auto merged = MergeAt(Child(path, element), nullptr, *item)) {
          out.push_back(std::move(*merged));
        }
      }
      return out;
    }
  }
  if (applied.is_object()) {
    json out = live != nullptr && live->is_object() ? *live : json::object();
    for (const auto& [key, value] : applied.items()) {
      auto existing = out.find(key);
      auto merged = MergeAt(Child(path, FieldElement(key)),
                            existing == out.end() ? nullptr : &*existing, value);
      if (merged) {
        out[key] = std::move(*merged);
      } else {
        out.erase(key);
      }
    }
    return out;
  }
  return applied;
}

void RemovePath(json& root, const Path& path) {
  json* node = &root;
  for (size_t i = 0; i < path.size(); ++i) {
    const std::string& element = path[i];
    bool last = i + 1 == path.size();
    if (element.rfind("f:", 0) == 0) {
      if (!node->is_object()) return;
      auto it = node->find(element.substr(2));
      if (it == node->end()) return;
      if (last) {
        node->erase(it);
        return;
      }
      node = &*it;
      continue;
    }
    if (!node->is_array()) return;
    ListKind kind = ListKindAt(Path(path.begin(), path.begin() + static_cast<std::ptrdiff_t>(i)));
    size_t index = node->size();
    for (size_t j = 0; j < node->size(); ++j) {
      if (ItemElement(kind, (*node)[j]) == element) {
        index = j;
        break;
      }
    }
    if (index == node->size()) return;
    if (last) {
      node->erase(index);
      return;
    }
    node = &(*node)[index];
  }
}

// ------------------------------------------------------- managedFields

struct Entry {
  std::string manager;
  std::string operation;
  std::string api_version;
  std::string time;
  std::string subresource;
  FieldSet fields;

  // Kubernetes' manager identifier: an applier is the same manager whatever
  // apiVersion it applied with; an updater is not.
  bool SameManager(const Entry& o) const {
    return manager == o.manager && operation == o.operation && subresource == o.subresource &&
           (operation == kApply || api_version == o.api_version);
  }
  bool operator==(const Entry& o) const {
    return SameManager(o) && api_version == o.api_version && time == o.time && fields == o.fields;
  }
};

using Entries = std::vector<Entry>;

std::string ManagerError(const std::string& manager) {
  if (manager.size() > kMaxManagerLength) {
    return "may not be more than " + std::to_string(kMaxManagerLength) + " bytes";
  }
  for (size_t i = 0; i < manager.size(); ++i) {
    auto c = static_cast<unsigned char>(manager[i]);
    if (c < 0x20 || c == 0x7f) {
      return "invalid character at position " + std::to_string(i) + " (must be printable)";
    }
  }
  return "";
}

Status ValidateOptions(const ApplyOptions& options, bool apply) {
  if (options.manager.empty()) {
    return common::InvalidArgument(apply ? "fieldManager is required for apply requests"
                                         : "fieldManager is required");
  }
  if (std::string why = ManagerError(options.manager); !why.empty()) {
    return Status(common::Code::kInvalidArgument, "fieldManager: Invalid value: " + why,
                  {FieldCause{"fieldManager", "Invalid value: " + why, "FieldValueInvalid"}});
  }
  if (!options.subresource.empty() && options.subresource != "status" &&
      options.subresource != "scale") {
    return common::InvalidArgument("unsupported subresource \"" + options.subresource +
                                   "\" for field management (want \"\", \"status\" or \"scale\")");
  }
  return Status::Ok();
}

// Decodes one FieldsV1 object into `out`; `where` names it in errors.
Status DecodeFieldsNode(const json& node, Path& path, FieldSet& out, const std::string& where) {
  for (const auto& [key, child] : node.items()) {
    if (key == ".") continue;
    if (!child.is_object()) {
      return common::InvalidArgument(where + ": the value of \"" + key + "\" must be an object");
    }
    if (key.size() < 2 || key[1] != ':') {
      return common::InvalidArgument(where + ": invalid path element \"" + key +
                                     "\" (want f:, k:, v: or i: and its content)");
    }
    std::string element;
    std::string content = key.substr(2);
    switch (key[0]) {
      case 'f': element = key; break;
      case 'i':
        if (content.empty() || !std::all_of(content.begin(), content.end(),
                                            [](char c) { return c >= '0' && c <= '9'; })) {
          return common::InvalidArgument(where + ": invalid list index in \"" + key + "\"");
        }
        element = key;
        break;
      case 'k':
      case 'v': {
        json parsed = json::parse(content, nullptr, /*allow_exceptions=*/false);
        if (parsed.is_discarded() || (key[0] == 'k' && !parsed.is_object())) {
          return common::InvalidArgument(where + ": invalid " + (key[0] == 'k' ? "key" : "value") +
                                         " in \"" + key + "\"");
        }
        element = std::string(1, key[0]) + ":" + GoJson(parsed);
        break;
      }
      default: continue;  // an element type from the future: dropped, as Kubernetes does
    }
    path.push_back(std::move(element));
    if (child.empty() || child.contains(".")) out.insert(path);
    Status s = DecodeFieldsNode(child, path, out, where);
    path.pop_back();
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

struct FieldsTree {
  bool member = false;
  std::map<std::string, FieldsTree> children;
};

json TreeToJson(const FieldsTree& tree) {
  json out = json::object();
  for (const auto& [element, child] : tree.children) out[element] = TreeToJson(child);
  if (tree.member && !tree.children.empty()) out["."] = json::object();
  return out;
}

json EncodeFields(const FieldSet& set) {
  FieldsTree root;
  for (const Path& p : set) {
    FieldsTree* node = &root;
    for (const std::string& element : p) node = &node->children[element];
    node->member = true;
  }
  return TreeToJson(root);
}

// Decodes and validates a managedFields list (Kubernetes' ValidateManagedFields
// plus what decoding needs). `field` is its name in errors.
Result<Entries> DecodeEntries(const json& list, const std::string& field) {
  if (!list.is_array()) {
    return Status(common::Code::kInvalidArgument, field + ": Invalid value: must be a list",
                  {FieldCause{field, "Invalid value: must be a list", "FieldValueInvalid"}});
  }
  Entries entries;
  std::vector<FieldCause> causes;
  auto invalid = [&](const std::string& f, const std::string& why) {
    causes.push_back(FieldCause{f, why, "FieldValueInvalid"});
  };
  for (size_t i = 0; i < list.size(); ++i) {
    const json& item = list[i];
    std::string at = field + "[" + std::to_string(i) + "]";
    if (!item.is_object()) {
      invalid(at, "Invalid value: must be an object");
      continue;
    }
    Entry e;
    auto str = [&](const char* key, std::string& dst, bool required) {
      auto it = item.find(key);
      if (it == item.end() || it->is_null()) {
        if (required)
          causes.push_back(FieldCause{at + "." + key, "Required value", "FieldValueRequired"});
        return;
      }
      if (!it->is_string()) {
        invalid(at + "." + key, "Invalid value: must be a string");
        return;
      }
      dst = it->get<std::string>();
    };
    std::string fields_type;
    str("manager", e.manager, true);
    str("operation", e.operation, true);
    str("apiVersion", e.api_version, false);
    str("time", e.time, false);
    str("subresource", e.subresource, false);
    str("fieldsType", fields_type, false);
    if (std::string why = ManagerError(e.manager); !why.empty()) {
      invalid(at + ".manager", "Invalid value: " + why);
    }
    if (item.contains("operation") && e.operation != kApply && e.operation != kUpdate) {
      invalid(at + ".operation",
              "Invalid value: " + Quote(e.operation) + ": must be `Apply` or `Update`");
    }
    if (!fields_type.empty() && fields_type != "FieldsV1") {
      invalid(at + ".fieldsType", "Invalid value: " + Quote(fields_type) + ": must be `FieldsV1`");
    }
    auto fields = item.find("fieldsV1");
    if (fields == item.end() || fields->is_null()) {
      causes.push_back(FieldCause{at + ".fieldsV1", "Required value", "FieldValueRequired"});
    } else if (!fields->is_object()) {
      invalid(at + ".fieldsV1", "Invalid value: must be an object");
    } else {
      Path path;
      Status s = DecodeFieldsNode(*fields, path, e.fields, at + ".fieldsV1");
      if (!s.ok()) invalid(at + ".fieldsV1", "Invalid value: " + s.message());
    }
    entries.push_back(std::move(e));
  }
  if (!causes.empty()) {
    std::string message;
    for (const FieldCause& c : causes) {
      message += (message.empty() ? "" : ", ") + c.field + ": " + c.message;
    }
    if (causes.size() > 1) message = "[" + message + "]";
    return Status(common::Code::kInvalidArgument, message, std::move(causes));
  }
  return entries;
}

// The managedFields of a stored object; they were validated when written, so
// a failure here is the server's fault.
Result<Entries> DecodeStored(const json& object) {
  if (!object.is_object()) return Entries{};
  auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return Entries{};
  auto list = metadata->find("managedFields");
  if (list == metadata->end() || list->is_null()) return Entries{};
  auto entries = DecodeEntries(*list, "metadata.managedFields");
  if (!entries.ok()) {
    return common::Internal("stored metadata.managedFields are invalid: " +
                            entries.status().message());
  }
  return entries;
}

// Kubernetes' sortEncodedManagedFields: Apply before Update, then oldest
// first, then by name, apiVersion, subresource.
void SortEntries(Entries& entries) {
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.operation, a.time, a.manager, a.api_version, a.subresource) <
           std::tie(b.operation, b.time, b.manager, b.api_version, b.subresource);
  });
}

json EncodeEntries(Entries entries) {
  SortEntries(entries);
  json out = json::array();
  for (const Entry& e : entries) {
    json item = {{"manager", e.manager},
                 {"operation", e.operation},
                 {"fieldsType", "FieldsV1"},
                 {"fieldsV1", EncodeFields(e.fields)}};
    if (!e.api_version.empty()) item["apiVersion"] = e.api_version;
    if (!e.time.empty()) item["time"] = e.time;
    if (!e.subresource.empty()) item["subresource"] = e.subresource;
    out.push_back(std::move(item));
  }
  return out;
}

void SetManagedFields(json& object, const Entries& entries) {
  json& metadata = object["metadata"];
  if (!metadata.is_object()) metadata = json::object();
  if (entries.empty()) {
    metadata.erase("managedFields");
  } else {
    metadata["managedFields"] = EncodeEntries(entries);
  }
}

void DropEmpty(Entries& entries) {
  entries.erase(std::remove_if(entries.begin(), entries.end(),
                               [](const Entry& e) { return e.fields.empty(); }),
                entries.end());
}

// Kubernetes' capManagersManager: past 10 Update entries, the oldest are
// merged into one "ancient-changes" entry per apiVersion.
void CapUpdateManagers(Entries& entries) {
  std::vector<size_t> updaters;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].operation == kUpdate) updaters.push_back(i);
  }
  if (updaters.size() <= kMaxUpdateManagers) return;
  std::stable_sort(updaters.begin(), updaters.end(), [&](size_t a, size_t b) {
    return std::tie(entries[a].time, entries[a].manager) <
           std::tie(entries[b].time, entries[b].manager);
  });
  std::map<std::string, size_t> first_of_version;  // apiVersion -> index of first/bucket
  std::vector<bool> dropped(entries.size(), false);
  size_t remaining = updaters.size();
  for (size_t k = 0; k < updaters.size() && remaining > kMaxUpdateManagers; ++k) {
    size_t i = updaters[k];
    auto first = first_of_version.find(entries[i].api_version);
    if (first == first_of_version.end()) {
      first_of_version[entries[i].api_version] = i;
      continue;
    }
    Entry& bucket = entries[first->second];
    bucket.manager = "ancient-changes";
    bucket.subresource.clear();
    bucket.fields = Union(bucket.fields, entries[i].fields);
    bucket.time = entries[i].time;  // the newer of the two
    dropped[i] = true;
    --remaining;
  }
  Entries kept;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!dropped[i]) kept.push_back(std::move(entries[i]));
  }
  entries = std::move(kept);
}

bool EntriesEqualIgnoringTime(Entries a, Entries b) {
  if (a.size() != b.size()) return false;
  for (Entry& e : a) e.time.clear();
  for (Entry& e : b) e.time.clear();
  SortEntries(a);
  SortEntries(b);
  return a == b;
}

json WithoutManagedFields(json object) {
  if (object.is_object()) {
    auto metadata = object.find("metadata");
    if (metadata != object.end() && metadata->is_object()) metadata->erase("managedFields");
  }
  return object;
}

// --------------------------------------------------------------- conflicts

std::string ElementString(const std::string& element) {
  std::string content = element.substr(2);
  auto scalar = [](const json& v) {
    return v.is_string() ? Quote(v.get<std::string>()) : v.dump();
  };
  switch (element[0]) {
    case 'f': return "." + content;
    case 'i': return "[" + content + "]";
    case 'v': {
      json v = json::parse(content, nullptr, false);
      return "[=" + (v.is_discarded() ? content : scalar(v)) + "]";
    }
    case 'k': {
      json v = json::parse(content, nullptr, false);
      if (v.is_discarded() || !v.is_object()) return "[" + content + "]";
      std::string out;
      for (const auto& [name, value] : v.items()) {
        out += (out.empty() ? "" : ",") + name + "=" + scalar(value);
      }
      return "[" + out + "]";
    }
    default: return element;
  }
}

// ".spec.replicas", ".metadata.finalizers[=\"a\"]" (fieldpath.Path.String).
std::string PathString(const Path& path) {
  std::string out;
  for (const std::string& element : path) out += ElementString(element);
  return out;
}

// `"kubectl"`, `"ctl" with subresource "status"`, `"ctl" using corral.dev/v1alpha1`.
std::string PrintManager(const Entry& e) {
  std::string out = Quote(e.manager);
  if (!e.subresource.empty()) out += " with subresource " + Quote(e.subresource);
  if (e.operation == kUpdate) out += " using " + e.api_version;
  return out;
}

struct ManagerConflicts {
  const Entry* manager;
  FieldSet paths;
};

// The 409 Kubernetes answers (merge.Conflicts → NewConflictError).
Status ConflictStatus(std::vector<ManagerConflicts> conflicts) {
  std::sort(conflicts.begin(), conflicts.end(), [](const auto& a, const auto& b) {
    return std::tie(a.manager->manager, a.manager->operation, a.manager->api_version,
                    a.manager->subresource) < std::tie(b.manager->manager, b.manager->operation,
                                                       b.manager->api_version,
                                                       b.manager->subresource);
  });
  std::vector<FieldCause> causes;
  std::vector<std::string> lines;
  for (const auto& c : conflicts) {
    std::string who = PrintManager(*c.manager);
    lines.push_back("conflicts with " + who + ":");
    for (const Path& p : c.paths) {
      causes.push_back(FieldCause{PathString(p), "conflict with " + who, "FieldManagerConflict"});
      lines.push_back("- " + PathString(p));
    }
  }
  std::string message;
  if (causes.size() == 1) {
    message = "Apply failed with 1 conflict: " + causes[0].message + ": " + causes[0].field;
  } else {
    message = "Apply failed with " + std::to_string(causes.size()) + " conflicts: ";
    for (size_t i = 0; i < lines.size(); ++i) message += (i ? "\n" : "") + lines[i];
  }
  return Status(common::Code::kConflict, std::move(message), std::move(causes));
}

const json* FindAnnotation(const json& object, std::string_view name) {
  if (!object.is_object()) return nullptr;
  auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return nullptr;
  auto annotations = metadata->find("annotations");
  if (annotations == metadata->end() || !annotations->is_object()) return nullptr;
  auto it = annotations->find(name);
  if (it == annotations->end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return nullptr;
  }
  return &*it;
}

// Kubernetes' lastAppliedManager: for the manager "kubectl", conflicts on
// fields that kubectl's client-side apply last applied with the value still
// live are not conflicts (upgrading client-side to server-side apply).
std::optional<FieldSet> AllowedByLastApplied(const json& live, const std::string& api_version,
                                             bool status_scope) {
  const json* annotation = FindAnnotation(live, kLastApplied);
  if (annotation == nullptr) return std::nullopt;
  json last = json::parse(annotation->get_ref<const std::string&>(), nullptr, false);
  if (last.is_discarded() || !last.is_object()) return std::nullopt;
  auto version = last.find("apiVersion");
  if (version == last.end() || *version != api_version) return std::nullopt;
  json last_view = ScopeView(last, status_scope);
  FieldSet allowed = ToFieldSet(last_view);
  Comparison c = Compare(last_view, ScopeView(live, status_scope));
  return Difference(Difference(Difference(allowed, c.modified), c.added), c.removed);
}

// Kubernetes' lastAppliedUpdater: when "kubectl" applies server-side to an
// object that carries a client-side-apply annotation, the annotation follows
// the applied configuration so a later client-side apply diffs correctly.
void SyncLastApplied(json& object, const json& applied) {
  if (FindAnnotation(object, kLastApplied) == nullptr) return;
  json config = applied;
  if (config.contains("metadata") && config["metadata"].is_object()) {
    json& metadata = config["metadata"];
    if (metadata.contains("annotations") && metadata["annotations"].is_object()) {
      metadata["annotations"].erase(std::string(kLastApplied));
      if (metadata["annotations"].empty()) metadata.erase("annotations");
    }
  }
  json& annotations = object["metadata"]["annotations"];
  annotations[std::string(kLastApplied)] = GoJson(config) + "\n";
  size_t total = 0;
  for (const auto& [key, value] : annotations.items()) {
    total += key.size() + (value.is_string() ? value.get_ref<const std::string&>().size() : 0);
  }
  if (total > kMaxAnnotationBytes) annotations.erase(std::string(kLastApplied));
}

std::string ApiVersionOf(const json& object) {
  if (!object.is_object()) return "";
  auto it = object.find("apiVersion");
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// ----------------------------------------------------------- operations

Result<json> DoServerSideApply(const json& live, const json& applied, const ApplyOptions& options) {
  CORRAL_RETURN_IF_ERROR(ValidateOptions(options, /*apply=*/true));
  if (!applied.is_object()) return common::InvalidArgument("apply body must be a JSON object");
  if (auto m = applied.find("metadata"); m != applied.end() && !m->is_null()) {
    if (!m->is_object()) return common::InvalidArgument("metadata: must be an object");
    if (auto mf = m->find("managedFields"); mf != m->end() && !mf->is_null()) {
      return Status(common::Code::kInvalidArgument, "metadata.managedFields must be nil",
                    {FieldCause{"metadata.managedFields", "must be nil", "FieldValueForbidden"}});
    }
  }
  const bool status_scope = IsStatusScope(options.subresource);
  const bool creating = live.is_null();
  if (creating && status_scope) {
    return common::NotFound("cannot apply to the status of an object that does not exist");
  }
  if (!creating && !live.is_object()) return common::Internal("live object is not a JSON object");
  const std::string api_version = ApiVersionOf(applied);

  auto stored = DecodeStored(live);
  if (!stored.ok()) return stored.status();
  Entries entries = std::move(stored).value();
  const Entries old_entries = entries;

  const json live_view = ScopeView(live, status_scope);
  if (!creating && entries.empty()) {
    // An object nobody tracks yet: whoever wrote it so far owns it all, so
    // this apply conflicts where it changes their values.
    Entry before{"before-first-apply", std::string(kUpdate), ApiVersionOf(live),
                 options.now,          options.subresource,  {}};
    Comparison c = Compare(json::object(), live_view);
    before.fields = Union(c.added, c.modified);
    if (!before.fields.empty()) entries.push_back(std::move(before));
  }

  const Entry me{options.manager, std::string(kApply), api_version,
                 options.now,     options.subresource, {}};
  FieldSet last_set;
  size_t my_index = entries.size();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].SameManager(me)) {
      my_index = i;
      last_set = entries[i].fields;
    }
  }
  if (my_index == entries.size()) entries.push_back(me);
  const json applied_view = ScopeView(applied, status_scope);
  entries[my_index].fields = ToFieldSet(applied_view);
  entries[my_index].api_version = api_version;
  entries[my_index].time = options.now;

  json merged = MergeAt({}, &live_view, applied_view).value_or(json::object());

  // Prune what this manager applied before, omits now, and nobody else owns.
  if (!last_set.empty()) {
    FieldSet owned;
    for (const Entry& e : entries) owned.insert(e.fields.begin(), e.fields.end());
    FieldSet prune = Difference(WithAncestors(last_set), WithAncestors(owned));
    prune.erase(Path{"f:metadata"});
    // Ancestors sort first: removing one makes its descendants' removal a
    // no-op (removing a keyed item's key field first would lose the item).
    for (const Path& p : prune) RemovePath(merged, p);
  }

  Comparison c = Compare(live_view, merged);
  const FieldSet changed = Union(c.modified, c.added);
  std::vector<ManagerConflicts> conflicts;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i == my_index) continue;
    FieldSet paths = Intersection(entries[i].fields, changed);
    if (!paths.empty()) conflicts.push_back({&entries[i], std::move(paths)});
  }
  if (!conflicts.empty() && !options.force) {
    std::optional<FieldSet> allowed;
    if (options.manager == "kubectl")
      allowed = AllowedByLastApplied(live, api_version, status_scope);
    std::vector<ManagerConflicts> remaining;
    for (auto& mc : conflicts) {
      FieldSet paths = allowed ? Difference(mc.paths, *allowed) : mc.paths;
      if (!paths.empty()) remaining.push_back({mc.manager, std::move(paths)});
    }
    if (!remaining.empty()) return ConflictStatus(std::move(remaining));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i == my_index) continue;
    entries[i].fields = Difference(Difference(entries[i].fields, changed), c.removed);
  }
  DropEmpty(entries);

  json result;
  if (creating) {
    result = json::object();
    for (const char* key : {"apiVersion", "kind"}) {
      if (applied.contains(key)) result[key] = applied[key];
    }
    result["metadata"] = applied.contains("metadata") && applied["metadata"].is_object()
                             ? applied["metadata"]
                             : json::object();
  } else {
    result = live;
  }
  WriteBack(result, merged, status_scope);
  SetManagedFields(result, entries);
  if (options.manager == "kubectl") SyncLastApplied(result, applied);

  // A no-op apply writes nothing: not even the applier's new timestamp.
  if (!creating && WithoutManagedFields(result) == WithoutManagedFields(live) &&
      EntriesEqualIgnoringTime(entries, old_entries)) {
    return live;
  }
  return result;
}

bool IsReset(const json& list) {
  if (!list.is_array()) return false;
  return std::all_of(list.begin(), list.end(),
                     [](const json& e) { return e.is_object() && e.empty(); });
}

Result<json> DoTrackUpdate(const json& before, json after, const ApplyOptions& options) {
  CORRAL_RETURN_IF_ERROR(ValidateOptions(options, /*apply=*/false));
  if (!after.is_object()) return common::InvalidArgument("object must be a JSON object");
  if (!before.is_null() && !before.is_object()) {
    return common::Internal("previous object is not a JSON object");
  }
  const bool creating = before.is_null();
  auto stored = DecodeStored(before);
  if (!stored.ok()) return stored.status();

  // Which managedFields this write starts from: the stored ones, unless the
  // client wrote different ones (never through a subresource).
  Entries entries = std::move(stored).value();
  json written;
  if (after.contains("metadata") && after["metadata"].is_object()) {
    auto it = after["metadata"].find("managedFields");
    if (it != after["metadata"].end()) written = *it;
  }
  json stored_list;
  if (!creating && before.contains("metadata") && before["metadata"].is_object() &&
      before["metadata"].contains("managedFields")) {
    stored_list = before["metadata"]["managedFields"];
  }
  if (options.subresource.empty() && !written.is_null() && written != stored_list) {
    if (IsReset(written)) {
      entries.clear();
    } else {
      auto decoded = DecodeEntries(written, "metadata.managedFields");
      if (!decoded.ok()) return decoded.status();
      entries = std::move(decoded).value();
    }
  }

  // An existing object without managedFields stays untracked until its first
  // apply (Kubernetes' skipNonAppliedManager).
  if (!creating && entries.empty()) {
    SetManagedFields(after, entries);
    return after;
  }

  const bool status_scope = IsStatusScope(options.subresource);
  Comparison c = Compare(ScopeView(before, status_scope), ScopeView(after, status_scope));
  const FieldSet taken = Union(c.modified, c.added);
  const std::string api_version = ApiVersionOf(after);
  const Entry me{options.manager, std::string(kUpdate), api_version,
                 options.now,     options.subresource,  {}};
  size_t my_index = entries.size();
  for (size_t i = 0; i < entries.size(); ++i) {
    // An Update never conflicts: it takes what it changed from everyone.
    entries[i].fields = Difference(Difference(entries[i].fields, taken), c.removed);
    if (entries[i].SameManager(me)) my_index = i;
  }
  if (!taken.empty()) {
    if (my_index == entries.size()) entries.push_back(me);
    Entry& mine = entries[my_index];
    mine.fields = Union(mine.fields, taken);
    mine.time = options.now;
  }
  DropEmpty(entries);
  CapUpdateManagers(entries);
  SetManagedFields(after, entries);
  return after;
}

}  // namespace

common::Result<nlohmann::json> ServerSideApply(const nlohmann::json& live,
                                               const nlohmann::json& applied,
                                               const ApplyOptions& options) {
  try {
    return DoServerSideApply(live, applied, options);
  } catch (const nlohmann::json::exception& e) {
    return common::Internal(std::string("server-side apply: ") + e.what());
  }
}

common::Result<nlohmann::json> TrackUpdate(const nlohmann::json& before, nlohmann::json after,
                                           const ApplyOptions& options) {
  try {
    return DoTrackUpdate(before, std::move(after), options);
  } catch (const nlohmann::json::exception& e) {
    return common::Internal(std::string("field ownership: ") + e.what());
  }
}

}  // namespace corral::api
