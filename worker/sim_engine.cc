#include "worker/sim_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <queue>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

namespace corral::worker {
namespace {

using common::Duration;
using common::TimePoint;

constexpr std::string_view kVersion = "1.0";
constexpr int64_t kDefaultContextLength = 4096;
constexpr int64_t kUnknownModelBytes = int64_t{1} << 30;  // load progress when memoryBytes is 0
constexpr Duration kStatsTokenWindow = std::chrono::seconds(10);
constexpr Duration kStatsTokenBucket = std::chrono::milliseconds(100);
constexpr Duration kStatsLatencyWindow = std::chrono::seconds(60);
constexpr size_t kStatsLatencyMaxSamples = 10000;

Duration Seconds(double s) {
  return std::chrono::round<Duration>(std::chrono::duration<double>(s));
}
double ToSeconds(Duration d) { return std::chrono::duration<double>(d).count(); }

// splitmix64: the PRNG step and the hash mixer (public domain, Vigna).
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
uint64_t NextRandom(uint64_t& state) {
  state += 0x9e3779b97f4a7c15ULL;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
double ToUnit(uint64_t r) { return static_cast<double>(r >> 11) * 0x1.0p-53; }

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Calls f(word) for each maximal run of non-whitespace.
template <typename F>
void ForEachWord(std::string_view text, F&& f) {
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && IsSpace(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !IsSpace(text[i])) ++i;
    if (i > start) f(text.substr(start, i - start));
  }
}

// The simulated model's vocabulary (one token per word).
constexpr std::array<std::string_view, 128> kVocabulary = {
    "the",     "a",        "model",   "replica",  "token",   "batch",  "cache",   "block",
    "request", "latency",  "stream",  "queue",    "node",    "fleet",  "scale",   "load",
    "and",     "of",       "to",      "in",       "is",      "on",     "with",    "for",
    "fast",    "slow",     "steady",  "warm",     "cold",    "quiet",  "busy",    "ready",
    "engine",  "gateway",  "server",  "worker",   "cluster", "prompt", "answer",  "context",
    "prefill", "decode",   "step",    "sequence", "window",  "memory", "bytes",   "seconds",
    "runs",    "waits",    "serves",  "returns",  "holds",   "moves",  "grows",   "drains",
    "plans",   "measures", "counts",  "routes",   "starts",  "stops",  "keeps",   "sends",
    "river",   "mountain", "forest",  "harbor",   "lantern", "meadow", "valley",  "island",
    "copper",  "silver",   "amber",   "crimson",  "violet",  "golden", "pale",    "bright",
    "under",   "over",     "between", "after",    "before",  "around", "through", "beyond",
    "one",     "two",      "three",   "many",     "few",     "every",  "some",    "each",
    "quickly", "slowly",   "quietly", "together", "again",   "still",  "almost",  "never",
    "it",      "they",     "we",      "this",     "that",    "there",  "here",    "now",
    "simple",  "careful",  "patient", "curious",  "honest",  "gentle", "clever",  "brave",
    "day.",    "night.",   "time.",   "work.",    "rain.",   "light.", "home.",   "end.",
};

// Reads one optional non-negative number / integer >= 1 of spec.sim.
common::Status ReadNumber(const nlohmann::json& sim, const char* field, double* out) {
  if (!sim.contains(field) || sim[field].is_null()) return common::Status::Ok();
  const auto& v = sim[field];
  if (!v.is_number() || v.get<double>() < 0 || !std::isfinite(v.get<double>())) {
    return common::InvalidArgument(std::string("spec.sim.") + field +
                                   " must be a number >= 0 (seconds)");
  }
  *out = v.get<double>();
  return common::Status::Ok();
}
common::Status ReadCount(const nlohmann::json& sim, const char* field, int64_t* out) {
  if (!sim.contains(field) || sim[field].is_null()) return common::Status::Ok();
  const auto& v = sim[field];
  if (!v.is_number_integer() || v.get<int64_t>() < 1) {
    return common::InvalidArgument(std::string("spec.sim.") + field + " must be an integer >= 1");
  }
  *out = v.get<int64_t>();
  return common::Status::Ok();
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------
// Paged KV cache: block ids, reference counts, and the prefix cache (full
// prompt blocks by chained hash). Blocks are created lazily, so a large
// kvBlocks costs nothing until used. Not thread-safe (the engine's mutex).
class KvCache {
 public:
  void Reset(int64_t total) {
    total_ = total;
    used_ = 0;
    next_unused_ = 0;
    meta_.clear();
    free_.clear();
    lru_.clear();
    by_hash_.clear();
  }
  int64_t total() const { return total_; }
  int64_t used() const { return used_; }
  // Blocks that an allocation can get: never used, free, or cached but
  // unreferenced (evicted on demand, least recently released first).
  int64_t available() const { return total_ - used_; }

  int32_t Allocate() {
    int32_t b;
    if (!free_.empty()) {
      b = free_.back();
      free_.pop_back();
    } else if (next_unused_ < total_) {
      b = static_cast<int32_t>(next_unused_++);
      meta_.emplace_back();
    } else {
      b = lru_.front();  // available() > 0 and no free block: an evictable one exists
      lru_.pop_front();
      by_hash_.erase(meta_[b].hash);
      meta_[b].hashed = false;
    }
    meta_[b].refs = 1;
    ++used_;
    return b;
  }
  void Release(int32_t b) {
    Meta& m = meta_[b];
    if (--m.refs > 0) return;
    --used_;
    if (m.hashed) {
      m.lru = lru_.insert(lru_.end(), b);
    } else {
      free_.push_back(b);
    }
  }
  std::optional<int32_t> Lookup(uint64_t hash) const {
    auto it = by_hash_.find(hash);
    if (it == by_hash_.end()) return std::nullopt;
    return it->second;
  }
  bool Unreferenced(int32_t b) const { return meta_[b].refs == 0; }
  // Takes a reference on a cached block (reviving it when unreferenced).
  void Acquire(int32_t b) {
    Meta& m = meta_[b];
    if (m.refs++ == 0) {
      lru_.erase(m.lru);
      ++used_;
    }
  }
  // A full prompt block was computed: make it findable, unless an identical
  // block already is (two sequences computed the same prefix at once).
  void Register(int32_t b, uint64_t hash) {
    Meta& m = meta_[b];
    if (m.hashed || by_hash_.count(hash) != 0) return;
    m.hashed = true;
    m.hash = hash;
    by_hash_.emplace(hash, b);
  }

 private:
  struct Meta {
    int32_t refs = 0;
    bool hashed = false;
    uint64_t hash = 0;
    std::list<int32_t>::iterator lru;  // valid while hashed and refs == 0
  };
  int64_t total_ = 0;
  int64_t used_ = 0;  // blocks with refs > 0
  int64_t next_unused_ = 0;
  std::vector<Meta> meta_;
  std::vector<int32_t> free_;
  std::list<int32_t> lru_;
  std::unordered_map<uint64_t, int32_t> by_hash_;
};

// One request's sequence. Guarded by its engine's Core::mu, except `cancel`
// (atomic) and `on_event` (used only by the thread that delivers events).
struct Seq {
  std::string id;
  std::function<void(const GenerateEvent&)> on_event;
  std::vector<std::string> stop;
  int64_t max_tokens = 0;
  int64_t prompt_len = 0;
  std::vector<uint64_t> block_hashes;  // chained hashes of the full prompt blocks
  uint64_t rng = 0;
  TimePoint arrival;
  std::optional<TimePoint> first_scheduled;
  std::optional<TimePoint> first_token;
  int64_t computed = 0;   // tokens whose KV is in the cache
  int64_t generated = 0;  // completion tokens sampled
  std::vector<int32_t> blocks;
  std::string text;  // generated text
  size_t sent = 0;   // text[0, sent) went out in events
  bool finished = false;
  std::atomic<bool> cancel{false};

  int64_t known() const { return prompt_len + generated; }
};

struct PendingEvent {
  std::shared_ptr<Seq> seq;
  GenerateEvent event;
};

// Runs callbacks outside every lock; an exception from one is logged, never
// propagated into the stepping thread.
void Deliver(std::vector<PendingEvent>& events) {
  for (auto& p : events) {
    if (!p.seq->on_event) continue;
    try {
      p.seq->on_event(p.event);
    } catch (const std::exception& e) {
      spdlog::error("sim engine: event callback of request {} threw: {}", p.seq->id, e.what());
    } catch (...) {
      spdlog::error("sim engine: event callback of request {} threw a non-exception", p.seq->id);
    }
    if (p.event.done) p.seq->on_event = nullptr;  // free what the callback holds
  }
  events.clear();
}

}  // namespace

// ---------------------------------------------------------------------------
// SimTimingModel

common::Result<SimTimingModel> SimTimingModel::FromSpec(const ModelSpec& spec) {
  SimTimingModel m;
  if (spec.context_length < 0) return common::InvalidArgument("spec.contextLength must be >= 1");
  m.context_length = spec.context_length > 0 ? spec.context_length : kDefaultContextLength;
  const nlohmann::json& sim = spec.sim;
  std::optional<int64_t> kv_blocks;
  if (!sim.is_null()) {
    if (!sim.is_object()) return common::InvalidArgument("spec.sim must be an object");
    CORRAL_RETURN_IF_ERROR(ReadNumber(sim, "loadSeconds", &m.load_seconds));
    CORRAL_RETURN_IF_ERROR(ReadNumber(sim, "prefillSecondsPerToken", &m.prefill_seconds_per_token));
    CORRAL_RETURN_IF_ERROR(ReadNumber(sim, "decodeStepSeconds", &m.decode_step_seconds));
    CORRAL_RETURN_IF_ERROR(
        ReadNumber(sim, "decodeStepSecondsPerSequence", &m.decode_step_seconds_per_sequence));
    CORRAL_RETURN_IF_ERROR(ReadNumber(sim, "decodeStepSecondsPerContextToken",
                                      &m.decode_step_seconds_per_context_token));
    CORRAL_RETURN_IF_ERROR(ReadCount(sim, "maxSequences", &m.max_sequences));
    CORRAL_RETURN_IF_ERROR(ReadCount(sim, "maxBatchedTokens", &m.max_batched_tokens));
    CORRAL_RETURN_IF_ERROR(ReadCount(sim, "kvBlockTokens", &m.kv_block_tokens));
    int64_t blocks = 0;
    CORRAL_RETURN_IF_ERROR(ReadCount(sim, "kvBlocks", &blocks));
    if (blocks > 0) kv_blocks = blocks;
    if (sim.contains("seed") && !sim["seed"].is_null()) {
      if (!sim["seed"].is_number_integer()) {
        return common::InvalidArgument("spec.sim.seed must be an integer");
      }
      m.seed = sim["seed"].is_number_unsigned() ? sim["seed"].get<uint64_t>()
                                                : static_cast<uint64_t>(sim["seed"].get<int64_t>());
    }
  }
  if (m.kv_block_tokens > (int64_t{1} << 20)) {
    return common::InvalidArgument("spec.sim.kvBlockTokens must be at most 1048576");
  }
  const int64_t context_blocks = CeilDiv(m.context_length, m.kv_block_tokens);
  if (kv_blocks) {
    if (*kv_blocks < context_blocks) {
      return common::InvalidArgument("spec.sim.kvBlocks " + std::to_string(*kv_blocks) +
                                     " x kvBlockTokens " + std::to_string(m.kv_block_tokens) +
                                     " = " + std::to_string(*kv_blocks * m.kv_block_tokens) +
                                     " tokens cannot hold one sequence of the context length " +
                                     std::to_string(m.context_length) +
                                     "; raise kvBlocks or lower contextLength");
    }
    m.kv_blocks = *kv_blocks;
  } else if (spec.memory_bytes > 0) {
    const double kv_bytes = static_cast<double>(spec.memory_bytes) * kKvMemoryFraction;
    const double block_bytes = static_cast<double>(m.kv_block_tokens) * kKvBytesPerToken;
    m.kv_blocks = std::max<int64_t>(context_blocks, static_cast<int64_t>(kv_bytes / block_bytes));
  } else {
    // Nothing says how much memory there is: room for a full batch of
    // full-context sequences, so the cache never preempts.
    m.kv_blocks = m.max_sequences * context_blocks;
  }
  if (m.kv_blocks > (int64_t{1} << 31) - 1) m.kv_blocks = (int64_t{1} << 31) - 1;  // int32 ids
  return m;
}

double SimTimingModel::StepSeconds(int64_t prefill_tokens, int64_t decode_sequences,
                                   int64_t decode_context_tokens) const {
  double s = static_cast<double>(prefill_tokens) * prefill_seconds_per_token;
  if (decode_sequences > 0) {
    s += decode_step_seconds +
         static_cast<double>(decode_sequences - 1) * decode_step_seconds_per_sequence +
         static_cast<double>(decode_context_tokens) * decode_step_seconds_per_context_token;
  }
  return s;
}

// ---------------------------------------------------------------------------
// SimEngine::Core: one engine's state and its step function.

struct SimEngine::Core {
  explicit Core(SimEngineOptions o) : options(o) {}

