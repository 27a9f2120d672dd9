#include "common/clock.h"

#include <ctime>
#include <string>

namespace corral::common {

bool RealClock::SleepUntil(TimePoint deadline) {
  std::unique_lock lock(mu_);
  const uint64_t seen = interrupts_;
  return !cv_.wait_until(lock, deadline, [&] { return interrupts_ != seen; });
}

void RealClock::Interrupt() {
  std::lock_guard lock(mu_);
  ++interrupts_;
  cv_.notify_all();
}

FakeClock::FakeClock(TimePoint start) : now_(start) {}

TimePoint FakeClock::Now() const {
  std::lock_guard lock(mu_);
  return now_;
}

bool FakeClock::SleepUntil(TimePoint deadline) {
  std::unique_lock lock(mu_);
  const uint64_t seen = interrupts_;
  cv_.wait(lock, [&] { return now_ >= deadline || interrupts_ != seen; });
  return interrupts_ == seen;
}

void FakeClock::Interrupt() {
  std::lock_guard lock(mu_);
  ++interrupts_;
  cv_.notify_all();
}

void FakeClock::Advance(Duration d) {
  std::lock_guard lock(mu_);
  now_ += d;
  cv_.notify_all();
}

void FakeClock::Set(TimePoint t) {
  std::lock_guard lock(mu_);
  now_ = t;
  cv_.notify_all();
}

std::string FormatRfc3339(TimePoint t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace corral::common
