#pragma once
// `corral worker`'s agent: registers this machine as a Node, keeps its Lease
// renewed, and runs the Replicas bound to it — Loading (asynchronously, with
// progress in status) -> Ready -> Draining -> gone, or Failed with a reason
// and a message a person can act on. The replicas' engines are served by an
// InferenceServer over the agent's ReplicaTable.
//
// Drain: a Replica carrying the finalizer `corral.dev/drain` stays while its
// in-flight requests finish (up to drain_grace) after it is deleted; then the
// agent unloads it and removes the finalizer, which completes the delete.
//
// Thread-safety: Start/Stop from one thread; the rest is internal.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/status.h"
#include "worker/engine.h"
#include "worker/inference_api.h"
#include "worker/kube_client.h"

namespace corral::worker {

inline constexpr const char* kDrainFinalizer = "corral.dev/drain";
inline constexpr const char* kLeaseNamespace = "corral-node-lease";

struct WorkerOptions {
  std::string name;      // Node name (= the node token's user)
  std::string endpoint;  // base URL of this worker's inference API
  std::map<std::string, std::string> labels;
  std::string cache_dir;         // local model files (*.gguf)
  int gpus = -1;                 // -1: detect with nvidia-smi
  int64_t gpu_memory_bytes = 0;  // per GPU, with --gpus
  std::chrono::seconds lease_duration{15};
  std::chrono::seconds lease_renew{5};
  std::chrono::seconds status_interval{30};  // Node status refresh
  std::chrono::seconds drain_grace{60};      // longest wait for in-flight requests
};

// Makes an engine by name ("sim", "llamacpp"); NotFound/InvalidArgument when
// this worker cannot run it.
using EngineFactory = std::function<common::Result<std::unique_ptr<Engine>>(const std::string&)>;

class Agent {
 public:
  Agent(WorkerOptions options, KubeClient& client, EngineFactory engines,
        std::vector<std::pair<std::string, std::string>> engine_versions, common::Clock& clock,
        prometheus::Registry& registry);
  ~Agent();

  // Registers the Node (create or update) and starts the lease, status and
  // replica loops. Unavailable when the server cannot be reached at all.
  common::Status Start();
  // Drains every replica (up to drain_grace), unloads, stops the loops.
  void Stop();

  ReplicaTable& table() { return table_; }
  // Local replicas by state, for tests and /metrics.
  int local_replicas() const;

 private:
  struct Local;
  common::Status RegisterNode();
  nlohmann::json NodeStatus() const;
  void LeaseLoop();
  void StatusLoop();
  void ReplicaLoop();
  void Reconcile(const nlohmann::json& replica);
  void Forget(const std::string& key, const nlohmann::json& last);
  void Load(std::shared_ptr<Local> local, nlohmann::json replica);
  void Drain(std::shared_ptr<Local> local, bool remove_finalizer);
  void StartDrain(std::shared_ptr<Local> local, bool remove_finalizer);
  void PatchStatus(const std::string& ns, const std::string& name, const nlohmann::json& status);
  bool Sleep(std::chrono::milliseconds d);

  WorkerOptions options_;
  KubeClient& client_;
  EngineFactory engines_;
  std::vector<std::pair<std::string, std::string>> engine_versions_;
  common::Clock& clock_;
  ReplicaTable table_;
  prometheus::Family<prometheus::Counter>& transitions_;
  prometheus::Counter& lease_failures_;
  prometheus::Gauge& local_gauge_;

  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  std::condition_variable drains_cv_;
  int drains_ = 0;                                       // guarded by mu_: drain threads running
  bool stopping_ = false;                                // guarded by mu_
  std::map<std::string, std::shared_ptr<Local>> local_;  // guarded by mu_; key "ns/name"
  std::atomic<bool> stop_{false};
  std::vector<std::thread> loops_;
};

}  // namespace corral::worker
