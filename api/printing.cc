// Server-side printing: the Table columns and cells `kubectl get` shows for
// each kind. The server renders every cell (including -o wide ones, marked
// priority 1); kubectl drops priority > 0 columns unless asked for -o wide.
// Cells of absent values are "<none>" where kubectl's own printers say so.
#include <cctype>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>

#include "api/schema.h"

namespace corral::api {

using json = nlohmann::json;

namespace {

constexpr char kNone[] = "<none>";
constexpr char kUnknown[] = "<unknown>";

const json* Get(const json& object, std::initializer_list<const char*> path) {
  return FindPath(object, path);
}

std::string Str(const json& object, std::initializer_list<const char*> path,
                const std::string& fallback = "") {
  const json* v = Get(object, path);
  return v && v->is_string() ? v->get<std::string>() : fallback;
}

std::optional<int64_t> Int(const json& object, std::initializer_list<const char*> path) {
  const json* v = Get(object, path);
  if (v && (v->is_number_integer() || v->is_number_unsigned())) return v->get<int64_t>();
  return std::nullopt;
}

// Parses an RFC 3339 time ("2026-01-02T15:04:05Z", fractions and offsets
// allowed) into Unix seconds.
std::optional<int64_t> ParseTime(const std::string& s) {
  int y, mo, d, h, mi, sec;
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
                  &consumed) != 6) {
    return std::nullopt;
  }
  size_t i = static_cast<size_t>(consumed);
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  }
  int64_t offset = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh, om;
    if (std::sscanf(s.c_str() + i + 1, "%2d:%2d", &oh, &om) != 2) return std::nullopt;
    offset = (s[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  return static_cast<int64_t>(timegm(&tm)) - offset;
}

// kubectl's translateTimestampSince: "<unknown>" for an absent time.
std::string Since(const json& object, std::initializer_list<const char*> path, int64_t now) {
  const json* v = Get(object, path);
  if (!v || !v->is_string()) return kUnknown;
  auto t = ParseTime(v->get<std::string>());
  if (!t) return kUnknown;
  return HumanDuration(now - *t);
}

// Bytes as a Kubernetes binary-SI quantity in canonical form ("64Gi", "1536Mi",
// "1000"): the largest suffix that divides the value exactly.
std::string Bytes(std::optional<int64_t> v) {
  if (!v) return kNone;
  static const char* const kSuffixes[] = {"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  int64_t n = *v;
  int suffix = -1;
  while (n != 0 && n % 1024 == 0 && suffix < 5) {
    n /= 1024;
    ++suffix;
  }
  return std::to_string(n) + (suffix >= 0 ? kSuffixes[suffix] : "");
}

// A metric value for the Targets column: up to two decimals, no trailing zeros.
std::string Number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

PrinterColumn NameColumn() {
  return {"Name", "string", "name",
          "Name must be unique within a namespace. More info: "
          "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
          0};
}
PrinterColumn AgeColumn() {
  return {"Age", "date", "",
          "CreationTimestamp is a timestamp representing the server time when this object was "
          "created.",
          0};
}

bool AutoscalingOn(const json& md) {
  const json* a = Get(md, {"spec", "autoscaling"});
  if (!a || !a->is_object()) return false;
  const json* enabled = Get(*a, {"enabled"});
  return !(enabled && enabled->is_boolean() && !enabled->get<bool>());
}

// The replicas a deployment is meant to have now.
int64_t Desired(const json& md) {
  if (AutoscalingOn(md)) {
    if (auto d = Int(md, {"status", "desiredReplicas"})) return *d;
    return Int(md, {"spec", "autoscaling", "minReplicas"}).value_or(1);
  }
  return Int(md, {"spec", "replicas"}).value_or(1);
}

// "Concurrency: 5/8, QueueLength: <unknown>/4", like `kubectl get hpa`'s TARGETS.
std::string Targets(const json& md) {
  const json* metrics = Get(md, {"spec", "autoscaling", "metrics"});
  if (!AutoscalingOn(md) || !metrics || !metrics->is_array() || metrics->empty()) return kNone;
  const json* current = Get(md, {"status", "currentMetrics"});
  std::string out;
  for (const auto& m : *metrics) {
    const std::string type = Str(m, {"type"}, "?");
    std::string cur = kUnknown;
    if (current && current->is_array()) {
      for (const auto& c : *current) {
        const json* value = Get(c, {"value"});
        if (Str(c, {"type"}) == type && value && value->is_number()) {
          cur = Number(value->get<double>());
        }
      }
    }
    const json* target = Get(m, {"target"});
    if (!out.empty()) out += ", ";
    out += type + ": " + cur + "/" +
           (target && target->is_number() ? Number(target->get<double>()) : std::string("?"));
  }
  return out;
}

std::string NodeStatus(const json& node) {
  std::string status = "Unknown";
  if (const json* conds = Get(node, {"status", "conditions"}); conds && conds->is_array()) {
    for (const auto& c : *conds) {
      if (Str(c, {"type"}) != "Ready") continue;
      const std::string s = Str(c, {"status"});
      status = s == "True" ? "Ready" : s == "False" ? "NotReady" : "Unknown";
    }
  }
  const json* unsched = Get(node, {"spec", "unschedulable"});
  if (unsched && unsched->is_boolean() && unsched->get<bool>()) status += ",SchedulingDisabled";
  return status;
}

std::string Engines(const json& node) {
  const json* engines = Get(node, {"status", "engines"});
  if (!engines || !engines->is_array() || engines->empty()) return kNone;
  std::string out;
  for (const auto& e : *engines) {
    if (!out.empty()) out += ",";
    out += Str(e, {"name"}, "?");
    const std::string version = Str(e, {"version"});
    if (!version.empty()) out += "/" + version;
  }
  return out;
}

std::optional<int64_t> NodeMemory(const json& node) {
  if (auto m = Int(node, {"status", "allocatable", "memoryBytes"})) return m;
  return Int(node, {"status", "capacity", "memoryBytes"});
}

int64_t GpuCount(const json& node) {
  for (const char* which : {"allocatable", "capacity"}) {
    const json* gpus = Get(node, {"status", which, "gpus"});
    if (gpus && gpus->is_array()) return static_cast<int64_t>(gpus->size());
  }
  return 0;
}

std::string OrNone(std::string s) { return s.empty() ? kNone : s; }

// kubectl's event printer: Last Seen is the last occurrence (series, then
// lastTimestamp, then the first occurrence), First Seen the first
// (firstTimestamp, else eventTime).
json EventCells(const json& ev, int64_t now) {
  auto time_of = [&](std::initializer_list<const char*> path) -> std::optional<std::string> {
    const json* v = Get(ev, path);
    if (!v || !v->is_string() || v->get_ref<const std::string&>().empty()) return std::nullopt;
    return Since(ev, path, now);
  };
  std::string first =
      time_of({"firstTimestamp"}).value_or(time_of({"eventTime"}).value_or(kUnknown));
  std::string last = time_of({"lastTimestamp"}).value_or(first);
  int64_t count = Int(ev, {"count"}).value_or(0);
  const json* series = Get(ev, {"series"});
  if (series && series->is_object()) {
    last = time_of({"series", "lastObservedTime"}).value_or(kUnknown);
    count = Int(ev, {"series", "count"}).value_or(0);
  } else if (count == 0) {
    count = 1;  // singleton events of the events.k8s.io API carry no count
  }
  const std::string name = Str(ev, {"involvedObject", "name"});
  const std::string kind = Lower(Str(ev, {"involvedObject", "kind"}));
  const std::string object = name.empty() ? kind : kind + "/" + name;
  std::string component = Str(ev, {"source", "component"});
  if (component.empty()) component = Str(ev, {"reportingComponent"});
  std::string host = Str(ev, {"source", "host"});
  if (host.empty()) host = Str(ev, {"reportingInstance"});
  const std::string source = host.empty() ? component : component + ", " + host;
  std::string message = Str(ev, {"message"});
  const auto b = message.find_first_not_of(" \t\r\n");
  const auto e = message.find_last_not_of(" \t\r\n");
  message = b == std::string::npos ? "" : message.substr(b, e - b + 1);
  return json::array({last, Str(ev, {"type"}), Str(ev, {"reason"}), object,
                      Str(ev, {"involvedObject", "fieldPath"}), source, message, first, count,
                      Str(ev, {"metadata", "name"})});
}

}  // namespace

std::string HumanDuration(int64_t seconds) {
  // Tolerates up to a second of clock skew as "now", as Kubernetes does.
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 60 * 2) return std::to_string(seconds) + "s";
  const int64_t minutes = seconds / 60;
  if (minutes < 10) {
    const int64_t s = seconds % 60;
    if (s == 0) return std::to_string(minutes) + "m";
    return std::to_string(minutes) + "m" + std::to_string(s) + "s";
  }
  if (minutes < 60 * 3) return std::to_string(minutes) + "m";
  const int64_t hours = seconds / 3600;
  if (hours < 8) {
    const int64_t m = minutes % 60;
    if (m == 0) return std::to_string(hours) + "h";
    return std::to_string(hours) + "h" + std::to_string(m) + "m";
  }
  if (hours < 48) return std::to_string(hours) + "h";
  if (hours < 24 * 8) {
    const int64_t h = hours % 24;
    if (h == 0) return std::to_string(hours / 24) + "d";
    return std::to_string(hours / 24) + "d" + std::to_string(h) + "h";
  }
  if (hours < 24 * 365 * 2) return std::to_string(hours / 24) + "d";
  if (hours < 24 * 365 * 8) {
    const int64_t dy = (hours / 24) % 365;
    if (dy == 0) return std::to_string(hours / 24 / 365) + "y";
    return std::to_string(hours / 24 / 365) + "y" + std::to_string(dy) + "d";
  }
  return std::to_string(hours / 24 / 365) + "y";
}

