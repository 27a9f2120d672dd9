#pragma once
// The simulated inference engine ("sim"): a stand-in for a real model server,
// for tests, benchmarks and capacity planning. It generates no real text: it
// emits words from a fixed vocabulary, chosen by a seeded PRNG, on a schedule
// given by a timing model (ModelSpec.sim). What it does simulate faithfully is
// the serving core: continuous batching (max sequences and max batched tokens
// per step, prefill chunks sharing steps with decodes), a paged KV cache with
// prefix caching by chained block hash, and recompute-style preemption when
// the cache is full. docs/worker.md describes the timing model.
//
// Time: every instant comes from the scheduler's injected common::Clock. A
// step's end is computed from the model (start + modelled duration) and the
// next step starts at that end, so on a virtual clock (FakeClock, `corral
// simulate`) the timings are exact however time is advanced, and on a
// RealClock they do not drift.
//
// Many engines are cheap: a SimScheduler steps any number of SimEngines from
// one thread (or from its caller, with RunDue), keeping a heap of the engines'
// next step ends. An idle engine holds no thread and a few KiB.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "worker/engine.h"

namespace corral::worker {

// The timing model and limits of one sim model, resolved from ModelSpec.sim
// with defaults (docs/worker.md lists them). A value type.
struct SimTimingModel {
  double load_seconds = 1.0;
  double prefill_seconds_per_token = 0.0002;
  double decode_step_seconds = 0.02;
  double decode_step_seconds_per_sequence = 0.0005;
  double decode_step_seconds_per_context_token = 2e-7;
  int64_t max_sequences = 16;
  int64_t max_batched_tokens = 2048;
  int64_t kv_block_tokens = 16;
  int64_t kv_blocks = 0;  // resolved: never 0 after FromSpec
  uint64_t seed = 0;
  int64_t context_length = 4096;

  // KV-cache bytes per token assumed when kvBlocks is derived from
  // resources.memoryBytes (an 8B model with grouped-query attention, fp16),
  // and the share of memoryBytes given to the KV cache.
  static constexpr int64_t kKvBytesPerToken = 128 * 1024;
  static constexpr double kKvMemoryFraction = 0.25;

  // Reads spec.sim (null or an object) and spec.context_length /
  // memory_bytes. InvalidArgument names the offending field
  // ("spec.sim.maxSequences must be an integer >= 1"), including a KV cache
  // too small to hold one full-context sequence.
  static common::Result<SimTimingModel> FromSpec(const ModelSpec& spec);

  // Modelled duration of one engine step that computes `prefill_tokens`
  // prompt (or recomputed) tokens and decodes `decode_sequences` sequences
  // holding `decode_context_tokens` tokens of context between them:
  //   prefill_tokens * prefillSecondsPerToken
  //   + (decode_sequences > 0 ? decodeStepSeconds
  //        + (decode_sequences - 1) * decodeStepSecondsPerSequence
  //        + decode_context_tokens * decodeStepSecondsPerContextToken : 0)
  double StepSeconds(int64_t prefill_tokens, int64_t decode_sequences,
                     int64_t decode_context_tokens) const;
};

// Options of one SimEngine (not part of the Model: set by whoever creates it).
struct SimEngineOptions {
  // Submit answers ResourceExhausted while this many requests are waiting
  // for a batch slot (the running batch is not counted).
  int64_t max_queued = 256;
  // Chance that a generated token is end-of-sequence (finish_reason "stop").
  // 0 makes every request run to max_tokens ("length") unless a stop
  // sequence matches.
  double eos_probability = 0.005;
};

// Steps SimEngines. Thread-safe. Step processing and event delivery are
// serialized (one at a time, whoever runs them), so one SimScheduler uses at
// most one core; create several to use more.
//
// Engines keep its internal state alive, so either may be destroyed first;
// but once the SimScheduler is gone its engines are no longer stepped, so
// destroy (or Unload) them first.
class SimScheduler {
 public:
  struct Options {
    // Run a stepping thread. Without it, steps happen only in RunDue()
    // (discrete-event drivers such as `corral simulate`, deterministic tests).
    bool thread = true;
    // Whether the clock follows the wall clock. Unset: true for a
    // common::RealClock. On real time the thread waits for the next step end
    // on its own condition variable (precise to the OS wake-up latency); on
    // virtual time it looks at clock.Now() every `poll_interval` of wall time
    // (a FakeClock cannot wake one particular sleeper early).
    std::optional<bool> real_time;
    // Real time only: when the thread falls further behind than this (an
    // overloaded core, a stopped process), the next step starts now instead
    // of catching up in a burst, and the engine runs slower than modelled.
    common::Duration max_lag = std::chrono::milliseconds(100);
    std::chrono::milliseconds poll_interval{1};
  };

