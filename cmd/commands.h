#pragma once
// Subcommands of the `corral` binary. Each Register* adds its CLI11
// subcommand and returns a function main() runs when it was chosen.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace corral::cmd {

using Runner = std::function<int()>;

Runner RegisterServer(CLI::App& app);
Runner RegisterDb(CLI::App& app);
// `corral kubeconfig` and `corral token add`.
Runner RegisterKubeconfig(CLI::App& app);
Runner RegisterToken(CLI::App& app);
// `corral worker`.
Runner RegisterWorker(CLI::App& app);

// The state directory: --data-dir when given; as root /var/lib/corral (the
// embedded PostgreSQL runs as an unprivileged user that may not reach the
// working directory, e.g. under /root); else `flag` (./.corral).
std::string ResolveDataDir(const std::string& flag, bool given);

// Blocks SIGINT/SIGTERM in this and every later thread; WaitForShutdown
// returns when one arrives. Call BlockShutdownSignals before starting threads.
void BlockShutdownSignals();
int WaitForShutdown();

}  // namespace corral::cmd
