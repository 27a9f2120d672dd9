#pragma once
// Authentication by bearer token and authorization by role.
//
// Token file: one token per line, "TOKEN,USER,ROLE" (like kube-apiserver's
// --token-auth-file; '#' starts a comment, blank lines ignored). Only SHA-256
// hashes of tokens are kept in memory; the file is re-read when its mtime or
// size changes (checked at most once a second). Roles:
//   admin   everything
//   viewer  get, list, watch on every resource
//   node    a worker: get/list/watch Models, Nodes, Replicas (its own), Leases;
//           create/update/patch its own Node (metadata.name == user name)
//           and its own Lease (name == user name, any namespace);
//           update/patch the status of Replicas whose spec.nodeName == user name,
//           and their main resource only to remove finalizers (the handler
//           refuses any other change);
//           create Events. Nothing else.
//           Precisely: list/watch of Replicas is allowed (the worker filters
//           by a spec.nodeName field selector the authorizer does not see);
//           get of one Replica and update/patch of replicas/status need
//           Attributes.bound_node == user name, so the server must fill
//           bound_node from the stored object first (an empty bound_node
//           denies). update/patch of the Node may target "" or "status".
//           For create, Attributes.name must be the name from the body.
// Thread-safety: thread-safe.
#include <prometheus/registry.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "common/status.h"

namespace corral::api {

enum class Role { kAdmin, kViewer, kNode };
std::string_view RoleName(Role r);
// "admin" | "viewer" | "node" (exact, lower case); nullopt otherwise.
std::optional<Role> ParseRole(std::string_view name);

struct User {
  std::string name;
  Role role = Role::kViewer;
};

// What a request wants to do. verb: get, list, watch, create, update, patch,
// delete, deletecollection. subresource: "", "status", "scale".
struct Attributes {
  std::string verb;
  std::string kind;  // "Replica"
  std::string ns;
  std::string name;  // empty for collection verbs
  std::string subresource;
  // For node-scoped checks on Replicas: the stored object's spec.nodeName (and
  // the new one on update); empty when unknown.
  std::string bound_node;
};

class TokenAuthenticator {
 public:
  // Uses the real wall clock for the once-a-second change check.
  explicit TokenAuthenticator(std::filesystem::path token_file);
  // `clock` paces the change check (tests pass a FakeClock); it must outlive
  // this object.
  TokenAuthenticator(std::filesystem::path token_file, common::Clock& clock);
  // Reads the file; InvalidArgument naming the line on a bad line
  // (line number, what is wrong — never the token itself).
  common::Status Load();
  // The user for an "Authorization: Bearer ..." header value; nullopt when
  // absent, malformed or unknown. Re-reads the file if it changed.
  std::optional<User> Authenticate(std::string_view authorization_header);
  // For gauges: tokens currently loaded, and reloads that failed (a broken or
  // vanished file; the previous tokens stay in force).
  size_t TokenCount() const;
  uint64_t ReloadFailures() const;

 private:
  // ...implementation-defined members
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Allowed or not, and why (for the 403 message:
// `replicas.corral.dev "r1" is forbidden: User "node-a" cannot update resource
// "replicas/status" in API group "corral.dev" in the namespace "default"`).
struct Decision {
  bool allowed = false;
  std::string reason;
};
Decision Authorize(const User& user, const Attributes& attrs);

// Appends a new "TOKEN,USER,ROLE" line with a fresh random token (OpenSSL
// RAND_bytes, 32 bytes hex) to the token file (created 0600 when missing) and
// returns the token.
common::Result<std::string> AddToken(const std::filesystem::path& token_file, std::string_view user,
                                     Role role);

}  // namespace corral::api
