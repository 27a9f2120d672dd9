#include "api/schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "store/kinds.h"

namespace corral::api {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using json = nlohmann::json;

const SchemaRegistry& Reg() { return SchemaRegistry::Default(); }

json MinimalDeployment() {
  return json::parse(R"({
    "apiVersion": "corral.dev/v1alpha1", "kind": "ModelDeployment",
    "metadata": {"name": "chat", "namespace": "default"},
    "spec": {"modelRef": {"name": "llama"}}
  })");
}

json FullDeployment() {
  return json::parse(R"({
    "apiVersion": "corral.dev/v1alpha1", "kind": "ModelDeployment",
    "metadata": {"name": "chat", "namespace": "default", "labels": {"app": "chat"},
                 "creationTimestamp": "2026-01-01T00:00:00Z",
                 "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u1"}],
                 "managedFields": [{"manager": "kubectl", "operation": "Apply",
                                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}},
                                    "time": "2026-01-01T00:00:00Z"}]},
    "spec": {
      "modelRef": {"name": "llama"}, "servedName": "llama-chat", "replicas": 2,
      "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "10%"}},
      "autoscaling": {
        "minReplicas": 1, "maxReplicas": 10, "preset": "hpa",
        "metrics": [{"type": "Concurrency", "target": 8}, {"type": "TimeToFirstToken", "target": 0.5}],
        "windows": {"stableWindowSeconds": 60, "panicWindowSeconds": 6, "panicThreshold": 2.0},
        "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                                 "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15},
                                              {"type": "Pods", "value": 4, "periodSeconds": 15}],
                                 "cooldownSeconds": 30},
                     "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Disabled"}},
        "predictive": {"enabled": true, "leadTimeSeconds": 45, "confidence": 0.95, "seasonSeconds": 86400},
        "scaleToZero": {"enabled": true, "idleSeconds": 600},
        "onMissingMetrics": "decay", "metricStalenessSeconds": 15},
      "placement": {"nodeSelector": {"gpu": "h100"}, "strategy": "BinPack",
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}]},
      "routing": {"policy": "PrefixAffinity", "prefixLength": 256, "loadBound": 1.5,
                  "timeouts": {"connectSeconds": 2}, "hold": {"maxRequests": 10}},
      "cache": {"enabled": true, "maxBytes": 1048576}
    },
    "status": {"replicas": 3, "readyReplicas": 2, "desiredReplicas": 3,
               "lastScaleTime": "2026-01-01T00:01:00Z", "selector": "corral.dev/deployment=chat",
               "currentMetrics": [{"type": "Concurrency", "value": 6.5, "target": 8}],
               "conditions": [{"type": "Available", "status": "True",
                               "lastTransitionTime": "2026-01-01T00:00:00.123456Z"}]}
  })");
}

json ValidModel() {
  return json::parse(R"({
    "apiVersion": "corral.dev/v1alpha1", "kind": "Model",
    "metadata": {"name": "llama", "namespace": "default"},
    "spec": {"source": "file:///models/llama.gguf", "engine": "llamacpp",
             "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
             "resources": {"memoryBytes": 8589934592, "gpuMemoryBytes": 0, "cpu": 2.5},
             "contextLength": 4096, "loadTimeHintSeconds": 12.5,
             "llamacpp": {"gpuLayers": -1, "parallel": 4}}
  })");
}

json ValidNode() {
  return json::parse(R"({
    "apiVersion": "corral.dev/v1alpha1", "kind": "Node",
    "metadata": {"name": "gpu-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {"unschedulable": false, "taints": [{"key": "dedicated", "value": "llm", "effect": "NoSchedule"}]},
    "status": {
      "capacity": {"cpu": 32, "memoryBytes": 137438953472,
                   "gpus": [{"model": "H100", "memoryBytes": 85899345920}, {"model": "H100", "memoryBytes": 85899345920}]},
      "allocatable": {"cpu": 30, "memoryBytes": 68719476736,
                      "gpus": [{"model": "H100", "memoryBytes": 85899345920}, {"model": "H100", "memoryBytes": 85899345920}]},
      "conditions": [{"type": "Ready", "status": "True"}],
      "address": "http://10.0.0.5:8081",
      "engines": [{"name": "sim", "version": "1"}, {"name": "llamacpp", "version": "b5000"}],
      "cachedModels": [{"source": "file:///models/llama.gguf", "sizeBytes": 100}],
      "replicas": 3, "lastHeartbeatTime": "2026-01-01T00:00:00Z"}
  })");
}

json ValidReplica() {
  return json::parse(R"({
    "apiVersion": "corral.dev/v1alpha1", "kind": "Replica",
    "metadata": {"name": "chat-abc", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {"deployment": "chat", "modelRef": {"name": "llama"}, "nodeName": "gpu-1", "templateHash": "5d8f"},
    "status": {"phase": "Loading", "progress": {"bytesLoaded": 50, "bytesTotal": 200, "percent": 25},
               "startedAt": "2026-01-01T00:00:01Z", "message": ""}
  })");
}

json ValidEvent() {
  return json::parse(R"({
    "apiVersion": "v1", "kind": "Event",
    "metadata": {"name": "chat.1", "namespace": "default", "creationTimestamp": null},
    "involvedObject": {"kind": "ModelDeployment", "name": "chat", "namespace": "default", "uid": "u1",
                       "apiVersion": "corral.dev/v1alpha1"},
    "reason": "ScaledUp", "message": "scale up 3->6 ", "type": "Normal", "count": 3,
    "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:10:00Z",
    "eventTime": null, "source": {"component": "corral-autoscaler", "host": "srv-1"},
    "reportingComponent": "corral.dev/autoscaler", "reportingInstance": "srv-1"
  })");
}

json ValidLease() {
  return json::parse(R"({
    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
    "metadata": {"name": "gpu-1", "namespace": "corral-node-lease"},
    "spec": {"holderIdentity": "gpu-1", "leaseDurationSeconds": 40,
             "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 0, "acquireTime": null}
  })");
}

std::vector<std::string> Fields(const ValidationResult& r) {
  std::vector<std::string> out;
  for (const auto& e : r.errors) out.push_back(e.field);
  return out;
}

// ------------------------------------------------------------- registry --

TEST(SchemaRegistryTest, KindsEqualTheStoresDefaultRegistry) {
  const auto& ours = Reg().kinds().kinds();
  const auto store_default = store::KindRegistry::Default();
  const auto& theirs = store_default.kinds();
  ASSERT_EQ(ours.size(), theirs.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    SCOPED_TRACE(theirs[i].kind);
    EXPECT_EQ(ours[i].kind, theirs[i].kind);
    EXPECT_EQ(ours[i].group, theirs[i].group);
    EXPECT_EQ(ours[i].version, theirs[i].version);
    EXPECT_EQ(ours[i].plural, theirs[i].plural);
    EXPECT_EQ(ours[i].namespaced, theirs[i].namespaced);
    EXPECT_EQ(ours[i].selectable_fields, theirs[i].selectable_fields);
  }
}

