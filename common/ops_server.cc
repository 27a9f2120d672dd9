#include "common/ops_server.h"

#include <cpprest/http_listener.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

namespace corral::common {

namespace http = web::http;

OpsServer::OpsServer(std::string listen_address, prometheus::Registry& registry,
                     std::function<Status()> ready)
    : listen_address_(std::move(listen_address)), registry_(registry), ready_(std::move(ready)) {}

OpsServer::~OpsServer() { Stop(); }

Status OpsServer::Start() {
  try {
    listener_ = std::make_unique<http::experimental::listener::http_listener>(
        "http://" + listen_address_ + "/");
    listener_->support(http::methods::GET, [this](http::http_request req) {
      const std::string path = req.relative_uri().path();
      if (path == "/metrics") {
        prometheus::TextSerializer serializer;
        http::http_response resp(http::status_codes::OK);
        resp.set_body(serializer.Serialize(registry_.Collect()),
                      "text/plain; version=0.0.4; charset=utf-8");
        req.reply(resp);
      } else if (path == "/healthz" || path == "/livez") {
        req.reply(http::status_codes::OK, "ok", "text/plain");
      } else if (path == "/readyz") {
        const Status s = ready_ ? ready_() : Status::Ok();
        if (s.ok()) {
          req.reply(http::status_codes::OK, "ok", "text/plain");
        } else {
          req.reply(http::status_codes::ServiceUnavailable, s.ToString() + "\n", "text/plain");
        }
      } else {
        req.reply(http::status_codes::NotFound, "404 page not found\n", "text/plain");
      }
    });
    listener_->open().wait();
  } catch (const std::exception& e) {
    listener_.reset();
    return Unavailable("listen on " + listen_address_ + ": " + e.what());
  }
  spdlog::info("ops endpoints listening address={}", listen_address_);
  return Status::Ok();
}

void OpsServer::Stop() {
  if (!listener_) return;
  try {
    listener_->close().wait();
  } catch (const std::exception& e) {
    spdlog::warn("closing ops listener: {}", e.what());
  }
  listener_.reset();
}

}  // namespace corral::common
