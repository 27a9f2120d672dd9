// llamacpp_bench: tokens/s of the llama.cpp engine (worker/llamacpp_engine.h)
// against the same model driven directly through llama.h in the same run, so
// the ratio shows what the engine adds (its thread, queue, per-sequence
// sampler chains, UTF-8 and stop-sequence handling, event callbacks).
//
// Both sides run the same work: `--sequences` prompts decoded together in
// `--parallel` slots, greedy, `--max-tokens` each, on the same thread count.
// Rounds alternate raw/engine so drift on a shared machine hits both; the
// median round is reported.
//
// Usage: llamacpp_bench [--model F.gguf] [--n-embd 64 --n-layer 2 ...]
//          [--parallel 4] [--sequences 16] [--max-tokens 128] [--rounds 7] [--threads 2]
// Without --model it writes a random-weight model with corral_gguf_gen.
#include <llama.h>
#include <stdlib.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/subprocess.h"
#include "worker/llamacpp_engine.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::string model;
  int parallel = 4;
  int sequences = 16;
  int max_tokens = 128;
  int threads = 2;
  int context = 512;
  std::vector<std::string> prompts;
};

struct Run {
  int64_t tokens = 0;
  double seconds = 0;
  double tps() const { return seconds > 0 ? tokens / seconds : 0; }
};

