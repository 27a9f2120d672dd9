#include "worker/sim_engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace corral::worker {
namespace {

using namespace std::chrono_literals;
using common::Code;
using common::FakeClock;
using common::TimePoint;

double Since(TimePoint a, TimePoint b) { return std::chrono::duration<double>(b - a).count(); }

// What one request saw: every event, and the clock's time at each.
struct Collector {
  std::vector<GenerateEvent> events;
  std::vector<TimePoint> times;
  std::string text;
  const common::Clock* clock = nullptr;

  std::function<void(const GenerateEvent&)> Callback() {
    return [this](const GenerateEvent& e) {
      events.push_back(e);
      times.push_back(clock->Now());
      text += e.text;
    };
  }
  bool done() const { return !events.empty() && events.back().done; }
  const GenerateEvent& last() const { return events.back(); }
  // Times at which a piece of text arrived (each piece is one token here:
  // no stop sequences are set where this is used).
  std::vector<TimePoint> TokenTimes() const {
    std::vector<TimePoint> out;
    for (size_t i = 0; i < events.size(); ++i) {
      if (!events[i].text.empty()) out.push_back(times[i]);
    }
    return out;
  }
};

std::string Words(int n, const std::string& word = "w") {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? " " : "") + word + std::to_string(i);
  return s;
}

ModelSpec Spec(nlohmann::json sim, int64_t context = 4096) {
  ModelSpec spec;
  spec.name = "m";
  spec.engine = "sim";
  spec.source = "sim://m";
  spec.context_length = context;
  sim["loadSeconds"] = 0;
  spec.sim = std::move(sim);
  return spec;
}

SimScheduler::Options Manual() {
  SimScheduler::Options o;
  o.thread = false;
  return o;
}
SimEngineOptions Opts(double eos_probability, int64_t max_queued = 256) {
  SimEngineOptions o;
  o.eos_probability = eos_probability;
  o.max_queued = max_queued;
  return o;
}

// A discrete-event driver over a manual scheduler: virtual time jumps to each
// step end, so callbacks see the exact modelled instants.
class SimTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  SimScheduler scheduler_{clock_, Manual()};

  std::unique_ptr<SimEngine> Loaded(nlohmann::json sim, SimEngineOptions options = {},
                                    int64_t context = 4096) {
    auto e = std::make_unique<SimEngine>(scheduler_, options);
    std::atomic<bool> cancel{false};
    const auto st = e->Load(Spec(std::move(sim), context), nullptr, cancel);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return e;
  }
  std::shared_ptr<Generation> Submit(SimEngine& e, Collector& c, const std::string& prompt,
                                     int max_tokens, std::optional<uint64_t> seed = 7,
                                     std::vector<std::string> stop = {}) {
    c.clock = &clock_;
    GenerateRequest r;
    r.id = "r";
    r.prompt = prompt;
    r.sampling.max_tokens = max_tokens;
    r.sampling.seed = seed;
    r.sampling.stop = std::move(stop);
    auto g = e.Submit(std::move(r), c.Callback());
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    return g.ok() ? *g : nullptr;
  }
  // Runs every step until all engines are idle (or `limit` of virtual time).
  void RunUntilIdle(common::Duration limit = 3600s) {
    const TimePoint end = clock_.Now() + limit;
    while (auto d = scheduler_.NextDeadline()) {
      if (*d > end) break;
      if (*d > clock_.Now()) clock_.Set(*d);
      scheduler_.RunDue();
    }
  }
};

TEST(SimTimingModelTest, DefaultsAndDerivedKvBlocks) {
  ModelSpec spec;
  spec.engine = "sim";
  auto m = SimTimingModel::FromSpec(spec);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->context_length, 4096);
  EXPECT_EQ(m->kv_block_tokens, 16);
  EXPECT_EQ(m->kv_blocks, 16 * 256);      // maxSequences full contexts: never preempts
  spec.memory_bytes = int64_t{16} << 30;  // 4 GiB of KV at 2 MiB per block
  m = SimTimingModel::FromSpec(spec);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->kv_blocks, 2048);
  spec.memory_bytes = 1 << 20;  // too small: still one full-context sequence
  m = SimTimingModel::FromSpec(spec);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->kv_blocks, 256);
  EXPECT_DOUBLE_EQ(m->StepSeconds(10, 0, 0), 10 * 0.0002);
  EXPECT_DOUBLE_EQ(m->StepSeconds(0, 3, 100), 0.02 + 2 * 0.0005 + 100 * 2e-7);
}

