// Store semantics against a real PostgreSQL: CRUD and CAS, bad input,
// pagination, selectors, compaction.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "store/object.h"
#include "tests/support/test_db.h"

namespace corral::store {
namespace {

using common::Code;
using nlohmann::json;
using ::testing::HasSubstr;
using testing::MakeObject;

std::set<std::string> Names(const ListResult& r) {
  std::set<std::string> out;
  for (const auto& o : r.items) out.insert(o.body["metadata"]["name"].get<std::string>());
  return out;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_ = testing::StartStore();
    ASSERT_NE(h_, nullptr);
    // Each test gets its own namespace in the suite's database.
    ns_ = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (auto& c : ns_) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    ns_ = ns_.substr(0, 50);
  }
  PostgresStore& st() { return *h_->store; }
  int64_t RowCount() {
    return std::stoll(testing::QueryScalar(testing::Dsn(), "SELECT count(*) FROM corral_objects"));
  }

  std::unique_ptr<testing::StoreHandle> h_;
  std::string ns_;
};

TEST_F(StoreTest, CreateGetUpdateDelete) {
  auto created = st().Create(MakeObject("Model", ns_, "llama", {{"engine", "sim"}}));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  const json& md = created->body["metadata"];
  EXPECT_EQ(md["generation"], 1);
  EXPECT_EQ(md["uid"].get<std::string>().size(), 36u);
  EXPECT_EQ(md["resourceVersion"], std::to_string(created->revision));
  EXPECT_FALSE(md["creationTimestamp"].get<std::string>().empty());

  auto got = st().Get({"Model", ns_, "llama"});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->body, created->body);

  // Spec change: new revision, generation + 1, uid and creationTimestamp kept.
  json next = got->body;
  next["spec"]["engine"] = "llamacpp";
  next["metadata"]["uid"] = md["uid"];
  auto updated = st().Update(next);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_GT(updated->revision, created->revision);
  EXPECT_EQ(updated->body["metadata"]["generation"], 2);
  EXPECT_EQ(updated->body["metadata"]["creationTimestamp"], md["creationTimestamp"]);

  // Label change: no generation bump.
  json relabel = updated->body;
  relabel["metadata"]["labels"] = {{"tier", "gold"}};
  auto relabeled = st().Update(relabel);
  ASSERT_TRUE(relabeled.ok());
  EXPECT_EQ(relabeled->body["metadata"]["generation"], 2);

  // Status update leaves spec and generation alone; main update ignores status.
  json with_status = relabeled->body;
  with_status["status"] = {{"phase", "Ready"}};
  with_status["spec"]["engine"] = "ignored";
  auto st_updated = st().UpdateStatus(with_status);
  ASSERT_TRUE(st_updated.ok()) << st_updated.status().ToString();
  EXPECT_EQ(st_updated->body["status"]["phase"], "Ready");
  EXPECT_EQ(st_updated->body["spec"]["engine"], "llamacpp");
  EXPECT_EQ(st_updated->body["metadata"]["generation"], 2);
  json spec_with_status = st_updated->body;
  spec_with_status["status"] = {{"phase", "Failed"}};
  spec_with_status["spec"]["contextLength"] = 4096;
  auto spec_updated = st().Update(spec_with_status);
  ASSERT_TRUE(spec_updated.ok());
  EXPECT_EQ(spec_updated->body["status"]["phase"], "Ready");
  EXPECT_EQ(spec_updated->body["metadata"]["generation"], 3);

  auto deleted = st().Delete({"Model", ns_, "llama"});
  ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
  EXPECT_GT(deleted->revision, spec_updated->revision);
  EXPECT_EQ(deleted->body["spec"]["contextLength"], 4096);
  EXPECT_EQ(st().Get({"Model", ns_, "llama"}).status().code(), Code::kNotFound);
  EXPECT_EQ(st().Delete({"Model", ns_, "llama"}).status().code(), Code::kNotFound);

  // A name can be reused after delete; it is a new object.
  auto again = st().Create(MakeObject("Model", ns_, "llama"));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_NE(again->body["metadata"]["uid"], md["uid"]);
  EXPECT_EQ(again->body["metadata"]["generation"], 1);
}

