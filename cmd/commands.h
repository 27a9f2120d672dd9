#pragma once
// Subcommands of the `corral` binary. Each Register* adds its CLI11
// subcommand and returns a function main() runs when it was chosen.
#include <CLI/CLI.hpp>
#include <functional>

namespace corral::cmd {

using Runner = std::function<int()>;

Runner RegisterServer(CLI::App& app);
Runner RegisterDb(CLI::App& app);

// Blocks SIGINT/SIGTERM in this and every later thread; WaitForShutdown
// returns when one arrives. Call BlockShutdownSignals before starting threads.
void BlockShutdownSignals();
int WaitForShutdown();

}  // namespace corral::cmd
