// The worker's OpenAI and Ollama endpoints over real loopback HTTP, answered
// by a FakeEngine that streams fixed tokens with controllable pacing.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/clock.h"
#include "worker/inference_api.h"

namespace corral::worker {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// FakeEngine: streams `tokens` one per step, `delay` apart, until max_tokens
// ("length") or the list ends ("stop"). hold=true parks every generation
// before its next token until Release(). Thread-safe.

class FakeEngine final : public Engine {
 public:
  std::vector<std::string> tokens = {"Hello", ",", " world", "!"};
  std::chrono::milliseconds delay{0};
  int64_t context = 4096;
  bool queue_full = false;  // Submit answers ResourceExhausted
  int error_after = -1;     // >= 0: fail with "error" after that many tokens
  EngineStats stats;        // returned by Stats() (running is live)

  ~FakeEngine() override { Unload(); }

  std::string name() const override { return "fake"; }
  std::string version() const override { return "1.0"; }
  common::Status Load(const ModelSpec&, const std::function<void(int64_t, int64_t)>&,
                      const std::atomic<bool>&) override {
    return common::Status::Ok();
  }
  void Unload() override {
    {
      std::lock_guard lock(mu_);
      for (auto& g : gens_) g->cancelled = true;
      hold_ = false;
    }
    cv_.notify_all();
    JoinAll();
  }

  common::Result<std::shared_ptr<Generation>> Submit(
      GenerateRequest request, std::function<void(const GenerateEvent&)> on_event) override {
    if (queue_full) return common::ResourceExhausted("the engine queue is full (8 waiting)");
    std::string text = request.prompt;
    for (const auto& m : request.messages) text += " " + m.content;
    const int64_t prompt_tokens = CountTokens(text);
    if (prompt_tokens + request.sampling.max_tokens > context) {
      return common::InvalidArgument("prompt (" + std::to_string(prompt_tokens) +
                                     " tokens) + max_tokens (" +
                                     std::to_string(request.sampling.max_tokens) +
                                     ") is over the context length " + std::to_string(context));
    }
    auto gen = std::make_shared<Gen>(this);
    std::lock_guard lock(mu_);
    last_ = request;
    ++submitted_;
    gens_.push_back(gen);
    threads_.emplace_back([this, gen, request, prompt_tokens, cb = std::move(on_event)] {
      Run(*gen, request, prompt_tokens, cb);
    });
    return std::shared_ptr<Generation>(gen);
  }

  int64_t CountTokens(const std::string& text) const override {
    std::istringstream in(text);
    int64_t n = 0;
    std::string w;
    while (in >> w) ++n;
    return n;
  }
  int64_t context_length() const override { return context; }
  EngineStats Stats() const override {
    std::lock_guard lock(mu_);
    EngineStats s = stats;
    s.running = running_;
    return s;
  }

  void Hold() {
    std::lock_guard lock(mu_);
    hold_ = true;
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      hold_ = false;
    }
    cv_.notify_all();
  }
  GenerateRequest last() const {
    std::lock_guard lock(mu_);
    return last_;
  }
  int submitted() const {
    std::lock_guard lock(mu_);
    return submitted_;
  }
  int cancelled() const { return cancelled_.load(); }
  int64_t last_cancelled_tokens() const { return last_cancelled_tokens_.load(); }
  // Generations that have started running (passed their first hold).
  int running() const {
    std::lock_guard lock(mu_);
    return running_;
  }

 private:
  struct Gen final : Generation {
    explicit Gen(FakeEngine* e) : engine(e) {}
    void Cancel() override {
      {
        std::lock_guard lock(engine->mu_);
        cancelled = true;
      }
      engine->cv_.notify_all();
    }
    FakeEngine* engine;
    bool cancelled = false;  // guarded by engine->mu_
  };

  void Run(Gen& gen, const GenerateRequest& req, int64_t prompt_tokens,
           const std::function<void(const GenerateEvent&)>& cb) {
    {
      std::lock_guard lock(mu_);
      ++running_;
    }
    const auto start = std::chrono::steady_clock::now();
    GenerateEvent end;
    end.done = true;
    end.prompt_tokens = prompt_tokens;
    int64_t n = 0;
    for (;;) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return !hold_ || gen.cancelled; });
        if (gen.cancelled) {
          end.finish_reason = "cancelled";
          last_cancelled_tokens_ = n;
          ++cancelled_;
          break;
        }
      }
      if (error_after >= 0 && n == error_after) {
        end.finish_reason = "error";
        end.error = "the fake engine failed on purpose";
        break;
      }
      if (n >= req.sampling.max_tokens) {
        end.finish_reason = "length";
        break;
      }
      if (n >= static_cast<int64_t>(tokens.size())) {
        end.finish_reason = "stop";
        break;
      }
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
      GenerateEvent ev;
      ev.text = tokens[n];
      cb(ev);
      ++n;
    }
    end.completion_tokens = n;
    end.total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    end.time_to_first_token_s = end.total_s / 2;
    end.prompt_eval_s = end.total_s / 4;
    {
      std::lock_guard lock(mu_);
      --running_;
    }
    cb(end);
  }

  void JoinAll() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
      gens_.clear();
    }
    for (auto& t : threads) t.join();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;                       // guarded by mu_
  GenerateRequest last_;                    // guarded by mu_
  int submitted_ = 0;                       // guarded by mu_
  int running_ = 0;                         // guarded by mu_
  std::vector<std::shared_ptr<Gen>> gens_;  // guarded by mu_
  std::vector<std::thread> threads_;        // guarded by mu_
  std::atomic<int> cancelled_{0};
  std::atomic<int64_t> last_cancelled_tokens_{-1};
};

