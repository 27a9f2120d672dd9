// The llama.cpp engine on a real (tiny, random-weight) GGUF model that
// corral_gguf_gen writes at test time: loading, streaming, parallel
// sequences, stop sequences, cancellation and the error paths.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/subprocess.h"
#include "worker/llamacpp_engine.h"

#ifndef CORRAL_GGUF_GEN
#error "CORRAL_GGUF_GEN must name the corral_gguf_gen binary"
#endif

namespace corral::worker {
namespace {

using namespace std::chrono_literals;

bool ValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80             ? 1
               : (c & 0xE0) == 0xC0 ? 2
               : (c & 0xF0) == 0xE0 ? 3
               : (c & 0xF8) == 0xF0 ? 4
                                    : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t j = 1; j < n; ++j) {
      if ((static_cast<unsigned char>(s[i + j]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

// Collects one generation's events; Wait() blocks until the final one.
class Collector {
 public:
  std::function<void(const GenerateEvent&)> Callback() {
    return [this](const GenerateEvent& ev) {
      std::lock_guard<std::mutex> lock(mu_);
      if (done_) {
        events_after_done_++;
        return;
      }
      if (!ev.text.empty()) pieces_.push_back(ev.text);
      text_ += ev.text;
      if (ev.done) {
        done_ = true;
        final_ = ev;
        cv_.notify_all();
      } else {
        non_final_++;
        if (on_piece_) on_piece_();
      }
    };
  }
  bool Wait(std::chrono::seconds timeout = 60s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_; });
  }
  void OnPiece(std::function<void()> f) { on_piece_ = std::move(f); }
  std::string text() {
    std::lock_guard<std::mutex> lock(mu_);
    return text_;
  }
  GenerateEvent final_event() {
    std::lock_guard<std::mutex> lock(mu_);
    return final_;
  }
  std::vector<std::string> pieces() {
    std::lock_guard<std::mutex> lock(mu_);
    return pieces_;
  }
  int events_after_done() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_after_done_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  GenerateEvent final_;
  std::string text_;
  std::vector<std::string> pieces_;
  int non_final_ = 0;
  int events_after_done_ = 0;
  std::function<void()> on_piece_;
};

class LlamaCppEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/corral-llamacpp-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    model_path_ = dir_ + "/tiny.gguf";
    auto r = common::RunProcess({CORRAL_GGUF_GEN, "--out", model_path_, "--seed", "7"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->exit_code, 0) << r->output;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  ModelSpec Spec(int parallel = 4, int64_t context = 256) {
    ModelSpec spec;
    spec.name = "tiny";
    spec.engine = "llamacpp";
    spec.source = "file://" + model_path_;
    spec.context_length = context;
    spec.llamacpp = {{"parallel", parallel}, {"threads", 2}};
    return spec;
  }

  void LoadOrDie(LlamaCppEngine& engine, const ModelSpec& spec) {
    std::atomic<bool> cancel{false};
    auto st = engine.Load(spec, nullptr, cancel);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  static GenerateRequest Prompt(std::string prompt, int max_tokens, double temperature = 0) {
    GenerateRequest r;
    r.id = "t";
    r.prompt = std::move(prompt);
    r.sampling.max_tokens = max_tokens;
    r.sampling.temperature = temperature;
    r.sampling.seed = 42;
    return r;
  }

  // Runs one request alone to completion.
  std::pair<std::string, GenerateEvent> RunOne(LlamaCppEngine& engine, GenerateRequest req) {
    Collector c;
    auto gen = engine.Submit(std::move(req), c.Callback());
    EXPECT_TRUE(gen.ok()) << gen.status().ToString();
    if (!gen.ok()) return {};
    EXPECT_TRUE(c.Wait());
    return {c.text(), c.final_event()};
  }

  common::RealClock clock_;
  static std::string dir_;
  static std::string model_path_;
};

std::string LlamaCppEngineTest::dir_;
std::string LlamaCppEngineTest::model_path_;

TEST_F(LlamaCppEngineTest, LoadReportsProgressInBytesOfTheFile) {
  LlamaCppEngine engine(clock_);
  std::vector<std::pair<int64_t, int64_t>> calls;
  std::atomic<bool> cancel{false};
  auto st = engine.Load(
      Spec(), [&](int64_t done, int64_t total) { calls.emplace_back(done, total); }, cancel);
  ASSERT_TRUE(st.ok()) << st.ToString();
  const auto size = static_cast<int64_t>(std::filesystem::file_size(model_path_));
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back(), std::make_pair(size, size));
  for (size_t i = 1; i < calls.size(); ++i) EXPECT_LE(calls[i - 1].first, calls[i].first);
  EXPECT_EQ(engine.name(), "llamacpp");
  EXPECT_NE(engine.version().find("llama.cpp"), std::string::npos);
  EXPECT_EQ(engine.context_length(), 256);
  EXPECT_GT(engine.CountTokens("hello world"), 0);
  // A second Load without Unload is refused.
  EXPECT_EQ(engine.Load(Spec(), nullptr, cancel).code(), common::Code::kFailedPrecondition);
}

TEST_F(LlamaCppEngineTest, StreamsValidUtf8PiecesAndCountsTokens) {
  LlamaCppEngine engine(clock_);
  LoadOrDie(engine, Spec());
  Collector c;
  auto gen = engine.Submit(Prompt("hello world, the model", 24, 0.9), c.Callback());
  ASSERT_TRUE(gen.ok()) << gen.status().ToString();
  ASSERT_TRUE(c.Wait());
  const GenerateEvent fin = c.final_event();
  EXPECT_TRUE(fin.finish_reason == "length" || fin.finish_reason == "stop") << fin.finish_reason;
  if (fin.finish_reason == "length") {
    EXPECT_EQ(fin.completion_tokens, 24);
  }
  EXPECT_GT(fin.completion_tokens, 0);
  EXPECT_LE(fin.completion_tokens, 24);
  EXPECT_EQ(fin.prompt_tokens, engine.CountTokens("hello world, the model") + 1);  // + BOS
  EXPECT_GT(fin.total_s, 0);
  EXPECT_GT(fin.time_to_first_token_s, 0);
  EXPECT_LE(fin.time_to_first_token_s, fin.total_s);
  EXPECT_FALSE(c.pieces().empty());
  for (const auto& p : c.pieces()) EXPECT_TRUE(ValidUtf8(p));
  EXPECT_EQ(c.events_after_done(), 0);
  const EngineStats stats = engine.Stats();
  EXPECT_EQ(stats.requests_finished_total, 1);
  EXPECT_EQ(stats.generated_tokens_total, fin.completion_tokens);
  EXPECT_EQ(stats.prompt_tokens_total, fin.prompt_tokens);
  EXPECT_EQ(stats.running, 0);
}

TEST_F(LlamaCppEngineTest, SameSeedSameText) {
  LlamaCppEngine engine(clock_);
  LoadOrDie(engine, Spec());
  auto a = RunOne(engine, Prompt("the cat and the dog", 20, 0.8));
  auto b = RunOne(engine, Prompt("the cat and the dog", 20, 0.8));
  EXPECT_EQ(a.first, b.first);
  EXPECT_FALSE(a.first.empty());
}

TEST_F(LlamaCppEngineTest, ParallelSequencesShareBatchesWithoutMixingState) {
  // Greedy outputs computed one at a time are the reference; the same
  // requests submitted together must run in one batch (several running at
  // once) and each produce its own reference text: the KV cache of one
  // sequence does not leak into another.
  LlamaCppEngine engine(clock_);
  LoadOrDie(engine, Spec(/*parallel=*/4));
  const std::vector<std::string> prompts = {"hello world",         "the fleet of llama",
                                            "one token at a time", "corral the worker engine",
                                            "I have a dog",        "is it the model"};
  std::vector<std::string> reference;
  for (const auto& p : prompts) reference.push_back(RunOne(engine, Prompt(p, 16)).first);

  std::vector<std::unique_ptr<Collector>> collectors;
  std::vector<std::shared_ptr<Generation>> gens;
  std::atomic<int64_t> max_running{0};
  for (const auto& p : prompts) {
    collectors.push_back(std::make_unique<Collector>());
    collectors.back()->OnPiece([&] {
      const int64_t r = engine.Stats().running;
      int64_t m = max_running.load();
      while (r > m && !max_running.compare_exchange_weak(m, r)) {
      }
    });
    auto gen = engine.Submit(Prompt(p, 16), collectors.back()->Callback());
    ASSERT_TRUE(gen.ok()) << gen.status().ToString();
    gens.push_back(*gen);
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(collectors[i]->Wait());
    EXPECT_EQ(collectors[i]->text(), reference[i]) << "prompt " << prompts[i];
  }
  EXPECT_GE(max_running.load(), 2);
  EXPECT_LE(max_running.load(), 4);  // never more than the slots
  EXPECT_EQ(engine.Stats().requests_finished_total, static_cast<int64_t>(2 * prompts.size()));
}

TEST_F(LlamaCppEngineTest, StopSequenceEndsTheOutputBeforeIt) {
  LlamaCppEngine engine(clock_);
  LoadOrDie(engine, Spec());
  auto [full, fin] = RunOne(engine, Prompt("hello world", 40));
  ASSERT_GE(full.size(), 12u) << full;
  // A stop sequence from the middle of the output, likely spanning tokens.
  const std::string stop = full.substr(6, 4);
  const std::string expected = full.substr(0, full.find(stop));

  auto req = Prompt("hello world", 40);
  req.sampling.stop = {"never appears \x01", stop};
  Collector c;
  auto gen = engine.Submit(req, c.Callback());
  ASSERT_TRUE(gen.ok());
  ASSERT_TRUE(c.Wait());
  EXPECT_EQ(c.text(), expected);
  EXPECT_EQ(c.final_event().finish_reason, "stop");
  EXPECT_LT(c.final_event().completion_tokens, fin.completion_tokens);
  // Streamed pieces never contained any part of the stop sequence's text
  // past the cut.
  std::string joined;
  for (const auto& p : c.pieces()) joined += p;
  EXPECT_EQ(joined, expected);
}

TEST_F(LlamaCppEngineTest, CancelEndsRunningAndQueuedGenerations) {
  LlamaCppEngine engine(clock_);
  LoadOrDie(engine, Spec(/*parallel=*/1, /*context=*/512));
  Collector running;
  std::shared_ptr<Generation> running_gen;
  std::mutex gen_mu;
  running.OnPiece([&] {
    std::lock_guard<std::mutex> lock(gen_mu);
    if (running_gen) running_gen->Cancel();  // from the engine thread itself
  });
  {
    std::lock_guard<std::mutex> lock(gen_mu);
    auto g = engine.Submit(Prompt("hello", 400, 0.8), running.Callback());
    ASSERT_TRUE(g.ok());
    running_gen = *g;
  }
  // Only one slot: this one waits in the queue, and is cancelled there.
  Collector queued;
  auto q = engine.Submit(Prompt("world", 400, 0.8), queued.Callback());
  ASSERT_TRUE(q.ok());
  (*q)->Cancel();
  (*q)->Cancel();  // idempotent
  ASSERT_TRUE(running.Wait());
  ASSERT_TRUE(queued.Wait());
  EXPECT_EQ(running.final_event().finish_reason, "cancelled");
  EXPECT_LT(running.final_event().completion_tokens, 400);
  EXPECT_EQ(queued.final_event().finish_reason, "cancelled");
  EXPECT_EQ(queued.final_event().completion_tokens, 0);
  running_gen->Cancel();  // after done: no second final event
  EXPECT_EQ(running.events_after_done(), 0);
  // The slot is free again.
  auto after = RunOne(engine, Prompt("again", 4));
  EXPECT_EQ(after.second.finish_reason.empty(), false);
}

TEST_F(LlamaCppEngineTest, FullQueueIsResourceExhausted) {
  LlamaCppOptions options;
  options.max_queued = 1;
  LlamaCppEngine engine(clock_, options);
  LoadOrDie(engine, Spec(/*parallel=*/1, /*context=*/512));
  // One slot and one queue place: of three long requests at most two fit.
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<std::shared_ptr<Generation>> gens;
  int refused = 0;
  for (int i = 0; i < 3; ++i) {
    cs.push_back(std::make_unique<Collector>());
    auto g = engine.Submit(Prompt("hello", 400, 0.8), cs.back()->Callback());
    if (g.ok()) {
      gens.push_back(*g);
    } else {
      EXPECT_EQ(g.status().code(), common::Code::kResourceExhausted) << g.status().ToString();
      ++refused;
    }
  }
  EXPECT_GE(refused, 1);
  for (auto& g : gens) g->Cancel();
  // The accepted ones end (their collectors must outlive the callbacks).
  int ended = 0;
  for (auto& c : cs) ended += c->Wait(1s) ? 1 : 0;
  EXPECT_EQ(ended, 3 - refused);
}

TEST_F(LlamaCppEngineTest, ContextOverflowIsInvalidArgumentWithBothNumbers) {
  LlamaCppEngine engine(clock_);
  LoadOrDie(engine, Spec(/*parallel=*/2, /*context=*/256));
  auto r = engine.Submit(Prompt("hello world", 300), [](const GenerateEvent&) {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), common::Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("300"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("256"), std::string::npos) << r.status().message();

  std::string long_prompt;
  for (int i = 0; i < 300; ++i) long_prompt += "the ";
  auto r2 = engine.Submit(Prompt(long_prompt, 1), [](const GenerateEvent&) {});
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.status().code(), common::Code::kInvalidArgument);
  EXPECT_NE(r2.status().message().find(std::to_string(engine.CountTokens(long_prompt) + 1)),
            std::string::npos)
      << r2.status().message();

  auto r3 = engine.Submit(Prompt("hello", 0), [](const GenerateEvent&) {});
  EXPECT_EQ(r3.status().code(), common::Code::kInvalidArgument);
}

TEST_F(LlamaCppEngineTest, MissingFileIsNotFoundNamingThePath) {
  LlamaCppEngine engine(clock_);
  auto spec = Spec();
  spec.source = "file://" + dir_ + "/no-such-model.gguf";
  std::atomic<bool> cancel{false};
  auto st = engine.Load(spec, nullptr, cancel);
  EXPECT_EQ(st.code(), common::Code::kNotFound);
  EXPECT_NE(st.message().find(dir_ + "/no-such-model.gguf"), std::string::npos) << st.message();
  // Not loaded: requests are refused.
  auto r = engine.Submit(Prompt("hi", 1), [](const GenerateEvent&) {});
  EXPECT_EQ(r.status().code(), common::Code::kFailedPrecondition);
}

TEST_F(LlamaCppEngineTest, RelativeSourceResolvesInTheCacheDir) {
  LlamaCppOptions options;
  options.cache_dir = dir_;
  LlamaCppEngine engine(clock_, options);
  auto spec = Spec();
  spec.source = "tiny.gguf";
  LoadOrDie(engine, spec);
}

TEST_F(LlamaCppEngineTest, NotAGgufFileIsInvalidArgument) {
  const std::string bogus = dir_ + "/bogus.gguf";
  {
    FILE* f = fopen(bogus.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs("this is not a model\n", f);
    fclose(f);
  }
  LlamaCppEngine engine(clock_);
  auto spec = Spec();
  spec.source = bogus;
  std::atomic<bool> cancel{false};
  auto st = engine.Load(spec, nullptr, cancel);
  EXPECT_EQ(st.code(), common::Code::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find(bogus), std::string::npos);
}

TEST_F(LlamaCppEngineTest, ModelLargerThanTheMemoryAllowedIsResourceExhausted) {
  LlamaCppOptions options;
  options.available_memory = [] { return int64_t{100'000}; };
  LlamaCppEngine engine(clock_, options);
  std::atomic<bool> cancel{false};
  auto st = engine.Load(Spec(), nullptr, cancel);
  EXPECT_EQ(st.code(), common::Code::kResourceExhausted);
  EXPECT_NE(st.message().find("100000"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(std::to_string(std::filesystem::file_size(model_path_))),
            std::string::npos)
      << st.message();

  // spec.resources.memoryBytes is a limit too.
  LlamaCppEngine engine2(clock_);
  auto spec = Spec();
  spec.memory_bytes = 200'000;
  st = engine2.Load(spec, nullptr, cancel);
  EXPECT_EQ(st.code(), common::Code::kResourceExhausted);
  EXPECT_NE(st.message().find("200000"), std::string::npos) << st.message();
}

TEST_F(LlamaCppEngineTest, CancelledLoadIsFailedPrecondition) {
  LlamaCppEngine engine(clock_);
  std::atomic<bool> cancel{false};
  auto st = engine.Load(
      Spec(), [&](int64_t, int64_t) { cancel.store(true); }, cancel);
  EXPECT_EQ(st.code(), common::Code::kFailedPrecondition) << st.ToString();
  EXPECT_EQ(st.message(), "load cancelled");
  EXPECT_EQ(engine.context_length(), 0);
  // The engine can load afterwards.
  LoadOrDie(engine, Spec());
}

TEST_F(LlamaCppEngineTest, ChatUsesTheModelTemplate) {
  LlamaCppEngine engine(clock_);
  LoadOrDie(engine, Spec());
  auto rendered = engine.RenderChat({{"system", "be brief"}, {"user", "hello"}});
  ASSERT_TRUE(rendered.ok());
  EXPECT_EQ(*rendered,
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
            "<|im_start|>assistant\n");
  GenerateRequest req;
  req.messages = {{"user", "hello"}};
  req.sampling.max_tokens = 8;
  req.sampling.temperature = 0;
  Collector c;
  auto gen = engine.Submit(req, c.Callback());
  ASSERT_TRUE(gen.ok()) << gen.status().ToString();
  ASSERT_TRUE(c.Wait());
  // <|im_start|> and <|im_end|> are single special tokens, not spelled out.
  EXPECT_EQ(engine.CountTokens("<|im_start|>"), 1);
  auto user_only = engine.RenderChat({{"user", "hello"}});
  ASSERT_TRUE(user_only.ok());
  EXPECT_EQ(c.final_event().prompt_tokens, engine.CountTokens(*user_only) + 1);  // + BOS
}

TEST_F(LlamaCppEngineTest, ChatWithoutTemplateUsesThePlainOne) {
  const std::string path = dir_ + "/plain.gguf";
  auto r = common::RunProcess({CORRAL_GGUF_GEN, "--out", path, "--chat-template", "none"});
  ASSERT_TRUE(r.ok() && r->exit_code == 0);
  LlamaCppEngine engine(clock_);
  auto spec = Spec();
  spec.source = path;
  LoadOrDie(engine, spec);
  auto rendered = engine.RenderChat({{"system", "be brief"}, {"user", "hello"}});
  ASSERT_TRUE(rendered.ok());
  EXPECT_EQ(*rendered, "system: be brief\nuser: hello\nassistant:");
}

TEST_F(LlamaCppEngineTest, UnloadEndsInFlightGenerationsAsCancelled) {
  LlamaCppEngine engine(clock_);
  LoadOrDie(engine, Spec(/*parallel=*/2, /*context=*/512));
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(engine.Submit(Prompt("hello", 400, 0.8), cs.back()->Callback()).ok());
  }
  engine.Unload();
  for (auto& c : cs) {
    ASSERT_TRUE(c->Wait(1s));
    const auto reason = c->final_event().finish_reason;
    EXPECT_TRUE(reason == "cancelled" || reason == "length" || reason == "stop") << reason;
  }
  EXPECT_EQ(engine.context_length(), 0);
  EXPECT_EQ(engine.Submit(Prompt("hi", 1), [](const GenerateEvent&) {}).status().code(),
            common::Code::kFailedPrecondition);
  // And loads again.
  LoadOrDie(engine, Spec());
  EXPECT_FALSE(RunOne(engine, Prompt("hi", 2)).first.empty() &&
               RunOne(engine, Prompt("hi", 2)).second.finish_reason.empty());
}

}  // namespace
}  // namespace corral::worker
