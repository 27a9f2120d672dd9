#pragma once
// The API server's request handler: Kubernetes-compatible discovery,
// OpenAPI, CRUD, list/watch, patch (merge, JSON Patch, server-side apply),
// /status and /scale, finalizers, dry-run and field validation — over the
// object store. Transport-independent (api/request.h); api_server.cc serves
// it over HTTP(S).
//
// Thread-safety: Handle() may be called from many threads at once.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "api/auth.h"
#include "api/request.h"
#include "api/schema.h"
#include "common/clock.h"
#include "common/status.h"
#include "store/object_store.h"

namespace corral::api {

struct HandlerOptions {
  // What /version reports. kubectl's dispatcher on the image picks the
  // kubectl minor that matches.
  std::string major = "1";
  std::string minor = "32";
  std::string git_version = "v1.32.0";
  std::string corral_version = "0.1.0";
  // Request bodies larger than this are refused with 413.
  size_t max_body_bytes = 3 * 1024 * 1024;
  // fieldValidation when the client sends none (as kube-apiserver: Warn).
  FieldValidation default_field_validation = FieldValidation::kWarn;
  // Watches: bookmark cadence comes from the store; these bound each stream.
  std::chrono::seconds max_watch_duration{1800};  // a random part of it is added
  int max_watches_per_user = 256;
  // An idle watch sends a newline this often, so a vanished client is noticed.
  std::chrono::milliseconds watch_keepalive{10'000};
  int max_watches_total = 4096;
  // Non-watch requests being handled at once before 429.
  int max_inflight = 400;
  // When false, every request is served as an anonymous admin (tests of
  // logic only; the server always authenticates).
  bool authenticate = true;
};

class Handler {
 public:
  // `auth` may be null only when options.authenticate is false.
  Handler(HandlerOptions options, store::ObjectStore& store, const SchemaRegistry& schema,
          TokenAuthenticator* auth, common::Clock& clock, prometheus::Registry& registry,
          std::function<common::Status()> ready);
  ~Handler();

  Response Handle(const Request& request);

  // Open watch streams (for metrics and tests).
  int open_watches() const;

  // Called after every delete (e.g. GarbageCollector::Wake). Set before serving.
  void SetDeleteHook(std::function<void()> hook);

  // Ends every open watch stream (at shutdown).
  void CloseWatches();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace corral::api
