#include "worker/agent.h"

#include <spdlog/spdlog.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/subprocess.h"

namespace corral::worker {

using common::Code;
using common::Status;
using nlohmann::json;

namespace {

constexpr const char* kGroupPath = "/apis/corral.dev/v1alpha1";

int64_t MeminfoBytes(const char* field) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  const std::string want = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(want, 0) == 0) {
      std::istringstream ss(line.substr(want.size()));
      int64_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

std::string Now(common::Clock& clock) { return common::FormatRfc3339(clock.Now()); }

std::string ReplicaPath(const std::string& ns, const std::string& name) {
  return std::string(kGroupPath) + "/namespaces/" + ns + "/replicas/" + name;
}

}  // namespace

struct Agent::Local {
  std::string ns, name, uid;
  std::unique_ptr<Engine> engine;
  std::shared_ptr<ReplicaEntry> entry;  // set once Ready
  std::atomic<bool> cancel{false};
  std::atomic<bool> draining{false};
  std::thread worker;  // the loader

  // The last reference may be dropped by the loader thread itself (a failed
  // load forgets its replica): never destroy a joinable thread.
  ~Local() {
    if (!worker.joinable()) return;
    if (worker.get_id() == std::this_thread::get_id()) {
      worker.detach();
    } else {
      worker.join();
    }
  }
};

Agent::Agent(WorkerOptions options, KubeClient& client, EngineFactory engines,
             std::vector<std::pair<std::string, std::string>> engine_versions, common::Clock& clock,
             prometheus::Registry& registry)
    : options_(std::move(options)),
      client_(client),
      engines_(std::move(engines)),
      engine_versions_(std::move(engine_versions)),
      clock_(clock),
      transitions_(prometheus::BuildCounter()
                       .Name("corral_worker_replica_transitions_total")
                       .Help("Replica phase changes made by this worker, by phase")
                       .Register(registry)),
      lease_failures_(prometheus::BuildCounter()
                          .Name("corral_worker_lease_renew_failures_total")
                          .Help("Failed renewals of this node's lease")
                          .Register(registry)
                          .Add({})),
      local_gauge_(prometheus::BuildGauge()
                       .Name("corral_worker_replicas")
                       .Help("Replicas this worker runs (loading, ready or draining)")
                       .Register(registry)
                       .Add({})) {}

Agent::~Agent() { Stop(); }

bool Agent::Sleep(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  return !stop_cv_.wait_for(lock, d, [this] { return stopping_; });
}

json Agent::NodeStatus() const {
  const double cpus = std::max(1u, std::thread::hardware_concurrency());
  const int64_t mem = MeminfoBytes("MemTotal");
  json gpus = json::array();
  int gpu_count = options_.gpus;
  if (gpu_count < 0) {
    gpu_count = 0;
    common::ProcessOptions po;
    po.timeout = std::chrono::seconds(5);
    auto out = common::RunProcess(
        {"nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"}, po);
    if (out.ok() && out->exit_code == 0) {
      std::istringstream lines(out->output);
      std::string line;
      while (std::getline(lines, line)) {
        const auto comma = line.rfind(',');
        if (comma == std::string::npos) continue;
        gpus.push_back({{"model", line.substr(0, comma)},
                        {"memoryBytes", std::atoll(line.c_str() + comma + 1) * 1024 * 1024}});
      }
    }
  } else {
    for (int i = 0; i < gpu_count; ++i) {
      gpus.push_back({{"model", "configured"}, {"memoryBytes", options_.gpu_memory_bytes}});
    }
  }
  json engines = json::array();
  for (const auto& [n, v] : engine_versions_) engines.push_back({{"name", n}, {"version", v}});
  json cached = json::array();
  std::error_code ec;
  if (!options_.cache_dir.empty()) {
    for (const auto& e : std::filesystem::directory_iterator(options_.cache_dir, ec)) {
      if (e.is_regular_file(ec) && e.path().extension() == ".gguf") {
        cached.push_back(
            {{"source", "file://" + e.path().string()}, {"sizeBytes", e.file_size(ec)}});
      }
    }
  }
  utsname u{};
  uname(&u);
  const json res = {{"cpu", cpus}, {"memoryBytes", mem}, {"gpus", gpus}};
  int replicas = 0;
  {
    std::lock_guard lock(mu_);
    replicas = static_cast<int>(local_.size());
  }
  return {{"capacity", res},
          {"allocatable", res},
          {"address", options_.endpoint},
          {"engines", engines},
          {"cachedModels", cached},
          {"replicas", replicas},
          {"lastHeartbeatTime", Now(clock_)},
          {"conditions", json::array({{{"type", "Ready"},
                                       {"status", "True"},
                                       {"reason", "WorkerReady"},
                                       {"message", "the worker is running and renewing its lease"},
                                       {"lastTransitionTime", Now(clock_)}}})}};
}

Status Agent::RegisterNode() {
  const std::string path = std::string(kGroupPath) + "/nodes/" + options_.name;
  json node = {{"apiVersion", "corral.dev/v1alpha1"},
               {"kind", "Node"},
               {"metadata", {{"name", options_.name}, {"labels", options_.labels}}},
               {"spec", json::object()}};
  auto created = client_.Post(std::string(kGroupPath) + "/nodes", node);
  if (!created.ok() && created.status().code() != Code::kAlreadyExists) return created.status();
  if (!created.ok() && !options_.labels.empty()) {
    auto p = client_.MergePatch(path, {{"metadata", {{"labels", options_.labels}}}});
    if (!p.ok()) return p.status();
  }
  auto st = client_.MergePatch(path + "/status", {{"status", NodeStatus()}});
  return st.ok() ? Status::Ok() : st.status();
}

Status Agent::Start() {
  Status s = RegisterNode();
  // Unavailable: the server is not up yet. FailedPrecondition (401/403): a
  // token added a moment ago is picked up by the server within a second.
  for (int i = 0;
       !s.ok() && (s.code() == Code::kUnavailable || s.code() == Code::kFailedPrecondition) &&
       i < 15;
       ++i) {
    spdlog::warn("worker: registering node {}: {} (retrying)", options_.name, s.ToString());
    Sleep(std::chrono::seconds(1));
    s = RegisterNode();
  }
  if (!s.ok()) return s;
  spdlog::info("worker: node {} registered endpoint={}", options_.name, options_.endpoint);
  loops_.emplace_back([this] { LeaseLoop(); });
  loops_.emplace_back([this] { StatusLoop(); });
  loops_.emplace_back([this] { ReplicaLoop(); });
  return Status::Ok();
}

void Agent::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  stop_ = true;
  stop_cv_.notify_all();
  for (auto& t : loops_) {
    if (t.joinable()) t.join();
  }
  loops_.clear();
  {
    // Drains already under way finish first (bounded by drain_grace).
    std::unique_lock lock(mu_);
    drains_cv_.wait_for(lock, options_.drain_grace + std::chrono::seconds(5),
                        [this] { return drains_ == 0; });
  }
  std::map<std::string, std::shared_ptr<Local>> all;
  {
    std::lock_guard lock(mu_);
    all.swap(local_);
  }
  for (auto& [key, l] : all) {
    l->cancel = true;
    if (l->worker.joinable()) l->worker.join();
    if (l->entry) {
      l->entry->SetState(ReplicaState::kDraining);
      l->entry->WaitIdle(clock_, clock_.Now() + options_.drain_grace);
      table_.Remove(l->name.empty() ? key : l->entry->replica());
    }
    if (l->engine) l->engine->Unload();
  }
  local_gauge_.Set(0);
}

