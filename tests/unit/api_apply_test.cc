// Unit tests for api/apply.h: server-side apply and field ownership, checked
// against what Kubernetes (structured-merge-diff + the apiserver's field
// manager) does for custom resources.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "api/apply.h"

namespace corral::api {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kT1 = "2026-11-24T08:00:00Z";
constexpr const char* kT2 = "2026-11-24T09:00:00Z";
constexpr const char* kT3 = "2026-11-24T10:00:00Z";
constexpr const char* kGV = "corral.dev/v1alpha1";

ApplyOptions Opts(std::string manager, std::string now = kT1, bool force = false,
                  std::string subresource = "") {
  ApplyOptions o;
  o.manager = std::move(manager);
  o.now = std::move(now);
  o.force = force;
  o.subresource = std::move(subresource);
  return o;
}

// A ModelDeployment as a client would apply it, with `extra` merged in.
json Md(const json& extra = json::object()) {
  json obj = {{"apiVersion", kGV}, {"kind", "ModelDeployment"}, {"metadata", {{"name", "md"}}}};
  obj.merge_patch(extra);
  return obj;
}

// The stored object as the server would keep it: server metadata added.
json Stored(json obj) {
  obj["metadata"]["uid"] = "6f1c";
  obj["metadata"]["resourceVersion"] = "7";
  obj["metadata"]["namespace"] = "default";
  return obj;
}

json Apply(const json& live, const json& applied, const ApplyOptions& o) {
  auto r = ServerSideApply(live, applied, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r.value() : json();
}

json Update(const json& before, const json& after, const ApplyOptions& o) {
  auto r = TrackUpdate(before, after, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r.value() : json();
}

json ManagedFields(const json& obj) {
  return obj["metadata"].value("managedFields", json::array());
}

// The managedFields entry of (manager, operation[, subresource]); null if none.
json EntryOf(const json& obj, const std::string& manager, const std::string& operation = "Apply",
             const std::string& subresource = "") {
  for (const json& e : ManagedFields(obj)) {
    if (e["manager"] == manager && e["operation"] == operation &&
        e.value("subresource", "") == subresource) {
      return e;
    }
  }
  return nullptr;
}

json FieldsOf(const json& obj, const std::string& manager, const std::string& operation = "Apply",
              const std::string& subresource = "") {
  json e = EntryOf(obj, manager, operation, subresource);
  return e.is_null() ? json() : e["fieldsV1"];
}

// ---------------------------------------------------------------- create

TEST(ServerSideApplyTest, CreateSetsFieldsAndOneApplyEntry) {
  json applied = Md({{"metadata", {{"labels", {{"app", "chat"}}}}},
                     {"spec", {{"replicas", 2}, {"model", "llama"}}},
                     {"status", {{"readyReplicas", 9}}}});
  json out = Apply(nullptr, applied, Opts("kubectl"));

  EXPECT_EQ(out["spec"], json({{"replicas", 2}, {"model", "llama"}}));
  EXPECT_EQ(out["metadata"]["labels"], json({{"app", "chat"}}));
  EXPECT_EQ(out["metadata"]["name"], "md");
  EXPECT_EQ(out["apiVersion"], kGV);
  EXPECT_EQ(out["kind"], "ModelDeployment");
  // The main resource does not write status (it is the /status subresource's).
  EXPECT_FALSE(out.contains("status"));

  ASSERT_EQ(ManagedFields(out).size(), 1u);
  json entry = ManagedFields(out)[0];
  EXPECT_EQ(entry, json::parse(R"({
    "manager": "kubectl", "operation": "Apply", "apiVersion": "corral.dev/v1alpha1",
    "time": "2026-11-24T08:00:00Z", "fieldsType": "FieldsV1",
    "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
                 "f:spec": {"f:model": {}, "f:replicas": {}}}})"));
}

TEST(ServerSideApplyTest, ExactFieldsV1ForNestedObjectKeyedListAndSet) {
  json applied =
      Md({{"metadata",
           {{"finalizers", {"corral.dev/cleanup"}},
            {"ownerReferences",
             {{{"apiVersion", kGV}, {"kind", "Model"}, {"name", "m"}, {"uid", "u-1"}}}}}},
          {"spec",
           {{"template", {{"resources", {{"gpus", 1}, {"memory", "80Gi"}}}}},
            {"args", {"--a", "--b"}},
            {"empty", json::object()}}}});
  json out = Apply(nullptr, applied, Opts("kubectl"));
  // Leaves are {}; a keyed item is itself a member (".") and owns its fields;
  // an atomic list is one leaf; an empty object owns nothing.
  EXPECT_EQ(FieldsOf(out, "kubectl"), json::parse(R"({
    "f:metadata": {
      "f:finalizers": {"v:\"corral.dev/cleanup\"": {}},
      "f:ownerReferences": {"k:{\"uid\":\"u-1\"}": {
          ".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {}}}},
    "f:spec": {"f:args": {}, "f:template": {"f:resources": {"f:gpus": {}, "f:memory": {}}}}})"));
  EXPECT_EQ(out["spec"]["empty"], json::object());
}

TEST(TrackUpdateTest, CreateOwnsEverythingWithContainersAsMembers) {
  json obj = Md({{"metadata", {{"labels", {{"app", "chat"}}}}},
                 {"spec", {{"replicas", 2}, {"template", {{"gpus", 1}}}}}});
  json out = Update(nullptr, obj, Opts("kubectl-create"));
  ASSERT_EQ(ManagedFields(out).size(), 1u);
  json entry = ManagedFields(out)[0];
  EXPECT_EQ(entry["operation"], "Update");
  EXPECT_EQ(entry["apiVersion"], kGV);
  EXPECT_EQ(entry["time"], kT1);
  // Containers an Update creates are its own (".": {}); name, metadata itself
  // and the other server-owned fields are nobody's.
  EXPECT_EQ(entry["fieldsV1"], json::parse(R"({
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {".": {}, "f:replicas": {}, "f:template": {".": {}, "f:gpus": {}}}})"));
  EXPECT_EQ(out["spec"], obj["spec"]);
}

// ------------------------------------------------------------ re-apply

TEST(ServerSideApplyTest, ReapplyingTheSameIsANoOpKeepingTheTimestamp) {
  json applied = Md({{"spec", {{"replicas", 2}}}});
  json live = Stored(Apply(nullptr, applied, Opts("kubectl", kT1)));
  json again = Apply(live, applied, Opts("kubectl", kT2));
  EXPECT_EQ(again, live);
  EXPECT_EQ(EntryOf(again, "kubectl")["time"], kT1);
}

TEST(ServerSideApplyTest, ReapplyingAChangeUpdatesValueAndTimestamp) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("kubectl", kT1)));
  json out = Apply(live, Md({{"spec", {{"replicas", 4}}}}), Opts("kubectl", kT2));
  EXPECT_EQ(out["spec"]["replicas"], 4);
  EXPECT_EQ(EntryOf(out, "kubectl")["time"], kT2);
  // Server metadata of the live object is kept as it is.
  EXPECT_EQ(out["metadata"]["uid"], "6f1c");
  EXPECT_EQ(out["metadata"]["resourceVersion"], "7");
}

TEST(ServerSideApplyTest, OmittingAFieldAppliedBeforeRemovesIt) {
  json live = Stored(Apply(nullptr,
                           Md({{"metadata", {{"labels", {{"app", "chat"}, {"tier", "gold"}}}}},
                               {"spec", {{"replicas", 2}, {"model", "llama"}}}}),
                           Opts("kubectl")));
  json out = Apply(
      live, Md({{"metadata", {{"labels", {{"app", "chat"}}}}}, {"spec", {{"model", "llama"}}}}),
      Opts("kubectl", kT2));
  EXPECT_EQ(out["spec"], json({{"model", "llama"}}));
  EXPECT_EQ(out["metadata"]["labels"], json({{"app", "chat"}}));
  EXPECT_EQ(FieldsOf(out, "kubectl"), json::parse(R"({
    "f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:model": {}}})"));

  // Omitting all labels and all of spec removes the containers too, not just
  // their fields (nobody owns anything in them any more); name stays.
  json bare = Apply(Stored(out), Md(), Opts("kubectl", kT3));
  EXPECT_FALSE(bare.contains("spec"));
  EXPECT_FALSE(bare["metadata"].contains("labels"));
  EXPECT_EQ(bare["metadata"]["name"], "md");
  EXPECT_TRUE(EntryOf(bare, "kubectl").is_null());  // owns nothing: no entry
}

TEST(ServerSideApplyTest, AppliedNullRemovesTheField) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}, {"model", "m"}}}}), Opts("a")));
  json out = Apply(live, Md({{"spec", {{"replicas", nullptr}, {"model", "m"}}}}), Opts("a", kT2));
  EXPECT_EQ(out["spec"], json({{"model", "m"}}));
}

