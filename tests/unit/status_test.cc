#include "common/status.h"

#include <gtest/gtest.h>

namespace corral::common {
namespace {

TEST(StatusTest, CodesMapToKubernetesReasonsAndHttp) {
  EXPECT_EQ(HttpStatus(Code::kNotFound), 404);
  EXPECT_EQ(KubeReason(Code::kNotFound), "NotFound");
  EXPECT_EQ(HttpStatus(Code::kAlreadyExists), 409);
  EXPECT_EQ(KubeReason(Code::kAlreadyExists), "AlreadyExists");
  EXPECT_EQ(HttpStatus(Code::kConflict), 409);
  EXPECT_EQ(KubeReason(Code::kConflict), "Conflict");
  EXPECT_EQ(HttpStatus(Code::kExpired), 410);
  EXPECT_EQ(KubeReason(Code::kExpired), "Expired");
  EXPECT_EQ(HttpStatus(Code::kInvalidArgument), 422);
  EXPECT_EQ(KubeReason(Code::kInvalidArgument), "Invalid");
  EXPECT_EQ(HttpStatus(Code::kUnavailable), 503);
  EXPECT_EQ(HttpStatus(Code::kResourceExhausted), 429);
}

TEST(StatusTest, ToStringCarriesCodeAndMessage) {
  EXPECT_EQ(Status().ToString(), "ok");
  EXPECT_EQ(Conflict("stale").ToString(), "conflict: stale");
  EXPECT_EQ(CodeName(Code::kUnavailable), "unavailable");
}

TEST(StatusTest, ResultHoldsValueOrStatus) {
  Result<int> good = 7;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  EXPECT_TRUE(good.status().ok());
  Result<int> bad = NotFound("x");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kNotFound);
  EXPECT_EQ(bad.status().message(), "x");
}

Status FailsFirst(bool fail, int& reached) {
  CORRAL_RETURN_IF_ERROR(fail ? Unavailable("down") : Status::Ok());
  ++reached;
  return Status::Ok();
}

TEST(StatusTest, ReturnIfErrorStopsOnFailure) {
  int reached = 0;
  EXPECT_EQ(FailsFirst(true, reached).code(), Code::kUnavailable);
  EXPECT_EQ(reached, 0);
  EXPECT_TRUE(FailsFirst(false, reached).ok());
  EXPECT_EQ(reached, 1);
}

TEST(StatusTest, CausesAreKept) {
  Status s(Code::kInvalidArgument, "bad", {{"metadata.name", "too long"}});
  ASSERT_EQ(s.causes().size(), 1u);
  EXPECT_EQ(s.causes()[0].field, "metadata.name");
}

}  // namespace
}  // namespace corral::common