int Agent::local_replicas() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(local_.size());
}

void Agent::LeaseLoop() {
  const std::string base =
      "/apis/coordination.k8s.io/v1/namespaces/" + std::string(kLeaseNamespace) + "/leases";
  while (!stop_) {
    const json spec = {{"holderIdentity", options_.name},
                       {"leaseDurationSeconds", options_.lease_duration.count()},
                       {"renewTime", Now(clock_)}};
    auto r = client_.MergePatch(base + "/" + options_.name, {{"spec", spec}});
    if (!r.ok() && r.status().code() == Code::kNotFound) {
      r = client_.Post(base,
                       {{"apiVersion", "coordination.k8s.io/v1"},
                        {"kind", "Lease"},
                        {"metadata", {{"name", options_.name}, {"namespace", kLeaseNamespace}}},
                        {"spec", spec}});
    }
    if (!r.ok()) {
      lease_failures_.Increment();
      spdlog::warn("worker: renewing lease: {}", r.status().ToString());
      if (!Sleep(std::chrono::seconds(1))) return;
      continue;
    }
    if (!Sleep(options_.lease_renew)) return;
  }
}

void Agent::StatusLoop() {
  while (Sleep(options_.status_interval)) {
    auto r = client_.MergePatch(std::string(kGroupPath) + "/nodes/" + options_.name + "/status",
                                {{"status", NodeStatus()}});
    if (r.ok()) continue;
    if (r.status().code() == Code::kNotFound) {
      (void)RegisterNode();  // deleted by someone: come back
    } else {
      spdlog::warn("worker: node status: {}", r.status().ToString());
    }
  }
}

