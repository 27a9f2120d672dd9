#include "store/selector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace corral::store {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using Op = LabelRequirement::Op;

LabelSelector MustParseLabels(std::string_view text) {
  auto r = LabelSelector::Parse(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().ToString();
  return r.ok() ? *r : LabelSelector();
}

FieldSelector MustParseFields(std::string_view text) {
  auto r = FieldSelector::Parse(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().ToString();
  return r.ok() ? *r : FieldSelector();
}

// The error message for a label selector that must not parse.
std::string LabelError(std::string_view text) {
  auto r = LabelSelector::Parse(text);
  EXPECT_FALSE(r.ok()) << "parsed: " << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), common::Code::kInvalidArgument);
  return r.status().message();
}

std::string FieldError(std::string_view text) {
  auto r = FieldSelector::Parse(text);
  EXPECT_FALSE(r.ok()) << "parsed: " << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), common::Code::kInvalidArgument);
  return r.status().message();
}

// ---- LabelSelector parsing and matching

TEST(LabelSelectorTest, EmptyMatchesEverything) {
  for (std::string_view text : {"", "   ", "\t\n"}) {
    LabelSelector s = MustParseLabels(text);
    EXPECT_TRUE(s.empty());
    EXPECT_TRUE(s.Matches(json::object()));
    EXPECT_TRUE(s.Matches(json()));
    EXPECT_TRUE(s.Matches(json{{"a", "b"}}));
    EXPECT_EQ(s.ToString(), "");
  }
  EXPECT_TRUE(LabelSelector().empty());
  EXPECT_TRUE(LabelSelector().Matches(json{{"a", "b"}}));
}

TEST(LabelSelectorTest, Equals) {
  for (std::string_view text : {"app=web", "app==web"}) {
    LabelSelector s = MustParseLabels(text);
    ASSERT_EQ(s.requirements().size(), 1u);
    EXPECT_EQ(s.requirements()[0], (LabelRequirement{"app", Op::kEquals, {"web"}}));
    EXPECT_TRUE(s.Matches(json{{"app", "web"}, {"x", "y"}}));
    EXPECT_FALSE(s.Matches(json{{"app", "db"}}));
    EXPECT_FALSE(s.Matches(json{{"application", "web"}}));
    EXPECT_FALSE(s.Matches(json::object()));
    EXPECT_FALSE(s.Matches(json()));
    EXPECT_EQ(s.ToString(), "app=web");
  }
}

TEST(LabelSelectorTest, NotEqualsMatchesObjectsWithoutTheKey) {
  LabelSelector s = MustParseLabels("app!=web");
  ASSERT_EQ(s.requirements().size(), 1u);
  EXPECT_EQ(s.requirements()[0], (LabelRequirement{"app", Op::kNotEquals, {"web"}}));
  EXPECT_TRUE(s.Matches(json{{"app", "db"}}));
  EXPECT_FALSE(s.Matches(json{{"app", "web"}}));
  EXPECT_TRUE(s.Matches(json::object()));
  EXPECT_TRUE(s.Matches(json()));
  EXPECT_TRUE(s.Matches(json{{"other", "web"}}));
}

TEST(LabelSelectorTest, In) {
  LabelSelector s = MustParseLabels("env in (prod,staging)");
  ASSERT_EQ(s.requirements().size(), 1u);
  EXPECT_EQ(s.requirements()[0], (LabelRequirement{"env", Op::kIn, {"prod", "staging"}}));
  EXPECT_TRUE(s.Matches(json{{"env", "prod"}}));
  EXPECT_TRUE(s.Matches(json{{"env", "staging"}}));
  EXPECT_FALSE(s.Matches(json{{"env", "dev"}}));
  EXPECT_FALSE(s.Matches(json{{"env", ""}}));
  EXPECT_FALSE(s.Matches(json::object()));
}

TEST(LabelSelectorTest, NotInMatchesObjectsWithoutTheKey) {
  LabelSelector s = MustParseLabels("env notin (prod,staging)");
  ASSERT_EQ(s.requirements().size(), 1u);
  EXPECT_EQ(s.requirements()[0], (LabelRequirement{"env", Op::kNotIn, {"prod", "staging"}}));
  EXPECT_TRUE(s.Matches(json{{"env", "dev"}}));
  EXPECT_FALSE(s.Matches(json{{"env", "prod"}}));
  EXPECT_FALSE(s.Matches(json{{"env", "staging"}}));
  EXPECT_TRUE(s.Matches(json::object()));
  EXPECT_TRUE(s.Matches(json()));
}

