#pragma once
// Request bodies: JSON or YAML text to JSON, with limits against hostile
// input (nesting depth, and YAML alias expansion — a "billion laughs" body
// is refused instead of expanded). Errors are InvalidArgument with a message
// that says where the problem is (line and column).
// Pure functions; thread-safe.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace corral::api {

struct BodyLimits {
  int max_depth = 64;          // nesting of objects/arrays
  size_t max_nodes = 200'000;  // values after YAML alias expansion
};

// `duplicates`, when given, receives the paths of keys that appear twice in
// one object ("spec.engine"); the value kept is the last, as in JSON's
// common reading, and Strict field validation refuses such bodies.
common::Result<nlohmann::json> ParseJsonBody(std::string_view text, const BodyLimits& limits = {},
                                             std::vector<std::string>* duplicates = nullptr);
// YAML 1.2 core schema for plain scalars (true/false, null/~, integers,
// floats); quoted scalars stay strings. JSON text is valid YAML and parses the
// same. Exactly one document.
common::Result<nlohmann::json> ParseYamlBody(std::string_view text, const BodyLimits& limits = {},
                                             std::vector<std::string>* duplicates = nullptr);

}  // namespace corral::api