TEST_F(StoreTest, ErrorsCarryActionableCodes) {
  auto a = st().Create(MakeObject("Model", ns_, "a"));
  ASSERT_TRUE(a.ok());
  auto dup = st().Create(MakeObject("Model", ns_, "a"));
  ASSERT_EQ(dup.status().code(), Code::kAlreadyExists);
  EXPECT_THAT(dup.status().message(), HasSubstr("models.corral.dev \"a\" already exists"));

  json stale = a->body;
  stale["spec"]["x"] = 1;
  ASSERT_TRUE(st().Update(stale).ok());
  stale["spec"]["x"] = 2;  // still carries the first resourceVersion
  auto conflict = st().Update(stale);
  ASSERT_EQ(conflict.status().code(), Code::kConflict);
  EXPECT_THAT(conflict.status().message(), HasSubstr("the object has been modified"));

  json ghost = MakeObject("Model", ns_, "ghost");
  EXPECT_EQ(st().Update(ghost).status().code(), Code::kNotFound);
  EXPECT_THAT(st().Get({"Model", ns_, "ghost"}).status().message(),
              HasSubstr("models.corral.dev \"ghost\" not found"));

  DeleteOptions wrong_uid;
  wrong_uid.uid = "00000000-0000-4000-8000-000000000000";
  EXPECT_EQ(st().Delete({"Model", ns_, "a"}, wrong_uid).status().code(), Code::kFailedPrecondition);
  DeleteOptions wrong_rv;
  wrong_rv.resource_version = a->revision;  // stale
  EXPECT_EQ(st().Delete({"Model", ns_, "a"}, wrong_rv).status().code(), Code::kConflict);
  EXPECT_TRUE(st().Get({"Model", ns_, "a"}).ok());

  json with_rv = MakeObject("Model", ns_, "b");
  with_rv["metadata"]["resourceVersion"] = "5";
  EXPECT_EQ(st().Create(with_rv).status().code(), Code::kInvalidArgument);
}

// Two servers on one database: each caches the heads it wrote, and a cached
// head that another server superseded must never let a stale update through.
TEST_F(StoreTest, CasHoldsAcrossServersWithCachedHeads) {
  auto other = testing::StartStore(
      [](PostgresStoreOptions& o) { o.poll_interval = std::chrono::seconds(30); });
  ASSERT_NE(other, nullptr);
  auto mine = st().Create(MakeObject("Model", ns_, "shared", {{"v", 0}}));
  ASSERT_TRUE(mine.ok());
  auto theirs = other->store->Get({"Model", ns_, "shared"});
  ASSERT_TRUE(theirs.ok());
  json t = theirs->body;
  t["spec"]["v"] = 1;
  auto t2 = other->store->Update(t);
  ASSERT_TRUE(t2.ok());
  // Our cache still holds the create's head at the revision we pass: stale.
  json m = mine->body;
  m["spec"]["v"] = 2;
  auto stale = st().Update(m);
  ASSERT_EQ(stale.status().code(), Code::kConflict) << stale.status().ToString();
  // With the other server's revision it goes through.
  json fresh = t2->body;
  fresh["spec"]["v"] = 3;
  auto ok = st().Update(fresh);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(other->store->Get({"Model", ns_, "shared"})->body["spec"]["v"], 3);
  // And the other server's cached head (v=1) is stale for it now.
  json t3 = t2->body;
  t3["spec"]["v"] = 4;
  EXPECT_EQ(other->store->Update(t3).status().code(), Code::kConflict);
}

TEST_F(StoreTest, NoOpUpdateFromAStaleCachedHeadIsNotASuccess) {
  auto other = testing::StartStore(
      [](PostgresStoreOptions& o) { o.poll_interval = std::chrono::seconds(30); });
  ASSERT_NE(other, nullptr);
  auto mine = st().Create(MakeObject("Model", ns_, "noop", {{"v", 0}}));
  ASSERT_TRUE(mine.ok());
  json t = other->store->Get({"Model", ns_, "noop"})->body;
  t["spec"]["v"] = 1;
  ASSERT_TRUE(other->store->Update(t).ok());
  // Unchanged body at the old revision: the object moved on, so this is a conflict.
  EXPECT_EQ(st().Update(mine->body).status().code(), Code::kConflict);
  EXPECT_EQ(st().UpdateStatus(mine->body).status().code(), Code::kConflict);
  ASSERT_TRUE(other->store->Delete({"Model", ns_, "noop"}).ok());
  EXPECT_EQ(st().Update(mine->body).status().code(), Code::kNotFound);
}

