#include "worker/llamacpp_engine.h"

#include <gguf.h>
#include <llama.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>
#include <utility>

namespace corral::worker {

namespace llamacpp_internal {

// Shared by the engine and its Generation handles (which may outlive it).
struct Wakeup {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Sequence>> queue;  // guarded by mu
  // Set (under mu) by Unload; read without it by llama's abort callback.
  std::atomic<bool> stopping{false};
};

// One request. Fields below `cancel` belong to the engine thread.
struct Sequence {
  ~Sequence() {
    if (sampler != nullptr) llama_sampler_free(sampler);
  }

  std::string id;
  std::vector<llama_token> prompt;
  int max_tokens = 0;
  std::vector<std::string> stop;
  size_t max_stop_len = 0;
  std::function<void(const GenerateEvent&)> on_event;
  llama_sampler* sampler = nullptr;  // owned
  common::TimePoint submitted;
  std::atomic<bool> cancel{false};

  int slot = -1;              // llama seq_id while running
  size_t prefilled = 0;       // prompt tokens in the KV cache
  llama_pos n_past = 0;       // tokens in the KV cache
  llama_token next = -1;      // sampled, to be decoded next step (-1: prefilling)
  int32_t logits_index = -1;  // this step's output row, -1: none
  int32_t batch_tokens = 0;   // tokens this step put in the batch
  int64_t completion_tokens = 0;
  std::string raw;     // bytes of an incomplete UTF-8 character
  std::string text;    // the output so far, valid UTF-8
  size_t emitted = 0;  // bytes of `text` already streamed
  bool prefill_started = false;
  common::TimePoint prefill_start, prefill_end, first_token;
  bool has_first_token = false;
};

}  // namespace llamacpp_internal

namespace {

using llamacpp_internal::Sequence;
using llamacpp_internal::Wakeup;

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

double Seconds(common::Duration d) { return std::chrono::duration<double>(d).count(); }

// Length of the UTF-8 sequence a lead byte starts (0: not a lead byte).
size_t Utf8Length(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return c >= 0xC2 ? 2 : 0;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return c <= 0xF4 ? 4 : 0;
  return 0;
}

// Moves the complete, valid UTF-8 of `raw` to the end of `out`, invalid bytes
// as U+FFFD; leaves in `raw` the start of a character that more bytes may
// complete (or, when `flush`, writes it as U+FFFD too).
void DrainUtf8(std::string& raw, std::string& out, bool flush) {
  size_t i = 0;
  while (i < raw.size()) {
    const auto c = static_cast<unsigned char>(raw[i]);
    const size_t n = Utf8Length(c);
    if (n == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    size_t j = 1;
    while (j < n && i + j < raw.size() && (static_cast<unsigned char>(raw[i + j]) & 0xC0) == 0x80) {
      ++j;
    }
    if (j == n) {
      out.append(raw, i, n);
      i += n;
    } else if (i + j == raw.size() && !flush) {
      break;  // may still be completed by the next token
    } else {
      out += kReplacement;
      i += j;
    }
  }
  raw.erase(0, i);
}

// Routes llama.cpp's and ggml's log lines to spdlog, and keeps the last error
// line of the calling thread for the Status of a failed load.
thread_local std::string g_last_llama_error;

void LlamaLog(ggml_log_level level, const char* text, void* /*user_data*/) {
  std::string_view line(text == nullptr ? "" : text);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.empty()) return;
  switch (level) {
    case GGML_LOG_LEVEL_ERROR:
      g_last_llama_error.assign(line);
      spdlog::warn("llama.cpp: {}", line);
      break;
    case GGML_LOG_LEVEL_WARN: spdlog::debug("llama.cpp: {}", line); break;
    default: spdlog::trace("llama.cpp: {}", line); break;
  }
}

void InitBackendOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    llama_log_set(LlamaLog, nullptr);
    llama_backend_init();
  });
}

// MemAvailable from /proc/meminfo in bytes; 0 when unreadable (no check).
int64_t MemAvailable() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

