#pragma once
// A bounded pool of PostgreSQL connections with the store's prepared
// statements declared on each.
//
// - min_size connections are opened eagerly (best effort), at most max_size.
// - Acquire waits up to acquire_timeout; at most max_waiters callers wait at
//   once, more get Unavailable immediately (load shedding, not a pile-up).
// - Health check on borrow: a connection whose socket shows EOF or an error is
//   replaced without a round trip; one idle longer than health_check_idle is
//   pinged first. A lease marked broken (the server went away mid-statement) is
//   closed on release, so after a PostgreSQL restart the pool reconnects by itself.
//
// Thread-safe. Leases must not outlive the pool.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <pqxx/connection>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace corral::store {

struct PoolOptions {
  std::string dsn;
  std::string name = "requests";  // the `pool` label on this pool's metrics
  std::string application_name = "corral";
  int min_size = 2;
  int max_size = 16;
  std::chrono::milliseconds acquire_timeout{5000};
  int max_waiters = 1024;
  std::chrono::milliseconds health_check_idle{10'000};
  std::chrono::seconds connect_timeout{5};
  // PostgreSQL's statement_timeout on every connection: no statement runs
  // longer (a request then fails Unavailable instead of holding a connection).
  // 0: no limit.
  std::chrono::milliseconds statement_timeout{30'000};
};

class ConnectionPool;

// Exclusive use of one connection until destroyed.
class PooledConnection {
 public:
  PooledConnection(PooledConnection&& other) noexcept;
  PooledConnection& operator=(PooledConnection&&) = delete;
  ~PooledConnection();
  pqxx::connection& get() { return *conn_; }
  // The connection is unusable (server restarted, protocol error): close it on release.
  void MarkBroken() { broken_ = true; }

 private:
  friend class ConnectionPool;
  PooledConnection(ConnectionPool* pool, std::unique_ptr<pqxx::connection> conn)
      : pool_(pool), conn_(std::move(conn)) {}
  ConnectionPool* pool_;
  std::unique_ptr<pqxx::connection> conn_;
  bool broken_ = false;
};

class ConnectionPool {
 public:
  // statements: (name, SQL) pairs prepared on every connection.
  ConnectionPool(PoolOptions options, std::vector<std::pair<std::string, std::string>> statements,
                 prometheus::Registry& registry);
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // Unavailable when the database cannot be reached, the wait times out, or
  // too many callers already wait.
  common::Result<PooledConnection> Acquire();
  // Opens min_size connections; returns the first connection error, if any.
  common::Status Warm();
  // Opens a connection outside the pool (LISTEN, advisory-lock sessions) with
  // the same settings. Counted in the pool's opened/failed metrics.
  common::Result<std::unique_ptr<pqxx::connection>> OpenDedicated(const std::string& purpose);

  struct Stats {
    int open = 0;
    int in_use = 0;
    int idle = 0;
    int waiters = 0;
  };
  Stats stats() const;
  const PoolOptions& options() const { return options_; }

 private:
  friend class PooledConnection;
  struct Idle {
    std::unique_ptr<pqxx::connection> conn;
    std::chrono::steady_clock::time_point since;
  };
  common::Result<std::unique_ptr<pqxx::connection>> Open(const std::string& app_name);
  void Release(std::unique_ptr<pqxx::connection> conn, bool broken);
  bool Healthy(pqxx::connection& conn, std::chrono::steady_clock::time_point idle_since);
  void UpdateGauges();  // requires mu_

  const PoolOptions options_;
  const std::vector<std::pair<std::string, std::string>> statements_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Idle> idle_;  // guarded by mu_; most recently used at the back
  int open_ = 0;           // guarded by mu_; idle + in use + being opened
  int in_use_ = 0;         // guarded by mu_
  int waiters_ = 0;        // guarded by mu_

  prometheus::Gauge& in_use_gauge_;
  prometheus::Gauge& idle_gauge_;
  prometheus::Gauge& waiters_gauge_;
  prometheus::Histogram& acquire_seconds_;
  prometheus::Counter& opened_total_;
  prometheus::Counter& open_failures_total_;
  prometheus::Counter& closed_broken_total_;
  prometheus::Counter& acquire_timeouts_total_;
};

}  // namespace corral::store