// -------------------------------------------------- managers and conflicts

TEST(ServerSideApplyTest, TwoManagersApplyingTheSameValueBothOwnIt) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}, {"model", "m"}}}}), Opts("a")));
  live = Stored(Apply(live, Md({{"spec", {{"replicas", 2}}}}), Opts("b", kT2)));
  EXPECT_EQ(FieldsOf(live, "a"), json::parse(R"({"f:spec": {"f:model": {}, "f:replicas": {}}})"));
  EXPECT_EQ(FieldsOf(live, "b"), json::parse(R"({"f:spec": {"f:replicas": {}}})"));

  // a stops applying replicas: b still owns it, so it stays.
  json out = Apply(live, Md({{"spec", {{"model", "m"}}}}), Opts("a", kT3));
  EXPECT_EQ(out["spec"]["replicas"], 2);
  EXPECT_EQ(FieldsOf(out, "a"), json::parse(R"({"f:spec": {"f:model": {}}})"));
}

TEST(ServerSideApplyTest, ADifferentValueForAnotherAppliersFieldConflicts) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("a")));
  auto r = ServerSideApply(live, Md({{"spec", {{"replicas", 3}}}}), Opts("b", kT2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), common::Code::kConflict);
  EXPECT_EQ(r.status().message(),
            "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas");
  ASSERT_EQ(r.status().causes().size(), 1u);
  EXPECT_EQ(r.status().causes()[0].reason, "FieldManagerConflict");
  EXPECT_EQ(r.status().causes()[0].field, ".spec.replicas");
  EXPECT_EQ(r.status().causes()[0].message, "conflict with \"a\"");
}

