#include "api/handler.h"

#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <random>
#include <sstream>
#include <thread>

#include "api/apply.h"
#include "api/body.h"
#include "api/errors.h"
#include "api/openapi_proto.h"
#include "store/object.h"

namespace corral::api {

using common::Code;
using common::Result;
using common::Status;
using nlohmann::json;

bool HeaderLess::operator()(const std::string& a, const std::string& b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) <
           std::tolower(static_cast<unsigned char>(y));
  });
}

std::string Request::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

std::string Request::Query(const std::string& name) const {
  auto it = query.find(name);
  return it == query.end() ? std::string() : it->second;
}

namespace {

constexpr const char* kTableAccept = "as=Table";

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t p = s.find(sep, start);
    if (p == std::string_view::npos) p = s.size();
    out.emplace_back(s.substr(start, p - start));
    start = p + 1;
  }
  return out;
}

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// "application/json; charset=utf-8" -> "application/json"
std::string MediaType(std::string_view content_type) {
  std::string t = Trim(content_type.substr(0, content_type.find(';')));
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  return t;
}

// Manager name from a User-Agent, as kube-apiserver derives it
// ("kubectl/v1.32.0 (linux/amd64) ..." -> "kubectl").
std::string ManagerFromUserAgent(const std::string& ua) {
  std::string m = ua.substr(0, ua.find('/'));
  if (m.size() > 128) m.resize(128);
  for (char& ch : m) {
    if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) > 0x7e) ch = '?';
  }
  return m.empty() ? "unknown" : m;
}

bool IsTrue(const std::string& v) { return v == "true" || v == "1"; }

std::string RandomSuffix(size_t n) {
  static const char kChars[] = "bcdfghjklmnpqrstvwxz2456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string s;
  for (size_t i = 0; i < n; ++i) s += kChars[rng() % (sizeof kChars - 1)];
  return s;
}

const json& Meta(const json& obj) {
  static const json kEmpty = json::object();
  auto it = obj.find("metadata");
  return (it != obj.end() && it->is_object()) ? *it : kEmpty;
}

std::string MetaString(const json& obj, const char* field) {
  const json& m = Meta(obj);
  auto it = m.find(field);
  return (it != m.end() && it->is_string()) ? it->get<std::string>() : std::string();
}

