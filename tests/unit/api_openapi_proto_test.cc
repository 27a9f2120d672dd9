#include "api/openapi_proto.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace corral::api {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// --- a test-only protobuf wire decoder ----------------------------------------
// Independent of the encoder: it knows only the wire format, so the tests
// below assert field numbers and values as a real protobuf decoder (kubectl's)
// would see them.

struct WireField {
  int number = 0;
  int wire = 0;
  uint64_t varint = 0;  // wire 0
  uint64_t fixed = 0;   // wire 1
  std::string bytes;    // wire 2
};

bool ReadVarint(std::string_view b, size_t* pos, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= b.size()) return false;
    const auto c = static_cast<unsigned char>(b[(*pos)++]);
    *v |= static_cast<uint64_t>(c & 0x7f) << shift;
    if ((c & 0x80) == 0) return true;
  }
  return false;
}

std::vector<WireField> Decode(std::string_view b) {
  std::vector<WireField> fields;
  size_t pos = 0;
  while (pos < b.size()) {
    uint64_t tag = 0;
    if (!ReadVarint(b, &pos, &tag)) {
      ADD_FAILURE() << "truncated tag";
      return fields;
    }
    WireField f;
    f.number = static_cast<int>(tag >> 3);
    f.wire = static_cast<int>(tag & 7);
    if (f.wire == 0) {
      if (!ReadVarint(b, &pos, &f.varint)) ADD_FAILURE() << "truncated varint";
    } else if (f.wire == 1) {
      if (pos + 8 > b.size()) {
        ADD_FAILURE() << "truncated fixed64";
        return fields;
      }
      for (int i = 0; i < 8; ++i) {
        f.fixed |= static_cast<uint64_t>(static_cast<unsigned char>(b[pos + i])) << (8 * i);
      }
      pos += 8;
    } else if (f.wire == 2) {
      uint64_t len = 0;
      if (!ReadVarint(b, &pos, &len) || pos + len > b.size()) {
        ADD_FAILURE() << "bad length";
        return fields;
      }
      f.bytes = std::string(b.substr(pos, len));
      pos += len;
    } else {
      ADD_FAILURE() << "unexpected wire type " << f.wire;
      return fields;
    }
    fields.push_back(std::move(f));
  }
  return fields;
}

// All length-delimited values of field `n` (strings or submessages), in order.
std::vector<std::string> All(std::string_view msg, int n) {
  std::vector<std::string> out;
  for (auto& f : Decode(msg)) {
    if (f.number == n) {
      EXPECT_EQ(f.wire, 2) << "field " << n;
      out.push_back(f.bytes);
    }
  }
  return out;
}

// The one length-delimited value of field `n`; nullopt when absent.
std::optional<std::string> Opt(std::string_view msg, int n) {
  auto all = All(msg, n);
  EXPECT_LE(all.size(), 1u) << "field " << n << " repeated";
  if (all.empty()) return std::nullopt;
  return all.front();
}

std::string One(std::string_view msg, int n) {
  auto v = Opt(msg, n);
  EXPECT_TRUE(v.has_value()) << "field " << n << " missing";
  return v.value_or("");
}

std::optional<uint64_t> Varint(std::string_view msg, int n) {
  for (auto& f : Decode(msg)) {
    if (f.number == n) {
      EXPECT_EQ(f.wire, 0) << "field " << n;
      return f.varint;
    }
  }
  return std::nullopt;
}

std::optional<double> Double(std::string_view msg, int n) {
  for (auto& f : Decode(msg)) {
    if (f.number == n) {
      EXPECT_EQ(f.wire, 1) << "field " << n;
      return std::bit_cast<double>(f.fixed);
    }
  }
  return std::nullopt;
}

// In a repeated Named* field `n` ({1: name, 2: value}), the value for `name`.
std::optional<std::string> Named(std::string_view msg, int n, std::string_view name) {
  for (const auto& entry : All(msg, n)) {
    if (One(entry, 1) == name) return One(entry, 2);
  }
  return std::nullopt;
}

