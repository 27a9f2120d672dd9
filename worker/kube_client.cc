#include "worker/kube_client.h"

#include <cpprest/http_client.h>
#include <cpprest/rawptrstream.h>
#include <spdlog/spdlog.h>

#include <boost/asio/ssl.hpp>
#include <thread>

namespace corral::worker {

namespace http = web::http;
using common::Code;
using common::Result;
using common::Status;
using nlohmann::json;

struct KubeClient::Impl {
  KubeClientOptions options;
  http::client::http_client_config config;
  std::unique_ptr<http::client::http_client> client;
};

KubeClient::KubeClient(KubeClientOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  auto& cfg = impl_->config;
  cfg.set_timeout(impl_->options.timeout);
  if (impl_->options.insecure_skip_verify) cfg.set_validate_certificates(false);
  if (!impl_->options.ca_file.empty()) {
    const std::string ca = impl_->options.ca_file;
    cfg.set_ssl_context_callback([ca](boost::asio::ssl::context& ctx) {
      try {
        ctx.load_verify_file(ca);
      } catch (const std::exception& e) {
        spdlog::error("worker: CA file {}: {}", ca, e.what());
      }
    });
  }
  impl_->client = std::make_unique<http::client::http_client>(impl_->options.server, cfg);
}

KubeClient::~KubeClient() = default;

namespace {

Status FromHttp(int code, const std::string& body, const std::string& what) {
  std::string message = what + ": HTTP " + std::to_string(code);
  std::string reason;
  auto j = json::parse(body, nullptr, false);
  if (j.is_object() && j.value("message", json()).is_string()) {
    message = what + ": " + j["message"].get<std::string>();
    reason = j.value("reason", "");
  }
  if (code == 404) return common::NotFound(message);
  if (code == 409)
    return reason == "AlreadyExists" ? common::AlreadyExists(message) : common::Conflict(message);
  if (code == 410) return common::Expired(message);
  if (code == 400 || code == 422) return common::InvalidArgument(message);
  if (code == 401 || code == 403) return common::FailedPrecondition(message);
  return common::Unavailable(message);
}

}  // namespace

Result<json> KubeClient::Send(const std::string& method, const std::string& path,
                              const std::string& body, const std::string& content_type) {
  const std::string what = method + " " + path;
  try {
    http::http_request req(method);
    req.set_request_uri(path);
    req.headers().add("Authorization", "Bearer " + impl_->options.token);
    req.headers().add("Accept", "application/json");
    if (!body.empty()) req.set_body(body, content_type);
    auto resp = impl_->client->request(req).get();
    const std::string text = resp.extract_utf8string(true).get();
    const int code = resp.status_code();
    if (code >= 200 && code < 300) {
      auto j = json::parse(text, nullptr, false);
      if (j.is_discarded()) return common::Internal(what + ": the server answered invalid JSON");
      return j;
    }
    return FromHttp(code, text, what);
  } catch (const std::exception& e) {
    return common::Unavailable(what + ": " + e.what());
  }
}

Result<json> KubeClient::Get(const std::string& path) { return Send("GET", path, "", ""); }
Result<json> KubeClient::Post(const std::string& path, const json& body) {
  return Send("POST", path, body.dump(), "application/json");
}
Result<json> KubeClient::Put(const std::string& path, const json& body) {
  return Send("PUT", path, body.dump(), "application/json");
}
Result<json> KubeClient::MergePatch(const std::string& path, const json& patch) {
  return Send("PATCH", path, patch.dump(), "application/merge-patch+json");
}
Result<json> KubeClient::Delete(const std::string& path) { return Send("DELETE", path, "", ""); }

Status KubeClient::Watch(const std::string& path,
                         const std::function<void(const std::string&, const json&)>& on_event,
                         const std::atomic<bool>& stop) {
  const std::string what = "watch " + path;
  pplx::cancellation_token_source cts;
  std::atomic<bool> finished{false};
  // Cancels the request (closing its connection) once `stop` is set.
  std::thread stopper([&] {
    while (!finished.load() && !stop.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (!finished.load()) cts.cancel();
  });
  Status result = Status::Ok();
  try {
    http::client::http_client_config cfg = impl_->config;
    cfg.set_timeout(std::chrono::hours(2));  // the server bounds the watch (timeoutSeconds)
    http::client::http_client client(impl_->options.server, cfg);
    http::http_request req("GET");
    req.set_request_uri(path);
    req.headers().add("Authorization", "Bearer " + impl_->options.token);
    auto resp = client.request(req, cts.get_token()).get();
    if (resp.status_code() != 200) {
      result = FromHttp(resp.status_code(), resp.extract_utf8string(true).get(), what);
    } else {
      auto body = resp.body();
      std::string line;
      while (!stop.load()) {
        concurrency::streams::container_buffer<std::string> buf;
        const size_t n = body.read_line(buf).get();
        line = std::move(buf.collection());
        if (n == 0 && line.empty() && body.is_eof()) break;  // the server ended the stream
        if (line.empty()) continue;                          // keep-alive
        auto ev = json::parse(line, nullptr, false);
        if (!ev.is_object()) continue;
        const std::string type = ev.value("type", "");
        if (type == "ERROR") {
          const json& st = ev.value("object", json::object());
          result = FromHttp(st.value("code", 500), st.dump(), what);
          break;
        }
        on_event(type, ev.value("object", json::object()));
      }
    }
  } catch (const pplx::task_canceled&) {
    result = Status::Ok();  // stopped
  } catch (const std::exception& e) {
    result = stop.load() ? Status::Ok() : common::Unavailable(what + ": " + e.what());
  }
  finished = true;
  stopper.join();
  return result;
}

}  // namespace corral::worker