// An integer GGUF value of any integer type, or the largest element of an
// integer array (some models give per-layer head counts); `fallback` when absent.
int64_t GgufInt(const gguf_context* g, const std::string& key, int64_t fallback) {
  const int64_t id = gguf_find_key(g, key.c_str());
  if (id < 0) return fallback;
  auto scalar = [](gguf_type t, const void* p) -> std::optional<int64_t> {
    switch (t) {
      case GGUF_TYPE_UINT8: return *static_cast<const uint8_t*>(p);
      case GGUF_TYPE_INT8: return *static_cast<const int8_t*>(p);
      case GGUF_TYPE_UINT16: return *static_cast<const uint16_t*>(p);
      case GGUF_TYPE_INT16: return *static_cast<const int16_t*>(p);
      case GGUF_TYPE_UINT32: return *static_cast<const uint32_t*>(p);
      case GGUF_TYPE_INT32: return *static_cast<const int32_t*>(p);
      case GGUF_TYPE_UINT64: return static_cast<int64_t>(*static_cast<const uint64_t*>(p));
      case GGUF_TYPE_INT64: return *static_cast<const int64_t*>(p);
      default: return std::nullopt;
    }
  };
  const gguf_type type = gguf_get_kv_type(g, id);
  if (type == GGUF_TYPE_ARRAY) {
    const gguf_type et = gguf_get_arr_type(g, id);
    const size_t n = gguf_get_arr_n(g, id);
    size_t width = 0;
    switch (et) {
      case GGUF_TYPE_UINT8:
      case GGUF_TYPE_INT8: width = 1; break;
      case GGUF_TYPE_UINT16:
      case GGUF_TYPE_INT16: width = 2; break;
      case GGUF_TYPE_UINT32:
      case GGUF_TYPE_INT32: width = 4; break;
      case GGUF_TYPE_UINT64:
      case GGUF_TYPE_INT64: width = 8; break;
      default: break;
    }
    if (width == 0) return fallback;
    const auto* data = static_cast<const char*>(gguf_get_arr_data(g, id));
    int64_t best = fallback;
    for (size_t i = 0; i < n; ++i) {
      if (auto v = scalar(et, data + i * width)) best = i == 0 ? *v : std::max(best, *v);
    }
    return best;
  }
  return scalar(type, gguf_get_val_data(g, id)).value_or(fallback);
}

// What Load needs to know before committing memory: from the GGUF header only.
struct GgufFacts {
  std::string arch;
  int64_t n_ctx_train = 0;
  int64_t kv_bytes_per_token = 0;  // f16 K and V over all layers
};

common::Result<GgufFacts> ReadGgufFacts(const std::string& path) {
  gguf_init_params params{};
  params.no_alloc = true;
  params.ctx = nullptr;
  gguf_context* g = gguf_init_from_file(path.c_str(), params);
  if (g == nullptr) {
    return common::InvalidArgument("model file " + path + " is not a readable GGUF file");
  }
  GgufFacts facts;
  const int64_t arch_id = gguf_find_key(g, "general.architecture");
  if (arch_id >= 0 && gguf_get_kv_type(g, arch_id) == GGUF_TYPE_STRING) {
    facts.arch = gguf_get_val_str(g, arch_id);
  }
  const std::string& a = facts.arch;
  facts.n_ctx_train = GgufInt(g, a + ".context_length", 0);
  const int64_t n_layer = GgufInt(g, a + ".block_count", 0);
  const int64_t n_embd = GgufInt(g, a + ".embedding_length", 0);
  const int64_t n_head = GgufInt(g, a + ".attention.head_count", 0);
  const int64_t n_head_kv = GgufInt(g, a + ".attention.head_count_kv", n_head);
  const int64_t head_dim = n_head > 0 ? n_embd / n_head : 0;
  const int64_t k_len = GgufInt(g, a + ".attention.key_length", head_dim);
  const int64_t v_len = GgufInt(g, a + ".attention.value_length", head_dim);
  facts.kv_bytes_per_token = n_layer * n_head_kv * (k_len + v_len) * 2;
  gguf_free(g);
  if (facts.arch.empty()) {
    return common::InvalidArgument("model file " + path + " has no general.architecture");
  }
  return facts;
}

int JsonInt(const nlohmann::json& j, const char* key, int fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return fallback;
  return it->get<int>();
}

class LlamaGeneration final : public Generation {
 public:
  LlamaGeneration(std::shared_ptr<Sequence> seq, std::shared_ptr<Wakeup> wakeup)
      : seq_(std::move(seq)), wakeup_(std::move(wakeup)) {}
  void Cancel() override {
    seq_->cancel.store(true);
    std::lock_guard<std::mutex> lock(wakeup_->mu);
    wakeup_->cv.notify_all();
  }

 private:
  std::shared_ptr<Sequence> seq_;
  std::shared_ptr<Wakeup> wakeup_;
};

}  // namespace