TEST(SchemaRegistryTest, SelectableFieldsExistInTheSchema) {
  for (const auto& k : Reg().kinds().kinds()) {
    for (const auto& field : k.selectable_fields) {
      const json* node = Reg().KindSchema(k.kind);
      std::stringstream ss(field);
      std::string part;
      while (node && std::getline(ss, part, '.')) {
        node = node->contains("properties") && node->at("properties").contains(part)
                   ? &node->at("properties").at(part)
                   : nullptr;
      }
      EXPECT_NE(node, nullptr) << k.kind << " " << field;
    }
  }
}

TEST(SchemaRegistryTest, ResourcesForDiscovery) {
  std::vector<std::string> kinds;
  for (const auto& r : Reg().Resources()) kinds.push_back(r.kind);
  EXPECT_THAT(kinds, ElementsAre("Node", "Model", "ModelDeployment", "Replica", "Event", "Lease"));

  const ResourceInfo* md = Reg().Resource("modeldeployments");
  ASSERT_NE(md, nullptr);
  EXPECT_EQ(md->kind, "ModelDeployment");
  EXPECT_EQ(md->list_kind, "ModelDeploymentList");
  EXPECT_EQ(md->singular, "modeldeployment");
  EXPECT_THAT(md->short_names, ElementsAre("md"));
  EXPECT_THAT(md->categories, ElementsAre("all", "corral"));
  EXPECT_TRUE(md->HasSubresource("scale"));
  EXPECT_TRUE(md->HasSubresource("status"));
  EXPECT_EQ(md->ApiVersion(), "corral.dev/v1alpha1");
  EXPECT_THAT(md->verbs, UnorderedElementsAre("create", "delete", "deletecollection", "get", "list",
                                              "patch", "update", "watch"));

  const ResourceInfo* node = Reg().Resource("corral.dev", "nodes");
  ASSERT_NE(node, nullptr);
  EXPECT_FALSE(node->namespaced);
  EXPECT_FALSE(node->HasSubresource("scale"));
  // Short names must not shadow kubectl's built-ins (no, ev is core Event's own).
  EXPECT_THAT(node->short_names, ElementsAre("cnode"));
  // Node is not in "all" (kubectl get all lists workloads, not machines).
  EXPECT_THAT(node->categories, ElementsAre("corral"));

  const ResourceInfo* ev = Reg().Resource("", "events");
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->ApiVersion(), "v1");
  EXPECT_EQ(Reg().Resource("corral.dev", "events"), nullptr);
  EXPECT_EQ(Reg().Resource("bogus"), nullptr);
  EXPECT_EQ(Reg().ResourceForKind("Lease")->ApiVersion(), "coordination.k8s.io/v1");
  EXPECT_EQ(Reg().ResourceForKind("Pod"), nullptr);
  EXPECT_EQ(Reg().KindSchema("Pod"), nullptr);
}

TEST(SchemaRegistryTest, OpenApiNames) {
  EXPECT_EQ(Reg().OpenApiName("ModelDeployment"), "dev.corral.v1alpha1.ModelDeployment");
  EXPECT_EQ(Reg().OpenApiName("Event"), "io.k8s.api.core.v1.Event");
  EXPECT_EQ(Reg().OpenApiName("Lease"), "io.k8s.api.coordination.v1.Lease");
  EXPECT_EQ(Reg().OpenApiName("Pod"), "");
}

// kubectl explain shows descriptions: every field of every kind has one.
TEST(SchemaRegistryTest, EveryFieldHasADescription) {
  std::function<void(const json&, const std::string&, bool)> walk =
      [&](const json& s, const std::string& path, bool is_field) {
        if (is_field) {
          EXPECT_TRUE(s.contains("description") && !s["description"].get<std::string>().empty())
              << path;
        }
        if (s.contains("properties")) {
          for (const auto& [name, sub] : s["properties"].items()) {
            walk(sub, path + "." + name, true);
          }
        }
        if (s.contains("items")) walk(s["items"], path + "[]", false);
      };
  for (const auto& r : Reg().Resources()) walk(*Reg().KindSchema(r.kind), r.kind, true);
}

// --------------------------------------------------------------- validate --

TEST(ValidateTest, ValidObjectsOfEveryKindPass) {
  const std::vector<std::pair<std::string, json>> objects = {
      {"ModelDeployment", FullDeployment()},
      {"ModelDeployment", MinimalDeployment()},
      {"Model", ValidModel()},
      {"Node", ValidNode()},
      {"Replica", ValidReplica()},
      {"Event", ValidEvent()},
      {"Lease", ValidLease()}};
  for (const auto& [kind, obj] : objects) {
    SCOPED_TRACE(kind);
    auto r = Reg().Validate(kind, obj);
    for (const auto& e : r.errors) ADD_FAILURE() << e.field << ": " << e.message;
    EXPECT_THAT(r.unknown_fields, IsEmpty());
  }
}

TEST(ValidateTest, WrongTypeIsWordedLikeKubernetes) {
  json md = MinimalDeployment();
  md["spec"]["replicas"] = "abc";
  auto r = Reg().Validate("ModelDeployment", md);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "spec.replicas");
  EXPECT_EQ(r.errors[0].message,
            "Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"");
  EXPECT_EQ(r.errors[0].reason, "FieldValueTypeInvalid");

  // A float is not an integer; an object is not a string.
  md["spec"]["replicas"] = 1.5;
  md["spec"]["servedName"] = json::object();
  r = Reg().Validate("ModelDeployment", md);
  EXPECT_THAT(Fields(r), UnorderedElementsAre("spec.replicas", "spec.servedName"));
  for (const auto& e : r.errors) {
    if (e.field == "spec.replicas") {
      EXPECT_THAT(e.message, HasSubstr("integer: \"number\""));
    } else {
      EXPECT_THAT(e.message, HasSubstr("string: \"object\""));
    }
  }
}

TEST(ValidateTest, RequiredFields) {
  json md = MinimalDeployment();
  md["spec"].erase("modelRef");
  auto r = Reg().Validate("ModelDeployment", md);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "spec.modelRef");
  EXPECT_EQ(r.errors[0].message, "Required value");
  EXPECT_EQ(r.errors[0].reason, "FieldValueRequired");

  json model = ValidModel();
  model["spec"] = json::object();
  EXPECT_THAT(Fields(Reg().Validate("Model", model)),
              UnorderedElementsAre("spec.source", "spec.engine"));

  // autoscaling requires maxReplicas; policies require all three fields.
  md = MinimalDeployment();
  md["spec"]["autoscaling"] = json::parse(
      R"({"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}, {"type": "Pods"}]}}})");
  EXPECT_THAT(Fields(Reg().Validate("ModelDeployment", md)),
              UnorderedElementsAre("spec.autoscaling.maxReplicas",
                                   "spec.autoscaling.behavior.scaleUp.policies[1].value",
                                   "spec.autoscaling.behavior.scaleUp.policies[1].periodSeconds"));
}

