// Watch semantics against a real PostgreSQL, with writers in other processes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "common/subprocess.h"
#include "tests/support/test_db.h"

namespace corral::store {
namespace {

using common::Code;
using nlohmann::json;
using testing::MakeObject;
using Type = WatchEvent::Type;
using namespace std::chrono_literals;

// Drains a watcher into a vector until `pred` holds or `budget` runs out.
std::vector<WatchEvent> Collect(Watcher& w,
                                const std::function<bool(const std::vector<WatchEvent>&)>& pred,
                                std::chrono::milliseconds budget = 30s) {
  std::vector<WatchEvent> out;
  const auto deadline = std::chrono::steady_clock::now() + budget;
  while (!pred(out) && std::chrono::steady_clock::now() < deadline) {
    auto ev = w.Next(200ms);
    if (!ev) continue;
    out.push_back(std::move(*ev));
    if (out.back().type == Type::kError) break;
  }
  return out;
}

std::vector<int64_t> ModelRevisionsAfter(int64_t start, const std::string& ns) {
  pqxx::connection c(testing::Dsn());
  pqxx::nontransaction tx(c);
  const auto r = tx.exec_params(
      "SELECT id FROM corral_objects WHERE kind = 'Model' AND namespace = $1 AND id > $2 ORDER BY "
      "id",
      ns, start);
  std::vector<int64_t> out;
  for (const auto& row : r) out.push_back(row[0].as<int64_t>());
  return out;
}

class StoreWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_ = testing::StartStore();
    ASSERT_NE(h_, nullptr);
  }
  PostgresStore& st() { return *h_->store; }
  std::unique_ptr<testing::StoreHandle> h_;
};

// 3 writer processes x 1,000 creates while 2 watchers (started at different
// revisions) consume; each sees every revision after its start exactly once,
// in order; a watcher resumed from its last revision misses nothing.
TEST_F(StoreWatchTest, ExactlyOnceInOrderAcrossWriterProcesses) {
  const int kWriters = 3, kPerWriter = 1000;
  auto start_a = st().CurrentRevision();
  ASSERT_TRUE(start_a.ok());
  WatchOptions wo;
  wo.kind = "Model";
  wo.ns = "load";
  wo.start_revision = *start_a;
  auto watch_a = st().Watch(wo);
  ASSERT_TRUE(watch_a.ok());

  std::vector<std::thread> writers;
  std::vector<common::Result<common::ProcessResult>> results(kWriters, common::Internal("not run"));
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      results[i] =
          common::RunProcess({CORRAL_STORE_LOAD_BIN, "--dsn", testing::Dsn(), "write", "--prefix",
                              "w" + std::to_string(i), "--count", std::to_string(kPerWriter)},
                             testing::LongRun());
    });
  }
  // Watcher B starts once writes are under way, from the revision then.
  int64_t start_b = *start_a;
  for (int i = 0; i < 200 && start_b - *start_a < 300; ++i) {
    std::this_thread::sleep_for(20ms);
    start_b = *st().CurrentRevision();
  }
  wo.start_revision = start_b;
  auto watch_b = st().Watch(wo);
  ASSERT_TRUE(watch_b.ok());

  // A: stop after 1,200 events, resume from the last revision seen.
  auto a1 = Collect(**watch_a, [](const auto& v) { return v.size() >= 1200; });
  ASSERT_EQ(a1.size(), 1200u);
  (*watch_a)->Stop();
  wo.start_revision = a1.back().object.revision;
  auto watch_a2 = st().Watch(wo);
  ASSERT_TRUE(watch_a2.ok());

  for (auto& t : writers) t.join();
  for (int i = 0; i < kWriters; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status().ToString();
    ASSERT_EQ(results[i]->exit_code, 0) << results[i]->output;
  }
  const auto expected_a = ModelRevisionsAfter(*start_a, "load");
  const auto expected_b = ModelRevisionsAfter(start_b, "load");
  ASSERT_EQ(expected_a.size(), static_cast<size_t>(kWriters * kPerWriter));

  auto a2 =
      Collect(**watch_a2, [&](const auto& v) { return a1.size() + v.size() >= expected_a.size(); });
  auto b = Collect(**watch_b, [&](const auto& v) { return v.size() >= expected_b.size(); });
  // Nothing more arrives.
  EXPECT_FALSE((*watch_a2)->Next(300ms).has_value());
  EXPECT_FALSE((*watch_b)->Next(300ms).has_value());

  auto check = [](const std::vector<WatchEvent>& got, const std::vector<int64_t>& want,
                  const char* who) {
    ASSERT_EQ(got.size(), want.size()) << who;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].type, Type::kAdded) << who << " #" << i;
      ASSERT_EQ(got[i].object.revision, want[i]) << who << " #" << i;
      ASSERT_EQ(got[i].object.body["metadata"]["resourceVersion"], std::to_string(want[i]));
    }
  };
  std::vector<WatchEvent> a_all = a1;
  a_all.insert(a_all.end(), a2.begin(), a2.end());
  check(a_all, expected_a, "watcher A (resumed)");
  check(b, expected_b, "watcher B");
  std::set<std::string> names;
  for (const auto& e : a_all) names.insert(e.object.body["metadata"]["name"].get<std::string>());
  EXPECT_EQ(names.size(), static_cast<size_t>(kWriters * kPerWriter));
}