  explicit SimScheduler(common::Clock& clock);
  SimScheduler(common::Clock& clock, Options options);
  ~SimScheduler();  // stops the thread
  SimScheduler(const SimScheduler&) = delete;
  SimScheduler& operator=(const SimScheduler&) = delete;

  common::Clock& clock() const;
  bool real_time() const;

  // Runs, on the calling thread and in time order, every step end and
  // request start that is due at clock.Now(); event callbacks run here.
  // Returns how many engine wake-ups it processed. Thread-safe; must not be
  // called from an event callback.
  int RunDue();
  // The earliest pending step end or request start (nullopt: every engine is
  // idle). A discrete-event driver sets its clock to it and calls RunDue().
  std::optional<common::TimePoint> NextDeadline() const;

  struct State;  // internal

 private:
  friend class SimEngine;
  std::shared_ptr<State> state_;
};

// The sim engine. Thread-safety as for Engine (engine.h): Load/Unload from
// one thread; Submit, Stats, CountTokens, Generation::Cancel from any thread.
// Event callbacks run on the scheduler's thread (or in RunDue), except the
// "cancelled" events of Unload, which run on the caller of Unload. A callback
// may Submit or Cancel; it must not Unload or call RunDue.
class SimEngine final : public Engine {
 public:
  // Steps on a shared scheduler.
  explicit SimEngine(SimScheduler& scheduler, SimEngineOptions options = {});
  // Steps on a scheduler of its own (one thread) on `clock`.
  explicit SimEngine(common::Clock& clock, SimEngineOptions options = {});
  ~SimEngine() override;  // Unload()

  std::string name() const override { return "sim"; }
  std::string version() const override;

  // Waits loadSeconds on the clock, calling progress about every 100 ms (at
  // least 10 times) with bytes of resources.memoryBytes (1 GiB when unset).
  // `cancel` is looked at on each progress tick. InvalidArgument: bad
  // spec.sim (see SimTimingModel::FromSpec) or an engine other than "sim";
  // FailedPrecondition: already loaded, or cancelled ("load cancelled").
  common::Status Load(const ModelSpec& spec, const std::function<void(int64_t, int64_t)>& progress,
                      const std::atomic<bool>& cancel) override;
  void Unload() override;

  // Prompt tokens: the words of the prompt (or of RenderChat(messages)), at
  // least 1. max_tokens <= 0 means "up to the context length". The seed is
  // sampling.seed, else the model's seed mixed with the prompt's hash;
  // temperature, top_k and top_p do not change the simulated text.
  common::Result<std::shared_ptr<Generation>> Submit(
      GenerateRequest request, std::function<void(const GenerateEvent&)> on_event) override;

  // Words: maximal runs of non-whitespace. The generated text is words joined
  // by single spaces, so CountTokens(text of n word tokens) == n.
  int64_t CountTokens(const std::string& text) const override;
  int64_t context_length() const override;
  EngineStats Stats() const override;

  // The model in effect (after Load; defaults before).
  SimTimingModel model() const;

  // "role: content" lines, then "assistant:" (the plain chat template).
  static std::string RenderChat(const std::vector<ChatMessage>& messages);

  struct Core;  // internal

 private:
  std::unique_ptr<SimScheduler> own_scheduler_;  // when constructed with a clock
  std::shared_ptr<SimScheduler::State> scheduler_;
  std::shared_ptr<Core> core_;
};

}  // namespace corral::worker
