#include "store/pool.h"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <pqxx/nontransaction>

namespace corral::store {

using common::Result;
using common::Status;
using Steady = std::chrono::steady_clock;

namespace {

constexpr const char* kPingStatement = "corral_pool_ping";

// Appends libpq parameters to either a key=value DSN or a postgres:// URL.
//
// plan_cache_mode: every statement the store prepares is a short index lookup
// or single-row insert, for which the generic plan is as good as a custom one;
// re-planning on each execution (PostgreSQL's default for the first runs, and
// whenever a custom plan looks cheaper) cost more than running the statement.
std::string WithParams(const std::string& dsn, const std::string& app, int connect_timeout_s,
                       int64_t statement_timeout_ms) {
  const bool url = dsn.rfind("postgres://", 0) == 0 || dsn.rfind("postgresql://", 0) == 0;
  const std::string st = std::to_string(statement_timeout_ms);
  if (url) {
    const char sep = dsn.find('?') == std::string::npos ? '?' : '&';
    std::string encoded_app;
    for (char c : app) encoded_app += (c == '/') ? std::string("%2F") : std::string(1, c);
    return dsn + sep + "application_name=" + encoded_app +
           "&connect_timeout=" + std::to_string(connect_timeout_s) +
           "&options=-c%20plan_cache_mode%3Dforce_generic_plan%20-c%20statement_timeout%3D" + st;
  }
  return dsn + " application_name='" + app +
         "' connect_timeout=" + std::to_string(connect_timeout_s) +
         " options='-c plan_cache_mode=force_generic_plan -c statement_timeout=" + st + "'";
}

}  // namespace

PooledConnection::PooledConnection(PooledConnection&& other) noexcept
    : pool_(other.pool_), conn_(std::move(other.conn_)), broken_(other.broken_) {
  other.pool_ = nullptr;
}

PooledConnection::~PooledConnection() {
  if (pool_ && conn_) pool_->Release(std::move(conn_), broken_);
}

ConnectionPool::ConnectionPool(PoolOptions options,
                               std::vector<std::pair<std::string, std::string>> statements,
                               prometheus::Registry& registry)
    : options_(std::move(options)),
      statements_(std::move(statements)),
      in_use_gauge_(prometheus::BuildGauge()
                        .Name("corral_store_pool_connections")
                        .Help("Connections in the store's pool by state.")
                        .Register(registry)
                        .Add({{"pool", options_.name}, {"state", "in_use"}})),
      idle_gauge_(prometheus::BuildGauge()
                      .Name("corral_store_pool_connections")
                      .Help("Connections in the store's pool by state.")
                      .Register(registry)
                      .Add({{"pool", options_.name}, {"state", "idle"}})),
      waiters_gauge_(prometheus::BuildGauge()
                         .Name("corral_store_pool_waiters")
                         .Help("Callers waiting for a pooled connection.")
                         .Register(registry)
                         .Add({{"pool", options_.name}})),
      acquire_seconds_(prometheus::BuildHistogram()
                           .Name("corral_store_pool_acquire_duration_seconds")
                           .Help("Time to obtain a pooled connection.")
                           .Register(registry)
                           .Add({{"pool", options_.name}},
                                prometheus::Histogram::BucketBoundaries{
                                    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                    0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})),
      opened_total_(prometheus::BuildCounter()
                        .Name("corral_store_pool_connections_opened_total")
                        .Help("Connections opened to PostgreSQL.")
                        .Register(registry)
                        .Add({{"pool", options_.name}})),
      open_failures_total_(prometheus::BuildCounter()
                               .Name("corral_store_pool_connect_failures_total")
                               .Help("Failed attempts to open a connection to PostgreSQL.")
                               .Register(registry)
                               .Add({{"pool", options_.name}})),
      closed_broken_total_(prometheus::BuildCounter()
                               .Name("corral_store_pool_connections_discarded_total")
                               .Help("Connections closed because they were broken or failed a "
                                     "health check.")
                               .Register(registry)
                               .Add({{"pool", options_.name}})),
      acquire_timeouts_total_(prometheus::BuildCounter()
                                  .Name("corral_store_pool_acquire_failures_total")
                                  .Help("Acquire calls that gave up (timeout or too many waiters).")
                                  .Register(registry)
                                  .Add({{"pool", options_.name}})) {}

ConnectionPool::~ConnectionPool() {
  std::lock_guard lock(mu_);
  idle_.clear();
}

Result<std::unique_ptr<pqxx::connection>> ConnectionPool::Open(const std::string& app_name) {
  try {
    auto conn = std::make_unique<pqxx::connection>(
        WithParams(options_.dsn, app_name, static_cast<int>(options_.connect_timeout.count()),
                   options_.statement_timeout.count()));
    conn->prepare(kPingStatement, "SELECT 1");
    for (const auto& [name, sql] : statements_) conn->prepare(name, sql);
    opened_total_.Increment();
    return conn;
  } catch (const std::exception& e) {
    open_failures_total_.Increment();
    std::string msg = e.what();
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return common::Unavailable("cannot connect to PostgreSQL: " + msg);
  }
}

Result<std::unique_ptr<pqxx::connection>> ConnectionPool::OpenDedicated(
    const std::string& purpose) {
  return Open(options_.application_name + "/" + purpose);
}

Status ConnectionPool::Warm() {
  Status first;
  for (int i = 0; i < options_.min_size; ++i) {
    {
      std::lock_guard lock(mu_);
      if (open_ >= options_.min_size) break;
      ++open_;
    }
    auto conn = Open(options_.application_name);
    std::lock_guard lock(mu_);
    if (!conn.ok()) {
      --open_;
      if (first.ok()) first = conn.status();
      break;
    }
    idle_.push_back({std::move(conn).value(), Steady::now()});
    UpdateGauges();
    cv_.notify_one();
  }
  return first;
}

// Cheap liveness check. An idle connection has nothing to read; if its socket is
// readable the server closed it (restart, idle timeout) or sent an error.
bool ConnectionPool::Healthy(pqxx::connection& conn, Steady::time_point idle_since) {
  if (!conn.is_open()) return false;
  const int fd = conn.sock();
  if (fd < 0) return false;
  struct pollfd pfd {
    fd, POLLIN, 0
  };
  const bool readable = poll(&pfd, 1, 0) != 0;
  // Readable while idle means the server spoke first (a termination notice or
  // EOF); confirm with a round trip. Long-idle connections are pinged too.
  if (readable || Steady::now() - idle_since >= options_.health_check_idle) {
    try {
      pqxx::nontransaction tx(conn);
      tx.exec_prepared(kPingStatement);
    } catch (const std::exception&) {
      return false;
    }
  }
  return true;
}

Result<PooledConnection> ConnectionPool::Acquire() {
  const auto start = Steady::now();
  const auto deadline = start + options_.acquire_timeout;
  std::unique_lock lock(mu_);
  if (waiters_ >= options_.max_waiters) {
    acquire_timeouts_total_.Increment();
    return common::Unavailable("store connection pool exhausted: " + std::to_string(waiters_) +
                               " callers already waiting");
  }
  ++waiters_;
  UpdateGauges();
  while (true) {
    if (!idle_.empty()) {
      Idle item = std::move(idle_.back());
      idle_.pop_back();
      ++in_use_;
      --waiters_;
      UpdateGauges();
      lock.unlock();
      if (Healthy(*item.conn, item.since)) {
        acquire_seconds_.Observe(std::chrono::duration<double>(Steady::now() - start).count());
        return PooledConnection(this, std::move(item.conn));
      }
      closed_broken_total_.Increment();
      item.conn.reset();
      lock.lock();
      --in_use_;
      --open_;
      ++waiters_;
      UpdateGauges();
      continue;
    }
    if (open_ < options_.max_size) {
      ++open_;
      ++in_use_;
      --waiters_;
      UpdateGauges();
      lock.unlock();
      auto conn = Open(options_.application_name);
      if (!conn.ok()) {
        lock.lock();
        --open_;
        --in_use_;
        UpdateGauges();
        cv_.notify_one();  // let another waiter try
        acquire_timeouts_total_.Increment();
        return conn.status();
      }
      acquire_seconds_.Observe(std::chrono::duration<double>(Steady::now() - start).count());
      return PooledConnection(this, std::move(conn).value());
    }
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= options_.max_size) {
      --waiters_;
      UpdateGauges();
      acquire_timeouts_total_.Increment();
      return common::Unavailable("timed out after " +
                                 std::to_string(options_.acquire_timeout.count()) +
                                 " ms waiting for a store connection (pool max " +
                                 std::to_string(options_.max_size) + ")");
    }
  }
}

void ConnectionPool::Release(std::unique_ptr<pqxx::connection> conn, bool broken) {
  if (broken || !conn->is_open()) {
    closed_broken_total_.Increment();
    conn.reset();  // close outside the lock
    std::lock_guard lock(mu_);
    --in_use_;
    --open_;
    UpdateGauges();
    cv_.notify_one();
    return;
  }
  std::lock_guard lock(mu_);
  --in_use_;
  idle_.push_back({std::move(conn), Steady::now()});
  UpdateGauges();
  cv_.notify_one();
}

ConnectionPool::Stats ConnectionPool::stats() const {
  std::lock_guard lock(mu_);
  return {open_, in_use_, static_cast<int>(idle_.size()), waiters_};
}

void ConnectionPool::UpdateGauges() {
  in_use_gauge_.Set(in_use_);
  idle_gauge_.Set(static_cast<double>(idle_.size()));
  waiters_gauge_.Set(waiters_);
}

}  // namespace corral::store
