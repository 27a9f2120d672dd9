#include "store/validation.h"

#include <algorithm>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace corral::store {
namespace {

constexpr std::size_t kDns1123LabelMaxLength = 63;
constexpr std::size_t kDns1123SubdomainMaxLength = 253;
constexpr std::size_t kQualifiedNameMaxLength = 63;
constexpr std::size_t kLabelValueMaxLength = 63;
// Kubernetes' TotalAnnotationSizeLimitB: keys plus values, in bytes.
constexpr std::size_t kTotalAnnotationSizeLimit = 256 * 1024;

constexpr std::string_view kDns1123LabelError =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character";
constexpr std::string_view kDns1123SubdomainError =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character";
constexpr std::string_view kQualifiedNameError =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character";
constexpr std::string_view kLabelValueError =
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character";

bool IsLowerAlphanumeric(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlphanumeric(char c) { return IsLowerAlphanumeric(c) || (c >= 'A' && c <= 'Z'); }

// [a-z0-9]([-a-z0-9]*[a-z0-9])?
bool MatchesDns1123Label(std::string_view s) {
  if (s.empty() || !IsLowerAlphanumeric(s.front()) || !IsLowerAlphanumeric(s.back())) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](char c) { return IsLowerAlphanumeric(c) || c == '-'; });
}

// Labels of the label pattern joined by '.'. Unlike a DNS name, Kubernetes does
// not bound each dot-separated part to 63 characters, only the whole.
bool MatchesDns1123Subdomain(std::string_view s) {
  while (true) {
    std::size_t dot = s.find('.');
    if (!MatchesDns1123Label(s.substr(0, dot))) return false;
    if (dot == std::string_view::npos) return true;
    s.remove_prefix(dot + 1);
  }
}

// ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]
bool MatchesQualifiedNamePart(std::string_view s) {
  if (s.empty() || !IsAlphanumeric(s.front()) || !IsAlphanumeric(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlphanumeric(c) || c == '-' || c == '_' || c == '.'; });
}

std::string MaxLengthError(std::size_t max) {
  return "must be no more than " + std::to_string(max) + " characters";
}

std::string Join(const std::vector<std::string>& reasons) {
  std::string out;
  for (const std::string& r : reasons) {
    if (!out.empty()) out += "; ";
    out += r;
  }
  return out;
}

std::vector<std::string> Dns1123SubdomainErrors(std::string_view s) {
  std::vector<std::string> errors;
  if (s.size() > kDns1123SubdomainMaxLength)
    errors.push_back(MaxLengthError(kDns1123SubdomainMaxLength));
  if (!MatchesDns1123Subdomain(s)) errors.emplace_back(kDns1123SubdomainError);
  return errors;
}

// JSON string quoting: keeps messages readable and unambiguous for keys that
// contain quotes, control characters or invalid UTF-8 (which must not throw).
std::string Quote(std::string_view s) {
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string TypeName(const nlohmann::json& v) { return v.type_name(); }

// Checks one labels/annotations map; returns the total size of its keys and
// string values.
std::size_t ValidateStringMap(const nlohmann::json& map, const std::string& field,
                              bool lowercase_keys, bool check_values, std::vector<Cause>& causes) {
  std::size_t total = 0;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const std::string& key = it.key();
    std::string entry = field + "[" + key + "]";
    total += key.size();
    std::string key_to_check = key;
    if (lowercase_keys) {
      std::transform(key_to_check.begin(), key_to_check.end(), key_to_check.begin(),
                     [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; });
    }
    if (std::string reason = CheckLabelKey(key_to_check); !reason.empty()) {
      causes.push_back({entry, "invalid key: " + reason});
    }
    if (!it->is_string()) {
      causes.push_back({entry, "value must be a string, not " + TypeName(*it)});
      continue;
    }
    const std::string& value = it->get_ref<const std::string&>();
    total += value.size();
    if (check_values) {
      if (std::string reason = CheckLabelValue(value); !reason.empty()) {
        causes.push_back({entry, "invalid value " + Quote(value) + ": " + reason});
      }
    }
  }
  return total;
}

}  // namespace

std::string CheckDns1123Subdomain(std::string_view s) { return Join(Dns1123SubdomainErrors(s)); }

std::string CheckDns1123Label(std::string_view s) {
  std::vector<std::string> errors;
  if (s.size() > kDns1123LabelMaxLength) errors.push_back(MaxLengthError(kDns1123LabelMaxLength));
  if (!MatchesDns1123Label(s)) errors.emplace_back(kDns1123LabelError);
  return Join(errors);
}

std::string CheckLabelKey(std::string_view s) {
  std::vector<std::string> errors;
  std::string_view name = s;
  std::size_t slash = s.find('/');
  if (slash != std::string_view::npos) {
    if (s.find('/', slash + 1) != std::string_view::npos) {
      return "a qualified name " + std::string(kQualifiedNameError) +
             ", with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
    }
    std::string_view prefix = s.substr(0, slash);
    name = s.substr(slash + 1);
    if (prefix.empty()) {
      errors.emplace_back("prefix part must be non-empty");
    } else {
      for (const std::string& e : Dns1123SubdomainErrors(prefix)) {
        errors.push_back("prefix part " + e);
      }
    }
  }
  if (name.empty()) {
    errors.emplace_back("name part must be non-empty");
  } else {
    if (name.size() > kQualifiedNameMaxLength) {
      errors.push_back("name part " + MaxLengthError(kQualifiedNameMaxLength));
    }
    if (!MatchesQualifiedNamePart(name)) {
      errors.push_back("name part " + std::string(kQualifiedNameError));
    }
  }
  return Join(errors);
}

std::string CheckLabelValue(std::string_view s) {
  std::vector<std::string> errors;
  if (s.size() > kLabelValueMaxLength) errors.push_back(MaxLengthError(kLabelValueMaxLength));
  if (!s.empty() && !MatchesQualifiedNamePart(s)) errors.emplace_back(kLabelValueError);
  return Join(errors);
}

void ValidateLabelsAndAnnotations(const nlohmann::json& metadata, std::vector<Cause>& causes) {
  if (!metadata.is_object()) return;

  if (auto it = metadata.find("labels"); it != metadata.end() && !it->is_null()) {
    if (!it->is_object()) {
      causes.push_back({"metadata.labels",
                        "must be an object of string keys to string values, not " + TypeName(*it)});
    } else {
      ValidateStringMap(*it, "metadata.labels", /*lowercase_keys=*/false, /*check_values=*/true,
                        causes);
    }
  }

  if (auto it = metadata.find("annotations"); it != metadata.end() && !it->is_null()) {
    if (!it->is_object()) {
      causes.push_back({"metadata.annotations",
                        "must be an object of string keys to string values, not " + TypeName(*it)});
    } else {
      std::size_t total = ValidateStringMap(*it, "metadata.annotations", /*lowercase_keys=*/true,
                                            /*check_values=*/false, causes);
      if (total > kTotalAnnotationSizeLimit) {
        causes.push_back({"metadata.annotations", "too long: must have at most " +
                                                      std::to_string(kTotalAnnotationSizeLimit) +
                                                      " bytes, has " + std::to_string(total)});
      }
    }
  }
}

}  // namespace corral::store