LlamaCppEngine::LlamaCppEngine(common::Clock& clock, LlamaCppOptions options)
    : clock_(clock), options_(std::move(options)), wakeup_(std::make_shared<Wakeup>()) {}

LlamaCppEngine::~LlamaCppEngine() { Unload(); }

std::string LlamaCppEngine::version() const {
  return std::string("llama.cpp ") + ggml_version() + " (" + ggml_commit() + ")";
}

common::Status LlamaCppEngine::Load(const ModelSpec& spec,
                                    const std::function<void(int64_t, int64_t)>& progress,
                                    const std::atomic<bool>& cancel) {
  {
    std::shared_lock<std::shared_mutex> lock(model_mu_);
    if (model_ != nullptr) return common::FailedPrecondition("a model is already loaded");
  }
  // Loading runs without model_mu_ (it can take minutes): meanwhile Submit
  // answers FailedPrecondition instead of blocking. Load and Unload come from
  // one thread (engine.h), so nothing else publishes a model concurrently.
  try {
    std::string path = spec.source;
    if (path.rfind("file://", 0) == 0) path.erase(0, 7);
    if (path.rfind("http://", 0) == 0 || path.rfind("https://", 0) == 0 ||
        path.rfind("sim://", 0) == 0) {
      return common::InvalidArgument("engine llamacpp loads local GGUF files, not " + path);
    }
    if (!path.empty() && path[0] != '/' && !options_.cache_dir.empty()) {
      path = (std::filesystem::path(options_.cache_dir) / path).string();
    }
    std::error_code ec;
    if (path.empty() || !std::filesystem::is_regular_file(path, ec)) {
      return common::NotFound("model file " + path + " not found");
    }
    const int64_t file_size = static_cast<int64_t>(std::filesystem::file_size(path, ec));
    auto facts = ReadGgufFacts(path);
    if (!facts.ok()) return facts.status();

    const int slots = std::max(1, JsonInt(spec.llamacpp, "parallel", options_.parallel));
    const int batch =
        std::max(std::max(1, slots), JsonInt(spec.llamacpp, "batchSize", options_.batch_size));
    int threads = JsonInt(spec.llamacpp, "threads", options_.threads);
    if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
    const int gpu_layers = JsonInt(spec.llamacpp, "gpuLayers", 0);
    int64_t ctx_len = spec.context_length > 0 ? spec.context_length : facts->n_ctx_train;
    if (ctx_len <= 0) ctx_len = 4096;
    // llama.cpp rounds each sequence's share of the KV cache up to 256 cells.
    const int64_t ctx_cells = (ctx_len + 255) / 256 * 256;

    // The memory check: weights (the file) plus the KV cache of every slot.
    const int64_t kv_bytes = facts->kv_bytes_per_token * ctx_cells * slots;
    const int64_t need = file_size + kv_bytes;
    const int64_t free_bytes =
        options_.available_memory ? options_.available_memory() : MemAvailable();
    int64_t limit = free_bytes > 0 ? free_bytes : INT64_MAX;
    if (spec.memory_bytes > 0) limit = std::min(limit, spec.memory_bytes);
    if (need > limit) {
      std::ostringstream m;
      m << "model " << spec.name << " needs about " << need << " bytes (weights " << file_size
        << " + KV cache " << kv_bytes << " for " << slots << " sequences of " << ctx_len
        << " tokens) but " << limit << " bytes are available (free memory " << free_bytes
        << ", spec.resources.memoryBytes " << spec.memory_bytes
        << "); lower contextLength or llamacpp.parallel, or use a smaller model";
      return common::ResourceExhausted(m.str());
    }

    InitBackendOnce();
    g_last_llama_error.clear();
    struct ProgressState {
      const std::function<void(int64_t, int64_t)>* progress;
      const std::atomic<bool>* cancel;
      int64_t total;
    } state{&progress, &cancel, file_size};
    llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = gpu_layers;
    mparams.progress_callback = [](float p, void* user) -> bool {
      auto* s = static_cast<ProgressState*>(user);
      if (s->cancel->load()) return false;  // llama aborts the load
      try {
        if (*s->progress) (*s->progress)(static_cast<int64_t>(p * s->total), s->total);
      } catch (const std::exception& e) {
        spdlog::warn("llamacpp: load progress callback threw: {}", e.what());
      }
      return true;
    };
    mparams.progress_callback_user_data = &state;
    if (cancel.load()) return common::FailedPrecondition("load cancelled");
    llama_model* model = llama_model_load_from_file(path.c_str(), mparams);
    if (model == nullptr) {
      if (cancel.load()) return common::FailedPrecondition("load cancelled");
      return common::InvalidArgument("llama.cpp cannot load " + path +
                                     (g_last_llama_error.empty() ? "" : ": " + g_last_llama_error));
    }

    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = static_cast<uint32_t>(ctx_cells * slots);
    cparams.n_batch = static_cast<uint32_t>(batch);
    cparams.n_ubatch = static_cast<uint32_t>(std::min(batch, 512));
    cparams.n_seq_max = static_cast<uint32_t>(slots);
    cparams.n_threads = threads;
    cparams.n_threads_batch = threads;
    cparams.kv_unified = false;  // each slot owns ctx_cells: admission guarantees room
    cparams.no_perf = true;
    cparams.abort_callback = [](void* data) -> bool {
      return static_cast<Wakeup*>(data)->stopping.load();
    };
    cparams.abort_callback_data = wakeup_.get();
    llama_context* ctx = llama_init_from_model(model, cparams);
    if (ctx == nullptr) {
      llama_model_free(model);
      return common::Internal("llama.cpp cannot create a context for " + path +
                              (g_last_llama_error.empty() ? "" : ": " + g_last_llama_error));
    }

    const llama_vocab* vocab = llama_model_get_vocab(model);
    std::string bos_text;
    if (llama_vocab_bos(vocab) != LLAMA_TOKEN_NULL) {
      const char* t = llama_vocab_get_text(vocab, llama_vocab_bos(vocab));
      if (t != nullptr) bos_text = t;
    }
    // The model's template, when llama.cpp's built-in renderer knows it.
    std::string chat_template;
    bool has_chat_template = false;
    if (const char* tmpl = llama_model_chat_template(model, nullptr); tmpl != nullptr) {
      llama_chat_message probe{"user", "hi"};
      char buf[256];
      if (llama_chat_apply_template(tmpl, &probe, 1, true, buf, sizeof(buf)) >= 0) {
        chat_template = tmpl;
        has_chat_template = true;
      } else {
        spdlog::warn(
            "llamacpp: model {}: chat template not supported by llama.cpp's renderer; "
            "using the plain template",
            spec.name);
      }
    }

    {
      std::unique_lock<std::shared_mutex> lock(model_mu_);
      model_ = model;
      ctx_ = ctx;
      context_length_ = ctx_len;
      n_slots_ = slots;
      n_batch_ = batch;
      bos_text_ = std::move(bos_text);
      chat_template_ = std::move(chat_template);
      has_chat_template_ = has_chat_template;
    }
    slots_.assign(slots, nullptr);
    kv_total_.store(static_cast<int64_t>(llama_n_ctx(ctx)));
    kv_used_.store(0);
    running_.store(0);
    {
      std::lock_guard<std::mutex> lock(wakeup_->mu);
      wakeup_->stopping.store(false);
    }
    thread_ = std::thread([this] { Loop(); });
    try {
      if (progress) progress(file_size, file_size);
    } catch (const std::exception& e) {
      spdlog::warn("llamacpp: load progress callback threw: {}", e.what());
    }
    spdlog::info("llamacpp: loaded model={} path={} ctx={} parallel={} threads={} template={}",
                 spec.name, path, ctx_len, slots, threads, has_chat_template_ ? "model" : "plain");
    return common::Status::Ok();
  } catch (const std::exception& e) {
    return common::Internal(std::string("llamacpp: load failed: ") + e.what());
  }
}

