#pragma once
// Injected time source. Everything that measures or waits on wall time takes a
// Clock& so tests can run it on virtual time (LevelDB's Env, Envoy's TimeSystem).
//
// Thread-safety: all methods of RealClock and FakeClock are thread-safe.
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace corral::common {

using TimePoint = std::chrono::system_clock::time_point;
using Duration = std::chrono::system_clock::duration;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  // Blocks until Now() >= deadline or Interrupt() is called; returns false when
  // interrupted. A FakeClock only wakes sleepers when a test advances it.
  virtual bool SleepUntil(TimePoint deadline) = 0;
  // Wakes every sleeper (used at shutdown).
  virtual void Interrupt() = 0;
};

class RealClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::system_clock::now(); }
  bool SleepUntil(TimePoint deadline) override;
  void Interrupt() override;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t interrupts_ = 0;  // guarded by mu_
};

// Virtual time: starts at a fixed instant and moves only by Advance/Set.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start = TimePoint(std::chrono::seconds(1'700'000'000)));
  TimePoint Now() const override;
  bool SleepUntil(TimePoint deadline) override;
  void Interrupt() override;
  // Moves time forward and wakes sleepers whose deadline passed.
  void Advance(Duration d);
  void Set(TimePoint t);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  TimePoint now_;            // guarded by mu_
  uint64_t interrupts_ = 0;  // guarded by mu_
};

// RFC 3339 with a trailing Z and second precision, as Kubernetes writes timestamps.
std::string FormatRfc3339(TimePoint t);

}  // namespace corral::common
