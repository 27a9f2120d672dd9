#pragma once
// Status codes shared by every Corral module.
//
// Each code has one documented meaning for the caller (after absl::Status):
//   kInvalidArgument    the request is wrong; fix it, do not retry as is.
//   kNotFound           the named object does not exist.
//   kAlreadyExists      create of a name that exists.
//   kConflict           a compare-and-swap lost (stale resourceVersion or a
//                       concurrent writer): re-read and redo the read-modify-write
//                       (absl's Aborted).
//   kExpired            the requested revision was compacted away: re-list
//                       (Kubernetes' 410 Gone / Expired).
//   kUnavailable        transient: the database or a peer is down; retry later.
//   kFailedPrecondition a precondition (uid, state) does not hold; do not retry.
//   kResourceExhausted  a bounded resource is full (pool waiters, queue).
//   kDeadlineExceeded   the operation ran past its deadline.
//   kInternal           a bug or an unexpected failure.
//
// Status and Result<T> are value types; not thread-safe to mutate concurrently.
#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace corral::common {

enum class Code {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kConflict,
  kExpired,
  kUnavailable,
  kFailedPrecondition,
  kResourceExhausted,
  kDeadlineExceeded,
  kInternal,
};

// Stable lower-case name, used as a bounded metric label ("conflict").
std::string_view CodeName(Code code);
// HTTP status a server should answer with for this code.
int HttpStatus(Code code);
// Kubernetes Status.reason for this code ("NotFound", "Conflict", ...).
std::string_view KubeReason(Code code);

// One problem with one field of an input object ("spec.replicas": "must be >= 0").
// The API turns these into Kubernetes Status details.causes[].
struct FieldCause {
  std::string field;
  std::string message;
  // Kubernetes CauseType when it matters to clients ("FieldValueInvalid",
  // "FieldManagerConflict", ...); empty lets the API pick a default.
  std::string reason = {};
};

class Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  Status(Code code, std::string message, std::vector<FieldCause> causes)
      : code_(code), message_(std::move(message)), causes_(std::move(causes)) {}

  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::vector<FieldCause>& causes() const { return causes_; }
  // "conflict: models \"a\": resourceVersion 3 is stale"
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  std::vector<FieldCause> causes_;
};

inline Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Status Conflict(std::string m) { return {Code::kConflict, std::move(m)}; }
inline Status Expired(std::string m) { return {Code::kExpired, std::move(m)}; }
inline Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {Code::kFailedPrecondition, std::move(m)};
}
inline Status ResourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) { return {Code::kDeadlineExceeded, std::move(m)}; }
inline Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

// A value or a non-ok Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result constructed from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  // The status: Ok when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace corral::common

// Propagate a non-ok Status out of the calling function.
#define CORRAL_RETURN_IF_ERROR(expr)                  \
  do {                                                \
    ::corral::common::Status corral_status_ = (expr); \
    if (!corral_status_.ok()) return corral_status_;  \
  } while (0)