void LlamaCppEngine::Unload() {
  // Stop the engine thread first, without model_mu_: its callbacks may call
  // Submit (which takes model_mu_ shared) and must not deadlock with us.
  {
    std::lock_guard<std::mutex> lock(wakeup_->mu);
    wakeup_->stopping.store(true);
    wakeup_->cv.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::unique_lock<std::shared_mutex> model_lock(model_mu_);
  if (ctx_ != nullptr) llama_free(ctx_);
  if (model_ != nullptr) llama_model_free(model_);
  ctx_ = nullptr;
  model_ = nullptr;
  context_length_ = 0;
  slots_.clear();
  running_.store(0);
  kv_used_.store(0);
}

std::vector<llama_token> LlamaCppEngine::Tokenize(const std::string& text, bool add_special) const {
  const llama_vocab* vocab = llama_model_get_vocab(model_);
  std::vector<llama_token> tokens(text.size() + 8);
  int32_t n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                             static_cast<int32_t>(tokens.size()), add_special, true);
  if (n < 0 && n != INT32_MIN) {
    tokens.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                       static_cast<int32_t>(tokens.size()), add_special, true);
  }
  tokens.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return tokens;
}

int64_t LlamaCppEngine::CountTokens(const std::string& text) const {
  std::shared_lock<std::shared_mutex> lock(model_mu_);
  if (model_ == nullptr) return 0;
  return static_cast<int64_t>(Tokenize(text, false).size());
}