TEST(ServerSideApplyTest, ConflictWithAnUpdaterNamesItsApiVersion) {
  json live =
      Stored(Update(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("kubectl-client-side-apply")));
  auto r = ServerSideApply(live, Md({{"spec", {{"replicas", 3}}}}), Opts("other", kT2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using "
            "corral.dev/v1alpha1: .spec.replicas");
  ASSERT_EQ(r.status().causes().size(), 1u);
  EXPECT_EQ(r.status().causes()[0].message,
            "conflict with \"kubectl-client-side-apply\" using corral.dev/v1alpha1");
  EXPECT_EQ(r.status().causes()[0].field, ".spec.replicas");
}

TEST(ServerSideApplyTest, SeveralConflictsAreListedPerManager) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}, {"model", "m"}}}}), Opts("a")));
  live = Stored(Update(live, Md({{"spec", {{"replicas", 2}, {"model", "m"}, {"engine", "vllm"}}}}),
                       Opts("edit", kT2)));
  auto r = ServerSideApply(
      live, Md({{"spec", {{"replicas", 5}, {"model", "n"}, {"engine", "sgl"}}}}), Opts("b", kT3));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(
      r.status().message(),
      "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.model\n- .spec.replicas\n"
      "conflicts with \"edit\" using corral.dev/v1alpha1:\n- .spec.engine");
  EXPECT_EQ(r.status().causes().size(), 3u);
}

TEST(ServerSideApplyTest, ForceTakesOwnershipFromTheOthers) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}, {"model", "m"}}}}), Opts("a")));
  json out = Apply(live, Md({{"spec", {{"replicas", 3}}}}), Opts("b", kT2, /*force=*/true));
  EXPECT_EQ(out["spec"]["replicas"], 3);
  EXPECT_EQ(FieldsOf(out, "a"), json::parse(R"({"f:spec": {"f:model": {}}})"));
  EXPECT_EQ(FieldsOf(out, "b"), json::parse(R"({"f:spec": {"f:replicas": {}}})"));

  // Having lost replicas, a omitting it does not remove it.
  json after = Apply(Stored(out), Md({{"spec", {{"model", "m"}}}}), Opts("a", kT3));
  EXPECT_EQ(after["spec"]["replicas"], 3);
}

TEST(ServerSideApplyTest, ForceTakingAManagersLastFieldDropsItsEntry) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("a")));
  json out = Apply(live, Md({{"spec", {{"replicas", 3}}}}), Opts("b", kT2, true));
  EXPECT_TRUE(EntryOf(out, "a").is_null());
  EXPECT_EQ(ManagedFields(out).size(), 1u);
}

TEST(ServerSideApplyTest, UpdateTakesOwnershipSoTheApplierThenConflicts) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}, {"model", "m"}}}}), Opts("a")));
  json edited = live;
  edited["spec"]["replicas"] = 5;
  json after_edit = Stored(Update(live, edited, Opts("kubectl-edit", kT2)));
  EXPECT_EQ(FieldsOf(after_edit, "kubectl-edit", "Update"),
            json::parse(R"({"f:spec": {"f:replicas": {}}})"));
  EXPECT_EQ(FieldsOf(after_edit, "a"), json::parse(R"({"f:spec": {"f:model": {}}})"));

  auto r = ServerSideApply(after_edit, Md({{"spec", {{"replicas", 2}, {"model", "m"}}}}),
                           Opts("a", kT3));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using "
            "corral.dev/v1alpha1: .spec.replicas");
}