std::vector<std::string> Names(std::string_view msg, int n) {
  std::vector<std::string> out;
  for (const auto& entry : All(msg, n)) out.push_back(One(entry, 1));
  return out;
}

// gnostic field numbers the assertions use.
constexpr int kDocSwagger = 1, kDocInfo = 2, kDocPaths = 8, kDocDefinitions = 9, kDocVendor = 16;
constexpr int kSchemaRef = 1, kSchemaFormat = 2, kSchemaDescription = 4, kSchemaDefault = 5,
              kSchemaMinimum = 9, kSchemaMaxLength = 11, kSchemaRequired = 19, kSchemaEnum = 20,
              kSchemaAdditional = 21, kSchemaType = 22, kSchemaItems = 23, kSchemaProperties = 25,
              kSchemaVendor = 31;
constexpr int kAnyYaml = 2;

json ModelSwagger() {
  return json::parse(R"({
    "swagger": "2.0",
    "info": {"title": "Corral", "version": "v1alpha1"},
    "paths": {
      "/apis/corral.dev/v1alpha1/namespaces/{namespace}/models": {
        "parameters": [{"$ref": "#/parameters/namespace"}],
        "post": {
          "operationId": "createModel",
          "consumes": ["application/json", "application/yaml"],
          "parameters": [
            {"name": "body", "in": "body", "required": true,
             "schema": {"$ref": "#/definitions/dev.corral.v1alpha1.Model"}},
            {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true}
          ],
          "responses": {
            "201": {"description": "Created",
                    "schema": {"$ref": "#/definitions/dev.corral.v1alpha1.Model"}},
            "401": {"description": "Unauthorized"}
          },
          "x-kubernetes-action": "post",
          "x-kubernetes-group-version-kind": {"group": "corral.dev", "version": "v1alpha1",
                                              "kind": "Model"}
        }
      }
    },
    "parameters": {
      "namespace": {"name": "namespace", "in": "path", "required": true, "type": "string"}
    },
    "definitions": {
      "dev.corral.v1alpha1.Model": {
        "type": "object",
        "description": "A model to serve.",
        "required": ["spec"],
        "properties": {
          "apiVersion": {"type": "string"},
          "kind": {"type": "string"},
          "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
          "spec": {
            "type": "object",
            "required": ["engine"],
            "properties": {
              "engine": {"type": "string", "enum": ["vllm", "sglang"], "default": "vllm"},
              "replicas": {"type": "integer", "format": "int32", "minimum": 0, "maxLength": -3},
              "args": {"type": "array", "items": {"type": "string"}},
              "labels": {"type": "object", "additionalProperties": {"type": "string"}},
              "open": {"type": "object", "additionalProperties": true},
              "empty": {"type": "object", "properties": {}}
            }
          }
        },
        "x-kubernetes-group-version-kind": [
          {"group": "corral.dev", "kind": "Model", "version": "v1alpha1"}
        ]
      },
      "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
        "type": "object",
        "properties": {"name": {"type": "string"}}
      }
    },
    "x-corral-doc": "v1"
  })");
}

std::string Encode(const json& doc) {
  auto bytes = EncodeOpenApiV2Proto(doc);
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  return bytes.ok() ? *bytes : std::string();
}

std::string ModelSchema(const std::string& doc) {
  const auto model = Named(One(doc, kDocDefinitions), 1, "dev.corral.v1alpha1.Model");
  EXPECT_TRUE(model.has_value());
  return model.value_or("");
}

std::string Property(const std::string& schema, std::string_view name) {
  const auto prop = Named(One(schema, kSchemaProperties), 1, name);
  EXPECT_TRUE(prop.has_value()) << "property " << name;
  return prop.value_or("");
}

std::vector<std::string> Types(const std::string& schema) {
  return All(One(schema, kSchemaType), 1);
}

