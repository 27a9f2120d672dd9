// `corral server`: the control plane. Today: the store (embedded PostgreSQL
// unless --database-url), its background compaction and watch poller, and the
// operational endpoints. The API server, controllers and autoscaler join it as
// their issues land.
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <memory>

#include <pplx/threadpool.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "api/api_server.h"
#include "api/auth.h"
#include "api/gc.h"
#include "api/handler.h"
#include "api/schema.h"
#include "api/tls.h"
#include "cmd/commands.h"
#include "common/clock.h"
#include "common/logging.h"
#include "store/embedded_postgres.h"
#include "store/postgres_store.h"

namespace corral::cmd {

namespace {

struct ServerFlags {
  std::string database_url;
  std::string data_dir = ".corral";
  bool data_dir_given = false;
  std::string listen = "127.0.0.1:6443";
  std::string advertise_address;
  std::string tls_cert;
  std::string tls_key;
  bool insecure_http = false;
  std::string token_file;
  size_t max_body_bytes = 3 * 1024 * 1024;
  int max_inflight = 400;
  int max_watches_per_user = 256;
  std::string kube_minor = "32";
  bool cached_reads = true;
  int http_threads = 40;
  std::string log_level = "info";
  std::string pg_user;
  int pool_min = 2;
  int pool_max = 16;
  int pool_acquire_timeout_ms = 5000;
  int statement_timeout_ms = 30'000;
  size_t max_object_bytes = store::kDefaultMaxObjectBytes;
  int compaction_interval_s = 60;
  int64_t compaction_retain_revisions = 10'000;
  int compaction_retain_age_s = 300;
};

std::string HostOf(const std::string& listen) {
  const auto p = listen.rfind(':');
  std::string host = p == std::string::npos ? listen : listen.substr(0, p);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  return host;
}

std::string PortOf(const std::string& listen) {
  const auto p = listen.rfind(':');
  return p == std::string::npos ? "6443" : listen.substr(p + 1);
}

// Tokens and the admin kubeconfig: created on first start.
common::Result<std::string> EnsureAdminKubeconfig(const std::filesystem::path& data_dir,
                                                  const std::filesystem::path& token_file,
                                                  const std::string& server_url,
                                                  const std::string& ca_pem) {
  const auto kubeconfig = data_dir / "admin.kubeconfig";
  std::error_code ec;
  if (std::filesystem::exists(kubeconfig, ec)) {
    // Keep the token; refresh server URL and CA (they may have changed).
    std::ifstream in(kubeconfig);
    std::string line, token;
    while (std::getline(in, line)) {
      const auto p = line.find("token:");
      if (p != std::string::npos) {
        token = line.substr(p + 6);
        token.erase(0, token.find_first_not_of(" \t\""));
        token.erase(token.find_last_not_of(" \t\"") + 1);
      }
    }
    if (!token.empty()) {
      if (auto s = api::WriteKubeconfig(kubeconfig, server_url, token, ca_pem); !s.ok()) return s;
      return kubeconfig.string();
    }
  }
  auto token = api::AddToken(token_file, "admin", api::Role::kAdmin);
  if (!token.ok()) return token.status();
  if (auto s = api::WriteKubeconfig(kubeconfig, server_url, *token, ca_pem); !s.ok()) return s;
  spdlog::info("wrote admin kubeconfig path={}", kubeconfig.string());
  return kubeconfig.string();
}

int RunServer(const ServerFlags& f) {
  if (auto s = common::SetupLogging(f.log_level); !s.ok()) {
    std::fprintf(stderr, "corral server: %s\n", s.message().c_str());
    return 2;
  }
  BlockShutdownSignals();
  // cpprestsdk runs request handlers and socket I/O on one shared pool (40
  // threads by default). More threads than cores mostly buys context
  // switches: GETs served from the cache ran 3x faster with 24 threads than
  // with 144 on 2 cores (docs/benchmarks.md). Must precede any cpprestsdk use.
  try {
    crossplat::threadpool::initialize_with_threads(static_cast<size_t>(f.http_threads));
  } catch (const std::exception& e) {
    spdlog::warn("cpprestsdk thread pool: {}", e.what());
  }
  std::unique_ptr<store::EmbeddedPostgres> embedded;
  std::string dsn = f.database_url;
  if (dsn.empty()) {
    store::EmbeddedPostgresOptions eo;
    // As root the embedded cluster runs as an unprivileged user that may not be
    // able to enter the current directory (e.g. under /root): default to the
    // system location instead, as k3s does.
    eo.data_dir = ResolveDataDir(f.data_dir, f.data_dir_given);
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
  so.pool.statement_timeout = std::chrono::milliseconds(f.statement_timeout_ms);
  so.max_object_bytes = f.max_object_bytes;
  so.cached_reads = f.cached_reads;
  so.compaction.interval = std::chrono::seconds(f.compaction_interval_s);
  so.compaction.retain_revisions = f.compaction_retain_revisions;
  so.compaction.retain_age = std::chrono::seconds(f.compaction_retain_age_s);
  store::PostgresStore store(so, kinds, clock, registry);
  if (auto s = store.Start(); !s.ok()) {
    spdlog::error("store: {}", s.ToString());
    return 1;
  }
  const std::filesystem::path data_dir =
      std::filesystem::absolute(ResolveDataDir(f.data_dir, f.data_dir_given));
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  const std::filesystem::path token_file =
      f.token_file.empty() ? data_dir / "tokens.csv" : std::filesystem::path(f.token_file);
  std::string host = HostOf(f.listen);
  const std::string client_host =
      !f.advertise_address.empty()
          ? f.advertise_address
          : (host == "0.0.0.0" || host == "::" || host.empty() ? "127.0.0.1" : host);
  api::ApiServerOptions ao;
  ao.listen = f.listen;
  ao.max_body_bytes = f.max_body_bytes;
  ao.max_inflight = f.max_inflight;
  std::string ca_pem;
  if (f.insecure_http) {
    spdlog::warn("serving plain HTTP (--insecure-http): tokens cross the network in clear text");
  } else if (!f.tls_cert.empty() || !f.tls_key.empty()) {
    if (f.tls_cert.empty() || f.tls_key.empty()) {
      spdlog::error("--tls-cert and --tls-key go together");
      return 2;
    }
    ao.tls_cert_file = f.tls_cert;
    ao.tls_key_file = f.tls_key;
  } else {
    auto certs = api::EnsureServingCerts(data_dir / "tls", {client_host, host});
    if (!certs.ok()) {
      spdlog::error("generating serving certificates: {}", certs.status().ToString());
      return 1;
    }
    ao.tls_cert_file = certs->server_cert.string();
    ao.tls_key_file = certs->server_key.string();
    std::ifstream in(certs->ca_cert);
    std::stringstream ss;
    ss << in.rdbuf();
    ca_pem = ss.str();
  }
  const std::string server_url =
      std::string(f.insecure_http ? "http://" : "https://") + client_host + ":" + PortOf(f.listen);
  auto kubeconfig = EnsureAdminKubeconfig(data_dir, token_file, server_url, ca_pem);
  if (!kubeconfig.ok()) {
    spdlog::error("admin kubeconfig: {}", kubeconfig.status().ToString());
    return 1;
  }
  api::TokenAuthenticator authenticator(token_file);
  if (auto s = authenticator.Load(); !s.ok()) {
    spdlog::error("token file {}: {}", token_file.string(), s.ToString());
    return 1;
  }
  api::HandlerOptions ho;
  ho.minor = f.kube_minor;
  ho.git_version = "v1." + f.kube_minor + ".0";
  ho.corral_version = CORRAL_VERSION;
  ho.max_body_bytes = f.max_body_bytes;
  ho.max_inflight = f.max_inflight;
  ho.max_watches_per_user = f.max_watches_per_user;
  api::Handler handler(ho, store, api::SchemaRegistry::Default(), &authenticator, clock, registry,
                       [&store] { return store.Ping(); });
  api::GarbageCollector gc({}, store, kinds, registry);
  handler.SetDeleteHook([&gc] { gc.Wake(); });
  gc.Start();
  api::ApiServer server(ao, handler);
  if (auto s = server.Start(); !s.ok()) {
    spdlog::error("{}", s.ToString());
    return 1;
  }
  auto rev = store.CurrentRevision();
  spdlog::info("corral server ready url={} kubeconfig={} revision={} database={}", server_url,
               *kubeconfig, rev.ok() ? *rev : -1,
               embedded ? "embedded:" + embedded->data_dir().string() : "external");
  const int sig = WaitForShutdown();
  spdlog::info("corral server: signal {} received, shutting down", sig);
  server.Stop();
  gc.Stop();
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
      sub->add_option(
             "--data-dir", flags->data_dir,
             "State directory: embedded PostgreSQL, tokens, certificates, admin.kubeconfig "
             "(as root: /var/lib/corral)")
          ->capture_default_str();
  sub->add_option("--listen", flags->listen, "HOST:PORT the API serves on")->capture_default_str();
  sub->add_option("--advertise-address", flags->advertise_address,
                  "Host name or IP clients use (kubeconfig URL, certificate SAN)");
  sub->add_option("--tls-cert", flags->tls_cert, "Serving certificate (PEM); default: generated");
  sub->add_option("--tls-key", flags->tls_key, "Serving key (PEM)");
  sub->add_flag("--insecure-http", flags->insecure_http,
                "Serve plain HTTP instead of HTTPS (development only)");
  sub->add_option("--token-file", flags->token_file,
                  "Bearer tokens, one 'TOKEN,USER,ROLE' per line (default: <data-dir>/tokens.csv)");
  sub->add_option("--max-body-bytes", flags->max_body_bytes, "Largest request body accepted")
      ->check(CLI::Range(size_t{4096}, size_t{64} << 20))
      ->capture_default_str();
  sub->add_option("--max-inflight", flags->max_inflight,
                  "Requests handled at once before 429 (watches not counted)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  sub->add_option("--max-watches-per-user", flags->max_watches_per_user,
                  "Open watches one user may hold")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  sub->add_option("--http-threads", flags->http_threads,
                  "Threads serving HTTP (socket I/O and handlers)")
      ->check(CLI::Range(4, 4096))
      ->capture_default_str();
  sub->add_option("--cached-reads", flags->cached_reads,
                  "Serve GETs from the watch-maintained cache (own writes visible at once, other "
                  "servers' writes after the watch poller sees them); false: read PostgreSQL")
      ->capture_default_str();
  sub->add_option("--kube-minor", flags->kube_minor,
                  "Kubernetes minor version /version reports (kubectl picks its version by it)")
      ->capture_default_str();
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
  sub->add_option("--statement-timeout-ms", flags->statement_timeout_ms,
                  "Longest any database statement may run (PostgreSQL statement_timeout); 0: none")
      ->check(CLI::Range(0, 3'600'000))
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
