#pragma once
// The versioned schema of corral.dev/v1alpha1 (and the core/v1 Event Corral
// serves): one source of truth from which validation, defaulting, pruning,
// the OpenAPI documents (v3 for kubectl >= 1.25 and `kubectl explain`, v2 for
// older kubectl's client-side validation) and server-side printing (Table
// columns) are all derived.
//
// Each kind's schema is an OpenAPI v3 structural schema, as a CRD's
// openAPIV3Schema: type, properties, required, items, additionalProperties,
// enum, minimum/maximum, minLength/maxLength, pattern, format, default,
// description, plus these extensions:
//   x-kubernetes-preserve-unknown-fields  keep unknown fields below this node
//   x-kubernetes-int-or-string            (e.g. maxSurge: 1 or "25%")
//   x-corral-immutable                    the value may not change once set
//                                          (a Replica's spec.nodeName once bound)
//
// Thread-safety: immutable after construction; share freely.
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "store/kinds.h"

namespace corral::api {

enum class FieldValidation { kStrict, kWarn, kIgnore };

struct ValidationResult {
  // Wrong types, missing required fields, out-of-range or not-in-enum values,
  // bad patterns, immutable fields changed. field is a dotted path with list
  // indexes ("spec.autoscaling.behavior.scaleUp.policies[0].value"); message
  // says what is wrong and what is allowed (as Kubernetes words it:
  // `Unsupported value: "x": supported values: "sim", "llamacpp"`).
  std::vector<common::FieldCause> errors;
  // Paths of fields the schema does not know ("spec.bogus", map keys as
  // "spec.placement[x]"), in key order (nlohmann::json sorts object keys), for
  // fieldValidation Strict (an error) / Warn (a warning header).
  std::vector<std::string> unknown_fields;
};

// How a kind is served: discovery (APIResourceList), URL paths, kubectl's
// short names and categories. Derived from the same schema documents.
struct ResourceInfo {
  std::string kind;                      // "ModelDeployment"
  std::string list_kind;                 // "ModelDeploymentList"
  std::string plural;                    // "modeldeployments" (the URL segment)
  std::string singular;                  // "modeldeployment"
  std::vector<std::string> short_names;  // {"md"}
  std::vector<std::string> categories;   // {"all", "corral"}: `kubectl get all` lists it
  std::vector<std::string>
      verbs;  // create, delete, deletecollection, get, list, patch, update, watch
  std::vector<std::string>
      subresources;  // "status" on every kind; "scale" (autoscaling/v1) on ModelDeployment
  bool namespaced = true;
  std::string group;    // "corral.dev"; "" for core/v1 (Event)
  std::string version;  // "v1alpha1"

  std::string ApiVersion() const { return group.empty() ? version : group + "/" + version; }
  bool HasSubresource(std::string_view name) const;
};

// One server-side printing column (a Table's columnDefinition).
struct PrinterColumn {
  std::string name;  // "READY" -> shown upper-cased by kubectl; give it as Kubernetes does: "Ready"
  std::string type;  // "string", "integer", "number", "boolean", "date"
  std::string format;  // "name" for the name column, else ""
  std::string description;
  int priority = 0;  // > 0: only with -o wide
};

class SchemaRegistry {
 public:
  // Corral's kinds (Node, Model, ModelDeployment, Replica, Event, Lease), from
  // the v1alpha1 schema compiled into the binary.
  static const SchemaRegistry& Default();

  // The store's view of the same kinds (equal to store::KindRegistry::Default()).
  const store::KindRegistry& kinds() const;

  // Every resource, in discovery order (Node, Model, ModelDeployment, Replica,
  // Event, Lease).
  const std::vector<ResourceInfo>& Resources() const;
  // By plural (the URL segment, e.g. "modeldeployments"; plurals are unique
  // across Corral's groups). nullptr when unknown.
  const ResourceInfo* Resource(std::string_view plural) const;
  // By group and plural, for routing a URL ("" is the core group of /api/v1).
  const ResourceInfo* Resource(std::string_view group, std::string_view plural) const;
  // By kind ("ModelDeployment"); nullptr when unknown.
  const ResourceInfo* ResourceForKind(std::string_view kind) const;
  // The OpenAPI component/definition name of a kind: "dev.corral.v1alpha1.Model",
  // "io.k8s.api.core.v1.Event", "io.k8s.api.coordination.v1.Lease"; "" when unknown.
  std::string OpenApiName(std::string_view kind) const;

