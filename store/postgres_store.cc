#include "store/postgres_store.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>

#include <limits>
#include <list>
#include <map>
#include <pqxx/nontransaction>
#include <pqxx/notification>
#include <pqxx/pqxx>
#include <unordered_map>

#include "store/schema.h"

namespace corral::store {

using common::Code;
using common::Result;
using common::Status;
using nlohmann::json;
using Steady = std::chrono::steady_clock;

namespace {

constexpr const char* kChannel = "corral_changes";
constexpr int64_t kCompactionLockKey = 0x636f7272616c636d;  // 'corral' 'cm'
constexpr int kMaxWriteAttempts = 5;

// Every statement the store runs, prepared on each pooled connection.
const std::vector<std::pair<std::string, std::string>>& Statements() {
  static const std::vector<std::pair<std::string, std::string>> s = {
      {"get_head",
       "SELECT id, deleted, value FROM corral_objects "
       "WHERE kind = $1 AND namespace = $2 AND name = $3 ORDER BY id DESC LIMIT 1"},
      // Inserts only when the key is absent or its newest row is a tombstone.
      // Every create takes the slot (key, prev_revision = 0), which a delete
      // frees (below): two concurrent creates of one key collide on the unique
      // index whatever history each of them saw, even while compaction removes
      // the key's old rows.
      {"create",
       "INSERT INTO corral_objects (kind, namespace, name, created, deleted, prev_revision, value) "
       "SELECT $1, $2, $3, true, false, 0, $4 "
       "WHERE NOT EXISTS (SELECT 1 FROM ("
       "  SELECT deleted FROM corral_objects WHERE kind = $1 AND namespace = $2 AND name = $3 "
       "  ORDER BY id DESC LIMIT 1) AS h WHERE NOT h.deleted) "
       "RETURNING id"},
      // Compare-and-swap: inserts only when $4 is still the newest revision of
      // the key (no row when stale); two racers with the same $4 collide on the
      // unique (key, prev_revision) index, so exactly one wins.
      {"put",
       "INSERT INTO corral_objects (kind, namespace, name, created, deleted, prev_revision, value) "
       "SELECT $1, $2, $3, false, false, $4, $5 "
       "WHERE (SELECT id FROM corral_objects WHERE kind = $1 AND namespace = $2 AND name = $3 "
       "       ORDER BY id DESC LIMIT 1) = $4 "
       "RETURNING id"},
      // The tombstone, as a CAS like put; in the same statement the key's create
      // row gives up the (key, 0) slot so the name can be created again.
      {"delete",
       "WITH ins AS ("
       "  INSERT INTO corral_objects (kind, namespace, name, created, deleted, prev_revision, "
       "value) "
       "  SELECT $1, $2, $3, false, true, $4, $5 "
       "  WHERE (SELECT id FROM corral_objects WHERE kind = $1 AND namespace = $2 AND name = $3 "
       "         ORDER BY id DESC LIMIT 1) = $4 "
       "  RETURNING id), "
       "unslot AS ("
       "  UPDATE corral_objects SET prev_revision = -id "
       "  WHERE kind = $1 AND namespace = $2 AND name = $3 AND prev_revision = 0 "
       "  AND EXISTS (SELECT 1 FROM ins)) "
       "SELECT id FROM ins"},
      // Rows after $1 up to $2 in id order, with the previous state of each key
      // and the compacted revision, all from one snapshot.
      {"poll",
       "SELECT m.compact_revision, o.id, o.kind, o.namespace, o.name, o.created, o.deleted, "
       "       o.value, p.value "
       "FROM corral_meta AS m "
       "LEFT JOIN LATERAL (SELECT * FROM corral_objects WHERE id > $1 AND id <= $2 "
       "                   ORDER BY id LIMIT $3) AS o ON true "
       "LEFT JOIN corral_objects AS p ON p.id = o.prev_revision "
       "ORDER BY o.id"},
      // Takes the ids in [$1, $2] that no transaction will ever commit.
      {"fill_gaps",
       "INSERT INTO corral_objects (id, kind, namespace, name, created, deleted, prev_revision, "
       "value) SELECT g, '', '', 'gap-' || g::text, false, true, -g, '' "
       "FROM generate_series($1::bigint, $2::bigint) AS g ON CONFLICT DO NOTHING"},
      {"max_revision", "SELECT COALESCE(max(id), 0) FROM corral_objects"},
      {"compacted_revision", "SELECT compact_revision FROM corral_meta"},
      // Newest row per key at revision $4, after the key ($2, $3), live ones only.
      {"list_ns",
       "SELECT id, namespace, name, value FROM ("
       "  SELECT DISTINCT ON (namespace, name) id, namespace, name, deleted, value "
       "  FROM corral_objects WHERE kind = $1 AND namespace = $2 AND name > $3 AND id <= $4 "
       "  ORDER BY namespace, name, id DESC) AS h "
       "WHERE NOT deleted ORDER BY namespace, name LIMIT $5"},
      {"list_all",
       "SELECT id, namespace, name, value FROM ("
       "  SELECT DISTINCT ON (namespace, name) id, namespace, name, deleted, value "
       "  FROM corral_objects WHERE kind = $1 AND (namespace, name) > ($2, $3) AND id <= $4 "
       "  ORDER BY namespace, name, id DESC) AS h "
       "WHERE NOT deleted ORDER BY namespace, name LIMIT $5"},
      {"notify", "SELECT pg_notify('corral_changes', $1)"},
      {"compaction_lock", "SELECT pg_try_advisory_xact_lock($1)"},
      // Compaction of ($1, $2]: the rows that a row in the range supersedes
      // (whatever their own id: batches before this one could not see their
      // successor yet), and the tombstones (and gap fillers) in the range.
      {"compact_superseded",
       "DELETE FROM corral_objects WHERE id IN ("
       "  SELECT prev_revision FROM corral_objects WHERE id > $1 AND id <= $2 AND prev_revision > "
       "0)"},
      {"compact_tombstones", "DELETE FROM corral_objects WHERE id > $1 AND id <= $2 AND deleted"},
      {"compact_set", "UPDATE corral_meta SET compact_revision = $1 WHERE compact_revision < $1"},
      {"ping", "SELECT 1"},
  };
  return s;
}

std::shared_ptr<const json> ParseText(const char* text) {
  if (!text || !*text) return nullptr;
  try {
    return std::make_shared<const json>(json::parse(text));
  } catch (const json::exception& e) {
    spdlog::error("store: unreadable stored object: {}", e.what());
    return nullptr;
  }
}

std::shared_ptr<const json> ParseStored(const pqxx::field& f) {
  return f.is_null() ? nullptr : ParseText(f.c_str());
}

// A change as read from the log, shared by every watcher it is delivered to.
// The stored JSON is parsed once, on first use by a watcher, so a process with
// no interested watcher never pays for it. Thread-safe.
class RawEvent {
 public:
  int64_t revision = 0;
  std::string kind;
  std::string ns;
  std::string name;
  bool created = false;
  bool deleted = false;

  void SetText(const pqxx::field& value, const pqxx::field& prev) {
    if (!value.is_null()) value_text_ = value.c_str();
    if (!prev.is_null()) prev_text_ = prev.c_str();
    bytes = value_text_.size() + prev_text_.size() + sizeof(RawEvent);
  }
  // Approximate memory held (stored text; the parsed form is of the same order).
  size_t bytes = sizeof(RawEvent);
  // The object after the change (null if unreadable) and before it (null if
  // none or compacted).
  const std::shared_ptr<const json>& value() const {
    Parse();
    return value_;
  }
  const std::shared_ptr<const json>& prev() const {
    Parse();
    return prev_;
  }