int64_t LlamaCppEngine::context_length() const {
  std::shared_lock<std::shared_mutex> lock(model_mu_);
  return context_length_;
}

common::Result<std::string> LlamaCppEngine::RenderChat(
    const std::vector<ChatMessage>& messages) const {
  std::shared_lock<std::shared_mutex> lock(model_mu_);
  if (model_ == nullptr) return common::FailedPrecondition("model not loaded");
  if (has_chat_template_) {
    std::vector<llama_chat_message> chat;
    size_t chars = 0;
    for (const auto& m : messages) {
      chat.push_back({m.role.c_str(), m.content.c_str()});
      chars += m.role.size() + m.content.size();
    }
    std::string buf(2 * chars + 256, '\0');
    int32_t n = llama_chat_apply_template(chat_template_.c_str(), chat.data(), chat.size(), true,
                                          buf.data(), static_cast<int32_t>(buf.size()));
    if (n > static_cast<int32_t>(buf.size())) {
      buf.resize(n);
      n = llama_chat_apply_template(chat_template_.c_str(), chat.data(), chat.size(), true,
                                    buf.data(), static_cast<int32_t>(buf.size()));
    }
    if (n >= 0) {
      buf.resize(n);
      return buf;
    }
  }
  // The plain template: one "role: content" line per message, then the
  // assistant's turn.
  std::string out;
  for (const auto& m : messages) out += m.role + ": " + m.content + "\n";
  out += "assistant:";
  return out;
}

common::Result<std::shared_ptr<Generation>> LlamaCppEngine::Submit(
    GenerateRequest request, std::function<void(const GenerateEvent&)> on_event) {
  try {
    std::shared_lock<std::shared_mutex> lock(model_mu_);
    if (model_ == nullptr) return common::FailedPrecondition("model not loaded");
    const SamplingParams& sp = request.sampling;
    if (sp.max_tokens < 1) {
      return common::InvalidArgument("max_tokens must be at least 1, got " +
                                     std::to_string(sp.max_tokens));
    }
    std::string text = request.prompt;
    bool add_special = true;
    if (!request.messages.empty()) {
      lock.unlock();  // RenderChat takes it again
      auto rendered = RenderChat(request.messages);
      if (!rendered.ok()) return rendered.status();
      lock.lock();
      if (model_ == nullptr) return common::FailedPrecondition("model not loaded");
      text = std::move(rendered.value());
      // Templates that write the BOS text themselves must not get a second one.
      if (!bos_text_.empty() && text.rfind(bos_text_, 0) == 0) add_special = false;
    }
    auto seq = std::make_shared<Sequence>();
    seq->prompt = Tokenize(text, add_special);
    if (seq->prompt.empty()) return common::InvalidArgument("the prompt is empty");
    const auto prompt_n = static_cast<int64_t>(seq->prompt.size());
    if (prompt_n + sp.max_tokens > context_length_) {
      return common::InvalidArgument("the prompt (" + std::to_string(prompt_n) +
                                     " tokens) plus max_tokens (" + std::to_string(sp.max_tokens) +
                                     ") exceeds the model's context length of " +
                                     std::to_string(context_length_) + " tokens");
    }
    seq->id = request.id;
    seq->max_tokens = sp.max_tokens;
    for (const auto& s : sp.stop) {
      if (s.empty()) continue;
      seq->stop.push_back(s);
      seq->max_stop_len = std::max(seq->max_stop_len, s.size());
    }
    seq->on_event = std::move(on_event);
    seq->submitted = clock_.Now();

    llama_sampler_chain_params chain_params = llama_sampler_chain_default_params();
    chain_params.no_perf = true;
    seq->sampler = llama_sampler_chain_init(chain_params);
    const uint32_t seed = sp.seed ? static_cast<uint32_t>(*sp.seed) : LLAMA_DEFAULT_SEED;
    if (sp.temperature <= 0) {
      llama_sampler_chain_add(seq->sampler, llama_sampler_init_greedy());
    } else {
      if (sp.top_k > 0) llama_sampler_chain_add(seq->sampler, llama_sampler_init_top_k(sp.top_k));
      if (sp.top_p > 0 && sp.top_p < 1) {
        llama_sampler_chain_add(seq->sampler,
                                llama_sampler_init_top_p(static_cast<float>(sp.top_p), 1));
      }
      llama_sampler_chain_add(seq->sampler,
                              llama_sampler_init_temp(static_cast<float>(sp.temperature)));
      llama_sampler_chain_add(seq->sampler, llama_sampler_init_dist(seed));
    }

    {
      std::lock_guard<std::mutex> q(wakeup_->mu);
      if (wakeup_->stopping.load()) return common::FailedPrecondition("model is unloading");
      if (static_cast<int>(wakeup_->queue.size()) >= options_.max_queued) {
        return common::ResourceExhausted("the engine queue is full (" +
                                         std::to_string(options_.max_queued) + " waiting)");
      }
      wakeup_->queue.push_back(seq);
      wakeup_->cv.notify_all();
    }
    return std::shared_ptr<Generation>(std::make_shared<LlamaGeneration>(seq, wakeup_));
  } catch (const std::exception& e) {
    return common::Internal(std::string("llamacpp: submit failed: ") + e.what());
  }
}