TEST(ValidateTest, EnumsListTheSupportedValues) {
  json model = ValidModel();
  model["spec"]["engine"] = "x";
  auto r = Reg().Validate("Model", model);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "spec.engine");
  EXPECT_EQ(r.errors[0].message,
            "Unsupported value: \"x\": supported values: \"sim\", \"llamacpp\"");
  EXPECT_EQ(r.errors[0].reason, "FieldValueNotSupported");

  json md = FullDeployment();
  md["spec"]["autoscaling"]["behavior"]["scaleUp"]["policies"][1]["type"] = "Replicas";
  md["spec"]["routing"]["policy"] = "RoundRobin";
  r = Reg().Validate("ModelDeployment", md);
  EXPECT_THAT(Fields(r), UnorderedElementsAre("spec.autoscaling.behavior.scaleUp.policies[1].type",
                                              "spec.routing.policy"));
}

TEST(ValidateTest, NumericBoundsWithListIndexes) {
  json md = FullDeployment();
  md["spec"]["replicas"] = -1;
  md["spec"]["autoscaling"]["behavior"]["scaleUp"]["policies"][1]["value"] = 0;
  md["spec"]["autoscaling"]["behavior"]["scaleUp"]["policies"][0]["periodSeconds"] = 1801;
  md["spec"]["autoscaling"]["metrics"][1]["target"] = 0;  // exclusive minimum
  md["spec"]["autoscaling"]["predictive"]["confidence"] = 1.5;
  auto r = Reg().Validate("ModelDeployment", md);
  std::map<std::string, std::string> by_field;
  for (const auto& e : r.errors) by_field[e.field] = e.message;
  EXPECT_EQ(by_field["spec.replicas"],
            "Invalid value: -1: spec.replicas in body should be greater than or equal to 0");
  EXPECT_EQ(by_field["spec.autoscaling.behavior.scaleUp.policies[1].value"],
            "Invalid value: 0: spec.autoscaling.behavior.scaleUp.policies[1].value in body should "
            "be greater than or equal to 1");
  EXPECT_EQ(by_field["spec.autoscaling.behavior.scaleUp.policies[0].periodSeconds"],
            "Invalid value: 1801: spec.autoscaling.behavior.scaleUp.policies[0].periodSeconds in "
            "body should be less than or equal to 1800");
  EXPECT_EQ(
      by_field["spec.autoscaling.metrics[1].target"],
      "Invalid value: 0: spec.autoscaling.metrics[1].target in body should be greater than 0");
  EXPECT_THAT(by_field["spec.autoscaling.predictive.confidence"],
              HasSubstr("should be less than or equal to 0.999"));
  EXPECT_EQ(r.errors.size(), 5u);
}

TEST(ValidateTest, StringsPatternsLengthsAndFormats) {
  json model = ValidModel();
  model["spec"]["sha256"] = "ABC";
  model["spec"]["source"] = "ftp://host/x";
  auto r = Reg().Validate("Model", model);
  std::map<std::string, std::string> by_field;
  for (const auto& e : r.errors) by_field[e.field] = e.message;
  EXPECT_EQ(by_field["spec.sha256"],
            "Invalid value: \"ABC\": spec.sha256 in body should match '^[a-f0-9]{64}$'");
  EXPECT_THAT(by_field["spec.source"], HasSubstr("should match '^(file|https?|sim)://'"));

  json rep = ValidReplica();
  rep["spec"]["templateHash"] = std::string(64, 'a');
  rep["spec"]["modelRef"]["name"] = "";
  rep["status"]["readyAt"] = "yesterday";
  r = Reg().Validate("Replica", rep);
  by_field.clear();
  for (const auto& e : r.errors) by_field[e.field] = e.message;
  EXPECT_EQ(by_field["spec.templateHash"], "Too long: may not be more than 63 characters");
  EXPECT_EQ(by_field["spec.modelRef.name"],
            "Invalid value: \"\": spec.modelRef.name in body should be at least 1 chars long");
  EXPECT_EQ(by_field["status.readyAt"],
            "Invalid value: \"yesterday\": status.readyAt in body must be of type date-time: "
            "\"yesterday\"");
  // Length counts characters, not bytes: 63 two-byte characters fit.
  std::string utf8;
  for (int i = 0; i < 63; ++i) utf8 += "\xc3\xa9";
  rep = ValidReplica();
  rep["spec"]["templateHash"] = utf8;
  EXPECT_THAT(Reg().Validate("Replica", rep).errors, IsEmpty());
  // Date-times with offsets and fractions are fine.
  rep["status"]["readyAt"] = "2026-01-01T10:00:00.5+02:00";
  EXPECT_THAT(Reg().Validate("Replica", rep).errors, IsEmpty());
}

TEST(ValidateTest, ArrayBounds) {
  json md = FullDeployment();
  md["spec"]["autoscaling"]["metrics"] = json::array();
  auto r = Reg().Validate("ModelDeployment", md);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "spec.autoscaling.metrics");
  EXPECT_EQ(r.errors[0].message,
            "Invalid value: 0: spec.autoscaling.metrics in body should have at least 1 items");
}

TEST(ValidateTest, IntOrString) {
  json md = MinimalDeployment();
  auto& ru = md["spec"]["strategy"]["rollingUpdate"];
  ru["maxSurge"] = 2;
  ru["maxUnavailable"] = "50%";
  EXPECT_THAT(Reg().Validate("ModelDeployment", md).errors, IsEmpty());
  ru["maxSurge"] = "two";
  ru["maxUnavailable"] = true;
  auto r = Reg().Validate("ModelDeployment", md);
  std::map<std::string, std::string> by_field;
  for (const auto& e : r.errors) by_field[e.field] = e.message;
  EXPECT_EQ(r.errors.size(), 2u);
  EXPECT_THAT(by_field["spec.strategy.rollingUpdate.maxSurge"],
              HasSubstr("should match '^[0-9]+%$'"));
  EXPECT_EQ(by_field["spec.strategy.rollingUpdate.maxUnavailable"],
            "Invalid value: \"boolean\": spec.strategy.rollingUpdate.maxUnavailable in body must "
            "be of type integer or string: \"boolean\"");
}

TEST(ValidateTest, NullsAreAcceptedOnlyWhereNullable) {
  json ev = ValidEvent();  // creationTimestamp and eventTime are null, as typed clients send
  EXPECT_THAT(Reg().Validate("Event", ev).errors, IsEmpty());
  json md = MinimalDeployment();
  md["metadata"]["labels"] = nullptr;
  md["spec"]["replicas"] = nullptr;
  auto r = Reg().Validate("ModelDeployment", md);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "spec.replicas");
  EXPECT_EQ(r.errors[0].message,
            "Invalid value: \"null\": spec.replicas in body must be of type integer: \"null\"");
}

TEST(ValidateTest, MetadataTypesAreChecked) {
  json md = MinimalDeployment();
  md["metadata"]["labels"] = {{"app", 3}};
  md["metadata"]["finalizers"] = "corral.dev/cleanup";
  md["metadata"]["ownerReferences"] =
      json::parse(R"([{"apiVersion": "v1", "kind": "X", "name": "x"}])");
  md["metadata"]["generation"] = "1";
  auto r = Reg().Validate("ModelDeployment", md);
  EXPECT_THAT(Fields(r),
              UnorderedElementsAre("metadata.labels[app]", "metadata.finalizers",
                                   "metadata.ownerReferences[0].uid", "metadata.generation"));
}

