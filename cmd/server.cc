// `corral server`: the control plane. Today: the store (embedded PostgreSQL
// unless --database-url), its background compaction and watch poller, and the
// operational endpoints. The API server, controllers and autoscaler join it as
// their issues land.
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <memory>

#include "cmd/commands.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/ops_server.h"
#include "store/embedded_postgres.h"
#include "store/postgres_store.h"

namespace corral::cmd {

namespace {

struct ServerFlags {
  std::string database_url;
  std::string data_dir = ".corral";
  bool data_dir_given = false;
  std::string listen = "127.0.0.1:8080";
  std::string log_level = "info";
  std::string pg_user;
  int pool_min = 2;
  int pool_max = 16;
  int pool_acquire_timeout_ms = 5000;
  size_t max_object_bytes = store::kDefaultMaxObjectBytes;
  int compaction_interval_s = 60;
  int64_t compaction_retain_revisions = 10'000;
  int compaction_retain_age_s = 300;
};

int RunServer(const ServerFlags& f) {
  if (auto s = common::SetupLogging(f.log_level); !s.ok()) {
    std::fprintf(stderr, "corral server: %s\n", s.message().c_str());
    return 2;
  }
  BlockShutdownSignals();
  std::unique_ptr<store::EmbeddedPostgres> embedded;
  std::string dsn = f.database_url;
  if (dsn.empty()) {
    store::EmbeddedPostgresOptions eo;
    // As root the embedded cluster runs as an unprivileged user that may not be
    // able to enter the current directory (e.g. under /root): default to the
    // system location instead, as k3s does.
    eo.data_dir = (!f.data_dir_given && geteuid() == 0) ? "/var/lib/corral" : f.data_dir;
    eo.run_as_user = f.pg_user;
    embedded = std::make_unique<store::EmbeddedPostgres>(eo);
    if (auto s = embedded->Start(); !s.ok()) {
      spdlog::error("embedded PostgreSQL: {}", s.ToString());
      return 1;
    }
    dsn = embedded->Dsn();
  }
  prometheus::Registry registry;
  common::RealClock clock;
  const store::KindRegistry kinds = store::KindRegistry::Default();
  store::PostgresStoreOptions so;
  so.pool.dsn = dsn;
  so.pool.application_name = "corral-server";
  so.pool.min_size = f.pool_min;
  so.pool.max_size = f.pool_max;
  so.pool.acquire_timeout = std::chrono::milliseconds(f.pool_acquire_timeout_ms);
  so.max_object_bytes = f.max_object_bytes;
  so.compaction.interval = std::chrono::seconds(f.compaction_interval_s);
  so.compaction.retain_revisions = f.compaction_retain_revisions;
  so.compaction.retain_age = std::chrono::seconds(f.compaction_retain_age_s);
  store::PostgresStore store(so, kinds, clock, registry);
  if (auto s = store.Start(); !s.ok()) {
    spdlog::error("store: {}", s.ToString());
    return 1;
  }
  common::OpsServer ops(f.listen, registry, [&store] { return store.Ping(); });
  if (auto s = ops.Start(); !s.ok()) {
    spdlog::error("{}", s.ToString());
    return 1;
  }
  auto rev = store.CurrentRevision();
  spdlog::info("corral server ready listen={} revision={} database={}", f.listen,
               rev.ok() ? *rev : -1,
               embedded ? "embedded:" + embedded->data_dir().string() : "external");
  const int sig = WaitForShutdown();
  spdlog::info("corral server: signal {} received, shutting down", sig);
  ops.Stop();
  store.Stop();
  if (embedded) {
    if (auto s = embedded->Stop(); !s.ok()) spdlog::warn("{}", s.ToString());
  }
  return 0;
}

}  // namespace

Runner RegisterServer(CLI::App& app) {
  auto flags = std::make_shared<ServerFlags>();
  CLI::App* sub =
      app.add_subcommand("server", "Run the control plane (API, controllers, autoscaler)");
  sub->add_option("--database-url", flags->database_url,
                  "PostgreSQL DSN or URL; empty: an embedded cluster in --data-dir");
  CLI::Option* data_dir =
      sub->add_option("--data-dir", flags->data_dir,
                      "Directory for the embedded PostgreSQL cluster (as root: /var/lib/corral)")
          ->capture_default_str();
  sub->add_option("--listen", flags->listen, "HOST:PORT for HTTP")->capture_default_str();
  sub->add_option("--log-level", flags->log_level, "trace|debug|info|warn|error")
      ->capture_default_str();
  sub->add_option("--pg-user", flags->pg_user,
                  "Unprivileged user to run the embedded PostgreSQL as when started as root "
                  "(default: postgres, else nobody)");
  sub->add_option("--pool-min", flags->pool_min, "Store connections kept open")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  sub->add_option("--pool-max", flags->pool_max, "Store connections at most")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  sub->add_option("--pool-acquire-timeout-ms", flags->pool_acquire_timeout_ms,
                  "How long a request waits for a store connection")
      ->check(CLI::Range(1, 600'000))
      ->capture_default_str();
  sub->add_option("--max-object-bytes", flags->max_object_bytes, "Largest object accepted")
      ->check(CLI::Range(size_t{1024}, size_t{64} << 20))
      ->capture_default_str();
  sub->add_option("--compaction-interval", flags->compaction_interval_s,
                  "Seconds between compaction passes")
      ->check(CLI::Range(1, 86'400))
      ->capture_default_str();
  sub->add_option("--compaction-retain-revisions", flags->compaction_retain_revisions,
                  "Revisions of history always kept")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  sub->add_option("--compaction-retain-age", flags->compaction_retain_age_s,
                  "Seconds of history always kept")
      ->check(CLI::Range(0, 30 * 86'400))
      ->capture_default_str();
  return [flags, data_dir] {
    flags->data_dir_given = data_dir->count() > 0;
    return RunServer(*flags);
  };
}

}  // namespace corral::cmd