TEST(LabelSelectorTest, ExistsAndDoesNotExist) {
  LabelSelector exists = MustParseLabels("canary");
  ASSERT_EQ(exists.requirements().size(), 1u);
  EXPECT_EQ(exists.requirements()[0], (LabelRequirement{"canary", Op::kExists, {}}));
  EXPECT_TRUE(exists.Matches(json{{"canary", ""}}));
  EXPECT_TRUE(exists.Matches(json{{"canary", "true"}}));
  EXPECT_FALSE(exists.Matches(json{{"stable", "true"}}));
  EXPECT_FALSE(exists.Matches(json()));

  LabelSelector absent = MustParseLabels("!canary");
  ASSERT_EQ(absent.requirements().size(), 1u);
  EXPECT_EQ(absent.requirements()[0], (LabelRequirement{"canary", Op::kDoesNotExist, {}}));
  EXPECT_FALSE(absent.Matches(json{{"canary", ""}}));
  EXPECT_TRUE(absent.Matches(json{{"stable", "true"}}));
  EXPECT_TRUE(absent.Matches(json()));
}

TEST(LabelSelectorTest, RequirementsAreAnded) {
  LabelSelector s = MustParseLabels("app=web,env in (prod),!canary");
  EXPECT_TRUE(s.Matches(json{{"app", "web"}, {"env", "prod"}}));
  EXPECT_FALSE(s.Matches(json{{"app", "web"}, {"env", "prod"}, {"canary", "1"}}));
  EXPECT_FALSE(s.Matches(json{{"app", "web"}, {"env", "dev"}}));
  EXPECT_FALSE(s.Matches(json{{"app", "db"}, {"env", "prod"}}));
}

TEST(LabelSelectorTest, ToleratesWhitespaceBetweenTokens) {
  LabelSelector s = MustParseLabels(
      "  app = web ,\tenv  in(prod , staging) , ! canary,tier notin ( a,b ) ,x!= y ");
  EXPECT_EQ(s.ToString(), "app=web,!canary,env in (prod,staging),tier notin (a,b),x!=y");
  EXPECT_EQ(MustParseLabels("a==b").ToString(), MustParseLabels(" a == b ").ToString());
}

TEST(LabelSelectorTest, EmptyValues) {
  LabelSelector eq = MustParseLabels("app=");
  ASSERT_EQ(eq.requirements().size(), 1u);
  EXPECT_EQ(eq.requirements()[0], (LabelRequirement{"app", Op::kEquals, {""}}));
  EXPECT_TRUE(eq.Matches(json{{"app", ""}}));
  EXPECT_FALSE(eq.Matches(json{{"app", "x"}}));
  EXPECT_FALSE(eq.Matches(json::object()));

  LabelSelector ne = MustParseLabels("app!=,b=c");
  EXPECT_TRUE(ne.Matches(json{{"app", "x"}, {"b", "c"}}));
  EXPECT_FALSE(ne.Matches(json{{"app", ""}, {"b", "c"}}));

  // As in Kubernetes: "()" is the set {""}; empty items are "".
  EXPECT_EQ(MustParseLabels("a in ()").requirements()[0].values, std::vector<std::string>{""});
  EXPECT_EQ(MustParseLabels("a in (x,)").requirements()[0].values,
            (std::vector<std::string>{"", "x"}));
  EXPECT_EQ(MustParseLabels("a in (,x)").requirements()[0].values,
            (std::vector<std::string>{"", "x"}));
  EXPECT_EQ(MustParseLabels("a in (x,,y)").requirements()[0].values,
            (std::vector<std::string>{"", "x", "y"}));
  EXPECT_TRUE(MustParseLabels("a in ()").Matches(json{{"a", ""}}));
  EXPECT_FALSE(MustParseLabels("a in ()").Matches(json::object()));
}

