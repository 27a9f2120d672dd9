// `corral db start|stop|dsn`: manage the embedded PostgreSQL cluster on its
// own, e.g. to inspect it with psql or to give a test run one shared cluster.
#include <cstdio>

#include "cmd/commands.h"
#include "common/logging.h"
#include "store/embedded_postgres.h"

namespace corral::cmd {

namespace {

struct DbFlags {
  std::string data_dir = ".corral";
  std::string pg_user;
  std::vector<std::string> settings;
};

}  // namespace

Runner RegisterDb(CLI::App& app) {
  auto flags = std::make_shared<DbFlags>();
  auto action = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand("db", "Manage the embedded PostgreSQL cluster");
  sub->require_subcommand(1);
  for (const char* name : {"start", "stop", "dsn"}) {
    CLI::App* s = sub->add_subcommand(
        name, std::string(name) == "start"  ? "Create if needed and start; leave it running"
              : std::string(name) == "stop" ? "Stop it (fast shutdown)"
                                            : "Print the libpq connection string");
    s->add_option("--data-dir", flags->data_dir, "Cluster directory")->capture_default_str();
    s->add_option("--pg-user", flags->pg_user, "Unprivileged user when run as root");
    s->add_option("--set", flags->settings, "Extra postgresql.conf line, e.g. 'fsync = off'");
    s->callback([action, name] { *action = name; });
  }
  return [flags, action] {
    (void)common::SetupLogging("warn");
    store::EmbeddedPostgresOptions o;
    o.data_dir = flags->data_dir;
    o.run_as_user = flags->pg_user;
    o.settings = flags->settings;
    store::EmbeddedPostgres pg(o);
    common::Status s = *action == "stop" ? pg.Stop() : pg.Start();
    if (!s.ok()) {
      std::fprintf(stderr, "corral db %s: %s\n", action->c_str(), s.ToString().c_str());
      return 1;
    }
    if (*action == "stop") return 0;
    std::printf("%s\n", pg.Dsn().c_str());
    pg.Release();  // leave it running
    return 0;
  };
}

}  // namespace corral::cmd
