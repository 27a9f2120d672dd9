#pragma once
// Name, label and annotation checks with the rules and messages of
// k8s.io/apimachinery/pkg/util/validation, so clients see the errors they
// already know from Kubernetes.
//
// The Check* functions return an empty string when the input is valid, else a
// human-readable reason; when several rules fail (too long and a bad
// character) the reasons are joined with "; ". All functions are pure and
// thread-safe.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace corral::store {

// RFC 1123 subdomain: lower-case alphanumerics, '-' and '.', starting and ending
// with an alphanumeric, at most 253 characters (object names, label key
// prefixes).
std::string CheckDns1123Subdomain(std::string_view s);
// RFC 1123 label: lower-case alphanumerics and '-', starting and ending with an
// alphanumeric, at most 63 characters (namespace names).
std::string CheckDns1123Label(std::string_view s);
// Label key (a Kubernetes "qualified name"): an optional DNS subdomain prefix
// and '/', then a name of 1..63 characters [A-Za-z0-9-_.] that starts and ends
// with an alphanumeric.
std::string CheckLabelKey(std::string_view s);
// Label value: empty, or up to 63 characters [A-Za-z0-9-_.] that start and end
// with an alphanumeric.
std::string CheckLabelValue(std::string_view s);

// One problem found in an object; `field` is a path such as
// "metadata.labels[app/x]".
using Cause = common::FieldCause;

// Checks metadata.labels and metadata.annotations of `metadata` (the object's
// "metadata" member) and appends one Cause per problem to `causes` (existing
// entries are kept). Absent or null labels/annotations are valid.
//   labels:      an object of string values; keys pass CheckLabelKey, values
//                pass CheckLabelValue.
//   annotations: an object of string values; keys pass CheckLabelKey after
//                lower-casing (as Kubernetes does, so an upper-case prefix is
//                accepted); the keys and values together are at most 256 KiB.
// Does nothing when `metadata` is not an object; checking that is the caller's
// job.
void ValidateLabelsAndAnnotations(const nlohmann::json& metadata, std::vector<Cause>& causes);

}  // namespace corral::store
