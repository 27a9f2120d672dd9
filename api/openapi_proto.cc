// Swagger 2.0 JSON -> gnostic openapi.v2.Document protobuf bytes.
//
// The message layouts (field numbers, oneofs, the "Named*" pairs that stand in
// for JSON objects) follow github.com/google/gnostic openapiv2/OpenAPIv2.proto.
// The consumer that matters is kubectl <= 1.28: k8s.io/kube-openapi's
// pkg/util/proto decodes the Document and then
//   - keys every model by its definitions name and resolves "$ref" only of the
//     form "#/definitions/<name>" (a dangling one fails the whole document);
//   - tells kinds from maps by Schema.properties being *present* (even empty),
//     so a JSON "properties": {} is encoded as an empty submessage, not omitted;
//   - reads x-kubernetes-group-version-kind (and every other extension, and
//     "default") by YAML-decoding the yaml field of an Any.
// The encoder is strict: a key gnostic has no field for, or a value of the
// wrong JSON type, is an InvalidArgument naming its JSON Pointer, rather than
// being dropped silently (a dropped key would make kubectl validate against a
// different schema than the server's).
#include "api/openapi_proto.h"

#include <array>
#include <bit>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string_view>

namespace corral::api {
namespace {

using common::Status;
using nlohmann::json;
using Ptr = json::json_pointer;

// --- protobuf wire format -------------------------------------------------

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2 };

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutTag(int number, WireType wire, std::string* out) {
  PutVarint((static_cast<uint64_t>(number) << 3) | wire, out);
}

// Strings, bytes and embedded messages share the length-delimited encoding.
void PutBytes(int number, std::string_view bytes, std::string* out) {
  PutTag(number, kLengthDelimited, out);
  PutVarint(bytes.size(), out);
  out->append(bytes);
}

void PutBool(int number, bool v, std::string* out) {
  PutTag(number, kVarint, out);
  PutVarint(v ? 1 : 0, out);
}

// int64 is a plain varint: a negative value takes ten bytes (two's complement).
void PutInt64(int number, int64_t v, std::string* out) {
  PutTag(number, kVarint, out);
  PutVarint(static_cast<uint64_t>(v), out);
}

void PutDouble(int number, double v, std::string* out) {
  PutTag(number, kFixed64, out);
  const auto bits = std::bit_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(bits >> (8 * i)));
}

// --- errors -----------------------------------------------------------------

Status Invalid(const Ptr& path, std::string_view what) {
  const std::string where = path.empty() ? std::string("(document root)") : path.to_string();
  return common::InvalidArgument("openapi v2 protobuf: " + where + ": " + std::string(what));
}