  const SimEngineOptions options;
  std::atomic<uint64_t> scheduler_id{0};  // 0: not attached (not loaded)
  std::atomic<bool> cancel_pending{false};

  mutable std::mutex mu;
  // All below guarded by mu.
  bool loaded = false;
  bool loading = false;
  SimTimingModel model;
  TimePoint loaded_at;
  std::deque<std::shared_ptr<Seq>> waiting;   // by arrival; preempted ones at the front
  std::vector<std::shared_ptr<Seq>> running;  // by admission, oldest first
  struct StepEntry {
    std::shared_ptr<Seq> seq;
    int64_t tokens = 0;  // tokens computed for this sequence in the step
  };
  struct Step {
    TimePoint start, end;
    std::vector<StepEntry> entries;
  };
  std::optional<Step> step;  // the step in flight
  KvCache kv;
  // Statistics.
  int64_t preemptions_total = 0;
  int64_t prefix_cache_hit_tokens_total = 0;
  int64_t prompt_tokens_total = 0;
  int64_t generated_tokens_total = 0;
  int64_t requests_finished_total = 0;
  std::deque<std::pair<TimePoint, int64_t>> token_buckets;  // (bucket start, tokens)
  struct Latency {
    TimePoint at;
    double ttft;
    double tpot;  // < 0: fewer than two tokens
  };
  std::deque<Latency> latencies;