// Informer semantics under churn from two other processes while background
// compaction keeps only a short history: a cache built from List + Watch (and
// re-listed on Expired) ends up equal to the store, revision for revision.
TEST_F(StoreWatchTest, InformerCacheMatchesTheStoreUnderChurnAndCompaction) {
  auto h = testing::StartStore([](PostgresStoreOptions& o) {
    o.compaction.enabled = true;
    o.compaction.interval = 100ms;
    o.compaction.retain_revisions = 150;
    o.compaction.retain_age = std::chrono::seconds(0);
    o.compaction.batch_size = 40;
  });
  ASSERT_NE(h, nullptr);
  auto& store = *h->store;
  std::atomic<bool> writers_done{false};
  std::vector<std::thread> writers;
  std::vector<common::Result<common::ProcessResult>> results(2, common::Internal("not run"));
  for (int i = 0; i < 2; ++i) {
    writers.emplace_back([&, i] {
      results[i] = common::RunProcess(
          {CORRAL_STORE_LOAD_BIN, "--dsn", testing::Dsn(), "churn", "--prefix", "k", "--count",
           "1500", "--keys", "25", "--seed", std::to_string(i + 1)},
          testing::LongRun());
    });
  }
  // The informer: list, then watch from the list's revision; on Expired, re-list.
  std::map<std::string, Object> cache;
  int relists = 0;
  int64_t last = 0;
  auto list_and_watch = [&]() -> std::unique_ptr<Watcher> {
    for (int attempt = 0; attempt < 50; ++attempt) {
      ListOptions lo;
      lo.kind = "Model";
      lo.ns = "churn";
      auto l = store.List(lo);
      if (!l.ok()) continue;
      cache.clear();
      for (auto& o : l->items) cache[o.body["metadata"]["name"].get<std::string>()] = o;
      last = l->revision;
      WatchOptions wo;
      wo.kind = "Model";
      wo.ns = "churn";
      wo.start_revision = l->revision;
      auto w = store.Watch(wo);
      if (w.ok()) return std::move(*w);
      EXPECT_EQ(w.status().code(), Code::kExpired) << w.status().ToString();
      ++relists;
    }
    return nullptr;
  };
  auto w = list_and_watch();
  ASSERT_NE(w, nullptr);
  std::thread joiner([&] {
    for (auto& t : writers) t.join();
    writers_done = true;
  });
  int64_t target = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  while (std::chrono::steady_clock::now() < deadline) {
    if (writers_done && target == 0) {
      target = std::stoll(testing::QueryScalar(testing::Dsn(),
                                               "SELECT COALESCE(max(id), 0) FROM corral_objects "
                                               "WHERE kind = 'Model' AND namespace = 'churn'"));
    }
    if (target > 0 && last >= target) break;
    auto ev = w->Next(200ms);
    if (!ev) continue;
    if (ev->type == WatchEvent::Type::kError) {
      ASSERT_TRUE(ev->error.code() == Code::kExpired || ev->error.code() == Code::kUnavailable)
          << ev->error.ToString();
      ++relists;
      w = list_and_watch();
      ASSERT_NE(w, nullptr);
      continue;
    }
    ASSERT_GT(ev->object.revision, last) << "revisions must strictly increase";
    last = ev->object.revision;
    const std::string name = ev->object.body["metadata"]["name"].get<std::string>();
    if (ev->type == WatchEvent::Type::kDeleted) {
      ASSERT_EQ(cache.erase(name), 1u) << "DELETED for an object the cache does not hold: " << name;
    } else {
      if (ev->type == WatchEvent::Type::kAdded) {
        ASSERT_EQ(cache.count(name), 0u) << "ADDED for an object already cached: " << name;
      } else {
        ASSERT_EQ(cache.count(name), 1u) << "MODIFIED for an unknown object: " << name;
      }
      cache[name] = ev->object;
    }
  }
  joiner.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->exit_code, 0) << r->output;
  }
  ASSERT_GT(target, 0);
  ASSERT_GE(last, target) << "the watch did not reach the final revision";
  EXPECT_GT(*store.CompactedRevision(), 0) << "compaction did not run during the test";
  ListOptions lo;
  lo.kind = "Model";
  lo.ns = "churn";
  auto final_list = store.List(lo);
  ASSERT_TRUE(final_list.ok());
  ASSERT_EQ(final_list->items.size(), cache.size());
  for (const auto& o : final_list->items) {
    const std::string name = o.body["metadata"]["name"].get<std::string>();
    ASSERT_EQ(cache.count(name), 1u) << name;
    EXPECT_EQ(cache[name].revision, o.revision) << name;
    EXPECT_EQ(cache[name].body, o.body) << name;
  }
  RecordProperty("relists", relists);
}

