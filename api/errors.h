#pragma once
// Kubernetes `Status` objects for errors, with the reasons and messages
// kubectl and client libraries expect (k8s.io/apimachinery/pkg/api/errors).
// Pure functions; thread-safe.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/request.h"
#include "common/status.h"

namespace corral::api {

// What an error is about: {group, plural} name the resource ("models",
// "corral.dev"), kind the Kind ("Model"), name the object (may be empty).
struct ErrorTarget {
  std::string group;
  std::string plural;
  std::string kind;
  std::string name;
  // "models.corral.dev" (or "events" for the core group).
  std::string Resource() const;
};

// `"text"` as JSON quotes it; bytes that are not UTF-8 become U+FFFD.
std::string Quote(std::string_view s);

// {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",...}
nlohmann::json StatusObject(int code, std::string_view reason, std::string_view message,
                            const nlohmann::json& details = nullptr);
Response StatusResponse(int code, std::string_view reason, std::string_view message,
                        const nlohmann::json& details = nullptr);

// Maps a common::Status to the Kubernetes error for `target`, rewording
// the message the way Kubernetes does for NotFound, AlreadyExists, Conflict
// and Invalid (causes become details.causes[]).
Response ErrorResponse(const common::Status& status, const ErrorTarget& target);

Response BadRequest(std::string_view message);
Response NotFoundPath(std::string_view path);
Response MethodNotAllowed(std::string_view method, std::string_view path);
Response UnsupportedMediaType(std::string_view content_type);
Response TooLarge(std::string_view message);
Response Unauthorized();
Response Forbidden(std::string_view message, const ErrorTarget& target);
Response TooManyRequests(std::string_view message, int retry_after_seconds);

// {"kind":"Status",...,"status":"Success"} with details, as a delete of a
// collection or some subresources answer.
nlohmann::json SuccessStatus(const ErrorTarget& target, const std::string& uid);

}  // namespace corral::api