TEST(OpenApiProtoTest, DocumentHeaderAndDefinitionNames) {
  const std::string doc = Encode(ModelSwagger());
  EXPECT_EQ(One(doc, kDocSwagger), "2.0");
  const std::string info = One(doc, kDocInfo);
  EXPECT_EQ(One(info, 1), "Corral");
  EXPECT_EQ(One(info, 2), "v1alpha1");
  EXPECT_THAT(
      Names(One(doc, kDocDefinitions), 1),
      ElementsAre("dev.corral.v1alpha1.Model", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
  const auto ext = Named(doc, kDocVendor, "x-corral-doc");
  ASSERT_TRUE(ext.has_value());
  EXPECT_EQ(One(*ext, kAnyYaml), R"("v1")");
}

TEST(OpenApiProtoTest, ModelSchemaCarriesWhatKubectlValidatesWith) {
  const std::string model = ModelSchema(Encode(ModelSwagger()));
  EXPECT_THAT(Types(model), ElementsAre("object"));
  EXPECT_EQ(One(model, kSchemaDescription), "A model to serve.");
  EXPECT_THAT(All(model, kSchemaRequired), ElementsAre("spec"));
  EXPECT_THAT(Names(One(model, kSchemaProperties), 1),
              ElementsAre("apiVersion", "kind", "metadata", "spec"));

  // A $ref carries no type, so kube-openapi parses it as a reference.
  const std::string metadata = Property(model, "metadata");
  EXPECT_EQ(One(metadata, kSchemaRef),
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
  EXPECT_FALSE(Opt(metadata, kSchemaType).has_value());

  const std::string spec = Property(model, "spec");
  EXPECT_THAT(All(spec, kSchemaRequired), ElementsAre("engine"));
  const std::string engine = Property(spec, "engine");
  EXPECT_THAT(Types(engine), ElementsAre("string"));
  std::vector<std::string> enum_yaml;
  for (const auto& any : All(engine, kSchemaEnum)) enum_yaml.push_back(One(any, kAnyYaml));
  EXPECT_THAT(enum_yaml, ElementsAre(R"("vllm")", R"("sglang")"));
  EXPECT_EQ(One(One(engine, kSchemaDefault), kAnyYaml), R"("vllm")");

  const std::string replicas = Property(spec, "replicas");
  EXPECT_THAT(Types(replicas), ElementsAre("integer"));
  EXPECT_EQ(One(replicas, kSchemaFormat), "int32");
  EXPECT_EQ(Double(replicas, kSchemaMinimum), 0.0);
  // int64 is a plain varint: -3 is its 64-bit two's complement.
  EXPECT_EQ(Varint(replicas, kSchemaMaxLength), static_cast<uint64_t>(int64_t{-3}));
}

TEST(OpenApiProtoTest, GroupVersionKindExtensionIsYamlInAnAny) {
  const std::string model = ModelSchema(Encode(ModelSwagger()));
  const auto gvk = Named(model, kSchemaVendor, "x-kubernetes-group-version-kind");
  ASSERT_TRUE(gvk.has_value());
  // Any.value (field 1, google.protobuf.Any) stays unset: kube-openapi reads only yaml.
  EXPECT_FALSE(Opt(*gvk, 1).has_value());
  const json parsed = json::parse(One(*gvk, kAnyYaml));
  EXPECT_EQ(parsed, json::parse(R"([{"group":"corral.dev","kind":"Model","version":"v1alpha1"}])"));
}

TEST(OpenApiProtoTest, ArraysMapsAndEmptyProperties) {
  const std::string spec = Property(ModelSchema(Encode(ModelSwagger())), "spec");

  const std::string args = Property(spec, "args");
  EXPECT_THAT(Types(args), ElementsAre("array"));
  const auto items = All(One(args, kSchemaItems), 1);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_THAT(Types(items[0]), ElementsAre("string"));

  // additionalProperties: a schema is oneof field 1, a boolean oneof field 2.
  const std::string labels = One(Property(spec, "labels"), kSchemaAdditional);
  EXPECT_THAT(Types(One(labels, 1)), ElementsAre("string"));
  const std::string open = One(Property(spec, "open"), kSchemaAdditional);
  EXPECT_EQ(Varint(open, 2), 1u);
  EXPECT_FALSE(Opt(open, 1).has_value());

  // "properties": {} must stay present (an empty submessage): kube-openapi
  // treats a type-object schema with properties as a kind, without as a map.
  const auto empty = Opt(Property(spec, "empty"), kSchemaProperties);
  ASSERT_TRUE(empty.has_value());
  EXPECT_THAT(*empty, IsEmpty());
  EXPECT_FALSE(Opt(Property(spec, "labels"), kSchemaProperties).has_value());
}

TEST(OpenApiProtoTest, ItemsAndTypeAcceptListForms) {
  json doc = ModelSwagger();
  doc["definitions"]["T"] = json::parse(
      R"({"type": ["string", "null"], "items": [{"type": "integer"}, {"type": "boolean"}]})");
  const auto t = Named(One(Encode(doc), kDocDefinitions), 1, "T");
  ASSERT_TRUE(t.has_value());
  EXPECT_THAT(Types(*t), ElementsAre("string", "null"));
  const auto items = All(One(*t, kSchemaItems), 1);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_THAT(Types(items[1]), ElementsAre("boolean"));
}

TEST(OpenApiProtoTest, PathsOperationsParametersAndResponses) {
  const std::string doc = Encode(ModelSwagger());
  const auto item =
      Named(One(doc, kDocPaths), 2, "/apis/corral.dev/v1alpha1/namespaces/{namespace}/models");
  ASSERT_TRUE(item.has_value());
  EXPECT_FALSE(Opt(*item, 2).has_value());  // no get

  // Path-level parameter: ParametersItem.json_reference (2).
  const auto path_params = All(*item, 9);
  ASSERT_EQ(path_params.size(), 1u);
  EXPECT_EQ(One(One(path_params[0], 2), 1), "#/parameters/namespace");

  const std::string post = One(*item, 4);
  EXPECT_EQ(One(post, 5), "createModel");
  EXPECT_THAT(All(post, 7), ElementsAre("application/json", "application/yaml"));

  const auto params = All(post, 8);
  ASSERT_EQ(params.size(), 2u);
  // Body: ParametersItem.parameter (1) -> Parameter.body_parameter (1).
  const std::string body = One(One(params[0], 1), 1);
  EXPECT_EQ(One(body, 2), "body");
  EXPECT_EQ(One(body, 3), "body");
  EXPECT_EQ(Varint(body, 4), 1u);
  EXPECT_EQ(One(One(body, 5), kSchemaRef), "#/definitions/dev.corral.v1alpha1.Model");
  // Query: Parameter.non_body_parameter (2) -> query_parameter_sub_schema (3).
  const std::string query = One(One(One(params[1], 1), 2), 3);
  EXPECT_EQ(One(query, 4), "fieldValidation");
  EXPECT_EQ(One(query, 2), "query");
  EXPECT_EQ(One(query, 6), "string");
  EXPECT_EQ(Varint(query, 20), 1u);  // uniqueItems

  // Responses: response_code (1) NamedResponseValue -> ResponseValue.response (1).
  const std::string responses = One(post, 9);
  EXPECT_THAT(Names(responses, 1), ElementsAre("201", "401"));
  const std::string created = One(*Named(responses, 1, "201"), 1);
  EXPECT_EQ(One(created, 1), "Created");
  // Response.schema is a SchemaItem; a non-file schema is its field 1.
  EXPECT_EQ(One(One(One(created, 2), 1), kSchemaRef), "#/definitions/dev.corral.v1alpha1.Model");

  // Operation vendor extensions (13), object-valued GVK included.
  const auto gvk = Named(post, 13, "x-kubernetes-group-version-kind");
  ASSERT_TRUE(gvk.has_value());
  EXPECT_EQ(json::parse(One(*gvk, kAnyYaml)),
            json::parse(R"({"group":"corral.dev","version":"v1alpha1","kind":"Model"})"));
  EXPECT_EQ(One(*Named(post, 13, "x-kubernetes-action"), kAnyYaml), R"("post")");

  // Document-level parameter definitions: NamedParameter with a Parameter,
  // here a path parameter (non_body 2 -> path_parameter_sub_schema 4).
  const auto ns = Named(One(doc, 10), 1, "namespace");
  ASSERT_TRUE(ns.has_value());
  const std::string path_param = One(One(*ns, 2), 4);
  EXPECT_EQ(Varint(path_param, 1), 1u);
  EXPECT_EQ(One(path_param, 5), "string");
}

TEST(OpenApiProtoTest, OtherParameterLocationsFileResponsesAndSecurity) {
  json doc = json::parse(R"({
    "swagger": "2.0",
    "paths": {"/x": {"get": {
      "parameters": [
        {"name": "h", "in": "header", "type": "string"},
        {"name": "f", "in": "formData", "type": "file", "allowEmptyValue": true},
        {"name": "ids", "in": "query", "type": "array",
         "items": {"type": "integer", "items": {"type": "string"}}, "collectionFormat": "csv"}
      ],
      "responses": {"default": {"description": "d", "schema": {"type": "file"},
                                "headers": {"X-Rate": {"type": "integer", "description": "r"}}}},
      "security": [{"oauth": ["read", "write"]}]
    }}},
    "securityDefinitions": {
      "oauth": {"type": "oauth2", "flow": "accessCode", "authorizationUrl": "https://a",
                "tokenUrl": "https://t", "scopes": {"read": "Read"}},
      "key": {"type": "apiKey", "name": "k", "in": "header"}
    }
  })");
  const std::string bytes = Encode(doc);
  const std::string get = One(*Named(One(bytes, kDocPaths), 2, "/x"), 2);
  const auto params = All(get, 8);
  ASSERT_EQ(params.size(), 3u);
  EXPECT_EQ(One(One(One(One(params[0], 1), 2), 1), 4), "h");   // header 1
  const std::string form = One(One(One(params[1], 1), 2), 2);  // formData 2
  EXPECT_EQ(Varint(form, 5), 1u);
  const std::string ids = One(One(One(params[2], 1), 2), 3);  // query 3
  EXPECT_EQ(One(One(One(ids, 8), 3), 1), "string");           // nested PrimitivesItems
  EXPECT_EQ(One(ids, 9), "csv");

  const std::string response = One(*Named(One(get, 9), 1, "default"), 1);
  EXPECT_EQ(One(One(One(response, 2), 2), 6), "file");  // SchemaItem.file_schema (2)
  const auto header = Named(One(response, 3), 1, "X-Rate");
  ASSERT_TRUE(header.has_value());
  EXPECT_EQ(One(*header, 1), "integer");
  EXPECT_EQ(One(*header, 18), "r");

  const std::string requirement = One(get, 12);
  EXPECT_THAT(All(*Named(requirement, 1, "oauth"), 1), ElementsAre("read", "write"));

  const std::string defs = One(bytes, 13);
  const std::string oauth = One(*Named(defs, 1, "oauth"), 6);  // access code flow
  EXPECT_EQ(One(oauth, 4), "https://a");
  EXPECT_EQ(One(oauth, 5), "https://t");
  EXPECT_EQ(*Named(One(oauth, 3), 1, "read"), "Read");
  EXPECT_EQ(One(One(*Named(defs, 1, "key"), 2), 3), "header");
}

TEST(OpenApiProtoTest, AnyKeepsValueTypesAndNonAsciiText) {
  json doc = ModelSwagger();
  doc["definitions"]["D"] = json::parse(R"({
    "type": "string",
    "description": "Modèle — 模型",
    "default": "yes",
    "example": {"a": [1, true, null, 2.5]}
  })");
  const auto d = Named(One(Encode(doc), kDocDefinitions), 1, "D");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(One(*d, kSchemaDescription), "Modèle — 模型");
  // Quoted, so YAML 1.1 cannot read it back as the boolean true.
  EXPECT_EQ(One(One(*d, kSchemaDefault), kAnyYaml), R"("yes")");
  EXPECT_EQ(json::parse(One(One(*d, 30), kAnyYaml)), json::parse(R"({"a":[1,true,null,2.5]})"));
}

TEST(OpenApiProtoTest, WireDetails) {
  json doc = json::parse(R"({"swagger": "2.0", "definitions": {"N": {
      "type": "number", "maximum": 1.5, "minimum": -2.25, "maxLength": 300}}})");
  const auto n = Named(One(Encode(doc), kDocDefinitions), 1, "N");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(Double(*n, 7), 1.5);
  EXPECT_EQ(Double(*n, kSchemaMinimum), -2.25);
  EXPECT_EQ(Varint(*n, kSchemaMaxLength), 300u);
  // Field 22 (type) needs a two-byte tag: (22 << 3 | 2) = 178 = 0xb2 0x01.
  EXPECT_NE(n->find("\xb2\x01"), std::string::npos);
}