TEST_F(StoreWatchTest, ReportsAddModifyDeleteWithObjects) {
  auto start = st().CurrentRevision();
  WatchOptions wo;
  wo.kind = "Model";
  wo.ns = "events";
  wo.start_revision = *start;
  auto w = st().Watch(wo);
  ASSERT_TRUE(w.ok());
  auto a = st().Create(MakeObject("Model", "events", "a"));
  ASSERT_TRUE(a.ok());
  json next = a->body;
  next["spec"]["engine"] = "llamacpp";
  auto b = st().Update(next);
  ASSERT_TRUE(b.ok());
  auto d = st().Delete({"Model", "events", "a"});
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(st().Create(MakeObject("Model", "elsewhere", "x")).ok());  // other namespace
  ASSERT_TRUE(st().Create(MakeObject("Replica", "events", "x")).ok());   // other kind
  auto evs = Collect(**w, [](const auto& v) { return v.size() >= 3; });
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[0].type, Type::kAdded);
  EXPECT_EQ(evs[0].object.revision, a->revision);
  EXPECT_EQ(evs[1].type, Type::kModified);
  EXPECT_EQ(evs[1].object.body["spec"]["engine"], "llamacpp");
  EXPECT_EQ(evs[2].type, Type::kDeleted);
  EXPECT_EQ(evs[2].object.revision, d->revision);
  EXPECT_EQ(evs[2].object.body["metadata"]["uid"], a->body["metadata"]["uid"]);
  EXPECT_FALSE((*w)->Next(300ms).has_value());
}