// ---------------------------------------------------------------------------
// A small HTTP/1.1 client on a raw socket, so tests can read a stream piece
// by piece and hang up in the middle of one.

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class HttpConn {
 public:
  HttpConn(int port, const std::string& method, const std::string& path, const std::string& body,
           const std::string& extra_headers = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ADD_FAILURE() << "connect to port " << port << " failed";
      return;
    }
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    if (method == "POST") {
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n";
    }
    req += extra_headers + "\r\n" + body;
    size_t off = 0;
    while (off < req.size()) {
      const ssize_t n = ::send(fd_, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  }
  ~HttpConn() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads until the headers are in. False on timeout or EOF.
  bool ReadHeaders(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (raw_.find("\r\n\r\n") == std::string::npos) {
      if (!Fill(deadline)) return false;
    }
    const size_t end = raw_.find("\r\n\r\n");
    std::istringstream in(raw_.substr(0, end));
    std::string line;
    std::getline(in, line);
    status = std::stoi(line.substr(9, 3));
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string k = line.substr(0, colon), v = line.substr(colon + 1);
      for (auto& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      headers[k] = v;
    }
    raw_.erase(0, end + 4);
    chunked_ = headers["transfer-encoding"] == "chunked";
    if (headers.count("content-length")) content_length_ = std::stoll(headers["content-length"]);
    return true;
  }

  // Reads body bytes until `pred(body)` holds, the body ends (true if pred
  // holds then) or the timeout passes (false).
  bool ReadUntil(const std::function<bool(const std::string&)>& pred,
                 std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      Decode();
      if (pred(body)) return true;
      if (complete_) return false;
      if (!Fill(deadline)) {
        Decode();
        return pred(body);
      }
    }
  }
  // Reads the whole body.
  bool ReadAll(std::chrono::milliseconds timeout = 5s) {
    ReadUntil([this](const std::string&) { return complete_; }, timeout);
    return complete_;
  }

  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // de-chunked

 private:
  bool Fill(std::chrono::steady_clock::time_point deadline) {
    if (fd_ < 0) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[8192];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      eof_ = true;
      if (!chunked_ && content_length_ < 0) complete_ = true;
      return false;
    }
    raw_.append(buf, static_cast<size_t>(n));
    return true;
  }
  void Decode() {
    if (!chunked_) {
      body += raw_;
      raw_.clear();
      if (content_length_ >= 0 && static_cast<int64_t>(body.size()) >= content_length_) {
        complete_ = true;
      }
      return;
    }
    for (;;) {
      const size_t eol = raw_.find("\r\n");
      if (eol == std::string::npos) return;
      const size_t size = std::stoul(raw_.substr(0, eol), nullptr, 16);
      if (size == 0) {
        complete_ = true;
        return;
      }
      if (raw_.size() < eol + 2 + size + 2) return;
      body += raw_.substr(eol + 2, size);
      raw_.erase(0, eol + 2 + size + 2);
    }
  }

  int fd_ = -1;
  std::string raw_;
  bool chunked_ = false;
  int64_t content_length_ = -1;
  bool complete_ = false;
  bool eof_ = false;
};

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  json Json() const { return json::parse(body, nullptr, false); }
};

Response Do(int port, const std::string& method, const std::string& path,
            const std::string& body = "") {
  HttpConn c(port, method, path, body);
  Response r;
  if (!c.ReadHeaders()) {
    ADD_FAILURE() << method << " " << path << ": no response headers";
    return r;
  }
  EXPECT_TRUE(c.ReadAll()) << method << " " << path << ": body did not complete";
  r.status = c.status;
  r.headers = c.headers;
  r.body = c.body;
  return r;
}

Response Post(int port, const std::string& path, const json& body) {
  return Do(port, "POST", path, body.dump());
}

// The JSON payloads of an SSE body ("data: {...}"), and whether it ended with [DONE].
std::vector<json> SseEvents(const std::string& body, bool* done = nullptr) {
  std::vector<json> out;
  if (done) *done = false;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) continue;
    const std::string data = ev.substr(6);
    if (data == "[DONE]") {
      if (done) *done = true;
      continue;
    }
    out.push_back(json::parse(data, nullptr, false));
  }
  return out;
}

std::vector<json> NdjsonLines(const std::string& body) {
  std::vector<json> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(json::parse(line, nullptr, false));
  }
  return out;
}

bool Eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return cond();
}

// ---------------------------------------------------------------------------
// Fixture: one replica "tiny" (replica tiny-0) on a FakeEngine.

class InferenceApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = FreePort();
    ModelSpec spec;
    spec.name = "tiny";
    spec.engine = "sim";
    spec.source = "sim://tiny";
    spec.sim = {{"family", "llama"}, {"parameter_size", "1M"}};
    ReplicaInfo info{"tiny-0", "tiny", spec, 123456, clock_.Now(), 0.25};
    entry_ = std::make_shared<ReplicaEntry>(info, &engine_);
    ASSERT_TRUE(table_.Add(entry_).ok());
    InferenceServerOptions opts;
    opts.listen = "127.0.0.1:" + std::to_string(port_);
    server_ = std::make_unique<InferenceServer>(opts, table_, clock_, registry_);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    engine_.Release();
    server_.reset();
  }

  json ChatBody(bool stream) const {
    return {{"model", "tiny"},
            {"messages", {{{"role", "user"}, {"content", "hi there"}}}},
            {"stream", stream}};
  }

  common::RealClock clock_;
  prometheus::Registry registry_;
  FakeEngine engine_;  // declared before the server: outlives it
  ReplicaTable table_;
  std::shared_ptr<ReplicaEntry> entry_;
  std::unique_ptr<InferenceServer> server_;
  int port_ = 0;
};

// --- OpenAI ----------------------------------------------------------------

