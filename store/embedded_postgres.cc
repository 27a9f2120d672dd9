#include "store/embedded_postgres.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

#include "common/subprocess.h"

namespace corral::store {

namespace fs = std::filesystem;
using common::Status;

namespace {

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Does `pid` run a postgres whose working directory is `pgdata`? (The
// postmaster chdirs into its data directory.) When its working directory cannot
// be read (another user's process without CAP_SYS_PTRACE, as in many
// containers), a live postgres process is taken to be ours: removing the lock
// files of a running server would cut it off from its clients.
bool IsOurPostmaster(pid_t pid, const fs::path& pgdata) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno != EPERM) return false;  // EPERM: alive, another user's
  const std::string cmdline = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  if (cmdline.find("postgres") == std::string::npos) return false;
  std::error_code ec;
  const fs::path cwd = fs::read_symlink("/proc/" + std::to_string(pid) + "/cwd", ec);
  if (ec) return true;
  return fs::equivalent(cwd, pgdata, ec);
}

}  // namespace

EmbeddedPostgres::EmbeddedPostgres(EmbeddedPostgresOptions options)
    : options_(std::move(options)) {}

EmbeddedPostgres::~EmbeddedPostgres() {
  if (owned_) {
    const Status s = Stop();
    if (!s.ok()) spdlog::warn("stopping embedded postgres: {}", s.ToString());
  }
}

common::Result<fs::path> EmbeddedPostgres::FindBinDir() {
  if (const char* env = getenv("CORRAL_PG_BINDIR"); env && *env) {
    if (fs::exists(fs::path(env) / "initdb")) return fs::path(env);
    return common::FailedPrecondition(std::string("CORRAL_PG_BINDIR=") + env + " has no initdb");
  }
  for (const char* pg_config : {"/usr/bin/pg_config", "/usr/local/bin/pg_config"}) {
    if (!fs::exists(pg_config)) continue;
    auto r = common::RunProcess({pg_config, "--bindir"});
    if (r.ok() && r->exit_code == 0) {
      std::string dir = r->output;
      while (!dir.empty() && (dir.back() == '\n' || dir.back() == ' ')) dir.pop_back();
      if (fs::exists(fs::path(dir) / "initdb") && fs::exists(fs::path(dir) / "pg_ctl"))
        return fs::path(dir);
    }
  }
  // Debian: /usr/lib/postgresql/<major>/bin. Take the newest major that has a server.
  fs::path best;
  int best_major = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string name = entry.path().filename().string();
    char* end = nullptr;
    const long major = strtol(name.c_str(), &end, 10);
    if (end == name.c_str() || *end != '\0') continue;
    if (!fs::exists(entry.path() / "bin" / "initdb") ||
        !fs::exists(entry.path() / "bin" / "pg_ctl"))
      continue;
    if (major > best_major) {
      best_major = static_cast<int>(major);
      best = entry.path() / "bin";
    }
  }
  if (best_major < 0) {
    return common::FailedPrecondition(
        "no PostgreSQL server found (looked for initdb via CORRAL_PG_BINDIR, pg_config and "
        "/usr/lib/postgresql/*/bin); install it with: apt-get install postgresql");
  }
  return best;
}

Status EmbeddedPostgres::PrepareDirectory() {
  std::error_code ec;
  fs::create_directories(options_.data_dir, ec);
  if (ec) {
    return common::FailedPrecondition("--data-dir " + options_.data_dir.string() +
                                      ": cannot create: " + ec.message());
  }
  data_dir_ = fs::canonical(options_.data_dir, ec);
  if (ec) return common::FailedPrecondition("--data-dir: " + ec.message());
  // The socket path must fit sockaddr_un.sun_path.
  const std::string socket_path =
      (data_dir_ / (".s.PGSQL." + std::to_string(options_.port))).string();
  if (socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return common::FailedPrecondition(
        "--data-dir " + data_dir_.string() + ": path too long for a Unix socket (" +
        std::to_string(socket_path.size()) + " bytes, limit 107); choose a shorter directory");
  }

  as_other_user_ = geteuid() == 0;
  if (as_other_user_) {
    std::string user = options_.run_as_user;
    auto found = common::LookupUser(user.empty() ? "postgres" : user);
    if (!found.ok() && user.empty()) found = common::LookupUser("nobody");
    if (!found.ok()) {
      return common::FailedPrecondition("running as root, PostgreSQL needs an unprivileged user: " +
                                        found.status().message());
    }
    uid_ = found->uid;
    gid_ = found->gid;
    user_ = found->user;
    home_ = found->home;
    if (chown(data_dir_.c_str(), uid_, gid_) != 0) {
      return common::FailedPrecondition("--data-dir " + data_dir_.string() + ": chown to " + user_ +
                                        ": " + strerror(errno));
    }
    // Every parent must be searchable by that user, or initdb cannot reach the directory.
    for (fs::path p = data_dir_.parent_path(); !p.empty(); p = p.parent_path()) {
      struct stat st {};
      if (stat(p.c_str(), &st) == 0) {
        const bool ok = (st.st_mode & S_IXOTH) || (st.st_uid == uid_ && (st.st_mode & S_IXUSR)) ||
                        (st.st_gid == gid_ && (st.st_mode & S_IXGRP));
        if (!ok) {
          return common::FailedPrecondition(
              "--data-dir " + data_dir_.string() + ": PostgreSQL runs as user \"" + user_ +
              "\" (it refuses to run as root), which cannot enter " + p.string() +
              "; choose a data directory outside it, e.g. --data-dir /var/lib/corral");
        }
      }
      if (p == p.root_path()) break;
    }
  }
  chmod(data_dir_.c_str(), 0700);
  return Status::Ok();
}

