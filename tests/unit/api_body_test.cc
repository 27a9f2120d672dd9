// Request-body parsing limits and Kubernetes Status error shapes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/body.h"
#include "api/errors.h"

namespace corral::api {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

TEST(JsonBody, ReportsLineAndColumnOfASyntaxError) {
  auto r = ParseJsonBody("{\n  \"a\": 1,\n  \"b\": ]\n}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), common::Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("line 3"));
}

TEST(JsonBody, RefusesDeepNesting) {
  std::string deep(100, '[');
  deep += std::string(100, ']');
  auto r = ParseJsonBody(deep, BodyLimits{64, 1000});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nested deeper than 64"));
  EXPECT_TRUE(ParseJsonBody(std::string(10, '[') + std::string(10, ']')).ok());
}

TEST(JsonBody, ReportsDuplicateKeysWithTheirPaths) {
  std::vector<std::string> dups;
  auto r =
      ParseJsonBody(R"({"spec":{"engine":"a","engine":"b","list":[{"x":1,"x":2}]}})", {}, &dups);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["spec"]["engine"], "b");
  EXPECT_EQ(dups, (std::vector<std::string>{"spec.engine", "spec.list[0].x"}));
  dups.clear();
  ASSERT_TRUE(ParseJsonBody(R"({"a":{"x":1},"b":{"x":1}})", {}, &dups).ok());
  EXPECT_TRUE(dups.empty());
}

TEST(YamlBody, ReportsDuplicateKeysAndDeepNesting) {
  std::vector<std::string> dups;
  auto r = ParseYamlBody("spec:\n  engine: a\n  engine: b\n", {}, &dups);
  if (r.ok()) {  // yaml-cpp may itself refuse duplicate keys; either way they are caught
    EXPECT_EQ(dups, (std::vector<std::string>{"spec.engine"}));
  }
  auto deep = ParseYamlBody("a: " + std::string(5000, '[') + std::string(5000, ']'));
  ASSERT_FALSE(deep.ok());
  EXPECT_THAT(deep.status().message(), HasSubstr("nested deeper"));
}

TEST(YamlBody, TypesPlainScalarsAndKeepsQuotedOnesAsStrings) {
  auto r = ParseYamlBody(
      "i: 42\nneg: -7\nf: 1.5\nt: true\nn: null\ntilde: ~\ns: hello\nq: \"42\"\nsq: 'true'\n"
      "ver: 1.2.3\nhex: 0x1F\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const json& j = *r;
  EXPECT_EQ(j["i"], 42);
  EXPECT_EQ(j["neg"], -7);
  EXPECT_DOUBLE_EQ(j["f"].get<double>(), 1.5);
  EXPECT_EQ(j["t"], true);
  EXPECT_TRUE(j["n"].is_null());
  EXPECT_TRUE(j["tilde"].is_null());
  EXPECT_EQ(j["s"], "hello");
  EXPECT_EQ(j["q"], "42");
  EXPECT_EQ(j["sq"], "true");
  EXPECT_EQ(j["ver"], "1.2.3");
  EXPECT_EQ(j["hex"], "0x1F");
}

TEST(YamlBody, HugeNumericScalarIsAStringNotACrash) {
  const std::string digits(1 << 20, '1');
  auto r = ParseYamlBody("x: " + digits + "\ny: 1e3\nz: .5\nw: 1.\nv: e3\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["x"], digits);
  EXPECT_DOUBLE_EQ((*r)["y"].get<double>(), 1000.0);
  EXPECT_DOUBLE_EQ((*r)["z"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ((*r)["w"].get<double>(), 1.0);
  EXPECT_EQ((*r)["v"], "e3");
}

TEST(YamlBody, JsonTextParsesTheSame) {
  const std::string text = R"({"a":[1,"2",{"b":null}],"c":false})";
  auto y = ParseYamlBody(text);
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(*y, json::parse(text));
}

TEST(YamlBody, RefusesAnAliasBombWithoutExpandingIt) {
  std::string bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n";
  const char* names = "abcdefghi";
  for (int i = 1; i < 9; ++i) {
    bomb += std::string(1, names[i]) + ": &" + names[i] + " [";
    for (int k = 0; k < 10; ++k) bomb += std::string(k ? "," : "") + "*" + names[i - 1];
    bomb += "]\n";
  }
  auto r = ParseYamlBody(bomb);  // 10^9 values if expanded
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("alias"));
}

TEST(YamlBody, ErrorsNameTheLine) {
  auto r = ParseYamlBody("a: 1\nb: [unclosed\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("line"));
  auto two = ParseYamlBody("a: 1\n---\nb: 2\n");
  ASSERT_FALSE(two.ok());
  EXPECT_THAT(two.status().message(), HasSubstr("exactly one YAML document"));
}

TEST(YamlBody, RefusesInvalidUtf8) {
  auto r = ParseYamlBody("a: \"\xff\xfe\"\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("UTF-8"));
}

TEST(StatusErrors, NotFoundAndAlreadyExistsUseKubernetesWording) {
  ErrorTarget t{"corral.dev", "models", "Model", "llama"};
  auto nf = json::parse(ErrorResponse(common::NotFound("x"), t).body);
  EXPECT_EQ(nf["kind"], "Status");
  EXPECT_EQ(nf["status"], "Failure");
  EXPECT_EQ(nf["reason"], "NotFound");
  EXPECT_EQ(nf["code"], 404);
  EXPECT_EQ(nf["message"], "models.corral.dev \"llama\" not found");
  EXPECT_EQ(nf["details"], (json{{"name", "llama"}, {"group", "corral.dev"}, {"kind", "models"}}));
  auto ae = ErrorResponse(common::AlreadyExists("x"), t);
  EXPECT_EQ(ae.status, 409);
  EXPECT_EQ(json::parse(ae.body)["message"], "models.corral.dev \"llama\" already exists");
}

TEST(StatusErrors, InvalidListsCausesWithFieldPaths) {
  ErrorTarget t{"corral.dev", "models", "Model", "llama"};
  common::Status s(
      common::Code::kInvalidArgument, "bad",
      {{"spec.engine", "Unsupported value: \"x\""}, {"spec.replicas", "Invalid value: -1"}});
  auto r = ErrorResponse(s, t);
  EXPECT_EQ(r.status, 422);
  auto j = json::parse(r.body);
  EXPECT_EQ(j["reason"], "Invalid");
  EXPECT_EQ(j["message"],
            "Model.corral.dev \"llama\" is invalid: [spec.engine: Unsupported value: \"x\", "
            "spec.replicas: Invalid value: -1]");
  ASSERT_EQ(j["details"]["causes"].size(), 2u);
  EXPECT_EQ(j["details"]["causes"][0]["field"], "spec.engine");
  EXPECT_EQ(j["details"]["causes"][0]["reason"], "FieldValueInvalid");
}

TEST(StatusErrors, RetryAfterOnOverloadAndUnavailable) {
  auto r = TooManyRequests("slow down", 3);
  EXPECT_EQ(r.status, 429);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Retry-After", "3"}));
  auto u = ErrorResponse(common::Unavailable("db down"),
                         ErrorTarget{"corral.dev", "models", "Model", ""});
  EXPECT_EQ(u.status, 503);
  EXPECT_EQ(u.headers.size(), 1u);
}

}  // namespace
}  // namespace corral::api
