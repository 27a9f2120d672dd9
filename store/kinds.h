#pragma once
// The kinds the store accepts and what it needs to know about each: its API
// group/version, whether it is namespaced, and which fields a field selector
// may name. The API issue's versioned schema registers into this.
//
// Thread-safety: immutable after construction; share freely.
#include <string>
#include <string_view>
#include <vector>

namespace corral::store {

struct KindInfo {
  std::string kind;     // "ModelDeployment"
  std::string group;    // "corral.dev"; "" for the core group (Event)
  std::string version;  // "v1alpha1"
  std::string plural;   // "modeldeployments"
  bool namespaced = true;
  // Field-selector fields besides metadata.name and metadata.namespace.
  std::vector<std::string> selectable_fields;

  std::string ApiVersion() const { return group.empty() ? version : group + "/" + version; }
  // "modeldeployments.corral.dev", as Kubernetes names a resource in messages.
  std::string Resource() const { return group.empty() ? plural : plural + "." + group; }
  std::vector<std::string> FieldSelectorFields() const;
};

class KindRegistry {
 public:
  // Corral's kinds: Node, Model, ModelDeployment, Replica, Event, Lease.
  static KindRegistry Default();
  void Add(KindInfo info);
  const KindInfo* Find(std::string_view kind) const;
  const std::vector<KindInfo>& kinds() const { return kinds_; }

 private:
  std::vector<KindInfo> kinds_;
};

}  // namespace corral::store
