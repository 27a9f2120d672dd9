#include "common/status.h"

namespace corral::common {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kNotFound: return "not_found";
    case Code::kAlreadyExists: return "already_exists";
    case Code::kConflict: return "conflict";
    case Code::kExpired: return "expired";
    case Code::kUnavailable: return "unavailable";
    case Code::kFailedPrecondition: return "failed_precondition";
    case Code::kResourceExhausted: return "resource_exhausted";
    case Code::kDeadlineExceeded: return "deadline_exceeded";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

int HttpStatus(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kInvalidArgument: return 422;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 409;
    case Code::kConflict: return 409;
    case Code::kExpired: return 410;
    case Code::kUnavailable: return 503;
    case Code::kFailedPrecondition: return 409;
    case Code::kResourceExhausted: return 429;
    case Code::kDeadlineExceeded: return 504;
    case Code::kInternal: return 500;
  }
  return 500;
}

std::string_view KubeReason(Code code) {
  switch (code) {
    case Code::kOk: return "";
    case Code::kInvalidArgument: return "Invalid";
    case Code::kNotFound: return "NotFound";
    case Code::kAlreadyExists: return "AlreadyExists";
    case Code::kConflict: return "Conflict";
    case Code::kExpired: return "Expired";
    case Code::kUnavailable: return "ServiceUnavailable";
    case Code::kFailedPrecondition: return "Conflict";
    case Code::kResourceExhausted: return "TooManyRequests";
    case Code::kDeadlineExceeded: return "Timeout";
    case Code::kInternal: return "InternalError";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string out(CodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace corral::common