// proto3 strings must be UTF-8: Go's protobuf decoder rejects the whole
// document otherwise, so a bad byte is reported here, at its path.
bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (extra > s.size() - i - 1) return false;  // truncated sequence
    for (size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static constexpr std::array<uint32_t, 4> kMin = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

Status PutString(int number, const json& v, const Ptr& path, std::string* out) {
  if (!v.is_string()) return Invalid(path, "must be a string");
  const auto& s = v.get_ref<const std::string&>();
  if (!IsUtf8(s)) return Invalid(path, "is not valid UTF-8");
  PutBytes(number, s, out);
  return Status::Ok();
}

// --- message encoders -------------------------------------------------------

// Encodes the body (not the tag/length) of one message from its JSON value.
using EncodeFn = Status (*)(const json&, const Ptr&, std::string*);

// How one JSON key maps onto one protobuf field.
enum class Kind {
  kString,
  kBool,
  kInt64,
  kDouble,
  kStrings,   // repeated string from a JSON array of strings
  kAny,       // Any{yaml} from any JSON value
  kAnys,      // repeated Any from a JSON array
  kMessage,   // a submessage encoded by `sub`
  kMessages,  // repeated submessage from a JSON array, each encoded by `sub`
};

struct Field {
  std::string_view key;
  int number;
  Kind kind;
  EncodeFn sub = nullptr;
};

// gnostic's Any: field 2 holds the value as YAML text. JSON is YAML (1.2),
// and gopkg.in/yaml.v2 (what kube-openapi decodes it with) reads JSON flow
// style; keeping strings quoted also keeps YAML 1.1 from turning "yes" or
// "1.0" into a bool or a number.
Status EncodeAny(const json& v, const Ptr& path, std::string* out) {
  std::string yaml;
  try {
    yaml = v.dump();
  } catch (const json::exception& e) {
    return Invalid(path, std::string("cannot be written as YAML: ") + e.what());
  }
  PutBytes(2, yaml, out);
  return Status::Ok();
}

Status PutMessage(int number, EncodeFn fn, const json& v, const Ptr& path, std::string* out) {
  std::string body;
  CORRAL_RETURN_IF_ERROR(fn(v, path, &body));
  PutBytes(number, body, out);
  return Status::Ok();
}

Status PutField(const Field& f, const json& v, const Ptr& path, std::string* out) {
  switch (f.kind) {
    case Kind::kString: return PutString(f.number, v, path, out);
    case Kind::kBool:
      if (!v.is_boolean()) return Invalid(path, "must be a boolean");
      PutBool(f.number, v.get<bool>(), out);
      return Status::Ok();
    case Kind::kInt64:
      if (v.is_number_unsigned()) {
        if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          return Invalid(path, "does not fit in a 64-bit signed integer");
        }
      } else if (!v.is_number_integer()) {
        return Invalid(path, "must be an integer");
      }
      PutInt64(f.number, v.get<int64_t>(), out);
      return Status::Ok();
    case Kind::kDouble:
      if (!v.is_number()) return Invalid(path, "must be a number");
      PutDouble(f.number, v.get<double>(), out);
      return Status::Ok();
    case Kind::kStrings:
      if (!v.is_array()) return Invalid(path, "must be an array of strings");
      for (size_t i = 0; i < v.size(); ++i) {
        CORRAL_RETURN_IF_ERROR(PutString(f.number, v[i], path / i, out));
      }
      return Status::Ok();
    case Kind::kAny: return PutMessage(f.number, EncodeAny, v, path, out);
    case Kind::kAnys:
      if (!v.is_array()) return Invalid(path, "must be an array");
      for (size_t i = 0; i < v.size(); ++i) {
        CORRAL_RETURN_IF_ERROR(PutMessage(f.number, EncodeAny, v[i], path / i, out));
      }
      return Status::Ok();
    case Kind::kMessage: return PutMessage(f.number, f.sub, v, path, out);
    case Kind::kMessages:
      if (!v.is_array()) return Invalid(path, "must be an array");
      for (size_t i = 0; i < v.size(); ++i) {
        CORRAL_RETURN_IF_ERROR(PutMessage(f.number, f.sub, v[i], path / i, out));
      }
      return Status::Ok();
  }
  return common::Internal("openapi v2 protobuf: unhandled field kind");
}

bool IsVendorExtension(std::string_view key) { return key.starts_with("x-"); }

// A NamedAny{name, Any} per "x-..." key, appended as field `number`.
Status PutVendorExtension(int number, const std::string& key, const json& v, const Ptr& path,
                          std::string* out) {
  if (!IsUtf8(key)) return Invalid(path, "key is not valid UTF-8");
  std::string named;
  PutBytes(1, key, &named);
  CORRAL_RETURN_IF_ERROR(PutMessage(2, EncodeAny, v, path, &named));
  PutBytes(number, named, out);
  return Status::Ok();
}

// The common case: a JSON object whose keys are the message's fields
// (`groups` in field-number order), plus "x-" keys into the message's
// vendor_extension field (0: the message has none). In every such gnostic
// message vendor_extension is the highest field number, so it is written last
// and the output stays in canonical field order.
Status EncodeObject(const json& j, const Ptr& path, std::string_view message,
                    std::initializer_list<std::span<const Field>> groups, int vendor_field,
                    std::string* out) {
  if (!j.is_object()) return Invalid(path, "must be an object (a " + std::string(message) + ")");
  for (const auto& [key, value] : j.items()) {
    if (vendor_field != 0 && IsVendorExtension(key)) continue;
    bool known = false;
    for (const auto& group : groups) {
      for (const auto& f : group) known = known || f.key == key;
    }
    if (!known) {
      return Invalid(path / key,
                     "\"" + key + "\" is not a field of a Swagger 2.0 " + std::string(message));
    }
  }
  for (const auto& group : groups) {
    for (const auto& f : group) {
      const auto it = j.find(f.key);
      if (it == j.end()) continue;
      CORRAL_RETURN_IF_ERROR(PutField(f, *it, path / std::string(f.key), out));
    }
  }
  if (vendor_field != 0) {
    for (const auto& [key, value] : j.items()) {
      if (!IsVendorExtension(key)) continue;
      CORRAL_RETURN_IF_ERROR(PutVendorExtension(vendor_field, key, value, path / key, out));
    }
  }
  return Status::Ok();
}