TEST_F(InferenceApiTest, OpenAIChatNonStream) {
  Response r = Post(port_, "/v1/chat/completions", ChatBody(false));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.headers["content-type"], ::testing::HasSubstr("application/json"));
  const json j = r.Json();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_THAT(j["id"].get<std::string>(), ::testing::StartsWith("chatcmpl-"));
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_TRUE(j["created"].is_number_integer());
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hello, world!");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 2);
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
  EXPECT_EQ(j["usage"]["total_tokens"], 6);
  // The request reached the engine as a chat with OpenAI's sampling defaults.
  const GenerateRequest g = engine_.last();
  ASSERT_EQ(g.messages.size(), 1u);
  EXPECT_EQ(g.messages[0].role, "user");
  EXPECT_EQ(g.messages[0].content, "hi there");
  EXPECT_DOUBLE_EQ(g.sampling.temperature, 1.0);
  EXPECT_DOUBLE_EQ(g.sampling.top_p, 1.0);
  EXPECT_EQ(g.sampling.top_k, 0);
  // No max_tokens: up to the rest of the context.
  EXPECT_GT(g.sampling.max_tokens, 4000);
  EXPECT_LE(g.sampling.max_tokens, 4096);
  EXPECT_EQ(entry_->in_flight(), 0);
}

