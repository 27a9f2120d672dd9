// The OpenAPI documents, generated from the kind schemas (schema_v1alpha1.cc)
// in the shape kube-apiserver publishes for custom resources, because that is
// what kubectl's code reads:
//  - v3 (/openapi/v3/<gv>): kubectl >= 1.27 finds a kind's `patch` operation
//    by its "x-kubernetes-group-version-kind" (an object on operations) and
//    sends ?fieldValidation=Strict when that operation has the parameter;
//    `kubectl explain` finds components.schemas entries by their
//    "x-kubernetes-group-version-kind" (a list on schemas).
//  - v2 (/openapi/v2): kubectl <= 1.26 explains from it and kubectl 1.20
//    validates client-side with it, finding definitions by the same GVK list.
// PATCH bodies list JSON patch, merge patch and apply patch only: with
// strategic merge patch listed, client-side apply would switch to it.
#include <openssl/evp.h>

#include <cctype>
#include <cstdio>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "api/schema.h"

namespace corral::api {

using json = nlohmann::json;

namespace {

constexpr char kMeta[] = "io.k8s.apimachinery.pkg.apis.meta.v1.";
constexpr char kScale[] = "io.k8s.api.autoscaling.v1.Scale";

// The two document flavours differ in where schemas live and how a $ref with
// a description is written.
struct Flavor {
  bool v3;
  std::string Ref(const std::string& name) const {
    return (v3 ? "#/components/schemas/" : "#/definitions/") + name;
  }
  // A reference to a named schema.
  json RefSchema(const std::string& name) const { return {{"$ref", Ref(name)}}; }
  // A reference with its own description: v3 needs allOf for sibling keys
  // (as kube-apiserver writes it); v2 puts them beside $ref.
  json RefWith(const std::string& name, const json& description) const {
    json out = v3 ? json{{"allOf", json::array({RefSchema(name)})}} : RefSchema(name);
    if (description.is_string()) out["description"] = description;
    return out;
  }
};

json Gvk(const std::string& group, const std::string& version, const std::string& kind) {
  return {{"group", group}, {"kind", kind}, {"version", version}};
}

// "corral.dev" -> "CorralDev", "coordination.k8s.io" -> "Coordination", "" -> "Core",
// as kube-apiserver names operations (readCorralDevV1alpha1NamespacedModel).
std::string GroupCamel(const std::string& group) {
  if (group.empty()) return "Core";
  std::string g = group;
  const std::string k8s = ".k8s.io";
  if (g.size() > k8s.size() && g.compare(g.size() - k8s.size(), k8s.size(), k8s) == 0) {
    g.resize(g.size() - k8s.size());
  }
  std::string out;
  bool upper = true;
  for (char c : g) {
    if (c == '.' || c == '-') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return out;
}

std::string Capitalize(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

// Strips what Swagger 2.0 cannot say: `nullable` (a nullable field loses its
// type, as kube-apiserver's v2 publishing does, so that kubectl 1.20's
// client-side validation accepts the nulls typed clients send).
void ToV2(json& schema) {
  if (!schema.is_object()) return;
  if (auto n = schema.find("nullable"); n != schema.end()) {
    const bool nullable = n->is_boolean() && n->get<bool>();
    schema.erase(n);
    if (nullable) schema.erase("type");
  }
  if (auto p = schema.find("properties"); p != schema.end()) {
    for (auto& [name, sub] : p->items()) ToV2(sub);
  }
  if (auto i = schema.find("items"); i != schema.end()) ToV2(*i);
  if (auto a = schema.find("additionalProperties"); a != schema.end()) ToV2(*a);
  if (auto a = schema.find("allOf"); a != schema.end()) {
    for (auto& s : *a) ToV2(s);
  }
}

constexpr char kIntOrString[] = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";

// Int-or-string fields reference the named IntOrString type, as built-in
// kinds do: `kubectl explain` then shows <IntOrString>, and kubectl 1.20's
// client-side validation accepts both forms through its format.
void NameIntOrString(json& schema, const Flavor& f) {
  if (!schema.is_object()) return;
  if (schema.value("x-kubernetes-int-or-string", false)) {
    json ref = f.RefWith(kIntOrString, schema.value("description", json()));
    if (auto d = schema.find("default"); d != schema.end()) ref["default"] = *d;
    schema = std::move(ref);
    return;
  }
  if (auto p = schema.find("properties"); p != schema.end()) {
    for (auto& [name, sub] : p->items()) NameIntOrString(sub, f);
  }
  if (auto i = schema.find("items"); i != schema.end()) NameIntOrString(*i, f);
  if (auto a = schema.find("additionalProperties"); a != schema.end()) NameIntOrString(*a, f);
}

json Str(const char* description) { return {{"type", "string"}, {"description", description}}; }

// The meta.k8s.io (and autoscaling/v1) schemas the kind schemas and
// operations reference. ObjectMeta is the one the kinds validate with.
json MetaSchemas(const SchemaRegistry& reg, const Flavor& f, bool with_scale) {
  json out = json::object();
  const json& object_meta = reg.KindSchema("Model")->at("properties").at("metadata");
  json meta = object_meta;
  json& props = meta["properties"];
  out[std::string(kMeta) + "OwnerReference"] = props["ownerReferences"]["items"];
  out[std::string(kMeta) + "ManagedFieldsEntry"] = props["managedFields"]["items"];
  props["ownerReferences"]["items"] = f.RefSchema(std::string(kMeta) + "OwnerReference");
  props["managedFields"]["items"] = f.RefSchema(std::string(kMeta) + "ManagedFieldsEntry");
  for (const char* t : {"creationTimestamp", "deletionTimestamp"}) {
    json ref = f.RefWith(std::string(kMeta) + "Time", props[t]["description"]);
    props[t] = std::move(ref);
  }
  // The type's own description; the kinds' metadata fields carry the field's.
  meta["description"] =
      "ObjectMeta is metadata that all persisted resources must have, which includes all objects "
      "users must create.";
  out[std::string(kMeta) + "ObjectMeta"] = std::move(meta);
  out[kIntOrString] = {{"type", "string"},
                       {"format", "int-or-string"},
                       {"description",
                        "IntOrString is a type that can hold an int32 or a string (e.g. 1 or "
                        "\"25%\")."}};
  out[std::string(kMeta) + "Time"] = {
      {"type", "string"},
      {"format", "date-time"},
      {"description",
       "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON "
       "(RFC 3339)."}};
  out[std::string(kMeta) + "MicroTime"] = {
      {"type", "string"},
      {"format", "date-time"},
      {"description", "MicroTime is version of Time with microsecond level precision."}};
  out[std::string(kMeta) + "FieldsV1"] = {
      {"type", "object"},
      {"description",
       "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format."}};
  out[std::string(kMeta) + "ListMeta"] = {
      {"type", "object"},
      {"description",
       "ListMeta describes metadata that synthetic resources must have, including lists."},
      {"properties",
       {{"continue", Str("continue may be set if the user set a limit on the number of items "
                         "returned; pass it as the continue parameter to get the next page.")},
        {"remainingItemCount",
         {{"type", "integer"},
          {"format", "int64"},
          {"description", "The number of subsequent items in the list which are not included."}}},
        {"resourceVersion", Str("The revision of the store this list was read at.")},
        {"selfLink", Str("Deprecated.")}}}};
  out[std::string(kMeta) + "StatusCause"] = {
      {"type", "object"},
      {"description", "StatusCause provides more information about an api.Status failure."},
      {"properties",
       {{"field", Str("The field of the resource that has caused this error, e.g. "
                      "spec.replicas.")},
        {"message", Str("A human-readable description of the cause of the error.")},
        {"reason", Str("A machine-readable description of the cause of the error.")}}}};
  out[std::string(kMeta) + "StatusDetails"] = {
      {"type", "object"},
      {"description",
       "StatusDetails is a set of additional properties that MAY be set by the "
       "server to provide additional information about a response."},
      {"properties",
       {{"causes",
         {{"type", "array"},
          {"items", f.RefSchema(std::string(kMeta) + "StatusCause")},
          {"x-kubernetes-list-type", "atomic"},
          {"description", "The Causes array includes more details associated with the failure."}}},
        {"group", Str("The group attribute of the resource associated with the status.")},
        {"kind", Str("The kind attribute of the resource associated with the status.")},
        {"name", Str("The name attribute of the resource associated with the status.")},
        {"retryAfterSeconds",
         {{"type", "integer"},
          {"format", "int32"},
          {"description", "The number of seconds before the client should attempt to retry."}}},
        {"uid", Str("UID of the resource.")}}}};
  out[std::string(kMeta) + "Status"] = {
      {"type", "object"},
      {"description", "Status is a return value for calls that don't return other objects."},
      {"properties",
       {{"apiVersion", Str("APIVersion of this representation: v1.")},
        {"code",
         {{"type", "integer"},
          {"format", "int32"},
          {"description", "Suggested HTTP return code for this status, 0 if not set."}}},
        {"details", f.RefWith(std::string(kMeta) + "StatusDetails",
                              "Extended data associated with the reason.")},
        {"kind", Str("Kind: Status.")},
        {"message", Str("A human-readable description of the status of this operation.")},
        {"metadata", f.RefWith(std::string(kMeta) + "ListMeta", "Standard list metadata.")},
        {"reason", Str("A machine-readable description of why this operation is in the "
                       "Failure status (NotFound, AlreadyExists, Conflict, Invalid, ...).")},
        {"status", Str("Status of the operation. One of: Success or Failure.")}}},
      {"x-kubernetes-group-version-kind", json::array({Gvk("", "v1", "Status")})}};
  out[std::string(kMeta) + "Preconditions"] = {
      {"type", "object"},
      {"description", "Preconditions must be fulfilled before an operation is carried out."},
      {"properties",
       {{"resourceVersion", Str("Specifies the target ResourceVersion.")},
        {"uid", Str("Specifies the target UID.")}}}};
  json delete_gvks = json::array({Gvk("", "v1", "DeleteOptions")});
  json watch_gvks = json::array({Gvk("", "v1", "WatchEvent")});
  std::set<std::pair<std::string, std::string>> gvs;
  for (const auto& r : reg.Resources()) gvs.insert({r.group, r.version});
  for (const auto& [g, v] : gvs) {
    if (g.empty()) continue;
    delete_gvks.push_back(Gvk(g, v, "DeleteOptions"));
    watch_gvks.push_back(Gvk(g, v, "WatchEvent"));
  }
  out[std::string(kMeta) + "DeleteOptions"] = {
      {"type", "object"},
      {"description", "DeleteOptions may be provided when deleting an API object."},
      {"properties",
       {{"apiVersion", Str("APIVersion of this representation.")},
        {"dryRun",
         {{"type", "array"},
          {"items", {{"type", "string"}}},
          {"x-kubernetes-list-type", "atomic"},
          {"description", "When present (All), the deletion is checked but not persisted."}}},
        {"gracePeriodSeconds",
         {{"type", "integer"},
          {"format", "int64"},
          {"description", "The duration in seconds before the object should be deleted."}}},
        {"kind", Str("Kind: DeleteOptions.")},
        {"orphanDependents",
         {{"type", "boolean"}, {"description", "Deprecated: use propagationPolicy (Orphan)."}}},
        {"preconditions", f.RefWith(std::string(kMeta) + "Preconditions",
                                    "Must be fulfilled before a deletion is carried out.")},
        {"propagationPolicy",
         Str("Whether and how garbage collection will be performed: Orphan, Background or "
             "Foreground.")}}},
      {"x-kubernetes-group-version-kind", delete_gvks}};
  out["io.k8s.apimachinery.pkg.runtime.RawExtension"] = {
      {"type", "object"},
      {"description", "RawExtension holds an embedded object (the object of a watch event)."}};
  out[std::string(kMeta) + "WatchEvent"] = {
      {"type", "object"},
      {"description", "Event represents a single event to a watched resource."},
      {"required", json::array({"type", "object"})},
      {"properties",
       {{"object", f.RefWith("io.k8s.apimachinery.pkg.runtime.RawExtension",
                             "The object: the new state for ADDED and MODIFIED, the state before "
                             "deletion for DELETED, a Status for ERROR, an object with only "
                             "metadata.resourceVersion for BOOKMARK.")},
        {"type", Str("ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.")}}},
      {"x-kubernetes-group-version-kind", watch_gvks}};
  out[std::string(kMeta) + "Patch"] = {
      {"type", "object"},
      {"description",
       "Patch is provided to give a concrete name and type to the Kubernetes "
       "PATCH request body."}};
  if (with_scale) {
    out[std::string(kScale) + "Spec"] = {
        {"type", "object"},
        {"description", "ScaleSpec describes the attributes of a scale subresource."},
        {"properties",
         {{"replicas",
           {{"type", "integer"},
            {"format", "int32"},
            {"description", "The desired number of instances for the scaled object."}}}}}};
    out[std::string(kScale) + "Status"] = {
        {"type", "object"},
        {"description", "ScaleStatus represents the current status of a scale subresource."},
        {"required", json::array({"replicas"})},
        {"properties",
         {{"replicas",
           {{"type", "integer"},
            {"format", "int32"},
            {"description", "The actual number of observed instances of the scaled object."}}},
          {"selector", Str("Label query over the replicas, in string form.")}}}};
    out[kScale] = {
        {"type", "object"},
        {"description", "Scale represents a scaling request for a resource."},
        {"properties",
         {{"apiVersion", Str("APIVersion: autoscaling/v1.")},
          {"kind", Str("Kind: Scale.")},
          {"metadata", f.RefWith(std::string(kMeta) + "ObjectMeta", "Standard object metadata.")},
          {"spec", f.RefWith(std::string(kScale) + "Spec", "The desired replicas.")},
          {"status", f.RefWith(std::string(kScale) + "Status", "The current replicas.")}}},
        {"x-kubernetes-group-version-kind", json::array({Gvk("autoscaling", "v1", "Scale")})}};
  }
  if (!f.v3) {
    for (auto& [name, schema] : out.items()) ToV2(schema);
  }
  return out;
}

// A kind's schema and its List's, as published.
void KindSchemas(const SchemaRegistry& reg, const ResourceInfo& r, const Flavor& f, json& out) {
  json schema = *reg.KindSchema(r.kind);
  json& metadata = schema["properties"]["metadata"];
  metadata = f.RefWith(std::string(kMeta) + "ObjectMeta", metadata["description"]);
  NameIntOrString(schema, f);
  if (!f.v3) ToV2(schema);
  schema["x-kubernetes-group-version-kind"] = json::array({Gvk(r.group, r.version, r.kind)});
  const std::string name = reg.OpenApiName(r.kind);
  const json& props = schema["properties"];
  out[name + "List"] = {
      {"type", "object"},
      {"description", r.list_kind + " is a list of " + r.kind + "."},
      {"required", json::array({"items"})},
      {"properties",
       {{"apiVersion", props["apiVersion"]},
        {"kind", props["kind"]},
        {"items",
         {{"type", "array"},
          {"items", f.RefSchema(name)},
          {"description", "List of " + r.plural + "."}}},
        {"metadata", f.RefWith(std::string(kMeta) + "ListMeta",
                               "Standard list metadata. More info: "
                               "https://git.k8s.io/community/contributors/devel/"
                               "sig-architecture/api-conventions.md#types-kinds")}}},
      {"x-kubernetes-group-version-kind", json::array({Gvk(r.group, r.version, r.list_kind)})}};
  out[name] = std::move(schema);
}

// --- paths ------------------------------------------------------------------

struct Param {
  const char* name;
  const char* type;
  const char* description;
};

const Param kPretty = {"pretty", "string",
                       "If 'true', then the output is pretty printed. Defaults to 'false' unless "
                       "the user-agent indicates a browser or command-line HTTP tool (curl and "
                       "wget)."};
const Param kDryRun = {"dryRun", "string",
                       "When present, indicates that modifications should not be persisted. The "
                       "only valid value is All: all dry run stages will be processed."};
const Param kFieldManager = {"fieldManager", "string",
                             "A name associated with the actor or entity that is making these "
                             "changes. Required for apply requests (application/apply-patch)."};
const Param kFieldValidation = {
    "fieldValidation", "string",
    "How the server treats fields the schema does not know: Ignore (drop them silently), Warn "
    "(drop them with a Warning header per field; the default) or Strict (fail the request with "
    "BadRequest naming every unknown field)."};
const Param kForce = {"force", "boolean",
                      "Force is going to \"force\" Apply requests: the caller takes ownership of "
                      "fields other managers own. Must be unset for non-apply patch requests."};
const Param kGracePeriod = {"gracePeriodSeconds", "integer",
                            "The duration in seconds before the object should be deleted."};
const Param kOrphan = {"orphanDependents", "boolean",
                       "Deprecated: use propagationPolicy. Should the dependent objects be "
                       "orphaned."};
const Param kPropagation = {"propagationPolicy", "string",
                            "Whether and how garbage collection will be performed: Orphan, "
                            "Background (the default) or Foreground."};
const Param kListParams[] = {
    {"allowWatchBookmarks", "boolean",
     "Requests watch events with type BOOKMARK (sent every few seconds with the current "
     "resourceVersion)."},
    {"continue", "string", "The continue token of the previous page of a chunked list."},
    {"fieldSelector", "string",
     "A selector to restrict the list of returned objects by their fields (metadata.name, "
     "metadata.namespace and the kind's selectable fields). Defaults to everything."},
    {"labelSelector", "string",
     "A selector to restrict the list of returned objects by their labels. Defaults to "
     "everything."},
    {"limit", "integer",
     "The maximum number of responses to return for a list call; metadata.continue then leads "
     "to the next page."},
    {"resourceVersion", "string",
     "Lists: 0 means any version; otherwise the list is read at the latest version. Watches: "
     "events after this version (410 Expired when it was compacted away)."},
    {"resourceVersionMatch", "string", "How resourceVersion is applied to list calls."},
    {"sendInitialEvents", "boolean",
     "With watch, starts with synthetic ADDED events for the current state."},
    {"timeoutSeconds", "integer", "Timeout for the list/watch call."},
    {"watch", "boolean",
     "Watch for changes to the described resources and return them as a stream of add, update, "
     "and remove notifications."},
};

json QueryParam(const Param& p, const Flavor& f) {
  json out = {{"name", p.name}, {"in", "query"}, {"description", p.description}};
  json type = {{"type", p.type}, {"uniqueItems", true}};
  if (f.v3) {
    out["schema"] = type;
  } else {
    out.update(type);
  }
  return out;
}

json PathParam(const char* name, const char* description, const Flavor& f) {
  json out = {{"name", name}, {"in", "path"}, {"required", true}, {"description", description}};
  json type = {{"type", "string"}, {"uniqueItems", true}};
  if (f.v3) {
    out["schema"] = type;
  } else {
    out.update(type);
  }
  return out;
}

const std::vector<std::string> kProduces = {"application/json", "application/yaml"};
const std::vector<std::string> kPatchTypes = {
    "application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"};

struct OpSpec {
  std::string method;  // get, put, post, patch, delete
  std::string action;  // x-kubernetes-action: get, list, post, put, patch, delete, deletecollection
  std::string id;
  std::string description;
  json gvk;
  std::vector<const Param*> params;
  std::string body;  // schema name of the request body; "" for none
  std::vector<std::string> consumes;
  std::vector<std::pair<std::string, std::string>> responses;  // code -> schema name
  bool watchable = false;                                      // list: also streams WatchEvents
};

json Operation(const OpSpec& op, const Flavor& f, const std::string& tag) {
  json out = {{"description", op.description},
              {"operationId", op.id},
              {"tags", json::array({tag})},
              {"x-kubernetes-action", op.action},
              {"x-kubernetes-group-version-kind", op.gvk}};
  json params = json::array();
  for (const Param* p : op.params) params.push_back(QueryParam(*p, f));
  std::vector<std::string> produces = kProduces;
  if (op.watchable) {
    produces.push_back("application/json;stream=watch");
  }
  if (f.v3) {
    if (!op.body.empty()) {
      json content = json::object();
      for (const auto& type : op.consumes) content[type] = {{"schema", f.RefSchema(op.body)}};
      out["requestBody"] = {{"content", content}, {"required", op.method != "delete"}};
    }
    json responses = json::object();
    for (const auto& [code, schema] : op.responses) {
      json content = json::object();
      for (const auto& type : produces) content[type] = {{"schema", f.RefSchema(schema)}};
      responses[code] = {{"description", code == "201"   ? "Created"
                                         : code == "202" ? "Accepted"
                                                         : "OK"},
                         {"content", content}};
    }
    responses["401"] = {{"description", "Unauthorized"}};
    out["responses"] = responses;
  } else {
    if (!op.body.empty()) {
      params.push_back({{"name", "body"},
                        {"in", "body"},
                        {"required", op.method != "delete"},
                        {"schema", f.RefSchema(op.body)}});
      out["consumes"] = op.consumes;
    } else {
      out["consumes"] = json::array({"*/*"});
    }
    out["produces"] = produces;
    out["schemes"] = json::array({"https"});
    json responses = json::object();
    for (const auto& [code, schema] : op.responses) {
      responses[code] = {{"description", code == "201"   ? "Created"
                                         : code == "202" ? "Accepted"
                                                         : "OK"},
                         {"schema", f.RefSchema(schema)}};
    }
    responses["401"] = {{"description", "Unauthorized"}};
    out["responses"] = responses;
  }
  if (!params.empty()) out["parameters"] = params;
  return out;
}

// Every path of one resource: the collection, the item, /status, /scale, and
// for namespaced kinds the list across namespaces.
void ResourcePaths(const SchemaRegistry& reg, const ResourceInfo& r, const Flavor& f, json& paths) {
  const std::string base =
      r.group.empty() ? "/api/" + r.version : "/apis/" + r.group + "/" + r.version;
  const std::string tag =
      (r.group.empty() ? std::string("core") : [&] {
        std::string g = GroupCamel(r.group);
        g[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(g[0])));
        return g;
      }()) + "_" + r.version;
  const std::string prefix = GroupCamel(r.group) + Capitalize(r.version);
  const std::string scoped = (r.namespaced ? "Namespaced" : "") + r.kind;
  const std::string collection =
      base + (r.namespaced ? "/namespaces/{namespace}/" : "/") + r.plural;
  const std::string item = collection + "/{name}";
  const std::string schema = reg.OpenApiName(r.kind);
  const json gvk = Gvk(r.group, r.version, r.kind);
  const std::string status = std::string(kMeta) + "Status";
  const std::string delete_options = std::string(kMeta) + "DeleteOptions";
  const std::string patch = std::string(kMeta) + "Patch";

  json ns_param =
      PathParam("namespace", "object name and auth scope, such as for teams and projects", f);
  json name_param = PathParam("name", ("name of the " + r.kind).c_str(), f);
  json pretty = QueryParam(kPretty, f);

  std::vector<const Param*> list_params;
  for (const Param& p : kListParams) list_params.push_back(&p);
  std::vector<const Param*> deletecollection_params = {&kDryRun, &kGracePeriod, &kOrphan,
                                                       &kPropagation};
  deletecollection_params.insert(deletecollection_params.end(), list_params.begin(),
                                 list_params.end());
  const std::vector<const Param*> write_params = {&kDryRun, &kFieldManager, &kFieldValidation};
  const std::vector<const Param*> patch_params = {&kDryRun, &kFieldManager, &kFieldValidation,
                                                  &kForce};
  const std::vector<const Param*> delete_params = {&kDryRun, &kGracePeriod, &kOrphan,
                                                   &kPropagation};

  auto path_item = [&](bool with_name) {
    json params = json::array();
    if (with_name) params.push_back(name_param);
    if (r.namespaced) params.push_back(ns_param);
    params.push_back(pretty);
    return json{{"parameters", params}};
  };

  json coll = path_item(false);
  coll["get"] = Operation({"get",
                           "list",
                           "list" + prefix + scoped,
                           "list or watch objects of kind " + r.kind,
                           gvk,
                           list_params,
                           "",
                           {},
                           {{"200", schema + "List"}},
                           true},
                          f, tag);
  coll["post"] = Operation({"post",
                            "post",
                            "create" + prefix + scoped,
                            "create a " + r.kind,
                            gvk,
                            write_params,
                            schema,
                            {"*/*"},
                            {{"200", schema}, {"201", schema}, {"202", schema}}},
                           f, tag);
  coll["delete"] = Operation({"delete",
                              "deletecollection",
                              "deletecollection" + prefix + scoped,
                              "delete collection of " + r.kind,
                              gvk,
                              deletecollection_params,
                              delete_options,
                              {"*/*"},
                              {{"200", status}}},
                             f, tag);
  paths[collection] = std::move(coll);

  json one = path_item(true);
  one["get"] = Operation({"get",
                          "get",
                          "read" + prefix + scoped,
                          "read the specified " + r.kind,
                          gvk,
                          {},
                          "",
                          {},
                          {{"200", schema}}},
                         f, tag);
  one["put"] = Operation({"put",
                          "put",
                          "replace" + prefix + scoped,
                          "replace the specified " + r.kind,
                          gvk,
                          write_params,
                          schema,
                          {"*/*"},
                          {{"200", schema}, {"201", schema}}},
                         f, tag);
  one["patch"] = Operation({"patch",
                            "patch",
                            "patch" + prefix + scoped,
                            "partially update the specified " + r.kind,
                            gvk,
                            patch_params,
                            patch,
                            kPatchTypes,
                            {{"200", schema}, {"201", schema}}},
                           f, tag);
  one["delete"] = Operation({"delete",
                             "delete",
                             "delete" + prefix + scoped,
                             "delete a " + r.kind,
                             gvk,
                             delete_params,
                             delete_options,
                             {"*/*"},
                             {{"200", schema}, {"202", schema}}},
                            f, tag);
  paths[item] = std::move(one);

  // /status and /scale: get, put and patch of one body type each.
  auto subresource = [&](const std::string& sub, const std::string& title, const json& sub_gvk,
                         const json& body) {
    json item_ops = path_item(true);
    item_ops["get"] = Operation({"get",
                                 "get",
                                 "read" + prefix + scoped + title,
                                 "read " + sub + " of the specified " + r.kind,
                                 sub_gvk,
                                 {},
                                 "",
                                 {},
                                 {{"200", body}}},
                                f, tag);
    item_ops["put"] = Operation({"put",
                                 "put",
                                 "replace" + prefix + scoped + title,
                                 "replace " + sub + " of the specified " + r.kind,
                                 sub_gvk,
                                 write_params,
                                 body,
                                 {"*/*"},
                                 {{"200", body}, {"201", body}}},
                                f, tag);
    item_ops["patch"] = Operation({"patch",
                                   "patch",
                                   "patch" + prefix + scoped + title,
                                   "partially update " + sub + " of the specified " + r.kind,
                                   sub_gvk,
                                   patch_params,
                                   patch,
                                   kPatchTypes,
                                   {{"200", body}, {"201", body}}},
                                  f, tag);
    paths[item + "/" + sub] = std::move(item_ops);
  };
  if (r.HasSubresource("status")) subresource("status", "Status", gvk, schema);
  if (r.HasSubresource("scale"))
    subresource("scale", "Scale", Gvk("autoscaling", "v1", "Scale"), kScale);
  if (r.namespaced) {
    json all = {{"parameters", json::array({pretty})}};
    all["get"] = Operation({"get",
                            "list",
                            "list" + prefix + r.kind + "ForAllNamespaces",
                            "list or watch objects of kind " + r.kind + " in all namespaces",
                            gvk,
                            list_params,
                            "",
                            {},
                            {{"200", schema + "List"}},
                            true},
                           f, tag);
    paths[base + "/" + r.plural] = std::move(all);
  }
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return "";
  }
  std::string out;
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02X", digest[i]);
    out += buf;
  }
  return out;
}

// "apis/corral.dev/v1alpha1" or "api/v1".
std::string GroupVersionPath(const std::string& group, const std::string& version) {
  return group.empty() ? "api/" + version : "apis/" + group + "/" + version;
}

}  // namespace

