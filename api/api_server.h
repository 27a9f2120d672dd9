#pragma once
// Serves the API handler (api/handler.h) over HTTP or HTTPS with cpprestsdk:
// request parsing and limits (body and header size), chunked streaming for
// watches, client-disconnect detection, TLS.
//
// Thread-safety: Start/Stop from one thread; requests run on cpprestsdk's pool,
// watch streams on threads of their own.
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "api/handler.h"
#include "common/status.h"

#include <cpprest/http_msg.h>
#include <pplx/pplxtasks.h>

#include <vector>

#include "api/request.h"

namespace web::http::experimental::listener {
class http_listener;
}

namespace corral::api {

struct ApiServerOptions {
  std::string listen = "127.0.0.1:6443";  // HOST:PORT
  // TLS when both are set; plain HTTP otherwise.
  std::string tls_cert_file;
  std::string tls_key_file;
  size_t max_body_bytes = 3 * 1024 * 1024;
  size_t max_header_bytes = 64 * 1024;
  // Requests between arrival and answer (watches not counted) before new ones
  // get 429. Counted from arrival, so requests queued for a thread count too.
  int max_inflight = 400;
  // A watch whose client has not read this much buffered output is closed.
  size_t max_watch_backlog_bytes = 16 * 1024 * 1024;
};

class ApiServer {
 public:
  ApiServer(ApiServerOptions options, Handler& handler);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Unavailable when the address cannot be bound or the certificate not loaded.
  common::Status Start();
  // Closes the listener, ends watch streams and waits for their threads.
  void Stop();

  // The URL clients use ("https://127.0.0.1:6443").
  std::string url() const;

 private:
  struct Stream;
  void Serve(void* request);  // web::http::http_request*, kept out of this header
  void Continue(web::http::http_request& req, Request request,
                pplx::task<std::vector<unsigned char>> body, size_t max_body);

  ApiServerOptions options_;
  Handler& handler_;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;
  std::mutex mu_;
  std::condition_variable streams_done_;
  int streams_ = 0;  // guarded by mu_: watch threads running
  std::shared_ptr<std::atomic<int>> inflight_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace corral::api
