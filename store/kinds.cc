#include "store/kinds.h"

namespace corral::store {

std::vector<std::string> KindInfo::FieldSelectorFields() const {
  std::vector<std::string> out = {"metadata.name"};
  if (namespaced) out.push_back("metadata.namespace");
  out.insert(out.end(), selectable_fields.begin(), selectable_fields.end());
  return out;
}

KindRegistry KindRegistry::Default() {
  KindRegistry r;
  r.Add({"Node", "corral.dev", "v1alpha1", "nodes", false, {"spec.unschedulable"}});
  r.Add({"Model", "corral.dev", "v1alpha1", "models", true, {"spec.engine"}});
  r.Add({"ModelDeployment",
         "corral.dev",
         "v1alpha1",
         "modeldeployments",
         true,
         {"spec.modelRef.name"}});
  r.Add({"Replica",
         "corral.dev",
         "v1alpha1",
         "replicas",
         true,
         {"spec.nodeName", "spec.deployment", "status.phase"}});
  r.Add({"Event",
         "",
         "v1",
         "events",
         true,
         {"involvedObject.kind", "involvedObject.name", "involvedObject.namespace",
          "involvedObject.uid", "reason", "type"}});
  r.Add({"Lease", "coordination.k8s.io", "v1", "leases", true, {}});
  return r;
}

void KindRegistry::Add(KindInfo info) {
  for (auto& k : kinds_) {
    if (k.kind == info.kind) {
      k = std::move(info);
      return;
    }
  }
  kinds_.push_back(std::move(info));
}

const KindInfo* KindRegistry::Find(std::string_view kind) const {
  for (const auto& k : kinds_) {
    if (k.kind == kind) return &k;
  }
  return nullptr;
}

}  // namespace corral::store