// --- errors -------------------------------------------------------------------

std::string ErrorOf(const json& doc) {
  auto r = EncodeOpenApiV2Proto(doc);
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), common::Code::kInvalidArgument);
  return r.status().message();
}

TEST(OpenApiProtoTest, RejectsNonSwagger2Documents) {
  EXPECT_THAT(ErrorOf(json::array()), HasSubstr("(document root): must be an object"));
  EXPECT_THAT(ErrorOf(json::parse(R"({"openapi": "3.0.0"})")),
              HasSubstr("/swagger: must be \"2.0\""));
  EXPECT_THAT(ErrorOf(json::parse(R"({"swagger": 2})")), HasSubstr("/swagger"));
  EXPECT_THAT(ErrorOf(json::parse(R"({"swagger": "2.0", "components": {}})")),
              HasSubstr("/components: \"components\" is not a field"));
}

TEST(OpenApiProtoTest, ErrorsNameTheJsonPath) {
  json doc = ModelSwagger();
  doc["definitions"]["dev.corral.v1alpha1.Model"]["properties"]["spec"]["properties"]["engine"]
     ["nullable"] = true;
  EXPECT_THAT(ErrorOf(doc),
              HasSubstr("/definitions/dev.corral.v1alpha1.Model/properties/spec/properties/engine/"
                        "nullable: \"nullable\" is not a field of a Swagger 2.0 Schema object"));

  doc = ModelSwagger();
  doc["definitions"]["dev.corral.v1alpha1.Model"]["type"] = 5;
  EXPECT_THAT(ErrorOf(doc), HasSubstr("/definitions/dev.corral.v1alpha1.Model/type: must be a "
                                      "string or an array of strings"));

  doc = ModelSwagger();
  doc["definitions"]["dev.corral.v1alpha1.Model"]["required"] = json::array({"spec", 3});
  EXPECT_THAT(ErrorOf(doc),
              HasSubstr("/definitions/dev.corral.v1alpha1.Model/required/1: must be a string"));

  doc = ModelSwagger();
  doc["definitions"]["dev.corral.v1alpha1.Model"]["maxProperties"] = 1.5;
  EXPECT_THAT(ErrorOf(doc), HasSubstr("/maxProperties: must be an integer"));

  doc = ModelSwagger();
  doc["definitions"]["dev.corral.v1alpha1.Model"]["maxProperties"] = UINT64_MAX;
  EXPECT_THAT(ErrorOf(doc), HasSubstr("/maxProperties: does not fit"));

  doc = ModelSwagger();
  doc["definitions"]["dev.corral.v1alpha1.Model"]["additionalProperties"] = "yes";
  EXPECT_THAT(ErrorOf(doc), HasSubstr("/additionalProperties: must be a boolean or a schema"));

  doc = ModelSwagger();
  doc["definitions"]["dev.corral.v1alpha1.Model"]["items"] = 1;
  EXPECT_THAT(ErrorOf(doc), HasSubstr("/items: must be a schema object or an array"));
}

