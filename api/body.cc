#include "api/body.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <regex>

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

Result<json> ParseJsonBody(std::string_view text, const BodyLimits& limits) {
  size_t nodes = 0;
  try {
    json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json&) {
      if (depth > limits.max_depth) throw TooDeep{};
      if (event == json::parse_event_t::value && ++nodes > limits.max_nodes) throw TooDeep{};
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

class YamlConverter {
 public:
  explicit YamlConverter(const BodyLimits& limits) : limits_(limits) {}

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
          auto v = Convert(item, depth + 1);
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
          auto v = Convert(kv.second, depth + 1);
          if (!v.ok()) return v;
          out[kv.first.Scalar()] = std::move(*v);
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
    static const std::regex kInt("^[-+]?[0-9]+$");
    static const std::regex kFloat(R"(^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$)");
    if (std::regex_match(s, kInt)) {
      int64_t v = 0;
      const char* b = s.data() + (s[0] == '+' ? 1 : 0);
      auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
      if (ec == std::errc() && p == s.data() + s.size()) return v;
      return s;  // out of range: keep the text
    }
    if (std::regex_match(s, kFloat)) {
      try {
        return std::stod(s);
      } catch (const std::exception&) {
        return s;
      }
    }
    return s;
  }

  const BodyLimits& limits_;
  size_t nodes_ = 0;
};

}  // namespace

Result<json> ParseYamlBody(std::string_view text, const BodyLimits& limits) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
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
  YamlConverter conv(limits);
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