TEST(SimTimingModelTest, RejectsBadFieldsNamingThem) {
  for (const auto& [sim, field] : std::vector<std::pair<nlohmann::json, std::string>>{
           {{{"maxSequences", 0}}, "spec.sim.maxSequences"},
           {{{"maxBatchedTokens", 1.5}}, "spec.sim.maxBatchedTokens"},
           {{{"decodeStepSeconds", -1}}, "spec.sim.decodeStepSeconds"},
           {{{"prefillSecondsPerToken", "fast"}}, "spec.sim.prefillSecondsPerToken"},
           {{{"seed", "x"}}, "spec.sim.seed"},
           {{{"kvBlocks", 10}}, "spec.sim.kvBlocks 10"},
           {nlohmann::json::array(), "spec.sim"}}) {
    ModelSpec spec;
    spec.engine = "sim";
    spec.sim = sim;
    auto m = SimTimingModel::FromSpec(spec);
    ASSERT_FALSE(m.ok()) << sim.dump();
    EXPECT_EQ(m.status().code(), Code::kInvalidArgument);
    EXPECT_NE(m.status().message().find(field), std::string::npos) << m.status().message();
  }
}

TEST_F(SimTest, SingleRequestTimingIsExactlyTheModel) {
  auto e = Loaded({{"prefillSecondsPerToken", 0.001},
                   {"decodeStepSeconds", 0.02},
                   {"decodeStepSecondsPerSequence", 0.005},
                   {"decodeStepSecondsPerContextToken", 0.0001}},
                  Opts(0));
  Collector c;
  const TimePoint t0 = clock_.Now();
  Submit(*e, c, Words(10), 5);
  RunUntilIdle();
  ASSERT_TRUE(c.done());
  const auto times = c.TokenTimes();
  ASSERT_EQ(times.size(), 5u);
  // First token after the prefill of 10 tokens; then one decode step per
  // token, each reading prompt + tokens so far of context.
  double expected = 10 * 0.001;
  EXPECT_NEAR(Since(t0, times[0]), expected, 1e-9);
  for (int k = 1; k < 5; ++k) {
    expected += 0.02 + (10 + k) * 0.0001;
    EXPECT_NEAR(Since(t0, times[k]), expected, 1e-9) << "token " << k;
  }
  const auto& done = c.last();
  EXPECT_EQ(done.finish_reason, "length");
  EXPECT_EQ(done.prompt_tokens, 10);
  EXPECT_EQ(done.completion_tokens, 5);
  EXPECT_NEAR(done.time_to_first_token_s, 0.010, 1e-9);
  EXPECT_NEAR(done.prompt_eval_s, 0.010, 1e-9);
  EXPECT_NEAR(done.total_s, expected, 1e-9);
  EXPECT_EQ(e->CountTokens(c.text), 5);

  const auto s = e->Stats();
  EXPECT_EQ(s.requests_finished_total, 1);
  EXPECT_EQ(s.prompt_tokens_total, 10);
  EXPECT_EQ(s.generated_tokens_total, 5);
  EXPECT_NEAR(s.ttft_p50_s, 0.010, 1e-9);
  EXPECT_NEAR(s.tpot_p50_s, (expected - 0.010) / 4, 1e-9);
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.queued, 0);
  EXPECT_EQ(s.kv_cache_utilization, 0);
}

TEST_F(SimTest, QueuedRequestWaitsForTheStepInFlight) {
  // A request that arrives mid-step joins the batch at the next step boundary.
  auto e = Loaded({{"prefillSecondsPerToken", 0.0},
                   {"decodeStepSeconds", 0.02},
                   {"decodeStepSecondsPerSequence", 0.0},
                   {"decodeStepSecondsPerContextToken", 0.0},
                   {"maxBatchedTokens", 64}},
                  Opts(0));
  Collector a, b;
  Submit(*e, a, Words(4), 10);
  clock_.Advance(0ms);
  scheduler_.RunDue();  // a: prefill (zero time) -> first token at t0
  clock_.Advance(5ms);  // mid-way through a's first decode step
  const TimePoint tb = clock_.Now();
  Submit(*e, b, Words(4, "x"), 3);
  RunUntilIdle();
  ASSERT_TRUE(b.done());
  // b waits 15 ms for the step end, then its (free) prefill rides in a's next
  // decode step, which takes 20 ms: its first token comes with that step.
  EXPECT_NEAR(b.last().time_to_first_token_s, 0.035, 1e-9);
  EXPECT_NEAR(Since(tb, b.TokenTimes()[0]), 0.035, 1e-9);
}