TEST_F(StoreTest, ConcurrentCreatesOfARecreatedNameHaveOneWinner) {
  for (int round = 0; round < 5; ++round) {
    std::atomic<int> won{0}, exists{0}, other{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&] {
        auto r = st().Create(MakeObject("Model", ns_, "contended", {{"round", round}}));
        if (r.ok()) {
          ++won;
        } else if (r.status().code() == Code::kAlreadyExists) {
          ++exists;
        } else {
          ++other;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(won.load(), 1) << "round " << round;
    EXPECT_EQ(exists.load(), 5);
    EXPECT_EQ(other.load(), 0);
    ASSERT_TRUE(st().Delete({"Model", ns_, "contended"}).ok());
    if (round == 2) {
      ASSERT_TRUE(st().CompactTo(*st().CurrentRevision()).ok());
    }
  }
}

TEST_F(StoreTest, CompactionNeverResurrectsAndLeavesOneRowPerLiveKey) {
  auto keep = st().Create(MakeObject("Model", ns_, "kept"));
  auto doomed = st().Create(MakeObject("Model", ns_, "doomed"));
  ASSERT_TRUE(keep.ok() && doomed.ok());
  ASSERT_TRUE(st().CompactTo(*st().CurrentRevision()).ok());
  // Updates and a delete after the first pass, then compaction in batches that
  // each see only part of the history.
  json cur = keep->body;
  for (int i = 0; i < 5; ++i) {
    cur["spec"]["n"] = i;
    auto r = st().Update(cur);
    ASSERT_TRUE(r.ok());
    cur = r->body;
    ASSERT_TRUE(st().Create(MakeObject("Model", ns_, "filler-" + std::to_string(i))).ok());
  }
  ASSERT_TRUE(st().Delete({"Model", ns_, "doomed"}).ok());
  auto small = testing::StartStore([](PostgresStoreOptions& o) { o.compaction.batch_size = 2; });
  ASSERT_NE(small, nullptr);
  ASSERT_TRUE(small->store->CompactTo(*small->store->CurrentRevision()).ok());

  EXPECT_EQ(st().Get({"Model", ns_, "doomed"}).status().code(), Code::kNotFound);
  ListOptions lo;
  lo.kind = "Model";
  lo.ns = ns_;
  EXPECT_EQ(Names(*st().List(lo)).count("doomed"), 0u);
  json stale = doomed->body;
  stale["spec"]["x"] = 1;
  EXPECT_EQ(st().Update(stale).status().code(), Code::kNotFound);
  auto rows = [&](const std::string& name) {
    return std::stoll(testing::QueryScalar(
        testing::Dsn(), "SELECT count(*) FROM corral_objects WHERE namespace = '" + ns_ +
                            "' AND name = '" + name + "'"));
  };
  EXPECT_EQ(rows("doomed"), 0);
  EXPECT_EQ(rows("kept"), 1);
  EXPECT_EQ(st().Get({"Model", ns_, "kept"})->body["spec"]["n"], 4);
  // The name can be used again.
  EXPECT_TRUE(st().Create(MakeObject("Model", ns_, "doomed")).ok());
}

TEST_F(StoreTest, NoOpUpdateWritesNothing) {
  auto a = st().Create(MakeObject("Model", ns_, "same", {{"engine", "sim"}}));
  ASSERT_TRUE(a.ok());
  const int64_t rows = RowCount();
  auto again = st().Update(a->body);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->revision, a->revision);
  EXPECT_EQ(RowCount(), rows);
}

TEST_F(StoreTest, UnconditionalUpdateWithoutResourceVersion) {
  ASSERT_TRUE(st().Create(MakeObject("Model", ns_, "u")).ok());
  json blind = MakeObject("Model", ns_, "u", {{"engine", "llamacpp"}});
  auto r = st().Update(blind);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body["spec"]["engine"], "llamacpp");
}

