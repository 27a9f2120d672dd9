#pragma once
// Test support for the integration tier: the run's PostgreSQL cluster (started
// by the `testdb` CTest fixture) and a fresh database for each test process.
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/subprocess.h"
#include "store/embedded_postgres.h"
#include "store/kinds.h"
#include "store/postgres_store.h"

namespace corral::testing {

// The cluster directory of this test run.
std::string ClusterDir();
// A handle on the running cluster (for Restart in outage tests). Never stops it.
store::EmbeddedPostgres& Cluster();
// DSN of this process's fresh database (created on first use, dropped at exit).
const std::string& Dsn();
// DSN of another database in the cluster ("postgres" for admin queries).
std::string DsnFor(const std::string& database);
// Creates one more empty database and returns its DSN.
std::string CreateDatabase(const std::string& prefix);

// A started PostgresStore on Dsn() with test-friendly defaults (compaction off,
// short intervals); `tweak` may change options before start.
struct StoreHandle {
  prometheus::Registry registry;
  common::RealClock clock;
  store::KindRegistry kinds = store::KindRegistry::Default();
  std::unique_ptr<store::PostgresStore> store;
};
std::unique_ptr<StoreHandle> StartStore(
    const std::function<void(store::PostgresStoreOptions&)>& tweak = {},
    const std::string& dsn = "");

// Runs SQL on a fresh connection and returns the first column of the first row.
std::string QueryScalar(const std::string& dsn, const std::string& sql);

// Options for a helper process that may run for minutes.
inline common::ProcessOptions LongRun() {
  common::ProcessOptions o;
  o.timeout = std::chrono::minutes(5);
  return o;
}

// A minimal valid object of a kind.
nlohmann::json MakeObject(const std::string& kind, const std::string& ns, const std::string& name,
                          nlohmann::json spec = nlohmann::json::object());

}  // namespace corral::testing
