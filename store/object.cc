#include "store/object.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdio>

#include "store/validation.h"

namespace corral::store {

using common::FieldCause;
using common::Result;
using common::Status;
using nlohmann::json;

std::string ObjectKey::ToString() const {
  return ns.empty() ? kind + " " + name : kind + " " + ns + "/" + name;
}

std::string_view WatchEvent::TypeName(Type t) {
  switch (t) {
    case Type::kAdded: return "ADDED";
    case Type::kModified: return "MODIFIED";
    case Type::kDeleted: return "DELETED";
    case Type::kBookmark: return "BOOKMARK";
    case Type::kError: return "ERROR";
  }
  return "ERROR";
}

Result<json> ParseObjectJson(std::string_view text, size_t max_bytes) {
  if (text.size() > max_bytes) {
    return Status(common::Code::kInvalidArgument,
                  "object is " + std::to_string(text.size()) + " bytes, over the limit of " +
                      std::to_string(max_bytes) + " bytes",
                  {{"", "object too large"}});
  }
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    return Status(common::Code::kInvalidArgument, std::string("malformed JSON: ") + e.what(),
                  {{"", "malformed JSON at byte " + std::to_string(e.byte)}});
  }
}

Status ValidateKey(const KindRegistry& kinds, const ObjectKey& key) {
  const KindInfo* info = kinds.Find(key.kind);
  if (!info) return common::InvalidArgument("unknown kind \"" + key.kind + "\"");
  if (info->namespaced && key.ns.empty()) {
    return common::InvalidArgument(key.kind + " is namespaced: a namespace is required");
  }
  if (!info->namespaced && !key.ns.empty()) {
    return common::InvalidArgument(key.kind + " is cluster-scoped: namespace \"" + key.ns +
                                   "\" must be empty");
  }
  return Status::Ok();
}

Result<ObjectKey> ValidateObject(const KindRegistry& kinds, const json& object, size_t max_bytes) {
  std::vector<FieldCause> causes;
  if (!object.is_object()) {
    return Status(common::Code::kInvalidArgument, "object must be a JSON object",
                  {{"", "must be a JSON object"}});
  }
  ObjectKey key;
  const KindInfo* info = nullptr;
  auto kind_it = object.find("kind");
  if (kind_it == object.end() || !kind_it->is_string() || kind_it->get<std::string>().empty()) {
    causes.push_back({"kind", "Required value: kind must be set"});
  } else {
    key.kind = kind_it->get<std::string>();
    info = kinds.Find(key.kind);
    if (!info) causes.push_back({"kind", "Unsupported value: unknown kind \"" + key.kind + "\""});
  }
  auto av_it = object.find("apiVersion");
  if (av_it == object.end() || !av_it->is_string()) {
    causes.push_back({"apiVersion", "Required value: apiVersion must be set"});
  } else if (info && av_it->get<std::string>() != info->ApiVersion()) {
    causes.push_back({"apiVersion", "Invalid value: \"" + av_it->get<std::string>() +
                                        "\": " + key.kind + " is served as " + info->ApiVersion()});
  }
  auto md_it = object.find("metadata");
  if (md_it == object.end() || !md_it->is_object()) {
    causes.push_back({"metadata", "Required value: metadata must be an object"});
  } else {
    const json& md = *md_it;
    auto name_it = md.find("name");
    if (name_it == md.end() || !name_it->is_string() || name_it->get<std::string>().empty()) {
      causes.push_back({"metadata.name", "Required value: name is required"});
    } else {
      key.name = name_it->get<std::string>();
      if (std::string why = CheckDns1123Subdomain(key.name); !why.empty()) {
        causes.push_back({"metadata.name", "Invalid value: \"" + key.name + "\": " + why});
      }
    }
    auto ns_it = md.find("namespace");
    if (ns_it != md.end() && !ns_it->is_null()) {
      if (!ns_it->is_string()) {
        causes.push_back({"metadata.namespace", "Invalid value: must be a string"});
      } else {
        key.ns = ns_it->get<std::string>();
      }
    }
    if (info && info->namespaced) {
      if (key.ns.empty()) {
        causes.push_back({"metadata.namespace", "Required value: " + key.kind + " is namespaced"});
      } else if (std::string why = CheckDns1123Label(key.ns); !why.empty()) {
        causes.push_back({"metadata.namespace", "Invalid value: \"" + key.ns + "\": " + why});
      }
    } else if (info && !key.ns.empty()) {
      causes.push_back({"metadata.namespace", "Forbidden: " + key.kind +
                                                  " is cluster-scoped; namespace \"" + key.ns +
                                                  "\" must be empty"});
    }
    ValidateLabelsAndAnnotations(md, causes);
    for (const char* f : {"uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"}) {
      auto it = md.find(f);
      if (it != md.end() && !it->is_null() && !it->is_string()) {
        causes.push_back({std::string("metadata.") + f, "Invalid value: must be a string"});
      }
    }
    if (auto it = md.find("finalizers"); it != md.end() && !it->is_null()) {
      bool ok = it->is_array();
      if (ok) {
        for (const auto& f : *it) ok = ok && f.is_string();
      }
      if (!ok)
        causes.push_back({"metadata.finalizers", "Invalid value: must be a list of strings"});
    }
  }
  for (const char* part : {"spec", "status"}) {
    auto it = object.find(part);
    if (it != object.end() && !it->is_null() && !it->is_object()) {
      causes.push_back({part, "Invalid value: must be an object"});
    }
  }
  if (causes.empty() && max_bytes > 0) {
    const size_t size = object.dump().size();
    if (size > max_bytes) {
      causes.push_back({"", "Too long: object is " + std::to_string(size) +
                                " bytes, over the limit of " + std::to_string(max_bytes)});
    }
  }
  if (!causes.empty()) {
    std::string what = key.kind.empty() ? "object" : key.kind;
    if (!key.name.empty()) what += " \"" + key.name + "\"";
    std::string message = what + " is invalid: ";
    for (size_t i = 0; i < causes.size(); ++i) {
      if (i) message += ", ";
      message +=
          causes[i].field.empty() ? causes[i].message : causes[i].field + ": " + causes[i].message;
    }
    return Status(common::Code::kInvalidArgument, message, std::move(causes));
  }
  return key;
}

