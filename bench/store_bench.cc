// Store throughput and latency beside pgbench on the same PostgreSQL.
//
// For 1, 8 and 32 concurrent clients it measures Create, CAS Update and Get
// through corral::store::PostgresStore, then runs pgbench with an equivalent
// single-row script (insert of a same-sized row; update of one row by primary
// key; select by primary key) at the same client count, and prints the ratio.
// Both sides use prepared statements and one connection per client.
//
//   store_bench [--seconds 5] [--clients 1,8,32] [--database-url DSN]
//
// Without --database-url it starts a private cluster with PostgreSQL's
// default (durable) settings in a temporary directory.
#include <prometheus/registry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <random>
#include <sstream>
#include <thread>

#include "common/clock.h"
#include "common/logging.h"
#include "common/subprocess.h"
#include "store/embedded_postgres.h"
#include "store/postgres_store.h"

using namespace corral;
namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

namespace {

struct Figures {
  double ops_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int64_t errors = 0;
};

Figures Summarize(std::vector<double>& lat_ms, double seconds, int64_t errors) {
  Figures f;
  f.errors = errors;
  if (lat_ms.empty()) return f;
  std::sort(lat_ms.begin(), lat_ms.end());
  f.ops_per_s = static_cast<double>(lat_ms.size()) / seconds;
  f.p50_ms = lat_ms[lat_ms.size() / 2];
  f.p99_ms = lat_ms[std::min(lat_ms.size() - 1, lat_ms.size() * 99 / 100)];
  return f;
}

// A spec of realistic size (a ModelDeployment is a few hundred bytes).
nlohmann::json Spec(int i) {
  return {{"modelRef", {{"name", "llama-3-8b"}}},
          {"servedName", "llama3"},
          {"replicas", i % 5},
          {"autoscaling",
           {{"minReplicas", 1},
            {"maxReplicas", 16},
            {"metric", "concurrency"},
            {"target", 8},
            {"behavior", {{"scaleDown", {{"stabilizationWindowSeconds", 300}}}}}}},
          {"placement", {{"nodeSelector", {{"gpu", "a100"}}}}},
          {"routing", {{"policy", "least-outstanding"}}}};
}

nlohmann::json Deployment(const std::string& name, int i) {
  return {{"apiVersion", "corral.dev/v1alpha1"},
          {"kind", "ModelDeployment"},
          {"metadata", {{"name", name}, {"namespace", "bench"}, {"labels", {{"app", "chat"}}}}},
          {"spec", Spec(i)}};
}

// Runs fn(client, iteration) on `clients` threads for `seconds`.
template <typename Fn>
Figures RunClients(int clients, double seconds, Fn fn) {
  std::vector<std::vector<double>> lat(clients);
  std::atomic<int64_t> errors{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  const auto deadline_after = std::chrono::duration<double>(seconds);
  Steady::time_point start;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      while (!go) std::this_thread::yield();
      const auto end = start + std::chrono::duration_cast<Steady::duration>(deadline_after);
      for (int i = 0; Steady::now() < end; ++i) {
        const auto t0 = Steady::now();
        if (!fn(c, i)) {
          ++errors;
          continue;
        }
        lat[c].push_back(std::chrono::duration<double, std::milli>(Steady::now() - t0).count());
      }
    });
  }
  start = Steady::now();
  go = true;
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Steady::now() - start).count();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  return Summarize(all, elapsed, errors);
}