 private:
  void Parse() const {
    std::call_once(parsed_, [this] {
      value_ = ParseText(value_text_.c_str());
      prev_ = ParseText(prev_text_.c_str());
      value_text_.clear();
      value_text_.shrink_to_fit();
      prev_text_.clear();
      prev_text_.shrink_to_fit();
    });
  }
  mutable std::once_flag parsed_;
  mutable std::string value_text_;
  mutable std::string prev_text_;
  mutable std::shared_ptr<const json> value_;
  mutable std::shared_ptr<const json> prev_;
};
using RawEventPtr = std::shared_ptr<const RawEvent>;

PoolOptions BackgroundPoolOptions(PoolOptions o) {
  o.name = "background";
  o.application_name += "/background";
  o.min_size = 1;
  o.max_size = 2;
  return o;
}

Object MakeObject(json value, int64_t revision) {
  Object o{std::move(value), revision};
  o.body["metadata"]["resourceVersion"] = std::to_string(revision);
  return o;
}

bool Contains(const std::string& haystack, const char* needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

// ---------------------------------------------------------------------------
// Impl

class PostgresStore::Impl : public std::enable_shared_from_this<PostgresStore::Impl> {
 public:
  struct WatchState;

  Impl(PostgresStoreOptions options, const KindRegistry& kinds, common::Clock& clock,
       prometheus::Registry& registry);
  ~Impl() { Stop(); }

  Status Start();
  void Stop();

  // Runs a prepared statement on a pooled connection, timing it and mapping
  // failures: Unavailable (database gone; the connection is discarded),
  // Conflict with message "unique:<constraint>" for unique violations.
  template <typename... Args>
  Result<pqxx::result> ExecOn(ConnectionPool& pool, const char* stmt, Args&&... args);
  template <typename... Args>
  Result<pqxx::result> Exec(const char* stmt, Args&&... args) {
    return ExecOn(*pool_, stmt, std::forward<Args>(args)...);
  }

  Result<Object> Create(const json& object);
  Result<Object> Put(const json& object, bool status_only);
  Result<Object> Delete(const ObjectKey& key, const DeleteOptions& options);
  Result<Object> Get(const ObjectKey& key);
  Result<ListResult> List(const ListOptions& options);
  Result<std::unique_ptr<Watcher>> Watch(const WatchOptions& options);
  Result<int64_t> CurrentRevision();
  Result<int64_t> CompactTo(int64_t target);
  Result<int64_t> CompactedRevision();

  // Events (from, until] straight from the log, for watchers that start
  // before the ring. Expired if compacted.
  Result<std::vector<RawEventPtr>> ReadRange(int64_t from, int64_t until, int64_t limit);
  void Unregister(const std::shared_ptr<WatchState>& w);
  int64_t settled() const { return settled_.load(); }
  const PostgresStoreOptions& options() const { return options_; }
  ConnectionPool& pool() { return *pool_; }

 private:
  struct Head {
    int64_t revision = 0;
    bool deleted = false;
    std::shared_ptr<const json> value;
    std::string text;  // exactly as stored (for no-op detection)
  };
  // Recently written heads (text only; parsed when used). A hint only: an update that starts from a
  // stale entry loses its compare-and-swap in the database and re-reads. The
  // poller drops entries that other writers superseded.
  class HeadCache {
   public:
    explicit HeadCache(size_t capacity) : capacity_(capacity) {}
    static std::string KeyOf(const ObjectKey& k) { return k.kind + '\0' + k.ns + '\0' + k.name; }
    std::optional<Head> Find(const std::string& key) {
      std::lock_guard lock(mu_);
      auto it = map_.find(key);
      if (it == map_.end()) return std::nullopt;
      lru_.splice(lru_.end(), lru_, it->second.second);
      return it->second.first;
    }
    void Put(const std::string& key, Head h) {
      if (capacity_ == 0) return;
      std::lock_guard lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) {
        if (it->second.first.revision > h.revision) return;
        it->second.first = std::move(h);
        lru_.splice(lru_.end(), lru_, it->second.second);
        return;
      }
      lru_.push_back(key);
      map_.emplace(key, std::make_pair(std::move(h), std::prev(lru_.end())));
      if (map_.size() > capacity_) {
        map_.erase(lru_.front());
        lru_.pop_front();
      }
    }
    // Drops the entry unless it is at least `revision`.
    void Invalidate(const std::string& key, int64_t revision) {
      std::lock_guard lock(mu_);
      auto it = map_.find(key);
      if (it == map_.end() || it->second.first.revision >= revision) return;
      lru_.erase(it->second.second);
      map_.erase(it);
    }

   private:
    const size_t capacity_;
    std::mutex mu_;
    std::list<std::string> lru_;  // guarded by mu_; least recently used first
    std::unordered_map<std::string, std::pair<Head, std::list<std::string>::iterator>>
        map_;  // guarded by mu_
  };
  Result<std::optional<Head>> ReadHead(const ObjectKey& key);
  Status Record(const char* operation, const Status& s);
  Status NotFoundStatus(const ObjectKey& key) const;
  // Waits until every revision <= `revision` is settled and seen by the poller.
  Status WaitSettled(int64_t revision);
  void Wake();
  // A write of ours committed: poll soon and tell other processes.
  void NoteLocalWrite();
  void PollLoop();
  // One poll; returns true when more rows may be waiting.
  bool PollOnce();
  void Dispatch(const std::vector<RawEventPtr>& events, int64_t new_settled);
  void ExpireAll(int64_t compact);
  void ListenLoop();
  void CompactLoop();

  const PostgresStoreOptions options_;
  const KindRegistry& kinds_;
  common::Clock& clock_;
  std::unique_ptr<ConnectionPool> pool_;
  // The watch poller and compaction use their own small pool, so a flood of
  // requests can neither starve watches nor be slowed by background work.
  std::unique_ptr<ConnectionPool> bg_pool_;

  // Poller state.
  std::mutex mu_;
  std::condition_variable poll_cv_;     // wakes the poller
  std::condition_variable settled_cv_;  // wakes WaitSettled callers
  bool wake_ = false;                   // guarded by mu_
  bool stopping_ = false;               // guarded by mu_
  // Set by writers without taking mu_ (hot path); NOTIFY others after the next poll.
  std::atomic<bool> local_writes_{false};
  std::atomic<bool> wake_requested_{false};  // a writer already woke the poller
  std::deque<RawEventPtr> ring_;             // guarded by mu_
  int64_t ring_base_ = 0;  // guarded by mu_; ring_ holds every event in (ring_base_, settled_]
  size_t ring_bytes_ = 0;  // guarded by mu_; sum of ring_ events' bytes
  std::vector<std::shared_ptr<WatchState>> watchers_;  // guarded by mu_
  std::optional<Steady::time_point> gap_since_;        // poller thread only
  int64_t gap_start_ = 0;                              // poller thread only: first id of that gap
  std::atomic<int64_t> settled_{0};
  std::atomic<int64_t> compacted_{0};
  std::atomic<bool> running_{false};
  HeadCache cache_;
  std::atomic<uint64_t> dispatch_epoch_{0};  // bumped before each dispatch invalidates
  prometheus::Counter& cache_hits_;
  prometheus::Counter& cache_misses_;

  std::thread poller_;
  std::thread listener_;
  std::thread compactor_;
  std::mutex lifecycle_mu_;  // serializes Start and Stop
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;  // wakes listener/compactor sleeps

  // Metrics.
  prometheus::Family<prometheus::Histogram>& statement_seconds_;
  prometheus::Family<prometheus::Counter>& errors_total_;
  prometheus::Gauge& revision_gauge_;
  prometheus::Gauge& compacted_gauge_;
  prometheus::Gauge& watchers_gauge_;
  prometheus::Counter& events_total_;
  prometheus::Counter& gaps_filled_total_;
  prometheus::Counter& watch_closed_slow_total_;
  prometheus::Counter& compaction_rows_total_;
  prometheus::Counter& compaction_runs_total_;
  prometheus::Histogram& compaction_seconds_;
  // One histogram per prepared statement, built in the constructor; read-only after.
  std::unordered_map<std::string_view, prometheus::Histogram*> statement_hist_;
};

// Per-watch state shared between the poller (producer) and the consumer.
struct PostgresStore::Impl::WatchState {
  WatchOptions options;
  const KindInfo* info = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<RawEventPtr> queue;  // guarded by mu
  bool stopped = false;           // guarded by mu
  bool overflow = false;          // guarded by mu
  bool expired = false;           // guarded by mu
  int64_t floor = 0;              // deliver only revisions above this (immutable)
  size_t capacity = 0;