void Agent::ReplicaLoop() {
  const std::string list_path =
      std::string(kGroupPath) + "/replicas?fieldSelector=spec.nodeName%3D" + options_.name;
  while (!stop_) {
    auto list = client_.Get(list_path);
    if (!list.ok()) {
      spdlog::warn("worker: listing replicas: {}", list.status().ToString());
      if (!Sleep(std::chrono::seconds(1))) return;
      continue;
    }
    std::set<std::string> present;
    for (const auto& r : (*list)["items"]) {
      present.insert(r["metadata"].value("namespace", "") + "/" + r["metadata"].value("name", ""));
      Reconcile(r);
    }
    // Replicas that vanished while we were not watching.
    std::vector<std::string> gone;
    {
      std::lock_guard lock(mu_);
      for (const auto& [key, l] : local_) {
        if (!present.count(key)) gone.push_back(key);
      }
    }
    for (const auto& key : gone) Forget(key, json());
    std::string rv = (*list)["metadata"].value("resourceVersion", "0");
    while (!stop_) {
      Status s = client_.Watch(
          list_path +
              "&watch=true&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=" + rv,
          [&](const std::string& type, const json& obj) {
            const json& m = obj.value("metadata", json::object());
            if (m.contains("resourceVersion")) rv = m["resourceVersion"];
            if (type == "BOOKMARK") return;
            const std::string key = m.value("namespace", "") + "/" + m.value("name", "");
            if (type == "DELETED") {
              Forget(key, obj);
            } else {
              Reconcile(obj);
            }
          },
          stop_);
      if (stop_) return;
      if (!s.ok()) {
        if (s.code() != Code::kExpired) spdlog::warn("worker: replica watch: {}", s.ToString());
        break;  // re-list
      }
    }
    if (!Sleep(std::chrono::milliseconds(200))) return;
  }
}

void Agent::Reconcile(const json& replica) {
  const json& m = replica.value("metadata", json::object());
  const std::string ns = m.value("namespace", ""), name = m.value("name", "");
  const std::string key = ns + "/" + name;
  std::shared_ptr<Local> local;
  bool created = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    auto it = local_.find(key);
    if (it != local_.end()) {
      local = it->second;
    } else if (!m.contains("deletionTimestamp")) {
      const std::string phase = replica.value("status", json::object()).value("phase", "");
      if (phase == "Failed") return;  // a person or the controller acts on it
      local = std::make_shared<Local>();
      local->ns = ns;
      local->name = name;
      local->uid = m.value("uid", "");
      local_[key] = local;
      created = true;
    }
  }
  if (created) {
    local_gauge_.Increment();
    local->worker = std::thread([this, local, replica] { Load(local, replica); });
    return;
  }
  if (m.contains("deletionTimestamp")) {
    if (local) {
      if (!local->draining.exchange(true)) StartDrain(local, true);
    } else {
      // Nothing runs here: just let the delete finish.
      json fins = json::array();
      for (const auto& f : m.value("finalizers", json::array())) {
        if (f != kDrainFinalizer) fins.push_back(f);
      }
      if (fins.size() != m.value("finalizers", json::array()).size()) {
        (void)client_.MergePatch(ReplicaPath(ns, name), {{"metadata", {{"finalizers", fins}}}});
      }
    }
  }
}