std::string NewUid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    // RAND_bytes fails only if the OS entropy source does; fall back to a non-crypto source
    // rather than abort (uids need uniqueness, not secrecy).
    for (auto& c : b) c = static_cast<unsigned char>(std::rand());
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

bool SpecChanged(const json& before, const json& after) {
  if (!before.is_object() || !after.is_object()) return before != after;
  auto skip = [](const std::string& k) { return k == "metadata" || k == "status"; };
  size_t n_before = 0, n_after = 0;
  for (auto it = before.begin(); it != before.end(); ++it) {
    if (skip(it.key())) continue;
    ++n_before;
    auto other = after.find(it.key());
    if (other == after.end() || *other != *it) return true;
  }
  for (auto it = after.begin(); it != after.end(); ++it) n_after += skip(it.key()) ? 0 : 1;
  return n_before != n_after;
}

namespace {

std::string Base64UrlEncode(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  for (auto& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

bool Base64UrlDecode(std::string_view in, std::string& out) {
  std::string s(in);
  for (auto& c : s) {
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/')
      return false;
  }
  size_t pad = 0;
  while (s.size() % 4 != 0) {
    s.push_back('=');
    ++pad;
  }
  if (pad > 2) return false;
  out.assign(3 * s.size() / 4 + 1, '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (n < 0) return false;
  out.resize(static_cast<size_t>(n) - pad);
  return true;
}

}  // namespace

std::string EncodeContinue(const ContinueToken& token) {
  const json j = {{"v", 1}, {"rv", token.revision}, {"ns", token.ns}, {"n", token.name}};
  return Base64UrlEncode(j.dump());
}

Result<ContinueToken> DecodeContinue(std::string_view token) {
  std::string raw;
  const auto bad = common::InvalidArgument("continue: invalid continue token");
  if (!Base64UrlDecode(token, raw)) return bad;
  try {
    const json j = json::parse(raw);
    if (j.value("v", 0) != 1) return bad;
    ContinueToken t{j.at("rv").get<int64_t>(), j.at("ns").get<std::string>(),
                    j.at("n").get<std::string>()};
    if (t.revision <= 0) return bad;
    return t;
  } catch (const json::exception&) {
    return bad;
  }
}

}  // namespace corral::store