  // The structural schema of one kind (the whole object: apiVersion, kind,
  // metadata, spec, status); nullptr for an unknown kind.
  const nlohmann::json* KindSchema(std::string_view kind) const;

  // Validates spec and status (and the types of apiVersion/kind/metadata
  // fields) of a whole object against its kind's schema. Metadata name and
  // label syntax is the store's job (store::ValidateObject); this checks types
  // and the schema's own constraints. Unknown kind -> one error on "kind".
  ValidationResult Validate(std::string_view kind, const nlohmann::json& object) const;

  // Checks an update against the stored object: immutable fields
  // (x-corral-immutable: may be set once when absent/empty, never changed after).
  std::vector<common::FieldCause> ValidateUpdate(std::string_view kind,
                                                 const nlohmann::json& old_obj,
                                                 const nlohmann::json& new_obj) const;

  // Fills schema defaults into absent fields (recursively, only where the
  // parent object exists or itself has a default), as the apiserver does for CRDs.
  void ApplyDefaults(std::string_view kind, nlohmann::json& object) const;

  // Removes fields the schema does not know (CRD pruning); metadata is left
  // to the caller. Returns the removed paths.
  std::vector<std::string> Prune(std::string_view kind, nlohmann::json& object) const;

  // Table columns for a kind, in order. Name (format "name") is first, except
  // for Event, whose table follows `kubectl get events` (Last Seen, Type,
  // Reason, Object, Message; Name only with -o wide). Unknown kind: Name, Age.
  std::vector<PrinterColumn> Columns(std::string_view kind) const;
  // One row's cells for `object`, aligned with Columns(kind). "date" columns
  // (Age) are rendered by the server as Kubernetes' short human durations
  // ("5s", "3m2s", "4h", "2d3h") relative to now_unix_seconds.
  nlohmann::json Cells(std::string_view kind, const nlohmann::json& object,
                       int64_t now_unix_seconds) const;

  // GET /openapi/v3/apis/corral.dev/v1alpha1 (and /openapi/v3/api/v1 for
  // group ""): paths for every resource of that group/version (list, item,
  // /status, /scale) with operations that carry
  // "x-kubernetes-group-version-kind" (an object) and a fieldValidation query
  // parameter; PATCH request content types WITHOUT strategic merge patch;
  // components.schemas named "dev.corral.v1alpha1.Model" (reverse-DNS group),
  // "io.k8s.api.core.v1.Event", the meta.k8s.io types they reference
  // (ObjectMeta, ...), each kind schema with "x-kubernetes-group-version-kind":
  // [{group,version,kind}] (a list). A null json for a group/version Corral
  // does not serve.
  nlohmann::json OpenApiV3(std::string_view group, std::string_view version) const;
  // GET /openapi/v3: {"paths":{"apis/corral.dev/v1alpha1":{"serverRelativeURL":
  // "/openapi/v3/apis/corral.dev/v1alpha1?hash=<stable hash of that document>"}, "api/v1": ...}}
  nlohmann::json OpenApiV3Index() const;
  // GET /openapi/v2 as JSON (Swagger 2.0): definitions for every kind with
  // x-kubernetes-group-version-kind lists and the paths, as kube-apiserver
  // publishes for CRDs. api/openapi_proto.h turns it into the protobuf form.
  nlohmann::json OpenApiV2() const;

 private:
  SchemaRegistry();
  struct Impl;
  const Impl* impl_;
};

// The value at a path of object keys, or nullptr when any step is missing or
// not an object.
const nlohmann::json* FindPath(const nlohmann::json& object,
                               std::initializer_list<const char*> path);

// Kubernetes' short human duration, as `kubectl get` prints AGE
// (k8s.io/apimachinery/pkg/util/duration.HumanDuration).
std::string HumanDuration(int64_t seconds);

}  // namespace corral::api
