#pragma once
// The inference core behind one interface: a loaded model that runs
// generations. Implementations: the simulated engine (sim_engine.h) and
// llama.cpp (llamacpp_engine.h). One Engine object is one replica's model.
//
// Threading: Load/Unload from one (loader) thread; Submit, Stats from any
// thread; event callbacks run on the engine's own thread(s) and must not
// block (queue work elsewhere). Time comes from the injected common::Clock
// (the sim engine runs on virtual time inside `corral simulate`).
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace corral::worker {

// What a replica loads: the Model object's spec, resolved.
struct ModelSpec {
  std::string name;    // the Model's metadata.name
  std::string engine;  // "sim" | "llamacpp"
  std::string source;  // "sim://..." or a file path (file:// stripped) or cache-relative name
  int64_t context_length = 0;  // 0: the model's own / engine default
  int64_t memory_bytes = 0;    // spec.resources.memoryBytes (0: unknown)
  nlohmann::json sim;          // spec.sim (timing model), may be null
  nlohmann::json llamacpp;     // spec.llamacpp settings, may be null
};

struct SamplingParams {
  double temperature = 0.8;
  int top_k = 40;       // 0: off
  double top_p = 0.95;  // 1: off
  std::optional<uint64_t> seed;
  int max_tokens = 256;           // completion tokens at most
  std::vector<std::string> stop;  // stop sequences (not included in the output)
};

// One chat message (OpenAI/Ollama shape); engines render them with the
// model's chat template (or a plain "role: content" template).
struct ChatMessage {
  std::string role;
  std::string content;
};

struct GenerateRequest {
  std::string id;                     // for logs
  std::string prompt;                 // completion requests
  std::vector<ChatMessage> messages;  // chat requests (prompt empty)
  SamplingParams sampling;
};

// A piece of the output, or the end.
struct GenerateEvent {
  std::string text;  // new text (may be empty on the final event)
  bool done = false;
  // On done: "stop" (EOS or a stop sequence), "length" (max_tokens),
  // "cancelled", "error" (message in `error`).
  std::string finish_reason;
  std::string error;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  // On done, measured on the engine's clock: queueing + prefill to the first
  // token, and the whole generation.
  double time_to_first_token_s = 0;
  double total_s = 0;
  double prompt_eval_s = 0;
};

// A running generation. Cancel() is idempotent and thread-safe; the callback
// then gets a final event with finish_reason "cancelled" (unless it was
// already done).
class Generation {
 public:
  virtual ~Generation() = default;
  virtual void Cancel() = 0;
};

// Summaries for the stats endpoint, the gateway and the autoscaler.
struct EngineStats {
  int64_t running = 0;              // sequences in the running batch
  int64_t queued = 0;               // admitted, waiting for a batch slot / KV blocks
  double kv_cache_utilization = 0;  // used KV blocks / total, 0..1
  int64_t kv_blocks_total = 0;
  int64_t preemptions_total = 0;
  int64_t prefix_cache_hit_tokens_total = 0;
  int64_t prompt_tokens_total = 0;
  int64_t generated_tokens_total = 0;
  double tokens_per_second = 0;  // generated, over the last ~10 s
  // Over the last ~60 s of finished requests (seconds): p50 and p99.
  double ttft_p50_s = 0, ttft_p99_s = 0;
  double tpot_p50_s = 0, tpot_p99_s = 0;  // time per output token
  int64_t requests_finished_total = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string name() const = 0;     // "sim"
  virtual std::string version() const = 0;  // engine/library version

  // Loads the model; blocks until loaded, failed or cancelled. `progress` is
  // called with (bytes done, bytes total) as loading advances. Errors:
  // NotFound (file missing: the message names the path), ResourceExhausted
  // (larger than the memory it may use: says how much it needs and has),
  // InvalidArgument (unsupported format/settings), Cancelled ->
  // FailedPrecondition("load cancelled").
  virtual common::Status Load(const ModelSpec& spec,
                              const std::function<void(int64_t, int64_t)>& progress,
                              const std::atomic<bool>& cancel) = 0;
  // Frees the model; running generations end with "cancelled" first.
  virtual void Unload() = 0;

  // Starts a generation. Errors: InvalidArgument (prompt + max_tokens over
  // the context: say both numbers), ResourceExhausted (queue full: the API
  // answers 429/503 with Retry-After), FailedPrecondition (not loaded).
  virtual common::Result<std::shared_ptr<Generation>> Submit(
      GenerateRequest request, std::function<void(const GenerateEvent&)> on_event) = 0;

  // Tokens of a text (for usage counts and context checks).
  virtual int64_t CountTokens(const std::string& text) const = 0;
  virtual int64_t context_length() const = 0;
  virtual EngineStats Stats() const = 0;
};

}  // namespace corral::worker
