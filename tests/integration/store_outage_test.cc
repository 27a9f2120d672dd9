// PostgreSQL restarted under load. Its own executable, run serially: the
// restart drops every connection in the shared test cluster.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "tests/support/test_db.h"

namespace corral::store {
namespace {

using common::Code;
using testing::MakeObject;
using namespace std::chrono_literals;

// PostgreSQL restarted during a write load: calls fail with Unavailable while it
// is down and succeed afterwards without restarting the store; no connection leaks.
TEST(StoreOutageTest, SurvivesPostgresRestartUnderLoad) {
  auto h = testing::StartStore([](PostgresStoreOptions& o) {
    o.pool.application_name = "corral-outage-test";
    o.pool.max_size = 4;
    o.pool.acquire_timeout = 2s;
  });
  ASSERT_NE(h, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, ok_after_restart{0};
  std::atomic<bool> restarted{false};
  std::mutex mu;
  std::map<Code, int64_t> failures;
  std::vector<std::string> unexpected;
  std::set<std::string> succeeded, failed;  // guarded by mu
  std::vector<std::thread> load;
  for (int t = 0; t < 4; ++t) {
    load.emplace_back([&, t] {
      for (int i = 0; !stop && i < 100'000; ++i) {
        const std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto r = h->store->Create(MakeObject("Model", "outage", name));
        if (r.ok()) {
          ++ok;
          if (restarted) ++ok_after_restart;
          std::lock_guard lock(mu);
          succeeded.insert(name);
          continue;
        }
        std::lock_guard lock(mu);
        failed.insert(name);
        ++failures[r.status().code()];
        if (r.status().code() != Code::kUnavailable && unexpected.size() < 5) {
          unexpected.push_back(r.status().ToString());
        }
        std::this_thread::sleep_for(10ms);
      }
    });
  }
  std::this_thread::sleep_for(500ms);
  const int64_t ok_before = ok;
  ASSERT_TRUE(testing::Cluster().Restart().ok());
  restarted = true;
  for (int i = 0; i < 300 && ok_after_restart < 50; ++i) std::this_thread::sleep_for(20ms);
  stop = true;
  for (auto& t : load) t.join();

  EXPECT_GT(ok_before, 0);
  EXPECT_GE(ok_after_restart, 50) << "writes did not recover after the restart";
  EXPECT_TRUE(unexpected.empty()) << unexpected.front();
  // Reads and watches recover too.
  ListOptions lo;
  lo.kind = "Model";
  lo.ns = "outage";
  auto list = h->store->List(lo);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  // Every acknowledged create is there. A create that failed because the
  // connection broke may still have committed (the server shut down after the
  // commit, before answering: the caller was told Unavailable, outcome
  // unknown); nothing else is there.
  std::set<std::string> listed;
  for (const auto& o : list->items) listed.insert(o.body["metadata"]["name"].get<std::string>());
  for (const auto& n : succeeded) EXPECT_TRUE(listed.count(n)) << "acknowledged create lost: " << n;
  for (const auto& n : listed) {
    EXPECT_TRUE(succeeded.count(n) || failed.count(n)) << "unexpected object " << n;
  }

  // Every connection the store holds is one the pool accounts for.
  const auto stats = h->store->pool().stats();
  EXPECT_EQ(stats.in_use, 0);
  EXPECT_LE(stats.open, 4);
  const std::string held = testing::QueryScalar(
      testing::DsnFor("postgres"),
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'corral-outage-test'");
  EXPECT_EQ(std::stoi(held), stats.open) << "pool connections leaked or unaccounted";
  const std::string dedicated = testing::QueryScalar(
      testing::DsnFor("postgres"),
      "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'corral-outage-test/%'");
  EXPECT_LE(std::stoi(dedicated), 3) << "at most the LISTEN connection and the background pool (2)";
}

}  // namespace
}  // namespace corral::store