// pgbench with one custom script; latencies from its per-transaction log.
Figures PgBench(const std::string& pgbench, const std::string& dsn, const std::string& script,
                int clients, double seconds, const fs::path& work) {
  const fs::path script_file = work / "script.sql";
  std::ofstream(script_file) << script;
  for (const auto& e : fs::directory_iterator(work)) {
    if (e.path().filename().string().rfind("pgbench_log", 0) == 0) fs::remove(e.path());
  }
  static int run = 0;
  ++run;
  common::ProcessOptions po;
  po.working_dir = work.string();
  po.timeout = std::chrono::seconds(static_cast<int>(seconds) + 120);
  auto r = common::RunProcess(
      {pgbench, "-n", "-M", "prepared", "-c", std::to_string(clients), "-j",
       std::to_string(std::min(clients, 2)), "-T", std::to_string(static_cast<int>(seconds)), "-l",
       "--log-prefix", (work / "pgbench_log").string(), "-f", script_file.string(), dsn},
      po);
  Figures f;
  if (!r.ok() || r->exit_code != 0) {
    std::fprintf(stderr, "pgbench failed: %s\n",
                 r.ok() ? r->output.substr(0, 3000).c_str() : r.status().ToString().c_str());
    f.errors = 1;
    return f;
  }
  std::vector<double> lat;
  for (const auto& e : fs::directory_iterator(work)) {
    if (e.path().filename().string().rfind("pgbench_log", 0) != 0) continue;
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) {
      // client_id transaction_no time_us script_no epoch epoch_us
      std::istringstream ls(line);
      long client, tx, us;
      if (ls >> client >> tx >> us) lat.push_back(static_cast<double>(us) / 1000.0);
    }
  }
  // Throughput as pgbench reports it (excluding connection set-up).
  double tps = 0;
  if (auto pos = r->output.find("tps = "); pos != std::string::npos) {
    tps = std::strtod(r->output.c_str() + pos + 6, nullptr);
  }
  f = Summarize(lat, seconds, 0);
  if (tps > 0) f.ops_per_s = tps;
  return f;
}

