#pragma once
// The llama.cpp engine: real inference of GGUF models in process, through
// llama.cpp's C API (llama.h).
//
// One LlamaCppEngine is one replica's model: one llama_model and one
// llama_context with `parallel` sequence slots (llama n_seq_max, a KV cache
// split per sequence). A single engine thread runs the loop: admit queued
// requests into free slots, put every active sequence's next tokens into one
// llama_batch (chunked prompt prefill and one decode token per generating
// sequence side by side: continuous batching), llama_decode, sample each
// sequence with its own sampler chain (top-k, top-p, temperature, seed), and
// stream the new text. Stop sequences are matched across token boundaries
// (text that may begin a stop sequence is held back until it is decided), and
// text is streamed only in whole UTF-8 characters (invalid bytes become U+FFFD),
// so callers can put every piece straight into JSON.
//
// Thread-safety: follows Engine (engine.h). Load/Unload from one thread;
// Submit, CountTokens, context_length and Stats from any thread (they hold
// model_mu_ shared, Load/Unload hold it exclusively). Event callbacks run on the
// engine thread and must not block.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "worker/engine.h"

struct llama_model;
struct llama_context;
struct llama_batch;

namespace corral::worker {

struct LlamaCppOptions {
  // Directory that relative sources resolve against (the node's model cache).
  std::string cache_dir;
  // Free main memory in bytes; unset reads MemAvailable from /proc/meminfo.
  // Tests inject a small value to exercise the out-of-memory path.
  std::function<int64_t()> available_memory;
  // Defaults for the spec.llamacpp fields (threads 0: hardware concurrency).
  int threads = 0;
  int parallel = 4;
  int batch_size = 512;
  // Requests admitted but waiting for a slot; more are refused with
  // ResourceExhausted.
  int max_queued = 256;
};

namespace llamacpp_internal {
struct Sequence;
struct Wakeup;
}  // namespace llamacpp_internal

class LlamaCppEngine final : public Engine {
 public:
  LlamaCppEngine(common::Clock& clock, LlamaCppOptions options = {});
  ~LlamaCppEngine() override;  // Unload()s
  LlamaCppEngine(const LlamaCppEngine&) = delete;
  LlamaCppEngine& operator=(const LlamaCppEngine&) = delete;

  std::string name() const override { return "llamacpp"; }
  // "llama.cpp <ggml version> (<commit>)".
  std::string version() const override;

  // spec.source: a path (file:// already stripped or not) or a name relative
  // to options.cache_dir. spec.llamacpp: {threads, batchSize, parallel,
  // gpuLayers}. spec.context_length: tokens per sequence (0: the model's own).
  // Before loading, the need (file size plus the KV cache of all slots) is
  // checked against the smaller of spec.memory_bytes (when set) and free
  // memory: ResourceExhausted names both numbers. Progress reports bytes of
  // the file, from llama's progress callback; cancel aborts the load through
  // the same callback.
  common::Status Load(const ModelSpec& spec, const std::function<void(int64_t, int64_t)>& progress,
                      const std::atomic<bool>& cancel) override;
  void Unload() override;

  common::Result<std::shared_ptr<Generation>> Submit(
      GenerateRequest request, std::function<void(const GenerateEvent&)> on_event) override;

  int64_t CountTokens(const std::string& text) const override;
  // Tokens one sequence may hold (prompt + completion); 0 when not loaded.
  int64_t context_length() const override;
  // kv_blocks_total counts KV cells (one token each) of all slots.
  EngineStats Stats() const override;

  // The chat prompt as the model's template renders it (the plain
  // "role: content" template when the model has none or llama.cpp does not
  // know it), ending with the assistant's turn. For tests and /api/show.
  common::Result<std::string> RenderChat(const std::vector<ChatMessage>& messages) const;

 private:
  using Sequence = llamacpp_internal::Sequence;

  void Loop();  // the engine thread
  bool AdmitLocked(std::unique_lock<std::mutex>& lock);
  void Step(llama_batch& batch);  // one llama_decode; engine thread only
  void Emit(Sequence& seq, const std::string& piece_bytes, bool final_flush);
  void Finish(Sequence& seq, const std::string& reason, const std::string& error = {});
  void RecordFinished(const Sequence& seq);
  std::vector<int32_t> Tokenize(const std::string& text, bool add_special) const;

  common::Clock& clock_;
  const LlamaCppOptions options_;

  // Guards the model's lifetime and what Load learns about it: written under
  // it exclusively (Load publishes, Unload clears), read under it shared by
  // Submit, CountTokens, RenderChat and context_length. The engine thread
  // reads these without it: they only change while that thread is not running
  // (Load starts it after publishing, Unload joins it before clearing).
  mutable std::shared_mutex model_mu_;
  llama_model* model_ = nullptr;
  llama_context* ctx_ = nullptr;  // used by the engine thread only
  std::string chat_template_;     // empty: the plain template
  bool has_chat_template_ = false;
  int64_t context_length_ = 0;  // tokens per sequence
  int n_slots_ = 0;
  int n_batch_ = 0;
  std::string bos_text_;

  std::shared_ptr<llamacpp_internal::Wakeup> wakeup_;  // queue_, stopping_ live here
  std::thread thread_;

  // Engine-thread state: the running slots (nullptr: free).
  std::vector<std::shared_ptr<Sequence>> slots_;

  // Counters read by Stats(); written by the engine thread.
  std::atomic<int64_t> running_{0};
  std::atomic<int64_t> kv_used_{0};
  std::atomic<int64_t> kv_total_{0};
  std::atomic<int64_t> prompt_tokens_total_{0};
  std::atomic<int64_t> generated_tokens_total_{0};
  std::atomic<int64_t> requests_finished_total_{0};

  mutable std::mutex stats_mu_;
  // Windows for Stats(): (time, tokens generated in a step) over ~10 s and
  // finished requests (time, ttft, tpot) over ~60 s. Guarded by stats_mu_.
  std::deque<std::pair<common::TimePoint, int64_t>> token_window_;
  struct Finished {
    common::TimePoint at;
    double ttft_s;
    double tpot_s;  // < 0: fewer than two tokens
  };
  std::deque<Finished> finished_window_;
};

}  // namespace corral::worker
