#include "common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <string>

namespace corral::common {

Status SetupLogging(std::string_view level) {
  const auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    return InvalidArgument("--log-level: unknown level \"" + std::string(level) +
                           "\" (want trace, debug, info, warn, error or off)");
  }
  auto logger = spdlog::get("corral");
  if (!logger) logger = spdlog::stderr_color_mt("corral");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%L%$ %v", spdlog::pattern_time_type::utc);
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
  return Status::Ok();
}

}  // namespace corral::common