// ---------------------------------------------------------------------------
// The engine thread. It alone touches ctx_, slots_ and the Sequence fields
// below `cancel`; model_ stays valid while it runs (Unload joins it first).

void LlamaCppEngine::Loop() {
  Wakeup& w = *wakeup_;
  llama_batch batch = llama_batch_init(n_batch_, 0, 1);  // reused by every step
  for (;;) {
    std::vector<std::shared_ptr<Sequence>> cancelled_queued;
    bool stop = false;
    {
      std::unique_lock<std::mutex> lock(w.mu);
      w.cv.wait(lock, [&] { return w.stopping.load() || !w.queue.empty() || running_.load() > 0; });
      stop = w.stopping.load();
      if (stop) {
        cancelled_queued.assign(w.queue.begin(), w.queue.end());
        w.queue.clear();
      } else {
        for (auto it = w.queue.begin(); it != w.queue.end();) {
          if ((*it)->cancel.load()) {
            cancelled_queued.push_back(*it);
            it = w.queue.erase(it);
          } else {
            ++it;
          }
        }
        AdmitLocked(lock);
      }
    }
    for (auto& seq : cancelled_queued) Finish(*seq, "cancelled");
    for (auto& slot : slots_) {
      if (slot && (stop || slot->cancel.load())) Finish(*slot, "cancelled");
    }
    if (stop) break;
    if (running_.load() > 0) Step(batch);
  }
  llama_batch_free(batch);
}

bool LlamaCppEngine::AdmitLocked(std::unique_lock<std::mutex>& /*lock held on wakeup_->mu*/) {
  bool admitted = false;
  llama_memory_t mem = llama_get_memory(ctx_);
  for (int i = 0; i < n_slots_ && !wakeup_->queue.empty(); ++i) {
    if (slots_[i]) continue;
    auto seq = std::move(wakeup_->queue.front());
    wakeup_->queue.pop_front();
    llama_memory_seq_rm(mem, i, -1, -1);
    seq->slot = i;
    slots_[i] = std::move(seq);
    running_.fetch_add(1);
    admitted = true;
  }
  return admitted;
}