TEST(TrackUpdateTest, RemovingAFieldRemovesItFromItsOwners) {
  json live =
      Stored(Apply(nullptr, Md({{"metadata", {{"labels", {{"x", "1"}, {"y", "2"}}}}}}), Opts("a")));
  json after = live;
  after["metadata"]["labels"].erase("x");
  json out = Update(live, after, Opts("kubectl-label", kT2));
  EXPECT_EQ(FieldsOf(out, "a"), json::parse(R"({"f:metadata": {"f:labels": {"f:y": {}}}})"));
  // Removing takes nothing, so the remover gets no entry.
  EXPECT_TRUE(EntryOf(out, "kubectl-label", "Update").is_null());
}

TEST(TrackUpdateTest, AnUnchangedWriteKeepsManagedFieldsAsTheyWere) {
  json live = Stored(Update(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("c", kT1)));
  json out = Update(live, live, Opts("c", kT2));
  EXPECT_EQ(out, live);
  json other = Update(live, live, Opts("d", kT2));
  EXPECT_EQ(ManagedFields(other), ManagedFields(live));
}

TEST(TrackUpdateTest, RepeatedUpdatesBySameManagerAccumulateAndRefreshTime) {
  json live = Stored(Update(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("c", kT1)));
  json after = live;
  after["spec"]["model"] = "m";
  json out = Update(live, after, Opts("c", kT2));
  ASSERT_EQ(ManagedFields(out).size(), 1u);
  EXPECT_EQ(EntryOf(out, "c", "Update")["time"], kT2);
  EXPECT_EQ(FieldsOf(out, "c", "Update"),
            json::parse(R"({"f:spec": {".": {}, "f:model": {}, "f:replicas": {}}})"));
}

// ------------------------------------------------------------------ status

TEST(ServerSideApplyTest, StatusSubresourceHasItsOwnEntryAndScope) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("kubectl")));
  // A controller applies status; the spec it sends is ignored.
  json status_apply =
      Md({{"spec", {{"replicas", 9}}}, {"status", {{"readyReplicas", 1}, {"phase", "Up"}}}});
  json out = Stored(Apply(live, status_apply, Opts("ctrl", kT2, false, "status")));
  EXPECT_EQ(out["spec"]["replicas"], 2);
  EXPECT_EQ(out["status"], json({{"readyReplicas", 1}, {"phase", "Up"}}));
  json entry = EntryOf(out, "ctrl", "Apply", "status");
  ASSERT_FALSE(entry.is_null());
  EXPECT_EQ(entry["subresource"], "status");
  EXPECT_EQ(entry["fieldsV1"],
            json::parse(R"({"f:status": {"f:phase": {}, "f:readyReplicas": {}}})"));
  EXPECT_EQ(FieldsOf(out, "kubectl"), json::parse(R"({"f:spec": {"f:replicas": {}}})"));

  // The main-resource applier neither sees nor removes status.
  json main_again = Apply(out, Md({{"spec", {{"replicas", 3}}}}), Opts("kubectl", kT3));
  EXPECT_EQ(main_again["status"], out["status"]);

  // The same name applying to the main resource is a different manager.
  auto r = ServerSideApply(out, Md({{"spec", {{"replicas", 5}}}}), Opts("ctrl", kT3));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas");

  // Omitting a status field prunes only that field.
  json pruned =
      Apply(out, Md({{"status", {{"readyReplicas", 1}}}}), Opts("ctrl", kT3, false, "status"));
  EXPECT_EQ(pruned["status"], json({{"readyReplicas", 1}}));
  EXPECT_EQ(pruned["spec"]["replicas"], 2);
}

TEST(ServerSideApplyTest, ConflictWithAStatusManagerNamesTheSubresource) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("kubectl")));
  live =
      Stored(Apply(live, Md({{"status", {{"phase", "Up"}}}}), Opts("ctrl", kT2, false, "status")));
  auto r = ServerSideApply(live, Md({{"status", {{"phase", "Down"}}}}),
                           Opts("other", kT3, false, "status"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "Apply failed with 1 conflict: conflict with \"ctrl\" with subresource \"status\": "
            ".status.phase");
}