TEST(ValidateTest, UnknownFieldsAreCollectedAsPaths) {
  json md = FullDeployment();
  md["spec"]["bogus"] = 1;
  md["spec"]["autoscaling"]["metrics"][1]["extra"] = true;
  md["status"]["x"] = "y";
  md["metadata"]["nmae"] = "typo";
  md["top"] = 1;
  // Not unknown: map keys, and the preserved contents of managedFields' fieldsV1.
  md["spec"]["placement"]["nodeSelector"]["zone"] = "a";
  md["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"] = json::object();
  auto r = Reg().Validate("ModelDeployment", md);
  EXPECT_THAT(r.errors, IsEmpty());
  EXPECT_THAT(r.unknown_fields,
              UnorderedElementsAre("spec.bogus", "spec.autoscaling.metrics[1].extra", "status.x",
                                   "metadata.nmae", "top"));
  // Event has no spec: a spec is unknown there.
  json ev = ValidEvent();
  ev["spec"] = json::object();
  EXPECT_THAT(Reg().Validate("Event", ev).unknown_fields, ElementsAre("spec"));
}

TEST(ValidateTest, CrossFieldRules) {
  json md = FullDeployment();
  md["spec"]["autoscaling"]["minReplicas"] = 5;
  md["spec"]["autoscaling"]["maxReplicas"] = 3;
  auto r = Reg().Validate("ModelDeployment", md);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "spec.autoscaling.minReplicas");
  EXPECT_EQ(r.errors[0].message, "Invalid value: 5: must be less than or equal to maxReplicas (3)");
  md["spec"]["autoscaling"]["minReplicas"] = 3;  // equal is fine
  EXPECT_THAT(Reg().Validate("ModelDeployment", md).errors, IsEmpty());

  md["spec"]["strategy"]["rollingUpdate"] = {{"maxSurge", 0}, {"maxUnavailable", "0%"}};
  r = Reg().Validate("ModelDeployment", md);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "spec.strategy.rollingUpdate.maxUnavailable");
  EXPECT_THAT(r.errors[0].message, HasSubstr("may not be 0 when `maxSurge` is 0"));

  json model = ValidModel();
  model["spec"]["source"] = "sim://tiny";
  r = Reg().Validate("Model", model);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "spec.source");
  EXPECT_THAT(r.errors[0].message, HasSubstr("engine llamacpp cannot load a sim:// source"));
  model["spec"]["engine"] = "sim";
  EXPECT_THAT(Reg().Validate("Model", model).errors, IsEmpty());
}

TEST(ValidateTest, UnknownKind) {
  auto r = Reg().Validate("Pod", json::object());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "kind");
  EXPECT_THAT(r.errors[0].message, HasSubstr("Unsupported value: \"Pod\""));
  EXPECT_THAT(r.errors[0].message, HasSubstr("\"ModelDeployment\""));
}

TEST(ValidateTest, NonObjectBody) {
  auto r = Reg().Validate("Model", json::array());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "");
  EXPECT_THAT(r.errors[0].message, HasSubstr("must be of type object: \"array\""));
}

// ----------------------------------------------------------------- update --

TEST(ValidateUpdateTest, NodeNameMayBeSetOnceNeverChanged) {
  json old_rep = ValidReplica();
  old_rep["spec"].erase("nodeName");
  json new_rep = ValidReplica();
  EXPECT_THAT(Reg().ValidateUpdate("Replica", old_rep, new_rep), IsEmpty());  // absent -> set
  old_rep["spec"]["nodeName"] = "";
  EXPECT_THAT(Reg().ValidateUpdate("Replica", old_rep, new_rep), IsEmpty());  // empty -> set
  EXPECT_THAT(Reg().ValidateUpdate("Replica", new_rep, new_rep), IsEmpty());  // unchanged

  json moved = ValidReplica();
  moved["spec"]["nodeName"] = "gpu-2";
  auto causes = Reg().ValidateUpdate("Replica", new_rep, moved);
  ASSERT_EQ(causes.size(), 1u);
  EXPECT_EQ(causes[0].field, "spec.nodeName");
  EXPECT_EQ(causes[0].message, "Invalid value: \"gpu-2\": field is immutable");
  EXPECT_EQ(causes[0].reason, "FieldValueInvalid");

  json unbound = ValidReplica();
  unbound["spec"].erase("nodeName");
  causes = Reg().ValidateUpdate("Replica", new_rep, unbound);
  ASSERT_EQ(causes.size(), 1u);
  EXPECT_EQ(causes[0].field, "spec.nodeName");
}

TEST(ValidateUpdateTest, OtherImmutablesAndMutableKinds) {
  json a = ValidReplica();
  json b = ValidReplica();
  b["spec"]["modelRef"]["name"] = "other";
  b["spec"]["deployment"] = "other";
  b["status"]["phase"] = "Ready";  // status is not immutable
  std::vector<std::string> fields;
  for (const auto& c : Reg().ValidateUpdate("Replica", a, b)) fields.push_back(c.field);
  EXPECT_THAT(fields, UnorderedElementsAre("spec.modelRef", "spec.deployment"));

  json md = FullDeployment();
  json md2 = md;
  md2["spec"]["modelRef"]["name"] = "mistral";  // a rolling update, not an error
  EXPECT_THAT(Reg().ValidateUpdate("ModelDeployment", md, md2), IsEmpty());
  EXPECT_THAT(Reg().ValidateUpdate("Pod", md, md2), IsEmpty());
}

// --------------------------------------------------------------- defaults --

