#pragma once
// Field ownership and server-side apply, after
// sigs.k8s.io/structured-merge-diff as Kubernetes uses it for custom resources
// (lists are atomic unless the schema says otherwise; maps merge key by key).
//
// metadata.managedFields is a list of entries
//   {"manager":"kubectl","operation":"Apply"|"Update","apiVersion":"corral.dev/v1alpha1",
//    "time":"2026-11-24T08:00:00Z","fieldsType":"FieldsV1",
//    "fieldsV1":{"f:spec":{"f:replicas":{}}}, "subresource":"status" (when so)}
// as Kubernetes serialises them. Ownership covers spec, status,
// metadata.labels/annotations/finalizers/ownerReferences; not name, uid,
// resourceVersion, generation, creationTimestamp, managedFields.
//
// Pure functions; thread-safe.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace corral::api {

struct ApplyOptions {
  std::string manager;      // fieldManager; required (InvalidArgument when empty)
  bool force = false;       // take ownership of conflicting fields
  std::string subresource;  // "" or "status"
  std::string now;          // RFC 3339 time for managedFields[].time
};

// Server-side apply of `applied` (the user's partial intent: apiVersion, kind,
// metadata.name, and the fields they manage) onto `live` (null when the object
// does not exist yet). Returns the merged object with updated managedFields:
//  - fields in `applied` are set; the manager owns exactly the fields it applied;
//  - fields this manager applied before but omits now are removed from the
//    object, unless another manager also owns them;
//  - a field another manager owns with a different value is a conflict:
//    Conflict status with one cause per field {reason "FieldManagerConflict",
//    field ".spec.replicas", message "conflict with \"other\" using
//    corral.dev/v1alpha1"} and a message like Kubernetes' ("Apply failed with 1
//    conflict: conflict with \"other\" using corral.dev/v1alpha1: .spec.replicas");
//    with force the manager takes them over (removed from the others' sets).
// Only the parts of `live` in scope (see above) are merged; server-owned
// metadata of `live` is kept as it is.
common::Result<nlohmann::json> ServerSideApply(const nlohmann::json& live,
                                               const nlohmann::json& applied,
                                               const ApplyOptions& options);

// Records a non-apply write (create, update, patch, /status, /scale) by
// `manager` with operation "Update": the fields that differ between `before`
// (null on create) and `after` become owned by manager (and are removed from
// other managers' sets — an Update never conflicts). Returns `after` with its
// managedFields updated. If `after` carries managedFields that differ from
// `before`'s (a client wrote them, as kubectl's client-side → server-side
// migration does), those are kept as written and only validated (each entry
// an object with manager/operation/fieldsV1); an empty list clears them.
common::Result<nlohmann::json> TrackUpdate(const nlohmann::json& before, nlohmann::json after,
                                           const ApplyOptions& options);

}  // namespace corral::api