TEST_F(InferenceApiTest, OpenAIChatStreamWithUsage) {
  json body = ChatBody(true);
  body["stream_options"] = {{"include_usage", true}};
  Response r = Post(port_, "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.headers["content-type"], ::testing::HasSubstr("text/event-stream"));
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  bool done = false;
  const auto events = SseEvents(r.body, &done);
  EXPECT_TRUE(done) << "no data: [DONE]";
  ASSERT_GE(events.size(), 3u);
  // First chunk carries the role; then content deltas; then finish; then usage.
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  std::string finish;
  const std::string id = events[0]["id"];
  for (const auto& e : events) {
    EXPECT_EQ(e["id"], id);
    EXPECT_TRUE(e.contains("usage"));
    if (e["choices"].empty()) continue;
    const json& c = e["choices"][0];
    if (c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
    if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
  }
  EXPECT_EQ(text, "Hello, world!");
  EXPECT_EQ(finish, "stop");
  const json& last = events.back();
  EXPECT_TRUE(last["choices"].empty());
  EXPECT_EQ(last["usage"]["prompt_tokens"], 2);
  EXPECT_EQ(last["usage"]["completion_tokens"], 4);
  EXPECT_EQ(last["usage"]["total_tokens"], 6);
  for (size_t i = 0; i + 1 < events.size(); ++i) EXPECT_TRUE(events[i]["usage"].is_null());
  EXPECT_TRUE(r.body.ends_with("data: [DONE]\n\n"));
}

TEST_F(InferenceApiTest, OpenAIChatStreamWithoutUsageHasNoUsageField) {
  Response r = Post(port_, "/v1/chat/completions", ChatBody(true));
  ASSERT_EQ(r.status, 200);
  bool done = false;
  const auto events = SseEvents(r.body, &done);
  EXPECT_TRUE(done);
  for (const auto& e : events) {
    EXPECT_FALSE(e.contains("usage")) << e.dump();
    EXPECT_EQ(e["choices"].size(), 1u);
  }
}

TEST_F(InferenceApiTest, OpenAICompletionsNonStreamAndLength) {
  Response r = Post(port_, "/v1/completions", {{"model", "tiny"}, {"prompt", "once upon"}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.Json();
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_THAT(j["id"].get<std::string>(), ::testing::StartsWith("cmpl-"));
  EXPECT_EQ(j["choices"][0]["text"], "Hello, world!");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 2);
  EXPECT_EQ(engine_.last().prompt, "once upon");
  EXPECT_EQ(engine_.last().sampling.max_tokens, 16);  // the legacy API's default

  r = Post(port_, "/v1/completions", {{"model", "tiny"}, {"prompt", {"once"}}, {"max_tokens", 2}});
  ASSERT_EQ(r.status, 200) << r.body;
  j = r.Json();
  EXPECT_EQ(j["choices"][0]["text"], "Hello,");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 2);
}

TEST_F(InferenceApiTest, OpenAICompletionsStream) {
  Response r = Post(port_, "/v1/completions",
                    {{"model", "tiny"},
                     {"prompt", "x"},
                     {"stream", true},
                     {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200);
  bool done = false;
  const auto events = SseEvents(r.body, &done);
  EXPECT_TRUE(done);
  std::string text, finish;
  for (const auto& e : events) {
    EXPECT_EQ(e["object"], "text_completion");
    if (e["choices"].empty()) continue;
    text += e["choices"][0]["text"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, "Hello, world!");
  EXPECT_EQ(finish, "stop");
  EXPECT_EQ(events.back()["usage"]["completion_tokens"], 4);
}

TEST_F(InferenceApiTest, OpenAISamplingMapping) {
  Response r = Post(
      port_, "/v1/chat/completions",
      {{"model", "tiny"},
       {"messages",
        {{{"role", "system"}, {"content", "be brief"}},
         {{"role", "user"},
          {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}}}},
       {"temperature", 0.2},
       {"top_p", 0.5},
       {"top_k", 7},
       {"seed", 42},
       {"max_tokens", 100},
       {"max_completion_tokens", 3},
       {"stop", {"x", "y"}}});
  ASSERT_EQ(r.status, 200) << r.body;
  const GenerateRequest g = engine_.last();
  ASSERT_EQ(g.messages.size(), 2u);
  EXPECT_EQ(g.messages[0].role, "system");
  EXPECT_EQ(g.messages[1].content, "ab");
  EXPECT_DOUBLE_EQ(g.sampling.temperature, 0.2);
  EXPECT_DOUBLE_EQ(g.sampling.top_p, 0.5);
  EXPECT_EQ(g.sampling.top_k, 7);
  ASSERT_TRUE(g.sampling.seed.has_value());
  EXPECT_EQ(*g.sampling.seed, 42u);
  EXPECT_EQ(g.sampling.max_tokens, 3);  // max_completion_tokens wins
  EXPECT_THAT(g.sampling.stop, ::testing::ElementsAre("x", "y"));

  ASSERT_EQ(Post(port_, "/v1/completions",
                 {{"model", "tiny"}, {"prompt", "p"}, {"stop", "END"}, {"max_tokens", 5}})
                .status,
            200);
  EXPECT_THAT(engine_.last().sampling.stop, ::testing::ElementsAre("END"));
  EXPECT_EQ(engine_.last().sampling.max_tokens, 5);
}

TEST_F(InferenceApiTest, OpenAIModels) {
  Response r = Do(port_, "GET", "/v1/models");
  ASSERT_EQ(r.status, 200);
  json j = r.Json();
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], "tiny");
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_EQ(j["data"][0]["owned_by"], "corral");

  r = Do(port_, "GET", "/v1/models/tiny");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Json()["id"], "tiny");

  r = Do(port_, "GET", "/v1/models/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.Json()["error"]["code"], "model_not_found");
}

// --- Ollama ----------------------------------------------------------------

TEST_F(InferenceApiTest, OllamaGenerateStreamsNdjsonByDefault) {
  Response r = Post(port_, "/api/generate", {{"model", "tiny"}, {"prompt", "why sky"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.headers["content-type"], ::testing::HasSubstr("application/x-ndjson"));
  const auto lines = NdjsonLines(r.body);
  ASSERT_EQ(lines.size(), 5u) << r.body;
  std::string text;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["model"], "tiny");
    EXPECT_EQ(lines[i]["done"], false);
    EXPECT_THAT(lines[i]["created_at"].get<std::string>(), ::testing::EndsWith("Z"));
    text += lines[i]["response"].get<std::string>();
  }
  EXPECT_EQ(text, "Hello, world!");
  const json& last = lines.back();
  EXPECT_EQ(last["done"], true);
  EXPECT_EQ(last["done_reason"], "stop");
  EXPECT_EQ(last["response"], "");
  EXPECT_EQ(last["eval_count"], 4);
  EXPECT_EQ(last["prompt_eval_count"], 2);  // the engine's count of "why sky"
  for (const char* k :
       {"total_duration", "load_duration", "prompt_eval_duration", "eval_duration"}) {
    ASSERT_TRUE(last.contains(k)) << k;
    EXPECT_TRUE(last[k].is_number_integer()) << k;
    EXPECT_GE(last[k].get<int64_t>(), 0) << k;
  }
  EXPECT_GE(last["total_duration"].get<int64_t>(), last["eval_duration"].get<int64_t>());
  // Not raw: the prompt went in as the user turn (the engine templates it).
  const GenerateRequest g = engine_.last();
  ASSERT_EQ(g.messages.size(), 1u);
  EXPECT_EQ(g.messages[0].role, "user");
  EXPECT_EQ(g.messages[0].content, "why sky");
}

TEST_F(InferenceApiTest, OllamaGenerateNonStreamRawAndOptions) {
  Response r = Post(port_, "/api/generate",
                    {{"model", "tiny"},
                     {"prompt", "raw text"},
                     {"raw", true},
                     {"stream", false},
                     {"options",
                      {{"temperature", 0.1},
                       {"top_k", 5},
                       {"top_p", 0.3},
                       {"seed", 9},
                       {"num_predict", 3},
                       {"stop", {"z"}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = r.Json();
  EXPECT_EQ(j["response"], "Hello, world");
  EXPECT_EQ(j["done"], true);
  EXPECT_EQ(j["done_reason"], "length");
  EXPECT_EQ(j["eval_count"], 3);
  EXPECT_EQ(j["prompt_eval_count"], 2);
  const GenerateRequest g = engine_.last();
  EXPECT_EQ(g.prompt, "raw text");
  EXPECT_TRUE(g.messages.empty());
  EXPECT_DOUBLE_EQ(g.sampling.temperature, 0.1);
  EXPECT_EQ(g.sampling.top_k, 5);
  EXPECT_DOUBLE_EQ(g.sampling.top_p, 0.3);
  EXPECT_EQ(*g.sampling.seed, 9u);
  EXPECT_EQ(g.sampling.max_tokens, 3);
  EXPECT_THAT(g.sampling.stop, ::testing::ElementsAre("z"));
}

TEST_F(InferenceApiTest, OllamaDefaultsAndSystem) {
  ASSERT_EQ(Post(port_, "/api/generate",
                 {{"model", "tiny"}, {"prompt", "q"}, {"system", "sys"}, {"stream", false}})
                .status,
            200);
  const GenerateRequest g = engine_.last();
  ASSERT_EQ(g.messages.size(), 2u);
  EXPECT_EQ(g.messages[0].role, "system");
  EXPECT_EQ(g.messages[0].content, "sys");
  EXPECT_DOUBLE_EQ(g.sampling.temperature, 0.8);
  EXPECT_EQ(g.sampling.top_k, 40);
  EXPECT_DOUBLE_EQ(g.sampling.top_p, 0.9);
  EXPECT_FALSE(g.sampling.seed.has_value());
}

TEST_F(InferenceApiTest, OllamaChatStreamAndNonStream) {
  Response r = Post(port_, "/api/chat",
                    {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto lines = NdjsonLines(r.body);
  ASSERT_EQ(lines.size(), 5u);
  std::string text;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["message"]["role"], "assistant");
    text += lines[i]["message"]["content"].get<std::string>();
  }
  EXPECT_EQ(text, "Hello, world!");
  EXPECT_EQ(lines.back()["done"], true);
  EXPECT_EQ(lines.back()["message"]["content"], "");
  EXPECT_EQ(lines.back()["eval_count"], 4);

  r = Post(port_, "/api/chat",
           {{"model", "tiny"},
            {"messages", {{{"role", "user"}, {"content", "hi"}}}},
            {"stream", false}});
  ASSERT_EQ(r.status, 200);
  const json j = r.Json();
  EXPECT_EQ(j["message"]["role"], "assistant");
  EXPECT_EQ(j["message"]["content"], "Hello, world!");
  EXPECT_EQ(j["done_reason"], "stop");
  EXPECT_EQ(j["prompt_eval_count"], 1);
}

TEST_F(InferenceApiTest, OllamaLoadRequest) {
  Response r = Post(port_, "/api/generate", {{"model", "tiny"}});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Json()["done_reason"], "load");
  EXPECT_EQ(r.Json()["done"], true);
  r = Post(port_, "/api/chat", {{"model", "tiny"}, {"messages", json::array()}});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Json()["done_reason"], "load");
  EXPECT_EQ(engine_.submitted(), 0);
  EXPECT_EQ(entry_->in_flight(), 0);
}

TEST_F(InferenceApiTest, OllamaTagsPsShowVersion) {
  Response r = Do(port_, "GET", "/api/tags");
  ASSERT_EQ(r.status, 200);
  json j = r.Json();
  ASSERT_EQ(j["models"].size(), 1u);
  EXPECT_EQ(j["models"][0]["name"], "tiny");
  EXPECT_EQ(j["models"][0]["model"], "tiny");
  EXPECT_EQ(j["models"][0]["size"], 123456);
  EXPECT_EQ(j["models"][0]["digest"].get<std::string>().size(), 64u);
  EXPECT_EQ(j["models"][0]["details"]["family"], "llama");
  EXPECT_EQ(j["models"][0]["details"]["parameter_size"], "1M");

  r = Do(port_, "GET", "/api/ps");
  ASSERT_EQ(r.status, 200);
  j = r.Json();
  ASSERT_EQ(j["models"].size(), 1u);
  EXPECT_EQ(j["models"][0]["name"], "tiny");
  EXPECT_EQ(j["models"][0]["context_length"], 4096);
  EXPECT_TRUE(j["models"][0]["expires_at"].is_string());

  r = Post(port_, "/api/show", {{"model", "tiny"}});
  ASSERT_EQ(r.status, 200) << r.body;
  j = r.Json();
  EXPECT_EQ(j["details"]["family"], "llama");
  EXPECT_EQ(j["model_info"]["llama.context_length"], 4096);
  EXPECT_THAT(j["modelfile"].get<std::string>(), ::testing::HasSubstr("FROM sim://tiny"));
  EXPECT_EQ(j["capabilities"], json::array({"completion"}));
  r = Post(port_, "/api/show", {{"name", "tiny"}});  // the older field name
  EXPECT_EQ(r.status, 200);
  r = Post(port_, "/api/show", {{"model", "nope"}});
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(r.Json()["error"].is_string());

  r = Do(port_, "GET", "/api/version");
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.Json()["version"].is_string());
  r = Do(port_, "GET", "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "Ollama is running");
}

// --- errors ------------------------------------------------------------------

TEST_F(InferenceApiTest, UnknownModelIs404InEachShape) {
  Response r = Post(port_, "/v1/chat/completions",
                    {{"model", "nope"}, {"messages", {{{"role", "user"}, {"content", "x"}}}}});
  EXPECT_EQ(r.status, 404);
  json j = r.Json();
  ASSERT_TRUE(j["error"].is_object()) << r.body;
  EXPECT_THAT(j["error"]["message"].get<std::string>(), ::testing::HasSubstr("nope"));
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "model");
  EXPECT_EQ(j["error"]["code"], "model_not_found");

  r = Post(port_, "/api/generate", {{"model", "nope"}, {"prompt", "x"}});
  EXPECT_EQ(r.status, 404);
  j = r.Json();
  ASSERT_TRUE(j["error"].is_string()) << r.body;
  EXPECT_THAT(j["error"].get<std::string>(), ::testing::HasSubstr("not found"));
  EXPECT_EQ(engine_.submitted(), 0);
}

TEST_F(InferenceApiTest, BadBodiesAre400NamingTheField) {
  struct Case {
    std::string path;
    std::string body;
    std::string param;  // OpenAI param, or a substring of the Ollama message
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions", "{not json", ""},
      {"/v1/chat/completions", "[1,2]", ""},
      {"/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}]})", "model"},
      {"/v1/chat/completions", R"({"model":"tiny"})", "messages"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[]})", "messages"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"content":"x"}]})",
       "messages[0].role"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"wizard","content":"x"}]})",
       "messages[0].role"},
      {"/v1/chat/completions",
       R"({"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url"}]}]})",
       "messages[0].content[0].type"},
      {"/v1/chat/completions",
       R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":"hot"})",
       "temperature"},
      {"/v1/chat/completions",
       R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":3})",
       "temperature"},
      {"/v1/chat/completions",
       R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":0})",
       "max_tokens"},
      {"/v1/chat/completions",
       R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"n":2})", "n"},
      {"/v1/chat/completions",
       R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":[1]})", "stop[0]"},
      {"/v1/chat/completions",
       R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"stream":"yes"})", "stream"},
      {"/v1/completions", R"({"model":"tiny"})", "prompt"},
      {"/v1/completions", R"({"model":"tiny","prompt":[1,2,3]})", "prompt"},
      {"/api/generate", "{bad", "not valid JSON"},
      {"/api/generate", R"({"prompt":"x"})", "model"},
      {"/api/generate", R"({"model":"tiny","prompt":"x","options":{"top_k":"many"}})",
       "options.top_k"},
      {"/api/chat", R"({"model":"tiny","messages":{"role":"user"}})", "messages"},
      {"/api/chat", R"({"model":"tiny","messages":[{"role":"user","content":5}]})",
       "messages[0].content"},
  };
  for (const auto& c : cases) {
    Response r = Do(port_, "POST", c.path, c.body);
    EXPECT_EQ(r.status, 400) << c.path << " " << c.body << " -> " << r.body;
    const json j = r.Json();
    if (c.path.rfind("/v1/", 0) == 0) {
      ASSERT_TRUE(j["error"].is_object()) << r.body;
      EXPECT_EQ(j["error"]["type"], "invalid_request_error");
      if (!c.param.empty())
        EXPECT_EQ(j["error"]["param"], c.param) << c.body;
      else
        EXPECT_TRUE(j["error"]["param"].is_null());
    } else {
      ASSERT_TRUE(j["error"].is_string()) << r.body;
      EXPECT_THAT(j["error"].get<std::string>(), ::testing::HasSubstr(c.param)) << c.body;
    }
  }
  EXPECT_EQ(engine_.submitted(), 0);
  EXPECT_EQ(entry_->in_flight(), 0);
}

