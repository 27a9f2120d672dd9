#include "api/api_server.h"

#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>
#include <pplx/threadpool.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/ssl.hpp>
#include <thread>

#include "api/errors.h"

namespace corral::api {

namespace http = web::http;
using common::Status;

namespace {

// Writes a watch stream into a producer/consumer buffer that cpprestsdk
// drains to the socket as chunked encoding.
class BufferSink final : public StreamSink {
 public:
  BufferSink(concurrency::streams::producer_consumer_buffer<uint8_t> buf,
             std::shared_ptr<std::atomic<bool>> gone, size_t max_backlog)
      : buf_(std::move(buf)), gone_(std::move(gone)), max_backlog_(max_backlog) {}

  bool Write(const std::string& chunk) override {
    if (Closed()) return false;
    try {
      if (buf_.in_avail() > max_backlog_) {
        spdlog::warn("api: closing a watch whose client stopped reading ({} bytes buffered)",
                     buf_.in_avail());
        gone_->store(true);
        return false;
      }
      buf_.putn_nocopy(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()).wait();
      buf_.sync().wait();
    } catch (const std::exception& e) {
      gone_->store(true);
      return false;
    }
    return !Closed();
  }
  bool Closed() const override { return gone_->load(); }

 private:
  concurrency::streams::producer_consumer_buffer<uint8_t> buf_;
  std::shared_ptr<std::atomic<bool>> gone_;
  size_t max_backlog_;
};

// Query strings encode a space as '+' (Go's url.Values does): decode it.
std::string DecodeQueryPart(std::string s) {
  std::replace(s.begin(), s.end(), '+', ' ');
  return web::uri::decode(s);
}

// Throws on a malformed percent-escape (the caller answers 400).
Request ToRequest(const http::http_request& req) {
  Request r;
  r.method = req.method();
  const auto& uri = req.relative_uri();
  r.path = web::uri::decode(uri.path());
  for (const auto& [k, v] : web::uri::split_query(uri.query())) {
    r.query[DecodeQueryPart(k)] = DecodeQueryPart(v);
  }
  for (const auto& [k, v] : req.headers()) r.headers[k] = v;
  r.remote = req.remote_address();
  return r;
}

http::http_response ToHttp(const Response& resp) {
  http::http_response out(static_cast<http::status_code>(resp.status));
  for (const auto& [k, v] : resp.headers) out.headers().add(k, v);
  if (!resp.stream) out.set_body(resp.body, resp.content_type);
  return out;
}

void Reply(http::http_request& req, const Response& resp) {
  req.reply(ToHttp(resp)).then([](pplx::task<void> t) {
    try {
      t.get();
    } catch (const std::exception& e) {
      spdlog::debug("api: reply not delivered: {}", e.what());
    }
  });
}

}  // namespace

ApiServer::ApiServer(ApiServerOptions options, Handler& handler)
    : options_(std::move(options)), handler_(handler) {}

ApiServer::~ApiServer() { Stop(); }

std::string ApiServer::url() const {
  const bool tls = !options_.tls_cert_file.empty() && !options_.tls_key_file.empty();
  return std::string(tls ? "https://" : "http://") + options_.listen;
}

Status ApiServer::Start() {
  try {
    http::experimental::listener::http_listener_config config;
    const bool tls = !options_.tls_cert_file.empty() && !options_.tls_key_file.empty();
    if (tls) {
      // Load once now so a bad file fails Start rather than every handshake.
      boost::asio::ssl::context probe(boost::asio::ssl::context::tls_server);
      probe.use_certificate_chain_file(options_.tls_cert_file);
      probe.use_private_key_file(options_.tls_key_file, boost::asio::ssl::context::pem);
      const std::string cert = options_.tls_cert_file, key = options_.tls_key_file;
      config.set_ssl_context_callback([cert, key](boost::asio::ssl::context& ctx) {
        ctx.set_options(boost::asio::ssl::context::default_workarounds |
                        boost::asio::ssl::context::no_sslv2 | boost::asio::ssl::context::no_sslv3 |
                        boost::asio::ssl::context::no_tlsv1 |
                        boost::asio::ssl::context::no_tlsv1_1);
        ctx.use_certificate_chain_file(cert);
        ctx.use_private_key_file(key, boost::asio::ssl::context::pem);
      });
    }
    listener_ = std::make_unique<http::experimental::listener::http_listener>(url() + "/", config);
    listener_->support([this](http::http_request req) { Serve(&req); });
    listener_->open().wait();
  } catch (const std::exception& e) {
    listener_.reset();
    return common::Unavailable("API server: listen on " + options_.listen + ": " + e.what());
  }
  spdlog::info("api: serving url={}", url());
  return Status::Ok();
}

void ApiServer::Stop() {
  if (!listener_) return;
  handler_.CloseWatches();
  try {
    listener_->close().wait();
  } catch (const std::exception& e) {
    spdlog::warn("api: closing listener: {}", e.what());
  }
  std::unique_lock lock(mu_);
  streams_done_.wait_for(lock, std::chrono::seconds(10), [this] { return streams_ == 0; });
  listener_.reset();
}

void ApiServer::Serve(void* raw) {
  http::http_request req = *static_cast<http::http_request*>(raw);
  Request request;
  try {
    request = ToRequest(req);
  } catch (const std::exception& e) {
    Reply(req, BadRequest(std::string("malformed request URI: ") + e.what()));
    return;
  }
  // A body without a length could be any size: refuse it rather than buffer it.
  if (req.headers().has("Transfer-Encoding")) {
    Reply(req, StatusResponse(411, "LengthRequired",
                              "request bodies must carry Content-Length (chunked uploads are not "
                              "accepted)"));
    return;
  }
  size_t header_bytes = request.path.size();
  for (const auto& [k, v] : request.headers) header_bytes += k.size() + v.size() + 4;
  if (header_bytes > options_.max_header_bytes) {
    Reply(req, StatusResponse(431, "RequestHeaderFieldsTooLarge",
                              "request headers are larger than " +
                                  std::to_string(options_.max_header_bytes) + " bytes"));
    return;
  }
  // Admission: answered on the I/O path, before any body is read or a
  // handler thread is taken.
  const bool is_watch = request.method == "GET" &&
                        (request.Query("watch") == "true" || request.Query("watch") == "1");
  std::shared_ptr<void> admitted;
  if (!is_watch) {
    if (inflight_->fetch_add(1) >= options_.max_inflight) {
      inflight_->fetch_sub(1);
      Reply(
          req,
          TooManyRequests(
              "the server has received too many requests and has asked us to try again later", 1));
      return;
    }
    // The continuation holding this may be destroyed after the server (pplx
    // frees task handles late): the counter is shared, not a member reference.
    admitted = std::shared_ptr<void>(nullptr, [c = inflight_](void*) { c->fetch_sub(1); });
  }
  const auto length = req.headers().content_length();
  if (length > options_.max_body_bytes) {
    Reply(req, TooLarge("the request body is " + std::to_string(length) + " bytes; the limit is " +
                        std::to_string(options_.max_body_bytes)));
    return;
  }
  const size_t max_body = options_.max_body_bytes;
  req.extract_vector().then([this, req, request = std::move(request), max_body,
                             admitted](pplx::task<std::vector<unsigned char>> t) mutable {
    // Nothing may escape a pplx continuation: an unobserved exception there
    // terminates the process.
    try {
      Continue(req, std::move(request), std::move(t), max_body);
    } catch (const std::exception& e) {
      spdlog::error("api: {} {}: {}", request.method, request.path, e.what());
      try {
        Reply(req,
              StatusResponse(500, "InternalError", std::string("internal error: ") + e.what()));
      } catch (const std::exception&) {
      }
    }
  });
}

void ApiServer::Continue(web::http::http_request& req, Request request,
                         pplx::task<std::vector<unsigned char>> body_task, size_t max_body) {
  std::vector<unsigned char> body;
  try {
    body = body_task.get();
  } catch (const std::exception& e) {
    Reply(req, BadRequest(std::string("reading the request body: ") + e.what()));
    return;
  }
  if (body.size() > max_body) {
    Reply(req, TooLarge("the request body is larger than " + std::to_string(max_body) + " bytes"));
    return;
  }
  request.body.assign(body.begin(), body.end());
  Response resp = handler_.Handle(request);
  if (!resp.stream) {
    Reply(req, resp);
    return;
  }
  concurrency::streams::producer_consumer_buffer<uint8_t> buf;
  http::http_response out = ToHttp(resp);
  out.set_body(buf.create_istream(), resp.content_type);
  auto gone = std::make_shared<std::atomic<bool>>(false);
  {
    std::lock_guard lock(mu_);
    ++streams_;
  }
  auto stream = std::make_shared<std::function<void(StreamSink&)>>(std::move(resp.stream));
  try {
    std::thread([this, buf, gone, stream]() mutable {
      {
        BufferSink sink(buf, gone, options_.max_watch_backlog_bytes);
        try {
          (*stream)(sink);
        } catch (const std::exception& e) {
          spdlog::error("api: watch stream failed: {}", e.what());
        }
        stream.reset();  // releases the watch slot before the count drops
        try {
          buf.close(std::ios_base::out).wait();
        } catch (const std::exception&) {
        }
      }
      std::lock_guard lock(mu_);
      --streams_;
      streams_done_.notify_all();
    }).detach();
  } catch (const std::exception& e) {
    // No thread for the stream: run it against a closed sink so it releases
    // what it holds, and answer 503.
    {
      auto closed = std::make_shared<std::atomic<bool>>(true);
      BufferSink sink(buf, closed, 0);
      (*stream)(sink);
    }
    {
      std::lock_guard lock(mu_);
      --streams_;
    }
    streams_done_.notify_all();
    Reply(req, StatusResponse(503, "ServiceUnavailable",
                              std::string("cannot start a watch stream: ") + e.what()));
    return;
  }
  req.reply(out).then([gone](pplx::task<void> done) {
    try {
      done.get();
    } catch (const std::exception&) {
    }
    gone->store(true);  // sent completely, or the client went away
  });
}

}  // namespace corral::api