TEST(TrackUpdateTest, StatusUpdateTracksOnlyStatusUnderTheSubresource) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("kubectl")));
  json after = live;
  after["status"] = {{"readyReplicas", 2}};
  after["spec"]["replicas"] = 7;  // the server resets spec on /status; never owned here
  json out = Update(live, after, Opts("worker", kT2, false, "status"));
  json entry = EntryOf(out, "worker", "Update", "status");
  ASSERT_FALSE(entry.is_null());
  EXPECT_EQ(entry["fieldsV1"], json::parse(R"({"f:status": {".": {}, "f:readyReplicas": {}}})"));
  EXPECT_EQ(FieldsOf(out, "kubectl"), json::parse(R"({"f:spec": {"f:replicas": {}}})"));
}

TEST(TrackUpdateTest, ScaleIsRecordedWithItsSubresource) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("kubectl")));
  json after = live;
  after["spec"]["replicas"] = 4;
  json out = Update(live, after, Opts("kubectl", kT2, false, "scale"));
  EXPECT_EQ(FieldsOf(out, "kubectl", "Update", "scale"),
            json::parse(R"({"f:spec": {"f:replicas": {}}})"));
  EXPECT_TRUE(EntryOf(out, "kubectl").is_null());  // the applier lost its only field
}

// ------------------------------------------------------------------- lists

TEST(ServerSideApplyTest, ListsAreAtomic) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"args", {"--a", "--b"}}}}}), Opts("a")));
  // The same list from another manager: no conflict, both own it.
  live = Stored(Apply(live, Md({{"spec", {{"args", {"--a", "--b"}}}}}), Opts("b", kT2)));
  EXPECT_EQ(FieldsOf(live, "b"), json::parse(R"({"f:spec": {"f:args": {}}})"));
  // A different list is one conflict on the whole list, not per item.
  auto r = ServerSideApply(live, Md({{"spec", {{"args", {"--a"}}}}}), Opts("c", kT3));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().causes().size(), 2u);
  EXPECT_EQ(r.status().causes()[0].field, ".spec.args");
  // With force the list is replaced, not merged.
  json out = Apply(live, Md({{"spec", {{"args", {"--c"}}}}}), Opts("c", kT3, true));
  EXPECT_EQ(out["spec"]["args"], json({"--c"}));
}

TEST(ServerSideApplyTest, AnEmptyListClearsTheList) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"args", {"--a"}}}}}), Opts("a")));
  json out = Apply(live, Md({{"spec", {{"args", json::array()}}}}), Opts("a", kT2));
  EXPECT_EQ(out["spec"]["args"], json::array());
  EXPECT_EQ(FieldsOf(out, "a"), json::parse(R"({"f:spec": {"f:args": {}}})"));
}

TEST(ServerSideApplyTest, FinalizersAreASet) {
  json live =
      Stored(Apply(nullptr, Md({{"metadata", {{"finalizers", {"user/x"}}}}}), Opts("user")));
  // A controller adds its own finalizer with an update.
  json after = live;
  after["metadata"]["finalizers"].push_back("corral.dev/cleanup");
  live = Stored(Update(live, after, Opts("controller", kT2)));
  EXPECT_EQ(FieldsOf(live, "controller", "Update"),
            json::parse(R"({"f:metadata": {"f:finalizers": {"v:\"corral.dev/cleanup\"": {}}}})"));

  // Re-applying the user's list keeps the controller's item: no conflict.
  json same = Apply(live, Md({{"metadata", {{"finalizers", {"user/x"}}}}}), Opts("user", kT3));
  EXPECT_EQ(same["metadata"]["finalizers"], json({"user/x", "corral.dev/cleanup"}));

  // An empty list removes only the user's own finalizer.
  json cleared =
      Apply(live, Md({{"metadata", {{"finalizers", json::array()}}}}), Opts("user", kT3));
  EXPECT_EQ(cleared["metadata"]["finalizers"], json({"corral.dev/cleanup"}));
}