Status EmbeddedPostgres::InitDb() {
  if (fs::exists(pgdata() / "PG_VERSION")) return Status::Ok();
  if (fs::exists(pgdata())) {
    // A half-finished initdb (killed midway) leaves a directory initdb will not reuse.
    std::error_code ec;
    fs::remove_all(pgdata(), ec);
  }
  common::ProcessOptions opts;
  if (as_other_user_) opts.run_as = common::RunAs{uid_, gid_, user_, home_};
  opts.working_dir = data_dir_.string();
  auto r = common::RunProcess(
      {(bin_dir_ / "initdb").string(), "-D", pgdata().string(), "-U", "corral", "-E", "UTF8",
       "--locale=C", "--auth-local=trust", "--auth-host=reject", "--no-instructions"},
      opts);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return common::Unavailable("initdb failed (exit " + std::to_string(r->exit_code) +
                               "): " + r->output);
  }
  std::ofstream conf(pgdata() / "postgresql.conf", std::ios::app);
  conf << "\n# Corral writes its settings to corral.conf on every start.\n"
          "include_if_exists = 'corral.conf'\n";
  if (!conf) return common::Unavailable("cannot append to postgresql.conf");
  spdlog::info("embedded postgres: created cluster pgdata={}", pgdata().string());
  return Status::Ok();
}

Status EmbeddedPostgres::WriteConfig() {
  const fs::path path = pgdata() / "corral.conf";
  {
    std::ofstream conf(path, std::ios::trunc);
    conf << "# Written by corral at every start; edits are overwritten.\n"
         << "listen_addresses = ''\n"
         << "unix_socket_directories = '" << data_dir_.string() << "'\n"
         << "port = " << options_.port << "\n"
         << "max_connections = 300\n"
         << "logging_collector = off\n";
    for (const auto& line : options_.settings) conf << line << "\n";
    if (!conf) return common::Unavailable("cannot write " + path.string());
  }
  if (as_other_user_ && chown(path.c_str(), uid_, gid_) != 0) {
    return common::Unavailable("chown " + path.string() + ": " + strerror(errno));
  }
  return Status::Ok();
}

// postmaster.pid and the socket lock outlive a crash (or a SIGKILL of the whole
// process tree). If the recorded postmaster still runs this data directory we
// adopt it; otherwise the lock files are stale and removed so start succeeds.
Status EmbeddedPostgres::CleanStaleLock(bool& running) {
  running = false;
  const fs::path pid_file = pgdata() / "postmaster.pid";
  if (!fs::exists(pid_file)) return Status::Ok();
  std::ifstream in(pid_file);
  long pid = 0;
  in >> pid;
  if (IsOurPostmaster(static_cast<pid_t>(pid), pgdata())) {
    running = true;
    spdlog::info("embedded postgres: adopting running postmaster pid={}", pid);
    return Status::Ok();
  }
  spdlog::warn("embedded postgres: removing stale postmaster.pid (pid {} is not running it)", pid);
  std::error_code ec;
  fs::remove(pid_file, ec);
  const fs::path sock_lock = data_dir_ / (".s.PGSQL." + std::to_string(options_.port) + ".lock");
  fs::remove(sock_lock, ec);
  fs::remove(data_dir_ / (".s.PGSQL." + std::to_string(options_.port)), ec);
  return Status::Ok();
}

