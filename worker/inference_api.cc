#include "worker/inference_api.h"

#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>
#include <openssl/evp.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <random>
#include <set>

namespace corral::worker {

namespace http = web::http;
using common::Status;
using common::TimePoint;
using json = nlohmann::json;

namespace {

std::string Hex(const unsigned char* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 15]);
  }
  return out;
}

// SHA-256 of a string, hex. Called where an entry is made, not on cpprestsdk's
// pool threads (OpenSSL's per-thread state there is never freed).
std::string Sha256Hex(const std::string& s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr) != 1) return "";
  return Hex(md, len);
}

}  // namespace

// ---------------------------------------------------------------------------
// ReplicaEntry / ReplicaTable

std::string_view ReplicaStateName(ReplicaState state) {
  switch (state) {
    case ReplicaState::kLoading: return "Loading";
    case ReplicaState::kReady: return "Ready";
    case ReplicaState::kDraining: return "Draining";
  }
  return "Unknown";
}

ReplicaEntry::ReplicaEntry(ReplicaInfo info, Engine* engine, ReplicaState state)
    : info_(std::move(info)),
      digest_(info_.digest.empty() ? Sha256Hex(info_.spec.engine + "\n" + info_.spec.source)
                                   : info_.digest),
      engine_(engine),
      state_(state) {}

ReplicaState ReplicaEntry::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

void ReplicaEntry::SetState(ReplicaState state) {
  std::lock_guard lock(mu_);
  state_ = state;
}

int64_t ReplicaEntry::in_flight() const {
  std::lock_guard lock(mu_);
  return in_flight_;
}

bool ReplicaEntry::TryAcquire() {
  std::lock_guard lock(mu_);
  if (state_ != ReplicaState::kReady) return false;
  ++in_flight_;
  return true;
}

void ReplicaEntry::Release() {
  std::lock_guard lock(mu_);
  if (in_flight_ > 0 && --in_flight_ == 0) idle_.notify_all();
}

bool ReplicaEntry::WaitIdle(common::Clock& clock, TimePoint deadline) const {
  std::unique_lock lock(mu_);
  while (in_flight_ > 0) {
    if (clock.Now() >= deadline) return false;
    idle_.wait_for(lock, std::chrono::milliseconds(20));
  }
  return true;
}

Status ReplicaTable::Add(std::shared_ptr<ReplicaEntry> entry) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = entries_.try_emplace(entry->replica(), entry);
  if (!inserted) return common::AlreadyExists("replica " + entry->replica() + " is already served");
  return Status::Ok();
}

std::shared_ptr<ReplicaEntry> ReplicaTable::Remove(const std::string& replica) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(replica);
  if (it == entries_.end()) return nullptr;
  auto entry = std::move(it->second);
  entries_.erase(it);
  return entry;
}

std::shared_ptr<ReplicaEntry> ReplicaTable::Lookup(std::string_view model) const {
  std::lock_guard lock(mu_);
  std::shared_ptr<ReplicaEntry> best;
  int64_t best_load = 0;
  bool best_ready = false;
  for (const auto& [name, entry] : entries_) {
    if (entry->model() != model) continue;
    const bool ready = entry->state() == ReplicaState::kReady;
    const int64_t load = entry->in_flight();
    if (!best || (ready && !best_ready) || (ready == best_ready && load < best_load)) {
      best = entry;
      best_load = load;
      best_ready = ready;
    }
  }
  return best;
}

std::vector<std::shared_ptr<ReplicaEntry>> ReplicaTable::List() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<ReplicaEntry>> out;
  out.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) out.push_back(entry);
  return out;
}

// ---------------------------------------------------------------------------
// Helpers

namespace {

enum class Api { kOpenAI, kOllama };

// The generating endpoints; names are metric label values.
enum class Endpoint { kChatCompletions, kCompletions, kOllamaGenerate, kOllamaChat };

const char* EndpointLabel(Endpoint e) {
  switch (e) {
    case Endpoint::kChatCompletions: return "openai_chat_completions";
    case Endpoint::kCompletions: return "openai_completions";
    case Endpoint::kOllamaGenerate: return "ollama_generate";
    case Endpoint::kOllamaChat: return "ollama_chat";
  }
  return "other";
}

// An error answer, rendered in the shape of the API that was called.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param = {};  // OpenAI "param": the offending field, when there is one
  std::string code = {};   // OpenAI "code"
  int retry_after_s = 0;
};

// Thrown by the body readers below and caught in the request parser: a field
// of the request body is missing or has a wrong type or value.
struct BadField {
  std::string param;
  std::string message;
};

// A complete HTTP answer.
struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

int64_t UnixNanos(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// RFC 3339 in UTC with nanoseconds, as Ollama writes created_at.
std::string FormatNanos(int64_t secs, int64_t nanos) {
  const std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(nanos));
  return buf;
}

std::string FormatTime(TimePoint t) {
  const int64_t ns = UnixNanos(t);
  int64_t secs = ns / 1'000'000'000, rem = ns % 1'000'000'000;
  if (rem < 0) {
    rem += 1'000'000'000;
    --secs;
  }
  return FormatNanos(secs, rem);
}

// "chatcmpl-<24 hex>": unique within and across processes (a random per-process
// key mixed with a counter). Not OpenSSL's RAND: its per-thread state on
// cpprestsdk's pool threads is never freed.
std::string RandomId(const std::string& prefix) {
  static const uint64_t key = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }();
  static std::atomic<uint64_t> counter{0};
  auto mix = [](uint64_t z) {  // splitmix64
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  const uint64_t n = counter.fetch_add(1);
  const uint64_t a = mix(key ^ n), b = mix(a ^ key);
  unsigned char bytes[12];
  std::memcpy(bytes, &a, 8);
  std::memcpy(bytes + 8, &b, 4);
  return prefix + Hex(bytes, sizeof bytes);
}

json OpenAIErrorBody(const ApiError& e) {
  std::string type = "invalid_request_error";
  if (e.status == 429) type = "rate_limit_error";
  if (e.status >= 500) type = "server_error";
  return {{"error",
           {{"message", e.message},
            {"type", type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

json OllamaErrorBody(const ApiError& e) { return {{"error", e.message}}; }

Reply ErrorReply(Api api, const ApiError& e) {
  Reply r;
  r.status = e.status;
  r.body = (api == Api::kOpenAI ? OpenAIErrorBody(e) : OllamaErrorBody(e)).dump();
  if (e.retry_after_s > 0) r.headers.emplace_back("Retry-After", std::to_string(e.retry_after_s));
  return r;
}

Reply JsonReply(const json& body, int status = 200) {
  Reply r;
  r.status = status;
  r.body = body.dump();
  return r;
}

void SendReply(http::http_request req, const Reply& r) {
  http::http_response resp(static_cast<http::status_code>(r.status));
  for (const auto& [k, v] : r.headers) resp.headers().add(k, v);
  // As bytes: cpprestsdk's set_body(std::string) reinterprets a char
  // streambuf as a byte one (UBSan reports it); the vector overload does not.
  resp.headers().set_content_type(r.content_type);
  resp.set_body(std::vector<unsigned char>(r.body.begin(), r.body.end()));
  req.reply(resp).then([](pplx::task<void> t) {
    try {
      t.get();
    } catch (const std::exception& e) {
      spdlog::debug("inference: reply not delivered: {}", e.what());
    }
  });
}

// --- request body readers (throw BadField) ---------------------------------

const json* Field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string Join(const std::string& prefix, const char* key) {
  return prefix.empty() ? std::string(key) : prefix + "." + key;
}

std::optional<std::string> OptString(const json& obj, const char* key,
                                     const std::string& prefix = "") {
  const json* v = Field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) throw BadField{Join(prefix, key), "must be a string"};
  return v->get<std::string>();
}

std::optional<bool> OptBool(const json& obj, const char* key, const std::string& prefix = "") {
  const json* v = Field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw BadField{Join(prefix, key), "must be a boolean"};
  return v->get<bool>();
}

std::optional<double> OptNumber(const json& obj, const char* key, double lo, double hi,
                                const std::string& prefix = "") {
  const json* v = Field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw BadField{Join(prefix, key), "must be a number"};
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    char msg[96];
    std::snprintf(msg, sizeof msg, "must be between %g and %g", lo, hi);
    throw BadField{Join(prefix, key), msg};
  }
  return d;
}

std::optional<int64_t> OptInt(const json& obj, const char* key, int64_t lo, int64_t hi,
                              const std::string& prefix = "") {
  const json* v = Field(obj, key);
  if (!v) return std::nullopt;
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::floor(d) != d) throw BadField{Join(prefix, key), "must be an integer"};
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      throw BadField{Join(prefix, key),
                     "must be between " + std::to_string(lo) + " and " + std::to_string(hi)};
    }
    return static_cast<int64_t>(d);
  }
  if (!v->is_number_integer()) throw BadField{Join(prefix, key), "must be an integer"};
  int64_t n = 0;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    n = u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
  } else {
    n = v->get<int64_t>();
  }
  if (n < lo || n > hi) {
    throw BadField{Join(prefix, key),
                   "must be between " + std::to_string(lo) + " and " + std::to_string(hi)};
  }
  return n;
}