TEST(ServerSideApplyTest, OwnerReferencesMergeByUid) {
  json ref1 = {{"apiVersion", kGV}, {"kind", "Model"}, {"name", "m1"}, {"uid", "u1"}};
  json ref2 = {{"apiVersion", kGV}, {"kind", "Node"}, {"name", "n1"}, {"uid", "u2"}};
  json live = Stored(Apply(nullptr, Md({{"metadata", {{"ownerReferences", {ref1}}}}}), Opts("a")));
  live = Stored(Apply(live, Md({{"metadata", {{"ownerReferences", {ref2}}}}}), Opts("b", kT2)));
  EXPECT_EQ(live["metadata"]["ownerReferences"], json({ref1, ref2}));

  // Changing a field of a's reference is a's business; b has no say.
  json ref1b = ref1;
  ref1b["name"] = "m1-renamed";
  json out = Apply(live, Md({{"metadata", {{"ownerReferences", {ref1b}}}}}), Opts("a", kT3));
  EXPECT_EQ(out["metadata"]["ownerReferences"], json({ref1b, ref2}));
  // b changing a's reference conflicts on that item's field only.
  auto r =
      ServerSideApply(live, Md({{"metadata", {{"ownerReferences", {ref1b}}}}}), Opts("b", kT3));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "Apply failed with 1 conflict: conflict with \"a\": "
            ".metadata.ownerReferences[uid=\"u1\"].name");
  // a dropping its reference removes it; b's stays.
  json dropped = Apply(live, Md(), Opts("a", kT3));
  EXPECT_EQ(dropped["metadata"]["ownerReferences"], json({ref2}));
}

// ---------------------------------------------- client-written managedFields

TEST(TrackUpdateTest, ClientWrittenManagedFieldsAreKept) {
  json live =
      Stored(Update(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("kubectl-client-side-apply")));
  // kubectl's client-side -> server-side migration rewrites the entry.
  json migrated = live;
  migrated["metadata"]["managedFields"] = json::parse(R"([{
    "manager": "kubectl", "operation": "Apply", "apiVersion": "corral.dev/v1alpha1",
    "time": "2026-11-24T08:00:00Z", "fieldsType": "FieldsV1",
    "fieldsV1": {"f:spec": {"f:replicas": {}}}}])");
  json out = Update(live, migrated, Opts("kubectl", kT2));
  EXPECT_EQ(ManagedFields(out), migrated["metadata"]["managedFields"]);

  // kubectl now owns replicas as an applier: omitting it prunes it.
  json pruned = Apply(Stored(out), Md({{"spec", {{"model", "m"}}}}), Opts("kubectl", kT3));
  EXPECT_FALSE(pruned["spec"].contains("replicas"));
}

TEST(TrackUpdateTest, OmittedManagedFieldsKeepTheStoredOnes) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("a")));
  json replaced = live;
  replaced["metadata"].erase("managedFields");  // kubectl replace -f of a `get -o yaml`
  replaced["spec"]["model"] = "m";
  json out = Update(live, replaced, Opts("kubectl-replace", kT2));
  EXPECT_EQ(FieldsOf(out, "a"), json::parse(R"({"f:spec": {"f:replicas": {}}})"));
  EXPECT_EQ(FieldsOf(out, "kubectl-replace", "Update"),
            json::parse(R"({"f:spec": {"f:model": {}}})"));
}

TEST(TrackUpdateTest, AnEmptyListClearsAndTheObjectStaysUntrackedUntilApply) {
  for (json reset : {json::array(), json::parse("[{}]")}) {
    json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("a")));
    json cleared_in = live;
    cleared_in["metadata"]["managedFields"] = reset;
    json cleared = Stored(Update(live, cleared_in, Opts("kubectl-patch", kT2)));
    EXPECT_FALSE(cleared["metadata"].contains("managedFields")) << reset;

    // Later updates of an untracked object are not tracked (as Kubernetes).
    json edited_in = cleared;
    edited_in["spec"]["replicas"] = 3;
    json edited = Stored(Update(cleared, edited_in, Opts("kubectl-edit", kT2)));
    EXPECT_FALSE(edited["metadata"].contains("managedFields"));

    // The first apply finds everything owned by "before-first-apply".
    auto r = ServerSideApply(edited, Md({{"spec", {{"replicas", 5}}}}), Opts("b", kT3));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(),
              "Apply failed with 1 conflict: conflict with \"before-first-apply\" using "
              "corral.dev/v1alpha1: .spec.replicas");
    json same = Apply(edited, Md({{"spec", {{"replicas", 3}}}}), Opts("b", kT3));
    EXPECT_EQ(FieldsOf(same, "before-first-apply", "Update"),
              json::parse(R"({"f:spec": {".": {}, "f:replicas": {}}})"));
    EXPECT_EQ(FieldsOf(same, "b"), json::parse(R"({"f:spec": {"f:replicas": {}}})"));
  }
}

