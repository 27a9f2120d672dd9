// The embedded PostgreSQL mechanism itself: create, reuse, clean stop, and
// recovery from what a crashed Corral leaves behind.
#include "store/embedded_postgres.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

#include "common/subprocess.h"

namespace corral::store {
namespace {

namespace fs = std::filesystem;

class EmbeddedPostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/corral-ept-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
  }
  void TearDown() override {
    EmbeddedPostgres pg(Options());
    (void)pg.Stop();
    fs::remove_all(dir_);
  }
  EmbeddedPostgresOptions Options() const {
    EmbeddedPostgresOptions o;
    o.data_dir = dir_ / "data";
    o.database = "corral";
    return o;
  }
  std::string Query(EmbeddedPostgres& pg, const std::string& sql) {
    pqxx::connection c(pg.Dsn());
    pqxx::nontransaction tx(c);
    const auto r = tx.exec(sql);
    return r.empty() ? "" : r[0][0].c_str();
  }
  fs::path dir_;
};

TEST_F(EmbeddedPostgresTest, FindsServerBinariesOffThePath) {
  auto bin = EmbeddedPostgres::FindBinDir();
  ASSERT_TRUE(bin.ok()) << bin.status().ToString();
  EXPECT_TRUE(fs::exists(*bin / "initdb"));
  EXPECT_TRUE(fs::exists(*bin / "pg_ctl"));
}

TEST_F(EmbeddedPostgresTest, CreatesStartsStopsAndReuses) {
  {
    EmbeddedPostgres pg(Options());
    ASSERT_TRUE(pg.Start().ok());
    EXPECT_TRUE(fs::exists(pg.pgdata() / "PG_VERSION"));
    EXPECT_TRUE(fs::exists(pg.data_dir() / ".s.PGSQL.5432")) << "socket lives in the data dir";
    EXPECT_EQ(Query(pg, "SHOW listen_addresses"), "");
    if (geteuid() == 0) {
      EXPECT_NE(Query(pg, "SELECT current_setting('data_directory')"), "");
      struct stat st {};
      ASSERT_EQ(stat(pg.pgdata().c_str(), &st), 0);
      EXPECT_NE(st.st_uid, 0u) << "PostgreSQL must not run as root";
    }
    Query(pg, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)");
    ASSERT_TRUE(pg.Stop().ok());
    EXPECT_FALSE(fs::exists(pg.pgdata() / "postmaster.pid"));
  }
  {
    EmbeddedPostgres pg(Options());
    ASSERT_TRUE(pg.Start().ok());
    EXPECT_EQ(Query(pg, "SELECT v FROM kept"), "42") << "the cluster was reused";
  }  // destructor stops it
  EXPECT_FALSE(fs::exists(dir_ / "data" / "pg" / "postmaster.pid"));
}

TEST_F(EmbeddedPostgresTest, StalePidFileFromACrashIsHandled) {
  {
    EmbeddedPostgres pg(Options());
    ASSERT_TRUE(pg.Start().ok());
    ASSERT_TRUE(pg.Stop().ok());
  }
  // A dead pid, then a live process that is not postgres (our own pid).
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  for (pid_t bogus : {child, getpid()}) {
    {
      std::ofstream pidfile(dir_ / "data" / "pg" / "postmaster.pid");
      pidfile << bogus << "\n" << (dir_ / "data" / "pg").string() << "\n1700000000\n5432\n";
    }
    EmbeddedPostgres pg(Options());
    const auto s = pg.Start();
    ASSERT_TRUE(s.ok()) << "pid " << bogus << ": " << s.ToString();
    EXPECT_EQ(Query(pg, "SELECT 1"), "1");
    ASSERT_TRUE(pg.Stop().ok());
  }
}

TEST_F(EmbeddedPostgresTest, AdoptsAPostmasterLeftRunningByACrashedProcess) {
  {
    EmbeddedPostgres pg(Options());
    ASSERT_TRUE(pg.Start().ok());
    pg.Release();  // as if Corral died without stopping it
  }
  EmbeddedPostgres again(Options());
  ASSERT_TRUE(again.Start().ok());
  EXPECT_EQ(Query(again, "SELECT 1"), "1");
  ASSERT_TRUE(again.Stop().ok());
}

TEST_F(EmbeddedPostgresTest, HalfFinishedInitdbIsRedone) {
  fs::create_directories(dir_ / "data" / "pg");
  std::ofstream(dir_ / "data" / "pg" / "junk") << "left by a killed initdb";
  EmbeddedPostgres pg(Options());
  ASSERT_TRUE(pg.Start().ok());
  EXPECT_EQ(Query(pg, "SELECT 1"), "1");
}

