#pragma once
// The worker's inference endpoints: OpenAI (/v1/chat/completions,
// /v1/completions, /v1/models) and Ollama (/api/generate, /api/chat,
// /api/tags, /api/ps, /api/show, /api/version) over the replicas this worker
// runs, plus the per-replica load figures the gateway and the autoscaler read
// (GET /stats as JSON, GET /metrics as Prometheus text).
//
// The agent owns engines and replicas; the server sees them only through a
// ReplicaDirectory. A request is admitted only while its replica is Ready and
// is counted in the replica's in-flight count until its response is finished,
// so the agent drains a replica by: SetState(kDraining) (new requests get 503
// with Retry-After), WaitIdle(...) up to the grace period, Engine::Unload()
// (ends what is still running with "cancelled", which releases those
// requests), then removing the entry and destroying the engine.
#include <prometheus/registry.h>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "worker/engine.h"

namespace corral::worker {

enum class ReplicaState {
  kLoading,   // not ready yet: requests get 503 with Retry-After
  kReady,     // takes requests
  kDraining,  // finishing in-flight requests, refuses new ones (503)
};
std::string_view ReplicaStateName(ReplicaState state);  // "Loading", "Ready", "Draining"

// What the endpoints show about a replica; fixed when the entry is made.
struct ReplicaInfo {
  std::string replica;     // the Replica object's name: unique on this worker, a metric label
  std::string model;       // the name clients send as "model" (the served name)
  ModelSpec spec;          // what was loaded
  int64_t size_bytes = 0;  // model size on disk / in memory (Ollama tags/ps "size")
  common::TimePoint loaded_at{};  // when the load finished (Ollama "modified_at")
  double load_duration_s = 0;     // how long the load took
  // Content digest (hex SHA-256 of the file, when the agent knows it); empty:
  // the entry derives a stable one from the engine and source.
  std::string digest = {};
};

// One replica as the endpoints see it.
//
// Thread-safe. The Engine is borrowed: whoever made the entry keeps the
// engine alive until in_flight() is 0 (see the file comment for the drain
// order) — an entry may outlive its removal from the directory while the
// last requests finish.
class ReplicaEntry {
 public:
  ReplicaEntry(ReplicaInfo info, Engine* engine, ReplicaState state = ReplicaState::kReady);
  ReplicaEntry(const ReplicaEntry&) = delete;
  ReplicaEntry& operator=(const ReplicaEntry&) = delete;

  const ReplicaInfo& info() const { return info_; }
  const std::string& replica() const { return info_.replica; }
  const std::string& model() const { return info_.model; }
  const std::string& digest() const { return digest_; }  // 64 hex digits
  Engine* engine() const { return engine_; }

  ReplicaState state() const;
  void SetState(ReplicaState state);
  int64_t in_flight() const;

  // Admission: counts one request and returns true only while Ready, atomically
  // with respect to SetState, so after SetState(kDraining) returns no new
  // request is admitted and in_flight() only goes down. Each true is paired
  // with one Release().
  bool TryAcquire();
  void Release();

  // Blocks until in_flight() is 0 (true) or clock.Now() >= deadline (false).
  // Reads the deadline on `clock`, re-checking it at least every 20 ms of real
  // time, so a FakeClock advanced by a test is noticed promptly.
  bool WaitIdle(common::Clock& clock, common::TimePoint deadline) const;

