#pragma once
// Object-level helpers shared by store implementations: validation of the
// envelope (apiVersion, kind, metadata), keys, uids, continue tokens.
// Pure functions; thread-safe.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"
#include "store/kinds.h"
#include "store/object_store.h"

namespace corral::store {

constexpr size_t kDefaultMaxObjectBytes = 1536 * 1024;  // 1.5 MiB, like etcd's request limit

// Parses JSON text, rejecting input over max_bytes before parsing it.
common::Result<nlohmann::json> ParseObjectJson(std::string_view text, size_t max_bytes);

// Checks the envelope of an object to be written and returns its key.
// InvalidArgument with one cause per problem (field + reason) and a message
// naming the object. max_bytes 0 skips the size check (for callers that check
// the stored form themselves).
common::Result<ObjectKey> ValidateObject(const KindRegistry& kinds, const nlohmann::json& object,
                                         size_t max_bytes);

// Checks a key used for reads/deletes: known kind, namespace rules.
common::Status ValidateKey(const KindRegistry& kinds, const ObjectKey& key);

// A random RFC 4122 version 4 UUID.
std::string NewUid();

// True when anything outside metadata and status differs (generation bump).
bool SpecChanged(const nlohmann::json& before, const nlohmann::json& after);

// Opaque pagination token: the list's revision and the last key returned.
struct ContinueToken {
  int64_t revision = 0;
  std::string ns;
  std::string name;
};
std::string EncodeContinue(const ContinueToken& token);
// InvalidArgument when the token is not one of ours.
common::Result<ContinueToken> DecodeContinue(std::string_view token);

}  // namespace corral::store