// A JSON object of name -> value as repeated Named*{1: name, 2: value} in
// field `number`; the value is a message encoded by `fn`.
Status PutNamedMap(int number, EncodeFn fn, const json& j, const Ptr& path, std::string* out) {
  if (!j.is_object()) return Invalid(path, "must be an object");
  for (const auto& [key, value] : j.items()) {
    if (!IsUtf8(key)) return Invalid(path / key, "key is not valid UTF-8");
    std::string named;
    PutBytes(1, key, &named);
    CORRAL_RETURN_IF_ERROR(PutMessage(2, fn, value, path / key, &named));
    PutBytes(number, named, out);
  }
  return Status::Ok();
}

// Forward declarations: schemas and parameters nest recursively.
Status EncodeSchema(const json& j, const Ptr& path, std::string* out);
Status EncodePrimitivesItems(const json& j, const Ptr& path, std::string* out);
Status EncodeExternalDocs(const json& j, const Ptr& path, std::string* out);

// type .. multipleOf: the 17 consecutive fields shared by PrimitivesItems,
// Header and the non-body parameter sub-schemas, starting at `first`.
constexpr std::array<Field, 17> PrimitiveFields(int first) {
  return {{
      {"type", first, Kind::kString},
      {"format", first + 1, Kind::kString},
      {"items", first + 2, Kind::kMessage, EncodePrimitivesItems},
      {"collectionFormat", first + 3, Kind::kString},
      {"default", first + 4, Kind::kAny},
      {"maximum", first + 5, Kind::kDouble},
      {"exclusiveMaximum", first + 6, Kind::kBool},
      {"minimum", first + 7, Kind::kDouble},
      {"exclusiveMinimum", first + 8, Kind::kBool},
      {"maxLength", first + 9, Kind::kInt64},
      {"minLength", first + 10, Kind::kInt64},
      {"pattern", first + 11, Kind::kString},
      {"maxItems", first + 12, Kind::kInt64},
      {"minItems", first + 13, Kind::kInt64},
      {"uniqueItems", first + 14, Kind::kBool},
      {"enum", first + 15, Kind::kAnys},
      {"multipleOf", first + 16, Kind::kDouble},
  }};
}

Status EncodePrimitivesItems(const json& j, const Ptr& path, std::string* out) {
  static constexpr auto kFields = PrimitiveFields(1);
  return EncodeObject(j, path, "Items object", {kFields}, 18, out);
}

Status EncodeHeader(const json& j, const Ptr& path, std::string* out) {
  static constexpr auto kPrimitive = PrimitiveFields(1);
  static constexpr Field kTail[] = {{"description", 18, Kind::kString}};
  return EncodeObject(j, path, "Header", {kPrimitive, kTail}, 19, out);
}

Status EncodeHeaders(const json& j, const Ptr& path, std::string* out) {
  return PutNamedMap(1, EncodeHeader, j, path, out);
}

// Examples: mime type -> any value.
Status EncodeExamples(const json& j, const Ptr& path, std::string* out) {
  return PutNamedMap(1, EncodeAny, j, path, out);
}

Status EncodeJsonReference(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {{"$ref", 1, Kind::kString},
                                      {"description", 2, Kind::kString}};
  return EncodeObject(j, path, "Reference object", {kFields}, 0, out);
}

// --- schemas ----------------------------------------------------------------

// TypeItem{repeated string value = 1}: "type" is a string or a list of them.
Status EncodeTypeItem(const json& j, const Ptr& path, std::string* out) {
  if (j.is_string()) return PutString(1, j, path, out);
  if (!j.is_array()) return Invalid(path, "must be a string or an array of strings");
  for (size_t i = 0; i < j.size(); ++i) CORRAL_RETURN_IF_ERROR(PutString(1, j[i], path / i, out));
  return Status::Ok();
}

