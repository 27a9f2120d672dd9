#pragma once
// A small client for Corral's Kubernetes-style API (what the worker needs):
// JSON requests with a bearer token over HTTPS (CA from a file) or HTTP, and
// watch streams. HTTP errors become common::Status with the API's message.
//
// Thread-safety: thread-safe (each call uses its own request; the
// underlying cpprestsdk client is shared).
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace corral::worker {

struct KubeClientOptions {
  std::string server;   // "https://127.0.0.1:6443"
  std::string token;    // bearer token
  std::string ca_file;  // PEM CA bundle for https; empty: the system's
  bool insecure_skip_verify = false;
  std::chrono::seconds timeout{30};
};

class KubeClient {
 public:
  explicit KubeClient(KubeClientOptions options);
  ~KubeClient();

  // Status mapping: 404 NotFound, 409 AlreadyExists (reason AlreadyExists)
  // or Conflict, 410 Expired, 400/422 InvalidArgument, 401/403
  // FailedPrecondition, 429/5xx and transport errors Unavailable.
  common::Result<nlohmann::json> Get(const std::string& path);
  common::Result<nlohmann::json> Post(const std::string& path, const nlohmann::json& body);
  common::Result<nlohmann::json> Put(const std::string& path, const nlohmann::json& body);
  common::Result<nlohmann::json> MergePatch(const std::string& path, const nlohmann::json& patch);
  common::Result<nlohmann::json> Delete(const std::string& path);

  // Streams a watch (path with ?watch=true&...): calls on_event(type, object)
  // per event until `stop` is set, the server ends the stream (Ok), or an
  // error (ERROR event: Expired/...; transport: Unavailable). `stop` is
  // noticed within about a second.
  common::Status Watch(
      const std::string& path,
      const std::function<void(const std::string&, const nlohmann::json&)>& on_event,
      const std::atomic<bool>& stop);

 private:
  common::Result<nlohmann::json> Send(const std::string& method, const std::string& path,
                                      const std::string& body, const std::string& content_type);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace corral::worker