// A seed is any integer (OpenAI allows negatives): its bits are the seed.
std::optional<uint64_t> OptSeed(const json& obj, const char* key, const std::string& prefix = "") {
  const json* v = Field(obj, key);
  if (!v) return std::nullopt;
  if (v->is_number_unsigned()) return v->get<uint64_t>();
  if (v->is_number_integer()) return static_cast<uint64_t>(v->get<int64_t>());
  throw BadField{Join(prefix, key), "must be an integer"};
}

// "stop": a string or a list of strings (at most `max`).
std::vector<std::string> OptStops(const json& obj, const char* key, size_t max,
                                  const std::string& prefix = "") {
  const json* v = Field(obj, key);
  std::vector<std::string> out;
  if (!v) return out;
  if (v->is_string()) {
    if (!v->get<std::string>().empty()) out.push_back(v->get<std::string>());
    return out;
  }
  if (!v->is_array()) throw BadField{Join(prefix, key), "must be a string or a list of strings"};
  if (v->size() > max) {
    throw BadField{Join(prefix, key), "has " + std::to_string(v->size()) +
                                          " stop sequences; at most " + std::to_string(max) +
                                          " are allowed"};
  }
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      throw BadField{Join(prefix, key) + "[" + std::to_string(i) + "]", "must be a string"};
    }
    if (!(*v)[i].get<std::string>().empty()) out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

std::string RequiredModel(const json& body) {
  auto model = OptString(body, "model");
  if (!model || model->empty()) throw BadField{"model", "is required (the model to use)"};
  return *model;
}

// OpenAI message content: a string, null, or a list of parts of which only
// text parts are understood.
std::string MessageContent(const json& msg, const std::string& where) {
  const json* c = Field(msg, "content");
  if (!c) return "";
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) {
    throw BadField{where + ".content", "must be a string or a list of content parts"};
  }
  std::string text;
  for (size_t j = 0; j < c->size(); ++j) {
    const json& part = (*c)[j];
    const std::string pw = where + ".content[" + std::to_string(j) + "]";
    if (!part.is_object()) throw BadField{pw, "must be an object"};
    const auto type = OptString(part, "type", pw).value_or("");
    if (type != "text") {
      throw BadField{pw + ".type",
                     "content part type \"" + type + "\" is not supported (only \"text\")"};
    }
    const auto t = OptString(part, "text", pw);
    if (!t) throw BadField{pw + ".text", "is required"};
    text += *t;
  }
  return text;
}

std::vector<ChatMessage> ParseMessages(const json& body, bool required) {
  const json* m = Field(body, "messages");
  std::vector<ChatMessage> out;
  if (!m) {
    if (required) throw BadField{"messages", "is required (a list of chat messages)"};
    return out;
  }
  if (!m->is_array()) throw BadField{"messages", "must be a list of chat messages"};
  if (m->empty() && required) throw BadField{"messages", "must not be empty"};
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) throw BadField{where, "must be an object"};
    auto role = OptString(msg, "role", where);
    if (!role || role->empty()) throw BadField{where + ".role", "is required"};
    static const std::set<std::string> kRoles = {"system", "user",      "assistant",
                                                 "tool",   "developer", "function"};
    if (!kRoles.count(*role)) {
      throw BadField{where + ".role",
                     "\"" + *role + "\" is not one of system, developer, user, assistant, tool"};
    }
    if (const json* images = Field(msg, "images"); images && !images->empty()) {
      throw BadField{where + ".images", "images are not supported by this model"};
    }
    out.push_back({*role, MessageContent(msg, where)});
  }
  return out;
}

// A parsed generating request.
struct ParsedRequest {
  Endpoint endpoint = Endpoint::kChatCompletions;
  std::string model;
  bool stream = false;
  bool include_usage = false;  // OpenAI stream_options.include_usage
  bool echo = false;           // OpenAI completions: prepend the prompt
  bool max_tokens_given = false;
  bool load_only = false;  // Ollama: no prompt/messages = "load the model"
  GenerateRequest gen;
};

ParsedRequest ParseOpenAI(Endpoint endpoint, const json& body) {
  ParsedRequest p;
  p.endpoint = endpoint;
  p.model = RequiredModel(body);
  if (endpoint == Endpoint::kChatCompletions) {
    p.gen.messages = ParseMessages(body, true);
  } else {
    const json* prompt = Field(body, "prompt");
    if (!prompt) throw BadField{"prompt", "is required"};
    if (prompt->is_string()) {
      p.gen.prompt = prompt->get<std::string>();
    } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
      p.gen.prompt = (*prompt)[0].get<std::string>();
    } else {
      throw BadField{"prompt",
                     "must be a string (or a list of one string; token ids and "
                     "batched prompts are not supported)"};
    }
    p.echo = OptBool(body, "echo").value_or(false);
  }
  p.stream = OptBool(body, "stream").value_or(false);
  if (const json* so = Field(body, "stream_options")) {
    if (!so->is_object()) throw BadField{"stream_options", "must be an object"};
    p.include_usage = OptBool(*so, "include_usage", "stream_options").value_or(false);
  }
  if (auto n = OptInt(body, "n", 1, INT32_MAX); n && *n != 1) {
    throw BadField{"n", "only n=1 is supported"};
  }
  if (auto b = OptInt(body, "best_of", 1, INT32_MAX); b && *b != 1) {
    throw BadField{"best_of", "only best_of=1 is supported"};
  }
  SamplingParams& s = p.gen.sampling;
  // OpenAI's defaults: temperature 1, nucleus off, no top-k.
  s.temperature = OptNumber(body, "temperature", 0, 2).value_or(1.0);
  s.top_p = OptNumber(body, "top_p", 0, 1).value_or(1.0);
  // top_k is not OpenAI's but vLLM and others take it; -1 or 0 means off.
  s.top_k = static_cast<int>(OptInt(body, "top_k", -1, INT32_MAX).value_or(0));
  if (s.top_k < 0) s.top_k = 0;
  s.seed = OptSeed(body, "seed");
  s.stop = OptStops(body, "stop", 4);
  // max_completion_tokens replaces max_tokens; both are accepted, the new one wins.
  auto max_tokens = OptInt(body, "max_completion_tokens", 1, INT32_MAX);
  if (!max_tokens) max_tokens = OptInt(body, "max_tokens", 1, INT32_MAX);
  if (max_tokens) {
    s.max_tokens = static_cast<int>(*max_tokens);
    p.max_tokens_given = true;
  } else if (endpoint == Endpoint::kCompletions) {
    s.max_tokens = 16;  // the legacy completions API's default
    p.max_tokens_given = true;
  }
  return p;
}