  bool Wants(const RawEvent& e) const {
    if (e.revision <= floor || e.kind != options.kind) return false;
    return options.ns.empty() || e.ns == options.ns;
  }
  // Called with the poller's mu_ held.
  void Push(const RawEventPtr& e) {
    std::lock_guard lock(mu);
    if (stopped || overflow || expired) return;
    if (queue.size() >= capacity) {
      overflow = true;
      queue.clear();
    } else {
      queue.push_back(e);
    }
    cv.notify_one();
  }
};

namespace {

class PgWatcher final : public Watcher {
 public:
  using State = PostgresStore::Impl::WatchState;
  PgWatcher(std::weak_ptr<PostgresStore::Impl> impl, std::shared_ptr<State> state,
            int64_t catchup_from, int64_t catchup_until)
      : impl_(std::move(impl)),
        state_(std::move(state)),
        last_(state_->options.start_revision),
        cursor_(catchup_from),
        until_(catchup_until),
        last_sent_(Steady::now()) {}
  ~PgWatcher() override {
    Stop();
    if (auto impl = impl_.lock()) impl->Unregister(state_);
  }

  std::optional<WatchEvent> Next(std::chrono::milliseconds timeout) override;
  void Stop() override {
    std::lock_guard lock(state_->mu);
    state_->stopped = true;
    state_->cv.notify_all();
  }

 private:
  // Turns a change into what this watch shows, applying selectors the way
  // Kubernetes does: an object that stops matching is DELETED for this watch,
  // one that starts matching is ADDED.
  std::optional<WatchEvent> Convert(const RawEvent& e) const;
  WatchEvent Finish(Status s) {
    finished_ = true;
    WatchEvent ev;
    ev.type = WatchEvent::Type::kError;
    ev.error = std::move(s);
    return ev;
  }

  // A watcher may outlive its store; it then just ends.
  std::weak_ptr<PostgresStore::Impl> impl_;
  std::shared_ptr<State> state_;
  int64_t last_;    // last revision delivered
  int64_t cursor_;  // catch-up from the log: (cursor_, until_]
  int64_t until_;
  std::deque<RawEventPtr> catchup_;  // consumer thread only
  Steady::time_point last_sent_;
  bool finished_ = false;
};

std::optional<WatchEvent> PgWatcher::Convert(const RawEvent& e) const {
  const auto& value = e.value();
  const auto& prev = e.prev();
  if (!value) return std::nullopt;
  const auto& o = state_->options;
  const bool selective = !o.labels.empty() || !o.fields.empty();
  auto matches = [&](const std::shared_ptr<const json>& v) {
    if (!v) return false;
    if (!selective) return true;
    const json* labels = nullptr;
    if (auto md = v->find("metadata"); md != v->end()) {
      if (auto l = md->find("labels"); l != md->end()) labels = &*l;
    }
    static const json kNull;
    return o.labels.Matches(labels ? *labels : kNull) && o.fields.Matches(*v);
  };
  WatchEvent ev;
  if (e.deleted) {
    if (!matches(value)) return std::nullopt;
    ev.type = WatchEvent::Type::kDeleted;
    ev.object = MakeObject(*value, e.revision);
    return ev;
  }
  const bool now = matches(value);
  const bool before = !e.created && (selective ? matches(prev) : true);
  if (now && before) {
    ev.type = WatchEvent::Type::kModified;
    ev.object = MakeObject(*value, e.revision);
  } else if (now) {
    ev.type = WatchEvent::Type::kAdded;
    ev.object = MakeObject(*value, e.revision);
  } else if (before && prev) {
    ev.type = WatchEvent::Type::kDeleted;
    ev.object = MakeObject(*prev, e.revision);
  } else {
    return std::nullopt;
  }
  return ev;
}

std::optional<WatchEvent> PgWatcher::Next(std::chrono::milliseconds timeout) {
  if (finished_) return std::nullopt;
  const auto impl = impl_.lock();
  if (!impl) return std::nullopt;
  const auto deadline = Steady::now() + timeout;
  const auto& opts = state_->options;
  const auto bookmark_every = impl->options().bookmark_interval;
  while (true) {
    // 1. Catch up from the log for a start older than the poller's ring.
    while (catchup_.empty() && cursor_ < until_) {
      {
        std::lock_guard lock(state_->mu);
        if (state_->stopped) return std::nullopt;
      }
      if (Steady::now() >= deadline) return std::nullopt;
      auto page = impl->ReadRange(cursor_, until_, impl->options().poll_batch);
      if (!page.ok()) return Finish(page.status());
      if (page->empty()) {
        cursor_ = until_;
        break;
      }
      cursor_ = page->back()->revision;
      for (auto& e : *page) {
        if (state_->Wants(*e)) catchup_.push_back(std::move(e));
      }
    }
    while (!catchup_.empty()) {
      RawEventPtr e = std::move(catchup_.front());
      catchup_.pop_front();
      if (auto ev = Convert(*e)) {
        last_ = e->revision;
        last_sent_ = Steady::now();
        return ev;
      }
    }
    // 2. Live events from the poller.
    RawEventPtr next;
    {
      std::unique_lock lock(state_->mu);
      if (state_->stopped) return std::nullopt;
      if (state_->expired) {
        return Finish(common::Expired("watch from revision " + std::to_string(last_) +
                                      ": the requested history has been compacted; re-list"));
      }
      if (state_->overflow) {
        return Finish(
            common::Unavailable("watch closed: the consumer fell behind; resume from revision " +
                                std::to_string(last_)));
      }
      if (!state_->queue.empty()) {
        next = std::move(state_->queue.front());
        state_->queue.pop_front();
      } else {
        const auto now = Steady::now();
        if (opts.progress_notify && cursor_ >= until_ && now >= last_sent_ + bookmark_every) {
          // Everything up to settled() has been queued for us (the poller
          // publishes settled_ after dispatching), and the queue is empty.
          last_ = std::max(last_, impl->settled());
          last_sent_ = now;
          WatchEvent ev;
          ev.type = WatchEvent::Type::kBookmark;
          ev.object.revision = last_;
          return ev;
        }
        if (now >= deadline) return std::nullopt;
        auto wake = deadline;
        if (opts.progress_notify) wake = std::min(wake, last_sent_ + bookmark_every);
        state_->cv.wait_until(lock, wake);
        continue;
      }
    }
    if (auto ev = Convert(*next)) {
      last_ = next->revision;
      last_sent_ = Steady::now();
      return ev;
    }
    if (Steady::now() >= deadline) return std::nullopt;
  }
}

}  // namespace

PostgresStore::Impl::Impl(PostgresStoreOptions options, const KindRegistry& kinds,
                          common::Clock& clock, prometheus::Registry& registry)
    : options_(std::move(options)),
      kinds_(kinds),
      clock_(clock),
      pool_(std::make_unique<ConnectionPool>(options_.pool, Statements(), registry)),
      bg_pool_(std::make_unique<ConnectionPool>(BackgroundPoolOptions(options_.pool), Statements(),
                                                registry)),
      cache_(options_.head_cache_capacity),
      cache_hits_(prometheus::BuildCounter()
                      .Name("corral_store_get_cache_total")
                      .Help("Gets served from the head cache (result=hit) or the database (miss); "
                            "only with cached reads on.")
                      .Register(registry)
                      .Add({{"result", "hit"}})),
      cache_misses_(
          prometheus::BuildCounter()
              .Name("corral_store_get_cache_total")
              .Help("Gets served from the head cache (result=hit) or the database (miss); "
                    "only with cached reads on.")
              .Register(registry)
              .Add({{"result", "miss"}})),
      statement_seconds_(prometheus::BuildHistogram()
                             .Name("corral_store_statement_duration_seconds")
                             .Help("Latency of the store's prepared statements, by statement.")
                             .Register(registry)),
      errors_total_(prometheus::BuildCounter()
                        .Name("corral_store_errors_total")
                        .Help("Store operations that failed, by operation and status code.")
                        .Register(registry)),
      revision_gauge_(prometheus::BuildGauge()
                          .Name("corral_store_revision")
                          .Help("Newest settled revision seen by this process's watch poller.")
                          .Register(registry)
                          .Add({})),
      compacted_gauge_(prometheus::BuildGauge()
                           .Name("corral_store_compacted_revision")
                           .Help("Revision at and below which history has been compacted.")
                           .Register(registry)
                           .Add({})),
      watchers_gauge_(prometheus::BuildGauge()
                          .Name("corral_store_watchers")
                          .Help("Open watch streams on this process.")
                          .Register(registry)
                          .Add({})),
      events_total_(prometheus::BuildCounter()
                        .Name("corral_store_watch_events_total")
                        .Help("Changes read from the revision log by the watch poller.")
                        .Register(registry)
                        .Add({})),
      gaps_filled_total_(prometheus::BuildCounter()
                             .Name("corral_store_watch_gaps_filled_total")
                             .Help("Revision ids that never committed and were filled so "
                                   "watches could move past them.")
                             .Register(registry)
                             .Add({})),
      watch_closed_slow_total_(prometheus::BuildCounter()
                                   .Name("corral_store_watch_slow_closed_total")
                                   .Help("Watches closed because their consumer fell behind.")
                                   .Register(registry)
                                   .Add({})),
      compaction_rows_total_(prometheus::BuildCounter()
                                 .Name("corral_store_compaction_deleted_rows_total")
                                 .Help("Superseded revisions and tombstones removed by compaction.")
                                 .Register(registry)
                                 .Add({})),
      compaction_runs_total_(prometheus::BuildCounter()
                                 .Name("corral_store_compactions_total")
                                 .Help("Compaction passes run by this process.")
                                 .Register(registry)
                                 .Add({})),
      compaction_seconds_(prometheus::BuildHistogram()
                              .Name("corral_store_compaction_duration_seconds")
                              .Help("Duration of compaction passes.")
                              .Register(registry)
                              .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.5,
                                                                               1, 5, 10, 30, 60})) {
  for (const auto& [name, sql] : Statements()) {
    statement_hist_[name] = &statement_seconds_.Add(
        {{"statement", name}},
        prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5});
  }
}