TEST_F(StoreWatchTest, SelectorTransitionsBecomeAddedAndDeleted) {
  auto start = st().CurrentRevision();
  WatchOptions wo;
  wo.kind = "Replica";
  wo.ns = "sel";
  wo.labels = *LabelSelector::Parse("tier=gold");
  wo.fields = *FieldSelector::Parse("spec.nodeName=n1");
  wo.start_revision = *start;
  auto w = st().Watch(wo);
  ASSERT_TRUE(w.ok());

  json r = MakeObject("Replica", "sel", "r", {{"nodeName", "n1"}});
  r["metadata"]["labels"] = {{"tier", "silver"}};
  auto v1 = st().Create(r);  // not matching
  ASSERT_TRUE(v1.ok());
  json v = v1->body;
  v["metadata"]["labels"]["tier"] = "gold";  // starts matching -> ADDED
  auto v2 = st().Update(v);
  ASSERT_TRUE(v2.ok());
  v = v2->body;
  v["spec"]["x"] = 1;  // still matching -> MODIFIED
  auto v3 = st().Update(v);
  ASSERT_TRUE(v3.ok());
  v = v3->body;
  v["spec"]["nodeName"] = "n2";  // stops matching -> DELETED
  auto v4 = st().Update(v);
  ASSERT_TRUE(v4.ok());
  ASSERT_TRUE(st().Delete({"Replica", "sel", "r"}).ok());  // not matching: nothing

  auto evs = Collect(**w, [](const auto& v) { return v.size() >= 3; });
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[0].type, Type::kAdded);
  EXPECT_EQ(evs[0].object.revision, v2->revision);
  EXPECT_EQ(evs[1].type, Type::kModified);
  EXPECT_EQ(evs[1].object.revision, v3->revision);
  EXPECT_EQ(evs[2].type, Type::kDeleted);
  EXPECT_EQ(evs[2].object.revision, v4->revision);
  EXPECT_FALSE((*w)->Next(300ms).has_value());
}

TEST_F(StoreWatchTest, BookmarksCarryTheCurrentRevisionWhenAsked) {
  auto h = testing::StartStore([](PostgresStoreOptions& o) { o.bookmark_interval = 200ms; });
  ASSERT_NE(h, nullptr);
  auto start = h->store->CurrentRevision();
  WatchOptions wo;
  wo.kind = "Model";
  wo.ns = "bm";
  wo.start_revision = *start;
  wo.progress_notify = true;
  auto w = h->store->Watch(wo);
  ASSERT_TRUE(w.ok());
  // A change elsewhere moves the revision; the idle watch learns it by bookmark.
  auto other = h->store->Create(MakeObject("Model", "not-bm", "x"));
  ASSERT_TRUE(other.ok());
  auto evs = Collect(
      **w, [&](const auto& v) { return !v.empty() && v.back().object.revision >= other->revision; },
      5s);
  ASSERT_FALSE(evs.empty());
  for (const auto& e : evs) EXPECT_EQ(e.type, Type::kBookmark);
  EXPECT_GE(evs.back().object.revision, other->revision);

  // Without progress_notify there are no bookmarks.
  wo.progress_notify = false;
  auto quiet = h->store->Watch(wo);
  ASSERT_TRUE(quiet.ok());
  EXPECT_FALSE((*quiet)->Next(600ms).has_value());
}

TEST_F(StoreWatchTest, WatchFromOldRevisionReplaysHistoryBeyondTheRing) {
  auto h = testing::StartStore([](PostgresStoreOptions& o) { o.event_ring_capacity = 10; });
  ASSERT_NE(h, nullptr);
  auto start = h->store->CurrentRevision();
  std::vector<int64_t> revs;
  for (int i = 0; i < 50; ++i) {
    auto r = h->store->Create(MakeObject("Model", "replay", "m" + std::to_string(i)));
    ASSERT_TRUE(r.ok());
    revs.push_back(r->revision);
  }
  ASSERT_TRUE(h->store->CurrentRevision().ok());
  WatchOptions wo;
  wo.kind = "Model";
  wo.ns = "replay";
  wo.start_revision = *start;
  auto w = h->store->Watch(wo);
  ASSERT_TRUE(w.ok());
  auto evs = Collect(**w, [](const auto& v) { return v.size() >= 50; });
  ASSERT_EQ(evs.size(), 50u);
  for (size_t i = 0; i < evs.size(); ++i) EXPECT_EQ(evs[i].object.revision, revs[i]);
}