// ItemsItem{repeated Schema schema = 1}: "items" is a schema or a list of them.
Status EncodeItemsItem(const json& j, const Ptr& path, std::string* out) {
  if (j.is_object()) return PutMessage(1, EncodeSchema, j, path, out);
  if (!j.is_array()) return Invalid(path, "must be a schema object or an array of them");
  for (size_t i = 0; i < j.size(); ++i) {
    CORRAL_RETURN_IF_ERROR(PutMessage(1, EncodeSchema, j[i], path / i, out));
  }
  return Status::Ok();
}

// AdditionalPropertiesItem{oneof {Schema schema = 1; bool boolean = 2;}}.
Status EncodeAdditionalPropertiesItem(const json& j, const Ptr& path, std::string* out) {
  if (j.is_boolean()) {
    PutBool(2, j.get<bool>(), out);
    return Status::Ok();
  }
  if (!j.is_object()) return Invalid(path, "must be a boolean or a schema object");
  return PutMessage(1, EncodeSchema, j, path, out);
}

// Properties{repeated NamedSchema additional_properties = 1}.
Status EncodeProperties(const json& j, const Ptr& path, std::string* out) {
  return PutNamedMap(1, EncodeSchema, j, path, out);
}

Status EncodeXml(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {
      {"name", 1, Kind::kString},    {"namespace", 2, Kind::kString}, {"prefix", 3, Kind::kString},
      {"attribute", 4, Kind::kBool}, {"wrapped", 5, Kind::kBool},
  };
  return EncodeObject(j, path, "XML object", {kFields}, 6, out);
}

Status EncodeSchema(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {
      {"$ref", 1, Kind::kString},
      {"format", 2, Kind::kString},
      {"title", 3, Kind::kString},
      {"description", 4, Kind::kString},
      {"default", 5, Kind::kAny},
      {"multipleOf", 6, Kind::kDouble},
      {"maximum", 7, Kind::kDouble},
      {"exclusiveMaximum", 8, Kind::kBool},
      {"minimum", 9, Kind::kDouble},
      {"exclusiveMinimum", 10, Kind::kBool},
      {"maxLength", 11, Kind::kInt64},
      {"minLength", 12, Kind::kInt64},
      {"pattern", 13, Kind::kString},
      {"maxItems", 14, Kind::kInt64},
      {"minItems", 15, Kind::kInt64},
      {"uniqueItems", 16, Kind::kBool},
      {"maxProperties", 17, Kind::kInt64},
      {"minProperties", 18, Kind::kInt64},
      {"required", 19, Kind::kStrings},
      {"enum", 20, Kind::kAnys},
      {"additionalProperties", 21, Kind::kMessage, EncodeAdditionalPropertiesItem},
      {"type", 22, Kind::kMessage, EncodeTypeItem},
      {"items", 23, Kind::kMessage, EncodeItemsItem},
      {"allOf", 24, Kind::kMessages, EncodeSchema},
      {"properties", 25, Kind::kMessage, EncodeProperties},
      {"discriminator", 26, Kind::kString},
      {"readOnly", 27, Kind::kBool},
      {"xml", 28, Kind::kMessage, EncodeXml},
      {"externalDocs", 29, Kind::kMessage, EncodeExternalDocs},
      {"example", 30, Kind::kAny},
  };
  return EncodeObject(j, path, "Schema object", {kFields}, 31, out);
}

Status EncodeFileSchema(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {
      {"format", 1, Kind::kString},      {"title", 2, Kind::kString},
      {"description", 3, Kind::kString}, {"default", 4, Kind::kAny},
      {"required", 5, Kind::kStrings},   {"type", 6, Kind::kString},
      {"readOnly", 7, Kind::kBool},      {"externalDocs", 8, Kind::kMessage, EncodeExternalDocs},
      {"example", 9, Kind::kAny},
  };
  return EncodeObject(j, path, "File schema", {kFields}, 10, out);
}

// SchemaItem{oneof {Schema schema = 1; FileSchema file_schema = 2;}}: a
// response's schema is a FileSchema exactly when its type is "file".
Status EncodeSchemaItem(const json& j, const Ptr& path, std::string* out) {
  if (j.is_object()) {
    const auto type = j.find("type");
    if (type != j.end() && type->is_string() && type->get_ref<const std::string&>() == "file") {
      return PutMessage(2, EncodeFileSchema, j, path, out);
    }
  }
  return PutMessage(1, EncodeSchema, j, path, out);
}