// Catching up after one big Advance gives the same timings as stepping to
// each step end, including a request that arrived while steps were overdue
// (it must not join a step that began before it arrived).
TEST(SimCatchUpTest, OneBigAdvanceGivesTheSameTimings) {
  auto run = [](bool discrete) {
    FakeClock clock;
    SimScheduler scheduler(clock, Manual());
    SimEngine e(scheduler, Opts(0));
    std::atomic<bool> cancel{false};
    EXPECT_TRUE(e.Load(Spec({{"prefillSecondsPerToken", 0.001},
                             {"decodeStepSeconds", 0.02},
                             {"decodeStepSecondsPerSequence", 0.0},
                             {"decodeStepSecondsPerContextToken", 0.0}}),
                       nullptr, cancel)
                    .ok());
    std::vector<GenerateEvent> done;
    auto submit = [&](const std::string& prompt, int max_tokens) {
      GenerateRequest r;
      r.prompt = prompt;
      r.sampling.max_tokens = max_tokens;
      r.sampling.seed = 1;
      EXPECT_TRUE(e.Submit(r, [&](const GenerateEvent& ev) {
                     if (ev.done) done.push_back(ev);
                   }).ok());
    };
    auto run_until = [&](TimePoint t) {
      if (discrete) {
        while (auto d = scheduler.NextDeadline()) {
          if (*d > t) break;
          clock.Set(std::max(*d, clock.Now()));
          scheduler.RunDue();
        }
      }
      clock.Set(t);
      scheduler.RunDue();
    };
    const TimePoint t0 = clock.Now();
    submit(Words(30), 20);
    run_until(t0 + 101ms);  // discrete: steps so far; big: nothing ran yet
    submit(Words(5, "b"), 5);
    run_until(t0 + 10s);
    return done;
  };
  const auto discrete = run(true);
  const auto big = run(false);
  ASSERT_EQ(discrete.size(), 2u);
  ASSERT_EQ(big.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(big[i].time_to_first_token_s, discrete[i].time_to_first_token_s, 1e-9) << i;
    EXPECT_NEAR(big[i].total_s, discrete[i].total_s, 1e-9) << i;
  }
  // b arrived at 101 ms, during a's decode step [90, 110]: it starts at 110,
  // in a step of b's 5-token prefill and a's decode.
  EXPECT_NEAR(discrete[0].time_to_first_token_s, 0.110 - 0.101 + 0.005 + 0.020, 1e-9);
}

TEST_F(SimTest, BatchingRaisesThroughputByTheModelledFactor) {
  const nlohmann::json sim = {{"prefillSecondsPerToken", 0.0001},
                              {"decodeStepSeconds", 0.02},
                              {"decodeStepSecondsPerSequence", 0.002},
                              {"decodeStepSecondsPerContextToken", 0.0}};
  constexpr int kRequests = 8, kTokens = 50, kPrompt = 20;
  auto makespan = [&](int max_sequences) {
    nlohmann::json s = sim;
    s["maxSequences"] = max_sequences;
    auto e = Loaded(s, Opts(0));
    std::vector<Collector> cs(kRequests);
    const TimePoint t0 = clock_.Now();
    for (int i = 0; i < kRequests; ++i) {
      Submit(*e, cs[i], Words(kPrompt, "p" + std::to_string(i)), kTokens);
    }
    RunUntilIdle();
    TimePoint end = t0;
    for (auto& c : cs) {
      EXPECT_TRUE(c.done());
      EXPECT_EQ(c.last().completion_tokens, kTokens);
      end = std::max(end, c.times.back());
    }
    return Since(t0, end);
  };
  const double sequential = makespan(1);
  const double batched = makespan(kRequests);
  // One at a time: each request prefills then decodes alone.
  EXPECT_NEAR(sequential, kRequests * (kPrompt * 0.0001 + (kTokens - 1) * 0.02), 1e-6);
  // Together: one prefill step of all prompts, then every decode step
  // carries all 8 sequences.
  EXPECT_NEAR(batched,
              kRequests * kPrompt * 0.0001 + (kTokens - 1) * (0.02 + (kRequests - 1) * 0.002),
              1e-6);
  EXPECT_GT(sequential / batched, 4.5);
}

