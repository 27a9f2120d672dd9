#pragma once
// The object store: Kubernetes-style objects (apiVersion, kind, metadata, spec,
// status) kept as a revision log. One global, strictly increasing revision;
// every write is a new revision; a delete writes a tombstone. resourceVersion
// is the decimal revision of the write that produced an object.
//
// Error codes (common/status.h): InvalidArgument (bad object; causes name the
// fields), NotFound, AlreadyExists, Conflict (stale resourceVersion or lost
// race: re-read and retry), Expired (revision compacted: re-list),
// Unavailable (database down or pool exhausted: retry later).
//
// Thread-safety: implementations are thread-safe.
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "store/selector.h"

namespace corral::store {

struct ObjectKey {
  std::string kind;
  std::string ns;  // empty for cluster-scoped kinds
  std::string name;
  std::string ToString() const;  // "Model default/llama"
};

struct Object {
  nlohmann::json body;  // metadata.resourceVersion is set to revision
  int64_t revision = 0;
};

struct DeleteOptions {
  std::optional<std::string> uid;           // precondition
  std::optional<int64_t> resource_version;  // precondition
};

enum class RevisionMatch {
  kLatest,        // the newest state (a consistent read)
  kNotOlderThan,  // any state at or after `revision` (we serve the newest)
  kExact,         // exactly at `revision`; Expired if compacted
};

struct ListOptions {
  std::string kind;
  std::string ns;  // empty: all namespaces
  LabelSelector labels;
  FieldSelector fields;
  int64_t limit = 0;  // 0: everything
  std::string continue_token;
  int64_t revision = 0;
  RevisionMatch match = RevisionMatch::kLatest;
};

struct ListResult {
  std::vector<Object> items;
  int64_t revision = 0;        // the revision the list reflects
  std::string continue_token;  // empty on the last page
};

struct WatchOptions {
  std::string kind;
  std::string ns;
  LabelSelector labels;
  FieldSelector fields;
  // Deliver every change with revision > start_revision. Must be >= the
  // compacted revision, else the watch starts with an Expired error.
  int64_t start_revision = 0;
  // Emit Bookmark events carrying the current revision while idle.
  bool progress_notify = false;
};

struct WatchEvent {
  enum class Type { kAdded, kModified, kDeleted, kBookmark, kError };
  Type type = Type::kAdded;
  Object object;         // for kBookmark only object.revision is meaningful
  common::Status error;  // for kError: Expired, Unavailable (resume from the last revision)
  static std::string_view TypeName(Type t);  // "ADDED", ... as Kubernetes spells them
};

// One watch stream. Events arrive in revision order, each exactly once. After a
// kError event the stream is finished. Thread-safety: one consumer thread;
// Stop() may be called from any thread.
class Watcher {
 public:
  virtual ~Watcher() = default;
  // Waits up to `timeout` for the next event; nullopt on timeout.
  virtual std::optional<WatchEvent> Next(std::chrono::milliseconds timeout) = 0;
  // Ends the stream; a blocked Next() returns nullopt.
  virtual void Stop() = 0;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // Assigns uid, creationTimestamp, generation 1. resourceVersion must be unset.
  virtual common::Result<Object> Create(const nlohmann::json& object) = 0;
  // The whole object except .status (kept from the stored one). CAS on
  // metadata.resourceVersion when set, unconditional when empty. generation
  // grows when anything outside metadata and status changes. An update that
  // changes nothing writes nothing and returns the stored object.
  virtual common::Result<Object> Update(const nlohmann::json& object) = 0;
  // Only .status is taken from `object`; CAS as Update.
  virtual common::Result<Object> UpdateStatus(const nlohmann::json& object) = 0;
  // Writes a tombstone; returns the last state with the tombstone's revision.
  virtual common::Result<Object> Delete(const ObjectKey& key,
                                        const DeleteOptions& options = {}) = 0;
  virtual common::Result<Object> Get(const ObjectKey& key) = 0;
  virtual common::Result<ListResult> List(const ListOptions& options) = 0;
  virtual common::Result<std::unique_ptr<Watcher>> Watch(const WatchOptions& options) = 0;
  // The newest revision every reader can see (all earlier writes settled).
  virtual common::Result<int64_t> CurrentRevision() = 0;
  // Ok when the database answers.
  virtual common::Status Ping() = 0;

  // Parses JSON text (size-limited) and creates it. Malformed text or an
  // oversized object → InvalidArgument.
  common::Result<Object> CreateFromJson(std::string_view text);
  common::Result<Object> UpdateFromJson(std::string_view text);
  virtual size_t max_object_bytes() const = 0;
};

}  // namespace corral::store