TEST(TrackUpdateTest, InvalidClientWrittenManagedFieldsAreRejectedNamingTheField) {
  json live = Stored(Apply(nullptr, Md({{"spec", {{"replicas", 2}}}}), Opts("a")));
  struct Case {
    const char* list;
    const char* field;
  } cases[] = {
      {R"([{"manager":"m","operation":"Patch","fieldsV1":{}}])",
       "metadata.managedFields[0].operation"},
      {R"([{"manager":"m","operation":"Apply","fieldsV1":[]}])",
       "metadata.managedFields[0].fieldsV1"},
      {R"([{"manager":"m","operation":"Apply"}])", "metadata.managedFields[0].fieldsV1"},
      {R"([{"operation":"Apply","fieldsV1":{}}])", "metadata.managedFields[0].manager"},
      {R"([{"manager":"m","operation":"Apply","fieldsType":"FieldsV2","fieldsV1":{}}])",
       "metadata.managedFields[0].fieldsType"},
      {R"([{"manager":"m","operation":"Apply","fieldsV1":{"k:notjson":{}}}])",
       "metadata.managedFields[0].fieldsV1"},
      {R"([{"manager":"m","operation":"Apply","fieldsV1":{}}, 7])", "metadata.managedFields[1]"},
      {R"({"manager":"m"})", "metadata.managedFields"},
  };
  for (const Case& c : cases) {
    json after = live;
    after["metadata"]["managedFields"] = json::parse(c.list);
    auto r = TrackUpdate(live, after, Opts("kubectl", kT2));
    ASSERT_FALSE(r.ok()) << c.list;
    EXPECT_EQ(r.status().code(), common::Code::kInvalidArgument) << c.list;
    ASSERT_FALSE(r.status().causes().empty()) << c.list;
    EXPECT_EQ(r.status().causes()[0].field, c.field) << c.list;
    EXPECT_THAT(r.status().message(), HasSubstr(c.field));
  }
}

TEST(TrackUpdateTest, StoredFieldsV1RoundTripsUnchanged) {
  json fields = json::parse(R"({
    "f:metadata": {"f:finalizers": {".": {}, "v:\"a/b\"": {}},
                   "f:ownerReferences": {"k:{\"uid\":\"u1\"}": {".": {}, "f:name": {}}}},
    "f:spec": {".": {}, "f:replicas": {}, "f:template": {"f:gpus": {}}}})");
  json live = Stored(Md({{"spec", {{"replicas", 1}}}}));
  live["metadata"]["managedFields"] = {{{"manager", "x"},
                                        {"operation", "Update"},
                                        {"apiVersion", kGV},
                                        {"time", kT1},
                                        {"fieldsType", "FieldsV1"},
                                        {"fieldsV1", fields}}};
  json after = live;
  after["metadata"]["labels"] = {{"new", "1"}};
  json out = Update(live, after, Opts("y", kT2));
  EXPECT_EQ(FieldsOf(out, "x", "Update"), fields);
}

// ------------------------------------------------------------ bad input

TEST(ApplyValidationTest, ManagerNameIsRequiredAndPrintable) {
  json applied = Md({{"spec", {{"replicas", 1}}}});
  for (const std::string& bad :
       {std::string(""), std::string(129, 'm'), std::string("ku\nbectl")}) {
    auto a = ServerSideApply(nullptr, applied, Opts(bad));
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), common::Code::kInvalidArgument);
    EXPECT_THAT(a.status().message(), HasSubstr("fieldManager"));
    auto u = TrackUpdate(nullptr, applied, Opts(bad));
    ASSERT_FALSE(u.ok());
    EXPECT_EQ(u.status().code(), common::Code::kInvalidArgument);
  }
  EXPECT_TRUE(ServerSideApply(nullptr, applied, Opts(std::string(128, 'm'))).ok());
}

TEST(ApplyValidationTest, ApplyRejectsManagedFieldsInTheBody) {
  json applied = Md({{"metadata", {{"managedFields", json::array({json::object()})}}}});
  auto r = ServerSideApply(nullptr, applied, Opts("kubectl"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), common::Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "metadata.managedFields must be nil");
  ASSERT_EQ(r.status().causes().size(), 1u);
  EXPECT_EQ(r.status().causes()[0].field, "metadata.managedFields");
}

TEST(ApplyValidationTest, OtherBadInputs) {
  EXPECT_EQ(ServerSideApply(nullptr, json::array(), Opts("k")).status().code(),
            common::Code::kInvalidArgument);
  EXPECT_EQ(ServerSideApply(nullptr, Md(), Opts("k", kT1, false, "status")).status().code(),
            common::Code::kNotFound);
  EXPECT_EQ(ServerSideApply(nullptr, Md(), Opts("k", kT1, false, "bogus")).status().code(),
            common::Code::kInvalidArgument);
  EXPECT_EQ(TrackUpdate(nullptr, json("x"), Opts("k")).status().code(),
            common::Code::kInvalidArgument);
  json corrupt = Stored(Md());
  corrupt["metadata"]["managedFields"] = "garbage";
  EXPECT_EQ(ServerSideApply(corrupt, Md(), Opts("k")).status().code(), common::Code::kInternal);
}