void QuietLog(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

// The reference: a minimal continuous-batching loop written against llama.h
// only, the way llama.cpp's own examples do it (batched.cpp).
Run RawRun(llama_model* model, const Config& cfg) {
  llama_context_params cp = llama_context_default_params();
  const int64_t cells = (cfg.context + 255) / 256 * 256;
  cp.n_ctx = static_cast<uint32_t>(cells * cfg.parallel);
  cp.n_batch = 512;
  cp.n_ubatch = 512;
  cp.n_seq_max = static_cast<uint32_t>(cfg.parallel);
  cp.n_threads = cfg.threads;
  cp.n_threads_batch = cfg.threads;
  cp.kv_unified = false;
  cp.no_perf = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  const llama_vocab* vocab = llama_model_get_vocab(model);

  struct Seq {
    std::vector<llama_token> prompt;
    llama_pos n_past = 0;
    llama_token next = -1;
    int generated = 0;
    int32_t out = -1;
    llama_sampler* smpl = nullptr;
    std::string text;
  };
  Run run;
  const auto start = Clock::now();
  size_t next_prompt = 0;
  std::vector<Seq> slots(static_cast<size_t>(cfg.parallel));
  std::vector<bool> busy(slots.size(), false);
  llama_batch batch = llama_batch_init(512, 0, 1);
  int finished = 0;
  while (finished < cfg.sequences) {
    for (size_t i = 0; i < slots.size(); ++i) {
      if (busy[i] || next_prompt >= static_cast<size_t>(cfg.sequences)) continue;
      Seq s;
      const std::string& p = cfg.prompts[next_prompt++ % cfg.prompts.size()];
      s.prompt.resize(p.size() + 8);
      const int n = llama_tokenize(vocab, p.data(), static_cast<int32_t>(p.size()), s.prompt.data(),
                                   static_cast<int32_t>(s.prompt.size()), true, true);
      s.prompt.resize(static_cast<size_t>(std::max(0, n)));
      s.smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
      llama_sampler_chain_add(s.smpl, llama_sampler_init_greedy());
      llama_memory_seq_rm(llama_get_memory(ctx), static_cast<llama_seq_id>(i), -1, -1);
      slots[i] = std::move(s);
      busy[i] = true;
    }
    batch.n_tokens = 0;
    auto add = [&](llama_token t, llama_pos pos, int seq, bool logits) {
      const int k = batch.n_tokens++;
      batch.token[k] = t;
      batch.pos[k] = pos;
      batch.n_seq_id[k] = 1;
      batch.seq_id[k][0] = seq;
      batch.logits[k] = logits;
      return k;
    };
    for (size_t i = 0; i < slots.size(); ++i) {
      if (!busy[i]) continue;
      Seq& s = slots[i];
      if (s.next >= 0) {
        s.out = add(s.next, s.n_past++, static_cast<int>(i), true);
      } else {
        for (size_t j = 0; j < s.prompt.size(); ++j) {
          s.out = add(s.prompt[j], s.n_past++, static_cast<int>(i), j + 1 == s.prompt.size());
        }
      }
    }
    if (llama_decode(ctx, batch) != 0) {
      std::fprintf(stderr, "raw: llama_decode failed\n");
      break;
    }
    for (size_t i = 0; i < slots.size(); ++i) {
      if (!busy[i]) continue;
      Seq& s = slots[i];
      const llama_token t = llama_sampler_sample(s.smpl, ctx, s.out);
      if (llama_vocab_is_eog(vocab, t) || s.generated + 1 > cfg.max_tokens) {
        busy[i] = false;
        llama_sampler_free(s.smpl);
        ++finished;
        continue;
      }
      char buf[128];
      const int n = llama_token_to_piece(vocab, t, buf, sizeof(buf), 0, false);
      if (n > 0) s.text.append(buf, static_cast<size_t>(n));
      ++s.generated;
      ++run.tokens;
      s.next = t;
      if (s.generated >= cfg.max_tokens) {
        busy[i] = false;
        llama_sampler_free(s.smpl);
        ++finished;
      }
    }
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  llama_batch_free(batch);
  llama_free(ctx);
  return run;
}

Run EngineRun(corral::worker::LlamaCppEngine& engine, const Config& cfg) {
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  int64_t tokens = 0;
  std::vector<std::shared_ptr<corral::worker::Generation>> gens;
  const auto start = Clock::now();
  for (int i = 0; i < cfg.sequences; ++i) {
    corral::worker::GenerateRequest req;
    req.id = "bench-" + std::to_string(i);
    req.prompt = cfg.prompts[static_cast<size_t>(i) % cfg.prompts.size()];
    req.sampling.temperature = 0;
    req.sampling.max_tokens = cfg.max_tokens;
    auto g = engine.Submit(req, [&](const corral::worker::GenerateEvent& ev) {
      if (!ev.done) return;
      std::lock_guard<std::mutex> lock(mu);
      tokens += ev.completion_tokens;
      ++done;
      cv.notify_all();
    });
    if (!g.ok()) {
      std::fprintf(stderr, "engine: %s\n", g.status().ToString().c_str());
      std::exit(1);
    }
    gens.push_back(*g);
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done == cfg.sequences; });
  Run run;
  run.tokens = tokens;
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return run;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"llama.cpp engine vs raw llama.h tokens/s on the same model, same run"};
  Config cfg;
  int rounds = 7;
  std::string n_embd = "64", n_layer = "2", n_ff = "128", n_head = "4";
  app.add_option("--model", cfg.model, "GGUF model (default: generate a random one)");
  app.add_option("--n-embd", n_embd, "generated model: embedding width");
  app.add_option("--n-layer", n_layer, "generated model: layers");
  app.add_option("--n-ff", n_ff, "generated model: feed-forward width");
  app.add_option("--n-head", n_head, "generated model: heads");
  app.add_option("--parallel", cfg.parallel, "sequence slots")->check(CLI::Range(1, 64));
  app.add_option("--sequences", cfg.sequences, "requests per round")->check(CLI::Range(1, 4096));
  app.add_option("--max-tokens", cfg.max_tokens, "tokens per request")->check(CLI::Range(1, 4096));
  app.add_option("--rounds", rounds, "rounds (median reported)")->check(CLI::Range(1, 100));
  app.add_option("--threads", cfg.threads, "CPU threads")->check(CLI::Range(1, 256));
  CLI11_PARSE(app, argc, argv);
  cfg.context = std::max(512, cfg.max_tokens + 64);
  cfg.prompts = {"hello world",         "the fleet of llama",
                 "one token at a time", "corral the worker engine",
                 "I have a dog",        "is it the model"};

  std::string tmpdir;
  if (cfg.model.empty()) {
    char tmpl[] = "/tmp/corral-llamacpp-bench-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return 1;
    tmpdir = tmpl;
    cfg.model = tmpdir + "/bench.gguf";
    auto r = corral::common::RunProcess({CORRAL_GGUF_GEN, "--out", cfg.model, "--n-embd", n_embd,
                                         "--n-layer", n_layer, "--n-ff", n_ff, "--n-head", n_head,
                                         "--n-head-kv", n_head, "--n-ctx", "4096"});
    if (!r.ok() || r->exit_code != 0) {
      std::fprintf(stderr, "corral_gguf_gen failed: %s\n", r.ok() ? r->output.c_str() : "");
      return 1;
    }
  }

  // The engine first: its Load initializes the llama backend and log routing.
  corral::common::RealClock clock;
  corral::worker::LlamaCppEngine engine(clock);
  corral::worker::ModelSpec spec;
  spec.name = "bench";
  spec.engine = "llamacpp";
  spec.source = cfg.model;
  spec.context_length = cfg.context;
  spec.llamacpp = {{"parallel", cfg.parallel}, {"threads", cfg.threads}, {"batchSize", 512}};
  std::atomic<bool> cancel{false};
  if (auto st = engine.Load(spec, nullptr, cancel); !st.ok()) {
    std::fprintf(stderr, "engine load: %s\n", st.ToString().c_str());
    return 1;
  }
  llama_log_set(QuietLog, nullptr);
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(cfg.model.c_str(), mp);
  if (model == nullptr) return 1;

  // One warm-up round each (page faults, thread pools).
  RawRun(model, cfg);
  EngineRun(engine, cfg);
  std::vector<double> raw_tps, eng_tps, ratios;
  for (int r = 0; r < rounds; ++r) {
    const Run raw = RawRun(model, cfg);
    const Run eng = EngineRun(engine, cfg);
    raw_tps.push_back(raw.tps());
    eng_tps.push_back(eng.tps());
    ratios.push_back(raw.tps() > 0 ? eng.tps() / raw.tps() : 0);
    std::printf(
        "round %d: raw %.0f tok/s (%lld tokens, %.3f s), engine %.0f tok/s (%lld tokens, "
        "%.3f s)\n",
        r + 1, raw.tps(), static_cast<long long>(raw.tokens), raw.seconds, eng.tps(),
        static_cast<long long>(eng.tokens), eng.seconds);
  }
  std::printf("model %s, %d sequences in %d slots, %d tokens each, %d threads\n", cfg.model.c_str(),
              cfg.sequences, cfg.parallel, cfg.max_tokens, cfg.threads);
  std::printf("median: raw llama.h %.0f tok/s, engine %.0f tok/s, ratio %.3f (target >= 0.9)\n",
              Median(raw_tps), Median(eng_tps), Median(ratios));
  llama_model_free(model);
  engine.Unload();
  if (!tmpdir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(tmpdir, ec);
  }
  return 0;
}