TEST(ApplyDefaultsTest, DeploymentDefaults) {
  json md = MinimalDeployment();
  Reg().ApplyDefaults("ModelDeployment", md);
  const json& spec = md["spec"];
  EXPECT_EQ(spec["replicas"], 1);
  EXPECT_EQ(spec["strategy"]["type"], "RollingUpdate");
  EXPECT_EQ(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%");
  EXPECT_EQ(spec["strategy"]["rollingUpdate"]["maxUnavailable"], "25%");
  EXPECT_EQ(spec["placement"]["strategy"], "Spread");
  EXPECT_EQ(spec["routing"]["policy"], "LeastOutstanding");
  EXPECT_EQ(spec["routing"]["timeouts"]["connectSeconds"], 5);
  EXPECT_EQ(spec["cache"]["enabled"], false);
  EXPECT_EQ(spec["cache"]["maxBytes"], 67108864);
  // Optional blocks without defaults stay absent: autoscaling off.
  EXPECT_FALSE(spec.contains("autoscaling"));
  EXPECT_FALSE(md.contains("status"));
  // The defaulted object is valid.
  auto r = Reg().Validate("ModelDeployment", md);
  EXPECT_THAT(r.errors, IsEmpty());
  EXPECT_THAT(r.unknown_fields, IsEmpty());
}

TEST(ApplyDefaultsTest, HpaBehaviorDefaultsOnlyWhereTheParentExists) {
  json md = MinimalDeployment();
  md["spec"]["autoscaling"] = {{"maxReplicas", 5}};
  Reg().ApplyDefaults("ModelDeployment", md);
  const json& a = md["spec"]["autoscaling"];
  EXPECT_EQ(a["enabled"], true);
  EXPECT_EQ(a["minReplicas"], 1);
  EXPECT_EQ(a["preset"], "predictive");
  EXPECT_EQ(a["metrics"], json::parse(R"([{"type": "Concurrency", "target": 8}])"));
  EXPECT_EQ(a["onMissingMetrics"], "hold");
  // behavior/windows/predictive/scaleToZero absent: the preset decides.
  EXPECT_FALSE(a.contains("behavior"));
  EXPECT_FALSE(a.contains("windows"));

  md["spec"]["autoscaling"]["behavior"] = {{"scaleDown", {{"stabilizationWindowSeconds", 60}}}};
  Reg().ApplyDefaults("ModelDeployment", md);
  const json& b = md["spec"]["autoscaling"]["behavior"];
  // The Kubernetes HPA defaults.
  EXPECT_EQ(b["scaleUp"]["stabilizationWindowSeconds"], 0);
  EXPECT_EQ(b["scaleUp"]["selectPolicy"], "Max");
  EXPECT_EQ(b["scaleUp"]["policies"],
            json::parse(R"([{"type": "Percent", "value": 100, "periodSeconds": 15},
                            {"type": "Pods", "value": 4, "periodSeconds": 15}])"));
  EXPECT_EQ(b["scaleDown"]["stabilizationWindowSeconds"], 60);  // kept
  EXPECT_EQ(b["scaleDown"]["selectPolicy"], "Max");
  EXPECT_EQ(b["scaleDown"]["policies"],
            json::parse(R"([{"type": "Percent", "value": 100, "periodSeconds": 15}])"));
  EXPECT_THAT(Reg().Validate("ModelDeployment", md).errors, IsEmpty());

  md["spec"]["autoscaling"]["windows"] = json::object();
  Reg().ApplyDefaults("ModelDeployment", md);
  EXPECT_EQ(md["spec"]["autoscaling"]["windows"],
            json::parse(
                R"({"stableWindowSeconds": 60, "panicWindowSeconds": 6, "panicThreshold": 2.0})"));
}

TEST(ApplyDefaultsTest, ExplicitValuesAndNulls) {
  json md = MinimalDeployment();
  md["spec"]["replicas"] = 0;
  md["spec"]["routing"] = {{"policy", nullptr}};
  Reg().ApplyDefaults("ModelDeployment", md);
  EXPECT_EQ(md["spec"]["replicas"], 0);  // zero is a value, not absence
  // A null in a non-nullable field with a default is defaulted (as the apiserver does).
  EXPECT_EQ(md["spec"]["routing"]["policy"], "LeastOutstanding");
}

TEST(ApplyDefaultsTest, OtherKinds) {
  json rep = ValidReplica();
  rep.erase("status");
  Reg().ApplyDefaults("Replica", rep);
  EXPECT_EQ(rep["status"]["phase"], "Pending");

  json node = ValidNode();
  node.erase("spec");
  Reg().ApplyDefaults("Node", node);
  EXPECT_EQ(node["spec"]["unschedulable"], false);

  json model = ValidModel();
  model["spec"]["sim"] = json::object();
  Reg().ApplyDefaults("Model", model);
  EXPECT_EQ(model["spec"]["sim"]["kvBlockTokens"], 16);
  // Lists of objects get their items defaulted.
  json md = MinimalDeployment();
  md["spec"]["placement"] = {{"tolerations", json::parse(R"([{"key": "a"}])")}};
  Reg().ApplyDefaults("ModelDeployment", md);
  EXPECT_EQ(md["spec"]["placement"]["tolerations"][0]["operator"], "Equal");

  json unknown = json::object();
  Reg().ApplyDefaults("Pod", unknown);
  EXPECT_EQ(unknown, json::object());
}

// ------------------------------------------------------------------ prune --

TEST(PruneTest, RemovesUnknownFieldsButNotMetadata) {
  json md = FullDeployment();
  md["spec"]["bogus"] = 1;
  md["spec"]["autoscaling"]["metrics"][0]["extra"] = true;
  md["top"] = 1;
  md["metadata"]["nmae"] = "typo";
  md["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"] = json::object();
  json expected = FullDeployment();
  expected["metadata"]["nmae"] = "typo";
  expected["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"] = json::object();

  auto removed = Reg().Prune("ModelDeployment", md);
  EXPECT_THAT(removed,
              UnorderedElementsAre("spec.bogus", "spec.autoscaling.metrics[0].extra", "top"));
  EXPECT_EQ(md, expected);
  // Idempotent.
  EXPECT_THAT(Reg().Prune("ModelDeployment", md), IsEmpty());
}

TEST(PruneTest, KeepsMapEntriesAndUnknownKinds) {
  json md = FullDeployment();
  md["spec"]["placement"]["nodeSelector"]["zone"] = "b";
  json before = md;
  EXPECT_THAT(Reg().Prune("ModelDeployment", md), IsEmpty());
  EXPECT_EQ(md, before);
  json x = {{"a", 1}};
  EXPECT_THAT(Reg().Prune("Pod", x), IsEmpty());
  EXPECT_EQ(x, json({{"a", 1}}));
}

// --------------------------------------------------------------- printing --

constexpr int64_t kJan1 = 1767225600;  // 2026-01-01T00:00:00Z

TEST(PrintingTest, HumanDurationMatchesKubernetes) {
  // k8s.io/apimachinery/pkg/util/duration TestHumanDuration and
  // TestHumanDurationBoundaries, at whole seconds.
  const int64_t m = 60, h = 3600, d = 24 * h, y = 365 * d;
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {1, "1s"},
      {70, "70s"},
      {190, "3m10s"},
      {70 * m, "70m"},
      {47 * h, "47h"},
      {49 * h, "2d1h"},
      {(8 * 24 + 2) * h, "8d"},
      {367 * d, "367d"},
      {2 * y + 25 * h, "2y1d"},
      {8 * y + 2 * h, "8y"},
      {-2, "<invalid>"},
      {-1, "0s"},
      {0, "0s"},
      {2 * m - 1, "119s"},
      {2 * m, "2m"},
      {2 * m + 1, "2m1s"},
      {10 * m - 1, "9m59s"},
      {10 * m, "10m"},
      {10 * m + 1, "10m"},
      {3 * h - 1, "179m"},
      {3 * h, "3h"},
      {3 * h + m, "3h1m"},
      {8 * h - 1, "7h59m"},
      {8 * h, "8h"},
      {8 * h + 59 * m, "8h"},
      {2 * d - 1, "47h"},
      {2 * d, "2d"},
      {2 * d + h, "2d1h"},
      {8 * d - 1, "7d23h"},
      {8 * d, "8d"},
      {8 * d + 23 * h, "8d"},
      {2 * y - 1, "729d"},
      {2 * y, "2y"},
      {2 * y + 23 * h + 59 * m, "2y"},
      {2 * y + d - 1, "2y"},
      {2 * y + d, "2y1d"},
      {3 * y, "3y"},
      {7 * y, "7y"},
      {8 * y - 1, "7y364d"},
      {8 * y, "8y"},
      {8 * y + 364 * d, "8y"},
      {9 * y, "9y"},
  };
  for (const auto& [seconds, want] : cases) EXPECT_EQ(HumanDuration(seconds), want) << seconds;
}