// -------------------------------------------------------- metadata details

TEST(ServerSideApplyTest, EntriesCarryTimeAndApiVersionAndAreSorted) {
  json live = Stored(Update(nullptr, Md({{"spec", {{"model", "m"}}}}), Opts("creator", kT1)));
  json applied = Md({{"spec", {{"replicas", 1}}}});
  applied["apiVersion"] = "corral.dev/v1beta1";
  json out = Apply(live, applied, Opts("kubectl", kT2));
  json mf = ManagedFields(out);
  ASSERT_EQ(mf.size(), 2u);
  // Apply entries sort before Update entries (Kubernetes' order).
  EXPECT_EQ(mf[0]["operation"], "Apply");
  EXPECT_EQ(mf[0]["apiVersion"], "corral.dev/v1beta1");
  EXPECT_EQ(mf[0]["time"], kT2);
  EXPECT_EQ(mf[0]["fieldsType"], "FieldsV1");
  EXPECT_EQ(mf[1]["manager"], "creator");
  EXPECT_EQ(mf[1]["time"], kT1);
}

TEST(ServerSideApplyTest, KubectlUpgradingFromClientSideApplyDoesNotConflict) {
  // kubectl apply (client-side) created it: the annotation records what it applied.
  json created = Md({{"spec", {{"replicas", 2}}}});
  json with_annotation = created;
  with_annotation["metadata"]["annotations"] = {
      {"kubectl.kubernetes.io/last-applied-configuration", created.dump() + "\n"}};
  json live = Stored(Update(nullptr, with_annotation, Opts("kubectl-client-side-apply")));

  // Another manager changing replicas conflicts ...
  auto r = ServerSideApply(live, Md({{"spec", {{"replicas", 3}}}}), Opts("other", kT2));
  ASSERT_FALSE(r.ok());
  // ... but kubectl itself may take over what it applied client-side.
  json out = Apply(live, Md({{"spec", {{"replicas", 3}}}}), Opts("kubectl", kT2));
  EXPECT_EQ(out["spec"]["replicas"], 3);
  EXPECT_EQ(FieldsOf(out, "kubectl"), json::parse(R"({"f:spec": {"f:replicas": {}}})"));
  json csa = FieldsOf(out, "kubectl-client-side-apply", "Update");
  EXPECT_FALSE(csa["f:spec"].contains("f:replicas"));
  // And the annotation now records the server-side applied configuration.
  std::string annotation =
      out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"];
  EXPECT_EQ(json::parse(annotation), Md({{"spec", {{"replicas", 3}}}}));
  EXPECT_EQ(annotation.back(), '\n');

  // Once live has drifted from the annotation, the field is a real conflict.
  json drifted_in = live;
  drifted_in["spec"]["replicas"] = 7;
  json drifted = Stored(Update(live, drifted_in, Opts("kubectl-client-side-apply", kT2)));
  drifted["metadata"]["annotations"] = with_annotation["metadata"]["annotations"];
  auto c = ServerSideApply(drifted, Md({{"spec", {{"replicas", 3}}}}), Opts("kubectl", kT3));
  EXPECT_FALSE(c.ok());
}

TEST(TrackUpdateTest, MoreThanTenUpdatersAreFoldedIntoAncientChanges) {
  json live =
      Stored(Update(nullptr, Md({{"spec", {{"f0", 0}}}}), Opts("m0", "2026-01-01T00:00:00Z")));
  for (int i = 1; i <= 11; ++i) {
    json after = live;
    after["spec"]["f" + std::to_string(i)] = i;
    char when[32];
    std::snprintf(when, sizeof when, "2026-01-01T00:00:%02dZ", i);
    live = Stored(Update(live, after, Opts("m" + std::to_string(i), when)));
  }
  json mf = ManagedFields(live);
  EXPECT_EQ(mf.size(), 10u);
  json ancient = EntryOf(live, "ancient-changes", "Update");
  ASSERT_FALSE(ancient.is_null());
  // The oldest owners' fields survive in the bucket.
  EXPECT_TRUE(ancient["fieldsV1"]["f:spec"].contains("f:f0"));
  EXPECT_TRUE(EntryOf(live, "m0", "Update").is_null());
  EXPECT_FALSE(EntryOf(live, "m11", "Update").is_null());
}

}  // namespace
}  // namespace corral::api
