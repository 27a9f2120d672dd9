#pragma once
// Operational HTTP endpoints every Corral process serves: /metrics (Prometheus
// text format), /healthz and /livez (process is up), /readyz (dependencies
// answer). The API server issue grows this into the full Kubernetes API; until
// then `corral server` serves these alone.
//
// Thread-safety: Start/Stop from one thread; handlers run on cpprestsdk's pool.
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace web::http::experimental::listener {
class http_listener;
}

namespace corral::common {

class OpsServer {
 public:
  // ready: returns Ok when the process can serve; its message is shown on failure.
  OpsServer(std::string listen_address, prometheus::Registry& registry,
            std::function<Status()> ready);
  ~OpsServer();
  OpsServer(const OpsServer&) = delete;
  OpsServer& operator=(const OpsServer&) = delete;

  // listen_address is HOST:PORT. Unavailable if the port cannot be bound.
  Status Start();
  void Stop();

 private:
  std::string listen_address_;
  prometheus::Registry& registry_;
  std::function<Status()> ready_;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;
};

}  // namespace corral::common
