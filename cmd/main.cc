// corral: one binary, subcommands (like k3s).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "cmd/commands.h"

namespace corral::cmd {

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

std::string ResolveDataDir(const std::string& flag, bool given) {
  return (!given && geteuid() == 0) ? "/var/lib/corral" : flag;
}

int WaitForShutdown() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace corral::cmd

int main(int argc, char** argv) {
  CLI::App app{"corral: control plane and autoscaler for LLM inference fleets"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(CORRAL_VERSION));

  corral::cmd::Runner server = corral::cmd::RegisterServer(app);
  corral::cmd::Runner db = corral::cmd::RegisterDb(app);
  corral::cmd::Runner kubeconfig = corral::cmd::RegisterKubeconfig(app);
  corral::cmd::Runner token = corral::cmd::RegisterToken(app);
  corral::cmd::Runner worker = corral::cmd::RegisterWorker(app);
  CLI11_PARSE(app, argc, argv);
  if (app.got_subcommand("server")) return server();
  if (app.got_subcommand("db")) return db();
  if (app.got_subcommand("kubeconfig")) return kubeconfig();
  if (app.got_subcommand("token")) return token();
  if (app.got_subcommand("worker")) return worker();
  std::cerr << app.help() << std::endl;
  return 2;
}