TEST_F(InferenceApiTest, ContextOverflowIs400) {
  engine_.context = 10;
  Response r = Post(port_, "/v1/chat/completions",
                    {{"model", "tiny"},
                     {"messages", {{{"role", "user"}, {"content", "a b c"}}}},
                     {"max_tokens", 50}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.Json()["error"]["code"], "context_length_exceeded");
  EXPECT_THAT(r.Json()["error"]["message"].get<std::string>(), ::testing::HasSubstr("50"));
  r = Post(port_, "/api/generate",
           {{"model", "tiny"}, {"prompt", "a b c"}, {"options", {{"num_predict", 50}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.Json()["error"].get<std::string>(), ::testing::HasSubstr("context"));
  // Without max_tokens the request is fitted into the context instead.
  r = Post(port_, "/v1/chat/completions", ChatBody(false));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_LE(engine_.last().sampling.max_tokens, 10);
  EXPECT_EQ(entry_->in_flight(), 0);
}

TEST_F(InferenceApiTest, QueueFullIs429WithRetryAfter) {
  engine_.queue_full = true;
  Response r = Post(port_, "/v1/chat/completions", ChatBody(true));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_EQ(r.Json()["error"]["type"], "rate_limit_error");
  r = Post(port_, "/api/chat", ChatBody(false));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_TRUE(r.Json()["error"].is_string());
  EXPECT_EQ(entry_->in_flight(), 0);
}

TEST_F(InferenceApiTest, NotReadyIs503WithRetryAfter) {
  entry_->SetState(ReplicaState::kLoading);
  Response r = Post(port_, "/v1/chat/completions", ChatBody(false));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["retry-after"], "2");
  EXPECT_THAT(r.Json()["error"]["message"].get<std::string>(), ::testing::HasSubstr("loading"));
  r = Post(port_, "/api/generate", {{"model", "tiny"}, {"prompt", "x"}});
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(r.Json()["error"].is_string());
  EXPECT_EQ(engine_.submitted(), 0);
  // /api/ps lists loaded models only.
  EXPECT_TRUE(Do(port_, "GET", "/api/ps").Json()["models"].empty());
}

TEST_F(InferenceApiTest, EngineErrorMidStream) {
  engine_.error_after = 2;
  Response r = Post(port_, "/v1/chat/completions", ChatBody(true));
  ASSERT_EQ(r.status, 200);
  auto events = SseEvents(r.body);
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(events.back().contains("error")) << r.body;
  EXPECT_THAT(events.back()["error"]["message"].get<std::string>(),
              ::testing::HasSubstr("on purpose"));

  r = Post(port_, "/api/generate", {{"model", "tiny"}, {"prompt", "x"}});
  ASSERT_EQ(r.status, 200);
  auto lines = NdjsonLines(r.body);
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(lines.back()["error"].is_string());

  r = Post(port_, "/v1/chat/completions", ChatBody(false));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.Json()["error"]["type"], "server_error");
  EXPECT_EQ(entry_->in_flight(), 0);
}

TEST_F(InferenceApiTest, UnknownPathAndWrongMethod) {
  Response r = Do(port_, "GET", "/v1/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(r.Json()["error"].is_object());
  r = Do(port_, "GET", "/api/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(r.Json()["error"].is_string());
  r = Do(port_, "GET", "/v1/chat/completions");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers["allow"], "POST");
  r = Do(port_, "POST", "/api/tags", "{}");
  EXPECT_EQ(r.status, 405);
}

TEST_F(InferenceApiTest, OversizedBodyIs413) {
  InferenceServerOptions opts;
  const int port = FreePort();
  opts.listen = "127.0.0.1:" + std::to_string(port);
  opts.max_body_bytes = 64;
  prometheus::Registry registry;
  InferenceServer small(opts, table_, clock_, registry);
  ASSERT_TRUE(small.Start().ok());
  json body = ChatBody(false);
  body["messages"][0]["content"] = std::string(200, 'x');
  Response r = Post(port, "/v1/chat/completions", body);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(engine_.submitted(), 0);
}

// --- cancellation and drain ---------------------------------------------------

TEST_F(InferenceApiTest, ClientDisconnectCancelsTheGeneration) {
  engine_.tokens.assign(2000, " tok");
  engine_.delay = 5ms;
  for (const std::string api : {"openai", "ollama"}) {
    SCOPED_TRACE(api);
    const int cancelled_before = engine_.cancelled();
    {
      HttpConn c(port_, "POST", api == "openai" ? "/v1/chat/completions" : "/api/chat",
                 ChatBody(true).dump());
      ASSERT_TRUE(c.ReadHeaders());
      EXPECT_EQ(c.status, 200);
      // Some tokens have arrived: the generation is running.
      ASSERT_TRUE(
          c.ReadUntil([](const std::string& b) { return b.find("tok") != std::string::npos; }));
      EXPECT_EQ(entry_->in_flight(), 1);
      c.Close();  // the client goes away mid-stream
    }
    ASSERT_TRUE(Eventually([&] { return engine_.cancelled() == cancelled_before + 1; }, 10s))
        << "the generation was not cancelled after the client went away";
    EXPECT_LT(engine_.last_cancelled_tokens(), 1000);
    EXPECT_TRUE(Eventually([&] { return entry_->in_flight() == 0; }));
  }
  const std::string metrics = server_->MetricsText();
  EXPECT_THAT(metrics, ::testing::HasSubstr(
                           "corral_worker_inference_client_disconnects_total{model=\"tiny\"} 2"));
}

TEST_F(InferenceApiTest, DrainRefusesNewRequestsWhileInFlightOnesFinish) {
  engine_.Hold();
  std::vector<std::unique_ptr<HttpConn>> streams;
  for (int i = 0; i < 3; ++i) {
    streams.push_back(std::make_unique<HttpConn>(
        port_, "POST", i % 2 ? "/api/generate" : "/v1/chat/completions",
        i % 2 ? json{{"model", "tiny"}, {"prompt", "p"}}.dump() : ChatBody(true).dump()));
    ASSERT_TRUE(streams.back()->ReadHeaders());
    EXPECT_EQ(streams.back()->status, 200);
  }
  // A non-streaming one too: it is answered only when its generation ends.
  auto whole = std::make_unique<HttpConn>(port_, "POST", "/v1/completions",
                                          json{{"model", "tiny"}, {"prompt", "p"}}.dump());
  ASSERT_TRUE(Eventually([&] { return entry_->in_flight() == 4; }));

  entry_->SetState(ReplicaState::kDraining);
  // New requests are refused; nothing new reaches the engine.
  const int submitted = engine_.submitted();
  Response r = Post(port_, "/v1/chat/completions", ChatBody(true));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["retry-after"], "2");
  EXPECT_THAT(r.Json()["error"]["message"].get<std::string>(), ::testing::HasSubstr("draining"));
  r = Post(port_, "/api/chat", ChatBody(false));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(engine_.submitted(), submitted);
  EXPECT_EQ(entry_->in_flight(), 4);

  // The agent's wait: not idle yet.
  common::FakeClock fake;
  EXPECT_FALSE(entry_->WaitIdle(fake, fake.Now()));

  engine_.Release();
  for (size_t i = 0; i < streams.size(); ++i) {
    ASSERT_TRUE(streams[i]->ReadAll()) << "stream " << i << " did not complete";
    if (i % 2) {
      auto lines = NdjsonLines(streams[i]->body);
      ASSERT_FALSE(lines.empty());
      EXPECT_EQ(lines.back()["done"], true);
      EXPECT_EQ(lines.back()["done_reason"], "stop");
    } else {
      bool done = false;
      SseEvents(streams[i]->body, &done);
      EXPECT_TRUE(done);
    }
  }
  ASSERT_TRUE(whole->ReadHeaders());
  EXPECT_EQ(whole->status, 200);
  ASSERT_TRUE(whole->ReadAll());
  EXPECT_EQ(json::parse(whole->body)["choices"][0]["text"], "Hello, world!");
  EXPECT_TRUE(entry_->WaitIdle(fake, fake.Now() + 10s));
  EXPECT_EQ(entry_->in_flight(), 0);
}

TEST_F(InferenceApiTest, UnloadDuringANonStreamingRequestAnswers503) {
  engine_.Hold();
  auto c = std::make_unique<HttpConn>(port_, "POST", "/api/chat", ChatBody(false).dump());
  ASSERT_TRUE(Eventually([&] { return entry_->in_flight() == 1; }));
  engine_.Unload();  // ends it with "cancelled"
  ASSERT_TRUE(c->ReadHeaders());
  EXPECT_EQ(c->status, 503);
  ASSERT_TRUE(c->ReadAll());
  EXPECT_THAT(json::parse(c->body)["error"].get<std::string>(), ::testing::HasSubstr("cancelled"));
  EXPECT_EQ(entry_->in_flight(), 0);
}

// --- stats and metrics -------------------------------------------------------

TEST_F(InferenceApiTest, StatsAndMetrics) {
  engine_.stats.queued = 3;
  engine_.stats.kv_cache_utilization = 0.5;
  engine_.stats.kv_blocks_total = 64;
  engine_.stats.tokens_per_second = 12.5;
  engine_.stats.ttft_p50_s = 0.1;
  engine_.stats.ttft_p99_s = 0.4;
  engine_.stats.generated_tokens_total = 77;
  engine_.stats.requests_finished_total = 9;
  ASSERT_EQ(Post(port_, "/v1/chat/completions", ChatBody(false)).status, 200);
  ASSERT_EQ(Post(port_, "/api/generate", {{"model", "tiny"}, {"prompt", "x"}}).status, 200);
  ASSERT_EQ(Post(port_, "/api/generate", {{"model", "nope"}, {"prompt", "x"}}).status, 404);

  Response r = Do(port_, "GET", "/stats");
  ASSERT_EQ(r.status, 200);
  json j = r.Json();
  ASSERT_EQ(j["replicas"].size(), 1u) << r.body;
  const json& s = j["replicas"][0];
  EXPECT_EQ(s["replica"], "tiny-0");
  EXPECT_EQ(s["model"], "tiny");
  EXPECT_EQ(s["engine"], "fake");
  EXPECT_EQ(s["state"], "Ready");
  EXPECT_EQ(s["in_flight"], 0);
  EXPECT_EQ(s["queued"], 3);
  EXPECT_DOUBLE_EQ(s["kv_cache_utilization"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(s["tokens_per_second"].get<double>(), 12.5);
  EXPECT_DOUBLE_EQ(s["ttft_p99_s"].get<double>(), 0.4);
  EXPECT_EQ(s["generated_tokens_total"], 77);
  EXPECT_TRUE(s["updated"].is_string());
  EXPECT_TRUE(j["updated"].is_string());
  EXPECT_TRUE(Do(port_, "GET", "/stats?model=other").Json()["replicas"].empty());
  EXPECT_EQ(Do(port_, "GET", "/stats?replica=tiny-0").Json()["replicas"].size(), 1u);

  r = Do(port_, "GET", "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_THAT(r.headers["content-type"], ::testing::HasSubstr("text/plain"));
  const std::string& m = r.body;
  const std::string lbl = "model=\"tiny\",replica=\"tiny-0\"";
  EXPECT_THAT(m, ::testing::HasSubstr("corral_worker_replica_queued_requests{" + lbl + "} 3"));
  EXPECT_THAT(m, ::testing::HasSubstr("corral_worker_replica_in_flight_requests{" + lbl + "} 0"));
  EXPECT_THAT(
      m, ::testing::HasSubstr("corral_worker_replica_kv_cache_utilization_ratio{" + lbl + "} 0.5"));
  EXPECT_THAT(m,
              ::testing::HasSubstr("corral_worker_replica_state{" + lbl + ",state=\"Ready\"} 1"));
  EXPECT_THAT(
      m, ::testing::HasSubstr("corral_worker_replica_state{" + lbl + ",state=\"Draining\"} 0"));
  EXPECT_THAT(m, ::testing::HasSubstr("corral_worker_replica_time_to_first_token_seconds{" + lbl +
                                      ",quantile=\"0.99\"} 0.4"));
  EXPECT_THAT(m,
              ::testing::HasSubstr("# TYPE corral_worker_replica_generation_tokens_total counter"));
  EXPECT_THAT(
      m, ::testing::HasSubstr("corral_worker_replica_generation_tokens_total{" + lbl + "} 77"));
  EXPECT_THAT(m, ::testing::HasSubstr(
                     "corral_worker_inference_requests_total{code=\"200\",endpoint=\"openai_chat_"
                     "completions\",model=\"tiny\"} 1"));
  EXPECT_THAT(m, ::testing::HasSubstr(
                     "corral_worker_inference_requests_total{code=\"200\",endpoint=\"ollama_"
                     "generate\",model=\"tiny\"} 1"));
  // The unknown model's name is not a label value (bounded labels).
  EXPECT_THAT(m, ::testing::Not(::testing::HasSubstr("nope")));
  EXPECT_THAT(m, ::testing::HasSubstr("code=\"404\",endpoint=\"ollama_generate\",model=\"\""));
  EXPECT_THAT(m, ::testing::HasSubstr(
                     "corral_worker_inference_request_duration_seconds_count{endpoint=\"ollama_"
                     "generate\",model=\"tiny\"} 1"));
  EXPECT_THAT(m,
              ::testing::HasSubstr(
                  "corral_worker_inference_time_to_first_token_seconds_count{model=\"tiny\"} 2"));
  EXPECT_THAT(m,
              ::testing::HasSubstr(
                  "corral_worker_inference_time_per_output_token_seconds_count{model=\"tiny\"} 2"));
}

// --- the directory -------------------------------------------------------------

TEST(ReplicaTableTest, LookupPrefersReadyAndLeastLoaded) {
  FakeEngine engine;
  ReplicaTable table;
  auto make = [&](const std::string& replica, const std::string& model, ReplicaState state) {
    ReplicaInfo info;
    info.replica = replica;
    info.model = model;
    auto e = std::make_shared<ReplicaEntry>(info, &engine, state);
    EXPECT_TRUE(table.Add(e).ok());
    return e;
  };
  auto a = make("a-0", "a", ReplicaState::kDraining);
  auto b = make("a-1", "a", ReplicaState::kReady);
  auto c = make("a-2", "a", ReplicaState::kReady);
  make("z-0", "z", ReplicaState::kLoading);
  EXPECT_EQ(
      table.Add(std::make_shared<ReplicaEntry>(ReplicaInfo{"a-0", "a", {}, 0, {}, 0}, &engine))
          .code(),
      common::Code::kAlreadyExists);
  ASSERT_TRUE(b->TryAcquire());
  EXPECT_EQ(table.Lookup("a"), c);
  ASSERT_TRUE(c->TryAcquire());
  ASSERT_TRUE(c->TryAcquire());
  EXPECT_EQ(table.Lookup("a"), b);
  EXPECT_EQ(table.Lookup("z")->replica(), "z-0");  // not ready, but served here: 503, not 404
  EXPECT_EQ(table.Lookup("q"), nullptr);
  EXPECT_FALSE(a->TryAcquire());
  EXPECT_EQ(table.List().size(), 4u);
  EXPECT_EQ(table.Remove("a-1"), b);
  EXPECT_EQ(table.Remove("a-1"), nullptr);
  EXPECT_EQ(table.Lookup("a"), c);
  b->Release();
  c->Release();
  c->Release();
}

TEST(ReplicaEntryTest, WaitIdleOnVirtualTime) {
  FakeEngine engine;
  ReplicaEntry entry(ReplicaInfo{"r", "m", {}, 0, {}, 0}, &engine);
  common::FakeClock clock;
  ASSERT_TRUE(entry.TryAcquire());
  entry.SetState(ReplicaState::kDraining);
  EXPECT_FALSE(entry.TryAcquire());  // no admission after draining starts
  const auto deadline = clock.Now() + std::chrono::seconds(30);
  std::atomic<int> result{-1};
  std::thread waiter([&] { result = entry.WaitIdle(clock, deadline) ? 1 : 0; });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(result.load(), -1);  // still waiting: virtual time has not moved
  clock.Advance(std::chrono::seconds(31));
  waiter.join();
  EXPECT_EQ(result.load(), 0);  // the grace period passed

  std::thread waiter2([&] { result = entry.WaitIdle(clock, clock.Now() + 30s) ? 1 : 0; });
  std::this_thread::sleep_for(30ms);
  entry.Release();
  waiter2.join();
  EXPECT_EQ(result.load(), 1);
  EXPECT_EQ(entry.in_flight(), 0);
  entry.Release();  // an extra release does not go negative
  EXPECT_EQ(entry.in_flight(), 0);
}

}  // namespace
}  // namespace corral::worker
