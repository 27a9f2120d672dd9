#pragma once
// ObjectStore on PostgreSQL, in the manner of kine: an append-only revision log
// (store/schema.cc) with compare-and-swap enforced by a unique index on
// (key, prev_revision).
//
// Watch: one poller thread per process reads rows with id > last-settled in id
// order and fans them out to watchers. BIGSERIAL ids become visible out of
// order (and rolled-back inserts leave holes), so the poller stops at a gap;
// if the gap persists past gap_timeout it inserts a filler row with that id
// (ON CONFLICT DO NOTHING): either the real row committed meanwhile, or the id
// is now permanently taken and the late writer's insert fails and is retried.
// Every id <= the settled revision is therefore final. Local writes and
// LISTEN/NOTIFY from other processes wake the poller early; correctness rests
// on polling alone.
//
// Compaction runs in the background, keeping the last retain_revisions
// revisions and at least retain_age of history, in batches, under an advisory
// lock so several servers never compact at once.
//
// Thread-safe.
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "store/kinds.h"
#include "store/object.h"
#include "store/object_store.h"
#include "store/pool.h"

namespace corral::store {

struct CompactionOptions {
  bool enabled = true;
  std::chrono::milliseconds interval{60'000};
  int64_t retain_revisions = 10'000;     // always keep at least this many revisions
  std::chrono::seconds retain_age{300};  // and everything younger than this
  int64_t batch_size = 1000;             // ids per delete transaction
};

struct PostgresStoreOptions {
  PoolOptions pool;
  size_t max_object_bytes = kDefaultMaxObjectBytes;
  std::chrono::milliseconds poll_interval{500};   // idle polling (NOTIFY and local writes wake it)
  std::chrono::milliseconds min_poll_gap{2};      // batches bursts of writes
  std::chrono::milliseconds notify_interval{10};  // at most one NOTIFY per interval
  size_t head_cache_capacity = 10'000;            // recently used heads (CAS update hint)
  // Serve Get() from the head cache. Writes through this store are visible
  // at once (the cache is written through); writes through other processes
  // once this process's watch poller has seen them (its lag: milliseconds
  // with NOTIFY, at most poll_interval). Off: every Get reads the database.
  bool cached_reads = false;
  std::chrono::milliseconds gap_timeout{250};
  int64_t poll_batch = 1000;
  size_t event_ring_capacity = 10'000;  // recent events kept for new watchers
  size_t event_ring_max_bytes = 64
                                << 20;  // and at most this much of them (older: read from the log)
  size_t watcher_queue_capacity = 10'000;  // a slower watcher is closed (resume from last revision)
  std::chrono::milliseconds bookmark_interval{10'000};
  std::chrono::milliseconds revision_wait_timeout{10'000};
  CompactionOptions compaction;
};

class PostgresStore final : public ObjectStore {
 public:
  // Call Start() before use.
  PostgresStore(PostgresStoreOptions options, const KindRegistry& kinds, common::Clock& clock,
                prometheus::Registry& registry);
  ~PostgresStore() override;

  // Migrates the schema, warms the pool and starts the poller, listener and
  // compactor threads. Unavailable when the database cannot be reached.
  common::Status Start();
  // Stops background threads; ends all watches. Idempotent.
  void Stop();

  common::Result<Object> Create(const nlohmann::json& object) override;
  common::Result<Object> Update(const nlohmann::json& object) override;
  common::Result<Object> UpdateStatus(const nlohmann::json& object) override;
  common::Result<Object> Delete(const ObjectKey& key, const DeleteOptions& options = {}) override;
  common::Result<Object> Get(const ObjectKey& key) override;
  common::Result<ListResult> List(const ListOptions& options) override;
  common::Result<std::unique_ptr<Watcher>> Watch(const WatchOptions& options) override;
  common::Result<int64_t> CurrentRevision() override;
  common::Status Ping() override;
  size_t max_object_bytes() const override;

  // Runs one compaction pass now to `target` (clamped to the settled revision).
  // Returns the number of rows removed. For tests and `corral` admin use.
  common::Result<int64_t> CompactTo(int64_t target);
  // The revision below which history is gone.
  common::Result<int64_t> CompactedRevision();
  ConnectionPool& pool();

  class Impl;  // everything: pool, poller, watchers, compactor, metrics

 private:
  std::shared_ptr<Impl> impl_;  // shared: watchers hold weak references
};

}  // namespace corral::store