void Agent::Forget(const std::string& key, const json&) {
  std::shared_ptr<Local> local;
  {
    std::lock_guard lock(mu_);
    auto it = local_.find(key);
    if (it == local_.end()) return;
    local = it->second;
  }
  if (!local->draining.exchange(true)) StartDrain(local, false);
}

void Agent::PatchStatus(const std::string& ns, const std::string& name, const json& status) {
  auto r = client_.MergePatch(ReplicaPath(ns, name) + "/status", {{"status", status}});
  if (!r.ok() && r.status().code() != Code::kNotFound) {
    spdlog::warn("worker: replica {}/{} status: {}", ns, name, r.status().ToString());
  }
  if (status.contains("phase"))
    transitions_.Add({{"phase", status["phase"].get<std::string>()}}).Increment();
}

void Agent::Load(std::shared_ptr<Local> local, json replica) {
  const std::string& ns = local->ns;
  const std::string& name = local->name;
  auto fail = [&](const std::string& reason, const std::string& message) {
    spdlog::warn("worker: replica {}/{} failed: {}: {}", ns, name, reason, message);
    PatchStatus(ns, name, {{"phase", "Failed"}, {"reason", reason}, {"message", message}});
    std::lock_guard lock(mu_);
    if (local_.erase(ns + "/" + name)) local_gauge_.Decrement();
  };
  const json spec = replica.value("spec", json::object());
  const std::string model_name = spec.value("modelRef", json::object()).value("name", "");
  const auto start = clock_.Now();
  PatchStatus(ns, name,
              {{"phase", "Loading"},
               {"startedAt", Now(clock_)},
               {"reason", nullptr},
               {"message", "loading model " + model_name}});
  auto model = client_.Get(std::string(kGroupPath) + "/namespaces/" + ns + "/models/" + model_name);
  if (!model.ok()) {
    if (model.status().code() == Code::kNotFound) {
      return fail("ModelNotFound", "Model " + ns + "/" + model_name + " does not exist");
    }
    return fail("ModelUnreadable", model.status().message());
  }
  const json ms = model->value("spec", json::object());
  ModelSpec ms_out;
  ms_out.name = model_name;
  ms_out.engine = ms.value("engine", "");
  ms_out.source = ms.value("source", "");
  if (ms_out.source.rfind("file://", 0) == 0) ms_out.source = ms_out.source.substr(7);
  ms_out.context_length = ms.value("contextLength", 0);
  ms_out.memory_bytes = ms.value("resources", json::object()).value("memoryBytes", int64_t{0});
  ms_out.sim = ms.value("sim", json());
  ms_out.llamacpp = ms.value("llamacpp", json());
  auto engine = engines_(ms_out.engine);
  if (!engine.ok()) {
    return fail("UnsupportedEngine", "engine " + ms_out.engine + " is not supported by worker " +
                                         options_.name + ": " + engine.status().message());
  }
  const int64_t available = MeminfoBytes("MemAvailable");
  if (ms_out.memory_bytes > 0 && available > 0 && ms_out.memory_bytes > available) {
    return fail("InsufficientMemory", "model " + model_name + " needs " +
                                          std::to_string(ms_out.memory_bytes) +
                                          " bytes of memory; node " + options_.name + " has " +
                                          std::to_string(available) + " available");
  }
  local->engine = std::move(*engine);
  auto last_report = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  Status s = local->engine->Load(
      ms_out,
      [&](int64_t done, int64_t total) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_report < std::chrono::milliseconds(500) && done < total) return;
        last_report = now;
        const double pct =
            total > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 0;
        PatchStatus(
            ns, name,
            {{"progress", {{"bytesLoaded", done}, {"bytesTotal", total}, {"percent", pct}}}});
      },
      local->cancel);
  if (local->cancel) return;
  if (!s.ok()) {
    const char* reason = s.code() == Code::kNotFound            ? "ModelFileNotFound"
                         : s.code() == Code::kResourceExhausted ? "InsufficientMemory"
                                                                : "LoadFailed";
    local->engine.reset();
    return fail(reason, s.message());
  }
  ReplicaInfo info;
  info.replica = name;
  info.model = spec.value("servedName", std::string());
  if (info.model.empty()) info.model = spec.value("deployment", std::string());
  if (info.model.empty()) info.model = model_name;
  info.spec = ms_out;
  info.size_bytes = ms_out.memory_bytes;
  info.loaded_at = clock_.Now();
  info.load_duration_s = std::chrono::duration<double>(clock_.Now() - start).count();
  local->entry = std::make_shared<ReplicaEntry>(info, local->engine.get(), ReplicaState::kReady);
  if (auto added = table_.Add(local->entry); !added.ok()) {
    return fail("LoadFailed", added.message());
  }
  PatchStatus(ns, name,
              {{"phase", "Ready"},
               {"endpoint", options_.endpoint},
               {"readyAt", Now(clock_)},
               {"progress", {{"percent", 100}}},
               {"message", "serving " + info.model}});
  spdlog::info("worker: replica {}/{} ready model={} in {:.1f}s", ns, name, info.model,
               info.load_duration_s);
}