void LlamaCppEngine::Step(llama_batch& batch) {
  // One batch: the decode token of every generating sequence first (each
  // needs exactly one), then prompt chunks in slot order while room is left.
  batch.n_tokens = 0;
  // Owning: Finish releases a sequence's slot while we still walk the batch.
  std::vector<std::shared_ptr<Sequence>> in_batch;
  auto add = [&](Sequence& s, llama_token tok, bool logits) {
    const int i = batch.n_tokens++;
    batch.token[i] = tok;
    batch.pos[i] = s.n_past + s.batch_tokens;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = s.slot;
    batch.logits[i] = logits ? 1 : 0;
    if (logits) s.logits_index = i;
    ++s.batch_tokens;
  };
  for (auto& slot : slots_) {
    if (!slot || slot->next < 0) continue;
    slot->logits_index = -1;
    slot->batch_tokens = 0;
    add(*slot, slot->next, true);
    in_batch.push_back(slot);
  }
  const common::TimePoint step_start = clock_.Now();
  for (auto& slot : slots_) {
    if (!slot || slot->next >= 0) continue;
    slot->logits_index = -1;
    slot->batch_tokens = 0;
    const size_t room = static_cast<size_t>(n_batch_ - batch.n_tokens);
    if (room == 0) break;
    const size_t left = slot->prompt.size() - slot->prefilled;
    const size_t take = std::min(room, left);
    if (!slot->prefill_started) {
      slot->prefill_started = true;
      slot->prefill_start = step_start;
    }
    for (size_t j = 0; j < take; ++j) {
      add(*slot, slot->prompt[slot->prefilled + j], j + 1 == left);
    }
    in_batch.push_back(slot);
  }

  const int32_t rc = llama_decode(ctx_, batch);
  if (rc != 0) {
    if (rc == 2 && wakeup_->stopping.load()) return;  // aborted by Unload
    const std::string error = "llama_decode failed with code " + std::to_string(rc) +
                              (g_last_llama_error.empty() ? "" : ": " + g_last_llama_error);
    spdlog::warn("llamacpp: {}", error);
    for (auto& s : in_batch) Finish(*s, "error", error);
    return;
  }

  const common::TimePoint now = clock_.Now();
  const llama_vocab* vocab = llama_model_get_vocab(model_);
  int64_t generated = 0;
  for (auto& s : in_batch) {
    s->n_past += s->batch_tokens;
    if (s->next < 0) {
      s->prefilled += static_cast<size_t>(s->batch_tokens);
      prompt_tokens_total_.fetch_add(s->batch_tokens);
    }
    if (s->logits_index < 0) continue;  // prompt not finished yet
    if (s->next < 0) s->prefill_end = now;
    const llama_token tok = llama_sampler_sample(s->sampler, ctx_, s->logits_index);
    if (!s->has_first_token) {
      s->has_first_token = true;
      s->first_token = now;
    }
    if (llama_vocab_is_eog(vocab, tok)) {
      Finish(*s, "stop");
      continue;
    }
    // Counted before the text goes out: a caller reading Stats() after the
    // final event sees this token.
    ++s->completion_tokens;
    ++generated;
    generated_tokens_total_.fetch_add(1);
    char buf[256];
    int32_t n = llama_token_to_piece(vocab, tok, buf, sizeof(buf), 0, false);
    std::string piece;
    if (n >= 0) {
      piece.assign(buf, static_cast<size_t>(n));
    } else {
      piece.resize(static_cast<size_t>(-n));
      n = llama_token_to_piece(vocab, tok, piece.data(), static_cast<int32_t>(piece.size()), 0,
                               false);
      piece.resize(n > 0 ? static_cast<size_t>(n) : 0);
    }
    s->next = tok;
    Emit(*s, piece, false);
    if (s->slot < 0) continue;  // a stop sequence finished it
    if (s->completion_tokens >= s->max_tokens) Finish(*s, "length");
  }
  int64_t used = 0;
  for (auto& slot : slots_) {
    if (slot) used += slot->n_past;
  }
  kv_used_.store(used);
  if (generated > 0) {
    std::lock_guard<std::mutex> lock(stats_mu_);
    token_window_.emplace_back(now, generated);
    while (!token_window_.empty() && now - token_window_.front().first > std::chrono::seconds(10)) {
      token_window_.pop_front();
    }
  }
}