int64_t ParseRv(const std::string& s) {
  if (s.empty()) return 0;
  try {
    size_t pos = 0;
    const long long v = std::stoll(s, &pos);
    if (pos != s.size() || v < 0) return -1;
    return v;
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

// ---------------------------------------------------------------------------

struct Handler::Impl {
  Impl(HandlerOptions o, store::ObjectStore& st, const SchemaRegistry& sc, TokenAuthenticator* a,
       common::Clock& c, prometheus::Registry& r, std::function<Status()> rd)
      : options(std::move(o)),
        store(st),
        schema(sc),
        auth(a),
        clock(c),
        registry(r),
        ready(std::move(rd)),
        requests_family(prometheus::BuildCounter()
                            .Name("corral_apiserver_requests_total")
                            .Help("API requests by verb, resource and HTTP code")
                            .Register(r)),
        latency_family(prometheus::BuildHistogram()
                           .Name("corral_apiserver_request_duration_seconds")
                           .Help("API request latency (watches: time to start streaming)")
                           .Register(r)),
        inflight_gauge(prometheus::BuildGauge()
                           .Name("corral_apiserver_inflight_requests")
                           .Help("Non-watch requests being handled")
                           .Register(r)
                           .Add({})),
        watches_family(prometheus::BuildGauge()
                           .Name("corral_apiserver_watches")
                           .Help("Open watch streams by resource")
                           .Register(r)),
        watch_events_family(prometheus::BuildCounter()
                                .Name("corral_apiserver_watch_events_total")
                                .Help("Events sent on watch streams by resource and type")
                                .Register(r)),
        rejected_family(prometheus::BuildCounter()
                            .Name("corral_apiserver_rejected_requests_total")
                            .Help("Requests refused before handling, by reason")
                            .Register(r)) {
    for (const auto& res : schema.Resources()) by_plural[res.group + "/" + res.plural] = &res;
  }

  // --- routing -------------------------------------------------------------
  struct Route {
    std::string group, version, ns, plural, name, sub;
    bool namespaced_path = false;
    const ResourceInfo* res = nullptr;
    const store::KindInfo* kind = nullptr;
  };

  // Parses /api/v1/... and /apis/G/V/...; nullopt when not a resource path.
  std::optional<Route> ParseResourcePath(const std::vector<std::string>& seg) const {
    Route r;
    size_t i;
    if (seg.size() >= 3 && seg[0] == "api") {
      r.group = "";
      r.version = seg[1];
      i = 2;
    } else if (seg.size() >= 4 && seg[0] == "apis") {
      r.group = seg[1];
      r.version = seg[2];
      i = 3;
    } else {
      return std::nullopt;
    }
    if (seg.size() > i + 2 && seg[i] == "namespaces") {
      r.ns = seg[i + 1];
      r.namespaced_path = true;
      i += 2;
    }
    const size_t rest = seg.size() - i;
    if (rest < 1 || rest > 3) return std::nullopt;
    r.plural = seg[i];
    if (rest >= 2) r.name = seg[i + 1];
    if (rest == 3) r.sub = seg[i + 2];
    auto it = by_plural.find(r.group + "/" + r.plural);
    if (it == by_plural.end() || it->second->version != r.version) return std::nullopt;
    r.res = it->second;
    r.kind = schema.kinds().Find(r.res->kind);
    if (!r.kind) return std::nullopt;
    if (!r.res->namespaced && r.namespaced_path) return std::nullopt;
    // Namespaced kinds' items live under namespaces/NS only.
    if (r.res->namespaced && !r.namespaced_path && !r.name.empty()) return std::nullopt;
    if (!r.sub.empty() && !r.res->HasSubresource(r.sub)) return std::nullopt;
    return r;
  }

  ErrorTarget Target(const Route& r, std::string name = "") const {
    return {r.group, r.plural, r.res ? r.res->kind : "", name.empty() ? r.name : name};
  }

  // --- per-request context ---------------------------------------------------
  struct Ctx {
    const Request* req = nullptr;
    Route route;
    User user;
    std::string verb;
    FieldValidation fv = FieldValidation::kWarn;
    bool dry_run = false;
    std::string manager;
    bool managed_fields_done = false;     // server-side apply already recorded ownership
    std::vector<std::string> duplicates;  // keys the body gave twice
    std::vector<std::string> warnings;
  };

  Response Finish(Ctx& c, Response r) const {
    for (const auto& w : c.warnings) {
      std::string v = "299 - " + Quote(w);
      r.headers.emplace_back("Warning", v);
    }
    return r;
  }

  static Response Text(int code, std::string content_type, std::string body) {
    Response r;
    r.status = code;
    r.content_type = std::move(content_type);
    r.body = std::move(body);
    return r;
  }

  // "No error" from a check step (status 0); callers test `.status`.
  static Response Ok() {
    Response r;
    r.status = 0;
    return r;
  }

  static Response Json(int code, const json& body) {
    Response r;
    r.status = code;
    r.body = body.dump();
    return r;
  }

  std::string Now() const { return common::FormatRfc3339(clock.Now()); }

  // --- discovery -------------------------------------------------------------
  json ApiResourceList(const std::string& group, const std::string& version) const {
    json resources = json::array();
    for (const auto& res : schema.Resources()) {
      if (res.group != group || res.version != version) continue;
      json e = {{"name", res.plural},
                {"singularName", res.singular},
                {"namespaced", res.namespaced},
                {"kind", res.kind},
                {"verbs", res.verbs}};
      if (!res.short_names.empty()) e["shortNames"] = res.short_names;
      if (!res.categories.empty()) e["categories"] = res.categories;
      resources.push_back(e);
      if (res.HasSubresource("status")) {
        resources.push_back({{"name", res.plural + "/status"},
                             {"singularName", ""},
                             {"namespaced", res.namespaced},
                             {"kind", res.kind},
                             {"verbs", {"get", "patch", "update"}}});
      }
      if (res.HasSubresource("scale")) {
        resources.push_back({{"name", res.plural + "/scale"},
                             {"singularName", ""},
                             {"namespaced", res.namespaced},
                             {"group", "autoscaling"},
                             {"version", "v1"},
                             {"kind", "Scale"},
                             {"verbs", {"get", "patch", "update"}}});
      }
    }
    return {{"kind", "APIResourceList"},
            {"apiVersion", "v1"},
            {"groupVersion", group.empty() ? version : group + "/" + version},
            {"resources", resources}};
  }

  std::vector<std::pair<std::string, std::string>> GroupVersions() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& res : schema.Resources()) {
      if (res.group.empty()) continue;
      std::pair<std::string, std::string> gv{res.group, res.version};
      if (std::find(out.begin(), out.end(), gv) == out.end()) out.push_back(gv);
    }
    return out;
  }

  json ApiGroup(const std::string& group, const std::string& version) const {
    json gv = {{"groupVersion", group + "/" + version}, {"version", version}};
    return {{"kind", "APIGroup"},
            {"apiVersion", "v1"},
            {"name", group},
            {"versions", json::array({gv})},
            {"preferredVersion", gv}};
  }

  Response Discovery(const std::vector<std::string>& seg) const {
    if (seg.size() == 1 && seg[0] == "api") {
      return Json(200, {{"kind", "APIVersions"},
                        {"versions", {"v1"}},
                        {"serverAddressByClientCIDRs",
                         json::array({{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", ""}}})}});
    }
    if (seg.size() == 2 && seg[0] == "api" && seg[1] == "v1")
      return Json(200, ApiResourceList("", "v1"));
    if (seg.size() == 1 && seg[0] == "apis") {
      json groups = json::array();
      for (const auto& [g, v] : GroupVersions()) {
        json grp = ApiGroup(g, v);
        grp.erase("kind");
        grp.erase("apiVersion");
        groups.push_back(grp);
      }
      return Json(200, {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}});
    }
    for (const auto& [g, v] : GroupVersions()) {
      if (seg.size() == 2 && seg[1] == g) return Json(200, ApiGroup(g, v));
      if (seg.size() == 3 && seg[1] == g && seg[2] == v) return Json(200, ApiResourceList(g, v));
    }
    return NotFoundPath("/" + seg[0]);
  }

  // --- authentication and authorization -------------------------------------
  std::optional<User> Authenticate(const Request& req) const {
    if (!options.authenticate) return User{"admin", Role::kAdmin};
    if (!auth) return std::nullopt;
    return auth->Authenticate(req.Header("Authorization"));
  }

  Response Deny(const Ctx& c, const Decision& d) const {
    rejected_family.Add({{"reason", "forbidden"}}).Increment();
    std::string what = c.route.res->plural + (c.route.sub.empty() ? "" : "/" + c.route.sub);
    std::string msg =
        c.route.name.empty()
            ? what + (c.route.group.empty() ? "" : "." + c.route.group) + " is forbidden: "
            : c.route.res->plural + (c.route.group.empty() ? "" : "." + c.route.group) + " " +
                  Quote(c.route.name) + " is forbidden: ";
    msg += d.reason;
    return Forbidden(msg, Target(c.route));
  }

  Response Authz(Ctx& c, const std::string& name, const std::string& bound_node) const {
    Attributes a{c.verb, c.route.res->kind, c.route.ns, name, c.route.sub, bound_node};
    Decision d = Authorize(c.user, a);
    if (d.allowed) return Ok();
    return Deny(c, d);
  }

  // --- request bodies --------------------------------------------------------
  Result<json> DecodeObjectBody(const Request& req, std::vector<std::string>* duplicates) const {
    const std::string ct = MediaType(req.Header("Content-Type"));
    if (ct.empty() || ct == "application/json") return ParseJsonBody(req.body, {}, duplicates);
    if (ct == "application/yaml" || ct == "application/x-yaml" || ct == "text/yaml") {
      return ParseYamlBody(req.body, {}, duplicates);
    }
    return Status(Code::kUnavailable, "unsupported:" + ct);  // mapped to 415 by caller
  }

  // Checks apiVersion/kind/namespace of a body against the route and fills
  // the namespace from the URL.
  Response CheckEnvelope(Ctx& c, json& obj) const {
    if (!obj.is_object()) return BadRequest("the request body must be a JSON or YAML object");
    const std::string want_av =
        c.route.group.empty() ? c.route.version : c.route.group + "/" + c.route.version;
    const auto av =
        obj.value("apiVersion", json()).is_string() ? obj["apiVersion"].get<std::string>() : "";
    const auto kind = obj.value("kind", json()).is_string() ? obj["kind"].get<std::string>() : "";
    if (kind.empty()) return BadRequest("Object 'Kind' is missing in the request body");
    if (av.empty()) return BadRequest("Object 'apiVersion' is missing in the request body");
    if (kind != c.route.res->kind || av != want_av) {
      return BadRequest("the API version in the data (" + av + ") and kind (" + kind +
                        ") do not match the expected " + want_av + ", Kind=" + c.route.res->kind);
    }
    if (!obj.contains("metadata") || obj["metadata"].is_null()) obj["metadata"] = json::object();
    if (!obj["metadata"].is_object()) return BadRequest("metadata: must be an object");
    auto& m = obj["metadata"];
    for (const char* f : {"name", "namespace", "resourceVersion", "generateName", "uid"}) {
      if (m.contains(f) && !m[f].is_null() && !m[f].is_string()) {
        return BadRequest(std::string("metadata.") + f + ": must be a string");
      }
    }
    if (c.route.res->namespaced) {
      const std::string ns =
          m.value("namespace", json()).is_string() ? m["namespace"].get<std::string>() : "";
      if (!ns.empty() && ns != c.route.ns) {
        return BadRequest("the namespace of the provided object (" + ns +
                          ") does not match the namespace sent on the request (" + c.route.ns +
                          ")");
      }
      m["namespace"] = c.route.ns;
    } else if (m.contains("namespace")) {
      m.erase("namespace");
    }
    return Ok();
  }

  // Schema validation, pruning, defaulting. Unknown fields per fieldValidation.
  Response CheckSchema(Ctx& c, json& obj, const json* old) const {
    const std::string& kind = c.route.res->kind;
    const std::string name = MetaString(obj, "name");
    ValidationResult v = schema.Validate(kind, obj);
    std::vector<std::string> problems;
    for (const auto& f : c.duplicates) problems.push_back("duplicate field " + Quote(f));
    for (const auto& f : v.unknown_fields) problems.push_back("unknown field " + Quote(f));
    if (!problems.empty()) {
      if (c.fv == FieldValidation::kStrict) {
        std::string list;
        for (const auto& p : problems) list += (list.empty() ? "" : ", ") + p;
        return BadRequest(kind + " in version " + Quote(c.route.version) +
                          " cannot be handled as a " + kind + ": strict decoding error: " + list);
      }
      if (c.fv == FieldValidation::kWarn) {
        for (const auto& p : problems) c.warnings.push_back(p);
      }
      c.duplicates.clear();  // reported once, even if the write is retried
      if (!v.unknown_fields.empty()) schema.Prune(kind, obj);
    }
    schema.ApplyDefaults(kind, obj);
    std::vector<common::FieldCause> errors;
    if (!v.errors.empty()) errors = schema.Validate(kind, obj).errors;
    if (old) {
      auto im = schema.ValidateUpdate(kind, *old, obj);
      errors.insert(errors.end(), im.begin(), im.end());
    }
    if (!errors.empty()) {
      return ErrorResponse(Status(Code::kInvalidArgument, "invalid object", errors),
                           Target(c.route, name));
    }
    return Ok();
  }

  // --- writes ----------------------------------------------------------------
  Response StoreError(const Ctx& c, const Status& s, const std::string& name) const {
    return ErrorResponse(s, Target(c.route, name));
  }

  Response Create(Ctx& c, json obj) const {
    if (Response e = CheckEnvelope(c, obj); e.status) return Finish(c, e);
    auto& m = obj["metadata"];
    std::string name = m.value("name", json()).is_string() ? m["name"].get<std::string>() : "";
    if (name.empty() && m.value("generateName", json()).is_string()) {
      name = m["generateName"].get<std::string>() + RandomSuffix(5);
      m["name"] = name;
    }
    if (name.empty()) {
      return Finish(
          c, ErrorResponse(
                 Status(Code::kInvalidArgument, "name or generateName is required",
                        {{"metadata.name", "Required value: name or generateName is required"}}),
                 Target(c.route, "")));
    }
    if (Response a = Authz(c, name, ""); a.status) return a;
    StripForCreate(c, obj);
    if (Response e = CheckSchema(c, obj, nullptr); e.status) return Finish(c, e);
    ApplyOptions ao{c.manager, false, "", Now()};
    auto tracked = TrackUpdate(nullptr, obj, ao);
    if (!tracked.ok()) return Finish(c, StoreError(c, tracked.status(), name));
    obj = std::move(*tracked);
    if (c.dry_run) return Finish(c, DryRunCreate(c, obj));
    auto created = store.Create(obj);
    if (!created.ok()) return Finish(c, StoreError(c, created.status(), name));
    return Finish(c, Json(201, created->body));
  }

  // What a client may not choose on create: the server sets these.
  void StripForCreate(const Ctx& c, json& obj) const {
    auto& m = obj["metadata"];
    for (const char* f : {"resourceVersion", "uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation"}) {
      m.erase(f);
    }
    if (c.route.res->HasSubresource("status")) obj.erase("status");
  }

  Response DryRunCreate(Ctx& c, json obj) const {
    auto key = store::ValidateObject(schema.kinds(), obj, store.max_object_bytes());
    if (!key.ok()) return StoreError(c, key.status(), MetaString(obj, "name"));
    auto existing = store.Get(*key);
    if (existing.ok()) return StoreError(c, common::AlreadyExists("exists"), key->name);
    if (existing.status().code() != Code::kNotFound)
      return StoreError(c, existing.status(), key->name);
    auto& m = obj["metadata"];
    m["uid"] = store::NewUid();
    m["creationTimestamp"] = Now();
    m["generation"] = 1;
    return Json(201, obj);
  }

  // Writes `next` over `cur` (both whole objects) for the main resource or a
  // subresource. Validation, managed fields, dry-run, finalizer completion.
  Response WriteUpdate(Ctx& c, json next, const json& cur, int ok_code = 200) const {
    const std::string name = MetaString(cur, "name");
    const std::string sub = c.route.sub == "scale" ? "" : c.route.sub;
    auto& m = next["metadata"];
    if (!m.is_object()) m = json::object();
    const json& cm = Meta(cur);
    // Server-owned metadata is never taken from the client.
    for (const char* f : {"uid", "creationTimestamp", "generation", "deletionTimestamp",
                          "deletionGracePeriodSeconds"}) {
      if (cm.contains(f))
        m[f] = cm[f];
      else
        m.erase(f);
    }
    if (sub == "status") {
      json merged = cur;
      merged["status"] = next.contains("status") ? next["status"] : json::object();
      const std::string rv = MetaString(next, "resourceVersion");
      merged["metadata"]["resourceVersion"] = rv.empty() ? MetaString(cur, "resourceVersion") : rv;
      next = std::move(merged);
    } else if (c.route.res->HasSubresource("status")) {
      if (cur.contains("status"))
        next["status"] = cur["status"];
      else
        next.erase("status");
    }
    // A node may write a Replica bound to it only to remove finalizers (its
    // drain finalizer once drained); anything else is refused, as
    // Kubernetes' NodeRestriction does for kubelets.
    if (c.user.role == Role::kNode && c.route.res->kind == "Replica" && sub.empty()) {
      auto strip = [](json o) {
        o.erase("status");
        for (const char* f : {"finalizers", "resourceVersion", "managedFields", "generation"}) {
          o["metadata"].erase(f);
        }
        return o;
      };
      bool subset = true;
      const json before = cm.value("finalizers", json::array());
      for (const auto& f : Meta(next).value("finalizers", json::array())) {
        if (std::find(before.begin(), before.end(), f) == before.end()) subset = false;
      }
      if (!subset || strip(next) != strip(cur)) {
        return Finish(c, Forbidden(c.route.res->plural + "." + c.route.group + " " + Quote(name) +
                                       " is forbidden: node " + Quote(c.user.name) +
                                       " may only remove finalizers of a replica, nothing else",
                                   Target(c.route, name)));
      }
    }
    if (Response e = CheckSchema(c, next, &cur); e.status) return Finish(c, e);
    // An object being deleted takes no new finalizers.
    if (cm.contains("deletionTimestamp") && sub.empty()) {
      const json& before = cm.value("finalizers", json::array());
      const json& after = Meta(next).value("finalizers", json::array());
      for (const auto& f : after) {
        if (std::find(before.begin(), before.end(), f) == before.end()) {
          return Finish(c,
                        ErrorResponse(Status(Code::kInvalidArgument, "",
                                             {{"metadata.finalizers",
                                               "Forbidden: no new finalizers can be added if the "
                                               "object is being deleted, found new finalizer " +
                                                   f.dump()}}),
                                      Target(c.route, name)));
        }
      }
    }
    ApplyOptions ao{c.manager, false, sub, Now()};
    if (sub.empty() && !c.managed_fields_done) {
      auto tracked = TrackUpdate(cur, next, ao);
      if (!tracked.ok()) return Finish(c, StoreError(c, tracked.status(), name));
      next = std::move(*tracked);
    }
    if (c.dry_run) {
      auto key = store::ValidateObject(schema.kinds(), next, store.max_object_bytes());
      if (!key.ok()) return Finish(c, StoreError(c, key.status(), name));
      const std::string rv = MetaString(next, "resourceVersion");
      if (!rv.empty() && rv != MetaString(cur, "resourceVersion")) {
        return Finish(c,
                      StoreError(c,
                                 common::Conflict("the object has been modified; please apply your "
                                                  "changes to the latest version and try again"),
                                 name));
      }
      if (store::SpecChanged(cur, next))
        next["metadata"]["generation"] = cm.value("generation", 1) + 1;
      return Finish(c, Json(ok_code, next));
    }
    auto written = sub == "status" ? store.UpdateStatus(next) : store.Update(next);
    if (!written.ok()) {
      Status s = written.status();
      if (s.code() == Code::kConflict) {
        s = common::Conflict(
            "the object has been modified; please apply your changes to the latest version and try "
            "again");
      }
      return Finish(c, StoreError(c, s, name));
    }
    // The last finalizer of an object being deleted is gone: delete it now.
    const json& wm = Meta(written->body);
    if (wm.contains("deletionTimestamp") &&
        (!wm.contains("finalizers") || wm["finalizers"].empty())) {
      store::DeleteOptions dopt;
      dopt.uid = wm.value("uid", "");
      auto gone = store.Delete(Key(c.route, name), dopt);
      if (gone.ok()) {
        gc_wake();
        return Finish(c, Json(ok_code, gone->body));
      }
      if (gone.status().code() != Code::kNotFound)
        return Finish(c, StoreError(c, gone.status(), name));
    }
    return Finish(c, Json(ok_code, written->body));
  }

  store::ObjectKey Key(const Route& r, const std::string& name) const {
    return {r.res->kind, r.res->namespaced ? r.ns : "", name};
  }

  Response Update(Ctx& c, json obj) const {
    if (Response e = CheckEnvelope(c, obj); e.status) return Finish(c, e);
    const std::string name = MetaString(obj, "name");
    if (name != c.route.name) {
      return Finish(c, BadRequest("the name of the object (" + name +
                                  ") does not match the name on the URL (" + c.route.name + ")"));
    }
    auto cur = store.Get(Key(c.route, name));
    if (!cur.ok()) return Finish(c, StoreError(c, cur.status(), name));
    if (Response a = Authz(c, name, BoundNode(cur->body)); a.status) return a;
    if (c.route.sub == "scale") return Finish(c, BadRequest("internal: scale handled elsewhere"));
    const std::string rv = MetaString(obj, "resourceVersion");
    if (rv.empty()) {
      return Finish(c,
                    ErrorResponse(Status(Code::kInvalidArgument, "",
                                         {{"metadata.resourceVersion",
                                           "Invalid value: 0x0: must be specified for an update"}}),
                                  Target(c.route, name)));
    }
    return WriteUpdate(c, std::move(obj), cur->body);
  }

  static std::string BoundNode(const json& obj) {
    auto it = obj.find("spec");
    if (it == obj.end() || !it->is_object()) return "";
    auto n = it->find("nodeName");
    return (n != it->end() && n->is_string()) ? n->get<std::string>() : "";
  }

  // --- scale subresource -----------------------------------------------------
  json ScaleOf(const json& md) const {
    const json& m = Meta(md);
    json spec = md.value("spec", json::object());
    json status = md.value("status", json::object());
    json meta = {{"name", m.value("name", "")},
                 {"namespace", m.value("namespace", "")},
                 {"uid", m.value("uid", "")},
                 {"resourceVersion", m.value("resourceVersion", "")},
                 {"creationTimestamp", m.value("creationTimestamp", "")}};
    return {{"kind", "Scale"},
            {"apiVersion", "autoscaling/v1"},
            {"metadata", meta},
            {"spec", {{"replicas", spec.value("replicas", 0)}}},
            {"status",
             {{"replicas", status.value("replicas", 0)},
              {"selector", "corral.dev/deployment=" + m.value("name", std::string())}}}};
  }

  Response ScaleWrite(Ctx& c, const json& scale, const json& cur, bool from_put) const {
    const std::string name = MetaString(cur, "name");
    if (!scale.is_object() || !scale.contains("spec") || !scale["spec"].is_object()) {
      return Finish(c, BadRequest("Scale: spec is required"));
    }
    const json& r = scale["spec"].value("replicas", json());
    if (!r.is_number_integer() || r.get<int64_t>() < 0 || r.get<int64_t>() > 100000) {
      return Finish(
          c, ErrorResponse(
                 Status(Code::kInvalidArgument, "",
                        {{"spec.replicas", "Invalid value: " + r.dump() +
                                               ": must be an integer between 0 and 100000"}}),
                 ErrorTarget{"autoscaling", "scale", "Scale", name}));
    }
    json next = cur;
    next["spec"]["replicas"] = r;
    const std::string rv = MetaString(scale, "resourceVersion");
    if (from_put || !rv.empty())
      next["metadata"]["resourceVersion"] = rv.empty() ? MetaString(cur, "resourceVersion") : rv;
    Route saved = c.route;
    Response resp = WriteUpdate(c, next, cur);
    c.route = saved;
    if (resp.status == 200) {
      auto body = json::parse(resp.body, nullptr, false);
      if (body.is_object()) resp.body = ScaleOf(body).dump();
    }
    return resp;
  }

  // --- patch -----------------------------------------------------------------
  Response Patch(Ctx& c) const {
    const std::string ct = MediaType(c.req->Header("Content-Type"));
    const bool apply = ct == "application/apply-patch+yaml";
    const bool merge =
        ct == "application/merge-patch+json" || ct == "application/strategic-merge-patch+json";
    const bool jsonpatch = ct == "application/json-patch+json";
    if (!apply && !merge && !jsonpatch) return Finish(c, UnsupportedMediaType(ct));
    auto body = apply ? ParseYamlBody(c.req->body, {}, &c.duplicates)
                      : ParseJsonBody(c.req->body, {}, jsonpatch ? nullptr : &c.duplicates);
    if (!body.ok()) return Finish(c, BadRequest(body.status().message()));
    json patch = std::move(*body);
    if (apply) {
      if (c.req->Query("fieldManager").empty()) {
        return Finish(c, BadRequest("PATCH, application/apply-patch+yaml requests require the "
                                    "fieldManager query parameter"));
      }
      if (!patch.is_object()) return Finish(c, BadRequest("apply: the body must be an object"));
    }
    if (merge && !patch.is_object())
      return Finish(c, BadRequest("merge patch: the body must be a JSON object"));
    if (jsonpatch && !patch.is_array())
      return Finish(c, BadRequest("json patch: the body must be a JSON array of operations"));
    std::string precondition_rv;
    if (patch.is_object()) precondition_rv = MetaString(patch, "resourceVersion");
    const std::string& name = c.route.name;
    for (int attempt = 0;; ++attempt) {
      auto cur = store.Get(Key(c.route, name));
      if (!cur.ok() && !(apply && cur.status().code() == Code::kNotFound && c.route.sub.empty())) {
        return Finish(c, StoreError(c, cur.status(), name));
      }
      if (Response a = Authz(c, name, cur.ok() ? BoundNode(cur->body) : ""); a.status) return a;
      if (apply) {
        // Server-side apply: creates when missing.
        json applied = patch;
        Ctx cc = c;
        if (Response e = CheckEnvelope(cc, applied); e.status) return Finish(c, e);
        if (MetaString(applied, "name") != name) {
          return Finish(c, BadRequest("the name of the object (" + MetaString(applied, "name") +
                                      ") does not match the name on the URL (" + name + ")"));
        }
        ApplyOptions ao{c.req->Query("fieldManager"), IsTrue(c.req->Query("force")), c.route.sub,
                        Now()};
        auto merged = ServerSideApply(cur.ok() ? cur->body : json(nullptr), applied, ao);
        if (!merged.ok()) return Finish(c, StoreError(c, merged.status(), name));
        if (!cur.ok()) {
          json obj = std::move(*merged);
          Ctx cc2 = c;
          cc2.verb = "create";
          if (Response a = Authz(cc2, name, ""); a.status) return a;
          if (Response e = CheckEnvelope(cc2, obj); e.status) return Finish(c, e);
          StripForCreate(cc2, obj);
          if (Response e = CheckSchema(cc2, obj, nullptr); e.status) return Finish(c, e);
          c.warnings = cc2.warnings;
          if (c.dry_run) return Finish(c, DryRunCreate(c, obj));
          auto created = store.Create(obj);
          if (!created.ok()) {
            if (created.status().code() == Code::kAlreadyExists && attempt < 5) continue;
            return Finish(c, StoreError(c, created.status(), name));
          }
          return Finish(c, Json(201, created->body));
        }
        json next = std::move(*merged);
        next["metadata"]["resourceVersion"] =
            precondition_rv.empty() ? MetaString(cur->body, "resourceVersion") : precondition_rv;
        // ServerSideApply already recorded ownership; WriteUpdate's TrackUpdate
        // sees no client-written change to managedFields relative to itself.
        Response r = WriteUpdateApplied(c, std::move(next), cur->body);
        if (r.status == 409 && precondition_rv.empty() && attempt < 5 &&
            r.body.find("FieldManagerConflict") == std::string::npos)
          continue;
        return r;
      }
      const json base = c.route.sub == "scale" ? ScaleOf(cur->body) : cur->body;
      json patched;
      try {
        patched = jsonpatch ? base.patch(patch) : [&] {
          json b = base;
          b.merge_patch(patch);
          return b;
        }();
      } catch (const std::exception& e) {
        return Finish(
            c, ErrorResponse(Status(Code::kInvalidArgument, "the patch could not be applied",
                                    {{"patch", std::string("could not be applied: ") + e.what()}}),
                             Target(c.route, name)));
      }
      if (!patched.is_object() || !patched.value("metadata", json()).is_object()) {
        return Finish(c, BadRequest("the patch produced an object without metadata"));
      }
      if (!patched.value("kind", json()).is_string() ||
          !patched.value("apiVersion", json()).is_string()) {
        return Finish(c, BadRequest("the patch may not change apiVersion or kind"));
      }
      for (const char* f : {"name", "namespace", "resourceVersion", "uid"}) {
        const json& v = patched["metadata"].value(f, json());
        if (!v.is_null() && !v.is_string()) {
          return Finish(c, BadRequest(std::string("metadata.") + f + ": must be a string"));
        }
      }
      // A resourceVersion the patch sets is a precondition; one it removes is
      // not (the write then compares against what was read, and retries).
      const std::string patched_rv = MetaString(patched, "resourceVersion");
      const bool explicit_rv =
          !patched_rv.empty() &&
          (!precondition_rv.empty() || patched_rv != MetaString(base, "resourceVersion"));
      if (c.route.sub == "scale") {
        Response r = ScaleWrite(c, patched, cur->body, false);
        if (r.status == 409 && !explicit_rv && attempt < 5) continue;
        return r;
      }
      // The patch may not move the object.
      if (MetaString(patched, "name") != name)
        return Finish(c, BadRequest("metadata.name: the patch may not change the object's name"));
      if (c.route.res->namespaced && MetaString(patched, "namespace") != c.route.ns) {
        return Finish(
            c, BadRequest("metadata.namespace: the patch may not change the object's namespace"));
      }
      if (patched.value("kind", "") != c.route.res->kind ||
          patched.value("apiVersion", "") != base.value("apiVersion", "")) {
        return Finish(c, BadRequest("the patch may not change apiVersion or kind"));
      }
      if (!explicit_rv) {
        patched["metadata"]["resourceVersion"] = MetaString(cur->body, "resourceVersion");
      }
      Response r = WriteUpdate(c, std::move(patched), cur->body);
      if (r.status == 409 && !explicit_rv && attempt < 5) continue;
      return r;
    }
  }

  // As WriteUpdate, but managedFields were already computed by ServerSideApply.
  Response WriteUpdateApplied(Ctx& c, json next, const json& cur) const {
    c.managed_fields_done = true;
    Response r = WriteUpdate(c, std::move(next), cur);
    c.managed_fields_done = false;
    return r;
  }

  // --- delete ----------------------------------------------------------------
  Response Delete(Ctx& c) const {
    const std::string& name = c.route.name;
    json opts = json::object();
    if (!c.req->body.empty()) {
      auto b = ParseJsonBody(c.req->body);
      if (!b.ok() || !b->is_object())
        return Finish(c, BadRequest("DeleteOptions: the body must be a JSON object"));
      opts = std::move(*b);
    }
    std::string policy = c.req->Query("propagationPolicy");
    if (policy.empty() && opts.value("propagationPolicy", json()).is_string())
      policy = opts["propagationPolicy"];
    if (opts.contains("orphanDependents") && opts["orphanDependents"].is_boolean() &&
        policy.empty()) {
      policy = opts["orphanDependents"].get<bool>() ? "Orphan" : "Background";
    }
    if (policy.empty()) policy = "Background";
    if (policy != "Background" && policy != "Foreground" && policy != "Orphan") {
      return Finish(
          c, ErrorResponse(
                 Status(Code::kInvalidArgument, "",
                        {{"propagationPolicy",
                          "Unsupported value: " + Quote(policy) +
                              ": supported values: \"Background\", \"Foreground\", \"Orphan\""}}),
                 Target(c.route, name)));
    }
    if (opts.contains("dryRun")) {
      for (const auto& d : opts["dryRun"])
        if (d == "All") c.dry_run = true;
    }
    const json pre = opts.value("preconditions", json::object());
    const bool has_pre = pre.is_object() && !pre.empty();
    for (int attempt = 0;; ++attempt) {
      auto cur = store.Get(Key(c.route, name));
      if (!cur.ok()) return Finish(c, StoreError(c, cur.status(), name));
      if (Response a = Authz(c, name, BoundNode(cur->body)); a.status) return a;
      // The delete compares against what was read (a finalizer added since
      // must be seen); a lost race re-reads and decides again.
      Response r = DeleteOne(c, cur->body, policy, pre);
      if (r.status == 409 && !has_pre && attempt < 5) continue;
      return Finish(c, r);
    }
  }

  Response DeleteOne(Ctx& c, const json& cur, const std::string& policy, const json& pre) const {
    const std::string name = MetaString(cur, "name");
    const json& cm = Meta(cur);
    store::DeleteOptions dopt;
    if (pre.is_object()) {
      if (pre.value("uid", json()).is_string()) {
        dopt.uid = pre["uid"].get<std::string>();
        if (*dopt.uid != cm.value("uid", "")) {
          return StoreError(
              c,
              common::Conflict("Precondition failed: UID in precondition: " + *dopt.uid +
                               ", UID in object meta: " + cm.value("uid", "")),
              name);
        }
      }
      if (pre.value("resourceVersion", json()).is_string()) {
        const std::string rv = pre["resourceVersion"];
        if (rv != cm.value("resourceVersion", "")) {
          return StoreError(
              c,
              common::Conflict(
                  "Precondition failed: ResourceVersion in precondition: " + rv +
                  ", ResourceVersion in object meta: " + cm.value("resourceVersion", "")),
              name);
        }
        dopt.resource_version = ParseRv(rv);
      }
    }
    json finalizers = cm.value("finalizers", json::array());
    if (policy == "Foreground" || policy == "Orphan") {
      const std::string f = policy == "Foreground" ? "foregroundDeletion" : "orphan";
      if (std::find(finalizers.begin(), finalizers.end(), f) == finalizers.end())
        finalizers.push_back(f);
    }
    if (!finalizers.empty()) {
      if (cm.contains("deletionTimestamp") && cm.value("finalizers", json::array()) == finalizers) {
        return Json(200, cur);  // already being deleted
      }
      json next = cur;
      next["metadata"]["finalizers"] = finalizers;
      if (!cm.contains("deletionTimestamp")) {
        next["metadata"]["deletionTimestamp"] = Now();
        next["metadata"]["deletionGracePeriodSeconds"] = 0;
      }
      if (c.dry_run) return Json(200, next);
      auto w = store.Update(next);
      if (!w.ok()) return StoreError(c, w.status(), name);
      gc_wake();
      return Json(200, w->body);
    }
    if (c.dry_run) return Json(200, cur);
    if (!dopt.uid) dopt.uid = cm.value("uid", "");
    if (!dopt.resource_version) dopt.resource_version = ParseRv(cm.value("resourceVersion", ""));
    auto gone = store.Delete(Key(c.route, name), dopt);
    if (!gone.ok()) return StoreError(c, gone.status(), name);
    gc_wake();
    return Json(200, gone->body);
  }

  Response DeleteCollection(Ctx& c) const {
    store::ListOptions lo;
    if (Response e = ListOptionsFrom(c, lo); e.status) return Finish(c, e);
    lo.limit = 0;
    lo.continue_token.clear();
    auto list = store.List(lo);
    if (!list.ok()) return Finish(c, StoreError(c, list.status(), ""));
    std::string policy = c.req->Query("propagationPolicy");
    if (policy.empty()) policy = "Background";
    if (policy != "Background" && policy != "Foreground" && policy != "Orphan") {
      return Finish(c,
                    BadRequest("propagationPolicy: Unsupported value: " + Quote(policy) +
                               ": supported values: \"Background\", \"Foreground\", \"Orphan\""));
    }
    json items = json::array();
    for (const auto& o : list->items) {
      Response r = DeleteOne(c, o.body, policy, json::object());
      for (int attempt = 0; r.status == 409 && attempt < 3; ++attempt) {
        auto again = store.Get(Key(c.route, MetaString(o.body, "name")));
        if (!again.ok()) break;
        r = DeleteOne(c, again->body, policy, json::object());
      }
      if (r.status == 200) {
        items.push_back(json::parse(r.body, nullptr, false));
      } else if (r.status != 404) {
        return Finish(c, r);
      }
    }
    return Finish(c, Json(200, ListObject(c.route, items, list->revision, "")));
  }

  // --- reads -----------------------------------------------------------------
  Response ListOptionsFrom(Ctx& c, store::ListOptions& lo) const {
    lo.kind = c.route.res->kind;
    lo.ns = c.route.res->namespaced ? c.route.ns : "";
    auto ls = store::LabelSelector::Parse(c.req->Query("labelSelector"));
    if (!ls.ok()) return BadRequest(ls.status().message());
    auto fs = store::FieldSelector::Parse(c.req->Query("fieldSelector"));
    if (!fs.ok()) return BadRequest(fs.status().message());
    if (auto s = fs->Validate(c.route.kind->FieldSelectorFields()); !s.ok())
      return BadRequest(s.message());
    lo.labels = std::move(*ls);
    lo.fields = std::move(*fs);
    if (c.req->HasQuery("limit")) {
      const int64_t limit = ParseRv(c.req->Query("limit"));
      if (limit < 0) return BadRequest("limit: must be a non-negative integer");
      lo.limit = limit;
    }
    lo.continue_token = c.req->Query("continue");
    const std::string rv = c.req->Query("resourceVersion");
    const std::string match = c.req->Query("resourceVersionMatch");
    if (!lo.continue_token.empty() && !rv.empty() && rv != "0") {
      return BadRequest("specifying resource version is not allowed when using continue");
    }
    if (rv.empty()) {
      if (!match.empty())
        return BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided");
      lo.match = store::RevisionMatch::kLatest;
    } else {
      const int64_t n = ParseRv(rv);
      if (n < 0) return BadRequest("resourceVersion: invalid value " + Quote(rv));
      lo.revision = n;
      if (match.empty() || match == "NotOlderThan") {
        lo.match = store::RevisionMatch::kNotOlderThan;
      } else if (match == "Exact") {
        if (n == 0)
          return BadRequest(
              "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"");
        lo.match = store::RevisionMatch::kExact;
      } else {
        return BadRequest("resourceVersionMatch: Unsupported value: " + Quote(match) +
                          ": supported values: \"Exact\", \"NotOlderThan\"");
      }
    }
    return Ok();
  }

  json ListObject(const Route& r, json items, int64_t revision, const std::string& cont) const {
    json meta = {{"resourceVersion", std::to_string(revision)}};
    if (!cont.empty()) meta["continue"] = cont;
    return {{"kind", r.res->kind + "List"},
            {"apiVersion", r.group.empty() ? r.version : r.group + "/" + r.version},
            {"metadata", meta},
            {"items", std::move(items)}};
  }

  static bool WantsTable(const Request& req) {
    const std::string accept = req.Header("Accept");
    const std::string first = accept.substr(0, accept.find(','));
    return first.find(kTableAccept) != std::string::npos &&
           first.find("g=meta.k8s.io") != std::string::npos;
  }

  json TableColumns(const std::string& kind) const {
    json cols = json::array();
    for (const auto& col : schema.Columns(kind)) {
      cols.push_back({{"name", col.name},
                      {"type", col.type},
                      {"format", col.format},
                      {"description", col.description},
                      {"priority", col.priority}});
    }
    return cols;
  }

  json TableRow(const Ctx& c, const json& obj, int64_t now) const {
    json row = {{"cells", schema.Cells(c.route.res->kind, obj, now)}};
    const std::string include = c.req->Query("includeObject");
    if (include == "Object") {
      row["object"] = obj;
    } else if (include != "None") {
      json meta = Meta(obj);
      row["object"] = {
          {"kind", "PartialObjectMetadata"}, {"apiVersion", "meta.k8s.io/v1"}, {"metadata", meta}};
    }
    return row;
  }

  json Table(const Ctx& c, const std::vector<const json*>& objs, const json& list_meta) const {
    const int64_t now =
        std::chrono::duration_cast<std::chrono::seconds>(clock.Now().time_since_epoch()).count();
    json rows = json::array();
    for (const json* o : objs) rows.push_back(TableRow(c, *o, now));
    return {{"kind", "Table"},
            {"apiVersion", "meta.k8s.io/v1"},
            {"metadata", list_meta},
            {"columnDefinitions", TableColumns(c.route.res->kind)},
            {"rows", rows}};
  }

  Response Get(Ctx& c) const {
    const std::string& name = c.route.name;
    // Read first: a node's access to a Replica depends on where it is bound.
    auto got = store.Get(Key(c.route, name));
    if (Response a = Authz(c, name, got.ok() ? BoundNode(got->body) : ""); a.status) return a;
    if (!got.ok()) return Finish(c, StoreError(c, got.status(), name));
    if (c.route.sub == "scale") return Finish(c, Json(200, ScaleOf(got->body)));
    if (WantsTable(*c.req)) {
      return Finish(
          c, Json(200, Table(c, {&got->body},
                             {{"resourceVersion", MetaString(got->body, "resourceVersion")}})));
    }
    return Finish(c, Json(200, got->body));
  }

  Response List(Ctx& c) const {
    if (Response a = Authz(c, "", ""); a.status) return a;
    store::ListOptions lo;
    if (Response e = ListOptionsFrom(c, lo); e.status) return Finish(c, e);
    auto list = store.List(lo);
    if (!list.ok()) {
      Status s = list.status();
      if (s.code() == Code::kExpired && !lo.continue_token.empty()) {
        return Finish(c,
                      StatusResponse(
                          410, "Expired",
                          "The provided continue parameter is too old to display a consistent list "
                          "result. You can start a new list without the continue parameter."));
      }
      if (s.code() == Code::kInvalidArgument) return Finish(c, BadRequest(s.message()));
      return Finish(c, StoreError(c, s, ""));
    }
    if (WantsTable(*c.req)) {
      std::vector<const json*> objs;
      for (const auto& o : list->items) objs.push_back(&o.body);
      json meta = {{"resourceVersion", std::to_string(list->revision)}};
      if (!list->continue_token.empty()) meta["continue"] = list->continue_token;
      return Finish(c, Json(200, Table(c, objs, meta)));
    }
    // Serialise directly: items are already JSON objects.
    std::string out;
    out.reserve(256 + list->items.size() * 512);
    json meta = {{"resourceVersion", std::to_string(list->revision)}};
    if (!list->continue_token.empty()) meta["continue"] = list->continue_token;
    out += "{\"kind\":" + Quote(c.route.res->kind + "List") + ",\"apiVersion\":" +
           json(c.route.group.empty() ? c.route.version : c.route.group + "/" + c.route.version)
               .dump() +
           ",\"metadata\":" + meta.dump() + ",\"items\":[";
    bool first = true;
    for (const auto& o : list->items) {
      if (!first) out += ',';
      first = false;
      out += o.body.dump();
    }
    out += "]}";
    Response r;
    r.body = std::move(out);
    return Finish(c, r);
  }

  // --- watch -----------------------------------------------------------------
  Response Watch(Ctx& c) const;

  // --- entry -----------------------------------------------------------------
  Response Handle(const Request& req);
  Response HandleResource(const Request& req, Route route, const User& user);

  HandlerOptions options;
  store::ObjectStore& store;
  const SchemaRegistry& schema;
  TokenAuthenticator* auth;
  common::Clock& clock;
  prometheus::Registry& registry;
  std::function<Status()> ready;
  std::unordered_map<std::string, const ResourceInfo*> by_plural;
  std::function<void()> gc_wake = [] {};

  prometheus::Family<prometheus::Counter>& requests_family;
  prometheus::Family<prometheus::Histogram>& latency_family;
  prometheus::Gauge& inflight_gauge;
  prometheus::Family<prometheus::Gauge>& watches_family;
  prometheus::Family<prometheus::Counter>& watch_events_family;
  prometheus::Family<prometheus::Counter>& rejected_family;

  std::atomic<int> inflight{0};
  mutable std::mutex watch_mu;
  mutable std::unordered_map<std::string, int> watches_by_user;  // guarded by watch_mu
  mutable int watches_total = 0;                                 // guarded by watch_mu
  mutable std::vector<store::Watcher*> live_watchers;            // guarded by watch_mu
  mutable std::atomic<bool> closing{false};                      // set once at shutdown
};

// ---------------------------------------------------------------------------

namespace {

std::string EventLine(std::string_view type, const json& object) {
  std::string s = "{\"type\":\"";
  s += type;
  s += "\",\"object\":";
  s += object.dump();
  s += "}\n";
  return s;
}

}  // namespace

Response Handler::Impl::Watch(Ctx& c) const {
  if (Response a = Authz(c, "", ""); a.status) return a;
  store::ListOptions lo;
  if (Response e = ListOptionsFrom(c, lo); e.status) return Finish(c, e);
  const std::string rv_text = c.req->Query("resourceVersion");
  const bool initial = rv_text.empty() || rv_text == "0";
  const bool bookmarks = IsTrue(c.req->Query("allowWatchBookmarks"));
  const bool table = WantsTable(*c.req);
  std::chrono::seconds duration = options.max_watch_duration;
  if (c.req->HasQuery("timeoutSeconds")) {
    const int64_t t = ParseRv(c.req->Query("timeoutSeconds"));
    if (t < 0) return Finish(c, BadRequest("timeoutSeconds: must be a non-negative integer"));
    if (t > 0) duration = std::min<std::chrono::seconds>(duration, std::chrono::seconds(t));
  } else {
    // Spread reconnects of long-lived watches, as kube-apiserver does.
    thread_local std::mt19937 rng{std::random_device{}()};
    duration += std::chrono::seconds(rng() % std::max<int64_t>(1, duration.count()));
  }
  {
    std::lock_guard lock(watch_mu);
    if (closing)
      return Finish(c, StatusResponse(503, "ServiceUnavailable", "the server is shutting down"));
    if (watches_total >= options.max_watches_total ||
        watches_by_user[c.user.name] >= options.max_watches_per_user) {
      rejected_family.Add({{"reason", "too_many_watches"}}).Increment();
      return Finish(
          c, TooManyRequests("too many open watches for user " + Quote(c.user.name) + " (limit " +
                                 std::to_string(options.max_watches_per_user) + ")",
                             5));
    }
    ++watches_total;
    ++watches_by_user[c.user.name];
  }
  auto release = [this, user = c.user.name] {
    std::lock_guard lock(watch_mu);
    --watches_total;
    if (--watches_by_user[user] <= 0) watches_by_user.erase(user);
  };

  // Initial state for RV "" / "0": synthetic ADDED events, then changes after.
  std::vector<json> initial_objects;
  int64_t start = 0;
  if (initial) {
    store::ListOptions all = lo;
    all.limit = 0;
    all.continue_token.clear();
    all.match = store::RevisionMatch::kLatest;
    auto list = store.List(all);
    if (!list.ok()) {
      release();
      return Finish(c, StoreError(c, list.status(), ""));
    }
    for (auto& o : list->items) initial_objects.push_back(std::move(o.body));
    start = list->revision;
  } else {
    start = lo.revision;
  }
  store::WatchOptions wo;
  wo.kind = lo.kind;
  wo.ns = lo.ns;
  wo.labels = lo.labels;
  wo.fields = lo.fields;
  wo.start_revision = start;
  wo.progress_notify = bookmarks;
  auto watcher = store.Watch(wo);
  Response r;
  r.status = 200;
  if (table) r.content_type = "application/json;as=Table;v=v1;g=meta.k8s.io";
  std::shared_ptr<store::Watcher> w;
  Status first_error;
  if (watcher.ok()) {
    w = std::move(*watcher);
  } else {
    first_error = watcher.status();
  }
  const Route route = c.route;
  const std::string kind = c.route.res->kind;
  const std::string api_version =
      c.route.group.empty() ? c.route.version : c.route.group + "/" + c.route.version;
  const std::string include = c.req->Query("includeObject");
  auto& events_counter_added =
      watch_events_family.Add({{"resource", route.plural}, {"type", "ADDED"}});
  auto& events_counter_modified =
      watch_events_family.Add({{"resource", route.plural}, {"type", "MODIFIED"}});
  auto& events_counter_deleted =
      watch_events_family.Add({{"resource", route.plural}, {"type", "DELETED"}});
  auto& events_counter_other =
      watch_events_family.Add({{"resource", route.plural}, {"type", "other"}});
  auto& gauge = watches_family.Add({{"resource", route.plural}});
  Ctx cc = c;
  Request req_copy = *c.req;
  r.stream = [this, w, first_error, initial_objects = std::move(initial_objects), release, table,
              kind, api_version, duration, route, &events_counter_added, &events_counter_modified,
              &events_counter_deleted, &events_counter_other, &gauge, cc,
              req_copy](StreamSink& sink) mutable {
    cc.req = &req_copy;
    gauge.Increment();
    if (w) {
      std::lock_guard lock(watch_mu);
      live_watchers.push_back(w.get());
    }
    const int64_t now_s =
        std::chrono::duration_cast<std::chrono::seconds>(clock.Now().time_since_epoch()).count();
    auto render = [&](const json& obj) -> json {
      if (!table) return obj;
      json t = Table(cc, {&obj}, {{"resourceVersion", MetaString(obj, "resourceVersion")}});
      if (!t["rows"].empty())
        t["columnDefinitions"] = json::array();  // only the first carries them? keep all
      t["columnDefinitions"] = TableColumns(kind);
      return t;
    };
    (void)now_s;
    bool alive = true;
    for (const auto& obj : initial_objects) {
      if (closing.load()) break;
      if (!(alive = sink.Write(EventLine("ADDED", render(obj))))) break;
      events_counter_added.Increment();
    }
    if (alive && !w) {
      const bool expired = first_error.code() == Code::kExpired;
      json st = StatusObject(
          expired ? 410 : common::HttpStatus(first_error.code()),
          expired ? "Expired" : std::string(common::KubeReason(first_error.code())),
          expired ? "too old resource version: " + first_error.message() : first_error.message());
      sink.Write(EventLine("ERROR", st));
      alive = false;
    }
    const auto deadline = std::chrono::steady_clock::now() + duration;
    auto last_write = std::chrono::steady_clock::now();
    while (alive && std::chrono::steady_clock::now() < deadline && !sink.Closed() &&
           !closing.load()) {
      auto ev = w->Next(std::chrono::milliseconds(500));
      if (!ev) {
        // A dead client is only noticed when a write fails: while idle, send
        // a bare newline now and then (JSON stream readers skip whitespace).
        if (std::chrono::steady_clock::now() - last_write >= options.watch_keepalive) {
          alive = sink.Write("\n");
          last_write = std::chrono::steady_clock::now();
        }
        continue;
      }
      last_write = std::chrono::steady_clock::now();
      using T = store::WatchEvent::Type;
      if (ev->type == T::kError) {
        const bool expired = ev->error.code() == Code::kExpired;
        json st = StatusObject(
            expired ? 410 : 500, expired ? "Expired" : "InternalError",
            expired ? "too old resource version: " + ev->error.message() : ev->error.message());
        sink.Write(EventLine("ERROR", st));
        events_counter_other.Increment();
        break;
      }
      if (ev->type == T::kBookmark) {
        json b = {{"kind", kind},
                  {"apiVersion", api_version},
                  {"metadata", {{"resourceVersion", std::to_string(ev->object.revision)}}}};
        if (table) {
          b = {{"kind", "Table"},
               {"apiVersion", "meta.k8s.io/v1"},
               {"metadata", {{"resourceVersion", std::to_string(ev->object.revision)}}},
               {"columnDefinitions", json::array()},
               {"rows", json::array()}};
        }
        alive = sink.Write(EventLine("BOOKMARK", b));
        events_counter_other.Increment();
        continue;
      }
      const std::string_view type = store::WatchEvent::TypeName(ev->type);
      alive = sink.Write(EventLine(type, render(ev->object.body)));
      (ev->type == T::kAdded      ? events_counter_added
       : ev->type == T::kModified ? events_counter_modified
                                  : events_counter_deleted)
          .Increment();
    }
    if (w) {
      std::lock_guard lock(watch_mu);
      live_watchers.erase(std::remove(live_watchers.begin(), live_watchers.end(), w.get()),
                          live_watchers.end());
    }
    if (w) w->Stop();
    gauge.Decrement();
    release();
  };
  return Finish(c, std::move(r));
}

Response Handler::Impl::HandleResource(const Request& req, Route route, const User& user) {
  Ctx c;
  c.req = &req;
  c.route = std::move(route);
  c.user = user;
  const bool collection = c.route.name.empty();
  const std::string& m = req.method;
  if (m == "GET") {
    c.verb = collection ? (IsTrue(req.Query("watch")) ? "watch" : "list") : "get";
  } else if (m == "POST" && collection) {
    c.verb = "create";
  } else if (m == "PUT" && !collection) {
    c.verb = "update";
  } else if (m == "PATCH" && !collection) {
    c.verb = "patch";
  } else if (m == "DELETE") {
    c.verb = collection ? "deletecollection" : "delete";
  } else {
    return MethodNotAllowed(m, req.path);
  }
  if (collection && !c.route.sub.empty()) return NotFoundPath(req.path);
  if (c.route.sub == "scale" && (c.verb == "delete" || c.verb == "create"))
    return MethodNotAllowed(m, req.path);
  if (c.route.sub == "status" && c.verb == "delete") return MethodNotAllowed(m, req.path);
  // A namespaced kind's collection without a namespace: list/watch across all.
  if (c.route.res->namespaced && !c.route.namespaced_path && c.verb != "list" &&
      c.verb != "watch") {
    return MethodNotAllowed(m, req.path);
  }
  const std::string fv = req.Query("fieldValidation");
  if (fv.empty())
    c.fv = options.default_field_validation;
  else if (fv == "Strict")
    c.fv = FieldValidation::kStrict;
  else if (fv == "Warn")
    c.fv = FieldValidation::kWarn;
  else if (fv == "Ignore")
    c.fv = FieldValidation::kIgnore;
  else
    return BadRequest("fieldValidation: Unsupported value: " + Quote(fv) +
                      ": supported values: \"Ignore\", \"Strict\", \"Warn\"");
  const std::string dry = req.Query("dryRun");
  if (!dry.empty()) {
    if (dry != "All")
      return BadRequest("dryRun: Unsupported value: " + Quote(dry) + ": supported values: \"All\"");
    c.dry_run = true;
  }
  c.manager = req.Query("fieldManager");
  if (c.manager.size() > 128) return BadRequest("fieldManager: must be at most 128 characters");
  for (unsigned char ch : c.manager) {
    if (ch < 0x20 || ch > 0x7e)
      return BadRequest("fieldManager: must contain only printable ASCII");
  }
  if (c.manager.empty()) c.manager = ManagerFromUserAgent(req.Header("User-Agent"));

  if (c.verb == "get") return Get(c);
  if (c.verb == "list") return List(c);
  if (c.verb == "watch") return Watch(c);
  if (c.verb == "delete") return Delete(c);
  if (c.verb == "deletecollection") {
    if (Response a = Authz(c, "", ""); a.status) return a;
    return DeleteCollection(c);
  }
  if (c.verb == "patch") return Patch(c);
  // create / update: a body.
  const std::string ct = MediaType(req.Header("Content-Type"));
  auto body = DecodeObjectBody(req, &c.duplicates);
  if (!body.ok()) {
    if (body.status().code() == Code::kUnavailable) return UnsupportedMediaType(ct);
    return BadRequest(body.status().message());
  }
  if (c.verb == "create") {
    if (!c.route.sub.empty()) return MethodNotAllowed(m, req.path);
    return Create(c, std::move(*body));
  }
  if (c.route.sub == "scale") {
    auto cur = store.Get(Key(c.route, c.route.name));
    if (!cur.ok()) return StoreError(c, cur.status(), c.route.name);
    if (Response a = Authz(c, c.route.name, ""); a.status) return a;
    return ScaleWrite(c, *body, cur->body, true);
  }
  if (c.route.sub == "status") {
    if (Response e = CheckEnvelope(c, *body); e.status) return Finish(c, e);
    auto cur = store.Get(Key(c.route, c.route.name));
    if (!cur.ok()) return StoreError(c, cur.status(), c.route.name);
    if (Response a = Authz(c, c.route.name, BoundNode(cur->body)); a.status) return a;
    if (MetaString(*body, "name") != c.route.name) {
      return Finish(c, BadRequest("the name of the object (" + MetaString(*body, "name") +
                                  ") does not match the name on the URL (" + c.route.name + ")"));
    }
    if (MetaString(*body, "resourceVersion").empty()) {
      return Finish(c,
                    ErrorResponse(Status(Code::kInvalidArgument, "",
                                         {{"metadata.resourceVersion",
                                           "Invalid value: 0x0: must be specified for an update"}}),
                                  Target(c.route, c.route.name)));
    }
    return WriteUpdate(c, std::move(*body), cur->body);
  }
  return Update(c, std::move(*body));
}

Response Handler::Impl::Handle(const Request& req) {
  std::vector<std::string> seg;
  for (auto& s : Split(req.path, '/')) {
    if (!s.empty()) seg.push_back(s);
  }
  const std::string& p = req.path;
  // Public endpoints need no credentials, but bad credentials are refused
  // everywhere (as kube-apiserver: only a request without any is anonymous).
  std::optional<User> user;
  if (!req.Header("Authorization").empty() || !options.authenticate) {
    user = Authenticate(req);
    if (!user) {
      rejected_family.Add({{"reason", "unauthorized"}}).Increment();
      return Unauthorized();
    }
  }
  if (p == "/healthz" || p == "/livez") return Text(200, "text/plain", "ok");
  if (p == "/readyz") {
    const Status s = ready ? ready() : Status::Ok();
    if (s.ok()) return Text(200, "text/plain", "ok");
    return Text(503, "text/plain", "store: " + s.ToString() + "\n");
  }
  if (p == "/version") {
    return Json(200, {{"major", options.major},
                      {"minor", options.minor},
                      {"gitVersion", options.git_version},
                      {"gitCommit", "corral-" + options.corral_version},
                      {"gitTreeState", "clean"},
                      {"buildDate", "2026-11-24T00:00:00Z"},
                      {"goVersion", "corral (C++20)"},
                      {"compiler", "gc"},
                      {"platform", "linux/amd64"}});
  }
  if (p == "/metrics") {
    prometheus::TextSerializer serializer;
    return Text(200, "text/plain; version=0.0.4; charset=utf-8",
                serializer.Serialize(registry.Collect()));
  }
  // Everything else needs a user.
  if (!user) {
    rejected_family.Add({{"reason", "unauthorized"}}).Increment();
    return Unauthorized();
  }
  if (req.method != "GET" && (seg.empty() || (seg[0] != "api" && seg[0] != "apis"))) {
    return MethodNotAllowed(req.method, p);
  }
  if (!seg.empty() && seg[0] == "openapi") {
    if (seg.size() == 1 || req.method != "GET") return NotFoundPath(p);
    if (seg[1] == "v3" && seg.size() == 2) return Json(200, schema.OpenApiV3Index());
    json doc;
    if (seg[1] == "v3" && seg.size() == 5 && seg[2] == "apis")
      doc = schema.OpenApiV3(seg[3], seg[4]);
    if (seg[1] == "v3" && seg.size() == 4 && seg[2] == "api") doc = schema.OpenApiV3("", seg[3]);
    if (!doc.is_null()) return Json(200, doc);
    if (seg[1] == "v2" && seg.size() == 2) {
      const std::string accept = req.Header("Accept");
      if (accept.find("protobuf") != std::string::npos) {
        static const Result<std::string> proto = EncodeOpenApiV2Proto(schema.OpenApiV2());
        if (!proto.ok()) return StatusResponse(500, "InternalError", proto.status().message());
        return Text(200, "application/octet-stream", *proto);
      }
      return Json(200, schema.OpenApiV2());
    }
    return NotFoundPath(p);
  }
  if (seg.empty()) {
    json paths = {"/api",     "/api/v1",     "/apis",       "/healthz", "/livez",
                  "/metrics", "/openapi/v2", "/openapi/v3", "/readyz",  "/version"};
    for (const auto& [g, v] : GroupVersions()) {
      paths.push_back("/apis/" + g);
      paths.push_back("/apis/" + g + "/" + v);
    }
    return Json(200, {{"paths", paths}});
  }
  if (auto route = ParseResourcePath(seg)) return HandleResource(req, std::move(*route), *user);
  if ((seg[0] == "api" && seg.size() <= 2) || (seg[0] == "apis" && seg.size() <= 3)) {
    if (req.method != "GET") return MethodNotAllowed(req.method, p);
    return Discovery(seg);
  }
  return NotFoundPath(p);
}

// ---------------------------------------------------------------------------

Handler::Handler(HandlerOptions options, store::ObjectStore& store, const SchemaRegistry& schema,
                 TokenAuthenticator* auth, common::Clock& clock, prometheus::Registry& registry,
                 std::function<Status()> ready)
    : impl_(std::make_unique<Impl>(std::move(options), store, schema, auth, clock, registry,
                                   std::move(ready))) {}

Handler::~Handler() = default;

namespace {
// A bounded label: the HTTP method for the methods the API serves, else "other".
std::string VerbOf(const Request& req) {
  if (req.method == "GET") return IsTrue(req.Query("watch")) ? "WATCH" : "GET";
  for (const char* m : {"POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}) {
    if (req.method == m) return m;
  }
  return "other";
}
std::string ResourceOf(const Request& req,
                       const std::unordered_map<std::string, const ResourceInfo*>& known) {
  // /apis/G/V/[namespaces/NS/]PLURAL[/NAME[/SUB]] -> PLURAL[/SUB]; others: a fixed class.
  auto seg = Split(req.path, '/');
  std::vector<std::string> s;
  for (auto& x : seg)
    if (!x.empty()) s.push_back(x);
  size_t i = 0;
  if (s.size() >= 3 && s[0] == "api")
    i = 2;
  else if (s.size() >= 4 && s[0] == "apis")
    i = 3;
  else if (!s.empty() && (s[0] == "api" || s[0] == "apis"))
    return "discovery";
  else if (!s.empty() && s[0] == "openapi")
    return "openapi";
  else
    return "other";
  if (s.size() > i + 2 && s[i] == "namespaces") i += 2;
  if (i >= s.size()) return "discovery";
  const std::string group = s[0] == "api" ? "" : s[1];
  if (!known.count(group + "/" + s[i])) return "other";
  std::string r = s[i];
  if (s.size() == i + 3)
    r += (s[i + 2] == "status" || s[i + 2] == "scale") ? "/" + s[i + 2] : "/other";
  return r;
}
}  // namespace

Response Handler::Handle(const Request& request) {
  Impl& i = *impl_;
  const auto start = std::chrono::steady_clock::now();
  const std::string verb = VerbOf(request);
  const bool is_watch = verb == "WATCH";
  Response r;
  if (!is_watch && i.inflight.fetch_add(1) >= i.options.max_inflight) {
    i.inflight.fetch_sub(1);
    i.rejected_family.Add({{"reason", "overloaded"}}).Increment();
    r = TooManyRequests(
        "the server has received too many requests and has asked us to try again later", 1);
  } else {
    if (!is_watch) i.inflight_gauge.Increment();
    try {
      r = i.Handle(request);
    } catch (const std::exception& e) {
      spdlog::error("api: {} {}: unexpected error: {}", request.method, request.path, e.what());
      r = StatusResponse(500, "InternalError", std::string("internal error: ") + e.what());
    }
    if (!is_watch) {
      i.inflight.fetch_sub(1);
      i.inflight_gauge.Decrement();
    }
  }
  const std::string resource = ResourceOf(request, i.by_plural);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  i.requests_family
      .Add({{"verb", verb}, {"resource", resource}, {"code", std::to_string(r.status)}})
      .Increment();
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  i.latency_family.Add({{"verb", verb}, {"resource", resource}}, kBuckets).Observe(secs);
  if (r.status >= 500) {
    spdlog::warn("api: {} {} -> {}", request.method, request.path, r.status);
  } else {
    spdlog::debug("api: {} {} -> {} ({:.1f} ms)", request.method, request.path, r.status,
                  secs * 1e3);
  }
  return r;
}

void Handler::SetDeleteHook(std::function<void()> hook) { impl_->gc_wake = std::move(hook); }

int Handler::open_watches() const {
  std::lock_guard lock(impl_->watch_mu);
  return impl_->watches_total;
}

void Handler::CloseWatches() {
  std::lock_guard lock(impl_->watch_mu);
  impl_->closing = true;
  for (auto* w : impl_->live_watchers) w->Stop();
}

}  // namespace corral::api