void Agent::StartDrain(std::shared_ptr<Local> local, bool remove_finalizer) {
  {
    std::lock_guard lock(mu_);
    ++drains_;
  }
  std::thread([this, local, remove_finalizer] {
    Drain(local, remove_finalizer);
    std::lock_guard lock(mu_);
    --drains_;
    drains_cv_.notify_all();
  }).detach();
}

void Agent::Drain(std::shared_ptr<Local> local, bool remove_finalizer) {
  const std::string key = local->ns + "/" + local->name;
  local->cancel = true;  // a load in progress stops
  if (local->worker.joinable() && local->worker.get_id() != std::this_thread::get_id()) {
    local->worker.join();
  }
  if (local->entry) {
    local->entry->SetState(ReplicaState::kDraining);
    if (remove_finalizer) {
      PatchStatus(local->ns, local->name,
                  {{"phase", "Draining"},
                   {"message", std::to_string(local->entry->in_flight()) + " requests in flight"}});
    }
    const bool idle = local->entry->WaitIdle(clock_, clock_.Now() + options_.drain_grace);
    if (!idle) {
      spdlog::warn("worker: replica {} drain grace over with {} requests in flight", key,
                   local->entry->in_flight());
    }
    table_.Remove(local->name);
  }
  if (local->engine) local->engine->Unload();
  if (remove_finalizer) {
    auto cur = client_.Get(ReplicaPath(local->ns, local->name));
    if (cur.ok()) {
      json fins = json::array();
      for (const auto& f : (*cur)["metadata"].value("finalizers", json::array())) {
        if (f != kDrainFinalizer) fins.push_back(f);
      }
      (void)client_.MergePatch(ReplicaPath(local->ns, local->name),
                               {{"metadata", {{"finalizers", fins}}}});
    }
  }
  {
    std::lock_guard lock(mu_);
    auto it = local_.find(key);
    if (it != local_.end() && it->second == local) {
      local_.erase(it);
      local_gauge_.Decrement();
    }
  }
  spdlog::info("worker: replica {} drained and unloaded", key);
}

}  // namespace corral::worker