// Definitions{repeated NamedSchema additional_properties = 1}.
Status EncodeDefinitions(const json& j, const Ptr& path, std::string* out) {
  return PutNamedMap(1, EncodeSchema, j, path, out);
}

// --- parameters -------------------------------------------------------------

Status EncodeBodyParameter(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {
      {"description", 1, Kind::kString},
      {"name", 2, Kind::kString},
      {"in", 3, Kind::kString},
      {"required", 4, Kind::kBool},
      {"schema", 5, Kind::kMessage, EncodeSchema},
  };
  return EncodeObject(j, path, "body parameter", {kFields}, 6, out);
}

// Header and path parameters share one layout.
Status EncodeHeaderOrPathParameter(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kHead[] = {
      {"required", 1, Kind::kBool},
      {"in", 2, Kind::kString},
      {"description", 3, Kind::kString},
      {"name", 4, Kind::kString},
  };
  static constexpr auto kPrimitive = PrimitiveFields(5);
  return EncodeObject(j, path, "parameter", {kHead, kPrimitive}, 22, out);
}

// Query and formData parameters share one layout (with allowEmptyValue).
Status EncodeQueryOrFormDataParameter(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kHead[] = {
      {"required", 1, Kind::kBool},        {"in", 2, Kind::kString},
      {"description", 3, Kind::kString},   {"name", 4, Kind::kString},
      {"allowEmptyValue", 5, Kind::kBool},
  };
  static constexpr auto kPrimitive = PrimitiveFields(6);
  return EncodeObject(j, path, "parameter", {kHead, kPrimitive}, 23, out);
}

// Parameter{oneof {BodyParameter body_parameter = 1;
//                  NonBodyParameter non_body_parameter = 2;}}, chosen by "in";
// NonBodyParameter is itself a oneof: header 1, formData 2, query 3, path 4.
Status EncodeParameter(const json& j, const Ptr& path, std::string* out) {
  if (!j.is_object()) return Invalid(path, "must be an object (a parameter)");
  const auto in = j.find("in");
  if (in == j.end() || !in->is_string()) {
    return Invalid(path / "in", "a parameter needs \"in\" (body, query, path, header or formData)");
  }
  const auto& where = in->get_ref<const std::string&>();
  if (where == "body") return PutMessage(1, EncodeBodyParameter, j, path, out);
  int variant = 0;
  EncodeFn fn = nullptr;
  if (where == "header") {
    variant = 1;
    fn = EncodeHeaderOrPathParameter;
  } else if (where == "formData") {
    variant = 2;
    fn = EncodeQueryOrFormDataParameter;
  } else if (where == "query") {
    variant = 3;
    fn = EncodeQueryOrFormDataParameter;
  } else if (where == "path") {
    variant = 4;
    fn = EncodeHeaderOrPathParameter;
  } else {
    return Invalid(path / "in", "\"" + where +
                                    "\" is not a parameter location (body, query, path, "
                                    "header or formData)");
  }
  std::string non_body;
  CORRAL_RETURN_IF_ERROR(PutMessage(variant, fn, j, path, &non_body));
  PutBytes(2, non_body, out);
  return Status::Ok();
}

// ParametersItem{oneof {Parameter parameter = 1; JsonReference json_reference = 2;}}.
Status EncodeParametersItem(const json& j, const Ptr& path, std::string* out) {
  if (j.is_object() && j.contains("$ref")) return PutMessage(2, EncodeJsonReference, j, path, out);
  return PutMessage(1, EncodeParameter, j, path, out);
}

// ParameterDefinitions{repeated NamedParameter additional_properties = 1}.
Status EncodeParameterDefinitions(const json& j, const Ptr& path, std::string* out) {
  return PutNamedMap(1, EncodeParameter, j, path, out);
}

// --- responses --------------------------------------------------------------

Status EncodeResponse(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {
      {"description", 1, Kind::kString},
      {"schema", 2, Kind::kMessage, EncodeSchemaItem},
      {"headers", 3, Kind::kMessage, EncodeHeaders},
      {"examples", 4, Kind::kMessage, EncodeExamples},
  };
  return EncodeObject(j, path, "Response object", {kFields}, 5, out);
}

