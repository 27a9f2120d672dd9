#include "api/body.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <set>

#include <charconv>
#include <cmath>

namespace corral::api {

using common::InvalidArgument;
using common::Result;
using nlohmann::json;

namespace {

struct TooDeep {};

std::pair<size_t, size_t> LineColumn(std::string_view text, size_t offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}

}  // namespace

Result<json> ParseJsonBody(std::string_view text, const BodyLimits& limits,
                           std::vector<std::string>* duplicates) {
  size_t nodes = 0;
  // Duplicate-key tracking: one frame per open object or array.
  struct Frame {
    bool object = false;
    std::string path;            // of this container
    std::set<std::string> keys;  // objects: keys seen
    std::string key;             // objects: the current key
    size_t index = 0;            // arrays: next element index
  };
  std::vector<Frame> frames;
  auto child_path = [&]() -> std::string {
    if (frames.empty()) return "";
    const Frame& f = frames.back();
    const std::string base = f.path.empty() ? "" : f.path;
    if (f.object) return base.empty() ? f.key : base + "." + f.key;
    return base + "[" + std::to_string(f.index) + "]";
  };
  try {
    json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
      if (depth > limits.max_depth) throw TooDeep{};
      if (event == json::parse_event_t::value && ++nodes > limits.max_nodes) throw TooDeep{};
      if (!duplicates) return true;
      switch (event) {
        case json::parse_event_t::object_start:
        case json::parse_event_t::array_start: {
          Frame f;
          f.object = event == json::parse_event_t::object_start;
          f.path = child_path();
          frames.push_back(std::move(f));
          break;
        }
        case json::parse_event_t::key:
          if (!frames.empty() && parsed.is_string()) {
            Frame& f = frames.back();
            f.key = parsed.get<std::string>();
            if (!f.keys.insert(f.key).second) duplicates->push_back(child_path());
          }
          break;
        case json::parse_event_t::object_end:
        case json::parse_event_t::array_end:
          if (!frames.empty()) frames.pop_back();
          if (!frames.empty() && !frames.back().object) ++frames.back().index;
          break;
        case json::parse_event_t::value:
          if (!frames.empty() && !frames.back().object) ++frames.back().index;
          break;
      }
      return true;
    };
    return json::parse(text.begin(), text.end(), cb);
  } catch (const TooDeep&) {
    return InvalidArgument("request body is nested deeper than " +
                           std::to_string(limits.max_depth) + " levels or has more than " +
                           std::to_string(limits.max_nodes) + " values");
  } catch (const json::parse_error& e) {
    auto [line, col] = LineColumn(text, e.byte > 0 ? e.byte - 1 : 0);
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: syntax error ..."
    if (auto p = what.find(": "); p != std::string::npos) what = what.substr(p + 2);
    if (auto p = what.find(": "); p != std::string::npos && what.rfind("parse error", 0) == 0) {
      what = what.substr(p + 2);
    }
    return InvalidArgument("invalid JSON in request body at line " + std::to_string(line) +
                           ", column " + std::to_string(col) + ": " + what);
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("invalid JSON in request body: ") + e.what());
  }
}

namespace {

// [-+]?[0-9]+
bool IsInteger(std::string_view s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool IsFloat(std::string_view s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    return i - start;
  };
  const size_t whole = digits();
  size_t frac = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    frac = digits();
  }
  if (whole == 0 && frac == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

class YamlConverter {
 public:
  YamlConverter(const BodyLimits& limits, std::vector<std::string>* duplicates)
      : limits_(limits), duplicates_(duplicates) {}

  Result<json> Convert(const YAML::Node& node, int depth) {
    if (++nodes_ > limits_.max_nodes) {
      return InvalidArgument("request body expands to more than " +
                             std::to_string(limits_.max_nodes) +
                             " values (YAML aliases are expanded; refusing a possible alias bomb)");
    }
    if (depth > limits_.max_depth) {
      return InvalidArgument("request body is nested deeper than " +
                             std::to_string(limits_.max_depth) + " levels");
    }
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null: return json(nullptr);
      case YAML::NodeType::Scalar: return Scalar(node);
      case YAML::NodeType::Sequence: {
        json out = json::array();
        for (const auto& item : node) {
          const std::string saved = path_;
          path_ += "[" + std::to_string(out.size()) + "]";
          auto v = Convert(item, depth + 1);
          path_ = saved;
          if (!v.ok()) return v;
          out.push_back(std::move(*v));
        }
        return out;
      }
      case YAML::NodeType::Map: {
        json out = json::object();
        for (const auto& kv : node) {
          if (!kv.first.IsScalar()) {
            return InvalidArgument("YAML map key at line " +
                                   std::to_string(kv.first.Mark().line + 1) + " is not a scalar");
          }
          const std::string& key = kv.first.Scalar();
          if (duplicates_ && out.contains(key)) {
            duplicates_->push_back(path_.empty() ? key : path_ + "." + key);
          }
          const std::string saved = path_;
          path_ = path_.empty() ? key : path_ + "." + key;
          auto v = Convert(kv.second, depth + 1);
          path_ = saved;
          if (!v.ok()) return v;
          out[key] = std::move(*v);
        }
        return out;
      }
    }
    return json(nullptr);
  }

 private:
  static json Scalar(const YAML::Node& node) {
    const std::string& s = node.Scalar();
    if (node.Tag() != "?") return s;  // quoted or explicitly tagged: a string
    if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    // Hand-classified (no std::regex: libstdc++'s recurses per character and
    // a long scalar would overflow the stack). Long scalars stay strings.
    if (s.size() > 64) return s;
    if (IsInteger(s)) {
      int64_t v = 0;
      const char* b = s.data() + (s[0] == '+' ? 1 : 0);
      auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
      if (ec == std::errc() && p == s.data() + s.size()) return v;
      return s;  // out of range: keep the text
    }
    if (IsFloat(s)) {
      double d = 0;
      const char* b = s.data() + (s[0] == '+' ? 1 : 0);
      auto [p, ec] = std::from_chars(b, s.data() + s.size(), d);
      if (ec == std::errc() && p == s.data() + s.size() && std::isfinite(d)) return d;
    }
    return s;
  }

  const BodyLimits& limits_;
  std::vector<std::string>* duplicates_;
  std::string path_;
  size_t nodes_ = 0;
};

}  // namespace

Result<json> ParseYamlBody(std::string_view text, const BodyLimits& limits,
                           std::vector<std::string>* duplicates) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::DeepRecursion& e) {
    return InvalidArgument(
        "request body is nested deeper than " + std::to_string(limits.max_depth) +
        " levels (YAML parser stopped at line " + std::to_string(e.mark.line + 1) + ")");
  } catch (const YAML::Exception& e) {
    return InvalidArgument("invalid YAML in request body at line " +
                           std::to_string(e.mark.line + 1) + ", column " +
                           std::to_string(e.mark.column + 1) + ": " + e.msg);
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("invalid YAML in request body: ") + e.what());
  }
  if (docs.size() != 1) {
    return InvalidArgument("request body must hold exactly one YAML document (got " +
                           std::to_string(docs.size()) + ")");
  }
  YamlConverter conv(limits, duplicates);
  auto out = conv.Convert(docs[0], 0);
  if (!out.ok()) return out;
  // yaml-cpp passes bytes through; JSON (and everything downstream) needs UTF-8.
  try {
    (void)out->dump();
  } catch (const json::type_error& e) {
    return InvalidArgument("request body is not valid UTF-8");
  }
  return out;
}

}  // namespace corral::api
