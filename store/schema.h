#pragma once
// Versioned schema migrations for the store, applied at start. Idempotent, and
// serialized between concurrently starting servers by a transaction-scoped
// advisory lock. Migration SQL is constant text (DDL cannot be prepared); no
// user data is ever spliced into SQL.
#include <pqxx/connection>

#include "common/status.h"

namespace corral::store {

// Current schema version after Migrate().
int LatestSchemaVersion();
// Applies every migration newer than the database's version in one transaction.
// Unavailable when the database cannot be reached; FailedPrecondition when the
// database has a newer schema than this binary knows.
common::Status Migrate(pqxx::connection& conn);

}  // namespace corral::store
