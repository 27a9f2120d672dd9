#pragma once
// /openapi/v2 in protobuf form: kubectl up to 1.28 fetches it with
// Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf and
// decodes a gnostic openapi.v2.Document (github.com/google/gnostic
// openapiv2/OpenAPIv2.proto). Served with Content-Type application/octet-stream.
// Pure functions; thread-safe.
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace corral::api {

// Encodes a Swagger 2.0 document (JSON, as SchemaRegistry::OpenApiV2 gives)
// as the bytes of a gnostic openapi.v2.Document. Every part of the input that
// gnostic models is carried (info, paths with operations and parameters,
// definitions with nested schemas, vendor extensions such as
// x-kubernetes-group-version-kind as Any/yaml). InvalidArgument names the
// JSON path of anything it cannot represent.
common::Result<std::string> EncodeOpenApiV2Proto(const nlohmann::json& swagger);

}  // namespace corral::api
