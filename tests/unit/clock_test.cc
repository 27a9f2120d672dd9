#include "common/clock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace corral::common {
namespace {

using namespace std::chrono_literals;

TEST(FakeClockTest, AdvanceMovesTime) {
  FakeClock clock;
  const auto t0 = clock.Now();
  clock.Advance(5s);
  EXPECT_EQ(clock.Now() - t0, 5s);
  clock.Set(t0);
  EXPECT_EQ(clock.Now(), t0);
}

TEST(FakeClockTest, SleeperWakesOnlyWhenTimeReachesDeadline) {
  FakeClock clock;
  std::atomic<bool> woke{false};
  std::atomic<bool> result{false};
  const auto deadline = clock.Now() + 10s;
  std::thread t([&] {
    result = clock.SleepUntil(deadline);
    woke = true;
  });
  clock.Advance(9s);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(woke.load());
  clock.Advance(1s);
  t.join();
  EXPECT_TRUE(woke.load());
  EXPECT_TRUE(result.load());
}

TEST(FakeClockTest, InterruptWakesSleeperWithFalse) {
  FakeClock clock;
  std::atomic<bool> result{true};
  std::thread t([&] { result = clock.SleepUntil(clock.Now() + 1h); });
  std::this_thread::sleep_for(10ms);
  clock.Interrupt();
  t.join();
  EXPECT_FALSE(result.load());
}

TEST(RealClockTest, SleepUntilPastDeadlineReturnsAtOnce) {
  RealClock clock;
  EXPECT_TRUE(clock.SleepUntil(clock.Now() - 1s));
}

TEST(ClockTest, FormatsRfc3339InUtc) {
  EXPECT_EQ(FormatRfc3339(TimePoint(std::chrono::seconds(1'700'000'000))), "2023-11-14T22:13:20Z");
}

}  // namespace
}  // namespace corral::common