ParsedRequest ParseOllama(Endpoint endpoint, const json& body) {
  ParsedRequest p;
  p.endpoint = endpoint;
  p.model = RequiredModel(body);
  p.stream = OptBool(body, "stream").value_or(true);  // Ollama streams by default
  if (endpoint == Endpoint::kOllamaChat) {
    p.gen.messages = ParseMessages(body, false);
    p.load_only = p.gen.messages.empty();
  } else {
    const std::string prompt = OptString(body, "prompt").value_or("");
    const std::string system = OptString(body, "system").value_or("");
    const bool raw = OptBool(body, "raw").value_or(false);
    if (const json* images = Field(body, "images"); images && !images->empty()) {
      throw BadField{"images", "images are not supported by this model"};
    }
    p.load_only = prompt.empty();
    if (raw) {
      p.gen.prompt = prompt;
    } else {
      // Ollama applies the model's template to a generate prompt (as the user
      // turn, after the system message), unless raw.
      if (!system.empty()) p.gen.messages.push_back({"system", system});
      p.gen.messages.push_back({"user", prompt});
    }
  }
  SamplingParams& s = p.gen.sampling;
  s.temperature = 0.8;  // Ollama's defaults
  s.top_k = 40;
  s.top_p = 0.9;
  if (const json* opts = Field(body, "options")) {
    if (!opts->is_object()) throw BadField{"options", "must be an object"};
    const std::string o = "options";
    s.temperature = OptNumber(*opts, "temperature", 0, 100, o).value_or(s.temperature);
    s.top_p = OptNumber(*opts, "top_p", 0, 1, o).value_or(s.top_p);
    s.top_k = static_cast<int>(OptInt(*opts, "top_k", 0, INT32_MAX, o).value_or(s.top_k));
    s.seed = OptSeed(*opts, "seed", o);
    s.stop = OptStops(*opts, "stop", 64, o);
    // num_predict: -1 (default) = until the context is full; -2 = fill the context.
    if (auto n = OptInt(*opts, "num_predict", -2, INT32_MAX, o); n && *n > 0) {
      s.max_tokens = static_cast<int>(*n);
      p.max_tokens_given = true;
    }
  }
  return p;
}

// The engine's Submit errors in HTTP terms.
ApiError SubmitError(const Status& s, const InferenceServerOptions& opts, Endpoint endpoint) {
  ApiError e;
  e.message = s.message();
  switch (s.code()) {
    case common::Code::kInvalidArgument:
      e.status = 400;
      e.code = "context_length_exceeded";
      e.param = endpoint == Endpoint::kChatCompletions || endpoint == Endpoint::kOllamaChat
                    ? "messages"
                    : "prompt";
      break;
    case common::Code::kResourceExhausted:
      e.status = 429;
      e.code = "rate_limit_exceeded";
      e.retry_after_s = opts.retry_after_overloaded_s;
      break;
    case common::Code::kFailedPrecondition:
    case common::Code::kUnavailable:
      e.status = 503;
      e.code = "model_not_ready";
      e.retry_after_s = opts.retry_after_unavailable_s;
      break;
    case common::Code::kNotFound:
      e.status = 404;
      e.code = "model_not_found";
      break;
    default:
      e.status = 500;
      e.code = "internal_error";
      break;
  }
  return e;
}

const char* FinishReason(const std::string& r) { return r == "length" ? "length" : "stop"; }

// Tokens in the prompt (approximately, for chat: the template adds a few).
int64_t EstimatePromptTokens(const Engine& engine, const GenerateRequest& g) {
  if (g.messages.empty()) return engine.CountTokens(g.prompt);
  int64_t n = 0;
  for (const auto& m : g.messages) n += engine.CountTokens(m.content) + 4;
  return n;
}

// A model's details as Ollama lists them.
json OllamaDetails(const ReplicaEntry& e) {
  const ModelSpec& spec = e.info().spec;
  json details = {
      {"parent_model", ""},   {"format", spec.engine == "llamacpp" ? "gguf" : spec.engine},
      {"family", ""},         {"families", nullptr},
      {"parameter_size", ""}, {"quantization_level", ""}};
  const json& settings = spec.engine == "llamacpp" ? spec.llamacpp : spec.sim;
  if (settings.is_object()) {
    for (const char* k : {"family", "parameter_size", "quantization_level"}) {
      if (auto it = settings.find(k); it != settings.end() && it->is_string()) details[k] = *it;
    }
  }
  if (!details["family"].get<std::string>().empty()) {
    details["families"] = json::array({details["family"]});
  }
  return details;
}

// The distinct served model names, with one representative entry each (Ready first).
std::map<std::string, std::shared_ptr<ReplicaEntry>> DistinctModels(
    const std::vector<std::shared_ptr<ReplicaEntry>>& entries) {
  std::map<std::string, std::shared_ptr<ReplicaEntry>> out;
  for (const auto& e : entries) {
    auto [it, inserted] = out.try_emplace(e->model(), e);
    if (!inserted && it->second->state() != ReplicaState::kReady &&
        e->state() == ReplicaState::kReady) {
      it->second = e;
    }
  }
  return out;
}

std::string QueryParam(const http::http_request& req, const std::string& key) {
  try {
    auto q = web::uri::split_query(req.relative_uri().query());
    auto it = q.find(key);
    if (it != q.end()) return web::uri::decode(it->second);
  } catch (const std::exception&) {
  }
  return "";
}

}  // namespace

// ---------------------------------------------------------------------------
// Impl