TEST(OpenApiProtoTest, RejectsBadPathsParametersAndResponses) {
  const std::string post =
      "/paths/~1apis~1corral.dev~1v1alpha1~1namespaces~1{namespace}~1models/post";
  json doc = ModelSwagger();
  auto& op = doc["paths"]["/apis/corral.dev/v1alpha1/namespaces/{namespace}/models"]["post"];
  op["parameters"][1].erase("in");
  EXPECT_THAT(ErrorOf(doc), HasSubstr(post + "/parameters/1/in: a parameter needs \"in\""));

  doc = ModelSwagger();
  doc["paths"]["/apis/corral.dev/v1alpha1/namespaces/{namespace}/models"]["post"]["parameters"][1]
     ["in"] = "cookie";
  EXPECT_THAT(ErrorOf(doc), HasSubstr("\"cookie\" is not a parameter location"));

  doc = ModelSwagger();
  // A body parameter has no "type" field.
  doc["paths"]["/apis/corral.dev/v1alpha1/namespaces/{namespace}/models"]["post"]["parameters"][0]
     ["type"] = "object";
  EXPECT_THAT(ErrorOf(doc), HasSubstr(post + "/parameters/0/type: \"type\" is not a field of a "
                                             "Swagger 2.0 body parameter"));

  doc = ModelSwagger();
  doc["paths"]["/apis/corral.dev/v1alpha1/namespaces/{namespace}/models"]["post"]["responses"]
     ["ok"] = {{"description", "x"}};
  EXPECT_THAT(ErrorOf(doc), HasSubstr(post + "/responses/ok: a response key must be an HTTP"));

  doc = ModelSwagger();
  doc["paths"]["apis"] = json::object();
  EXPECT_THAT(ErrorOf(doc), HasSubstr("/paths/apis: a path must start with \"/\""));

  doc = ModelSwagger();
  doc["securityDefinitions"]["o"] = {{"type", "oauth2"}};
  EXPECT_THAT(ErrorOf(doc), HasSubstr("/securityDefinitions/o/flow: an oauth2 scheme needs"));
}