TEST_F(SimTest, PrefillChunksShareStepsWithDecodes) {
  // maxBatchedTokens 8: a 20-token prompt prefills in chunks 7, 8, 5 while
  // the running sequence keeps decoding in the same steps.
  auto e = Loaded({{"prefillSecondsPerToken", 0.001},
                   {"decodeStepSeconds", 0.01},
                   {"decodeStepSecondsPerSequence", 0.0},
                   {"decodeStepSecondsPerContextToken", 0.0},
                   {"maxBatchedTokens", 8}},
                  Opts(0));
  Collector a, b;
  const TimePoint t0 = clock_.Now();
  Submit(*e, a, Words(2), 20);
  clock_.Advance(0ms);
  scheduler_.RunDue();  // a's prefill step [0, 2 ms] is in flight
  Submit(*e, b, Words(20, "q"), 2);
  RunUntilIdle();
  ASSERT_TRUE(a.done());
  ASSERT_TRUE(b.done());
  // b waits for a's prefill step (2 ms), then three steps of a's decode
  // (10 ms) plus b's chunk: 7, 8 and 5 tokens.
  const double b_first = 0.002 + (0.01 + 0.007) + (0.01 + 0.008) + (0.01 + 0.005);
  EXPECT_NEAR(Since(t0, b.TokenTimes()[0]), b_first, 1e-9);
  const auto at = a.TokenTimes();
  EXPECT_NEAR(Since(t0, at[1]), 0.002 + 0.017, 1e-9);
  EXPECT_NEAR(Since(t0, at[3]), b_first, 1e-9);
}

TEST_F(SimTest, KvExhaustionPreemptsAndEveryRequestFinishes) {
  // 16 blocks of 4 tokens = 64 tokens; six requests need 6 x 38.
  const nlohmann::json sim = {{"prefillSecondsPerToken", 0.0001},
                              {"decodeStepSeconds", 0.01},
                              {"kvBlockTokens", 4},
                              {"kvBlocks", 16},
                              {"maxSequences", 8}};
  auto e = Loaded(sim, Opts(0), 64);
  std::vector<Collector> cs(6);
  for (int i = 0; i < 6; ++i) Submit(*e, cs[i], Words(8, "k" + std::to_string(i)), 30, 100 + i);
  int max_running = 0;
  while (auto d = scheduler_.NextDeadline()) {
    clock_.Set(std::max(*d, clock_.Now()));
    scheduler_.RunDue();
    const auto s = e->Stats();
    max_running = std::max<int>(max_running, static_cast<int>(s.running));
    EXPECT_LE(s.kv_cache_utilization, 1.0);
  }
  const auto s = e->Stats();
  EXPECT_GT(s.preemptions_total, 0);
  EXPECT_GT(max_running, 1);
  EXPECT_EQ(s.kv_cache_utilization, 0);
  EXPECT_EQ(s.requests_finished_total, 6);

  // The same requests on a cache that never fills give the same text:
  // preemption delays a sequence, never changes it.
  nlohmann::json roomy = sim;
  roomy["kvBlocks"] = 1000;
  auto big = Loaded(roomy, Opts(0), 64);
  std::vector<Collector> ref(6);
  for (int i = 0; i < 6; ++i) Submit(*big, ref[i], Words(8, "k" + std::to_string(i)), 30, 100 + i);
  RunUntilIdle();
  EXPECT_EQ(big->Stats().preemptions_total, 0);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(cs[i].done());
    EXPECT_EQ(cs[i].last().finish_reason, "length");
    EXPECT_EQ(cs[i].last().completion_tokens, 30);
    EXPECT_EQ(cs[i].text, ref[i].text);
  }
}

TEST_F(SimTest, PrefixCacheHitsSkipPrefill) {
  auto e = Loaded({{"prefillSecondsPerToken", 0.001},
                   {"decodeStepSeconds", 0.01},
                   {"decodeStepSecondsPerContextToken", 0.0}},
                  Opts(0));
  const std::string prompt = Words(40);  // two full 16-token blocks + 8
  Collector first, second, other;
  Submit(*e, first, prompt, 2);
  RunUntilIdle();
  EXPECT_NEAR(first.last().time_to_first_token_s, 0.040, 1e-9);
  EXPECT_EQ(e->Stats().prefix_cache_hit_tokens_total, 0);

  Submit(*e, second, prompt, 2);
  RunUntilIdle();
  EXPECT_NEAR(second.last().time_to_first_token_s, 0.008, 1e-9);  // 32 tokens were cached
  EXPECT_EQ(e->Stats().prefix_cache_hit_tokens_total, 32);

  // Same first block, different second block: one block hits.
  Submit(*e, other, Words(16) + " " + Words(24, "z"), 2);
  RunUntilIdle();
  EXPECT_NEAR(other.last().time_to_first_token_s, 0.024, 1e-9);
  EXPECT_EQ(e->Stats().prefix_cache_hit_tokens_total, 48);
}