// Per-replica engine figures as Prometheus families, collected at scrape time.
class ReplicaCollector final : public prometheus::Collectable {
 public:
  explicit ReplicaCollector(const ReplicaDirectory& directory) : directory_(directory) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    struct Def {
      const char* name;
      const char* help;
      MetricType type;
    };
    static const Def kDefs[] = {
        {"corral_worker_replica_state",
         "1 for the replica's current state (Loading, Ready, Draining)", MetricType::Gauge},
        {"corral_worker_replica_in_flight_requests", "Requests admitted and not yet finished",
         MetricType::Gauge},
        {"corral_worker_replica_running_sequences", "Sequences in the engine's running batch",
         MetricType::Gauge},
        {"corral_worker_replica_queued_requests",
         "Requests admitted by the engine, waiting for a batch slot or KV blocks",
         MetricType::Gauge},
        {"corral_worker_replica_kv_cache_utilization_ratio", "Used KV-cache blocks over total",
         MetricType::Gauge},
        {"corral_worker_replica_kv_cache_blocks", "KV-cache blocks in total", MetricType::Gauge},
        {"corral_worker_replica_generation_tokens_per_second",
         "Generated tokens per second over the last ~10 s", MetricType::Gauge},
        {"corral_worker_replica_time_to_first_token_seconds",
         "Time to first token over the last ~60 s of finished requests, by quantile",
         MetricType::Gauge},
        {"corral_worker_replica_time_per_output_token_seconds",
         "Time per output token over the last ~60 s of finished requests, by quantile",
         MetricType::Gauge},
        {"corral_worker_replica_preemptions_total", "Sequences preempted for KV-cache space",
         MetricType::Counter},
        {"corral_worker_replica_prefix_cache_hit_tokens_total",
         "Prompt tokens served from the prefix cache", MetricType::Counter},
        {"corral_worker_replica_prompt_tokens_total", "Prompt tokens processed",
         MetricType::Counter},
        {"corral_worker_replica_generation_tokens_total", "Tokens generated", MetricType::Counter},
        {"corral_worker_replica_requests_finished_total", "Generations finished",
         MetricType::Counter},
    };
    constexpr size_t kCount = sizeof kDefs / sizeof kDefs[0];
    std::vector<prometheus::MetricFamily> families(kCount);
    for (size_t i = 0; i < kCount; ++i) {
      families[i].name = kDefs[i].name;
      families[i].help = kDefs[i].help;
      families[i].type = kDefs[i].type;
    }
    for (const auto& entry : directory_.List()) {
      const EngineStats st = entry->engine()->Stats();
      const ReplicaState state = entry->state();
      const std::vector<prometheus::ClientMetric::Label> labels = {{"model", entry->model()},
                                                                   {"replica", entry->replica()}};
      auto add = [&](size_t family, double value,
                     std::optional<prometheus::ClientMetric::Label> extra = std::nullopt) {
        prometheus::ClientMetric m;
        m.label = labels;
        if (extra) m.label.push_back(*extra);
        if (families[family].type == MetricType::Counter) {
          m.counter.value = value;
        } else {
          m.gauge.value = value;
        }
        families[family].metric.push_back(std::move(m));
      };
      for (ReplicaState s :
           {ReplicaState::kLoading, ReplicaState::kReady, ReplicaState::kDraining}) {
        add(0, s == state ? 1 : 0,
            prometheus::ClientMetric::Label{"state", std::string(ReplicaStateName(s))});
      }
      add(1, static_cast<double>(entry->in_flight()));
      add(2, static_cast<double>(st.running));
      add(3, static_cast<double>(st.queued));
      add(4, st.kv_cache_utilization);
      add(5, static_cast<double>(st.kv_blocks_total));
      add(6, st.tokens_per_second);
      add(7, st.ttft_p50_s, prometheus::ClientMetric::Label{"quantile", "0.5"});
      add(7, st.ttft_p99_s, prometheus::ClientMetric::Label{"quantile", "0.99"});
      add(8, st.tpot_p50_s, prometheus::ClientMetric::Label{"quantile", "0.5"});
      add(8, st.tpot_p99_s, prometheus::ClientMetric::Label{"quantile", "0.99"});
      add(9, static_cast<double>(st.preemptions_total));
      add(10, static_cast<double>(st.prefix_cache_hit_tokens_total));
      add(11, static_cast<double>(st.prompt_tokens_total));
      add(12, static_cast<double>(st.generated_tokens_total));
      add(13, static_cast<double>(st.requests_finished_total));
    }
    return families;
  }

 private:
  const ReplicaDirectory& directory_;
};

class Exchange;

class InferenceServer::Impl : public std::enable_shared_from_this<InferenceServer::Impl> {
 public:
  Impl(InferenceServerOptions options, ReplicaDirectory& directory, common::Clock& clock,
       prometheus::Registry& registry)
      : options_(std::move(options)),
        directory_(directory),
        clock_(clock),
        registry_(registry),
        collector_(directory),
        requests_(prometheus::BuildCounter()
                      .Name("corral_worker_inference_requests_total")
                      .Help("Inference requests answered, by model, endpoint and HTTP status")
                      .Register(registry)),
        disconnects_(prometheus::BuildCounter()
                         .Name("corral_worker_inference_client_disconnects_total")
                         .Help("Streaming requests whose client went away before the end "
                               "(their generation was cancelled)")
                         .Register(registry)),
        duration_(prometheus::BuildHistogram()
                      .Name("corral_worker_inference_request_duration_seconds")
                      .Help("Time from receiving a generating request to its last byte")
                      .Register(registry)),
        ttft_(prometheus::BuildHistogram()
                  .Name("corral_worker_inference_time_to_first_token_seconds")
                  .Help("Time from receiving a request to its first generated text")
                  .Register(registry)),
        tpot_(prometheus::BuildHistogram()
                  .Name("corral_worker_inference_time_per_output_token_seconds")
                  .Help("Time per output token after the first")
                  .Register(registry)) {}

  Status Start();
  void Stop();

  void Serve(http::http_request req);
  void ServeWithBody(http::http_request req, const std::string& path, std::vector<uint8_t> body);

  // Generating endpoints.
  void Generate(http::http_request req, Api api, Endpoint endpoint, const json& body);

  Reply Models() const;
  Reply Model(const std::string& id) const;
  Reply Tags() const;
  Reply Ps() const;
  Reply Show(const json& body) const;

  std::string MetricsText() const {
    prometheus::TextSerializer serializer;
    auto families = registry_.Collect();
    auto more = collector_.Collect();
    families.insert(families.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
    return serializer.Serialize(families);
  }
  json StatsJson(const std::string& model, const std::string& replica) const;

  void CountRequest(const std::string& model, Endpoint endpoint, int status) {
    requests_
        .Add({{"model", model},
              {"endpoint", EndpointLabel(endpoint)},
              {"code", std::to_string(status)}})
        .Increment();
  }

  // Exchange bookkeeping (for Stop).
  uint64_t Track(const std::shared_ptr<Exchange>& ex);
  void Untrack(uint64_t id);

  const InferenceServerOptions options_;
  ReplicaDirectory& directory_;
  common::Clock& clock_;
  prometheus::Registry& registry_;
  ReplicaCollector collector_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& disconnects_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Histogram>& ttft_;
  prometheus::Family<prometheus::Histogram>& tpot_;

  std::unique_ptr<http::experimental::listener::http_listener> listener_;

  std::mutex mu_;
  std::condition_variable idle_;                        // notified when active_ empties
  std::map<uint64_t, std::weak_ptr<Exchange>> active_;  // guarded by mu_
  uint64_t next_id_ = 0;                                // guarded by mu_
};

// One generating request: from admission to the response's last byte.
//
// Threads: Start runs on a cpprestsdk pool thread; OnEvent on the engine's
// thread(s) (serialized by event_mu_); OnReplyDone on a pool thread when the
// response has been sent or the connection failed.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(std::shared_ptr<InferenceServer::Impl> server, http::http_request req, Api api,
           ParsedRequest parsed, std::shared_ptr<ReplicaEntry> entry, TimePoint received)
      : server_(std::move(server)),
        req_(std::move(req)),
        api_(api),
        p_(std::move(parsed)),
        entry_(std::move(entry)),
        received_(received),
        id_(RandomId(p_.endpoint == Endpoint::kChatCompletions ? "chatcmpl-"
                     : p_.endpoint == Endpoint::kCompletions   ? "cmpl-"
                                                               : "ollama-")),
        created_(
            std::chrono::duration_cast<std::chrono::seconds>(received.time_since_epoch()).count()) {
  }

  ~Exchange() {
    if (acquired_.exchange(false)) entry_->Release();
    if (track_id_) server_->Untrack(track_id_);
  }

  // The entry was acquired by the caller; the exchange releases it.
  void Start();
  void OnEvent(const GenerateEvent& e);
  void RequestCancel();

 private:
  // Streaming output (event thread, under event_mu_).
  void Write(const std::string& data);
  void WriteOpenAIChunk(const json& choice, const json& usage_or_absent);
  void StreamText(const std::string& text);
  void StreamEnd(const GenerateEvent& e);
  void CloseStream();
  json OllamaFinal(const GenerateEvent& e, const TimePoint& now) const;
  void ReplyWhole(const GenerateEvent& e);
  void Finish(const GenerateEvent& e);

  friend class InferenceServer::Impl;

  std::shared_ptr<InferenceServer::Impl> server_;
  http::http_request req_;
  const Api api_;
  const ParsedRequest p_;
  std::shared_ptr<ReplicaEntry> entry_;
  std::atomic<bool> acquired_{true};  // the entry's in-flight count still includes this request
  uint64_t track_id_ = 0;
  const TimePoint received_;
  TimePoint submitted_{};
  const std::string id_;
  const int64_t created_;

  concurrency::streams::producer_consumer_buffer<uint8_t> buf_;
  std::atomic<bool> gone_{false};  // the client is gone or the stream was abandoned

  std::mutex mu_;
  std::shared_ptr<Generation> generation_;  // guarded by mu_; reset at the end
  bool finished_ = false;                   // guarded by mu_: the final event was handled
  bool cancel_wanted_ = false;              // guarded by mu_: cancel once generation_ is known

  std::mutex event_mu_;  // serializes OnEvent; guards the fields below
  std::string text_;     // non-streaming: the whole output so far
  std::optional<TimePoint> first_token_at_;
};