// ResponseValue{oneof {Response response = 1; JsonReference json_reference = 2;}}.
Status EncodeResponseValue(const json& j, const Ptr& path, std::string* out) {
  if (j.is_object() && j.contains("$ref")) return PutMessage(2, EncodeJsonReference, j, path, out);
  return PutMessage(1, EncodeResponse, j, path, out);
}

// Responses{repeated NamedResponseValue response_code = 1;
//           repeated NamedAny vendor_extension = 2;}: keys are HTTP status
// codes or "default".
Status EncodeResponses(const json& j, const Ptr& path, std::string* out) {
  if (!j.is_object()) return Invalid(path, "must be an object (a Responses object)");
  for (const auto& [key, value] : j.items()) {
    if (IsVendorExtension(key)) continue;
    const bool is_code =
        key.size() == 3 && key.find_first_not_of("0123456789") == std::string::npos;
    if (!is_code && key != "default") {
      return Invalid(path / key, "a response key must be an HTTP status code or \"default\"");
    }
    std::string named;
    PutBytes(1, key, &named);
    CORRAL_RETURN_IF_ERROR(PutMessage(2, EncodeResponseValue, value, path / key, &named));
    PutBytes(1, named, out);
  }
  for (const auto& [key, value] : j.items()) {
    if (!IsVendorExtension(key)) continue;
    CORRAL_RETURN_IF_ERROR(PutVendorExtension(2, key, value, path / key, out));
  }
  return Status::Ok();
}

// ResponseDefinitions{repeated NamedResponse additional_properties = 1}.
Status EncodeResponseDefinitions(const json& j, const Ptr& path, std::string* out) {
  return PutNamedMap(1, EncodeResponse, j, path, out);
}

// --- security ---------------------------------------------------------------

// StringArray{repeated string value = 1}.
Status EncodeStringArray(const json& j, const Ptr& path, std::string* out) {
  if (!j.is_array()) return Invalid(path, "must be an array of strings");
  for (size_t i = 0; i < j.size(); ++i) CORRAL_RETURN_IF_ERROR(PutString(1, j[i], path / i, out));
  return Status::Ok();
}

// SecurityRequirement{repeated NamedStringArray additional_properties = 1}.
Status EncodeSecurityRequirement(const json& j, const Ptr& path, std::string* out) {
  return PutNamedMap(1, EncodeStringArray, j, path, out);
}

// Oauth2Scopes{repeated NamedString additional_properties = 1}: the value is a
// plain string, not a message.
Status EncodeOauth2Scopes(const json& j, const Ptr& path, std::string* out) {
  if (!j.is_object()) return Invalid(path, "must be an object of scope -> description");
  for (const auto& [key, value] : j.items()) {
    if (!IsUtf8(key)) return Invalid(path / key, "key is not valid UTF-8");
    std::string named;
    PutBytes(1, key, &named);
    CORRAL_RETURN_IF_ERROR(PutString(2, value, path / key, &named));
    PutBytes(1, named, out);
  }
  return Status::Ok();
}