TEST_F(StoreWatchTest, RingIsBoundedByBytesAndOlderHistoryComesFromTheLog) {
  // ~4 KiB objects and a 16 KiB ring: only the last few events fit.
  auto h = testing::StartStore([](PostgresStoreOptions& o) { o.event_ring_max_bytes = 16 << 10; });
  ASSERT_NE(h, nullptr);
  auto start = h->store->CurrentRevision();
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(h->store
                    ->Create(MakeObject("Model", "bytes", "m" + std::to_string(i),
                                        {{"blob", std::string(4096, 'b')}}))
                    .ok());
  }
  ASSERT_TRUE(h->store->CurrentRevision().ok());
  WatchOptions wo;
  wo.kind = "Model";
  wo.ns = "bytes";
  wo.start_revision = *start;
  auto w = h->store->Watch(wo);
  ASSERT_TRUE(w.ok());
  auto evs = Collect(**w, [](const auto& v) { return v.size() >= 30; });
  ASSERT_EQ(evs.size(), 30u);
  for (size_t i = 1; i < evs.size(); ++i)
    EXPECT_LT(evs[i - 1].object.revision, evs[i].object.revision);
}

TEST_F(StoreWatchTest, SlowConsumerIsClosedAndResumesWithoutLoss) {
  auto h = testing::StartStore([](PostgresStoreOptions& o) { o.watcher_queue_capacity = 5; });
  ASSERT_NE(h, nullptr);
  auto start = h->store->CurrentRevision();
  WatchOptions wo;
  wo.kind = "Model";
  wo.ns = "slow";
  wo.start_revision = *start;
  auto w = h->store->Watch(wo);
  ASSERT_TRUE(w.ok());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(h->store->Create(MakeObject("Model", "slow", "m" + std::to_string(i))).ok());
  }
  ASSERT_TRUE(h->store->CurrentRevision().ok());  // poller has dispatched everything
  auto ev = (*w)->Next(2s);
  ASSERT_TRUE(ev.has_value());
  ASSERT_EQ(ev->type, Type::kError);
  EXPECT_EQ(ev->error.code(), Code::kUnavailable);
  // Resume from the last revision seen (none): everything arrives.
  auto w2 = h->store->Watch(wo);
  ASSERT_TRUE(w2.ok());
  auto evs = Collect(**w2, [](const auto& v) { return v.size() >= 20; });
  EXPECT_EQ(evs.size(), 20u);
}

// A rolled-back insert leaves a hole in the ids; a transaction that commits
// late holds one open. Watches wait for the second and step over the first.
TEST_F(StoreWatchTest, GapsFromRollbacksAndLateCommits) {
  auto h = testing::StartStore([](PostgresStoreOptions& o) { o.gap_timeout = 3s; });
  ASSERT_NE(h, nullptr);
  auto start = h->store->CurrentRevision();
  WatchOptions wo;
  wo.kind = "Model";
  wo.ns = "gaps";
  wo.start_revision = *start;
  auto w = h->store->Watch(wo);
  ASSERT_TRUE(w.ok());

  pqxx::connection late(testing::Dsn());
  pqxx::work tx(late);
  tx.exec0(
      "INSERT INTO corral_objects (kind, namespace, name, created, deleted, prev_revision, value) "
      "VALUES ('Model', 'gaps', 'late', true, false, 0, "
      "'{\"apiVersion\":\"corral.dev/v1alpha1\",\"kind\":\"Model\",\"metadata\":{\"name\":\"late\","
      "\"namespace\":\"gaps\"}}')");
  auto after = h->store->Create(MakeObject("Model", "gaps", "after"));
  ASSERT_TRUE(after.ok());
  // The later write is held back behind the open transaction's id.
  EXPECT_FALSE((*w)->Next(500ms).has_value());
  tx.commit();
  auto evs = Collect(
      **w, [](const auto& v) { return v.size() >= 2; }, 10s);
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(evs[0].object.body["metadata"]["name"], "late");
  EXPECT_EQ(evs[1].object.body["metadata"]["name"], "after");
  EXPECT_LT(evs[0].object.revision, evs[1].object.revision);

  // A rolled-back id is stepped over after gap_timeout.
  {
    pqxx::connection c(testing::Dsn());
    pqxx::work rb(c);
    rb.exec("SELECT nextval('corral_objects_id_seq')");
    rb.abort();
  }
  auto after2 = h->store->Create(MakeObject("Model", "gaps", "after2"));
  ASSERT_TRUE(after2.ok());
  auto more = Collect(
      **w, [](const auto& v) { return !v.empty(); }, 10s);
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].object.revision, after2->revision);
}