TEST(PrintingTest, EveryKindHasAlignedCells) {
  const std::vector<std::pair<std::string, json>> objects = {
      {"ModelDeployment", FullDeployment()},
      {"ModelDeployment", MinimalDeployment()},
      {"Model", ValidModel()},
      {"Node", ValidNode()},
      {"Replica", ValidReplica()},
      {"Event", ValidEvent()},
      {"Lease", ValidLease()},
      {"Pod", json::object()}};
  for (const auto& [kind, obj] : objects) {
    SCOPED_TRACE(kind);
    auto cols = Reg().Columns(kind);
    auto cells = Reg().Cells(kind, obj, kJan1);
    ASSERT_TRUE(cells.is_array());
    EXPECT_EQ(cells.size(), cols.size());
    int name_columns = 0;
    for (const auto& c : cols) {
      if (c.format == "name") ++name_columns;
      EXPECT_FALSE(c.description.empty()) << c.name;
    }
    EXPECT_EQ(name_columns, 1);
    if (kind != "Event") {
      EXPECT_EQ(cols[0].name, "Name");
      EXPECT_EQ(cols[0].format, "name");
    }
  }
}

std::vector<std::string> Names(const std::vector<PrinterColumn>& cols, int priority) {
  std::vector<std::string> out;
  for (const auto& c : cols) {
    if (c.priority == priority) out.push_back(c.name);
  }
  return out;
}

TEST(PrintingTest, ModelDeploymentLikeKubectlGetHpa) {
  auto cols = Reg().Columns("ModelDeployment");
  EXPECT_THAT(Names(cols, 0),
              ElementsAre("Name", "Ready", "Desired", "Min", "Max", "Model", "Age"));
  EXPECT_THAT(Names(cols, 1), ElementsAre("Targets", "Policy", "Served Name"));
  EXPECT_EQ(cols[6].type, "date");

  auto cells = Reg().Cells("ModelDeployment", FullDeployment(), kJan1 + 5 * 60);
  EXPECT_EQ(cells, json::parse(R"(["chat", "2/3", 3, 1, 10, "llama", "5m",
      "Concurrency: 6.5/8, TimeToFirstToken: <unknown>/0.5", "PrefixAffinity", "llama-chat"])"));

  // Without autoscaling: desired is spec.replicas (default 1), Min/Max <none>.
  json md = MinimalDeployment();
  cells = Reg().Cells("ModelDeployment", md, kJan1);
  EXPECT_EQ(cells, json::parse(R"(["chat", "0/1", 1, "<none>", "<none>", "llama", "<unknown>",
      "<none>", "<none>", "chat"])"));
  // Autoscaling switched off keeps its settings but prints as off.
  md = FullDeployment();
  md["spec"]["autoscaling"]["enabled"] = false;
  cells = Reg().Cells("ModelDeployment", md, kJan1);
  EXPECT_EQ(cells[2], 2);
  EXPECT_EQ(cells[3], "<none>");
}

TEST(PrintingTest, NodeStatusMemoryAndEngines) {
  json node = ValidNode();
  auto cols = Reg().Columns("Node");
  EXPECT_THAT(Names(cols, 0), ElementsAre("Name", "Status", "GPUs", "Memory", "Replicas", "Age"));
  EXPECT_THAT(Names(cols, 1), ElementsAre("Address", "Engines"));
  EXPECT_EQ(Reg().Cells("Node", node, kJan1 + 3 * 86400 + 3600),
            json::parse(R"(["gpu-1", "Ready", 2, "64Gi", 3, "3d1h", "http://10.0.0.5:8081",
                             "sim/1,llamacpp/b5000"])"));
  node["spec"]["unschedulable"] = true;
  node["status"]["conditions"][0]["status"] = "False";
  node["status"]["allocatable"]["memoryBytes"] = 1536 * 1024 * 1024LL;
  auto cells = Reg().Cells("Node", node, kJan1);
  EXPECT_EQ(cells[1], "NotReady,SchedulingDisabled");
  EXPECT_EQ(cells[3], "1536Mi");
  node["status"].erase("conditions");
  node["status"].erase("allocatable");
  node["status"]["capacity"]["memoryBytes"] = 1000;
  cells = Reg().Cells("Node", node, kJan1);
  EXPECT_EQ(cells[1], "Unknown,SchedulingDisabled");
  EXPECT_EQ(cells[2], 2);  // capacity's GPUs when allocatable is absent
  EXPECT_EQ(cells[3], "1000");
}

TEST(PrintingTest, ReplicaModelLease) {
  EXPECT_EQ(Reg().Cells("Replica", ValidReplica(), kJan1 + 30),
            json::parse(R"(["chat-abc", "Loading", "gpu-1", "30s", "25%", "<none>", "chat", ""])"));
  json rep = ValidReplica();
  rep["spec"].erase("nodeName");
  rep.erase("status");
  auto cells = Reg().Cells("Replica", rep, kJan1);
  EXPECT_EQ(cells[1], "Pending");
  EXPECT_EQ(cells[2], "<none>");

  EXPECT_THAT(Names(Reg().Columns("Model"), 0), ElementsAre("Name", "Engine", "Source", "Age"));
  EXPECT_EQ(Reg().Cells("Model", ValidModel(), kJan1),
            json::parse(R"(["llama", "llamacpp", "file:///models/llama.gguf", "<unknown>", "8Gi",
                             "0", 4096])"));
  EXPECT_THAT(Names(Reg().Columns("Lease"), 0), ElementsAre("Name", "Holder", "Age"));
  EXPECT_EQ(Reg().Cells("Lease", ValidLease(), kJan1)[1], "gpu-1");
}

TEST(PrintingTest, EventsLikeKubectlGetEvents) {
  auto cols = Reg().Columns("Event");
  EXPECT_THAT(Names(cols, 0), ElementsAre("Last Seen", "Type", "Reason", "Object", "Message"));
  EXPECT_THAT(Names(cols, 1), ElementsAre("Subobject", "Source", "First Seen", "Count", "Name"));
  EXPECT_EQ(Reg().Cells("Event", ValidEvent(), kJan1 + 15 * 60),
            json::parse(R"(["5m", "Normal", "ScaledUp", "modeldeployment/chat", "",
                             "corral-autoscaler, srv-1", "scale up 3->6", "15m", 3, "chat.1"])"));
  // New-style event: eventTime and series, no count.
  json ev = ValidEvent();
  ev.erase("firstTimestamp");
  ev.erase("lastTimestamp");
  ev.erase("count");
  ev.erase("source");
  ev["eventTime"] = "2026-01-01T00:00:00.000001Z";
  auto cells = Reg().Cells("Event", ev, kJan1 + 60);
  EXPECT_EQ(cells[0], "60s");
  EXPECT_EQ(cells[5], "corral.dev/autoscaler, srv-1");
  EXPECT_EQ(cells[8], 1);
  ev["series"] = {{"count", 7}, {"lastObservedTime", "2026-01-01T00:00:50Z"}};
  cells = Reg().Cells("Event", ev, kJan1 + 60);
  EXPECT_EQ(cells[0], "10s");
  EXPECT_EQ(cells[8], 7);
}