Status EncodeSecurityDefinitionsItem(const json& j, const Ptr& path, std::string* out) {
  if (!j.is_object()) return Invalid(path, "must be an object (a Security Scheme)");
  const auto type = j.find("type");
  if (type == j.end() || !type->is_string()) {
    return Invalid(path / "type", "a security scheme needs \"type\" (basic, apiKey or oauth2)");
  }
  const auto& t = type->get_ref<const std::string&>();
  if (t == "basic") {
    static constexpr Field kFields[] = {{"type", 1, Kind::kString},
                                        {"description", 2, Kind::kString}};
    std::string body;
    CORRAL_RETURN_IF_ERROR(EncodeObject(j, path, "basic security scheme", {kFields}, 3, &body));
    PutBytes(1, body, out);
    return Status::Ok();
  }
  if (t == "apiKey") {
    static constexpr Field kFields[] = {
        {"type", 1, Kind::kString},
        {"name", 2, Kind::kString},
        {"in", 3, Kind::kString},
        {"description", 4, Kind::kString},
    };
    std::string body;
    CORRAL_RETURN_IF_ERROR(EncodeObject(j, path, "apiKey security scheme", {kFields}, 5, &body));
    PutBytes(2, body, out);
    return Status::Ok();
  }
  if (t != "oauth2") {
    return Invalid(path / "type", "\"" + t + "\" is not a security scheme type");
  }
  const auto flow = j.find("flow");
  const std::string f = flow != j.end() && flow->is_string() ? flow->get<std::string>() : "";
  static constexpr Field kImplicit[] = {
      {"type", 1, Kind::kString},
      {"flow", 2, Kind::kString},
      {"scopes", 3, Kind::kMessage, EncodeOauth2Scopes},
      {"authorizationUrl", 4, Kind::kString},
      {"description", 5, Kind::kString},
  };
  static constexpr Field kTokenOnly[] = {
      // password and application flows
      {"type", 1, Kind::kString},
      {"flow", 2, Kind::kString},
      {"scopes", 3, Kind::kMessage, EncodeOauth2Scopes},
      {"tokenUrl", 4, Kind::kString},
      {"description", 5, Kind::kString},
  };
  static constexpr Field kAccessCode[] = {
      {"type", 1, Kind::kString},
      {"flow", 2, Kind::kString},
      {"scopes", 3, Kind::kMessage, EncodeOauth2Scopes},
      {"authorizationUrl", 4, Kind::kString},
      {"tokenUrl", 5, Kind::kString},
      {"description", 6, Kind::kString},
  };
  std::string body;
  if (f == "implicit") {
    CORRAL_RETURN_IF_ERROR(EncodeObject(j, path, "oauth2 security scheme", {kImplicit}, 6, &body));
    PutBytes(3, body, out);
  } else if (f == "password" || f == "application") {
    CORRAL_RETURN_IF_ERROR(EncodeObject(j, path, "oauth2 security scheme", {kTokenOnly}, 6, &body));
    PutBytes(f == "password" ? 4 : 5, body, out);
  } else if (f == "accessCode") {
    CORRAL_RETURN_IF_ERROR(
        EncodeObject(j, path, "oauth2 security scheme", {kAccessCode}, 7, &body));
    PutBytes(6, body, out);
  } else {
    return Invalid(path / "flow",
                   "an oauth2 scheme needs \"flow\" (implicit, password, application or "
                   "accessCode)");
  }
  return Status::Ok();
}

// SecurityDefinitions{repeated NamedSecurityDefinitionsItem additional_properties = 1}.
Status EncodeSecurityDefinitions(const json& j, const Ptr& path, std::string* out) {
  return PutNamedMap(1, EncodeSecurityDefinitionsItem, j, path, out);
}

// --- document ---------------------------------------------------------------

Status EncodeExternalDocs(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {{"description", 1, Kind::kString}, {"url", 2, Kind::kString}};
  return EncodeObject(j, path, "External Documentation object", {kFields}, 3, out);
}

Status EncodeTag(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {
      {"name", 1, Kind::kString},
      {"description", 2, Kind::kString},
      {"externalDocs", 3, Kind::kMessage, EncodeExternalDocs},
  };
  return EncodeObject(j, path, "Tag object", {kFields}, 4, out);
}

Status EncodeContact(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {
      {"name", 1, Kind::kString}, {"url", 2, Kind::kString}, {"email", 3, Kind::kString}};
  return EncodeObject(j, path, "Contact object", {kFields}, 4, out);
}

Status EncodeLicense(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {{"name", 1, Kind::kString}, {"url", 2, Kind::kString}};
  return EncodeObject(j, path, "License object", {kFields}, 3, out);
}

Status EncodeInfo(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {
      {"title", 1, Kind::kString},
      {"version", 2, Kind::kString},
      {"description", 3, Kind::kString},
      {"termsOfService", 4, Kind::kString},
      {"contact", 5, Kind::kMessage, EncodeContact},
      {"license", 6, Kind::kMessage, EncodeLicense},
  };
  return EncodeObject(j, path, "Info object", {kFields}, 7, out);
}

Status EncodeOperation(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {
      {"tags", 1, Kind::kStrings},
      {"summary", 2, Kind::kString},
      {"description", 3, Kind::kString},
      {"externalDocs", 4, Kind::kMessage, EncodeExternalDocs},
      {"operationId", 5, Kind::kString},
      {"produces", 6, Kind::kStrings},
      {"consumes", 7, Kind::kStrings},
      {"parameters", 8, Kind::kMessages, EncodeParametersItem},
      {"responses", 9, Kind::kMessage, EncodeResponses},
      {"schemes", 10, Kind::kStrings},
      {"deprecated", 11, Kind::kBool},
      {"security", 12, Kind::kMessages, EncodeSecurityRequirement},
  };
  return EncodeObject(j, path, "Operation object", {kFields}, 13, out);
}