TEST(OpenApiProtoTest, RejectsInvalidUtf8) {
  json doc = ModelSwagger();
  doc["definitions"]["dev.corral.v1alpha1.Model"]["description"] = std::string("bad \xc3(");
  EXPECT_THAT(ErrorOf(doc),
              HasSubstr("/definitions/dev.corral.v1alpha1.Model/description: is not valid UTF-8"));

  doc = ModelSwagger();
  doc["definitions"]["dev.corral.v1alpha1.Model"]["description"] = std::string("cut \xe6\xa8");
  EXPECT_THAT(ErrorOf(doc), HasSubstr("is not valid UTF-8"));

  doc = ModelSwagger();  // a surrogate encoded as UTF-8 is not UTF-8
  doc["definitions"]["dev.corral.v1alpha1.Model"]["description"] = std::string("\xed\xa0\x80");
  EXPECT_THAT(ErrorOf(doc), HasSubstr("is not valid UTF-8"));

  doc = ModelSwagger();  // inside an Any, reported at the Any's path
  doc["definitions"]["dev.corral.v1alpha1.Model"]["default"] = {{"k", std::string("\xff")}};
  EXPECT_THAT(ErrorOf(doc), HasSubstr("/definitions/dev.corral.v1alpha1.Model/default: cannot be "
                                      "written as YAML"));
}

}  // namespace
}  // namespace corral::api