// ---------------------------------------------------------------- openapi --

// Every "$ref" in `doc` points at an existing entry of `defs` (by the prefix).
void ExpectRefsResolve(const json& node, const json& defs, const std::string& prefix) {
  if (node.is_object()) {
    if (auto ref = node.find("$ref"); ref != node.end()) {
      const std::string r = ref->get<std::string>();
      ASSERT_EQ(r.rfind(prefix, 0), 0u) << r;
      EXPECT_TRUE(defs.contains(r.substr(prefix.size()))) << r;
    }
    for (const auto& [k, v] : node.items()) ExpectRefsResolve(v, defs, prefix);
  } else if (node.is_array()) {
    for (const auto& v : node) ExpectRefsResolve(v, defs, prefix);
  }
}

bool HasParam(const json& op, const std::string& name) {
  if (!op.contains("parameters")) return false;
  for (const auto& p : op["parameters"]) {
    if (p["name"] == name) return true;
  }
  return false;
}

TEST(OpenApiV3Test, CorralGroupDocument) {
  json doc = Reg().OpenApiV3("corral.dev", "v1alpha1");
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["openapi"], "3.0.0");
  const json& schemas = doc["components"]["schemas"];
  ExpectRefsResolve(doc, schemas, "#/components/schemas/");

  const json& paths = doc["paths"];
  const std::string item = "/apis/corral.dev/v1alpha1/namespaces/{namespace}/models/{name}";
  ASSERT_TRUE(paths.contains(item));
  const json& patch = paths[item]["patch"];
  // An object on operations.
  EXPECT_EQ(patch["x-kubernetes-group-version-kind"],
            json({{"group", "corral.dev"}, {"version", "v1alpha1"}, {"kind", "Model"}}));
  EXPECT_TRUE(HasParam(patch, "fieldValidation"));
  EXPECT_TRUE(HasParam(patch, "fieldManager"));
  EXPECT_TRUE(HasParam(patch, "dryRun"));
  EXPECT_TRUE(HasParam(patch, "force"));
  std::set<std::string> content;
  for (const auto& [type, v] : patch["requestBody"]["content"].items()) content.insert(type);
  EXPECT_THAT(content,
              UnorderedElementsAre("application/json-patch+json", "application/merge-patch+json",
                                   "application/apply-patch+yaml"));
  EXPECT_EQ(patch["operationId"], "patchCorralDevV1alpha1NamespacedModel");
  for (const char* method : {"put", "post"}) {
    const json& op = method == std::string("put")
                         ? paths[item]["put"]
                         : paths["/apis/corral.dev/v1alpha1/namespaces/{namespace}/models"]["post"];
    EXPECT_TRUE(HasParam(op, "fieldValidation")) << method;
    EXPECT_TRUE(HasParam(op, "dryRun")) << method;
  }
  // No strategic merge patch anywhere in the document.
  EXPECT_EQ(doc.dump().find("strategic-merge-patch"), std::string::npos);

  // Cluster-scoped Node; ModelDeployment's scale subresource; cross-namespace lists.
  EXPECT_TRUE(paths.contains("/apis/corral.dev/v1alpha1/nodes/{name}/status"));
  EXPECT_FALSE(paths.contains("/apis/corral.dev/v1alpha1/namespaces/{namespace}/nodes"));
  const std::string scale =
      "/apis/corral.dev/v1alpha1/namespaces/{namespace}/modeldeployments/{name}/scale";
  ASSERT_TRUE(paths.contains(scale));
  EXPECT_EQ(paths[scale]["patch"]["x-kubernetes-group-version-kind"],
            json({{"group", "autoscaling"}, {"version", "v1"}, {"kind", "Scale"}}));
  EXPECT_TRUE(paths.contains("/apis/corral.dev/v1alpha1/replicas"));
  EXPECT_TRUE(paths["/apis/corral.dev/v1alpha1/namespaces/{namespace}/replicas"]["get"].contains(
      "x-kubernetes-group-version-kind"));

  // Every kind of the group and its List, with GVK lists.
  for (const char* kind : {"Node", "Model", "ModelDeployment", "Replica"}) {
    const std::string name = std::string("dev.corral.v1alpha1.") + kind;
    ASSERT_TRUE(schemas.contains(name)) << name;
    EXPECT_EQ(schemas[name]["x-kubernetes-group-version-kind"],
              json::array({{{"group", "corral.dev"}, {"version", "v1alpha1"}, {"kind", kind}}}));
    EXPECT_TRUE(schemas[name]["properties"].contains("spec"));
    ASSERT_TRUE(schemas.contains(name + "List"));
    EXPECT_EQ(schemas[name + "List"]["x-kubernetes-group-version-kind"][0]["kind"],
              std::string(kind) + "List");
  }
  EXPECT_FALSE(schemas.contains("io.k8s.api.core.v1.Event"));  // another group's document
  for (const char* meta : {"ObjectMeta", "ListMeta", "Status", "ManagedFieldsEntry",
                           "OwnerReference", "Time", "WatchEvent", "DeleteOptions"}) {
    EXPECT_TRUE(schemas.contains(std::string("io.k8s.apimachinery.pkg.apis.meta.v1.") + meta))
        << meta;
  }
  EXPECT_TRUE(schemas.contains("io.k8s.api.autoscaling.v1.Scale"));
  // metadata points at ObjectMeta (allOf, so the description can sit beside it).
  EXPECT_EQ(schemas["dev.corral.v1alpha1.Model"]["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
  // explain shows the same descriptions the schema has.
  EXPECT_EQ(schemas["dev.corral.v1alpha1.ModelDeployment"]["properties"]["spec"]["properties"]
                   ["autoscaling"]["properties"]["behavior"]["properties"]["scaleDown"]
                   ["properties"]["stabilizationWindowSeconds"]["default"],
            300);
}

TEST(OpenApiV3Test, CoreAndCoordinationDocuments) {
  json core = Reg().OpenApiV3("", "v1");
  ASSERT_TRUE(core.is_object());
  ExpectRefsResolve(core, core["components"]["schemas"], "#/components/schemas/");
  const json& ev_paths = core["paths"]["/api/v1/namespaces/{namespace}/events/{name}"];
  EXPECT_EQ(ev_paths["patch"]["x-kubernetes-group-version-kind"],
            json({{"group", ""}, {"version", "v1"}, {"kind", "Event"}}));
  EXPECT_EQ(ev_paths["get"]["operationId"], "readCoreV1NamespacedEvent");
  EXPECT_TRUE(core["paths"].contains("/api/v1/events"));
  EXPECT_EQ(core["components"]["schemas"]["io.k8s.api.core.v1.Event"]
                ["x-kubernetes-group-version-kind"][0],
            json({{"group", ""}, {"version", "v1"}, {"kind", "Event"}}));
  EXPECT_FALSE(core["components"]["schemas"].contains("io.k8s.api.autoscaling.v1.Scale"));

  json coord = Reg().OpenApiV3("coordination.k8s.io", "v1");
  ASSERT_TRUE(coord.is_object());
  EXPECT_TRUE(coord["components"]["schemas"].contains("io.k8s.api.coordination.v1.Lease"));
  EXPECT_TRUE(
      coord["paths"].contains("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"));

  EXPECT_TRUE(Reg().OpenApiV3("corral.dev", "v1").is_null());
  EXPECT_TRUE(Reg().OpenApiV3("apps", "v1").is_null());
}

TEST(OpenApiV3Test, IndexNamesEveryGroupVersionWithAStableHash) {
  json index = Reg().OpenApiV3Index();
  std::set<std::string> gvs;
  for (const auto& [gv, v] : index["paths"].items()) gvs.insert(gv);
  EXPECT_THAT(gvs, UnorderedElementsAre("api/v1", "apis/corral.dev/v1alpha1",
                                        "apis/coordination.k8s.io/v1"));
  const std::string url = index["paths"]["apis/corral.dev/v1alpha1"]["serverRelativeURL"];
  EXPECT_EQ(url.rfind("/openapi/v3/apis/corral.dev/v1alpha1?hash=", 0), 0u) << url;
  EXPECT_EQ(url.size(), std::string("/openapi/v3/apis/corral.dev/v1alpha1?hash=").size() + 64);
  EXPECT_EQ(Reg().OpenApiV3Index(), index);  // stable
  EXPECT_NE(index["paths"]["api/v1"]["serverRelativeURL"].get<std::string>().substr(
                std::string("/openapi/v3/api/v1?hash=").size()),
            url.substr(url.size() - 64));
}

void ExpectNoKey(const json& node, const std::string& key, const std::string& path = "") {
  if (node.is_object()) {
    for (const auto& [k, v] : node.items()) {
      if (k == key) ADD_FAILURE() << key << " at " << path;
      ExpectNoKey(v, key, path + "." + k);
    }
  } else if (node.is_array()) {
    for (const auto& v : node) ExpectNoKey(v, key, path + "[]");
  }
}

TEST(OpenApiV2Test, SwaggerDocumentForOldKubectl) {
  json doc = Reg().OpenApiV2();
  EXPECT_EQ(doc["swagger"], "2.0");
  const json& defs = doc["definitions"];
  ExpectRefsResolve(doc, defs, "#/definitions/");
  // kubectl 1.20 finds definitions by GVK list: every kind and List carries it.
  for (const auto& r : Reg().Resources()) {
    const std::string name = Reg().OpenApiName(r.kind);
    ASSERT_TRUE(defs.contains(name)) << name;
    ASSERT_TRUE(defs.contains(name + "List")) << name;
    EXPECT_EQ(defs[name]["x-kubernetes-group-version-kind"],
              json::array({{{"group", r.group}, {"version", r.version}, {"kind", r.kind}}}));
    EXPECT_EQ(defs[name + "List"]["x-kubernetes-group-version-kind"][0]["kind"], r.list_kind);
  }
  EXPECT_EQ(defs["dev.corral.v1alpha1.Replica"]["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
  // Swagger 2.0 has no nullable; nullable fields lose their type instead.
  ExpectNoKey(doc, "nullable");
  EXPECT_FALSE(defs["io.k8s.api.core.v1.Event"]["properties"]["eventTime"].contains("type"));
  EXPECT_EQ(defs["io.k8s.api.core.v1.Event"]["properties"]["reason"]["type"], "string");
  EXPECT_EQ(doc.dump().find("strategic-merge-patch"), std::string::npos);

  const json& item =
      doc["paths"]["/apis/corral.dev/v1alpha1/namespaces/{namespace}/modeldeployments/{name}"];
  EXPECT_THAT(item["patch"]["consumes"],
              UnorderedElementsAre("application/json-patch+json", "application/merge-patch+json",
                                   "application/apply-patch+yaml"));
  EXPECT_TRUE(HasParam(item["patch"], "fieldValidation"));
  EXPECT_TRUE(HasParam(item["put"], "body"));
  EXPECT_EQ(item["patch"]["x-kubernetes-group-version-kind"]["kind"], "ModelDeployment");
  // v2 parameters carry their type inline (no v3 "schema").
  for (const auto& p : item["patch"]["parameters"]) {
    if (p["in"] == "query") {
      EXPECT_TRUE(p.contains("type")) << p.dump();
    }
  }
  EXPECT_TRUE(doc["paths"].contains("/api/v1/namespaces/{namespace}/events"));
}

// ------------------------------------------------------------------- docs --

// Field paths of a schema: "spec.autoscaling.behavior.scaleUp.policies[].value".
void FieldPaths(const json& schema, const std::string& path, std::vector<std::string>& out) {
  if (auto props = schema.find("properties"); props != schema.end()) {
    for (const auto& [name, sub] : props->items()) {
      const std::string p = path.empty() ? name : path + "." + name;
      if (path.empty() && (name == "metadata" || name == "apiVersion" || name == "kind")) continue;
      out.push_back(p);
      FieldPaths(sub, p, out);
    }
  }
  if (auto items = schema.find("items"); items != schema.end())
    FieldPaths(*items, path + "[]", out);
}

TEST(DocsTest, ApiReferenceMentionsEveryField) {
  const auto doc_path =
      std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "docs" / "api.md";
  std::ifstream in(doc_path);
  ASSERT_TRUE(in.good()) << doc_path;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  for (const auto& r : Reg().Resources()) {
    // The kind's own section: from its "## Kind" heading to the next "## ".
    const size_t start = doc.find("\n## " + r.kind + "\n");
    ASSERT_NE(start, std::string::npos) << "no section ## " << r.kind;
    const size_t end = doc.find("\n## ", start + 1);
    const std::string section = doc.substr(start, end == std::string::npos ? end : end - start);
    std::vector<std::string> paths;
    FieldPaths(*Reg().KindSchema(r.kind), "", paths);
    ASSERT_FALSE(paths.empty()) << r.kind;
    for (const auto& p : paths) {
      EXPECT_NE(section.find("`" + p + "`"), std::string::npos)
          << r.kind << " field `" << p << "` is not documented in docs/api.md";
    }
  }
}

TEST(SchemaValidate, LongValuesAgainstPatternsAreRefusedNotMatched) {
  const auto& reg = SchemaRegistry::Default();
  nlohmann::json md = {
      {"apiVersion", "corral.dev/v1alpha1"},
      {"kind", "ModelDeployment"},
      {"metadata", {{"name", "x"}}},
      {"spec",
       {{"modelRef", {{"name", "m"}}},
        {"strategy", {{"rollingUpdate", {{"maxSurge", std::string(1 << 20, '1') + "%"}}}}}}}};
  auto r = reg.Validate("ModelDeployment", md);  // must not overflow the stack
  EXPECT_FALSE(r.errors.empty());
  nlohmann::json ev = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"name", "e"}}},
      {"involvedObject", {{"kind", "Model"}, {"name", "m"}}},
      {"firstTimestamp", "2026-01-01T00:00:00." + std::string(1 << 20, '1') + "Z"}};
  auto e = reg.Validate("Event", ev);
  EXPECT_FALSE(e.errors.empty());
}

}  // namespace
}  // namespace corral::api