uint64_t InferenceServer::Impl::Track(const std::shared_ptr<Exchange>& ex) {
  std::lock_guard lock(mu_);
  const uint64_t id = ++next_id_;
  active_[id] = ex;
  return id;
}

void InferenceServer::Impl::Untrack(uint64_t id) {
  std::lock_guard lock(mu_);
  active_.erase(id);
  if (active_.empty()) idle_.notify_all();
}

void Exchange::Start() {
  track_id_ = server_->Track(shared_from_this());
  Engine* engine = entry_->engine();
  GenerateRequest gen = p_.gen;
  gen.id = id_;
  if (!p_.max_tokens_given) {
    // Unbounded requests run until the context is full (vLLM's and Ollama's
    // behaviour), with the engine's default where the context is unknown.
    const int64_t ctx = engine->context_length();
    if (ctx > 0) {
      gen.sampling.max_tokens = static_cast<int>(
          std::clamp<int64_t>(ctx - EstimatePromptTokens(*engine, gen), 1, INT32_MAX));
    }
  }
  if (p_.stream) {
    if (api_ == Api::kOpenAI && p_.endpoint == Endpoint::kChatCompletions) {
      // The role comes first, before any event can be written.
      WriteOpenAIChunk({{"index", 0},
                        {"delta", {{"role", "assistant"}, {"content", ""}}},
                        {"logprobs", nullptr},
                        {"finish_reason", nullptr}},
                       nullptr);
    }
    if (api_ == Api::kOpenAI && p_.echo && !gen.prompt.empty()) StreamText(gen.prompt);
  } else if (p_.echo) {
    text_ = gen.prompt;
  }
  submitted_ = server_->clock_.Now();
  auto self = shared_from_this();
  common::Result<std::shared_ptr<Generation>> result = common::Internal("not submitted");
  try {
    result = engine->Submit(gen, [self](const GenerateEvent& e) { self->OnEvent(e); });
  } catch (const std::exception& e) {
    result = common::Internal(std::string("engine: ") + e.what());
  }
  if (!result.ok()) {
    const ApiError err = SubmitError(result.status(), server_->options_, p_.endpoint);
    server_->CountRequest(entry_->model(), p_.endpoint, err.status);
    {
      std::lock_guard lock(mu_);
      finished_ = true;
    }
    gone_ = true;
    // Released before the answer goes out: whoever reads the answer sees the
    // count already down.
    if (acquired_.exchange(false)) entry_->Release();
    SendReply(req_, ErrorReply(api_, err));
    return;
  }
  bool cancel = false;
  {
    std::lock_guard lock(mu_);
    if (!finished_) {
      generation_ = *result;
      cancel = cancel_wanted_;
    }
  }
  if (cancel) (*result)->Cancel();
  if (!p_.stream) return;  // answered from the final event

  server_->CountRequest(entry_->model(), p_.endpoint, 200);
  http::http_response out(http::status_codes::OK);
  if (api_ == Api::kOpenAI) {
    out.headers().add("Cache-Control", "no-cache");
    out.set_body(buf_.create_istream(), "text/event-stream");
  } else {
    out.set_body(buf_.create_istream(), "application/x-ndjson");
  }
  // Completes when the whole stream has been sent or the connection failed;
  // before the final event that can only mean the client went away.
  auto ended = [self](pplx::task<void> t) {
    try {
      t.get();
    } catch (const std::exception& e) {
      spdlog::debug("inference: stream {} ended: {}", self->id_, e.what());
    }
    self->gone_ = true;
    bool finished;
    {
      std::lock_guard lock(self->mu_);
      finished = self->finished_;
    }
    if (finished) return;
    self->server_->disconnects_.Add({{"model", self->entry_->model()}}).Increment();
    spdlog::info("inference: client of {} went away; cancelling its generation", self->id_);
    self->RequestCancel();
  };
  try {
    req_.reply(out).then(ended);
  } catch (const std::exception& e) {
    ended(pplx::task_from_exception<void>(e));
  }
}

void Exchange::RequestCancel() {
  std::shared_ptr<Generation> g;
  {
    std::lock_guard lock(mu_);
    if (finished_) return;
    if (!generation_) {
      cancel_wanted_ = true;
      return;
    }
    g = generation_;
  }
  g->Cancel();  // outside mu_: the engine may deliver the final event right here
}

void Exchange::Write(const std::string& data) {
  if (gone_) return;
  try {
    if (buf_.in_avail() > server_->options_.max_stream_backlog_bytes) {
      spdlog::warn("inference: client of {} stopped reading ({} bytes buffered); cancelling", id_,
                   buf_.in_avail());
      gone_ = true;
      // Not inline: Cancel may deliver the final event synchronously, and
      // this runs inside OnEvent.
      auto self = shared_from_this();
      pplx::create_task([self] { self->RequestCancel(); });
      return;
    }
    buf_.putn_nocopy(reinterpret_cast<const uint8_t*>(data.data()), data.size()).wait();
    buf_.sync().wait();
  } catch (const std::exception& e) {
    gone_ = true;
  }
}

void Exchange::WriteOpenAIChunk(const json& choice, const json& usage) {
  json chunk = {{"id", id_},
                {"object", p_.endpoint == Endpoint::kChatCompletions ? "chat.completion.chunk"
                                                                     : "text_completion"},
                {"created", created_},
                {"model", p_.model},
                {"system_fingerprint", nullptr},
                {"choices", choice.is_null() ? json::array() : json::array({choice})}};
  if (p_.include_usage) chunk["usage"] = usage;
  Write("data: " + chunk.dump() + "\n\n");
}