TEST_F(SimTest, PrefixCacheNeverSkipsTheLastToken) {
  auto e = Loaded({{"prefillSecondsPerToken", 0.001}}, Opts(0));
  Collector a, b;
  Submit(*e, a, Words(32), 1);
  RunUntilIdle();
  Submit(*e, b, Words(32), 1);
  RunUntilIdle();
  // 32 tokens = 2 full blocks, but one token must be computed: 1 block hits.
  EXPECT_NEAR(b.last().time_to_first_token_s, 0.016, 1e-9);
}

TEST_F(SimTest, DeterministicForASeed) {
  auto e = Loaded({}, Opts(0));
  Collector a, b, c;
  Submit(*e, a, "hello there", 20, 42);
  Submit(*e, b, "hello there", 20, 42);
  Submit(*e, c, "hello there", 20, 43);
  RunUntilIdle();
  EXPECT_EQ(a.text, b.text);
  EXPECT_NE(a.text, c.text);
  EXPECT_EQ(e->CountTokens(a.text), 20);

  // Without a request seed: the model's seed and the prompt decide.
  auto e2 = Loaded({{"seed", 5}}, Opts(0));
  auto e3 = Loaded({{"seed", 5}}, Opts(0));
  auto e4 = Loaded({{"seed", 6}}, Opts(0));
  Collector x, y, z, w;
  Submit(*e2, x, "same prompt", 20, std::nullopt);
  Submit(*e3, y, "same prompt", 20, std::nullopt);
  Submit(*e4, z, "same prompt", 20, std::nullopt);
  Submit(*e2, w, "another prompt", 20, std::nullopt);
  RunUntilIdle();
  EXPECT_EQ(x.text, y.text);
  EXPECT_NE(x.text, z.text);
  EXPECT_NE(x.text, w.text);
}

TEST_F(SimTest, EosEndsSomeRequestsWithStop) {
  auto e = Loaded({}, Opts(0.1));
  std::vector<Collector> cs(20);
  for (int i = 0; i < 20; ++i) Submit(*e, cs[i], "go", 100, i);
  RunUntilIdle();
  int stopped = 0;
  for (auto& c : cs) {
    ASSERT_TRUE(c.done());
    if (c.last().finish_reason == "stop") {
      ++stopped;
      EXPECT_LT(c.last().completion_tokens, 100);
      // The EOS token counts but has no text.
      EXPECT_EQ(e->CountTokens(c.text), c.last().completion_tokens - 1);
    }
  }
  EXPECT_GT(stopped, 10);  // P(no EOS in 100 tokens) = 0.9^100
}

TEST_F(SimTest, MaxTokensEndsWithLength) {
  auto e = Loaded({}, Opts(0));
  Collector c;
  Submit(*e, c, "count", 7);
  RunUntilIdle();
  EXPECT_EQ(c.last().finish_reason, "length");
  EXPECT_EQ(c.last().completion_tokens, 7);
  EXPECT_EQ(e->CountTokens(c.text), 7);
  // Streaming: one piece per token, the last one in the done event.
  EXPECT_EQ(c.events.size(), 7u);
}

TEST_F(SimTest, StopSequencesEndTheTextBeforeThem) {
  auto e = Loaded({}, Opts(0));
  Collector ref;
  Submit(*e, ref, "story", 30, 9);
  RunUntilIdle();
  // Stop at the 4th and 5th words together (spans tokens).
  std::vector<std::string> words;
  std::string w;
  for (char ch : ref.text + " ") {
    if (ch == ' ') {
      words.push_back(w);
      w.clear();
    } else {
      w += ch;
    }
  }
  ASSERT_EQ(words.size(), 30u);
  const std::string stop = words[3] + " " + words[4];
  const std::string expected = ref.text.substr(0, ref.text.find(stop));
  Collector c;
  Submit(*e, c, "story", 30, 9, {stop, "never-in-vocabulary"});
  RunUntilIdle();
  ASSERT_TRUE(c.done());
  EXPECT_EQ(c.last().finish_reason, "stop");
  EXPECT_EQ(c.text, expected);
  EXPECT_EQ(c.text.find(stop), std::string::npos);
  EXPECT_LE(c.last().completion_tokens, 5);
}