template <typename... Args>
Result<pqxx::result> PostgresStore::Impl::ExecOn(ConnectionPool& pool, const char* stmt,
                                                 Args&&... args) {
  auto conn = pool.Acquire();
  if (!conn.ok()) return conn.status();
  const auto start = Steady::now();
  prometheus::Histogram* hist = statement_hist_.at(stmt);
  auto observe = [&] {
    hist->Observe(std::chrono::duration<double>(Steady::now() - start).count());
  };
  try {
    pqxx::nontransaction tx(conn->get());
    pqxx::result r = tx.exec_prepared(stmt, std::forward<Args>(args)...);
    observe();
    return r;
  } catch (const pqxx::broken_connection& e) {
    conn->MarkBroken();
    // The connection died with the statement in flight: a write may have
    // committed just before. Say so; the caller re-reads before retrying.
    const std::string_view name(stmt);
    const bool write = name == "create" || name == "put" || name == "delete";
    return common::Unavailable(std::string("database unavailable: ") + e.what() +
                               (write ? " (the write may have been applied)" : ""));
  } catch (const pqxx::sql_error& e) {
    observe();
    const std::string& state = e.sqlstate();
    if (state == "23505") return common::Conflict(std::string("unique:") + e.what());
    if (state.rfind("08", 0) == 0 || state.rfind("57P", 0) == 0 || !conn->get().is_open()) {
      conn->MarkBroken();
      return common::Unavailable(std::string("database unavailable: ") + e.what());
    }
    if (state.rfind("53", 0) == 0) {  // disk full, out of memory, too many connections
      return common::Unavailable(std::string("database out of resources: ") + e.what());
    }
    if (state == "40001" || state == "40P01") {
      return common::Unavailable(std::string("transient database conflict: ") + e.what());
    }
    if (state == "57014") {  // statement_timeout (or a cancel): the database is too slow now
      return common::DeadlineExceeded(std::string("statement ") + stmt +
                                      " ran past the statement timeout: " + e.what());
    }
    return common::Internal(std::string("statement ") + stmt + " failed: " + e.what());
  } catch (const pqxx::in_doubt_error& e) {
    conn->MarkBroken();
    return common::Unavailable(std::string("outcome unknown, connection lost: ") + e.what());
  } catch (const std::exception& e) {
    if (!conn->get().is_open()) {
      conn->MarkBroken();
      return common::Unavailable(std::string("database unavailable: ") + e.what());
    }
    return common::Internal(std::string("statement ") + stmt + " failed: " + e.what());
  }
}

Status PostgresStore::Impl::Record(const char* operation, const Status& s) {
  if (!s.ok()) {
    errors_total_.Add({{"operation", operation}, {"code", std::string(CodeName(s.code()))}})
        .Increment();
  }
  return s;
}

Status PostgresStore::Impl::NotFoundStatus(const ObjectKey& key) const {
  const KindInfo* info = kinds_.Find(key.kind);
  return common::NotFound((info ? info->Resource() : key.kind) + " \"" + key.name + "\" not found");
}

Status PostgresStore::Impl::Start() {
  std::unique_lock lifecycle(lifecycle_mu_);
  if (running_) return common::FailedPrecondition("store already started");
  {
    auto conn = pool_->OpenDedicated("migrate");
    if (!conn.ok()) return conn.status();
    CORRAL_RETURN_IF_ERROR(Migrate(**conn));
  }
  CORRAL_RETURN_IF_ERROR(pool_->Warm());
  CORRAL_RETURN_IF_ERROR(bg_pool_->Warm());
  auto rev = Exec("max_revision");
  if (!rev.ok()) return rev.status();
  auto compacted = Exec("compacted_revision");
  if (!compacted.ok()) return compacted.status();
  {
    std::lock_guard lock(mu_);
    stopping_ = false;
    // Start the poller below the newest id; it settles everything up to it on
    // its first pass (filling holes left by rolled-back writes).
    const int64_t c = (*compacted)[0][0].as<int64_t>();
    compacted_ = c;
    settled_ = c;
    ring_base_ = c;
  }
  compacted_gauge_.Set(static_cast<double>(compacted_.load()));
  running_ = true;
  poller_ = std::thread([this] { PollLoop(); });
  listener_ = std::thread([this] { ListenLoop(); });
  if (options_.compaction.enabled) compactor_ = std::thread([this] { CompactLoop(); });
  // Be caught up before serving: a first List must not wait on a cold poller.
  return WaitSettled((*rev)[0][0].as<int64_t>());
}

void PostgresStore::Impl::Stop() {
  std::lock_guard lifecycle(lifecycle_mu_);  // concurrent Stop()s: one joins, the rest wait
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    stopping_ = true;
    poll_cv_.notify_all();
    settled_cv_.notify_all();
    for (auto& w : watchers_) {
      std::lock_guard wl(w->mu);
      w->stopped = true;
      w->cv.notify_all();
    }
  }
  {
    std::lock_guard lock(stop_mu_);
    running_ = false;
    stop_cv_.notify_all();
  }
  for (std::thread* t : {&poller_, &listener_, &compactor_}) {
    if (t->joinable()) t->join();
  }
}

void PostgresStore::Impl::Wake() {
  std::lock_guard lock(mu_);
  wake_ = true;
  poll_cv_.notify_one();
}

void PostgresStore::Impl::NoteLocalWrite() {
  local_writes_.store(true, std::memory_order_relaxed);
  // Only the first writer since the poller last woke pays for the lock.
  if (!wake_requested_.exchange(true)) Wake();
}

