#include "store/schema.h"

#include <spdlog/spdlog.h>

#include <pqxx/transaction>
#include <string>
#include <vector>

namespace corral::store {

namespace {

// Key of the advisory lock that serializes migrations ('corral' 'mig').
constexpr int64_t kMigrationLockKey = 0x636f7272616c6d69;

struct Migration {
  int version;
  const char* description;
  std::vector<const char*> statements;
};

// Append-only: never edit a released migration, add a new one.
const std::vector<Migration>& Migrations() {
  static const std::vector<Migration> migrations = {
      {1,
       "revision log, metadata row",
       {
           // One row per write. id is the global revision. The newest row per
           // (kind, namespace, name) is the current state; deleted marks a tombstone.
           // Gap fillers (see watch) have kind ''.
           R"(CREATE TABLE corral_objects (
                id BIGSERIAL PRIMARY KEY,
                kind TEXT NOT NULL,
                namespace TEXT NOT NULL,
                name TEXT NOT NULL,
                created BOOLEAN NOT NULL,
                deleted BOOLEAN NOT NULL,
                prev_revision BIGINT NOT NULL,
                value TEXT NOT NULL
              ))",
           // Compare-and-swap: a revision has at most one successor per key.
           R"(CREATE UNIQUE INDEX corral_objects_key_prev
                ON corral_objects (kind, namespace, name, prev_revision))",
           // Newest row per key, and ordered scans for list.
           R"(CREATE INDEX corral_objects_key_id
                ON corral_objects (kind, namespace, name, id DESC))",
           R"(CREATE TABLE corral_meta (
                id INT PRIMARY KEY CHECK (id = 1),
                compact_revision BIGINT NOT NULL
              ))",
           R"(INSERT INTO corral_meta (id, compact_revision) VALUES (1, 0))",
       }},
  };
  return migrations;
}

}  // namespace

int LatestSchemaVersion() { return Migrations().back().version; }

common::Status Migrate(pqxx::connection& conn) {
  try {
    pqxx::work tx(conn);
    tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey);
    tx.exec(R"(CREATE TABLE IF NOT EXISTS corral_schema_migrations (
                 version INT PRIMARY KEY,
                 description TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()))");
    const auto r = tx.exec("SELECT COALESCE(max(version), 0) FROM corral_schema_migrations");
    const int current = r[0][0].as<int>();
    if (current > LatestSchemaVersion()) {
      return common::FailedPrecondition(
          "database schema version " + std::to_string(current) + " is newer than this corral (" +
          std::to_string(LatestSchemaVersion()) + "); upgrade corral");
    }
    for (const auto& m : Migrations()) {
      if (m.version <= current) continue;
      for (const char* sql : m.statements) tx.exec(sql);
      tx.exec_params("INSERT INTO corral_schema_migrations (version, description) VALUES ($1, $2)",
                     m.version, std::string(m.description));
      spdlog::info("store: applied schema migration version={} ({})", m.version, m.description);
    }
    tx.commit();
  } catch (const pqxx::broken_connection& e) {
    return common::Unavailable(std::string("migrating store schema: ") + e.what());
  } catch (const std::exception& e) {
    return common::Unavailable(std::string("migrating store schema: ") + e.what());
  }
  return common::Status::Ok();
}

}  // namespace corral::store