TEST_F(SimTest, ContextOverflowIsInvalidArgumentWithBothNumbers) {
  auto e = Loaded({}, {}, 100);
  GenerateRequest r;
  r.prompt = Words(30);
  r.sampling.max_tokens = 80;
  auto g = e->Submit(r, [](const GenerateEvent&) {});
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), Code::kInvalidArgument);
  EXPECT_NE(g.status().message().find("30"), std::string::npos);
  EXPECT_NE(g.status().message().find("80"), std::string::npos);
  EXPECT_NE(g.status().message().find("100"), std::string::npos);
  // max_tokens unset (0): whatever the context leaves.
  r.sampling.max_tokens = 0;
  Collector c;
  c.clock = &clock_;
  ASSERT_TRUE(e->Submit(r, c.Callback()).ok());
  RunUntilIdle();
  EXPECT_EQ(c.last().completion_tokens + c.last().prompt_tokens <= 100, true);
  r.prompt = Words(100);
  EXPECT_EQ(e->Submit(r, [](const GenerateEvent&) {}).status().code(), Code::kInvalidArgument);
}

TEST_F(SimTest, QueueFullIsResourceExhausted) {
  auto e = Loaded({{"maxSequences", 1}}, Opts(0, 2));
  Collector a, b, c;
  Submit(*e, a, "one", 5);
  Submit(*e, b, "two", 5);
  GenerateRequest r;
  r.prompt = "three";
  r.sampling.max_tokens = 5;
  auto g = e->Submit(r, [](const GenerateEvent&) {});
  EXPECT_EQ(g.status().code(), Code::kResourceExhausted);
  scheduler_.RunDue();  // "one" is admitted: one waiting
  EXPECT_EQ(e->Stats().queued, 1);
  EXPECT_EQ(e->Stats().running, 1);
  Submit(*e, c, "three", 5);
  RunUntilIdle();
  EXPECT_TRUE(a.done() && b.done() && c.done());
}

TEST_F(SimTest, NotLoadedIsFailedPrecondition) {
  SimEngine e(scheduler_);
  GenerateRequest r;
  r.prompt = "x";
  EXPECT_EQ(e.Submit(r, [](const GenerateEvent&) {}).status().code(), Code::kFailedPrecondition);
  ModelSpec spec = Spec({});
  spec.engine = "llamacpp";
  std::atomic<bool> cancel{false};
  EXPECT_EQ(e.Load(spec, nullptr, cancel).code(), Code::kInvalidArgument);
}

TEST_F(SimTest, CancelEndsRunningAndQueuedRequests) {
  auto e = Loaded({{"maxSequences", 1}, {"decodeStepSeconds", 0.02}}, Opts(0));
  Collector a, b;
  auto ga = Submit(*e, a, "first", 100);
  auto gb = Submit(*e, b, "second", 100);
  clock_.Advance(100ms);
  scheduler_.RunDue();
  EXPECT_FALSE(a.done());
  const int64_t tokens_before = static_cast<int64_t>(a.TokenTimes().size());
  EXPECT_GT(tokens_before, 1);
  ga->Cancel();
  gb->Cancel();
  scheduler_.RunDue();  // no time passes: cancellation is immediate
  ASSERT_TRUE(a.done());
  ASSERT_TRUE(b.done());
  EXPECT_EQ(a.last().finish_reason, "cancelled");
  EXPECT_EQ(b.last().finish_reason, "cancelled");
  EXPECT_EQ(b.last().completion_tokens, 0);
  const auto s = e->Stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.queued, 0);
  EXPECT_EQ(s.kv_cache_utilization, 0);
  // Idempotent, and nothing more arrives.
  const size_t events = a.events.size();
  ga->Cancel();
  RunUntilIdle();
  EXPECT_EQ(a.events.size(), events);
}

TEST_F(SimTest, UnloadCancelsEverythingOnTheCallersThread) {
  auto e = Loaded({}, Opts(0));
  Collector a;
  auto g = Submit(*e, a, "x", 100);
  clock_.Advance(100ms);
  scheduler_.RunDue();
  e->Unload();
  ASSERT_TRUE(a.done());
  EXPECT_EQ(a.last().finish_reason, "cancelled");
  GenerateRequest r;
  EXPECT_EQ(e->Submit(r, [](const GenerateEvent&) {}).status().code(), Code::kFailedPrecondition);
  g->Cancel();  // after Unload: harmless
  EXPECT_EQ(scheduler_.NextDeadline(), std::nullopt);
}