Status PostgresStore::Impl::WaitSettled(int64_t revision) {
  std::unique_lock lock(mu_);
  if (settled_ >= revision) return Status::Ok();
  wake_ = true;
  poll_cv_.notify_one();
  const bool ok = settled_cv_.wait_for(lock, options_.revision_wait_timeout,
                                       [&] { return settled_ >= revision || stopping_; });
  if (stopping_) return common::Unavailable("store is shutting down");
  if (!ok) {
    return common::Unavailable("timed out waiting for revision " + std::to_string(revision) +
                               " to settle (at " + std::to_string(settled_.load()) + ")");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Writes

Result<std::optional<PostgresStore::Impl::Head>> PostgresStore::Impl::ReadHead(
    const ObjectKey& key) {
  auto r = Exec("get_head", key.kind, key.ns, key.name);
  if (!r.ok()) return r.status();
  if (r->empty()) return std::optional<Head>();
  const auto row = (*r)[0];
  Head h{row[0].as<int64_t>(), row[1].as<bool>(), ParseStored(row[2]), row[2].c_str()};
  if (!h.value) return common::Internal("stored object " + key.ToString() + " is unreadable");
  return std::optional<Head>(std::move(h));
}

Result<Object> PostgresStore::Impl::Create(const json& object) {
  // Size is checked on the stored form below (0: skip the check here).
  auto key = ValidateObject(kinds_, object, 0);
  if (!key.ok()) return Record("create", key.status());
  const KindInfo* info = kinds_.Find(key->kind);
  json stored = object;
  json& md = stored["metadata"];
  if (auto rv = md.find("resourceVersion");
      rv != md.end() && rv->is_string() && !rv->get<std::string>().empty()) {
    return Record("create", Status(Code::kInvalidArgument,
                                   "resourceVersion should not be set on objects to be created",
                                   {{"metadata.resourceVersion", "must not be set on create"}}));
  }
  md.erase("resourceVersion");
  md["uid"] = NewUid();
  md["creationTimestamp"] = common::FormatRfc3339(clock_.Now());
  md["generation"] = 1;
  if (info && !info->namespaced) md.erase("namespace");
  const std::string value = stored.dump();
  if (value.size() > options_.max_object_bytes) {
    return Record("create",
                  Status(Code::kInvalidArgument,
                         key->ToString() + " is too large: " + std::to_string(value.size()) +
                             " bytes, limit " + std::to_string(options_.max_object_bytes),
                         {{"", "object too large"}}));
  }
  const Status exists =
      common::AlreadyExists(info->Resource() + " \"" + key->name + "\" already exists");
  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    auto r = Exec("create", key->kind, key->ns, key->name, value);
    if (r.ok()) {
      if (r->empty()) return Record("create", exists);
      const int64_t rev = (*r)[0][0].as<int64_t>();
      NoteLocalWrite();
      cache_.Put(HeadCache::KeyOf(*key), {rev, false, nullptr, value});
      return MakeObject(std::move(stored), rev);
    }
    if (r.status().code() == Code::kConflict) {
      if (Contains(r.status().message(), "corral_objects_pkey"))
        continue;  // id taken by a gap fill
      return Record("create", exists);
    }
    return Record("create", r.status());
  }
  return Record("create", common::Unavailable("create " + key->ToString() + ": retries exhausted"));
}

Result<Object> PostgresStore::Impl::Put(const json& object, bool status_only) {
  const char* op = status_only ? "update_status" : "update";
  auto key = ValidateObject(kinds_, object, 0);  // size: checked on the stored form
  if (!key.ok()) return Record(op, key.status());
  const KindInfo* info = kinds_.Find(key->kind);
  const std::string cache_key = HeadCache::KeyOf(*key);
  std::optional<int64_t> expected;
  const json& in_md = object["metadata"];
  if (auto rv = in_md.find("resourceVersion");
      rv != in_md.end() && rv->is_string() && !rv->get<std::string>().empty()) {
    const std::string& s = rv->get_ref<const std::string&>();
    char* end = nullptr;
    errno = 0;
    const long long v = strtoll(s.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0) {
      return Record(op, Status(Code::kInvalidArgument,
                               "metadata.resourceVersion: invalid value \"" + s + "\"",
                               {{"metadata.resourceVersion",
                                 "Invalid value: \"" + s + "\": must be a revision number"}}));
    }
    expected = v;
  }
  const Status conflict = common::Conflict(
      "Operation cannot be fulfilled on " + info->Resource() + " \"" + key->name +
      "\": the object has been modified; please apply your changes to the latest version and "
      "try again");
  // With a resourceVersion, a cached head at that revision saves the read.
  std::optional<Head> hint;
  if (expected) {
    hint = cache_.Find(cache_key);
    if (hint && hint->revision != *expected) hint.reset();
  }
  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    const bool from_hint = hint.has_value();
    Head h;
    if (from_hint) {
      h = std::move(*hint);
      hint.reset();
      h.value = ParseText(h.text.c_str());  // the cache keeps text only
      if (!h.value) continue;
    } else {
      auto head = ReadHead(*key);
      if (!head.ok()) return Record(op, head.status());
      if (!head->has_value() || (*head)->deleted) return Record(op, NotFoundStatus(*key));
      h = std::move(**head);
    }
    if (expected && *expected != h.revision) return Record(op, conflict);
    const json& old = *h.value;
    const json& old_md = old["metadata"];
    if (auto uid = in_md.find("uid"); uid != in_md.end() && uid->is_string() &&
                                      !uid->get<std::string>().empty() &&
                                      *uid != old_md.value("uid", "")) {
      return Record(op, common::FailedPrecondition(
                            "Precondition failed: UID in precondition: " + uid->get<std::string>() +
                            ", UID in object meta: " + old_md.value("uid", "")));
    }
    json next;
    if (status_only) {
      next = old;
      if (auto st = object.find("status"); st != object.end() && !st->is_null()) {
        next["status"] = *st;
      } else {
        next.erase("status");
      }
    } else {
      next = object;
      if (auto st = old.find("status"); st != old.end()) {
        next["status"] = *st;
      } else {
        next.erase("status");
      }
      json& md = next["metadata"];
      md["uid"] = old_md.value("uid", "");
      md["creationTimestamp"] = old_md.value("creationTimestamp", "");
      const int64_t gen = old_md.value("generation", int64_t{1});
      md["generation"] = SpecChanged(old, next) ? gen + 1 : gen;
      md.erase("resourceVersion");
      if (info && !info->namespaced) md.erase("namespace");
    }
    std::string value = next.dump();
    if (value == h.text) {
      // A no-op writes nothing, so nothing checks it in the database: confirm
      // on a head read from it, never on a cached one.
      if (from_hint) continue;
      return MakeObject(old, h.revision);
    }
    if (value.size() > options_.max_object_bytes) {
      return Record(op, Status(Code::kInvalidArgument,
                               key->ToString() + " is too large: " + std::to_string(value.size()) +
                                   " bytes, limit " + std::to_string(options_.max_object_bytes),
                               {{"", "object too large"}}));
    }
    auto r = Exec("put", key->kind, key->ns, key->name, h.revision, value);
    if (r.ok() && !r->empty()) {
      const int64_t rev = (*r)[0][0].as<int64_t>();
      NoteLocalWrite();
      cache_.Put(cache_key, {rev, false, nullptr, std::move(value)});
      return MakeObject(std::move(next), rev);
    }
    if (!r.ok() && r.status().code() != Code::kConflict) return Record(op, r.status());
    if (!r.ok() && Contains(r.status().message(), "corral_objects_pkey")) continue;
    if (from_hint) continue;  // the cached head was stale: read the real one
    // Lost the race: with a caller's resourceVersion that is a Conflict; an
    // unconditional update re-reads and tries again.
    if (expected) return Record(op, conflict);
  }
  return Record(op, common::Unavailable("update " + key->ToString() +
                                        ": too many concurrent writes, retry later"));
}