TEST_F(EmbeddedPostgresTest, RejectsSocketPathsThatAreTooLong) {
  EmbeddedPostgresOptions o = Options();
  o.data_dir = dir_ / std::string(110, 'x');
  EmbeddedPostgres pg(o);
  const auto s = pg.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), common::Code::kFailedPrecondition);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("too long for a Unix socket"));
}

TEST_F(EmbeddedPostgresTest, AsRootRefusesDirectoriesThePostgresUserCannotReach) {
  if (geteuid() != 0) GTEST_SKIP() << "only meaningful as root";
  const fs::path closed = dir_ / "closed";
  fs::create_directories(closed);
  chmod(closed.c_str(), 0700);
  EmbeddedPostgresOptions o = Options();
  o.data_dir = closed / "data";
  EmbeddedPostgres pg(o);
  const auto s = pg.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), ::testing::HasSubstr("cannot enter"));
  EXPECT_THAT(s.message(), ::testing::HasSubstr(closed.string()));
}

TEST_F(EmbeddedPostgresTest, CorralServerStartsAndStopsItsClusterCleanly) {
  const fs::path data = dir_ / "srv";
  const pid_t pid = fork();
  if (pid == 0) {
    execl(CORRAL_BIN, CORRAL_BIN, "server", "--data-dir", data.c_str(), "--listen", "127.0.0.1:0",
          "--log-level", "warn", static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait for the socket, then SIGTERM: the cluster must be stopped on exit.
  bool up = false;
  for (int i = 0; i < 300 && !up; ++i) {
    usleep(100'000);
    up = fs::exists(data / ".s.PGSQL.5432") && fs::exists(data / "pg" / "postmaster.pid");
  }
  ASSERT_TRUE(up);
  usleep(500'000);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(fs::exists(data / "pg" / "postmaster.pid")) << "cluster left running";
}

// kill -9 of `corral server` leaves its postmaster running (and its lock files
// behind); the next `corral server` on the same directory must come up, with
// the data, and stop the cluster cleanly when asked.
TEST_F(EmbeddedPostgresTest, CorralServerRecoversFromKillNine) {
  const fs::path data = dir_ / "crash";
  int run = 0;
  fs::path log;
  auto start_server = [&] {
    log = dir_ / ("server-" + std::to_string(++run) + ".log");
    const pid_t pid = fork();
    if (pid == 0) {
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) dup2(fd, STDERR_FILENO);
      execl(CORRAL_BIN, CORRAL_BIN, "server", "--data-dir", data.c_str(), "--listen", "127.0.0.1:0",
            "--log-level", "info", static_cast<char*>(nullptr));
      _exit(127);
    }
    return pid;
  };
  // Ready: this server logged that it serves (cluster up, schema migrated,
  // signals handled).
  auto wait_ready = [&](pid_t pid) {
    for (int i = 0; i < 300; ++i) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) return false;  // it exited
      std::ifstream in(log);
      std::stringstream ss;
      ss << in.rdbuf();
      if (ss.str().find("corral server ready") != std::string::npos) return true;
      usleep(100'000);
    }
    return false;
  };
  const pid_t first = start_server();
  ASSERT_TRUE(wait_ready(first));
  {
    pqxx::connection c("host=" + data.string() + " user=corral dbname=corral");
    pqxx::work tx(c);
    tx.exec0("CREATE TABLE survivor (v int); INSERT INTO survivor VALUES (7)");
    tx.commit();
  }
  kill(first, SIGKILL);
  waitpid(first, nullptr, 0);
  ASSERT_TRUE(fs::exists(data / "pg" / "postmaster.pid")) << "the postmaster outlives a kill -9";

  const pid_t second = start_server();
  ASSERT_TRUE(wait_ready(second)) << "corral server did not come back after kill -9";
  {
    pqxx::connection c("host=" + data.string() + " user=corral dbname=corral");
    pqxx::nontransaction tx(c);
    EXPECT_EQ(tx.exec("SELECT v FROM survivor")[0][0].as<int>(), 7);
  }
  kill(second, SIGTERM);
  int status = 0;
  waitpid(second, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_FALSE(fs::exists(data / "pg" / "postmaster.pid")) << "cluster left running";
}

}  // namespace
}  // namespace corral::store