Status EmbeddedPostgres::PgCtl(const std::vector<std::string>& args, std::string* output) {
  std::vector<std::string> argv = {(bin_dir_ / "pg_ctl").string(), "-D", pgdata().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  common::ProcessOptions opts;
  if (as_other_user_) opts.run_as = common::RunAs{uid_, gid_, user_, home_};
  opts.working_dir = data_dir_.string();
  opts.timeout = std::chrono::seconds(130);
  auto r = common::RunProcess(argv, opts);
  if (!r.ok()) return r.status();
  if (output) *output = r->output;
  if (r->exit_code != 0) {
    return common::Unavailable("pg_ctl " + args.front() + " failed (exit " +
                               std::to_string(r->exit_code) + "): " + r->output +
                               "\n--- postgresql.log (tail) ---\n" + LogTail());
  }
  return Status::Ok();
}

std::string EmbeddedPostgres::LogTail() const {
  const std::string log = ReadFile(log_file());
  return log.size() > 2000 ? log.substr(log.size() - 2000) : log;
}

Status EmbeddedPostgres::EnsureDatabase() {
  // An adopted postmaster may still be starting or recovering after a crash.
  for (int attempt = 0;; ++attempt) {
    try {
      pqxx::connection probe(Dsn("postgres"));
      break;
    } catch (const std::exception& e) {
      const std::string what = e.what();
      const bool starting = what.find("starting up") != std::string::npos ||
                            what.find("shutting down") != std::string::npos ||
                            what.find("recovery") != std::string::npos;
      if (!starting || attempt >= 300) break;  // the real attempt below reports it
      usleep(100'000);
    }
  }
  try {
    pqxx::connection conn(Dsn("postgres"));
    pqxx::nontransaction tx(conn);
    const auto r =
        tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", options_.database);
    if (r.empty()) {
      // CREATE DATABASE takes no parameters; the name comes from configuration and is quoted.
      tx.exec0("CREATE DATABASE " + tx.quote_name(options_.database));
      spdlog::info("embedded postgres: created database {}", options_.database);
    }
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == "42P04") return Status::Ok();  // created concurrently
    return common::Unavailable("creating database " + options_.database + ": " + e.what());
  } catch (const std::exception& e) {
    return common::Unavailable("connecting to embedded postgres: " + std::string(e.what()));
  }
  return Status::Ok();
}

Status EmbeddedPostgres::Resolve() {
  if (!bin_dir_.empty()) return Status::Ok();
  auto bin = FindBinDir();
  if (!bin.ok()) return bin.status();
  CORRAL_RETURN_IF_ERROR(PrepareDirectory());
  bin_dir_ = *bin;
  return Status::Ok();
}

Status EmbeddedPostgres::Start() {
  CORRAL_RETURN_IF_ERROR(Resolve());
  CORRAL_RETURN_IF_ERROR(InitDb());
  CORRAL_RETURN_IF_ERROR(WriteConfig());
  bool running = false;
  CORRAL_RETURN_IF_ERROR(CleanStaleLock(running));
  if (!running) {
    CORRAL_RETURN_IF_ERROR(PgCtl({"start", "-w", "-t", "120", "-l", log_file().string(), "-s"}));
    spdlog::info("embedded postgres: started data_dir={}", data_dir_.string());
  }
  owned_ = true;
  return EnsureDatabase();
}

Status EmbeddedPostgres::Stop() {
  owned_ = false;
  CORRAL_RETURN_IF_ERROR(Resolve());
  if (!fs::exists(pgdata() / "postmaster.pid")) return Status::Ok();
  const Status s = PgCtl({"stop", "-m", "fast", "-w", "-t", "60", "-s"});
  if (s.ok()) spdlog::info("embedded postgres: stopped data_dir={}", data_dir_.string());
  return s;
}

Status EmbeddedPostgres::Restart() {
  return PgCtl({"restart", "-m", "fast", "-w", "-t", "120", "-l", log_file().string(), "-s"});
}

std::string EmbeddedPostgres::Dsn(const std::string& database) const {
  // conninfo values are single-quoted so directories with spaces work.
  auto quote = [](const std::string& v) {
    std::string out = "'";
    for (char c : v) {
      if (c == '\\' || c == '\'') out += '\\';
      out += c;
    }
    return out + "'";
  };
  return "host=" + quote(data_dir_.string()) + " port=" + std::to_string(options_.port) +
         " user=corral dbname=" + quote(database);
}

}  // namespace corral::store
