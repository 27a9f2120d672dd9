#pragma once
// Runs a child program and waits for it, optionally as another user. Used to
// drive PostgreSQL's initdb/pg_ctl and tools such as pgbench.
//
// Thread-safe: each call forks its own child; only async-signal-safe calls run
// between fork and exec.
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace corral::common {

struct RunAs {
  uid_t uid;
  gid_t gid;
  std::string user;  // for initgroups and HOME/USER in the child's environment
  std::string home;
};

// Looks up a local user ("postgres"). NotFound if there is none.
Result<RunAs> LookupUser(const std::string& name);

struct ProcessOptions {
  std::optional<RunAs> run_as;
  std::string working_dir;             // empty: inherit
  std::vector<std::string> extra_env;  // "KEY=VALUE", added to a minimal env
  std::chrono::milliseconds timeout{120'000};
};

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal or the timeout
  std::string output;  // stdout and stderr interleaved
};

// Unavailable if the program cannot be started; DeadlineExceeded past the
// timeout (the child is killed). A non-zero exit is not an error here: callers
// read exit_code.
Result<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                 const ProcessOptions& options = {});

}  // namespace corral::common