std::vector<PrinterColumn> SchemaRegistry::Columns(std::string_view kind) const {
  if (kind == "ModelDeployment") {
    return {
        NameColumn(),
        {"Ready", "string", "", "Ready replicas / desired replicas.", 0},
        {"Desired", "integer", "",
         "Replicas wanted now: status.desiredReplicas with autoscaling, else spec.replicas.", 0},
        {"Min", "integer", "", "spec.autoscaling.minReplicas (<none> without autoscaling).", 0},
        {"Max", "integer", "", "spec.autoscaling.maxReplicas (<none> without autoscaling).", 0},
        {"Model", "string", "", "spec.modelRef.name: the Model served.", 0},
        AgeColumn(),
        {"Targets", "string", "", "Each autoscaling metric: current/target per replica.", 1},
        {"Policy", "string", "", "spec.routing.policy: how the gateway picks a replica.", 1},
        {"Served Name", "string", "", "The model name clients ask for.", 1}};
  }
  if (kind == "Node") {
    return {NameColumn(),
            {"Status", "string", "",
             "Ready, NotReady or Unknown (from the Ready condition); SchedulingDisabled when "
             "cordoned.",
             0},
            {"GPUs", "integer", "", "Number of allocatable GPUs.", 0},
            {"Memory", "string", "", "Allocatable memory.", 0},
            {"Replicas", "integer", "", "Replicas bound to the node.", 0},
            AgeColumn(),
            {"Address", "string", "", "Base URL of the worker's HTTP API.", 1},
            {"Engines", "string", "", "Inference engines the worker runs (name/version).", 1}};
  }
  if (kind == "Replica") {
    return {NameColumn(),
            {"Phase", "string", "", "Pending, Scheduled, Loading, Ready, Draining or Failed.", 0},
            {"Node", "string", "", "The node the replica is bound to.", 0},
            AgeColumn(),
            {"Progress", "string", "", "Load progress in percent.", 1},
            {"Endpoint", "string", "", "Base URL serving the replica.", 1},
            {"Deployment", "string", "", "The owning ModelDeployment.", 1},
            {"Message", "string", "", "Why the replica is in its phase.", 1}};
  }
  if (kind == "Model") {
    return {NameColumn(),
            {"Engine", "string", "", "Inference engine: sim or llamacpp.", 0},
            {"Source", "string", "", "Where the weights come from.", 0},
            AgeColumn(),
            {"Memory", "string", "", "Memory one replica needs.", 1},
            {"GPU Memory", "string", "", "GPU memory one replica needs.", 1},
            {"Context", "integer", "", "Context window in tokens.", 1}};
  }
  if (kind == "Event") {
    return {{"Last Seen", "string", "", "The time of the most recent occurrence.", 0},
            {"Type", "string", "", "Type of this event (Normal, Warning).", 0},
            {"Reason", "string", "", "Why the action was taken.", 0},
            {"Object", "string", "", "The object this event is about (kind/name).", 0},
            {"Subobject", "string", "", "The part of the object (fieldPath).", 1},
            {"Source", "string", "", "The component reporting this event.", 1},
            {"Message", "string", "", "A human-readable description.", 0},
            {"First Seen", "string", "", "The time of the first occurrence.", 1},
            {"Count", "string", "", "The number of occurrences.", 1},
            {"Name", "string", "name", "The event's name.", 1}};
  }
  if (kind == "Lease") {
    return {NameColumn(),
            {"Holder", "string", "", "The identity of the holder of the current lease.", 0},
            AgeColumn()};
  }
  return {NameColumn(), AgeColumn()};
}