void Exchange::StreamText(const std::string& text) {
  const std::string now = FormatTime(server_->clock_.Now());
  switch (p_.endpoint) {
    case Endpoint::kChatCompletions:
      WriteOpenAIChunk({{"index", 0},
                        {"delta", {{"content", text}}},
                        {"logprobs", nullptr},
                        {"finish_reason", nullptr}},
                       nullptr);
      break;
    case Endpoint::kCompletions:
      WriteOpenAIChunk(
          {{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", nullptr}},
          nullptr);
      break;
    case Endpoint::kOllamaGenerate:
      Write(json{{"model", p_.model}, {"created_at", now}, {"response", text}, {"done", false}}
                .dump() +
            "\n");
      break;
    case Endpoint::kOllamaChat:
      Write(json{{"model", p_.model},
                 {"created_at", now},
                 {"message", {{"role", "assistant"}, {"content", text}}},
                 {"done", false}}
                .dump() +
            "\n");
      break;
  }
}

json Exchange::OllamaFinal(const GenerateEvent& e, const TimePoint& now) const {
  auto ns = [](double s) { return static_cast<int64_t>(std::llround(std::max(0.0, s) * 1e9)); };
  const double total = std::chrono::duration<double>(now - received_).count();
  const double load = std::chrono::duration<double>(submitted_ - received_).count();
  json out = {{"model", p_.model}, {"created_at", FormatTime(now)}};
  if (p_.endpoint == Endpoint::kOllamaChat) {
    out["message"] = {{"role", "assistant"}, {"content", p_.stream ? "" : text_}};
  } else {
    out["response"] = p_.stream ? "" : text_;
  }
  out["done"] = true;
  out["done_reason"] = FinishReason(e.finish_reason);
  out["total_duration"] = ns(std::max(total, e.total_s + load));
  out["load_duration"] = ns(load);
  out["prompt_eval_count"] = e.prompt_tokens;
  out["prompt_eval_duration"] = ns(e.prompt_eval_s);
  out["eval_count"] = e.completion_tokens;
  out["eval_duration"] = ns(e.total_s - e.time_to_first_token_s);
  return out;
}

void Exchange::StreamEnd(const GenerateEvent& e) {
  if (e.finish_reason == "error" || e.finish_reason == "cancelled") {
    ApiError err;
    err.status = 500;
    err.message = e.finish_reason == "error" ? "generation failed: " + e.error
                                             : "generation cancelled: the replica is unloading";
    err.code = e.finish_reason == "error" ? "internal_error" : "cancelled";
    if (api_ == Api::kOpenAI) {
      Write("data: " + OpenAIErrorBody(err).dump() + "\n\n");
    } else {
      Write(OllamaErrorBody(err).dump() + "\n");
    }
    return;
  }
  const TimePoint now = server_->clock_.Now();
  const json usage = {{"prompt_tokens", e.prompt_tokens},
                      {"completion_tokens", e.completion_tokens},
                      {"total_tokens", e.prompt_tokens + e.completion_tokens}};
  switch (p_.endpoint) {
    case Endpoint::kChatCompletions:
      WriteOpenAIChunk({{"index", 0},
                        {"delta", json::object()},
                        {"logprobs", nullptr},
                        {"finish_reason", FinishReason(e.finish_reason)}},
                       nullptr);
      if (p_.include_usage) WriteOpenAIChunk(nullptr, usage);
      Write("data: [DONE]\n\n");
      break;
    case Endpoint::kCompletions:
      WriteOpenAIChunk({{"index", 0},
                        {"text", ""},
                        {"logprobs", nullptr},
                        {"finish_reason", FinishReason(e.finish_reason)}},
                       nullptr);
      if (p_.include_usage) WriteOpenAIChunk(nullptr, usage);
      Write("data: [DONE]\n\n");
      break;
    case Endpoint::kOllamaGenerate:
    case Endpoint::kOllamaChat: Write(OllamaFinal(e, now).dump() + "\n"); break;
  }
}

void Exchange::CloseStream() {
  try {
    buf_.close(std::ios_base::out).wait();
  } catch (const std::exception&) {
  }
}

void Exchange::ReplyWhole(const GenerateEvent& e) {
  Reply r;
  if (e.finish_reason == "error" || e.finish_reason == "cancelled") {
    ApiError err;
    if (e.finish_reason == "error") {
      err.status = 500;
      err.message = "generation failed: " + e.error;
      err.code = "internal_error";
    } else {
      err.status = 503;
      err.message = "generation cancelled: the replica is unloading";
      err.code = "cancelled";
      err.retry_after_s = server_->options_.retry_after_unavailable_s;
    }
    r = ErrorReply(api_, err);
  } else {
    const json usage = {{"prompt_tokens", e.prompt_tokens},
                        {"completion_tokens", e.completion_tokens},
                        {"total_tokens", e.prompt_tokens + e.completion_tokens}};
    switch (p_.endpoint) {
      case Endpoint::kChatCompletions:
        r = JsonReply(
            {{"id", id_},
             {"object", "chat.completion"},
             {"created", created_},
             {"model", p_.model},
             {"system_fingerprint", nullptr},
             {"choices",
              json::array(
                  {{{"index", 0},
                    {"message", {{"role", "assistant"}, {"content", text_}, {"refusal", nullptr}}},
                    {"logprobs", nullptr},
                    {"finish_reason", FinishReason(e.finish_reason)}}})},
             {"usage", usage}});
        break;
      case Endpoint::kCompletions:
        r = JsonReply(
            {{"id", id_},
             {"object", "text_completion"},
             {"created", created_},
             {"model", p_.model},
             {"system_fingerprint", nullptr},
             {"choices", json::array({{{"index", 0},
                                       {"text", text_},
                                       {"logprobs", nullptr},
                                       {"finish_reason", FinishReason(e.finish_reason)}}})},
             {"usage", usage}});
        break;
      case Endpoint::kOllamaGenerate:
      case Endpoint::kOllamaChat: r = JsonReply(OllamaFinal(e, server_->clock_.Now())); break;
    }
  }
  server_->CountRequest(entry_->model(), p_.endpoint, r.status);
  // Not from the engine's thread: reply() does socket work.
  auto req = req_;
  pplx::create_task([req, r] { SendReply(req, r); });
}

void Exchange::Finish(const GenerateEvent& e) {
  const TimePoint now = server_->clock_.Now();
  const std::string& model = entry_->model();
  const double elapsed = std::chrono::duration<double>(now - received_).count();
  static const prometheus::Histogram::BucketBoundaries kDuration = {0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                                                    5,    10,  30,   60,  120, 300};
  static const prometheus::Histogram::BucketBoundaries kTtft = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                                1,    2.5,   5,    10,  30};
  static const prometheus::Histogram::BucketBoundaries kTpot = {0.005, 0.01, 0.02, 0.035, 0.05,
                                                                0.075, 0.1,  0.2,  0.5,   1};
  server_->duration_.Add({{"model", model}, {"endpoint", EndpointLabel(p_.endpoint)}}, kDuration)
      .Observe(elapsed);
  if (e.finish_reason == "stop" || e.finish_reason == "length") {
    if (first_token_at_) {
      server_->ttft_.Add({{"model", model}}, kTtft)
          .Observe(std::chrono::duration<double>(*first_token_at_ - received_).count());
      if (e.completion_tokens > 1) {
        server_->tpot_.Add({{"model", model}}, kTpot)
            .Observe(std::chrono::duration<double>(now - *first_token_at_).count() /
                     static_cast<double>(e.completion_tokens - 1));
      }
    }
  }
  // The in-flight count drops now, not when the last reference goes: the
  // response is complete (or abandoned) and the engine is done with it.
  if (acquired_.exchange(false)) entry_->Release();
}

void Exchange::OnEvent(const GenerateEvent& e) {
  try {
    std::lock_guard elock(event_mu_);
    {
      std::lock_guard lock(mu_);
      if (finished_) return;  // an engine that sends after done: ignore
    }
    if (!e.text.empty()) {
      if (!first_token_at_) first_token_at_ = server_->clock_.Now();
      if (p_.stream) {
        StreamText(e.text);
      } else {
        text_ += e.text;
      }
    }
    if (!e.done) return;
    std::shared_ptr<Generation> g;
    {
      std::lock_guard lock(mu_);
      finished_ = true;
      g = std::move(generation_);  // breaks generation -> callback -> exchange
    }
    if (p_.stream) {
      StreamEnd(e);
      Finish(e);
      CloseStream();
    } else {
      Finish(e);
      ReplyWhole(e);
    }
  } catch (const std::exception& ex) {
    // Nothing may escape into the engine's thread.
    spdlog::error("inference: {}: handling an engine event: {}", id_, ex.what());
  }
}

Status InferenceServer::Impl::Start() {
  try {
    listener_ =
        std::make_unique<http::experimental::listener::http_listener>("http://" + options_.listen);
    std::weak_ptr<Impl> weak = weak_from_this();
    listener_->support([weak](http::http_request req) {
      if (auto self = weak.lock()) self->Serve(std::move(req));
    });
    listener_->open().wait();
  } catch (const std::exception& e) {
    listener_.reset();
    return common::Unavailable("inference API: listen on " + options_.listen + ": " + e.what());
  }
  spdlog::info("inference: serving address={}", options_.listen);
  return Status::Ok();
}

void InferenceServer::Impl::Stop() {
  if (!listener_) return;
  try {
    listener_->close().wait();
  } catch (const std::exception& e) {
    spdlog::warn("inference: closing listener: {}", e.what());
  }
  // Let running generations finish (the agent normally drained first), then
  // cancel what is left so no engine callback outlives the server's wait.
  std::unique_lock lock(mu_);
  if (!idle_.wait_for(lock, std::chrono::seconds(10), [this] { return active_.empty(); })) {
    std::vector<std::shared_ptr<Exchange>> left;
    for (auto& [id, w] : active_) {
      if (auto ex = w.lock()) left.push_back(std::move(ex));
    }
    lock.unlock();
    spdlog::warn("inference: cancelling {} generations still running at shutdown", left.size());
    for (auto& ex : left) ex->RequestCancel();
    left.clear();
    lock.lock();
    idle_.wait_for(lock, std::chrono::seconds(5), [this] { return active_.empty(); });
  }
  lock.unlock();
  listener_.reset();
}

void InferenceServer::Impl::Serve(http::http_request req) {
  std::string path;
  try {
    path = web::uri::decode(req.relative_uri().path());
  } catch (const std::exception& e) {
    SendReply(req, ErrorReply(Api::kOpenAI, {400, std::string("malformed URI: ") + e.what()}));
    return;
  }
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  const std::string method = req.method();
  const Api api = path.rfind("/api/", 0) == 0 ? Api::kOllama : Api::kOpenAI;
  auto method_not_allowed = [&](const char* allow) {
    Reply r = ErrorReply(api, {405, "method " + method + " is not allowed on " + path});
    r.headers.emplace_back("Allow", allow);
    SendReply(req, r);
  };
  try {
    static const std::set<std::string> kPost = {"/v1/chat/completions", "/v1/completions",
                                                "/api/generate", "/api/chat", "/api/show"};
    if (kPost.count(path)) {
      if (method != http::methods::POST) return method_not_allowed("POST");
      // A body without a length could be any size: refuse it rather than buffer it.
      if (req.headers().has("Transfer-Encoding")) {
        SendReply(req, ErrorReply(api, {411, "request bodies must carry Content-Length"}));
        return;
      }
      if (req.headers().content_length() > options_.max_body_bytes) {
        SendReply(req,
                  ErrorReply(api, {413, "the request body is larger than " +
                                            std::to_string(options_.max_body_bytes) + " bytes"}));
        return;
      }
      auto self = shared_from_this();
      req.extract_vector().then([self, req, path](pplx::task<std::vector<uint8_t>> t) {
        // Nothing may escape a pplx continuation: it would end the process.
        const Api api = path.rfind("/api/", 0) == 0 ? Api::kOllama : Api::kOpenAI;
        try {
          std::vector<uint8_t> body;
          try {
            body = t.get();
          } catch (const std::exception& e) {
            SendReply(req, ErrorReply(api, {400, std::string("reading the body: ") + e.what()}));
            return;
          }
          self->ServeWithBody(req, path, std::move(body));
        } catch (const std::exception& e) {
          spdlog::error("inference: POST {}: {}", path, e.what());
          SendReply(req, ErrorReply(api, {500, std::string("internal error: ") + e.what(), "",
                                          "internal_error"}));
        }
      });
      return;
    }
    const bool get = method == http::methods::GET || method == http::methods::HEAD;
    if (path == "/" || path.empty()) {
      if (!get) return method_not_allowed("GET, HEAD");
      Reply r;
      r.content_type = "text/plain; charset=utf-8";
      r.body = "Ollama is running";
      return SendReply(req, r);
    }
    if (path == "/v1/models" || path == "/api/tags" || path == "/api/ps" ||
        path == "/api/version" || path == "/stats" || path == "/metrics" ||
        path.rfind("/v1/models/", 0) == 0) {
      if (!get) return method_not_allowed("GET");
      if (path == "/v1/models") return SendReply(req, Models());
      if (path.rfind("/v1/models/", 0) == 0) {
        return SendReply(req, Model(path.substr(std::string("/v1/models/").size())));
      }
      if (path == "/api/tags") return SendReply(req, Tags());
      if (path == "/api/ps") return SendReply(req, Ps());
      if (path == "/api/version") {
        return SendReply(req, JsonReply({{"version", options_.ollama_version}}));
      }
      if (path == "/stats") {
        return SendReply(
            req, JsonReply(StatsJson(QueryParam(req, "model"), QueryParam(req, "replica"))));
      }
      Reply r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = MetricsText();
      return SendReply(req, r);
    }
    SendReply(req, ErrorReply(api, {404, "no endpoint " + path + " on this worker"}));
  } catch (const std::exception& e) {
    spdlog::error("inference: {} {}: {}", method, path, e.what());
    SendReply(req, ErrorReply(api, {500, std::string("internal error: ") + e.what(), "",
                                    "internal_error"}));
  }
}

void InferenceServer::Impl::ServeWithBody(http::http_request req, const std::string& path,
                                          std::vector<uint8_t> raw) {
  const Api api = path.rfind("/api/", 0) == 0 ? Api::kOllama : Api::kOpenAI;
  if (raw.size() > options_.max_body_bytes) {
    SendReply(req, ErrorReply(api, {413, "the request body is larger than " +
                                             std::to_string(options_.max_body_bytes) + " bytes"}));
    return;
  }
  if (raw.empty()) {
    SendReply(req, ErrorReply(api, {400, "the request body is empty; a JSON object is expected"}));
    return;
  }
  json body = json::parse(raw.begin(), raw.end(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    SendReply(req, ErrorReply(api, {400, "the request body is not valid JSON"}));
    return;
  }
  if (!body.is_object()) {
    SendReply(req, ErrorReply(api, {400, "the request body must be a JSON object"}));
    return;
  }
  if (path == "/api/show") return SendReply(req, Show(body));
  Endpoint endpoint = Endpoint::kChatCompletions;
  if (path == "/v1/completions") endpoint = Endpoint::kCompletions;
  if (path == "/api/generate") endpoint = Endpoint::kOllamaGenerate;
  if (path == "/api/chat") endpoint = Endpoint::kOllamaChat;
  Generate(req, api, endpoint, body);
}

void InferenceServer::Impl::Generate(http::http_request req, Api api, Endpoint endpoint,
                                     const json& body) {
  const TimePoint received = clock_.Now();
  ParsedRequest parsed;
  try {
    parsed = api == Api::kOpenAI ? ParseOpenAI(endpoint, body) : ParseOllama(endpoint, body);
  } catch (const BadField& f) {
    CountRequest("", endpoint, 400);
    ApiError e{400, "invalid request: " + f.param + " " + f.message, f.param,
               "invalid_request_error"};
    SendReply(req, ErrorReply(api, e));
    return;
  }
  auto entry = directory_.Lookup(parsed.model);
  if (!entry) {
    CountRequest("", endpoint, 404);
    ApiError e{404,
               api == Api::kOpenAI
                   ? "the model `" + parsed.model + "` is not served by this worker"
                   : "model \"" + parsed.model + "\" not found, try pulling it first",
               "model", "model_not_found"};
    SendReply(req, ErrorReply(api, e));
    return;
  }
  if (!entry->TryAcquire()) {
    CountRequest(entry->model(), endpoint, 503);
    const ReplicaState state = entry->state();
    ApiError e{503,
               "model \"" + parsed.model + "\" is " +
                   (state == ReplicaState::kDraining ? "draining on this worker"
                                                     : "still loading on this worker") +
                   "; retry later",
               "", "model_not_ready", options_.retry_after_unavailable_s};
    SendReply(req, ErrorReply(api, e));
    return;
  }
  if (parsed.load_only) {
    // Ollama's "load the model" request: it is loaded.
    entry->Release();
    CountRequest(entry->model(), endpoint, 200);
    json out = {{"model", parsed.model}, {"created_at", FormatTime(clock_.Now())}};
    if (endpoint == Endpoint::kOllamaChat)
      out["message"] = {{"role", "assistant"}, {"content", ""}};
    else
      out["response"] = "";
    out["done_reason"] = "load";
    out["done"] = true;
    SendReply(req, JsonReply(out));
    return;
  }
  auto ex = std::make_shared<Exchange>(shared_from_this(), std::move(req), api, std::move(parsed),
                                       std::move(entry), received);
  ex->Start();
}

Reply InferenceServer::Impl::Models() const {
  json data = json::array();
  for (const auto& [name, e] : DistinctModels(directory_.List())) {
    data.push_back({{"id", name},
                    {"object", "model"},
                    {"created", std::chrono::duration_cast<std::chrono::seconds>(
                                    e->info().loaded_at.time_since_epoch())
                                    .count()},
                    {"owned_by", "corral"}});
  }
  return JsonReply({{"object", "list"}, {"data", data}});
}

Reply InferenceServer::Impl::Model(const std::string& id) const {
  auto models = DistinctModels(directory_.List());
  auto it = models.find(id);
  if (it == models.end()) {
    return ErrorReply(Api::kOpenAI, {404, "the model `" + id + "` is not served by this worker",
                                     "model", "model_not_found"});
  }
  return JsonReply({{"id", id},
                    {"object", "model"},
                    {"created", std::chrono::duration_cast<std::chrono::seconds>(
                                    it->second->info().loaded_at.time_since_epoch())
                                    .count()},
                    {"owned_by", "corral"}});
}

Reply InferenceServer::Impl::Tags() const {
  json models = json::array();
  for (const auto& [name, e] : DistinctModels(directory_.List())) {
    models.push_back({{"name", name},
                      {"model", name},
                      {"modified_at", FormatTime(e->info().loaded_at)},
                      {"size", e->info().size_bytes},
                      {"digest", e->digest()},
                      {"details", OllamaDetails(*e)}});
  }
  return JsonReply({{"models", models}});
}

Reply InferenceServer::Impl::Ps() const {
  json models = json::array();
  // A replica stays loaded until the control plane removes it: Ollama reports
  // a model kept alive forever as expiring ~292 years out (Go's max Duration).
  const int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count();
  const std::string forever = FormatNanos(now_s + int64_t{9'223'372'036}, 0);
  for (const auto& [name, e] : DistinctModels(directory_.List())) {
    if (e->state() == ReplicaState::kLoading) continue;
    models.push_back({{"name", name},
                      {"model", name},
                      {"size", e->info().size_bytes},
                      {"digest", e->digest()},
                      {"details", OllamaDetails(*e)},
                      {"expires_at", forever},
                      {"size_vram", 0},
                      {"context_length", e->engine()->context_length()}});
  }
  return JsonReply({{"models", models}});
}

Reply InferenceServer::Impl::Show(const json& body) const {
  std::string model;
  try {
    model = OptString(body, "model").value_or("");
    if (model.empty()) model = OptString(body, "name").value_or("");
  } catch (const BadField& f) {
    return ErrorReply(Api::kOllama, {400, "invalid request: " + f.param + " " + f.message});
  }
  if (model.empty()) return ErrorReply(Api::kOllama, {400, "invalid request: model is required"});
  auto e = directory_.Lookup(model);
  if (!e) return ErrorReply(Api::kOllama, {404, "model \"" + model + "\" not found"});
  const ModelSpec& spec = e->info().spec;
  const json details = OllamaDetails(*e);
  const std::string arch = details["family"].get<std::string>().empty()
                               ? spec.engine
                               : details["family"].get<std::string>();
  return JsonReply(
      {{"license", ""},
       {"modelfile", "# Served by corral (engine " + spec.engine + ")\nFROM " + spec.source + "\n"},
       {"parameters", ""},
       {"template", "{{ .Prompt }}"},
       {"details", details},
       {"model_info",
        {{"general.architecture", arch},
         {arch + ".context_length", e->engine()->context_length()},
         {"corral.engine", e->engine()->name()},
         {"corral.engine_version", e->engine()->version()},
         {"corral.replica", e->replica()}}},
       {"capabilities", json::array({"completion"})},
       {"modified_at", FormatTime(e->info().loaded_at)}});
}

json InferenceServer::Impl::StatsJson(const std::string& model, const std::string& replica) const {
  const std::string now = FormatTime(clock_.Now());
  json replicas = json::array();
  for (const auto& e : directory_.List()) {
    if (!model.empty() && e->model() != model) continue;
    if (!replica.empty() && e->replica() != replica) continue;
    const EngineStats st = e->engine()->Stats();
    replicas.push_back({{"replica", e->replica()},
                        {"model", e->model()},
                        {"engine", e->engine()->name()},
                        {"state", ReplicaStateName(e->state())},
                        {"in_flight", e->in_flight()},
                        {"running", st.running},
                        {"queued", st.queued},
                        {"kv_cache_utilization", st.kv_cache_utilization},
                        {"kv_blocks_total", st.kv_blocks_total},
                        {"preemptions_total", st.preemptions_total},
                        {"prefix_cache_hit_tokens_total", st.prefix_cache_hit_tokens_total},
                        {"prompt_tokens_total", st.prompt_tokens_total},
                        {"generated_tokens_total", st.generated_tokens_total},
                        {"tokens_per_second", st.tokens_per_second},
                        {"ttft_p50_s", st.ttft_p50_s},
                        {"ttft_p99_s", st.ttft_p99_s},
                        {"tpot_p50_s", st.tpot_p50_s},
                        {"tpot_p99_s", st.tpot_p99_s},
                        {"requests_finished_total", st.requests_finished_total},
                        {"updated", now}});
  }
  return {{"updated", now}, {"replicas", replicas}};
}

// ---------------------------------------------------------------------------
// InferenceServer

InferenceServer::InferenceServer(InferenceServerOptions options, ReplicaDirectory& directory,
                                 common::Clock& clock, prometheus::Registry& registry)
    : impl_(std::make_shared<Impl>(std::move(options), directory, clock, registry)) {}

InferenceServer::~InferenceServer() { Stop(); }

Status InferenceServer::Start() { return impl_->Start(); }
void InferenceServer::Stop() { impl_->Stop(); }
std::string InferenceServer::url() const { return "http://" + impl_->options_.listen; }
std::string InferenceServer::MetricsText() const { return impl_->MetricsText(); }
nlohmann::json InferenceServer::StatsJson() const { return impl_->StatsJson("", ""); }

}  // namespace corral::worker