 private:
  const ReplicaInfo info_;
  const std::string digest_;
  Engine* const engine_;
  mutable std::mutex mu_;
  mutable std::condition_variable idle_;  // notified when in_flight_ drops to 0
  ReplicaState state_;                    // guarded by mu_
  int64_t in_flight_ = 0;                 // guarded by mu_
};

// The replicas the endpoints serve. Implementations are thread-safe: the
// server calls them from many request threads.
class ReplicaDirectory {
 public:
  virtual ~ReplicaDirectory() = default;
  // The entry that should take a request for `model`: among the entries with
  // that served name, a Ready one with the fewest requests in flight, else any
  // (so the caller can answer 503 rather than 404). Null: no replica serves it.
  virtual std::shared_ptr<ReplicaEntry> Lookup(std::string_view model) const = 0;
  // Every entry (any state), for /v1/models, /api/tags, /api/ps and stats.
  virtual std::vector<std::shared_ptr<ReplicaEntry>> List() const = 0;
};

// The plain ReplicaDirectory: a map by replica name. Thread-safe (one mutex).
class ReplicaTable final : public ReplicaDirectory {
 public:
  // AlreadyExists when an entry with that replica name is present.
  common::Status Add(std::shared_ptr<ReplicaEntry> entry);
  // Removes and returns the entry (null when absent). Requests already holding
  // it finish normally.
  std::shared_ptr<ReplicaEntry> Remove(const std::string& replica);

  std::shared_ptr<ReplicaEntry> Lookup(std::string_view model) const override;
  std::vector<std::shared_ptr<ReplicaEntry>> List() const override;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<ReplicaEntry>, std::less<>> entries_;  // guarded by mu_
};

struct InferenceServerOptions {
  std::string listen = "127.0.0.1:8081";  // HOST:PORT
  size_t max_body_bytes = 8 << 20;        // larger request bodies get 413
  // A streaming response whose client reads slower than this much backlog is
  // cancelled (the engine must not buffer without bound for a stalled client).
  size_t max_stream_backlog_bytes = 8 << 20;
  int retry_after_overloaded_s = 1;   // Retry-After on 429 (engine queue full)
  int retry_after_unavailable_s = 2;  // Retry-After on 503 (draining / loading)
  // Reported by /api/version: the Ollama API level these endpoints follow.
  std::string ollama_version = "0.6.4";
};

// Serves the endpoints over HTTP (cpprestsdk). Handlers run on cpprestsdk's
// pool and never block it on an engine: non-streaming replies are sent from
// the generation's final event, streaming ones are fed chunk by chunk as the
// engine's events arrive. A client that disconnects from a stream is noticed
// when a write to it fails (within a token or two) and its generation is
// cancelled; a non-streaming request runs to its end (cpprestsdk gives no
// signal that its client left) and the answer is dropped.
//
// Engine calls: Submit, CountTokens and context_length per request; Stats,
// name, version and context_length for /stats, /metrics, /api/ps and
// /api/show on every entry in the directory, whatever its state — so an
// engine object stays valid (and those calls safe, loaded or not) while its
// entry is listed. Events of one generation may arrive on any engine thread
// (the server handles them one at a time); the callback never blocks.
//
// Thread-safety: Start/Stop from one thread; everything else is internal.
// Metrics: request counters and latency histograms are registered in
// `registry` (labels model, endpoint, code: bounded by the replicas of this
// worker); the per-replica engine figures are collected from the directory
// at scrape time and appended to the registry's on GET /metrics.
class InferenceServer {
 public:
  InferenceServer(InferenceServerOptions options, ReplicaDirectory& directory, common::Clock& clock,
                  prometheus::Registry& registry);
  ~InferenceServer();
  InferenceServer(const InferenceServer&) = delete;
  InferenceServer& operator=(const InferenceServer&) = delete;

  // Unavailable when the address cannot be bound.
  common::Status Start();
  // Closes the listener; streams still open end when their generations end
  // (the agent unloads engines) or after 10 s.
  void Stop();
  std::string url() const;  // "http://HOST:PORT"

  // The Prometheus text of GET /metrics (registry + replica figures).
  std::string MetricsText() const;
  // The JSON of GET /stats.
  nlohmann::json StatsJson() const;

  class Impl;  // public so the .cc's helpers can name it; opaque here

 private:
  std::shared_ptr<Impl> impl_;  // shared with in-flight exchanges
};

}  // namespace corral::worker