json SchemaRegistry::Cells(std::string_view kind, const json& object,
                           int64_t now_unix_seconds) const {
  const std::string name = Str(object, {"metadata", "name"});
  const std::string age = Since(object, {"metadata", "creationTimestamp"}, now_unix_seconds);
  if (kind == "ModelDeployment") {
    const int64_t desired = Desired(object);
    const int64_t ready = Int(object, {"status", "readyReplicas"}).value_or(0);
    json min = kNone, max = kNone;
    if (AutoscalingOn(object)) {
      min = Int(object, {"spec", "autoscaling", "minReplicas"}).value_or(1);
      if (auto m = Int(object, {"spec", "autoscaling", "maxReplicas"})) max = *m;
    }
    std::string served = Str(object, {"spec", "servedName"});
    if (served.empty()) served = name;
    return json::array({name, std::to_string(ready) + "/" + std::to_string(desired), desired, min,
                        max, OrNone(Str(object, {"spec", "modelRef", "name"})), age,
                        Targets(object), OrNone(Str(object, {"spec", "routing", "policy"})),
                        served});
  }
  if (kind == "Node") {
    return json::array({name, NodeStatus(object), GpuCount(object), Bytes(NodeMemory(object)),
                        Int(object, {"status", "replicas"}).value_or(0), age,
                        OrNone(Str(object, {"status", "address"})), Engines(object)});
  }
  if (kind == "Replica") {
    std::string progress = kNone;
    if (const json* p = Get(object, {"status", "progress", "percent"}); p && p->is_number()) {
      progress = Number(p->get<double>()) + "%";
    }
    return json::array({name, Str(object, {"status", "phase"}, "Pending"),
                        OrNone(Str(object, {"spec", "nodeName"})), age, progress,
                        OrNone(Str(object, {"status", "endpoint"})),
                        OrNone(Str(object, {"spec", "deployment"})),
                        Str(object, {"status", "message"})});
  }
  if (kind == "Model") {
    json context = kNone;
    if (auto c = Int(object, {"spec", "contextLength"})) context = *c;
    return json::array({name, OrNone(Str(object, {"spec", "engine"})),
                        OrNone(Str(object, {"spec", "source"})), age,
                        Bytes(Int(object, {"spec", "resources", "memoryBytes"})),
                        Bytes(Int(object, {"spec", "resources", "gpuMemoryBytes"})), context});
  }
  if (kind == "Event") return EventCells(object, now_unix_seconds);
  if (kind == "Lease") {
    // kubectl's lease printer shows an absent holder as empty.
    return json::array({name, Str(object, {"spec", "holderIdentity"}), age});
  }
  return json::array({name, age});
}

}  // namespace corral::api
