#pragma once
// Label and field selectors with the syntax and semantics of Kubernetes
// (k8s.io/apimachinery/pkg/labels and pkg/fields), used by list and watch to
// filter objects.
//
// Both selector types are immutable values once parsed; their const methods
// are safe to call from many threads at once. A default-constructed selector
// is empty and matches every object.
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace corral::store {

// One comma-separated term of a label selector.
struct LabelRequirement {
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kDoesNotExist };

  std::string key;
  Op op = Op::kExists;
  // kEquals, kNotEquals: exactly one value (possibly ""). kIn, kNotIn: one or
  // more, sorted and without duplicates. kExists, kDoesNotExist: none.
  std::vector<std::string> values;

  bool operator==(const LabelRequirement&) const = default;
};

// A conjunction of label requirements, e.g. "app=web,tier in (a,b),!canary".
class LabelSelector {
 public:
  // The empty selector: matches everything.
  LabelSelector() = default;

  // Parses Kubernetes label selector syntax: `k=v`, `k==v`, `k!=v`,
  // `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, separated by ','; whitespace
  // between tokens is ignored; "" (or only whitespace) is the empty selector.
  // As in Kubernetes, `k=` means the value "", `k in ()` means the set {""},
  // keys must pass CheckLabelKey and values CheckLabelValue.
  // Errors: InvalidArgument `invalid label selector "<text>": <problem>`,
  // where the problem names the offending token, key or value.
  static common::Result<LabelSelector> Parse(std::string_view text);

  // `labels` is an object of string to string, or null/absent (no labels); any
  // other type is treated as no labels. As in Kubernetes, `!=` and `notin`
  // match objects that lack the key.
  bool Matches(const nlohmann::json& labels) const;

  bool empty() const { return requirements_.empty(); }
  // Sorted by key (stable: requirements on one key keep their input order).
  const std::vector<LabelRequirement>& requirements() const { return requirements_; }
  // Canonical form (`==` written as `=`, values sorted, requirements sorted by
  // key); Parse(ToString()) yields an equal selector. "" when empty.
  std::string ToString() const;

 private:
  explicit LabelSelector(std::vector<LabelRequirement> requirements)
      : requirements_(std::move(requirements)) {}

  std::vector<LabelRequirement> requirements_;
};

// One comma-separated term of a field selector: `field=value` (equals) or
// `field!=value`.
struct FieldRequirement {
  std::string field;
  bool equals = true;
  std::string value;  // unescaped

  bool operator==(const FieldRequirement&) const = default;
};

// A conjunction of field requirements, e.g. "metadata.name=a,spec.nodeName!=".
class FieldSelector {
 public:
  // The empty selector: matches everything.
  FieldSelector() = default;

  // Parses Kubernetes field selector syntax: `a=b`, `a==b`, `a!=b` separated by
  // ','. Values may be empty; in values `\,`, `\=` and `\\` stand for ',', '='
  // and '\', and any other backslash sequence or an unescaped '=' is an error.
  // Empty terms ("a=b,,c=d", a trailing ',') are skipped and whitespace is
  // significant, as in Kubernetes. Requirements keep their input order.
  // Errors: InvalidArgument `invalid field selector "<text>": <problem>`.
  static common::Result<FieldSelector> Parse(std::string_view text);

  // InvalidArgument `field label not supported: "spec.foo"` for the first
  // field not in `supported`; Ok otherwise.
  common::Status Validate(const std::vector<std::string>& supported) const;

  // Fields are dotted paths through nested objects ("metadata.name",
  // "spec.nodeName"). Each is compared as a string: a string as itself, a
  // missing field or null as "", anything else (numbers, bools, objects,
  // arrays) as its compact JSON text ("3", "true").
  bool Matches(const nlohmann::json& object) const;

  bool empty() const { return requirements_.empty(); }
  const std::vector<FieldRequirement>& requirements() const { return requirements_; }

  // The value of the first `field=value` (or `==`) requirement on `field`, if
  // any; lets a store narrow a query (e.g. by metadata.namespace). The caller
  // must still apply Matches: other requirements, even on the same field, are
  // not reflected here.
  std::optional<std::string> ExactValue(std::string_view field) const;

 private:
  explicit FieldSelector(std::vector<FieldRequirement> requirements)
      : requirements_(std::move(requirements)) {}

  std::vector<FieldRequirement> requirements_;
};

}  // namespace corral::store