TEST_F(StoreTest, BadInputIsRejectedAndNothingIsWritten) {
  const int64_t before = RowCount();
  struct Case {
    std::string text;
    std::string field;
    std::string says;
  };
  json node_with_ns = MakeObject("Node", "", "n1");
  node_with_ns["metadata"]["namespace"] = ns_;
  json big = MakeObject("Model", ns_, "big");
  big["spec"]["blob"] = std::string(st().max_object_bytes(), 'x');
  const std::vector<Case> cases = {
      {"{\"apiVersion\": \"corral.dev/v1alpha1\", \"kind\": ", "", "malformed JSON"},
      {"[1,2,3]", "", "must be a JSON object"},
      {big.dump(), "", "over the limit"},
      {MakeObject("Model", ns_, "Not_DNS").dump(), "metadata.name", "RFC 1123"},
      {MakeObject("Model", ns_, std::string(254, 'a')).dump(), "metadata.name", "253"},
      {MakeObject("Model", ns_, "-leading").dump(), "metadata.name", "alphanumeric"},
      {MakeObject("Gizmo", ns_, "g").dump(), "kind", "unknown kind \"Gizmo\""},
      {node_with_ns.dump(), "metadata.namespace", "cluster-scoped"},
      {MakeObject("Model", "", "nons").dump(), "metadata.namespace", "namespaced"},
      {json({{"apiVersion", "corral.dev/v1alpha1"}, {"kind", "Model"}}).dump(), "metadata",
       "metadata"},
  };
  for (const auto& c : cases) {
    auto r = st().CreateFromJson(c.text);
    ASSERT_FALSE(r.ok()) << c.text.substr(0, 80);
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
    EXPECT_THAT(r.status().message(), HasSubstr(c.says)) << c.text.substr(0, 80);
    if (!c.field.empty()) {
      bool named = false;
      const common::Status status = r.status();
      for (const auto& cause : status.causes()) named = named || cause.field == c.field;
      EXPECT_TRUE(named) << "no cause names " << c.field << ": " << r.status().ToString();
    }
  }
  // Labels with a bad value, via a valid JSON object.
  json bad_label = MakeObject("Model", ns_, "labelled");
  bad_label["metadata"]["labels"] = {{"app", "has spaces"}};
  EXPECT_EQ(st().Create(bad_label).status().code(), Code::kInvalidArgument);
  // A key on an unknown kind or a namespaced kind without namespace.
  EXPECT_EQ(st().Get({"Gizmo", ns_, "x"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(st().Get({"Model", "", "x"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(RowCount(), before);

  // The limit is configurable.
  auto small = testing::StartStore([](PostgresStoreOptions& o) { o.max_object_bytes = 2048; });
  ASSERT_NE(small, nullptr);
  json medium = MakeObject("Model", ns_, "medium");
  medium["spec"]["blob"] = std::string(4096, 'y');
  EXPECT_EQ(small->store->Create(medium).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(st().Create(medium).ok());
}

TEST_F(StoreTest, ClusterScopedKinds) {
  auto n = st().Create(MakeObject("Node", "", ns_ + "-gpu"));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_FALSE(n->body["metadata"].contains("namespace"));
  EXPECT_TRUE(st().Get({"Node", "", ns_ + "-gpu"}).ok());
  ListOptions lo;
  lo.kind = "Node";
  lo.ns = "default";
  EXPECT_EQ(st().List(lo).status().code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, ListFiltersByNamespaceLabelsAndFields) {
  for (int i = 0; i < 6; ++i) {
    json r = MakeObject("Replica", ns_, "r" + std::to_string(i),
                        {{"nodeName", i % 2 ? "node-a" : "node-b"}, {"deployment", "d"}});
    r["metadata"]["labels"] = {{"app", i < 3 ? "chat" : "code"}, {"idx", std::to_string(i)}};
    if (i == 5) r["metadata"]["labels"].erase("app");
    ASSERT_TRUE(st().Create(r).ok());
  }
  ASSERT_TRUE(st().Create(MakeObject("Replica", ns_ + "-other", "r0")).ok());

  ListOptions lo;
  lo.kind = "Replica";
  lo.ns = ns_;
  auto all = st().List(lo);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->items.size(), 6u);
  EXPECT_GE(all->revision, all->items.back().revision);

  lo.labels = *LabelSelector::Parse("app=chat");
  EXPECT_EQ(Names(*st().List(lo)), (std::set<std::string>{"r0", "r1", "r2"}));
  lo.labels = *LabelSelector::Parse("app notin (chat)");
  EXPECT_EQ(Names(*st().List(lo)), (std::set<std::string>{"r3", "r4", "r5"}));
  lo.labels = *LabelSelector::Parse("!app");
  EXPECT_EQ(Names(*st().List(lo)), (std::set<std::string>{"r5"}));
  lo.labels = *LabelSelector::Parse("app,idx in (1,4)");
  EXPECT_EQ(Names(*st().List(lo)), (std::set<std::string>{"r1", "r4"}));

  lo.labels = LabelSelector();
  lo.fields = *FieldSelector::Parse("spec.nodeName=node-a");
  EXPECT_EQ(Names(*st().List(lo)), (std::set<std::string>{"r1", "r3", "r5"}));
  lo.fields = *FieldSelector::Parse("spec.nodeName!=node-a,metadata.name!=r0");
  EXPECT_EQ(Names(*st().List(lo)), (std::set<std::string>{"r2", "r4"}));
  lo.fields = *FieldSelector::Parse("spec.gpu=1");
  auto unsupported = st().List(lo);
  EXPECT_EQ(unsupported.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(unsupported.status().message(), HasSubstr("spec.gpu"));

  // Across namespaces, narrowed by a metadata.namespace field selector.
  ListOptions across;
  across.kind = "Replica";
  across.fields = *FieldSelector::Parse("metadata.name=r0");
  auto r0s = st().List(across);
  ASSERT_TRUE(r0s.ok());
  EXPECT_EQ(r0s->items.size(), 2u);
  across.fields = *FieldSelector::Parse("metadata.name=r0,metadata.namespace=" + ns_ + "-other");
  ASSERT_EQ(st().List(across)->items.size(), 1u);
}

TEST_F(StoreTest, PaginationIsConsistentWhileWritesHappen) {
  for (int i = 0; i < 40; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "m%02d", i);
    ASSERT_TRUE(st().Create(MakeObject("Model", ns_, name)).ok());
  }
  ListOptions first;
  first.kind = "Model";
  first.ns = ns_;
  auto snapshot = st().List(first);
  ASSERT_TRUE(snapshot.ok());
  ASSERT_EQ(snapshot->items.size(), 40u);

  // Page through with limit 7 while another thread creates, updates and deletes.
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::thread writer([&] {
    for (int i = 0; i < 200 && !stop; ++i) {
      char name[16];
      std::snprintf(name, sizeof name, "m%02d", i % 40);
      auto cur = st().Get({"Model", ns_, name});
      if (cur.ok()) {
        json next = cur->body;
        next["spec"]["touch"] = i;
        if (st().Update(next).ok()) ++writes;
      }
      if (i % 10 == 0) {
        if (st().Delete({"Model", ns_, "m" + std::to_string(10 + i / 10)}).ok()) ++writes;
        if (st().Create(MakeObject("Model", ns_, "new-" + std::to_string(i))).ok()) ++writes;
      }
    }
  });
  ListOptions page;
  page.kind = "Model";
  page.ns = ns_;
  page.limit = 7;
  std::vector<Object> seen;
  int64_t revision = 0;
  int pages = 0;
  do {
    auto r = st().List(page);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (pages == 0) revision = r->revision;
    EXPECT_EQ(r->revision, revision) << "every page reflects the first page's revision";
    EXPECT_LE(r->items.size(), 7u);
    seen.insert(seen.end(), r->items.begin(), r->items.end());
    page.continue_token = r->continue_token;
    ++pages;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let writes interleave
  } while (!page.continue_token.empty() && pages < 100);
  stop = true;
  writer.join();
  EXPECT_GT(writes.load(), 0);
  EXPECT_GE(pages, 6);

  // What the pages returned is exactly the state at `revision`.
  ListOptions exact;
  exact.kind = "Model";
  exact.ns = ns_;
  exact.revision = revision;
  exact.match = RevisionMatch::kExact;
  auto at = st().List(exact);
  ASSERT_TRUE(at.ok()) << at.status().ToString();
  ASSERT_EQ(seen.size(), at->items.size());
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].body, at->items[i].body);
    EXPECT_LE(seen[i].revision, revision);
  }
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_LT(seen[i - 1].body["metadata"]["name"].get<std::string>(),
              seen[i].body["metadata"]["name"].get<std::string>());
  }
  // And the latest state differs from it (the writer ran).
  auto latest = st().List(first);
  ASSERT_TRUE(latest.ok());
  EXPECT_GT(latest->revision, revision);

  auto garbage = first;
  garbage.continue_token = "not-a-token";
  EXPECT_EQ(st().List(garbage).status().code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, CompactionRemovesHistoryAndExpiresOldRevisions) {
  auto a = st().Create(MakeObject("Model", ns_, "hist"));
  ASSERT_TRUE(a.ok());
  json cur = a->body;
  for (int i = 0; i < 20; ++i) {
    cur["spec"]["n"] = i;
    auto r = st().Update(cur);
    ASSERT_TRUE(r.ok());
    cur = r->body;
  }
  auto gone = st().Create(MakeObject("Model", ns_, "gone"));
  ASSERT_TRUE(gone.ok());
  ASSERT_TRUE(st().Delete({"Model", ns_, "gone"}).ok());
  auto keep = st().Create(MakeObject("Model", ns_, "keep"));
  ASSERT_TRUE(keep.ok());
  const int64_t old_rev = a->revision;
  auto now = st().CurrentRevision();
  ASSERT_TRUE(now.ok());

  const std::string count_sql =
      "SELECT count(*) FROM corral_objects WHERE namespace = '" + ns_ + "'";
  const int64_t rows_before = std::stoll(testing::QueryScalar(testing::Dsn(), count_sql));
  EXPECT_EQ(rows_before, 21 + 2 + 1);
  auto removed = st().CompactTo(*now);
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_GE(*removed, 22);
  // Only the newest state of each live key survives.
  EXPECT_EQ(std::stoll(testing::QueryScalar(testing::Dsn(), count_sql)), 2);
  EXPECT_EQ(*st().CompactedRevision(), *now);

  auto got = st().Get({"Model", ns_, "hist"});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->body["spec"]["n"], 19);
  EXPECT_EQ(st().Get({"Model", ns_, "gone"}).status().code(), Code::kNotFound);

  ListOptions lo;
  lo.kind = "Model";
  lo.ns = ns_;
  EXPECT_EQ(Names(*st().List(lo)), (std::set<std::string>{"hist", "keep"}));
  lo.match = RevisionMatch::kExact;
  lo.revision = old_rev;
  auto expired_list = st().List(lo);
  EXPECT_EQ(expired_list.status().code(), Code::kExpired) << expired_list.status().ToString();

  WatchOptions wo;
  wo.kind = "Model";
  wo.start_revision = old_rev;
  auto expired_watch = st().Watch(wo);
  EXPECT_EQ(expired_watch.status().code(), Code::kExpired);
  wo.start_revision = *now;
  EXPECT_TRUE(st().Watch(wo).ok());

  // Writes carry on after compaction (CAS against the surviving head).
  cur = got->body;
  cur["spec"]["n"] = 100;
  EXPECT_TRUE(st().Update(cur).ok());
}

TEST_F(StoreTest, ContinueTokenExpiresAfterCompaction) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(st().Create(MakeObject("Model", ns_, "c" + std::to_string(i))).ok());
  }
  ListOptions lo;
  lo.kind = "Model";
  lo.ns = ns_;
  lo.limit = 2;
  auto p1 = st().List(lo);
  ASSERT_TRUE(p1.ok());
  ASSERT_FALSE(p1->continue_token.empty());
  auto c0 = st().Get({"Model", ns_, "c4"});
  json next = c0->body;
  next["spec"]["x"] = 1;
  ASSERT_TRUE(st().Update(next).ok());
  ASSERT_TRUE(st().CompactTo(*st().CurrentRevision()).ok());
  lo.continue_token = p1->continue_token;
  auto p2 = st().List(lo);
  ASSERT_EQ(p2.status().code(), Code::kExpired);
  EXPECT_THAT(p2.status().message(), HasSubstr("continue parameter is too old"));
}

TEST_F(StoreTest, BackgroundCompactionKeepsTheConfiguredWindow) {
  auto h = testing::StartStore([](PostgresStoreOptions& o) {
    o.compaction.enabled = true;
    o.compaction.interval = std::chrono::milliseconds(100);
    o.compaction.retain_revisions = 5;
    o.compaction.retain_age = std::chrono::seconds(0);
    o.compaction.batch_size = 3;  // several batches per pass
  });
  ASSERT_NE(h, nullptr);
  auto a = h->store->Create(MakeObject("Model", ns_, "bg"));
  ASSERT_TRUE(a.ok());
  json cur = a->body;
  for (int i = 0; i < 30; ++i) {
    cur["spec"]["n"] = i;
    auto r = h->store->Update(cur);
    ASSERT_TRUE(r.ok());
    cur = r->body;
  }
  const int64_t head = std::stoll(cur["metadata"]["resourceVersion"].get<std::string>());
  int64_t compacted = 0;
  for (int i = 0; i < 100 && compacted < head - 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    compacted = *h->store->CompactedRevision();
  }
  EXPECT_GE(compacted, head - 5);
  EXPECT_LE(compacted, head);
  EXPECT_TRUE(h->store->Get({"Model", ns_, "bg"}).ok());
}

}  // namespace
}  // namespace corral::store
