#include "store/validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace corral::store {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr char kSubdomainMessage[] =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character";
constexpr char kLabelMessage[] =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character";

TEST(Dns1123LabelTest, Valid) {
  for (const std::string& s :
       std::vector<std::string>{"a", "0", "abc-123", "a--b", "1abc", std::string(63, 'a')}) {
    EXPECT_EQ(CheckDns1123Label(s), "") << s;
  }
}

TEST(Dns1123LabelTest, Invalid) {
  for (const std::string& s :
       std::vector<std::string>{"", "A", "abC", "-a", "a-", "a.b", "a_b", "a b", "é"}) {
    EXPECT_EQ(CheckDns1123Label(s), kLabelMessage) << s;
  }
  EXPECT_EQ(CheckDns1123Label(std::string(64, 'a')), "must be no more than 63 characters");
  // Both problems are reported.
  std::string both = CheckDns1123Label(std::string(64, 'A'));
  EXPECT_THAT(both, HasSubstr("must be no more than 63 characters"));
  EXPECT_THAT(both, HasSubstr(kLabelMessage));
}

TEST(Dns1123SubdomainTest, Valid) {
  for (const std::string& s :
       std::vector<std::string>{"a", "example.com", "a-b.c-d.e", "0.1", std::string(253, 'a'),
                                std::string(100, 'a') + ".b"}) {
    EXPECT_EQ(CheckDns1123Subdomain(s), "") << s;
  }
  std::string dotted;  // 253 characters of 1-char labels and dots
  while (dotted.size() < 251) dotted += "a.";
  dotted += "a";
  ASSERT_EQ(dotted.size(), 253u);
  EXPECT_EQ(CheckDns1123Subdomain(dotted), "");
}

TEST(Dns1123SubdomainTest, Invalid) {
  for (const std::string& s :
       std::vector<std::string>{"", "Example.com", "EXAMPLE", "a..b", ".a", "a.", "-a.b", "a.-b",
                                "a-.b", "a_b", "a/b", "a b"}) {
    EXPECT_EQ(CheckDns1123Subdomain(s), kSubdomainMessage) << s;
  }
  EXPECT_EQ(CheckDns1123Subdomain(std::string(254, 'a')), "must be no more than 253 characters");
}

TEST(LabelKeyTest, Valid) {
  for (const std::string& s :
       std::vector<std::string>{"app", "App_Name.v1", "a", "A", "9", "a-b_c.d", "example.com/app",
                                "a/b", "app.kubernetes.io/name", std::string(63, 'n'),
                                std::string(253, 'p') + "/" + std::string(63, 'n')}) {
    EXPECT_EQ(CheckLabelKey(s), "") << s;
  }
}

TEST(LabelKeyTest, InvalidName) {
  EXPECT_EQ(CheckLabelKey(""), "name part must be non-empty");
  EXPECT_EQ(CheckLabelKey("example.com/"), "name part must be non-empty");
  EXPECT_EQ(CheckLabelKey(std::string(64, 'n')), "name part must be no more than 63 characters");
  EXPECT_EQ(CheckLabelKey("example.com/" + std::string(64, 'n')),
            "name part must be no more than 63 characters");
  for (const std::string& s :
       std::vector<std::string>{"_app", "app-", ".app", "a b", "a$b", "a:b"}) {
    EXPECT_EQ(CheckLabelKey(s),
              "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
              "and end with an alphanumeric character")
        << s;
  }
}

TEST(LabelKeyTest, InvalidPrefix) {
  EXPECT_EQ(CheckLabelKey("/app"), "prefix part must be non-empty");
  EXPECT_EQ(CheckLabelKey("Example.com/app"), std::string("prefix part ") + kSubdomainMessage);
  EXPECT_EQ(CheckLabelKey("ex_ample.com/app"), std::string("prefix part ") + kSubdomainMessage);
  EXPECT_EQ(CheckLabelKey(std::string(254, 'p') + "/app"),
            "prefix part must be no more than 253 characters");
  EXPECT_THAT(CheckLabelKey("a/b/c"), HasSubstr("a qualified name must consist of"));
  // Prefix and name problems are both reported.
  std::string both = CheckLabelKey("/-x");
  EXPECT_THAT(both, HasSubstr("prefix part must be non-empty"));
  EXPECT_THAT(both, HasSubstr("name part must consist"));
}

TEST(LabelValueTest, Valid) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "A_b.c-D", "123", std::string(63, 'v')}) {
    EXPECT_EQ(CheckLabelValue(s), "") << s;
  }
}

TEST(LabelValueTest, Invalid) {
  const std::string message =
      "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
      "'.', and must start and end with an alphanumeric character";
  for (const std::string& s :
       std::vector<std::string>{"-a", "a-", "_", ".", "a b", "a/b", "a=b", " "}) {
    EXPECT_EQ(CheckLabelValue(s), message) << s;
  }
  EXPECT_EQ(CheckLabelValue(std::string(64, 'v')), "must be no more than 63 characters");
}

std::vector<Cause> Validate(const json& metadata) {
  std::vector<Cause> causes;
  ValidateLabelsAndAnnotations(metadata, causes);
  return causes;
}

// The fields of `causes`, sorted (JSON objects iterate in key order anyway, but
// the tests should not depend on it).
std::vector<std::string> Fields(const std::vector<Cause>& causes) {
  std::vector<std::string> fields;
  for (const Cause& c : causes) fields.push_back(c.field);
  std::sort(fields.begin(), fields.end());
  return fields;
}