Result<Object> PostgresStore::Impl::Delete(const ObjectKey& key, const DeleteOptions& options) {
  if (Status s = ValidateKey(kinds_, key); !s.ok()) return Record("delete", s);
  const KindInfo* info = kinds_.Find(key.kind);
  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    auto head = ReadHead(key);
    if (!head.ok()) return Record("delete", head.status());
    if (!head->has_value() || (*head)->deleted) return Record("delete", NotFoundStatus(key));
    const Head& h = **head;
    const json& md = (*h.value)["metadata"];
    if (options.uid && *options.uid != md.value("uid", "")) {
      return Record("delete", common::FailedPrecondition(
                                  "Precondition failed: UID in precondition: " + *options.uid +
                                  ", UID in object meta: " + md.value("uid", "")));
    }
    if (options.resource_version && *options.resource_version != h.revision) {
      return Record("delete", common::Conflict("Operation cannot be fulfilled on " +
                                               info->Resource() + " \"" + key.name +
                                               "\": the ResourceVersion in the precondition (" +
                                               std::to_string(*options.resource_version) +
                                               ") does not match the ResourceVersion in record (" +
                                               std::to_string(h.revision) + ")"));
    }
    auto r = Exec("delete", key.kind, key.ns, key.name, h.revision, h.text);
    if (r.ok() && !r->empty()) {
      NoteLocalWrite();
      cache_.Invalidate(HeadCache::KeyOf(key), std::numeric_limits<int64_t>::max());
      return MakeObject(*h.value, (*r)[0][0].as<int64_t>());
    }
    if (!r.ok() && r.status().code() != Code::kConflict) return Record("delete", r.status());
    // Raced with another write: re-read (preconditions are checked again).
  }
  return Record("delete", common::Unavailable("delete " + key.ToString() +
                                              ": too many concurrent writes, retry later"));
}

// ---------------------------------------------------------------------------
// Reads

Result<Object> PostgresStore::Impl::Get(const ObjectKey& key) {
  if (Status s = ValidateKey(kinds_, key); !s.ok()) return Record("get", s);
  if (!options_.cached_reads) {
    auto head = ReadHead(key);
    if (!head.ok()) return Record("get", head.status());
    if (!head->has_value() || (*head)->deleted) return Record("get", NotFoundStatus(key));
    return MakeObject(*(*head)->value, (*head)->revision);  // copy: the cache shares the value
  }
  const std::string cache_key = HeadCache::KeyOf(key);
  if (auto hit = cache_.Find(cache_key); hit && !hit->deleted) {
    if (!hit->value) {
      // Written through as text: parse once and keep the parsed form.
      hit->value = ParseText(hit->text.c_str());
      if (!hit->value)
        return Record("get",
                      common::Internal("stored object " + key.ToString() + " is unreadable"));
      cache_.Put(cache_key, *hit);
    }
    cache_hits_.Increment();
    return MakeObject(*hit->value, hit->revision);
  }
  cache_misses_.Increment();
  // A poller dispatch that overlaps this read may have invalidated the key
  // before the Put below: then the entry is dropped again (it may be stale).
  const uint64_t epoch = dispatch_epoch_.load(std::memory_order_acquire);
  auto head = ReadHead(key);
  if (!head.ok()) return Record("get", head.status());
  if (!head->has_value() || (*head)->deleted) return Record("get", NotFoundStatus(key));
  cache_.Put(cache_key, **head);
  if (dispatch_epoch_.load(std::memory_order_acquire) != epoch) {
    cache_.Invalidate(cache_key, (*head)->revision + 1);
  }
  return MakeObject(*(*head)->value, (*head)->revision);
}

Result<int64_t> PostgresStore::Impl::CurrentRevision() {
  auto r = Exec("max_revision");
  if (!r.ok()) return r.status();
  const int64_t rev = (*r)[0][0].as<int64_t>();
  CORRAL_RETURN_IF_ERROR(WaitSettled(rev));
  return std::max(rev, settled_.load());
}

Result<int64_t> PostgresStore::Impl::CompactedRevision() {
  auto r = Exec("compacted_revision");
  if (!r.ok()) return r.status();
  return (*r)[0][0].as<int64_t>();
}