  // Processes this engine at virtual time t (a step end, a request arrival or
  // a cancel); `now` is the clock's current time. Appends events to `out`.
  // Returns when it wants to be processed next. Locks mu.
  std::optional<TimePoint> Process(TimePoint t, TimePoint now, bool real_time, Duration max_lag,
                                   std::vector<PendingEvent>* out);
  // Ends every sequence with "cancelled" and marks the engine unloaded
  // (Unload). Locks mu.
  void CancelAll(TimePoint t, std::vector<PendingEvent>* out);

 private:
  void SweepCancelled(TimePoint t, std::vector<PendingEvent>* out);
  void CompleteStep(const Step& s, std::vector<PendingEvent>* out);
  bool PlanStep(TimePoint start);
  void Sample(const std::shared_ptr<Seq>& seq, TimePoint t, std::vector<PendingEvent>* out);
  void Finish(const std::shared_ptr<Seq>& seq, const char* reason, size_t text_end, TimePoint t,
              std::vector<PendingEvent>* out);
  void Preempt(const std::shared_ptr<Seq>& seq);
  void ReleaseBlocks(Seq& seq);
  void RegisterPromptBlocks(Seq& seq);
  int64_t BlocksFor(int64_t tokens) const { return CeilDiv(tokens, model.kv_block_tokens); }
};

void SimEngine::Core::ReleaseBlocks(Seq& seq) {
  for (int32_t b : seq.blocks) kv.Release(b);
  seq.blocks.clear();
}

void SimEngine::Core::RegisterPromptBlocks(Seq& seq) {
  const int64_t full = std::min<int64_t>(static_cast<int64_t>(seq.block_hashes.size()),
                                         seq.computed / model.kv_block_tokens);
  for (int64_t i = 0; i < full; ++i) kv.Register(seq.blocks[i], seq.block_hashes[i]);
}

void SimEngine::Core::Preempt(const std::shared_ptr<Seq>& seq) {
  // Recompute-style (vLLM's default): drop its KV cache and queue it first;
  // when readmitted it prefills prompt + generated tokens again (the prefix
  // cache usually still holds the prompt).
  ReleaseBlocks(*seq);
  seq->computed = 0;
  ++preemptions_total;
  waiting.push_front(seq);
}

void SimEngine::Core::Finish(const std::shared_ptr<Seq>& seq, const char* reason, size_t text_end,
                             TimePoint t, std::vector<PendingEvent>* out) {
  seq->finished = true;
  ReleaseBlocks(*seq);
  if (auto it = std::find(running.begin(), running.end(), seq); it != running.end()) {
    running.erase(it);
  } else if (auto wit = std::find(waiting.begin(), waiting.end(), seq); wit != waiting.end()) {
    waiting.erase(wit);
  }
  GenerateEvent ev;
  ev.done = true;
  ev.finish_reason = reason;
  if (text_end > seq->sent) ev.text = seq->text.substr(seq->sent, text_end - seq->sent);
  seq->sent = std::max(seq->sent, text_end);
  ev.prompt_tokens = seq->prompt_len;
  ev.completion_tokens = seq->generated;
  ev.total_s = ToSeconds(t - seq->arrival);
  if (seq->first_token) {
    ev.time_to_first_token_s = ToSeconds(*seq->first_token - seq->arrival);
    ev.prompt_eval_s = ToSeconds(*seq->first_token - seq->first_scheduled.value_or(seq->arrival));
    double tpot = -1;
    if (seq->generated > 1) {
      tpot = ToSeconds(t - *seq->first_token) / static_cast<double>(seq->generated - 1);
    }
    if (std::string_view(reason) != "cancelled") {
      latencies.push_back({t, ev.time_to_first_token_s, tpot});
      while (latencies.size() > kStatsLatencyMaxSamples ||
             (!latencies.empty() && t - latencies.front().at > kStatsLatencyWindow)) {
        latencies.pop_front();
      }
    }
  }
  ++requests_finished_total;
  out->push_back({seq, std::move(ev)});
}

void SimEngine::Core::Sample(const std::shared_ptr<Seq>& seq, TimePoint t,
                             std::vector<PendingEvent>* out) {
  if (!seq->first_token) {
    seq->first_token = t;
    prompt_tokens_total += seq->prompt_len;
  }
  ++seq->generated;
  ++generated_tokens_total;
  const TimePoint bucket = t - (t.time_since_epoch() % kStatsTokenBucket);
  if (token_buckets.empty() || token_buckets.back().first != bucket) {
    token_buckets.emplace_back(bucket, 0);
    while (t - token_buckets.front().first > kStatsTokenWindow) token_buckets.pop_front();
  }
  ++token_buckets.back().second;

  const uint64_t r = NextRandom(seq->rng);
  const uint64_t w = NextRandom(seq->rng);
  if (options.eos_probability > 0 && ToUnit(r) < options.eos_probability) {
    Finish(seq, "stop", seq->text.size(), t, out);  // end of sequence: no text
    return;
  }
  if (seq->generated > 1) seq->text += ' ';
  seq->text += kVocabulary[w % kVocabulary.size()];

  // Stop sequences: none was ever sent in part (the text that might begin one
  // is held back), so a match starts at or after `sent`.
  size_t match = std::string::npos;
  for (const auto& s : seq->stop) {
    if (s.empty()) continue;
    const size_t p = seq->text.find(s, seq->sent);
    if (p != std::string::npos) match = std::min(match, p);
  }
  if (match != std::string::npos) {
    Finish(seq, "stop", match, t, out);
    return;
  }
  if (seq->generated >= seq->max_tokens) {
    Finish(seq, "length", seq->text.size(), t, out);
    return;
  }
  // Send all but a tail that is a prefix of some stop sequence.
  size_t safe = seq->text.size();
  for (const auto& s : seq->stop) {
    const size_t longest = std::min(s.size() - (s.empty() ? 0 : 1), seq->text.size() - seq->sent);
    for (size_t k = longest; k > 0; --k) {
      if (seq->text.compare(seq->text.size() - k, k, s, 0, k) == 0) {
        safe = std::min(safe, seq->text.size() - k);
        break;
      }
    }
  }
  if (safe > seq->sent) {
    GenerateEvent ev;
    ev.text = seq->text.substr(seq->sent, safe - seq->sent);
    seq->sent = safe;
    ev.prompt_tokens = seq->prompt_len;
    ev.completion_tokens = seq->generated;
    out->push_back({seq, std::move(ev)});
  }
}

void SimEngine::Core::SweepCancelled(TimePoint t, std::vector<PendingEvent>* out) {
  std::vector<std::shared_ptr<Seq>> victims;
  for (const auto& s : running) {
    if (s->cancel.load()) victims.push_back(s);
  }
  for (const auto& s : waiting) {
    if (s->cancel.load()) victims.push_back(s);
  }
  // A cancelled sequence in the step in flight is skipped when the step ends.
  for (const auto& s : victims) Finish(s, "cancelled", s->sent, t, out);
}

void SimEngine::Core::CancelAll(TimePoint t, std::vector<PendingEvent>* out) {
  std::lock_guard lock(mu);
  std::vector<std::shared_ptr<Seq>> all(running.begin(), running.end());
  all.insert(all.end(), waiting.begin(), waiting.end());
  for (const auto& s : all) Finish(s, "cancelled", s->sent, t, out);
  step.reset();
  loaded = false;  // in the same critical section: no Submit slips in after the sweep
  kv.Reset(0);
}

void SimEngine::Core::CompleteStep(const Step& s, std::vector<PendingEvent>* out) {
  for (const auto& e : s.entries) {
    const auto& seq = e.seq;
    if (seq->finished) continue;  // cancelled during the step
    seq->computed += e.tokens;
    RegisterPromptBlocks(*seq);
    if (seq->computed == seq->known()) Sample(seq, s.end, out);
  }
}

bool SimEngine::Core::PlanStep(TimePoint start) {
  const int64_t block = model.kv_block_tokens;
  int64_t budget = model.max_batched_tokens;
  int64_t prefill_tokens = 0, decode_seqs = 0, decode_context = 0;
  std::vector<StepEntry> entries;
  auto account = [&](const std::shared_ptr<Seq>& seq, int64_t n) {
    // Decoding: one new token of a sequence that already has output.
    if (seq->generated > 0 && n == 1 && seq->known() - seq->computed == 1) {
      ++decode_seqs;
      decode_context += seq->computed + 1;
    } else {
      prefill_tokens += n;
    }
    entries.push_back({seq, n});
    budget -= n;
  };

  // Running sequences first, oldest first; KV blocks for them come from
  // preempting the newest ones.
  bool preempted = false;
  for (size_t i = 0; i < running.size() && budget > 0;) {
    std::shared_ptr<Seq> seq = running[i];
    const int64_t n = std::min(seq->known() - seq->computed, budget);
    const int64_t need = BlocksFor(seq->computed + n) - static_cast<int64_t>(seq->blocks.size());
    bool self_preempted = false;
    while (need > kv.available()) {
      std::shared_ptr<Seq> victim = running.back();
      running.pop_back();
      Preempt(victim);
      preempted = true;
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    for (int64_t k = 0; k < need; ++k) seq->blocks.push_back(kv.Allocate());
    account(seq, n);
    ++i;
  }

  // Then waiting requests in order, while there are slots, budget and blocks
  // (not in a step that had to preempt: the cache is short).
  while (!preempted && !waiting.empty() && budget > 0 &&
         static_cast<int64_t>(running.size()) < model.max_sequences) {
    std::shared_ptr<Seq> seq = waiting.front();
    if (seq->arrival > start) break;  // arrived after this step began (catch-up)
    // Prefix cache: the longest run of cached full prompt blocks, leaving at
    // least one token to compute (its logits give the next token).
    std::vector<int32_t> hits;
    const int64_t max_hits = std::min<int64_t>(static_cast<int64_t>(seq->block_hashes.size()),
                                               (seq->known() - 1) / block);
    int64_t unreferenced_hits = 0;
    for (int64_t k = 0; k < max_hits; ++k) {
      auto b = kv.Lookup(seq->block_hashes[k]);
      if (!b) break;
      hits.push_back(*b);
      if (kv.Unreferenced(*b)) ++unreferenced_hits;
    }
    const int64_t hit_tokens = static_cast<int64_t>(hits.size()) * block;
    const int64_t n = std::min(seq->known() - hit_tokens, budget);
    const int64_t need = BlocksFor(hit_tokens + n) - static_cast<int64_t>(hits.size());
    if (need > kv.available() - unreferenced_hits) break;  // first come, first served
    for (int32_t b : hits) kv.Acquire(b);
    seq->blocks = std::move(hits);
    for (int64_t k = 0; k < need; ++k) seq->blocks.push_back(kv.Allocate());
    seq->computed = hit_tokens;
    prefix_cache_hit_tokens_total += hit_tokens;
    if (!seq->first_scheduled) seq->first_scheduled = start;
    waiting.pop_front();
    running.push_back(seq);
    account(seq, n);
  }

  if (entries.empty()) return false;
  const double seconds = model.StepSeconds(prefill_tokens, decode_seqs, decode_context);
  step = Step{start, start + Seconds(seconds), std::move(entries)};
  return true;
}

std::optional<TimePoint> SimEngine::Core::Process(TimePoint t, TimePoint now, bool real_time,
                                                  Duration max_lag,
                                                  std::vector<PendingEvent>* out) {
  std::lock_guard lock(mu);
  if (!loaded) return std::nullopt;
  if (cancel_pending.exchange(false)) SweepCancelled(t, out);
  if (step && step->end <= t) {
    const Step done = std::move(*step);
    step.reset();
    CompleteStep(done, out);
  }
  if (step) return step->end;
  // Start the next step at t: back to back with the last one, keeping the
  // modelled timing exact, unless real time ran too far ahead.
  TimePoint start = t;
  if (real_time && now - t > max_lag) start = now;
  if (PlanStep(start)) return step->end;
  if (!waiting.empty() && waiting.front()->arrival > start) return waiting.front()->arrival;
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// SimScheduler

struct SimScheduler::State {
  State(common::Clock& c, Options o)
      : clock(c),
        options(o),
        real_time(o.real_time.value_or(dynamic_cast<common::RealClock*>(&c) != nullptr)) {}

  common::Clock& clock;
  const Options options;
  const bool real_time;

  // Serializes step processing and event delivery (taken before mu or an
  // engine's Core::mu, never while holding them).
  std::mutex run_mu;

  mutable std::mutex mu;
  std::condition_variable cv;
  struct WakeEntry {
    TimePoint time;
    uint64_t order;
    uint64_t engine;
    bool operator>(const WakeEntry& o) const {
      return time != o.time ? time > o.time : order > o.order;
    }
  };
  struct Registration {
    std::weak_ptr<SimEngine::Core> core;
    std::optional<TimePoint> next_wake;  // the live heap entry; later ones are stale
  };
  // All below guarded by mu.
  std::priority_queue<WakeEntry, std::vector<WakeEntry>, std::greater<>> heap;
  std::unordered_map<uint64_t, Registration> engines;
  uint64_t next_engine_id = 1;
  uint64_t next_order = 0;
  bool stop = false;

  std::thread thread;

  uint64_t Attach(std::weak_ptr<SimEngine::Core> core) {
    std::lock_guard lock(mu);
    const uint64_t id = next_engine_id++;
    engines.emplace(id, Registration{std::move(core), std::nullopt});
    return id;
  }
  // After Detach returns, the engine is not being processed and will not be.
  void Detach(uint64_t id) {
    std::lock_guard run(run_mu);
    std::lock_guard lock(mu);
    engines.erase(id);
  }
  void WakeLocked(uint64_t id, TimePoint t) {
    auto it = engines.find(id);
    if (it == engines.end()) return;
    if (it->second.next_wake && *it->second.next_wake <= t) return;
    it->second.next_wake = t;
    const bool earliest = heap.empty() || t < heap.top().time;
    heap.push({t, next_order++, id});
    if (earliest) cv.notify_one();
  }
  void Wake(uint64_t id, TimePoint t) {
    std::lock_guard lock(mu);
    WakeLocked(id, t);
  }

  int RunDue() {
    std::lock_guard run(run_mu);
    const TimePoint now = clock.Now();
    std::vector<PendingEvent> events;
    int processed = 0;
    for (;;) {
      std::shared_ptr<SimEngine::Core> core;
      TimePoint t;
      uint64_t id;
      {
        std::lock_guard lock(mu);
        if (heap.empty() || heap.top().time > now) break;
        const WakeEntry w = heap.top();
        heap.pop();
        auto it = engines.find(w.engine);
        if (it == engines.end() || it->second.next_wake != w.time) continue;  // stale
        it->second.next_wake.reset();
        core = it->second.core.lock();
        if (!core) continue;
        t = w.time;
        id = w.engine;
      }
      const auto next = core->Process(t, now, real_time, options.max_lag, &events);
      ++processed;
      if (next) Wake(id, *next);
      Deliver(events);
    }
    return processed;
  }

  std::optional<TimePoint> NextDeadline() {
    std::lock_guard lock(mu);
    while (!heap.empty()) {
      const WakeEntry& w = heap.top();
      auto it = engines.find(w.engine);
      if (it != engines.end() && it->second.next_wake == w.time) return w.time;
      heap.pop();  // stale
    }
    return std::nullopt;
  }

  void Loop() {
    std::unique_lock lock(mu);
    while (!stop) {
      if (heap.empty()) {
        cv.wait(lock);
        continue;
      }
      const TimePoint due = heap.top().time;
      if (due > clock.Now()) {
        if (real_time) {
          cv.wait_until(lock, due);
        } else {
          cv.wait_for(lock, options.poll_interval);
        }
        continue;
      }
      lock.unlock();
      RunDue();
      lock.lock();
    }
  }
};

SimScheduler::SimScheduler(common::Clock& clock) : SimScheduler(clock, Options{}) {}

SimScheduler::SimScheduler(common::Clock& clock, Options options)
    : state_(std::make_shared<State>(clock, options)) {
  if (options.thread) state_->thread = std::thread([s = state_.get()] { s->Loop(); });
}

SimScheduler::~SimScheduler() {
  {
    std::lock_guard lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  if (state_->thread.joinable()) state_->thread.join();
}

common::Clock& SimScheduler::clock() const { return state_->clock; }
bool SimScheduler::real_time() const { return state_->real_time; }
int SimScheduler::RunDue() { return state_->RunDue(); }
std::optional<TimePoint> SimScheduler::NextDeadline() const { return state_->NextDeadline(); }

// ---------------------------------------------------------------------------
// SimEngine

namespace {

// The handle of one request: Cancel marks the sequence and wakes its engine,
// which ends it at the current time (on virtual time: at the next RunDue).
class SimGeneration final : public Generation {
 public:
  SimGeneration(std::shared_ptr<Seq> seq, std::weak_ptr<SimEngine::Core> core,
                std::weak_ptr<SimScheduler::State> scheduler)
      : seq_(std::move(seq)), core_(std::move(core)), scheduler_(std::move(scheduler)) {}
  void Cancel() override;

 private:
  std::shared_ptr<Seq> seq_;
  std::weak_ptr<SimEngine::Core> core_;
  std::weak_ptr<SimScheduler::State> scheduler_;
};

}  // namespace

void SimGeneration::Cancel() {
  if (seq_->cancel.exchange(true)) return;
  auto core = core_.lock();
  auto scheduler = scheduler_.lock();
  if (!core || !scheduler) return;
  core->cancel_pending = true;
  const uint64_t id = core->scheduler_id.load();
  if (id != 0) scheduler->Wake(id, scheduler->clock.Now());
}

SimEngine::SimEngine(SimScheduler& scheduler, SimEngineOptions options)
    : scheduler_(scheduler.state_), core_(std::make_shared<Core>(options)) {}

SimEngine::SimEngine(common::Clock& clock, SimEngineOptions options)
    : own_scheduler_(std::make_unique<SimScheduler>(clock)),
      scheduler_(own_scheduler_->state_),
      core_(std::make_shared<Core>(options)) {}

SimEngine::~SimEngine() { Unload(); }

std::string SimEngine::version() const { return std::string(kVersion); }

common::Status SimEngine::Load(const ModelSpec& spec,
                               const std::function<void(int64_t, int64_t)>& progress,
                               const std::atomic<bool>& cancel) {
  {
    std::lock_guard lock(core_->mu);
    if (core_->loaded || core_->loading) {
      return common::FailedPrecondition("sim engine: a model is already loaded or loading");
    }
    core_->loading = true;
  }
  auto fail = [&](common::Status s) {
    std::lock_guard lock(core_->mu);
    core_->loading = false;
    return s;
  };
  if (spec.engine != "sim") {
    return fail(common::InvalidArgument("sim engine cannot load a model of engine \"" +
                                        spec.engine + "\""));
  }
  auto model = SimTimingModel::FromSpec(spec);
  if (!model.ok()) return fail(model.status());
  try {
    common::Clock& clock = scheduler_->clock;
    const int64_t total = spec.memory_bytes > 0 ? spec.memory_bytes : kUnknownModelBytes;
    const TimePoint start = clock.Now();
    const Duration length = Seconds(model->load_seconds);
    if (progress) progress(0, total);
    if (length > Duration::zero()) {
      const Duration tick = std::min<Duration>(std::chrono::milliseconds(100), length / 10);
      for (int64_t i = 1;; ++i) {
        if (cancel.load()) return fail(common::FailedPrecondition("load cancelled"));
        const Duration elapsed = std::min(length, tick * i);
        if (!clock.SleepUntil(start + elapsed) || cancel.load()) {
          return fail(common::FailedPrecondition("load cancelled"));
        }
        if (elapsed >= length) break;
        if (progress) {
          progress(static_cast<int64_t>(static_cast<double>(total) * ToSeconds(elapsed) /
                                        ToSeconds(length)),
                   total);
        }
      }
    }
    // Attached before it is marked loaded, so the first Submit can wake it.
    core_->scheduler_id = scheduler_->Attach(core_);
    {
      std::lock_guard lock(core_->mu);
      core_->model = *model;
      core_->kv.Reset(model->kv_blocks);
      core_->loaded_at = clock.Now();
      core_->loaded = true;
      core_->loading = false;
    }
    if (progress) progress(total, total);
    return common::Status::Ok();
  } catch (const std::exception& e) {
    Unload();
    return fail(common::Internal(std::string("sim engine load: ") + e.what()));
  }
}

void SimEngine::Unload() {
  const uint64_t id = core_->scheduler_id.exchange(0);
  if (id != 0) scheduler_->Detach(id);
  std::vector<PendingEvent> events;
  core_->CancelAll(scheduler_->clock.Now(), &events);
  Deliver(events);
}

common::Result<std::shared_ptr<Generation>> SimEngine::Submit(
    GenerateRequest request, std::function<void(const GenerateEvent&)> on_event) {
  const std::string prompt =
      request.messages.empty() ? std::move(request.prompt) : RenderChat(request.messages);
  std::vector<uint64_t> tokens;
  ForEachWord(prompt, [&](std::string_view w) { tokens.push_back(Fnv1a(w)); });
  if (tokens.empty()) tokens.push_back(Fnv1a("<s>"));  // an empty prompt is one BOS token

  auto seq = std::make_shared<Seq>();
  seq->id = std::move(request.id);
  seq->on_event = std::move(on_event);
  seq->stop = std::move(request.sampling.stop);
  seq->prompt_len = static_cast<int64_t>(tokens.size());
  seq->arrival = scheduler_->clock.Now();
  bool idle = false;
  {
    std::lock_guard lock(core_->mu);
    if (!core_->loaded) {
      return common::FailedPrecondition(core_->loading ? "model is still loading"
                                                       : "model is not loaded");
    }
    const SimTimingModel& m = core_->model;
    const int64_t context = m.context_length;
    seq->max_tokens =
        request.sampling.max_tokens > 0 ? request.sampling.max_tokens : context - seq->prompt_len;
    if (seq->max_tokens <= 0 || seq->prompt_len + seq->max_tokens > context) {
      return common::InvalidArgument(
          "prompt of " + std::to_string(seq->prompt_len) + " tokens plus max_tokens " +
          std::to_string(std::max<int64_t>(request.sampling.max_tokens, 0)) +
          " exceeds the context length of " + std::to_string(context) + " tokens");
    }
    if (static_cast<int64_t>(core_->waiting.size()) >= core_->options.max_queued) {
      return common::ResourceExhausted(
          "sim engine queue is full: " + std::to_string(core_->waiting.size()) +
          " requests are waiting");
    }
    uint64_t h = 0;
    for (size_t i = 0; i + m.kv_block_tokens <= tokens.size(); i += m.kv_block_tokens) {
      for (int64_t k = 0; k < m.kv_block_tokens; ++k) h = Mix(h ^ tokens[i + k]);
      seq->block_hashes.push_back(h);
    }
    seq->rng =
        request.sampling.seed ? Mix(*request.sampling.seed) : Mix(m.seed ^ Mix(Fnv1a(prompt)));
    core_->waiting.push_back(seq);
    idle = !core_->step.has_value();
  }
  if (idle) scheduler_->Wake(core_->scheduler_id.load(), seq->arrival);
  return std::shared_ptr<Generation>(
      std::make_shared<SimGeneration>(seq, core_, std::weak_ptr<SimScheduler::State>(scheduler_)));
}

int64_t SimEngine::CountTokens(const std::string& text) const {
  int64_t n = 0;
  ForEachWord(text, [&](std::string_view) { ++n; });
  return n;
}

int64_t SimEngine::context_length() const {
  std::lock_guard lock(core_->mu);
  return core_->loaded ? core_->model.context_length : 0;
}

SimTimingModel SimEngine::model() const {
  std::lock_guard lock(core_->mu);
  return core_->model;
}

EngineStats SimEngine::Stats() const {
  const TimePoint now = scheduler_->clock.Now();
  std::vector<double> ttft, tpot;
  EngineStats s;
  {
    std::lock_guard lock(core_->mu);
    const Core& c = *core_;
    s.running = static_cast<int64_t>(c.running.size());
    s.queued = static_cast<int64_t>(c.waiting.size());
    s.kv_blocks_total = c.kv.total();
    s.kv_cache_utilization =
        c.kv.total() > 0 ? static_cast<double>(c.kv.used()) / static_cast<double>(c.kv.total()) : 0;
    s.preemptions_total = c.preemptions_total;
    s.prefix_cache_hit_tokens_total = c.prefix_cache_hit_tokens_total;
    s.prompt_tokens_total = c.prompt_tokens_total;
    s.generated_tokens_total = c.generated_tokens_total;
    s.requests_finished_total = c.requests_finished_total;
    int64_t tokens = 0;
    for (const auto& [at, n] : c.token_buckets) {
      if (now - at <= kStatsTokenWindow) tokens += n;
    }
    if (c.loaded) {
      // Over the last 10 s, or since the load when that is shorter (at least 1 s).
      const double window =
          std::clamp(ToSeconds(now - c.loaded_at), 1.0, ToSeconds(kStatsTokenWindow));
      s.tokens_per_second = static_cast<double>(tokens) / window;
    }
    for (const auto& l : c.latencies) {
      if (now - l.at > kStatsLatencyWindow) continue;
      ttft.push_back(l.ttft);
      if (l.tpot >= 0) tpot.push_back(l.tpot);
    }
  }
  auto quantile = [](std::vector<double>& v, double q) {
    if (v.empty()) return 0.0;
    // Nearest rank.
    const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
    const size_t i = std::clamp<size_t>(rank, 1, v.size()) - 1;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
    return v[i];
  };
  s.ttft_p50_s = quantile(ttft, 0.5);
  s.ttft_p99_s = quantile(ttft, 0.99);
  s.tpot_p50_s = quantile(tpot, 0.5);
  s.tpot_p99_s = quantile(tpot, 0.99);
  return s;
}

std::string SimEngine::RenderChat(const std::vector<ChatMessage>& messages) {
  std::string out;
  for (const auto& m : messages) {
    out += m.role;
    out += ": ";
    out += m.content;
    out += '\n';
  }
  out += "assistant:";
  return out;
}

}  // namespace corral::worker
