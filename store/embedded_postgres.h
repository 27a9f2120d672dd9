#pragma once
// A private PostgreSQL cluster owned by one Corral process (or one test run):
// initdb into a data directory, start it listening only on a Unix socket in that
// directory, stop it cleanly, and reuse it on the next start.
//
// As root, PostgreSQL runs as an unprivileged user ("postgres" when it exists,
// else "nobody"): PostgreSQL refuses to run as root. A crashed Corral leaves at
// worst a stale postmaster.pid or a still-running postmaster; Start() removes the
// first and adopts the second.
//
// Not thread-safe: one owner calls Start/Stop/Restart.
#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"

namespace corral::store {

struct EmbeddedPostgresOptions {
  std::filesystem::path data_dir = ".corral";
  // Unprivileged user to run PostgreSQL as when Corral runs as root. Empty: "postgres", else
  // "nobody".
  std::string run_as_user;
  int port = 5432;  // names the socket file only; no TCP listener
  std::string database = "corral";
  // Extra postgresql.conf lines ("fsync = off"), rewritten on every start.
  std::vector<std::string> settings;
};

class EmbeddedPostgres {
 public:
  explicit EmbeddedPostgres(EmbeddedPostgresOptions options);
  // Stops the cluster if this object started or adopted it.
  ~EmbeddedPostgres();
  EmbeddedPostgres(const EmbeddedPostgres&) = delete;
  EmbeddedPostgres& operator=(const EmbeddedPostgres&) = delete;

  // Creates the cluster if needed, starts (or adopts) it, creates the database.
  // FailedPrecondition with an actionable message when the directory is unusable;
  // Unavailable when PostgreSQL fails to start (its log's tail is in the message).
  common::Status Start();
  // Fast shutdown (pg_ctl stop -m fast) of the cluster in data_dir, whether or
  // not this object started it. Idempotent.
  common::Status Stop();
  // Leave the cluster running when this object is destroyed.
  void Release() { owned_ = false; }
  // pg_ctl restart -m fast: every connection drops. For outage tests.
  common::Status Restart();

  // libpq connection string for a database in this cluster.
  std::string Dsn(const std::string& database) const;
  std::string Dsn() const { return Dsn(options_.database); }
  const std::filesystem::path& data_dir() const { return data_dir_; }
  std::filesystem::path pgdata() const { return data_dir_ / "pg"; }
  std::filesystem::path log_file() const { return data_dir_ / "postgresql.log"; }

  // Where initdb/pg_ctl live: $CORRAL_PG_BINDIR, else `pg_config --bindir`, else
  // the newest /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH).
  static common::Result<std::filesystem::path> FindBinDir();

 private:
  common::Status Resolve();  // bin dir + data dir checks, once
  common::Status PrepareDirectory();
  common::Status InitDb();
  common::Status WriteConfig();
  common::Status CleanStaleLock(bool& running);
  common::Status PgCtl(const std::vector<std::string>& args, std::string* output = nullptr);
  common::Status EnsureDatabase();
  std::string LogTail() const;

  EmbeddedPostgresOptions options_;
  std::filesystem::path data_dir_;  // absolute
  std::filesystem::path bin_dir_;
  bool as_other_user_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  std::string user_;
  std::string home_;
  bool owned_ = false;  // started or adopted by us
};

}  // namespace corral::store
