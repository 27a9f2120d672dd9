#include "api/errors.h"

namespace corral::api {

using nlohmann::json;

std::string Quote(std::string_view s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ErrorTarget::Resource() const { return group.empty() ? plural : plural + "." + group; }

json StatusObject(int code, std::string_view reason, std::string_view message,
                  const json& details) {
  json s = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
            {"status", "Failure"}, {"message", message}, {"reason", reason},
            {"code", code}};
  if (!details.is_null()) s["details"] = details;
  return s;
}

Response StatusResponse(int code, std::string_view reason, std::string_view message,
                        const json& details) {
  Response r;
  r.status = code;
  // Messages echo user input, which may not be UTF-8: never throw on it.
  r.body = StatusObject(code, reason, message, details)
               .dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

namespace {

json Details(const ErrorTarget& t) {
  json d = json::object();
  if (!t.name.empty()) d["name"] = t.name;
  d["group"] = t.group;
  d["kind"] = t.plural;
  return d;
}

}  // namespace

Response ErrorResponse(const common::Status& status, const ErrorTarget& t) {
  using common::Code;
  const int code = common::HttpStatus(status.code());
  const std::string reason(common::KubeReason(status.code()));
  json details = Details(t);
  std::string message = status.message();
  switch (status.code()) {
    case Code::kNotFound:
      if (!t.name.empty()) message = t.Resource() + " " + Quote(t.name) + " not found";
      break;
    case Code::kAlreadyExists:
      if (!t.name.empty()) message = t.Resource() + " " + Quote(t.name) + " already exists";
      break;
    case Code::kConflict:
    case Code::kFailedPrecondition:
      if (status.causes().empty() && !t.name.empty()) {
        message = "Operation cannot be fulfilled on " + t.Resource() + " " + Quote(t.name) + ": " +
                  status.message();
      }
      break;
    case Code::kInvalidArgument: {
      const std::string head =
          t.kind + (t.group.empty() ? "" : "." + t.group) + " " + Quote(t.name) + " is invalid: ";
      if (!status.causes().empty()) {
        std::string list;
        for (const auto& c : status.causes()) {
          if (!list.empty()) list += ", ";
          list += c.field.empty() ? c.message : c.field + ": " + c.message;
        }
        message = head + (status.causes().size() > 1 ? "[" + list + "]" : list);
      } else {
        message = head + status.message();
      }
      details["kind"] = t.kind;
      break;
    }
    default: break;
  }
  if (!status.causes().empty()) {
    json causes = json::array();
    for (const auto& c : status.causes()) {
      std::string cause_reason = c.reason;
      if (cause_reason.empty()) {
        cause_reason = status.code() == Code::kInvalidArgument ? "FieldValueInvalid" : reason;
      }
      json cause = {{"reason", cause_reason}, {"message", c.message}};
      if (!c.field.empty()) cause["field"] = c.field;
      causes.push_back(std::move(cause));
    }
    details["causes"] = std::move(causes);
  }
  Response r = StatusResponse(code, reason, message, details);
  if (status.code() == Code::kUnavailable || status.code() == Code::kResourceExhausted) {
    r.headers.emplace_back("Retry-After", "1");
  }
  return r;
}

Response BadRequest(std::string_view message) { return StatusResponse(400, "BadRequest", message); }

Response NotFoundPath(std::string_view path) {
  return StatusResponse(
      404, "NotFound", "the server could not find the requested resource",
      json{{"causes", json::array({{{"reason", "UnexpectedServerResponse"},
                                    {"message", "404 page not found: " + std::string(path)}}})}});
}

Response MethodNotAllowed(std::string_view method, std::string_view path) {
  return StatusResponse(405, "MethodNotAllowed",
                        "the server does not allow this method on the requested resource: " +
                            std::string(method) + " " + std::string(path));
}

Response UnsupportedMediaType(std::string_view content_type) {
  return StatusResponse(415, "UnsupportedMediaType",
                        "the body of the request was in an unknown format - accepted media types "
                        "include: application/json, application/yaml, "
                        "application/json-patch+json, application/merge-patch+json, "
                        "application/apply-patch+yaml (got " +
                            Quote(content_type) + ")");
}

Response TooLarge(std::string_view message) {
  return StatusResponse(413, "RequestEntityTooLarge", message);
}

Response Unauthorized() { return StatusResponse(401, "Unauthorized", "Unauthorized"); }

Response Forbidden(std::string_view message, const ErrorTarget& t) {
  return StatusResponse(403, "Forbidden", message, Details(t));
}

Response TooManyRequests(std::string_view message, int retry_after_seconds) {
  Response r = StatusResponse(429, "TooManyRequests", message,
                              json{{"retryAfterSeconds", retry_after_seconds}});
  r.headers.emplace_back("Retry-After", std::to_string(retry_after_seconds));
  return r;
}

json SuccessStatus(const ErrorTarget& t, const std::string& uid) {
  json d = Details(t);
  if (!uid.empty()) d["uid"] = uid;
  return {{"kind", "Status"},
          {"apiVersion", "v1"},
          {"metadata", json::object()},
          {"status", "Success"},
          {"details", d}};
}

}  // namespace corral::api
