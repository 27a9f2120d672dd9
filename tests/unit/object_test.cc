#include "store/object.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

namespace corral::store {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json Model(const std::string& name, const std::string& ns = "default") {
  json o = {{"apiVersion", "corral.dev/v1alpha1"},
            {"kind", "Model"},
            {"metadata", {{"name", name}}},
            {"spec", {{"engine", "sim"}}}};
  if (!ns.empty()) o["metadata"]["namespace"] = ns;
  return o;
}

bool HasCause(const common::Status& s, const std::string& field) {
  for (const auto& c : s.causes()) {
    if (c.field == field) return true;
  }
  return false;
}

class ValidateObjectTest : public ::testing::Test {
 protected:
  KindRegistry kinds_ = KindRegistry::Default();
};

TEST_F(ValidateObjectTest, AcceptsValidObjectAndReturnsKey) {
  auto key = ValidateObject(kinds_, Model("llama-3.1"), kDefaultMaxObjectBytes);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->kind, "Model");
  EXPECT_EQ(key->ns, "default");
  EXPECT_EQ(key->name, "llama-3.1");
}

TEST_F(ValidateObjectTest, RejectsInvalidName) {
  auto r = ValidateObject(kinds_, Model("Bad_Name"), kDefaultMaxObjectBytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), common::Code::kInvalidArgument);
  EXPECT_TRUE(HasCause(r.status(), "metadata.name"));
  EXPECT_THAT(r.status().message(), HasSubstr("Bad_Name"));
}

TEST_F(ValidateObjectTest, RejectsUnknownKind) {
  json o = Model("a");
  o["kind"] = "Pod";
  auto r = ValidateObject(kinds_, o, kDefaultMaxObjectBytes);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(HasCause(r.status(), "kind"));
  EXPECT_THAT(r.status().message(), HasSubstr("unknown kind \"Pod\""));
}

TEST_F(ValidateObjectTest, RejectsWrongApiVersion) {
  json o = Model("a");
  o["apiVersion"] = "corral.dev/v2";
  auto r = ValidateObject(kinds_, o, kDefaultMaxObjectBytes);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(HasCause(r.status(), "apiVersion"));
}

TEST_F(ValidateObjectTest, NamespaceRules) {
  json node = {{"apiVersion", "corral.dev/v1alpha1"},
               {"kind", "Node"},
               {"metadata", {{"name", "gpu-1"}, {"namespace", "default"}}}};
  auto r = ValidateObject(kinds_, node, kDefaultMaxObjectBytes);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(HasCause(r.status(), "metadata.namespace"));
  EXPECT_THAT(r.status().message(), HasSubstr("cluster-scoped"));
  node["metadata"].erase("namespace");
  EXPECT_TRUE(ValidateObject(kinds_, node, kDefaultMaxObjectBytes).ok());

  auto missing = ValidateObject(kinds_, Model("a", ""), kDefaultMaxObjectBytes);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(HasCause(missing.status(), "metadata.namespace"));
  auto bad_ns = ValidateObject(kinds_, Model("a", "Not.A.Label"), kDefaultMaxObjectBytes);
  ASSERT_FALSE(bad_ns.ok());
  EXPECT_TRUE(HasCause(bad_ns.status(), "metadata.namespace"));
}

TEST_F(ValidateObjectTest, ReportsEveryProblemAtOnce) {
  json o = {{"kind", "Model"},
            {"metadata", {{"name", "UPPER"}, {"labels", {{"a", 1}}}}},
            {"spec", "not-an-object"}};
  auto r = ValidateObject(kinds_, o, kDefaultMaxObjectBytes);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(HasCause(r.status(), "apiVersion"));
  EXPECT_TRUE(HasCause(r.status(), "metadata.name"));
  EXPECT_TRUE(HasCause(r.status(), "metadata.namespace"));
  EXPECT_TRUE(HasCause(r.status(), "spec"));
  EXPECT_GE(r.status().causes().size(), 5u);
}