Result<ListResult> PostgresStore::Impl::List(const ListOptions& options) {
  const KindInfo* info = kinds_.Find(options.kind);
  if (!info)
    return Record("list", common::InvalidArgument("unknown kind \"" + options.kind + "\""));
  if (!info->namespaced && !options.ns.empty()) {
    return Record("list",
                  common::InvalidArgument(options.kind + " is cluster-scoped: namespace \"" +
                                          options.ns + "\" must be empty"));
  }
  if (Status s = options.fields.Validate(info->FieldSelectorFields()); !s.ok()) {
    return Record("list", s);
  }
  if (options.limit < 0) return Record("list", common::InvalidArgument("limit: must be >= 0"));
  std::string ns = options.ns;
  if (ns.empty() && info->namespaced) {
    if (auto pinned = options.fields.ExactValue("metadata.namespace")) ns = *pinned;
  }
  int64_t revision = 0;
  std::string after_ns, after_name;
  if (!options.continue_token.empty()) {
    auto token = DecodeContinue(options.continue_token);
    if (!token.ok()) return Record("list", token.status());
    revision = token->revision;
    after_ns = token->ns;
    after_name = token->name;
  } else if (options.match == RevisionMatch::kExact) {
    if (options.revision <= 0) {
      return Record("list",
                    common::InvalidArgument("resourceVersion: exact match needs a revision"));
    }
    revision = options.revision;
    if (Status s = WaitSettled(revision); !s.ok()) return Record("list", s);
  } else {
    auto current = CurrentRevision();
    if (!current.ok()) return Record("list", current.status());
    revision = *current;
    if (options.match == RevisionMatch::kNotOlderThan && options.revision > revision) {
      if (Status s = WaitSettled(options.revision); !s.ok()) {
        return Record("list", common::DeadlineExceeded("Too large resource version: " +
                                                       std::to_string(options.revision) +
                                                       ", current: " + std::to_string(revision)));
      }
      revision = std::max(options.revision, settled_.load());
    }
  }
  auto expired = [&](int64_t compacted) {
    return common::Expired(
        options.continue_token.empty()
            ? "resourceVersion " + std::to_string(revision) +
                  " is too old: history before revision " + std::to_string(compacted) +
                  " has been compacted"
            : "The provided continue parameter is too old to display a consistent list result. "
              "You can start a new list without the continue parameter.");
  };
  if (auto c = CompactedRevision(); !c.ok()) {
    return Record("list", c.status());
  } else if (*c > revision) {
    return Record("list", expired(*c));
  }
  ListResult out;
  out.revision = revision;
  const int64_t batch = options.limit > 0 ? std::max<int64_t>(options.limit + 1, 64) : 500;
  const char* stmt = ns.empty() ? "list_all" : "list_ns";
  if (!ns.empty() && after_ns != ns) {
    after_name = after_ns < ns ? "" : std::string(1, '\x7f');
  }
  bool more = false;
  while (true) {
    auto rows = ns.empty() ? Exec(stmt, options.kind, after_ns, after_name, revision, batch)
                           : Exec(stmt, options.kind, ns, after_name, revision, batch);
    if (!rows.ok()) return Record("list", rows.status());
    size_t i = 0;
    for (; i < rows->size(); ++i) {
      const auto row = (*rows)[i];
      if (options.limit > 0 && static_cast<int64_t>(out.items.size()) >= options.limit) {
        more = true;
        break;
      }
      after_ns = row[1].c_str();
      after_name = row[2].c_str();
      auto value = ParseStored(row[3]);
      if (!value) continue;
      const json* labels = nullptr;
      if (auto md = value->find("metadata"); md != value->end()) {
        if (auto l = md->find("labels"); l != md->end()) labels = &*l;
      }
      static const json kNull;
      if (!options.labels.Matches(labels ? *labels : kNull) || !options.fields.Matches(*value)) {
        continue;
      }
      out.items.push_back(MakeObject(*value, row[0].as<int64_t>()));
    }
    if (more || static_cast<int64_t>(rows->size()) < batch) break;
  }
  if (more) out.continue_token = EncodeContinue({revision, after_ns, after_name});
  // Compaction may have run while we read: only a list at or above the
  // compacted revision is guaranteed complete.
  if (auto c = CompactedRevision(); !c.ok()) {
    return Record("list", c.status());
  } else if (*c > revision) {
    return Record("list", expired(*c));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Watch

Result<std::vector<RawEventPtr>> PostgresStore::Impl::ReadRange(int64_t from, int64_t until,
                                                                int64_t limit) {
  auto r = Exec("poll", from, until, limit);
  if (!r.ok()) return r.status();
  std::vector<RawEventPtr> out;
  int64_t compacted = 0;
  for (const auto& row : *r) {
    compacted = row[0].as<int64_t>();
    if (row[1].is_null()) continue;
    auto e = std::make_shared<RawEvent>();
    e->revision = row[1].as<int64_t>();
    e->kind = row[2].c_str();
    e->ns = row[3].c_str();
    e->name = row[4].c_str();
    e->created = row[5].as<bool>();
    e->deleted = row[6].as<bool>();
    e->SetText(row[7], row[8]);
    out.push_back(std::move(e));
  }
  if (compacted > from) {
    return common::Expired("watch from revision " + std::to_string(from) +
                           ": history up to revision " + std::to_string(compacted) +
                           " has been compacted; re-list");
  }
  return out;
}

bool PostgresStore::Impl::PollOnce() {
  const int64_t from = settled_.load();
  auto r =
      ExecOn(*bg_pool_, "poll", from, std::numeric_limits<int64_t>::max(), options_.poll_batch);
  if (!r.ok()) {
    spdlog::warn("store watch poll failed: {}", r.status().ToString());
    return false;
  }
  int64_t compacted = 0;
  int64_t next = from;
  std::vector<RawEventPtr> events;
  std::optional<std::pair<int64_t, int64_t>> gap;
  for (const auto& row : *r) {
    compacted = row[0].as<int64_t>();
    if (row[1].is_null()) continue;
    const int64_t id = row[1].as<int64_t>();
    if (id != next + 1) {
      gap = {next + 1, id - 1};
      break;
    }
    next = id;
    auto e = std::make_shared<RawEvent>();
    e->revision = id;
    e->kind = row[2].c_str();
    if (e->kind.empty()) continue;  // gap filler
    e->ns = row[3].c_str();
    e->name = row[4].c_str();
    e->created = row[5].as<bool>();
    e->deleted = row[6].as<bool>();
    e->SetText(row[7], row[8]);
    events.push_back(std::move(e));
  }
  if (compacted > from) {
    // This process fell behind compaction: changes in (from, compacted] are gone.
    spdlog::error(
        "store watch poller at revision {} fell behind compaction at {}; expiring watches", from,
        compacted);
    ExpireAll(compacted);
    return true;
  }
  if (compacted > compacted_) {
    compacted_ = compacted;
    compacted_gauge_.Set(static_cast<double>(compacted));
  }
  if (!events.empty() || next != from) Dispatch(events, next);
  if (gap) {
    const auto now = Steady::now();
    // The timer belongs to one hole: a new hole (the old one filled) starts it again.
    if (!gap_since_ || gap_start_ != gap->first) {
      gap_since_ = now;
      gap_start_ = gap->first;
    }
    if (now - *gap_since_ >= options_.gap_timeout) {
      // The hole has outlived any plausible in-flight insert: claim the ids so
      // they can never commit later, then read on.
      auto f = ExecOn(*bg_pool_, "fill_gaps", gap->first, gap->second);
      if (f.ok()) {
        gaps_filled_total_.Increment(static_cast<double>(f->affected_rows()));
        spdlog::debug("store watch: filled revisions {}..{}", gap->first, gap->second);
      }
      gap_since_.reset();
      return true;
    }
    return false;
  }
  gap_since_.reset();
  return static_cast<int64_t>(r->size()) >= options_.poll_batch;
}

void PostgresStore::Impl::Dispatch(const std::vector<RawEventPtr>& events, int64_t new_settled) {
  if (!events.empty()) dispatch_epoch_.fetch_add(1, std::memory_order_acq_rel);
  for (const auto& e : events) {
    cache_.Invalidate(HeadCache::KeyOf({e->kind, e->ns, e->name}), e->revision);
  }
  std::lock_guard lock(mu_);
  for (const auto& e : events) {
    ring_.push_back(e);
    ring_bytes_ += e->bytes;
    for (auto& w : watchers_) {
      if (w->Wants(*e)) w->Push(e);
    }
  }
  while (!ring_.empty() && (ring_.size() > options_.event_ring_capacity ||
                            ring_bytes_ > options_.event_ring_max_bytes)) {
    ring_base_ = ring_.front()->revision;
    ring_bytes_ -= ring_.front()->bytes;
    ring_.pop_front();
  }
  if (ring_.empty()) ring_base_ = new_settled;
  events_total_.Increment(static_cast<double>(events.size()));
  settled_ = new_settled;
  revision_gauge_.Set(static_cast<double>(new_settled));
  settled_cv_.notify_all();
  // Count watches closed for being slow, then forget them.
  for (auto& w : watchers_) {
    std::lock_guard wl(w->mu);
    if (w->overflow && w->capacity != 0) {
      watch_closed_slow_total_.Increment();
      w->capacity = 0;  // counted once
    }
  }
}

void PostgresStore::Impl::ExpireAll(int64_t compacted) {
  std::lock_guard lock(mu_);
  for (auto& w : watchers_) {
    std::lock_guard wl(w->mu);
    w->expired = true;
    w->queue.clear();
    w->cv.notify_all();
  }
  ring_.clear();
  ring_bytes_ = 0;
  ring_base_ = compacted;
  compacted_ = compacted;
  settled_ = compacted;
  settled_cv_.notify_all();
}

Result<std::unique_ptr<Watcher>> PostgresStore::Impl::Watch(const WatchOptions& options) {
  const KindInfo* info = kinds_.Find(options.kind);
  if (!info)
    return Record("watch", common::InvalidArgument("unknown kind \"" + options.kind + "\""));
  if (!info->namespaced && !options.ns.empty()) {
    return Record("watch",
                  common::InvalidArgument(options.kind + " is cluster-scoped: namespace \"" +
                                          options.ns + "\" must be empty"));
  }
  if (Status s = options.fields.Validate(info->FieldSelectorFields()); !s.ok()) {
    return Record("watch", s);
  }
  if (options.start_revision < 0) {
    return Record("watch", common::InvalidArgument("resourceVersion: must be >= 0"));
  }
  auto compacted = CompactedRevision();
  if (!compacted.ok()) return Record("watch", compacted.status());
  if (options.start_revision < *compacted) {
    return Record("watch", common::Expired("too old resource version: " +
                                           std::to_string(options.start_revision) + " (" +
                                           std::to_string(*compacted) + ")"));
  }
  auto state = std::make_shared<WatchState>();
  state->options = options;
  if (state->options.ns.empty() && info->namespaced) {
    if (auto pinned = options.fields.ExactValue("metadata.namespace")) state->options.ns = *pinned;
  }
  state->info = info;
  state->floor = options.start_revision;
  state->capacity = options_.watcher_queue_capacity;
  int64_t catchup_from = 0, catchup_until = 0;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return common::Unavailable("store is shutting down");
    if (options.start_revision < ring_base_) {
      // Older than the ring: the watcher reads (start, ring_base_] from the log itself.
      catchup_from = options.start_revision;
      catchup_until = ring_base_;
    }
    for (const auto& e : ring_) {
      if (state->Wants(*e)) state->queue.push_back(e);
    }
    state->capacity += state->queue.size();  // the hand-over is not the consumer's lag
    watchers_.push_back(state);
    watchers_gauge_.Set(static_cast<double>(watchers_.size()));
  }
  return std::unique_ptr<Watcher>(
      std::make_unique<PgWatcher>(weak_from_this(), std::move(state), catchup_from, catchup_until));
}

void PostgresStore::Impl::Unregister(const std::shared_ptr<WatchState>& w) {
  std::lock_guard lock(mu_);
  std::erase(watchers_, w);
  watchers_gauge_.Set(static_cast<double>(watchers_.size()));
}

void PostgresStore::Impl::PollLoop() {
  // Polls are at least min_poll_gap apart, so a burst of writes is read in a
  // few batches rather than one query per write; NOTIFYs at most every
  // notify_interval for the same reason.
  Steady::time_point last_poll{}, last_notify{};
  bool notify_pending = false;
  while (true) {
    {
      std::unique_lock lock(mu_);
      if (stopping_) return;
      if (!wake_)
        poll_cv_.wait_for(lock, options_.poll_interval, [&] { return wake_ || stopping_; });
      if (stopping_) return;
      wake_ = false;
      wake_requested_.store(false);
      notify_pending = local_writes_.exchange(false) || notify_pending;
    }
    const auto since = Steady::now() - last_poll;
    if (since < options_.min_poll_gap) std::this_thread::sleep_for(options_.min_poll_gap - since);
    last_poll = Steady::now();
    bool more = false;
    try {
      more = PollOnce();
      for (int rounds = 0; more && rounds < 100; ++rounds) {
        {
          std::lock_guard lock(mu_);
          if (stopping_) return;
        }
        if (gap_since_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        more = PollOnce();
      }
    } catch (const std::exception& e) {
      // No exception leaves this thread; the next poll starts from the same
      // settled revision, so nothing is skipped.
      spdlog::error("store watch poller: {}", e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (gap_since_ || more) {
      // Re-check a hole, or keep draining a backlog, without waiting a full interval.
      std::lock_guard lock(mu_);
      wake_ = true;
    }
    if (notify_pending) {
      if (Steady::now() - last_notify >= options_.notify_interval) {
        // Tell other processes' pollers; their own polling covers a lost NOTIFY.
        auto r = ExecOn(*bg_pool_, "notify", std::to_string(settled_.load()));
        if (!r.ok()) spdlog::debug("store notify failed: {}", r.status().ToString());
        last_notify = Steady::now();
        notify_pending = false;
      } else {
        std::lock_guard lock(mu_);
        wake_ = true;  // come back for it after the gap
      }
    }
  }
}

namespace {

class WakeOnNotify final : public pqxx::notification_receiver {
 public:
  WakeOnNotify(pqxx::connection_base& c, std::function<void()> wake)
      : pqxx::notification_receiver(c, kChannel), wake_(std::move(wake)) {}
  void operator()(const std::string&, int) override { wake_(); }

 private:
  std::function<void()> wake_;
};

}  // namespace

void PostgresStore::Impl::ListenLoop() {
  auto backoff = std::chrono::milliseconds(250);
  while (running_) {
    auto conn = pool_->OpenDedicated("listen");
    if (conn.ok()) {
      try {
        WakeOnNotify receiver(**conn, [this] { Wake(); });
        backoff = std::chrono::milliseconds(250);
        Wake();  // we may have missed notifications while disconnected
        while (running_) (*conn)->await_notification(0, 200'000);
      } catch (const std::exception& e) {
        spdlog::warn("store listener lost its connection: {}", e.what());
      }
    }
    std::unique_lock lock(stop_mu_);
    stop_cv_.wait_for(lock, backoff, [&] { return !running_; });
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

// ---------------------------------------------------------------------------
// Compaction

Result<int64_t> PostgresStore::Impl::CompactTo(int64_t target) {
  target = std::min(target, settled_.load());
  auto current = CompactedRevision();
  if (!current.ok()) return current.status();
  const auto started = Steady::now();
  int64_t removed = 0;
  for (int64_t lo = *current; lo < target;) {
    const int64_t hi = std::min(lo + options_.compaction.batch_size, target);
    auto conn = bg_pool_->Acquire();
    if (!conn.ok()) return conn.status();
    try {
      pqxx::work tx(conn->get());
      if (!tx.exec_prepared1("compaction_lock", kCompactionLockKey)[0].as<bool>()) {
        break;  // another server is compacting
      }
      // Re-read inside the lock: another server may have gone further.
      const int64_t now_at = tx.exec_prepared1("compacted_revision")[0].as<int64_t>();
      if (now_at >= hi) {
        lo = now_at;
        tx.commit();
        continue;
      }
      const auto superseded = tx.exec_prepared("compact_superseded", now_at, hi);
      const auto tombstones = tx.exec_prepared("compact_tombstones", now_at, hi);
      tx.exec_prepared("compact_set", hi);
      tx.commit();
      removed += static_cast<int64_t>(superseded.affected_rows() + tombstones.affected_rows());
      lo = hi;
    } catch (const pqxx::broken_connection& e) {
      conn->MarkBroken();
      return common::Unavailable(std::string("compaction: ") + e.what());
    } catch (const std::exception& e) {
      if (!conn->get().is_open()) conn->MarkBroken();
      return common::Unavailable(std::string("compaction: ") + e.what());
    }
  }
  compaction_runs_total_.Increment();
  compaction_rows_total_.Increment(static_cast<double>(removed));
  compaction_seconds_.Observe(std::chrono::duration<double>(Steady::now() - started).count());
  if (auto c = CompactedRevision(); c.ok()) {
    compacted_ = std::max(compacted_.load(), *c);
    compacted_gauge_.Set(static_cast<double>(compacted_.load()));
  }
  return removed;
}

void PostgresStore::Impl::CompactLoop() {
  // (when, settled revision then): the newest revision older than retain_age is
  // the furthest compaction may go by age.
  std::deque<std::pair<common::TimePoint, int64_t>> samples;
  const auto& c = options_.compaction;
  while (true) {
    {
      std::unique_lock lock(stop_mu_);
      if (stop_cv_.wait_for(lock, c.interval, [&] { return !running_; })) return;
    }
    const auto now = clock_.Now();
    const int64_t rev = settled_.load();
    samples.emplace_back(now, rev);
    int64_t by_age = 0;
    while (!samples.empty() && samples.front().first <= now - c.retain_age) {
      by_age = samples.front().second;
      samples.pop_front();
    }
    if (by_age > 0) samples.emplace_front(now - c.retain_age, by_age);  // keep the boundary
    const int64_t target = std::min(rev - c.retain_revisions, by_age);
    if (target <= compacted_.load()) continue;
    Result<int64_t> removed = common::Internal("not run");
    try {
      removed = CompactTo(target);
    } catch (const std::exception& e) {
      removed = common::Internal(e.what());
    }
    if (!removed.ok()) {
      spdlog::warn("store compaction to {} failed: {}", target, removed.status().ToString());
    } else {
      spdlog::info("store compaction: compacted_revision={} removed_rows={}", compacted_.load(),
                   *removed);
    }
  }
}

// ---------------------------------------------------------------------------
// Facade

PostgresStore::PostgresStore(PostgresStoreOptions options, const KindRegistry& kinds,
                             common::Clock& clock, prometheus::Registry& registry)
    : impl_(std::make_shared<Impl>(std::move(options), kinds, clock, registry)) {}
PostgresStore::~PostgresStore() { impl_->Stop(); }
Status PostgresStore::Start() { return impl_->Start(); }
void PostgresStore::Stop() { impl_->Stop(); }
Result<Object> PostgresStore::Create(const json& o) { return impl_->Create(o); }
Result<Object> PostgresStore::Update(const json& o) { return impl_->Put(o, false); }
Result<Object> PostgresStore::UpdateStatus(const json& o) { return impl_->Put(o, true); }
Result<Object> PostgresStore::Delete(const ObjectKey& k, const DeleteOptions& o) {
  return impl_->Delete(k, o);
}
Result<Object> PostgresStore::Get(const ObjectKey& k) { return impl_->Get(k); }
Result<ListResult> PostgresStore::List(const ListOptions& o) { return impl_->List(o); }
Result<std::unique_ptr<Watcher>> PostgresStore::Watch(const WatchOptions& o) {
  return impl_->Watch(o);
}
Result<int64_t> PostgresStore::CurrentRevision() { return impl_->CurrentRevision(); }
Status PostgresStore::Ping() {
  auto r = impl_->Exec("ping");
  return r.ok() ? Status::Ok() : r.status();
}
Result<int64_t> PostgresStore::CompactTo(int64_t target) { return impl_->CompactTo(target); }
Result<int64_t> PostgresStore::CompactedRevision() { return impl_->CompactedRevision(); }
size_t PostgresStore::max_object_bytes() const { return impl_->options().max_object_bytes; }
ConnectionPool& PostgresStore::pool() { return impl_->pool(); }

// ObjectStore's text helpers.
Result<Object> ObjectStore::CreateFromJson(std::string_view text) {
  auto parsed = ParseObjectJson(text, max_object_bytes());
  if (!parsed.ok()) return parsed.status();
  return Create(*parsed);
}

Result<Object> ObjectStore::UpdateFromJson(std::string_view text) {
  auto parsed = ParseObjectJson(text, max_object_bytes());
  if (!parsed.ok()) return parsed.status();
  return Update(*parsed);
}

}  // namespace corral::store