TEST_F(StoreWatchTest, AnInsertThatOutlivesTheGapTimeoutCannotCommitLater) {
  auto h = testing::StartStore([](PostgresStoreOptions& o) { o.gap_timeout = 100ms; });
  ASSERT_NE(h, nullptr);
  auto start = h->store->CurrentRevision();
  WatchOptions wo;
  wo.kind = "Model";
  wo.ns = "late2";
  wo.start_revision = *start;
  auto w = h->store->Watch(wo);
  ASSERT_TRUE(w.ok());
  // Take an id without inserting yet, as a stalled writer would.
  pqxx::connection late(testing::Dsn());
  pqxx::work tx(late);
  const int64_t id = tx.exec("SELECT nextval('corral_objects_id_seq')")[0][0].as<int64_t>();
  auto after = h->store->Create(MakeObject("Model", "late2", "after"));
  ASSERT_TRUE(after.ok());
  auto evs = Collect(
      **w, [](const auto& v) { return !v.empty(); }, 10s);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].object.revision, after->revision);
  // The stalled writer now tries to use its id: the watch moved past it, so the
  // write must fail rather than appear behind every watcher's back.
  EXPECT_THROW(
      tx.exec_params(
          "INSERT INTO corral_objects (id, kind, namespace, name, created, deleted, "
          "prev_revision, value) VALUES ($1, 'Model', 'late2', 'stalled', true, false, 0, '{}')",
          id),
      pqxx::unique_violation);
}

TEST_F(StoreWatchTest, NotifyWakesWatchersInOtherProcessesQuickly) {
  // A second store (as another server would) with a slow poll interval: the
  // NOTIFY sent after our write wakes it long before its next poll.
  auto other = testing::StartStore([](PostgresStoreOptions& o) { o.poll_interval = 20s; });
  ASSERT_NE(other, nullptr);
  auto start = other->store->CurrentRevision();
  WatchOptions wo;
  wo.kind = "Model";
  wo.ns = "notify";
  wo.start_revision = *start;
  auto w = other->store->Watch(wo);
  ASSERT_TRUE(w.ok());
  std::this_thread::sleep_for(300ms);  // its listener is up
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(st().Create(MakeObject("Model", "notify", "n")).ok());
  auto ev = (*w)->Next(10s);
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->type, Type::kAdded);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST_F(StoreWatchTest, RejectsBadWatchOptions) {
  WatchOptions wo;
  wo.kind = "Gizmo";
  EXPECT_EQ(st().Watch(wo).status().code(), Code::kInvalidArgument);
  wo.kind = "Node";
  wo.ns = "default";
  EXPECT_EQ(st().Watch(wo).status().code(), Code::kInvalidArgument);
  wo.kind = "Replica";
  wo.ns = "";
  wo.fields = *FieldSelector::Parse("spec.bogus=1");
  EXPECT_EQ(st().Watch(wo).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace corral::store
