#include "tests/support/test_db.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <mutex>
#include <pqxx/pqxx>

namespace corral::testing {

namespace {

std::mutex g_mu;
std::vector<std::string> g_databases;  // guarded by g_mu; dropped at exit

void DropDatabases() {
  std::lock_guard lock(g_mu);
  for (const auto& db : g_databases) {
    try {
      pqxx::connection c(DsnFor("postgres"));
      pqxx::nontransaction tx(c);
      tx.exec0("DROP DATABASE IF EXISTS " + tx.quote_name(db) + " WITH (FORCE)");
    } catch (const std::exception& e) {
      fprintf(stderr, "warning: dropping test database %s: %s\n", db.c_str(), e.what());
    }
  }
  g_databases.clear();
}

}  // namespace

std::string ClusterDir() {
  if (const char* env = getenv("CORRAL_TEST_PGDIR"); env && *env) return env;
  return CORRAL_TEST_PGDIR;
}

store::EmbeddedPostgres& Cluster() {
  static store::EmbeddedPostgres* pg = [] {
    store::EmbeddedPostgresOptions o;
    o.data_dir = ClusterDir();
    auto* p = new store::EmbeddedPostgres(o);
    const auto s = p->Start();  // adopts the fixture's running cluster
    if (!s.ok()) {
      fprintf(stderr,
              "test cluster at %s is not usable (%s); run the suite through ctest so the "
              "testdb fixture starts it\n",
              ClusterDir().c_str(), s.ToString().c_str());
      std::abort();
    }
    p->Release();  // the fixture owns it
    return p;
  }();
  return *pg;
}

std::string DsnFor(const std::string& database) { return Cluster().Dsn(database); }

std::string CreateDatabase(const std::string& prefix) {
  static std::atomic<int> seq{0};
  std::string name = prefix + "_" + std::to_string(getpid()) + "_" + std::to_string(seq++);
  for (auto& c : name) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
    c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  }
  pqxx::connection c(DsnFor("postgres"));
  pqxx::nontransaction tx(c);
  tx.exec0("CREATE DATABASE " + tx.quote_name(name));
  {
    std::lock_guard lock(g_mu);
    if (g_databases.empty()) std::atexit(DropDatabases);
    g_databases.push_back(name);
  }
  return DsnFor(name);
}

const std::string& Dsn() {
  static const std::string dsn = [] {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_suite();
    return CreateDatabase(std::string("t_") + (info ? info->name() : "suite"));
  }();
  return dsn;
}

std::unique_ptr<StoreHandle> StartStore(
    const std::function<void(store::PostgresStoreOptions&)>& tweak, const std::string& dsn) {
  auto h = std::make_unique<StoreHandle>();
  store::PostgresStoreOptions o;
  o.pool.dsn = dsn.empty() ? Dsn() : dsn;
  o.pool.application_name = "corral-test";
  o.pool.min_size = 1;
  o.pool.max_size = 8;
  o.poll_interval = std::chrono::milliseconds(100);
  o.gap_timeout = std::chrono::milliseconds(200);
  o.compaction.enabled = false;
  if (tweak) tweak(o);
  h->store = std::make_unique<store::PostgresStore>(o, h->kinds, h->clock, h->registry);
  const auto s = h->store->Start();
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return nullptr;
  return h;
}

std::string QueryScalar(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  const auto r = tx.exec(sql);
  if (r.empty() || r[0][0].is_null()) return "";
  return r[0][0].c_str();
}

nlohmann::json MakeObject(const std::string& kind, const std::string& ns, const std::string& name,
                          nlohmann::json spec) {
  const auto kinds = store::KindRegistry::Default();
  const auto* info = kinds.Find(kind);
  nlohmann::json o = {{"apiVersion", info ? info->ApiVersion() : "corral.dev/v1alpha1"},
                      {"kind", kind},
                      {"metadata", {{"name", name}}},
                      {"spec", std::move(spec)}};
  if (!ns.empty()) o["metadata"]["namespace"] = ns;
  return o;
}

}  // namespace corral::testing
