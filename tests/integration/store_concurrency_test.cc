// Contention, outages and the connection pool against a real PostgreSQL.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <pqxx/pqxx>
#include <thread>

#include "common/subprocess.h"
#include "store/schema.h"
#include "tests/support/test_db.h"

namespace corral::store {
namespace {

using common::Code;
using nlohmann::json;
using testing::MakeObject;
using namespace std::chrono_literals;

// 8 threads in each of 2 processes increment one counter by read-modify-write.
// The final value equals the number of successful updates; every failure is a
// Conflict.
TEST(StoreConcurrencyTest, CasUnderContentionAcrossProcesses) {
  auto h = testing::StartStore();
  ASSERT_NE(h, nullptr);
  ASSERT_TRUE(h->store->Create(MakeObject("Model", "default", "counter", {{"counter", 0}})).ok());
  const int kProcs = 2, kThreads = 8, kIterations = 60;
  std::vector<std::thread> procs;
  std::vector<common::Result<common::ProcessResult>> results(kProcs, common::Internal("not run"));
  for (int p = 0; p < kProcs; ++p) {
    procs.emplace_back([&, p] {
      results[p] = common::RunProcess(
          {CORRAL_STORE_LOAD_BIN, "--dsn", testing::Dsn(), "cas", "--name", "counter", "--threads",
           std::to_string(kThreads), "--iterations", std::to_string(kIterations)},
          testing::LongRun());
    });
  }
  for (auto& t : procs) t.join();
  int64_t ok = 0, conflicts = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->exit_code, 0) << r->output;
    const auto line = r->output.substr(r->output.rfind('{'));
    const json j = json::parse(line);
    EXPECT_EQ(j["other"], 0) << "every failure must be a Conflict: " << r->output;
    ok += j["ok"].get<int64_t>();
    conflicts += j["conflicts"].get<int64_t>();
  }
  EXPECT_EQ(ok + conflicts, kProcs * kThreads * kIterations);
  EXPECT_GT(conflicts, 0) << "the test did not produce contention";
  auto final_obj = h->store->Get({"Model", "default", "counter"});
  ASSERT_TRUE(final_obj.ok());
  EXPECT_EQ(final_obj->body["spec"]["counter"].get<int64_t>(), ok);
  EXPECT_EQ(final_obj->body["metadata"]["generation"].get<int64_t>(), ok + 1);
}

TEST(StoreConcurrencyTest, PoolBoundsWaitersAndTimesOut) {
  prometheus::Registry registry;
  PoolOptions o;
  o.dsn = testing::Dsn();
  o.min_size = 0;
  o.max_size = 1;
  o.max_waiters = 1;
  o.acquire_timeout = 300ms;
  ConnectionPool pool(o, {{"one", "SELECT 1"}}, registry);
  auto held = pool.Acquire();
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  // One waiter is allowed and times out; a second concurrent one is refused at once.
  std::atomic<bool> waiting{false};
  common::Status waiter_status;
  std::thread waiter([&] {
    waiting = true;
    auto r = pool.Acquire();
    waiter_status = r.status();
  });
  while (!waiting) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);
  const auto t0 = std::chrono::steady_clock::now();
  auto refused = pool.Acquire();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 200ms);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kUnavailable);
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("waiting"));
  waiter.join();
  EXPECT_EQ(waiter_status.code(), Code::kUnavailable);
  EXPECT_THAT(waiter_status.message(), ::testing::HasSubstr("timed out"));
  { auto release = std::move(held).value(); }
  auto again = pool.Acquire();
  EXPECT_TRUE(again.ok());
}

TEST(StoreConcurrencyTest, PoolReplacesConnectionsKilledByTheServer) {
  prometheus::Registry registry;
  PoolOptions o;
  o.dsn = testing::Dsn();
  o.application_name = "corral-pool-kill";
  o.min_size = 2;
  o.max_size = 2;
  ConnectionPool pool(o, {{"one", "SELECT 1"}}, registry);
  ASSERT_TRUE(pool.Warm().ok());
  ASSERT_EQ(pool.stats().idle, 2);
  testing::QueryScalar(testing::DsnFor("postgres"),
                       "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE application_name = 'corral-pool-kill'");
  std::this_thread::sleep_for(100ms);
  // The health check on borrow notices the dead sockets and opens new ones.
  for (int i = 0; i < 3; ++i) {
    auto c = pool.Acquire();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    pqxx::nontransaction tx(c->get());
    EXPECT_EQ(tx.exec_prepared("one")[0][0].as<int>(), 1);
  }
}

TEST(StoreConcurrencyTest, ConcurrentStartsMigrateOnce) {
  const std::string dsn = testing::CreateDatabase("t_migrate");
  std::vector<std::thread> starters;
  std::vector<std::unique_ptr<testing::StoreHandle>> handles(4);
  for (int i = 0; i < 4; ++i) {
    starters.emplace_back([&, i] { handles[i] = testing::StartStore({}, dsn); });
  }
  for (auto& t : starters) t.join();
  for (const auto& h : handles) ASSERT_NE(h, nullptr);
  EXPECT_EQ(testing::QueryScalar(dsn, "SELECT count(*) FROM corral_schema_migrations"),
            std::to_string(LatestSchemaVersion()));
  // A second start of an up-to-date database is a no-op.
  auto again = testing::StartStore({}, dsn);
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(again->store->Create(MakeObject("Model", "default", "m")).ok());
}