void LlamaCppEngine::Emit(Sequence& seq, const std::string& piece, bool final_flush) {
  seq.raw += piece;
  DrainUtf8(seq.raw, seq.text, final_flush);
  if (!seq.stop.empty()) {
    // The earliest stop sequence in the text not yet streamed. Text that could
    // begin one was held back, so a match never starts before `emitted`.
    size_t at = std::string::npos;
    for (const auto& s : seq.stop) at = std::min(at, seq.text.find(s, seq.emitted));
    if (at != std::string::npos) {
      seq.text.resize(at);
      seq.raw.clear();
      Finish(seq, "stop");
      return;
    }
  }
  // Hold back the longest tail that is a proper prefix of a stop sequence.
  size_t hold = 0;
  for (const auto& s : seq.stop) {
    const size_t most = std::min(s.size() - 1, seq.text.size() - seq.emitted);
    for (size_t k = most; k > hold; --k) {
      if (seq.text.compare(seq.text.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  const size_t until = seq.text.size() - hold;
  if (until <= seq.emitted) return;
  GenerateEvent ev;
  ev.text = seq.text.substr(seq.emitted, until - seq.emitted);
  seq.emitted = until;
  try {
    seq.on_event(ev);
  } catch (const std::exception& e) {
    spdlog::warn("llamacpp: request {}: event callback threw: {}", seq.id, e.what());
  }
}

void LlamaCppEngine::Finish(Sequence& seq, const std::string& reason, const std::string& error) {
  // Whatever is left (held-back text, an incomplete character) goes out with
  // the final event; a stop sequence already cut `text` where it began.
  DrainUtf8(seq.raw, seq.text, true);
  const common::TimePoint now = clock_.Now();
  GenerateEvent ev;
  ev.done = true;
  ev.finish_reason = reason;
  ev.error = error;
  if (seq.emitted < seq.text.size()) ev.text = seq.text.substr(seq.emitted);
  seq.emitted = seq.text.size();
  ev.prompt_tokens = static_cast<int64_t>(seq.prompt.size());
  ev.completion_tokens = seq.completion_tokens;
  ev.total_s = Seconds(now - seq.submitted);
  ev.time_to_first_token_s = seq.has_first_token ? Seconds(seq.first_token - seq.submitted) : 0;
  if (seq.prefill_started) {
    ev.prompt_eval_s =
        Seconds((seq.next >= 0 || seq.has_first_token ? seq.prefill_end : now) - seq.prefill_start);
  }
  std::shared_ptr<Sequence> keep;  // `seq` must outlive this call
  if (seq.slot >= 0) {
    llama_memory_seq_rm(llama_get_memory(ctx_), seq.slot, -1, -1);
    keep = std::move(slots_[seq.slot]);
    seq.slot = -1;
    running_.fetch_sub(1);
  }
  RecordFinished(seq);
  try {
    seq.on_event(ev);
  } catch (const std::exception& e) {
    spdlog::warn("llamacpp: request {}: event callback threw: {}", seq.id, e.what());
  }
}

void LlamaCppEngine::RecordFinished(const Sequence& seq) {
  requests_finished_total_.fetch_add(1);
  if (!seq.has_first_token) return;
  const common::TimePoint now = clock_.Now();
  Finished f{now, Seconds(seq.first_token - seq.submitted), -1};
  if (seq.completion_tokens > 1) {
    f.tpot_s = Seconds(now - seq.first_token) / static_cast<double>(seq.completion_tokens - 1);
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  finished_window_.push_back(f);
  while (!finished_window_.empty() &&
         now - finished_window_.front().at > std::chrono::seconds(60)) {
    finished_window_.pop_front();
  }
}

EngineStats LlamaCppEngine::Stats() const {
  EngineStats s;
  s.running = running_.load();
  {
    std::lock_guard<std::mutex> lock(wakeup_->mu);
    s.queued = static_cast<int64_t>(wakeup_->queue.size());
  }
  s.kv_blocks_total = kv_total_.load();
  s.kv_cache_utilization =
      s.kv_blocks_total > 0 ? static_cast<double>(kv_used_.load()) / s.kv_blocks_total : 0;
  s.prompt_tokens_total = prompt_tokens_total_.load();
  s.generated_tokens_total = generated_tokens_total_.load();
  s.requests_finished_total = requests_finished_total_.load();
  const common::TimePoint now = clock_.Now();
  std::vector<double> ttft, tpot;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    int64_t tokens = 0;
    for (const auto& [at, n] : token_window_) {
      if (now - at <= std::chrono::seconds(10)) tokens += n;
    }
    s.tokens_per_second = static_cast<double>(tokens) / 10.0;
    for (const auto& f : finished_window_) {
      if (now - f.at > std::chrono::seconds(60)) continue;
      ttft.push_back(f.ttft_s);
      if (f.tpot_s >= 0) tpot.push_back(f.tpot_s);
    }
  }
  auto quantile = [](std::vector<double>& v, double q) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
    return v[i];
  };
  s.ttft_p50_s = quantile(ttft, 0.5);
  s.ttft_p99_s = quantile(ttft, 0.99);
  s.tpot_p50_s = quantile(tpot, 0.5);
  s.tpot_p99_s = quantile(tpot, 0.99);
  return s;
}

}  // namespace corral::worker
