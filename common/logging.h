#pragma once
// Process-wide logger setup (the one global the house style allows).
// Lines are "time level message key=value ...": one line per event, with the
// object key where there is one.
#include <string_view>

#include "common/status.h"

namespace corral::common {

// level: trace|debug|info|warn|error|off. InvalidArgument on a bad value.
Status SetupLogging(std::string_view level);

}  // namespace corral::common