TEST_F(SimTest, CallbackMaySubmitAndThrowSafely) {
  auto e = Loaded({}, Opts(0));
  Collector second;
  second.clock = &clock_;
  int calls = 0;
  GenerateRequest r;
  r.prompt = "a";
  r.sampling.max_tokens = 2;
  auto g = e->Submit(r, [&](const GenerateEvent& ev) {
    ++calls;
    if (ev.done) {
      GenerateRequest r2;
      r2.prompt = "b";
      r2.sampling.max_tokens = 2;
      EXPECT_TRUE(e->Submit(r2, second.Callback()).ok());
    }
    throw std::runtime_error("callback bug");
  });
  ASSERT_TRUE(g.ok());
  RunUntilIdle();
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(second.done());
}

TEST_F(SimTest, EnginesShareOneSchedulerIndependently) {
  const nlohmann::json fast = {{"prefillSecondsPerToken", 0.0},
                               {"decodeStepSeconds", 0.01},
                               {"decodeStepSecondsPerContextToken", 0.0}};
  nlohmann::json slow = fast;
  slow["decodeStepSeconds"] = 0.03;
  auto a = Loaded(fast, Opts(0));
  auto b = Loaded(slow, Opts(0));
  Collector ca, cb;
  const TimePoint t0 = clock_.Now();
  Submit(*a, ca, "x", 10);
  Submit(*b, cb, "y", 10);
  RunUntilIdle();
  EXPECT_NEAR(Since(t0, ca.times.back()), 9 * 0.01, 1e-9);
  EXPECT_NEAR(Since(t0, cb.times.back()), 9 * 0.03, 1e-9);
}

TEST_F(SimTest, StatsReportRatesAndPercentiles) {
  auto e = Loaded({{"prefillSecondsPerToken", 0.0},
                   {"decodeStepSeconds", 0.01},
                   {"decodeStepSecondsPerContextToken", 0.0},
                   {"decodeStepSecondsPerSequence", 0.0}},
                  Opts(0));
  clock_.Advance(20s);  // loaded long ago: the rate is over the full 10 s
  std::vector<Collector> cs(4);
  for (auto& c : cs) Submit(*e, c, "x", 101);
  // 100 decode steps of 4 sequences in 1 s.
  RunUntilIdle();
  auto s = e->Stats();
  EXPECT_EQ(s.generated_tokens_total, 404);
  EXPECT_NEAR(s.tokens_per_second, 404 / 10.0, 1e-9);
  EXPECT_NEAR(s.tpot_p50_s, 0.01, 1e-9);
  EXPECT_NEAR(s.tpot_p99_s, 0.01, 1e-9);
  EXPECT_NEAR(s.ttft_p99_s, 0.0, 1e-9);
  clock_.Advance(61s);
  s = e->Stats();
  EXPECT_EQ(s.tokens_per_second, 0);
  EXPECT_EQ(s.ttft_p50_s, 0);
  EXPECT_EQ(s.requests_finished_total, 4);
}

TEST(SimEngineLoadTest, ProgressOnVirtualTimeAndCancel) {
  FakeClock clock;
  SimEngine e(clock);
  ModelSpec spec = Spec({});
  spec.sim["loadSeconds"] = 2.0;
  spec.memory_bytes = 1000;
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> seen;
  std::atomic<bool> cancel{false};
  std::atomic<bool> returned{false};
  common::Status st;
  // Advances virtual time in 100 ms ticks until the loader returns.
  auto drive = [&](std::thread& t) {
    while (!returned) {
      clock.Advance(100ms);
      std::this_thread::sleep_for(1ms);
    }
    t.join();
    returned = false;
  };
  std::thread loader([&] {
    st = e.Load(
        spec,
        [&](int64_t done, int64_t total) {
          std::lock_guard lock(mu);
          seen.emplace_back(done, total);
        },
        cancel);
    returned = true;
  });
  drive(loader);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_GE(seen.size(), 10u);
  EXPECT_EQ(seen.front(), std::make_pair(int64_t{0}, int64_t{1000}));
  EXPECT_EQ(seen.back(), std::make_pair(int64_t{1000}, int64_t{1000}));
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i].first, seen[i - 1].first);
  EXPECT_EQ(e.context_length(), 4096);
  EXPECT_EQ(e.Load(spec, nullptr, cancel).code(), Code::kFailedPrecondition);  // already loaded

  SimEngine e2(clock);
  std::atomic<bool> cancel2{false};
  int64_t last_progress = 0;
  std::thread loader2([&] {
    // Cancelled half-way: the next tick sees it.
    st = e2.Load(
        spec,
        [&](int64_t done, int64_t total) {
          last_progress = done;
          if (done >= total / 2) cancel2 = true;
        },
        cancel2);
    returned = true;
  });
  drive(loader2);
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_EQ(st.message(), "load cancelled");
  EXPECT_GE(last_progress, 500);
  EXPECT_LT(last_progress, 1000);
  GenerateRequest r;
  EXPECT_EQ(e2.Submit(r, [](const GenerateEvent&) {}).status().code(), Code::kFailedPrecondition);
}