Status EncodePathItem(const json& j, const Ptr& path, std::string* out) {
  static constexpr Field kFields[] = {
      {"$ref", 1, Kind::kString},
      {"get", 2, Kind::kMessage, EncodeOperation},
      {"put", 3, Kind::kMessage, EncodeOperation},
      {"post", 4, Kind::kMessage, EncodeOperation},
      {"delete", 5, Kind::kMessage, EncodeOperation},
      {"options", 6, Kind::kMessage, EncodeOperation},
      {"head", 7, Kind::kMessage, EncodeOperation},
      {"patch", 8, Kind::kMessage, EncodeOperation},
      {"parameters", 9, Kind::kMessages, EncodeParametersItem},
  };
  return EncodeObject(j, path, "Path Item object", {kFields}, 10, out);
}

// Paths{repeated NamedAny vendor_extension = 1; repeated NamedPathItem path = 2;}:
// every key is a path ("/...") or an extension. Written in field order.
Status EncodePaths(const json& j, const Ptr& path, std::string* out) {
  if (!j.is_object()) return Invalid(path, "must be an object (a Paths object)");
  for (const auto& [key, value] : j.items()) {
    if (!IsVendorExtension(key) && !key.starts_with("/")) {
      return Invalid(path / key, "a path must start with \"/\"");
    }
  }
  for (const auto& [key, value] : j.items()) {
    if (!IsVendorExtension(key)) continue;
    CORRAL_RETURN_IF_ERROR(PutVendorExtension(1, key, value, path / key, out));
  }
  for (const auto& [key, value] : j.items()) {
    if (IsVendorExtension(key)) continue;
    if (!IsUtf8(key)) return Invalid(path / key, "key is not valid UTF-8");
    std::string named;
    PutBytes(1, key, &named);
    CORRAL_RETURN_IF_ERROR(PutMessage(2, EncodePathItem, value, path / key, &named));
    PutBytes(2, named, out);
  }
  return Status::Ok();
}

Status EncodeDocument(const json& j, std::string* out) {
  static constexpr Field kFields[] = {
      {"swagger", 1, Kind::kString},
      {"info", 2, Kind::kMessage, EncodeInfo},
      {"host", 3, Kind::kString},
      {"basePath", 4, Kind::kString},
      {"schemes", 5, Kind::kStrings},
      {"consumes", 6, Kind::kStrings},
      {"produces", 7, Kind::kStrings},
      {"paths", 8, Kind::kMessage, EncodePaths},
      {"definitions", 9, Kind::kMessage, EncodeDefinitions},
      {"parameters", 10, Kind::kMessage, EncodeParameterDefinitions},
      {"responses", 11, Kind::kMessage, EncodeResponseDefinitions},
      {"security", 12, Kind::kMessages, EncodeSecurityRequirement},
      {"securityDefinitions", 13, Kind::kMessage, EncodeSecurityDefinitions},
      {"tags", 14, Kind::kMessages, EncodeTag},
      {"externalDocs", 15, Kind::kMessage, EncodeExternalDocs},
  };
  const Ptr root;
  if (!j.is_object()) return Invalid(root, "must be an object (a Swagger 2.0 document)");
  // An OpenAPI 3 document has no "swagger" key and would otherwise fail later
  // with a confusing unknown-field error.
  const auto version = j.find("swagger");
  if (version == j.end() || !version->is_string() ||
      version->get_ref<const std::string&>() != "2.0") {
    return Invalid(root / "swagger", "must be \"2.0\" (this encodes Swagger 2.0 documents only)");
  }
  return EncodeObject(j, root, "document", {kFields}, 16, out);
}

}  // namespace

common::Result<std::string> EncodeOpenApiV2Proto(const nlohmann::json& swagger) {
  std::string out;
  Status status = EncodeDocument(swagger, &out);
  if (!status.ok()) return status;
  return out;
}

}  // namespace corral::api