TEST(LabelSelectorTest, ValuesAreSortedAndDeduplicated) {
  LabelSelector s = MustParseLabels("x in (b,a,b,c)");
  EXPECT_EQ(s.requirements()[0].values, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(s.ToString(), "x in (a,b,c)");
  EXPECT_TRUE(s.Matches(json{{"x", "c"}}));
}

TEST(LabelSelectorTest, RequirementsAreSortedStablyByKey) {
  LabelSelector s = MustParseLabels("b=1,a!=2,b!=3");
  ASSERT_EQ(s.requirements().size(), 3u);
  EXPECT_EQ(s.requirements()[0].key, "a");
  EXPECT_EQ(s.requirements()[1], (LabelRequirement{"b", Op::kEquals, {"1"}}));
  EXPECT_EQ(s.requirements()[2], (LabelRequirement{"b", Op::kNotEquals, {"3"}}));
  EXPECT_EQ(s.ToString(), "a!=2,b=1,b!=3");
}

TEST(LabelSelectorTest, KeywordsAreOrdinaryValuesAndKeys) {
  EXPECT_TRUE(MustParseLabels("a=in").Matches(json{{"a", "in"}}));
  EXPECT_TRUE(MustParseLabels("a in (in,notin)").Matches(json{{"a", "notin"}}));
  EXPECT_TRUE(MustParseLabels("in=x").Matches(json{{"in", "x"}}));
  EXPECT_TRUE(MustParseLabels("notin").Matches(json{{"notin", ""}}));
}

TEST(LabelSelectorTest, PrefixedKeys) {
  LabelSelector s = MustParseLabels("app.kubernetes.io/name in (web),example.com/tier!=db");
  EXPECT_TRUE(s.Matches(json{{"app.kubernetes.io/name", "web"}}));
  EXPECT_FALSE(s.Matches(json{{"app.kubernetes.io/name", "web"}, {"example.com/tier", "db"}}));
  EXPECT_FALSE(s.Matches(json{{"name", "web"}}));
  EXPECT_EQ(s.ToString(), "app.kubernetes.io/name in (web),example.com/tier!=db");
}

TEST(LabelSelectorTest, NonObjectLabelsCountAsNone) {
  EXPECT_FALSE(MustParseLabels("a").Matches(json("a")));
  EXPECT_TRUE(MustParseLabels("!a").Matches(json::array({"a"})));
  EXPECT_TRUE(MustParseLabels("a!=b").Matches(json(3)));
}

TEST(LabelSelectorTest, ToStringRoundTrips) {
  for (std::string_view text :
       {"a=b", "a==b", "a!=b", "a=", "a!=", "a in (x,y)", "a notin (y,x)", "a in ()", "a in (,x)",
        "a", "!a", "b=1, a in (z) , !c,d", "example.com/x=Y_1.z-2", "x notin (a,,b),x in (c)"}) {
    LabelSelector s = MustParseLabels(text);
    std::string canonical = s.ToString();
    LabelSelector again = MustParseLabels(canonical);
    EXPECT_EQ(again.requirements(), s.requirements()) << text << " -> " << canonical;
    EXPECT_EQ(again.ToString(), canonical);
  }
}

TEST(LabelSelectorTest, BoundaryLengths) {
  std::string name63(63, 'k');
  std::string value63(63, 'v');
  EXPECT_TRUE(LabelSelector::Parse(name63 + "=" + value63).ok());
  EXPECT_THAT(LabelError(name63 + "k=v"), HasSubstr("name part must be no more than 63"));
  EXPECT_THAT(LabelError("k=" + value63 + "v"), HasSubstr("must be no more than 63 characters"));
  EXPECT_THAT(LabelError("k in (a," + value63 + "v)"), HasSubstr("must be no more than 63"));
}

// ---- LabelSelector parse errors: each names the problem and quotes the input.

TEST(LabelSelectorErrorTest, MissingCloseParen) {
  EXPECT_EQ(LabelError("a in (b"), R"(invalid label selector "a in (b": missing ')')");
  EXPECT_THAT(LabelError("a notin (b,"), HasSubstr("missing ')'"));
  EXPECT_THAT(LabelError("a in ("), HasSubstr("missing ')'"));
}

TEST(LabelSelectorErrorTest, MissingOpenParen) {
  EXPECT_THAT(LabelError("a in"), HasSubstr(R"(missing '(' after "a in")"));
  EXPECT_THAT(LabelError("a in b"), HasSubstr(R"(expected '(' after "a in", found 'b')"));
  EXPECT_THAT(LabelError("a notin ,b"), HasSubstr("expected '('"));
}

TEST(LabelSelectorErrorTest, BadTokensInValueList) {
  EXPECT_THAT(LabelError("a in (b c)"),
              HasSubstr("expected ',' or ')' after \"a in (b\", found 'c'"));
  EXPECT_THAT(LabelError("a in (=)"), HasSubstr("expected a value, ',' or ')'"));
  EXPECT_THAT(LabelError("a in (b))"), HasSubstr("unexpected ')'"));
  EXPECT_THAT(LabelError("a in ((b))"), HasSubstr("found '('"));
}

TEST(LabelSelectorErrorTest, MissingOrUnknownOperator) {
  EXPECT_THAT(LabelError("a b"),
              HasSubstr("expected an operator (=, ==, !=, in, notin) after \"a\", "
                        "found 'b'"));
  EXPECT_THAT(LabelError("a(b)"), HasSubstr("found '('"));
  EXPECT_THAT(LabelError("a!b"), HasSubstr("found '!'"));
  EXPECT_THAT(LabelError("a>1"), HasSubstr("operator '>' is not supported"));
  EXPECT_THAT(LabelError("a<1"), HasSubstr("operator '<' is not supported"));
}

TEST(LabelSelectorErrorTest, BadValueAfterEquals) {
  EXPECT_THAT(LabelError("a=(b)"), HasSubstr("expected a value after \"a=\", found '('"));
  EXPECT_THAT(LabelError("a===b"), HasSubstr("found '='"));
  EXPECT_THAT(LabelError("a=b c"),
              HasSubstr("unexpected 'c' after \"a=b\"; expected ',' or end of selector"));
  EXPECT_THAT(LabelError("a=b=c"), HasSubstr("unexpected '='"));
}

TEST(LabelSelectorErrorTest, NegationTakesNoOperator) {
  EXPECT_THAT(LabelError("!a=b"), HasSubstr("unexpected '=' after \"!a\""));
  EXPECT_THAT(LabelError("!a in (b)"), HasSubstr("unexpected 'in'"));
  EXPECT_THAT(LabelError("!"), HasSubstr("missing key after '!'"));
  EXPECT_THAT(LabelError("!,a"), HasSubstr("missing key after '!'"));
  EXPECT_THAT(LabelError("!!a"), HasSubstr("expected a label key after '!', found '!'"));
}

TEST(LabelSelectorErrorTest, EmptyRequirements) {
  EXPECT_THAT(LabelError("a=b,"), HasSubstr("empty requirement after ','"));
  EXPECT_THAT(LabelError("a=b,,c"), HasSubstr("empty requirement after ','"));
  EXPECT_THAT(LabelError(",a"), HasSubstr("empty requirement before ','"));
  EXPECT_THAT(LabelError("=b"), HasSubstr("expected a label key, found '='"));
  EXPECT_THAT(LabelError("(a)"), HasSubstr("expected a label key, found '('"));
}

TEST(LabelSelectorErrorTest, InvalidKeys) {
  EXPECT_THAT(LabelError("-a=b"), HasSubstr(R"(invalid label key "-a": name part must consist)"));
  EXPECT_THAT(LabelError("a$=b"), HasSubstr(R"(invalid label key "a$")"));
  EXPECT_THAT(LabelError("Example.com/a=b"),
              HasSubstr("prefix part a lowercase RFC 1123 subdomain"));
  EXPECT_THAT(LabelError("/a"), HasSubstr("prefix part must be non-empty"));
  EXPECT_THAT(LabelError("a/"), HasSubstr("name part must be non-empty"));
  EXPECT_THAT(LabelError("a/b/c=d"), HasSubstr("a qualified name"));
  EXPECT_THAT(LabelError("!-a"), HasSubstr("invalid label key"));
}

TEST(LabelSelectorErrorTest, InvalidValues) {
  EXPECT_THAT(LabelError("a=b$"), HasSubstr(R"(invalid value "b$" for label key "a")"));
  EXPECT_THAT(LabelError("a!=-b"), HasSubstr("a valid label must be an empty string"));
  EXPECT_THAT(LabelError("a in (ok,_bad)"), HasSubstr(R"(invalid value "_bad")"));
}

TEST(LabelSelectorErrorTest, MessageQuotesTheWholeSelector) {
  EXPECT_THAT(LabelError("app=web,tier=a b"),
              HasSubstr(R"(invalid label selector "app=web,tier=a b")"));
  EXPECT_THAT(LabelError("a=\"x\""), HasSubstr(R"(invalid label selector "a=\"x\"")"));
}

// ---- FieldSelector

TEST(FieldSelectorTest, EmptyMatchesEverything) {
  FieldSelector s = MustParseFields("");
  EXPECT_TRUE(s.empty());
  EXPECT_TRUE(s.Matches(json{{"metadata", {{"name", "a"}}}}));
  EXPECT_TRUE(s.Validate({}).ok());
  EXPECT_EQ(s.ExactValue("metadata.name"), std::nullopt);
}

TEST(FieldSelectorTest, Operators) {
  json pod = {{"metadata", {{"name", "a"}, {"namespace", "ns1"}}}};
  for (std::string_view text : {"metadata.name=a", "metadata.name==a"}) {
    FieldSelector s = MustParseFields(text);
    ASSERT_EQ(s.requirements().size(), 1u);
    EXPECT_EQ(s.requirements()[0], (FieldRequirement{"metadata.name", true, "a"}));
    EXPECT_TRUE(s.Matches(pod));
    EXPECT_FALSE(s.Matches(json{{"metadata", {{"name", "b"}}}}));
  }
  FieldSelector ne = MustParseFields("metadata.name!=a");
  ASSERT_EQ(ne.requirements().size(), 1u);
  EXPECT_EQ(ne.requirements()[0], (FieldRequirement{"metadata.name", false, "a"}));
  EXPECT_FALSE(ne.Matches(pod));
  EXPECT_TRUE(ne.Matches(json{{"metadata", {{"name", "b"}}}}));
  EXPECT_TRUE(ne.Matches(json::object()));  // missing compares as ""
}

TEST(FieldSelectorTest, MultipleRequirementsAreAndedInInputOrder) {
  FieldSelector s = MustParseFields("metadata.namespace=ns1,metadata.name!=a");
  ASSERT_EQ(s.requirements().size(), 2u);
  EXPECT_EQ(s.requirements()[0].field, "metadata.namespace");
  EXPECT_EQ(s.requirements()[1].field, "metadata.name");
  EXPECT_TRUE(s.Matches(json{{"metadata", {{"name", "b"}, {"namespace", "ns1"}}}}));
  EXPECT_FALSE(s.Matches(json{{"metadata", {{"name", "a"}, {"namespace", "ns1"}}}}));
  EXPECT_FALSE(s.Matches(json{{"metadata", {{"name", "b"}, {"namespace", "ns2"}}}}));
}

TEST(FieldSelectorTest, EmptyValuesAndMissingFields) {
  FieldSelector unscheduled = MustParseFields("spec.nodeName=");
  EXPECT_TRUE(unscheduled.Matches(json{{"spec", json::object()}}));
  EXPECT_TRUE(unscheduled.Matches(json::object()));
  EXPECT_TRUE(unscheduled.Matches(json{{"spec", {{"nodeName", nullptr}}}}));
  EXPECT_TRUE(unscheduled.Matches(json{{"spec", {{"nodeName", ""}}}}));
  EXPECT_FALSE(unscheduled.Matches(json{{"spec", {{"nodeName", "n1"}}}}));

  FieldSelector scheduled = MustParseFields("spec.nodeName!=");
  EXPECT_TRUE(scheduled.Matches(json{{"spec", {{"nodeName", "n1"}}}}));
  EXPECT_FALSE(scheduled.Matches(json{{"spec", json::object()}}));
}

TEST(FieldSelectorTest, NestedPathsAndNonStringScalars) {
  json obj = {{"spec",
               {{"template", {{"spec", {{"nodeName", "n1"}}}}},
                {"replicas", 3},
                {"ratio", 0.5},
                {"suspend", true},
                {"name", "x"}}},
              {"status", "plain-string"}};
  EXPECT_TRUE(MustParseFields("spec.template.spec.nodeName=n1").Matches(obj));
  EXPECT_FALSE(MustParseFields("spec.template.spec.nodeName=n2").Matches(obj));
  EXPECT_TRUE(MustParseFields("spec.replicas=3").Matches(obj));
  EXPECT_FALSE(MustParseFields("spec.replicas=4").Matches(obj));
  EXPECT_TRUE(MustParseFields("spec.ratio=0.5").Matches(obj));
  EXPECT_TRUE(MustParseFields("spec.suspend=true").Matches(obj));
  EXPECT_TRUE(MustParseFields("spec.suspend!=false").Matches(obj));
  // A path through a non-object is missing, so it compares as "".
  EXPECT_TRUE(MustParseFields("status.phase=").Matches(obj));
  EXPECT_TRUE(MustParseFields("spec.name.first=").Matches(obj));
  // A prefix of the path is not the field.
  EXPECT_FALSE(MustParseFields("spec=x").Matches(obj));
  EXPECT_TRUE(MustParseFields("spec.template.spec.nodeName=n1,spec.replicas!=0").Matches(obj));
}

TEST(FieldSelectorTest, Escapes) {
  EXPECT_EQ(MustParseFields(R"(a=x\,y)").requirements(),
            (std::vector<FieldRequirement>{{"a", true, "x,y"}}));
  EXPECT_EQ(MustParseFields(R"(a=x\=y)").requirements(),
            (std::vector<FieldRequirement>{{"a", true, "x=y"}}));
  EXPECT_EQ(MustParseFields(R"(a!=x\\y)").requirements(),
            (std::vector<FieldRequirement>{{"a", false, R"(x\y)"}}));
  // An escaped backslash does not escape the comma after it.
  EXPECT_EQ(MustParseFields(R"(a=x\\,b=y)").requirements(),
            (std::vector<FieldRequirement>{{"a", true, R"(x\)"}, {"b", true, "y"}}));
  EXPECT_TRUE(
      MustParseFields(R"(metadata.name=a\,b)").Matches(json{{"metadata", {{"name", "a,b"}}}}));
}

TEST(FieldSelectorTest, EmptyTermsAreSkippedAndWhitespaceIsKept) {
  EXPECT_EQ(MustParseFields("a=b,,c=d,").requirements().size(), 2u);
  EXPECT_EQ(MustParseFields(",").requirements().size(), 0u);
  EXPECT_EQ(MustParseFields("a= b").requirements()[0].value, " b");
}

TEST(FieldSelectorTest, ParseErrors) {
  EXPECT_THAT(FieldError("abc"), HasSubstr(R"(cannot understand "abc")"));
  EXPECT_THAT(FieldError("a=b,abc"), HasSubstr(R"(invalid field selector "a=b,abc")"));
  EXPECT_THAT(FieldError("=b"), HasSubstr("missing field name"));
  EXPECT_THAT(FieldError("!=b"), HasSubstr("missing field name"));
  EXPECT_THAT(FieldError(R"(a=x\y)"), HasSubstr(R"(invalid escape sequence '\y')"));
  EXPECT_THAT(FieldError(R"(a=x\)"), HasSubstr("unfinished escape"));
  EXPECT_THAT(FieldError("a=b=c"), HasSubstr("unescaped '='"));
  EXPECT_THAT(FieldError("a==b=c"), HasSubstr("unescaped '='"));
}

TEST(FieldSelectorTest, Validate) {
  std::vector<std::string> supported = {"metadata.name", "metadata.namespace"};
  EXPECT_TRUE(MustParseFields("metadata.name=a,metadata.namespace!=b").Validate(supported).ok());
  common::Status s = MustParseFields("metadata.name=a,spec.foo=b").Validate(supported);
  EXPECT_EQ(s.code(), common::Code::kInvalidArgument);
  EXPECT_EQ(s.message(), R"(field label not supported: "spec.foo")");
  EXPECT_FALSE(MustParseFields("metadata.name=a").Validate({}).ok());
  // Whitespace is part of the field name, as in Kubernetes.
  EXPECT_FALSE(MustParseFields(" metadata.name=a").Validate(supported).ok());
}

TEST(FieldSelectorTest, ExactValue) {
  EXPECT_EQ(MustParseFields("metadata.namespace=ns1").ExactValue("metadata.namespace"), "ns1");
  EXPECT_EQ(MustParseFields("metadata.namespace==ns1").ExactValue("metadata.namespace"), "ns1");
  EXPECT_EQ(MustParseFields("metadata.namespace=").ExactValue("metadata.namespace"), "");
  EXPECT_EQ(MustParseFields("metadata.namespace!=ns1").ExactValue("metadata.namespace"),
            std::nullopt);
  EXPECT_EQ(MustParseFields("metadata.name=a").ExactValue("metadata.namespace"), std::nullopt);
  EXPECT_EQ(
      MustParseFields("metadata.name!=a,metadata.namespace=x\\,y").ExactValue("metadata.namespace"),
      "x,y");
}

}  // namespace
}  // namespace corral::store