std::string SchemaRegistry::OpenApiName(std::string_view kind) const {
  const ResourceInfo* r = ResourceForKind(kind);
  if (r == nullptr) return "";
  if (r->group.empty()) return "io.k8s.api.core." + r->version + "." + r->kind;
  const std::string k8s = ".k8s.io";
  const std::string& g = r->group;
  if (g.size() > k8s.size() && g.compare(g.size() - k8s.size(), k8s.size(), k8s) == 0) {
    return "io.k8s.api." + g.substr(0, g.size() - k8s.size()) + "." + r->version + "." + r->kind;
  }
  // Reverse-DNS of the group: corral.dev -> dev.corral.
  std::vector<std::string> labels;
  for (size_t start = 0;;) {
    const size_t dot = g.find('.', start);
    labels.push_back(g.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  std::string reversed;
  for (auto it = labels.rbegin(); it != labels.rend(); ++it) {
    if (!reversed.empty()) reversed += ".";
    reversed += *it;
  }
  return reversed + "." + r->version + "." + r->kind;
}

json SchemaRegistry::OpenApiV3(std::string_view group, std::string_view version) const {
  const Flavor f{true};
  json paths = json::object();
  json schemas = json::object();
  bool any = false, with_scale = false;
  for (const auto& r : Resources()) {
    if (r.group != group || r.version != version) continue;
    any = true;
    with_scale = with_scale || r.HasSubresource("scale");
    ResourcePaths(*this, r, f, paths);
    KindSchemas(*this, r, f, schemas);
  }
  if (!any) return nullptr;
  schemas.update(MetaSchemas(*this, f, with_scale));
  return {{"openapi", "3.0.0"},
          {"info", {{"title", "Corral"}, {"version", std::string(version)}}},
          {"paths", paths},
          {"components", {{"schemas", schemas}}}};
}

json SchemaRegistry::OpenApiV3Index() const {
  json paths = json::object();
  std::set<std::pair<std::string, std::string>> done;
  for (const auto& r : Resources()) {
    if (!done.insert({r.group, r.version}).second) continue;
    const std::string gv = GroupVersionPath(r.group, r.version);
    const std::string hash = Sha256Hex(OpenApiV3(r.group, r.version).dump());
    paths[gv] = {{"serverRelativeURL", "/openapi/v3/" + gv + "?hash=" + hash}};
  }
  return {{"paths", paths}};
}

json SchemaRegistry::OpenApiV2() const {
  const Flavor f{false};
  json paths = json::object();
  json definitions = json::object();
  bool with_scale = false;
  for (const auto& r : Resources()) {
    with_scale = with_scale || r.HasSubresource("scale");
    ResourcePaths(*this, r, f, paths);
    KindSchemas(*this, r, f, definitions);
  }
  definitions.update(MetaSchemas(*this, f, with_scale));
  return {{"swagger", "2.0"},
          {"info", {{"title", "Corral"}, {"version", "v1alpha1"}}},
          {"paths", paths},
          {"definitions", definitions}};
}

}  // namespace corral::api