TEST_F(ValidateObjectTest, RejectsOversizedObject) {
  json o = Model("big");
  o["spec"]["blob"] = std::string(2048, 'x');
  EXPECT_TRUE(ValidateObject(kinds_, o, 4096).ok());
  auto r = ValidateObject(kinds_, o, 1024);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("over the limit of 1024"));
}

TEST_F(ValidateObjectTest, RejectsNonObjects) {
  EXPECT_FALSE(ValidateObject(kinds_, json::array(), 1024).ok());
  EXPECT_FALSE(ValidateObject(kinds_, json("x"), 1024).ok());
}

TEST(ParseObjectJsonTest, MalformedAndOversized) {
  auto bad = ParseObjectJson("{\"kind\": ", 1024);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), common::Code::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("malformed JSON"));
  auto big = ParseObjectJson(std::string(2000, ' '), 1000);
  ASSERT_FALSE(big.ok());
  EXPECT_THAT(big.status().message(), HasSubstr("over the limit"));
  EXPECT_TRUE(ParseObjectJson("{}", 1000).ok());
}

TEST(ValidateKeyTest, KindAndNamespace) {
  const auto kinds = KindRegistry::Default();
  EXPECT_TRUE(ValidateKey(kinds, {"Model", "default", "a"}).ok());
  EXPECT_FALSE(ValidateKey(kinds, {"Model", "", "a"}).ok());
  EXPECT_FALSE(ValidateKey(kinds, {"Node", "default", "a"}).ok());
  EXPECT_FALSE(ValidateKey(kinds, {"Nope", "", "a"}).ok());
}

TEST(UidTest, Version4AndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string uid = NewUid();
    ASSERT_EQ(uid.size(), 36u);
    EXPECT_EQ(uid[14], '4');
    EXPECT_TRUE(uid[19] == '8' || uid[19] == '9' || uid[19] == 'a' || uid[19] == 'b');
    EXPECT_TRUE(seen.insert(uid).second);
  }
}

TEST(SpecChangedTest, IgnoresMetadataAndStatus) {
  json a = Model("a");
  json b = a;
  b["metadata"]["labels"] = {{"x", "y"}};
  b["status"] = {{"phase", "Ready"}};
  EXPECT_FALSE(SpecChanged(a, b));
  b["spec"]["engine"] = "llamacpp";
  EXPECT_TRUE(SpecChanged(a, b));
}

TEST(ContinueTokenTest, RoundTripsAndRejectsGarbage) {
  ContinueToken t{12345, "team-a", "model/with?odd+chars"};
  const std::string enc = EncodeContinue(t);
  EXPECT_EQ(enc.find_first_of("+/="), std::string::npos);  // URL-safe
  auto dec = DecodeContinue(enc);
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(dec->revision, 12345);
  EXPECT_EQ(dec->ns, "team-a");
  EXPECT_EQ(dec->name, "model/with?odd+chars");
  for (const char* bad : {"", "!!!", "eyJ2IjoyfQ", "bm90IGpzb24"}) {
    auto r = DecodeContinue(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), common::Code::kInvalidArgument);
  }
}

TEST(KindRegistryTest, DefaultKinds) {
  const auto kinds = KindRegistry::Default();
  const KindInfo* md = kinds.Find("ModelDeployment");
  ASSERT_NE(md, nullptr);
  EXPECT_EQ(md->ApiVersion(), "corral.dev/v1alpha1");
  EXPECT_EQ(md->Resource(), "modeldeployments.corral.dev");
  EXPECT_TRUE(md->namespaced);
  const KindInfo* ev = kinds.Find("Event");
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->ApiVersion(), "v1");
  EXPECT_FALSE(kinds.Find("Node")->namespaced);
  const auto fields = kinds.Find("Replica")->FieldSelectorFields();
  EXPECT_NE(std::find(fields.begin(), fields.end(), "spec.nodeName"), fields.end());
  EXPECT_EQ(kinds.Find("Pod"), nullptr);
}

}  // namespace
}  // namespace corral::store