TEST(ValidateLabelsAndAnnotationsTest, ValidMetadata) {
  EXPECT_EQ(Fields(Validate(json::object())), std::vector<std::string>{});
  EXPECT_EQ(Fields(Validate(json{{"name", "x"}})), std::vector<std::string>{});
  EXPECT_EQ(Fields(Validate(json{{"labels", nullptr}, {"annotations", nullptr}})),
            std::vector<std::string>{});
  EXPECT_EQ(Fields(Validate(json{{"labels", json::object()}, {"annotations", json::object()}})),
            std::vector<std::string>{});
  EXPECT_EQ(
      Fields(Validate(json{{"labels", {{"app", "web"}, {"example.com/tier", ""}}},
                           {"annotations",
                            {{"kubectl.kubernetes.io/last-applied-configuration", "{\"a\": 1}"},
                             {"note", "free text, with spaces / and = signs"}}}})),
      std::vector<std::string>{});
  // Not an object: nothing to check here.
  EXPECT_EQ(Fields(Validate(json())), std::vector<std::string>{});
}

TEST(ValidateLabelsAndAnnotationsTest, AppendsToExistingCauses) {
  std::vector<Cause> causes = {{"metadata.name", "earlier"}};
  ValidateLabelsAndAnnotations(json{{"labels", {{"-bad", "x"}}}}, causes);
  ASSERT_EQ(causes.size(), 2u);
  EXPECT_EQ(causes[0].field, "metadata.name");
  EXPECT_EQ(causes[1].field, "metadata.labels[-bad]");
}

TEST(ValidateLabelsAndAnnotationsTest, LabelProblems) {
  std::vector<Cause> causes = Validate(json{{"labels",
                                             {{"app/x", "ok"},
                                              {"Bad Key", "v"},
                                              {"good", "bad value"},
                                              {"num", 3},
                                              {"Example.com/k", "v"}}}});
  EXPECT_EQ(Fields(causes),
            (std::vector<std::string>{"metadata.labels[Bad Key]", "metadata.labels[Example.com/k]",
                                      "metadata.labels[good]", "metadata.labels[num]"}));
  for (const Cause& c : causes) {
    if (c.field == "metadata.labels[Bad Key]") {
      EXPECT_THAT(c.message, HasSubstr("invalid key: name part must consist"));
    }
    if (c.field == "metadata.labels[good]") {
      EXPECT_THAT(c.message, HasSubstr(R"(invalid value "bad value": a valid label)"));
    }
    if (c.field == "metadata.labels[num]") {
      EXPECT_THAT(c.message, HasSubstr("must be a string"));
    }
    if (c.field == "metadata.labels[Example.com/k]") {
      EXPECT_THAT(c.message, HasSubstr("prefix part"));
    }
  }
}

TEST(ValidateLabelsAndAnnotationsTest, LabelValueLength) {
  EXPECT_EQ(Fields(Validate(json{{"labels", {{"k", std::string(63, 'v')}}}})),
            std::vector<std::string>{});
  std::vector<Cause> causes = Validate(json{{"labels", {{"k", std::string(64, 'v')}}}});
  ASSERT_EQ(causes.size(), 1u);
  EXPECT_EQ(causes[0].field, "metadata.labels[k]");
  EXPECT_THAT(causes[0].message, HasSubstr("must be no more than 63 characters"));
}

TEST(ValidateLabelsAndAnnotationsTest, WrongTypes) {
  std::vector<Cause> causes = Validate(json{{"labels", json::array({"a"})}, {"annotations", "x"}});
  EXPECT_EQ(Fields(causes), (std::vector<std::string>{"metadata.annotations", "metadata.labels"}));
  for (const Cause& c : causes) EXPECT_THAT(c.message, HasSubstr("must be an object"));
}

TEST(ValidateLabelsAndAnnotationsTest, AnnotationKeysAndValues) {
  std::vector<Cause> causes =
      Validate(json{{"annotations", {{"-bad", "v"}, {"ok", 1}, {"a/b/c", "v"}, {"fine", ""}}}});
  EXPECT_EQ(Fields(causes),
            (std::vector<std::string>{"metadata.annotations[-bad]", "metadata.annotations[a/b/c]",
                                      "metadata.annotations[ok]"}));
  // Values are free text, and keys are checked lower-cased, as in Kubernetes.
  EXPECT_EQ(Fields(Validate(json{
                {"annotations",
                 {{"Example.COM/Key", "not a label value!"}, {"long", std::string(10000, 'x')}}}})),
            std::vector<std::string>{});
}

TEST(ValidateLabelsAndAnnotationsTest, AnnotationTotalSize) {
  constexpr std::size_t kLimit = 256 * 1024;
  // Keys count towards the limit: "a" + value == exactly the limit.
  EXPECT_EQ(Fields(Validate(json{{"annotations", {{"a", std::string(kLimit - 1, 'x')}}}})),
            std::vector<std::string>{});
  std::vector<Cause> causes =
      Validate(json{{"annotations", {{"a", std::string(kLimit - 2, 'x')}, {"bb", ""}}}});
  ASSERT_EQ(causes.size(), 1u);
  EXPECT_EQ(causes[0].field, "metadata.annotations");
  EXPECT_THAT(causes[0].message, HasSubstr("must have at most 262144 bytes"));
}

}  // namespace
}  // namespace corral::store