TEST(StoreConcurrencyTest, PoolTakesKeyValueAndUrlDsnsWithItsSessionSettings) {
  const std::string db = testing::Dsn().substr(testing::Dsn().rfind("dbname='") + 8);
  const std::string url = "postgresql:///" + db.substr(0, db.size() - 1) +
                          "?host=" + testing::ClusterDir() + "&user=corral";
  for (const std::string& dsn : {testing::Dsn(), url}) {
    prometheus::Registry registry;
    PoolOptions o;
    o.dsn = dsn;
    o.application_name = "corral-dsn-test/x";
    ConnectionPool pool(o, {}, registry);
    auto c = pool.Acquire();
    ASSERT_TRUE(c.ok()) << dsn << ": " << c.status().ToString();
    pqxx::nontransaction tx(c->get());
    EXPECT_EQ(std::string(tx.exec("SHOW plan_cache_mode")[0][0].c_str()), "force_generic_plan")
        << dsn;
    EXPECT_EQ(std::string(tx.exec("SHOW application_name")[0][0].c_str()), "corral-dsn-test/x")
        << dsn;
    EXPECT_EQ(std::string(tx.exec("SHOW statement_timeout")[0][0].c_str()), "30s") << dsn;
  }
  // A statement past the timeout is cancelled by PostgreSQL.
  prometheus::Registry registry;
  PoolOptions o;
  o.dsn = testing::Dsn();
  o.statement_timeout = 100ms;
  ConnectionPool pool(o, {}, registry);
  auto c = pool.Acquire();
  ASSERT_TRUE(c.ok());
  pqxx::nontransaction tx(c->get());
  try {
    tx.exec("SELECT pg_sleep(2)");
    ADD_FAILURE() << "pg_sleep(2) was not cancelled";
  } catch (const pqxx::sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "57014");
  }
}

TEST(StoreConcurrencyTest, UnreachableDatabaseIsUnavailable) {
  prometheus::Registry registry;
  common::RealClock clock;
  const auto kinds = KindRegistry::Default();
  PostgresStoreOptions o;
  o.pool.dsn = "host=/nonexistent-dir port=5432 user=corral dbname=x";
  PostgresStore st(o, kinds, clock, registry);
  const auto s = st.Start();
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
}

}  // namespace
}  // namespace corral::store

namespace corral::store {
namespace {

// Cached reads: this store's own writes are visible at once; another
// process's writes as soon as this store's poller has seen them, and no
// stale entry survives a read that raced an invalidation.
TEST(StoreCachedReadsTest, OwnWritesAtOnceOthersAfterThePoller) {
  auto reader = testing::StartStore([](PostgresStoreOptions& o) { o.cached_reads = true; });
  ASSERT_NE(reader, nullptr);
  auto writer = testing::StartStore({}, testing::Dsn());
  ASSERT_NE(writer, nullptr);
  auto created =
      reader->store->Create(testing::MakeObject("Model", "default", "cached", {{"n", 0}}));
  ASSERT_TRUE(created.ok());
  // Own write: visible at once, every time.
  for (int i = 1; i <= 20; ++i) {
    auto cur = reader->store->Get({"Model", "default", "cached"});
    ASSERT_TRUE(cur.ok());
    json next = cur->body;
    next["spec"]["n"] = i;
    auto w = reader->store->Update(next);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    auto g = reader->store->Get({"Model", "default", "cached"});
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(g->body["spec"]["n"], i);
    EXPECT_EQ(g->revision, w->revision);
  }
  // Another process writes while this one reads as fast as it can.
  std::atomic<bool> done{false};
  std::thread readers([&] {
    while (!done) (void)reader->store->Get({"Model", "default", "cached"});
  });
  int64_t last = 0;
  for (int i = 0; i < 200; ++i) {
    auto cur = writer->store->Get({"Model", "default", "cached"});
    ASSERT_TRUE(cur.ok());
    json next = cur->body;
    next["spec"]["n"] = 1000 + i;
    auto w = writer->store->Update(next);
    if (w.ok()) last = w->revision;
  }
  done = true;
  readers.join();
  // Converges to the last write within the poller's lag (bounded: 5 s).
  int64_t seen = 0;
  for (int i = 0; i < 100 && seen != last; ++i) {
    auto g = reader->store->Get({"Model", "default", "cached"});
    ASSERT_TRUE(g.ok());
    seen = g->revision;
    if (seen != last) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(seen, last);
  // Deletes are not served from the cache.
  ASSERT_TRUE(writer->store->Delete({"Model", "default", "cached"}).ok());
  Code code = Code::kOk;
  for (int i = 0; i < 100; ++i) {
    code = reader->store->Get({"Model", "default", "cached"}).status().code();
    if (code == Code::kNotFound) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(code, Code::kNotFound);
}

}  // namespace
}  // namespace corral::store