// The stepping thread on a virtual clock: steps happen as a test advances
// time, with no RunDue.
TEST(SimEngineThreadTest, SteppingThreadFollowsAFakeClock) {
  FakeClock clock;
  SimScheduler scheduler(clock);
  SimEngine e(scheduler, Opts(0));
  std::atomic<bool> cancel{false};
  ASSERT_TRUE(e.Load(Spec({{"decodeStepSeconds", 0.02}}), nullptr, cancel).ok());
  std::mutex mu;
  std::condition_variable cv;
  std::optional<GenerateEvent> done;
  GenerateRequest r;
  r.prompt = "hello";
  r.sampling.max_tokens = 10;
  ASSERT_TRUE(e.Submit(r, [&](const GenerateEvent& ev) {
                 if (!ev.done) return;
                 std::lock_guard lock(mu);
                 done = ev;
                 cv.notify_all();
               }).ok());
  std::unique_lock lock(mu);
  for (int i = 0; i < 2000 && !done; ++i) {
    lock.unlock();
    clock.Advance(10ms);
    lock.lock();
    cv.wait_for(lock, 2ms, [&] { return done.has_value(); });
  }
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->completion_tokens, 10);
  // Exact however the thread interleaved with Advance.
  const double tpot = (done->total_s - done->time_to_first_token_s) / 9;
  EXPECT_NEAR(tpot, 0.02 + 2e-7 * (1 + 5), 1e-9);  // decode k reads 1 + k tokens, k = 1..9
}

// Real time: what a client measures matches the model within 5%.
TEST(SimEngineThreadTest, RealClockTimingsWithinFivePercent) {
  common::RealClock clock;
  SimScheduler scheduler(clock);
  SimEngine e(scheduler, Opts(0));
  std::atomic<bool> cancel{false};
  ASSERT_TRUE(e.Load(Spec({{"prefillSecondsPerToken", 0.002},
                           {"decodeStepSeconds", 0.02},
                           {"decodeStepSecondsPerSequence", 0.0},
                           {"decodeStepSecondsPerContextToken", 0.0}}),
                     nullptr, cancel)
                  .ok());
  constexpr int kTokens = 16;
  std::vector<double> ttfts, tpots;
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::chrono::steady_clock::time_point> times;
    bool finished = false;
    GenerateRequest r;
    r.prompt = Words(10);  // 20 ms of prefill
    r.sampling.max_tokens = kTokens;
    r.sampling.seed = attempt;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(e.Submit(r, [&](const GenerateEvent& ev) {
                   std::lock_guard lock(mu);
                   if (!ev.text.empty()) times.push_back(std::chrono::steady_clock::now());
                   if (ev.done) {
                     finished = true;
                     cv.notify_all();
                   }
                 }).ok());
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return finished; }));
    ASSERT_EQ(times.size(), static_cast<size_t>(kTokens));
    ttfts.push_back(std::chrono::duration<double>(times[0] - t0).count());
    tpots.push_back(std::chrono::duration<double>(times.back() - times[0]).count() / (kTokens - 1));
  }
  std::sort(ttfts.begin(), ttfts.end());
  std::sort(tpots.begin(), tpots.end());
  EXPECT_NEAR(ttfts[1], 0.020, 0.020 * 0.05);
  EXPECT_NEAR(tpots[1], 0.020, 0.020 * 0.05);
}

TEST(SimEngineTokensTest, ChatTemplateAndCounts) {
  common::FakeClock clock;
  SimEngine e(clock);
  EXPECT_EQ(e.CountTokens(""), 0);
  EXPECT_EQ(e.CountTokens("  a  b\tc\n"), 3);
  const std::string chat = SimEngine::RenderChat({{"system", "be brief"}, {"user", "hi there"}});
  EXPECT_EQ(chat, "system: be brief\nuser: hi there\nassistant:");
  EXPECT_EQ(e.CountTokens(chat), 7);
  EXPECT_EQ(e.name(), "sim");
}

}  // namespace
}  // namespace corral::worker