void PrintRow(const char* op, int clients, const Figures& c, const Figures& p) {
  std::printf("| %-6s | %3d | %9.0f | %7.3f | %7.3f | %9.0f | %7.3f | %7.3f | %5.2f |%s\n", op,
              clients, c.ops_per_s, c.p50_ms, c.p99_ms, p.ops_per_s, p.p50_ms, p.p99_ms,
              p.ops_per_s > 0 ? c.ops_per_s / p.ops_per_s : 0.0,
              c.errors || p.errors ? (" errors: corral " + std::to_string(c.errors) + ", pgbench " +
                                      std::to_string(p.errors))
                                         .c_str()
                                   : "");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Store benchmark against pgbench on the same PostgreSQL"};
  double seconds = 5;
  std::vector<int> client_counts = {1, 8, 32};
  std::string database_url;
  app.add_option("--seconds", seconds, "Duration of each measurement")->capture_default_str();
  app.add_option("--clients", client_counts, "Client counts")->delimiter(',');
  app.add_option("--database-url", database_url, "Use this PostgreSQL instead of a private one");
  int min_poll_gap_ms = 2;
  int pool_max = 0;
  app.add_option("--pool-max", pool_max,
                 "Store connections (default: one per client, as pgbench has)");
  app.add_option("--min-poll-gap-ms", min_poll_gap_ms, "Store watch poller batching")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  (void)common::SetupLogging("warn");

  char tmpl[] = "/tmp/corral-bench-XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const fs::path work = tmpl;
  chmod(work.c_str(), 0755);
  std::unique_ptr<store::EmbeddedPostgres> pg;
  std::string dsn = database_url;
  if (dsn.empty()) {
    store::EmbeddedPostgresOptions o;
    o.data_dir = work / "pg";
    o.database = "bench";
    pg = std::make_unique<store::EmbeddedPostgres>(o);
    if (auto s = pg->Start(); !s.ok()) {
      std::fprintf(stderr, "start PostgreSQL: %s\n", s.ToString().c_str());
      return 1;
    }
    dsn = pg->Dsn();
  }
  auto bin = store::EmbeddedPostgres::FindBinDir();
  std::string pgbench = "/usr/bin/pgbench";
  if (bin.ok() && fs::exists(*bin / "pgbench")) pgbench = (*bin / "pgbench").string();

  const int max_clients = *std::max_element(client_counts.begin(), client_counts.end());
  prometheus::Registry registry;
  common::RealClock clock;
  const auto kinds = store::KindRegistry::Default();
  store::PostgresStoreOptions so;
  so.pool.dsn = dsn;
  so.pool.min_size = pool_max > 0 ? pool_max : max_clients;
  so.pool.max_size = pool_max > 0 ? pool_max : max_clients;
  so.compaction.enabled = false;
  so.min_poll_gap = std::chrono::milliseconds(min_poll_gap_ms);
  store::PostgresStore st(so, kinds, clock, registry);
  if (auto s = st.Start(); !s.ok()) {
    std::fprintf(stderr, "store: %s\n", s.ToString().c_str());
    return 1;
  }

  // pgbench's table: the same columns and indexes as the store's log, so the
  // reference pays for the same index maintenance on insert.
  const std::string value = Deployment("pgbench-row-name", 1).dump();
  {
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    tx.exec(
        "DROP TABLE IF EXISTS bench_objects; "
        "CREATE TABLE bench_objects (id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT "
        "NOT NULL, name TEXT NOT NULL, created BOOLEAN NOT NULL, deleted BOOLEAN NOT NULL, "
        "prev_revision BIGINT NOT NULL, value TEXT NOT NULL); "
        "CREATE UNIQUE INDEX ON bench_objects (kind, namespace, name, prev_revision); "
        "CREATE INDEX ON bench_objects (kind, namespace, name, id DESC)");
    tx.exec_params(
        "INSERT INTO bench_objects (kind, namespace, name, created, deleted, prev_revision, value) "
        "SELECT 'ModelDeployment', 'bench', 'seed-' || g, true, false, 0, $1 "
        "FROM generate_series(1, 1000) AS g",
        value);
    tx.commit();
  }
  std::string quoted;  // SQL literal for the pgbench script (constant, not user data)
  for (char ch : value) {
    quoted += ch;
    if (ch == '\'') quoted += '\'';
  }
  const std::string insert_script =
      "\\set r random(1, 4000000000000000000)\n"
      "INSERT INTO bench_objects (kind, namespace, name, created, deleted, prev_revision, value) "
      "VALUES ('ModelDeployment', 'bench', 'p' || :client_id || '-' || :r, true, false, 0, '" +
      quoted + "');\n";
  const std::string update_script =
      "\\set id random(1, 1000)\n"
      "UPDATE bench_objects SET value = '" +
      quoted +
      "', prev_revision = prev_revision + 1 "
      "WHERE id = :id;\n";
  const std::string select_script =
      "\\set id random(1, 1000)\nSELECT value FROM bench_objects WHERE id = :id;\n";

  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::printf("store_bench: %.0f s per measurement, host %s, %u cores, PostgreSQL %s\n\n", seconds,
              host, std::thread::hardware_concurrency(),
              database_url.empty() ? "embedded (default settings)" : "external");
  std::printf(
      "| op     | cl. | corral/s  | p50 ms  | p99 ms  | pgbench/s | p50 ms  | p99 ms  | ratio |\n");
  std::printf(
      "|--------|-----|-----------|---------|---------|-----------|---------|---------|-------|\n");

  int round = 0;
  for (int clients : client_counts) {
    ++round;
    // Create: unique names per client.
    const Figures create = RunClients(clients, seconds, [&](int c, int i) {
      return st
          .Create(Deployment(
              "r" + std::to_string(round) + "-c" + std::to_string(c) + "-" + std::to_string(i), i))
          .ok();
    });
    const Figures pg_insert = PgBench(pgbench, dsn, insert_script, clients, seconds, work);
    PrintRow("create", clients, create, pg_insert);

    // CAS update: each client owns one object and updates it with the
    // resourceVersion it got back last time (no conflicts, all CAS).
    std::vector<nlohmann::json> owned(clients);
    for (int c = 0; c < clients; ++c) {
      auto r = st.Create(Deployment("own-" + std::to_string(round) + "-" + std::to_string(c), c));
      if (!r.ok()) return 1;
      owned[c] = r->body;
    }
    const Figures update = RunClients(clients, seconds, [&](int c, int i) {
      owned[c]["spec"]["replicas"] = i;
      auto r = st.Update(owned[c]);
      if (!r.ok()) return false;
      owned[c] = std::move(r->body);
      return true;
    });
    const Figures pg_update = PgBench(pgbench, dsn, update_script, clients, seconds, work);
    PrintRow("update", clients, update, pg_update);

    // Get: random objects among those created.
    std::vector<std::mt19937> rngs;
    for (int c = 0; c < clients; ++c) rngs.emplace_back(c + 1);
    const Figures get = RunClients(clients, seconds, [&](int c, int) {
      const int owner = static_cast<int>(rngs[c]() % clients);
      return st
          .Get({"ModelDeployment", "bench",
                "own-" + std::to_string(round) + "-" + std::to_string(owner)})
          .ok();
    });
    const Figures pg_get = PgBench(pgbench, dsn, select_script, clients, seconds, work);
    PrintRow("get", clients, get, pg_get);
  }
  std::printf(
      "\nratio = corral ops/s / pgbench tps at the same client count (target for writes: >= 0.5 at "
      "8 and 32)\n");
  st.Stop();
  if (pg) (void)pg->Stop();
  fs::remove_all(work);
  return 0;
}
