// The API server over real HTTP on loopback against a real PostgreSQL store:
// discovery, CRUD, patch flavours, server-side apply, subresources,
// finalizers, validation errors, limits, watch, authentication.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cpprest/http_client.h>
#include <filesystem>
#include <fstream>
#include <thread>

#include "api/api_server.h"
#include "api/auth.h"
#include "api/gc.h"
#include "api/handler.h"
#include "api/schema.h"
#include "tests/support/test_db.h"

namespace corral::api {
namespace {

using nlohmann::json;
namespace http = web::http;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

struct Reply {
  int status = 0;
  json body;
  std::string text;
  http::http_headers headers;
};

class ApiServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    store_ = testing::StartStore().release();
    dir_ = std::filesystem::temp_directory_path() / ("corral-api-test-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    tokens_ = dir_ / "tokens.csv";
    admin_ = *AddToken(tokens_, "admin", Role::kAdmin);
    viewer_ = *AddToken(tokens_, "viewer", Role::kViewer);
    node_ = *AddToken(tokens_, "node-a", Role::kNode);
    auth_ = new TokenAuthenticator(tokens_);
    ASSERT_TRUE(auth_->Load().ok());
    HandlerOptions ho;
    ho.max_body_bytes = 64 * 1024;
    ho.max_watches_per_user = 3;
    ho.watch_keepalive = std::chrono::milliseconds(200);
    handler_ = new Handler(ho, *store_->store, SchemaRegistry::Default(), auth_, store_->clock,
                           store_->registry, [] { return common::Status::Ok(); });
    ApiServerOptions so;
    so.listen = "127.0.0.1:" + std::to_string(FreePort());
    so.max_body_bytes = 64 * 1024;
    GarbageCollectorOptions go;
    go.interval = std::chrono::milliseconds(300);
    go.debounce = std::chrono::milliseconds(20);
    gc_ = new GarbageCollector(go, *store_->store, store_->kinds, store_->registry);
    handler_->SetDeleteHook([] { gc_->Wake(); });
    gc_->Start();
    server_ = new ApiServer(so, *handler_);
    ASSERT_TRUE(server_->Start().ok());
    url_ = server_->url();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete gc_;
    delete handler_;
    delete auth_;
    delete store_;
    std::filesystem::remove_all(dir_);
  }

  static Reply Call(const std::string& method, const std::string& path,
                    const std::string& body = "",
                    const std::string& content_type = "application/json",
                    const std::string& token = admin_, const std::string& accept = "") {
    http::client::http_client client(url_);
    http::http_request req(method);
    req.set_request_uri(path);
    if (!token.empty()) req.headers().add("Authorization", "Bearer " + token);
    if (!accept.empty()) req.headers().add("Accept", accept);
    if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
      req.set_body(body, content_type);
    }
    auto resp = client.request(req).get();
    Reply r;
    r.status = resp.status_code();
    r.text = resp.extract_utf8string(true).get();
    r.headers = resp.headers();
    r.body = json::parse(r.text, nullptr, false);
    return r;
  }

  static std::string Ns() { return "/apis/corral.dev/v1alpha1/namespaces/t"; }
  static json Model(const std::string& name, json spec = nullptr) {
    if (spec.is_null()) spec = {{"engine", "sim"}, {"source", "sim://tiny"}};
    return {{"apiVersion", "corral.dev/v1alpha1"},
            {"kind", "Model"},
            {"metadata", {{"name", name}, {"labels", {{"app", "x"}}}}},
            {"spec", spec}};
  }
  static json Md(const std::string& name, int replicas) {
    return {{"apiVersion", "corral.dev/v1alpha1"},
            {"kind", "ModelDeployment"},
            {"metadata", {{"name", name}}},
            {"spec", {{"modelRef", {{"name", "m"}}}, {"replicas", replicas}}}};
  }

  static inline testing::StoreHandle* store_ = nullptr;
  static inline std::filesystem::path dir_, tokens_;
  static inline std::string admin_, viewer_, node_, url_;
  static inline TokenAuthenticator* auth_ = nullptr;
  static inline Handler* handler_ = nullptr;
  static inline ApiServer* server_ = nullptr;
  static inline GarbageCollector* gc_ = nullptr;

  // Polls GET path until it answers `status` (bounded: 10 s).
  static bool WaitStatus(const std::string& path, int status) {
    for (int i = 0; i < 100; ++i) {
      if (Call("GET", path).status == status) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // An owner deployment and one Replica it owns; returns the owner's uid.
  static std::string OwnerWithDependent(const std::string& owner, const std::string& dep) {
    auto o = Call("POST", Ns() + "/modeldeployments", Md(owner, 1).dump());
    EXPECT_EQ(o.status, 201) << o.text;
    const std::string uid = o.body["metadata"]["uid"];
    json r = {{"apiVersion", "corral.dev/v1alpha1"},
              {"kind", "Replica"},
              {"metadata",
               {{"name", dep},
                {"ownerReferences", json::array({{{"apiVersion", "corral.dev/v1alpha1"},
                                                  {"kind", "ModelDeployment"},
                                                  {"name", owner},
                                                  {"uid", uid},
                                                  {"controller", true},
                                                  {"blockOwnerDeletion", true}}})}}},
              {"spec", {{"deployment", owner}, {"modelRef", {{"name", "m"}}}}}};
    auto d = Call("POST", Ns() + "/replicas", r.dump());
    EXPECT_EQ(d.status, 201) << d.text;
    return uid;
  }
};

TEST_F(ApiServerTest, VersionHealthAndDiscovery) {
  auto v = Call("GET", "/version", "", "", "");
  EXPECT_EQ(v.status, 200);
  EXPECT_EQ(v.body["major"], "1");
  EXPECT_GE(std::stoi(v.body["minor"].get<std::string>()), 30);
  EXPECT_EQ(Call("GET", "/readyz", "", "", "").status, 200);
  auto apis = Call("GET", "/apis");
  ASSERT_EQ(apis.status, 200) << apis.text;
  EXPECT_EQ(apis.body["kind"], "APIGroupList");
  EXPECT_THAT(apis.text, ::testing::HasSubstr("corral.dev/v1alpha1"));
  auto rl = Call("GET", "/apis/corral.dev/v1alpha1");
  ASSERT_EQ(rl.status, 200);
  bool md = false, scale = false;
  for (const auto& r : rl.body["resources"]) {
    if (r["name"] == "modeldeployments") {
      md = true;
      EXPECT_THAT(r["shortNames"].dump(), ::testing::HasSubstr("\"md\""));
      EXPECT_THAT(r["categories"].dump(), ::testing::HasSubstr("\"all\""));
    }
    if (r["name"] == "modeldeployments/scale") {
      scale = true;
      EXPECT_EQ(r["group"], "autoscaling");
      EXPECT_EQ(r["kind"], "Scale");
    }
  }
  EXPECT_TRUE(md && scale) << rl.text;
  auto api = Call("GET", "/api/v1");
  EXPECT_THAT(api.text, ::testing::HasSubstr("\"events\""));
  // Unauthenticated discovery is refused with a Status.
  auto anon = Call("GET", "/apis", "", "", "");
  EXPECT_EQ(anon.status, 401);
  EXPECT_EQ(anon.body["reason"], "Unauthorized");
}

TEST_F(ApiServerTest, OpenApiDocumentsServe) {
  auto idx = Call("GET", "/openapi/v3");
  ASSERT_EQ(idx.status, 200);
  const std::string url = idx.body["paths"]["apis/corral.dev/v1alpha1"]["serverRelativeURL"];
  auto doc = Call("GET", url);
  ASSERT_EQ(doc.status, 200);
  EXPECT_TRUE(doc.body["components"]["schemas"].contains("dev.corral.v1alpha1.Model"));
  auto pb = Call("GET", "/openapi/v2", "", "", admin_,
                 "application/com.github.proto-openapi.spec.v2@v1.0+protobuf");
  EXPECT_EQ(pb.status, 200);
  EXPECT_EQ(pb.headers.content_type(), "application/octet-stream");
  EXPECT_GT(pb.text.size(), 1000u);
}

TEST_F(ApiServerTest, CreateGetConflictAndErrors) {
  auto c = Call("POST", Ns() + "/models", Model("m1").dump());
  ASSERT_EQ(c.status, 201) << c.text;
  EXPECT_EQ(c.body["metadata"]["namespace"], "t");
  EXPECT_EQ(c.body["metadata"]["generation"], 1);
  EXPECT_FALSE(c.body["metadata"]["uid"].get<std::string>().empty());
  auto again = Call("POST", Ns() + "/models", Model("m1").dump());
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.body["reason"], "AlreadyExists");
  EXPECT_EQ(again.body["message"], "models.corral.dev \"m1\" already exists");
  auto g = Call("GET", Ns() + "/models/m1");
  ASSERT_EQ(g.status, 200);
  auto nf = Call("GET", Ns() + "/models/nope");
  EXPECT_EQ(nf.status, 404);
  EXPECT_EQ(nf.body["message"], "models.corral.dev \"nope\" not found");
  EXPECT_EQ(nf.body["details"]["kind"], "models");
  // Update with a stale resourceVersion.
  json stale = g.body;
  stale["spec"]["source"] = "sim://other";
  auto u1 = Call("PUT", Ns() + "/models/m1", stale.dump());
  ASSERT_EQ(u1.status, 200) << u1.text;
  auto u2 = Call("PUT", Ns() + "/models/m1", stale.dump());
  EXPECT_EQ(u2.status, 409);
  EXPECT_EQ(u2.body["reason"], "Conflict");
  // Namespace mismatch, wrong kind, malformed JSON, unsupported media type.
  json other = Model("m2");
  other["metadata"]["namespace"] = "elsewhere";
  EXPECT_EQ(Call("POST", Ns() + "/models", other.dump()).status, 400);
  json wrong = Model("m3");
  wrong["kind"] = "Replica";
  auto w = Call("POST", Ns() + "/models", wrong.dump());
  EXPECT_EQ(w.status, 400);
  auto bad = Call("POST", Ns() + "/models", "{\"apiVersion\": \n  \"x\",,}");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body["message"].get<std::string>(), ::testing::HasSubstr("line 2"));
  EXPECT_EQ(Call("POST", Ns() + "/models", Model("m4").dump(), "text/html").status, 415);
  // Nothing of the failed requests was written.
  auto list = Call("GET", Ns() + "/models");
  int count = 0;
  for (const auto& i : list.body["items"]) count += i["metadata"]["name"] == "m1";
  EXPECT_EQ(list.body["items"].size(), 1u);
  EXPECT_EQ(count, 1);
}

TEST_F(ApiServerTest, ValidationStrictWarnAndInvalid) {
  json m = Model("v1", {{"engine", "sim"}, {"source", "sim://x"}, {"bogus", 1}});
  auto strict = Call("POST", Ns() + "/models?fieldValidation=Strict", m.dump());
  EXPECT_EQ(strict.status, 400) << strict.text;
  EXPECT_THAT(strict.text, ::testing::HasSubstr("spec.bogus"));
  auto warn = Call("POST", Ns() + "/models?fieldValidation=Warn", m.dump());
  ASSERT_EQ(warn.status, 201) << warn.text;
  EXPECT_THAT(warn.headers["Warning"], ::testing::HasSubstr("unknown field \\\"spec.bogus\\\""));
  EXPECT_FALSE(warn.body["spec"].contains("bogus"));
  json bad = Model("v2", {{"engine", "nope"}, {"source", "sim://x"}});
  auto inv = Call("POST", Ns() + "/models", bad.dump());
  EXPECT_EQ(inv.status, 422) << inv.text;
  EXPECT_EQ(inv.body["reason"], "Invalid");
  EXPECT_EQ(inv.body["details"]["causes"][0]["field"], "spec.engine");
  json badname = Model("Bad_Name");
  auto bn = Call("POST", Ns() + "/models", badname.dump());
  EXPECT_EQ(bn.status, 422) << bn.text;
  EXPECT_EQ(Call("GET", Ns() + "/models/v2").status, 404);
}

TEST_F(ApiServerTest, LimitsAndYamlBomb) {
  std::string big(70 * 1024, 'x');
  json m = Model("big");
  m["metadata"]["annotations"] = {{"a", big}};
  EXPECT_EQ(Call("POST", Ns() + "/models", m.dump()).status, 413);
  std::string bomb =
      "apiVersion: corral.dev/v1alpha1\nkind: Model\nmetadata: {name: bomb}\n"
      "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
      "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
      "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
      "spec: {engine: sim, source: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]}\n";
  auto r = Call("POST", Ns() + "/models", bomb, "application/yaml");
  EXPECT_EQ(r.status, 400) << r.text;
  EXPECT_THAT(r.text, ::testing::HasSubstr("alias"));
  EXPECT_EQ(Call("GET", Ns() + "/models/bomb").status, 404);
  auto yaml = Call("POST", Ns() + "/models",
                   "apiVersion: corral.dev/v1alpha1\nkind: Model\nmetadata:\n  name: fromyaml\n"
                   "spec:\n  engine: sim\n  source: \"sim://y\"\n",
                   "application/yaml");
  EXPECT_EQ(yaml.status, 201) << yaml.text;
}

TEST_F(ApiServerTest, PatchFlavoursAndPreconditions) {
  ASSERT_EQ(Call("POST", Ns() + "/modeldeployments", Md("p1", 1).dump()).status, 201);
  auto merge = Call("PATCH", Ns() + "/modeldeployments/p1", R"({"spec":{"replicas":2}})",
                    "application/merge-patch+json");
  ASSERT_EQ(merge.status, 200) << merge.text;
  EXPECT_EQ(merge.body["spec"]["replicas"], 2);
  EXPECT_EQ(merge.body["metadata"]["generation"], 2);
  auto smp =
      Call("PATCH", Ns() + "/modeldeployments/p1", R"({"metadata":{"labels":{"tier":"gold"}}})",
           "application/strategic-merge-patch+json");
  ASSERT_EQ(smp.status, 200) << smp.text;
  EXPECT_EQ(smp.body["metadata"]["labels"]["tier"], "gold");
  EXPECT_EQ(smp.body["metadata"]["generation"], 2);  // metadata only
  auto jp = Call("PATCH", Ns() + "/modeldeployments/p1",
                 R"([{"op":"replace","path":"/spec/replicas","value":3}])",
                 "application/json-patch+json");
  ASSERT_EQ(jp.status, 200) << jp.text;
  EXPECT_EQ(jp.body["spec"]["replicas"], 3);
  auto pre = Call("PATCH", Ns() + "/modeldeployments/p1",
                  R"({"metadata":{"resourceVersion":"1"},"spec":{"replicas":4}})",
                  "application/merge-patch+json");
  EXPECT_EQ(pre.status, 409) << pre.text;
  auto bad = Call("PATCH", Ns() + "/modeldeployments/p1", R"({"spec":{"replicas":"many"}})",
                  "application/merge-patch+json");
  EXPECT_EQ(bad.status, 422) << bad.text;
  EXPECT_EQ(Call("GET", Ns() + "/modeldeployments/p1").body["spec"]["replicas"], 3);
  auto test_fail =
      Call("PATCH", Ns() + "/modeldeployments/p1",
           R"([{"op":"test","path":"/spec/replicas","value":9}])", "application/json-patch+json");
  EXPECT_EQ(test_fail.status, 422) << test_fail.text;
  EXPECT_EQ(
      Call("PATCH", Ns() + "/modeldeployments/nope", "{}", "application/merge-patch+json").status,
      404);
}

TEST_F(ApiServerTest, ServerSideApply) {
  json cfg = Md("ssa", 2);
  auto created = Call("PATCH", Ns() + "/modeldeployments/ssa?fieldManager=alice", cfg.dump(),
                      "application/apply-patch+yaml");
  ASSERT_EQ(created.status, 201) << created.text;
  EXPECT_EQ(created.body["metadata"]["managedFields"][0]["manager"], "alice");
  auto same = Call("PATCH", Ns() + "/modeldeployments/ssa?fieldManager=alice", cfg.dump(),
                   "application/apply-patch+yaml");
  EXPECT_EQ(same.status, 200);
  EXPECT_EQ(same.body["metadata"]["resourceVersion"], created.body["metadata"]["resourceVersion"]);
  json bob = Md("ssa", 5);
  auto conflict = Call("PATCH", Ns() + "/modeldeployments/ssa?fieldManager=bob", bob.dump(),
                       "application/apply-patch+yaml");
  EXPECT_EQ(conflict.status, 409) << conflict.text;
  EXPECT_EQ(conflict.body["details"]["causes"][0]["reason"], "FieldManagerConflict");
  EXPECT_EQ(conflict.body["details"]["causes"][0]["field"], ".spec.replicas");
  auto forced = Call("PATCH", Ns() + "/modeldeployments/ssa?fieldManager=bob&force=true",
                     bob.dump(), "application/apply-patch+yaml");
  ASSERT_EQ(forced.status, 200) << forced.text;
  EXPECT_EQ(forced.body["spec"]["replicas"], 5);
  EXPECT_EQ(
      Call("PATCH", Ns() + "/modeldeployments/ssa", bob.dump(), "application/apply-patch+yaml")
          .status,
      400);
}

TEST_F(ApiServerTest, DryRunWritesNothing) {
  auto c = Call("POST", Ns() + "/models?dryRun=All", Model("dry").dump());
  EXPECT_EQ(c.status, 201) << c.text;
  EXPECT_EQ(Call("GET", Ns() + "/models/dry").status, 404);
  ASSERT_EQ(Call("POST", Ns() + "/modeldeployments", Md("dr", 1).dump()).status, 201);
  auto p = Call("PATCH", Ns() + "/modeldeployments/dr?dryRun=All", R"({"spec":{"replicas":7}})",
                "application/merge-patch+json");
  EXPECT_EQ(p.status, 200);
  EXPECT_EQ(p.body["spec"]["replicas"], 7);
  EXPECT_EQ(Call("GET", Ns() + "/modeldeployments/dr").body["spec"]["replicas"], 1);
  EXPECT_EQ(Call("DELETE", Ns() + "/modeldeployments/dr?dryRun=All").status, 200);
  EXPECT_EQ(Call("GET", Ns() + "/modeldeployments/dr").status, 200);
}

TEST_F(ApiServerTest, StatusAndScaleSubresources) {
  json md = Md("sc", 1);
  md["status"] = {{"replicas", 9}};
  auto c = Call("POST", Ns() + "/modeldeployments", md.dump());
  ASSERT_EQ(c.status, 201);
  EXPECT_FALSE(c.body.contains("status") && c.body["status"].contains("replicas"));
  json st = c.body;
  st["status"] = {{"replicas", 1}, {"readyReplicas", 1}};
  st["spec"]["replicas"] = 42;
  auto s = Call("PUT", Ns() + "/modeldeployments/sc/status", st.dump());
  ASSERT_EQ(s.status, 200) << s.text;
  EXPECT_EQ(s.body["status"]["readyReplicas"], 1);
  EXPECT_EQ(s.body["spec"]["replicas"], 1);  // /status changes only status
  auto scale = Call("GET", Ns() + "/modeldeployments/sc/scale");
  ASSERT_EQ(scale.status, 200);
  EXPECT_EQ(scale.body["kind"], "Scale");
  EXPECT_EQ(scale.body["apiVersion"], "autoscaling/v1");
  EXPECT_EQ(scale.body["spec"]["replicas"], 1);
  EXPECT_EQ(scale.body["status"]["replicas"], 1);
  auto ps = Call("PATCH", Ns() + "/modeldeployments/sc/scale", R"({"spec":{"replicas":3}})",
                 "application/merge-patch+json");
  ASSERT_EQ(ps.status, 200) << ps.text;
  EXPECT_EQ(ps.body["spec"]["replicas"], 3);
  json put = ps.body;
  put["spec"]["replicas"] = 4;
  auto pu = Call("PUT", Ns() + "/modeldeployments/sc/scale", put.dump(), "");
  ASSERT_EQ(pu.status, 200) << pu.text;
  auto stale = Call("PUT", Ns() + "/modeldeployments/sc/scale", put.dump());
  EXPECT_EQ(stale.status, 409);
  EXPECT_EQ(Call("GET", Ns() + "/modeldeployments/sc").body["spec"]["replicas"], 4);
}

TEST_F(ApiServerTest, FinalizersHoldDeletion) {
  json m = Model("fin");
  m["metadata"]["finalizers"] = {"corral.dev/test"};
  ASSERT_EQ(Call("POST", Ns() + "/models", m.dump()).status, 201);
  auto d = Call("DELETE", Ns() + "/models/fin", R"({"propagationPolicy":"Background"})");
  ASSERT_EQ(d.status, 200) << d.text;
  EXPECT_TRUE(d.body["metadata"].contains("deletionTimestamp"));
  EXPECT_EQ(Call("GET", Ns() + "/models/fin").status, 200);
  auto p = Call("PATCH", Ns() + "/models/fin", R"({"metadata":{"finalizers":null}})",
                "application/merge-patch+json");
  EXPECT_EQ(p.status, 200) << p.text;
  EXPECT_EQ(Call("GET", Ns() + "/models/fin").status, 404);
}

TEST_F(ApiServerTest, CascadeBackgroundDeletesDependents) {
  OwnerWithDependent("bg", "bg-r0");
  ASSERT_EQ(
      Call("DELETE", Ns() + "/modeldeployments/bg", R"({"propagationPolicy":"Background"})").status,
      200);
  EXPECT_EQ(Call("GET", Ns() + "/modeldeployments/bg").status, 404);
  EXPECT_TRUE(WaitStatus(Ns() + "/replicas/bg-r0", 404));
}

TEST_F(ApiServerTest, CascadeForegroundWaitsForDependents) {
  OwnerWithDependent("fg", "fg-r0");
  json dep = Call("GET", Ns() + "/replicas/fg-r0").body;
  dep["metadata"]["finalizers"] = {"corral.dev/drain"};  // the dependent takes a while
  ASSERT_EQ(Call("PUT", Ns() + "/replicas/fg-r0", dep.dump()).status, 200);
  auto d = Call("DELETE", Ns() + "/modeldeployments/fg?propagationPolicy=Foreground");
  ASSERT_EQ(d.status, 200) << d.text;
  EXPECT_THAT(d.body["metadata"]["finalizers"].dump(), ::testing::HasSubstr("foregroundDeletion"));
  // The dependent is being deleted; the owner stays while it exists.
  for (int i = 0; i < 50; ++i) {
    if (Call("GET", Ns() + "/replicas/fg-r0").body["metadata"].contains("deletionTimestamp")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(Call("GET", Ns() + "/replicas/fg-r0").body["metadata"].contains("deletionTimestamp"));
  EXPECT_EQ(Call("GET", Ns() + "/modeldeployments/fg").status, 200);
  ASSERT_EQ(Call("PATCH", Ns() + "/replicas/fg-r0", R"({"metadata":{"finalizers":null}})",
                 "application/merge-patch+json")
                .status,
            200);
  EXPECT_TRUE(WaitStatus(Ns() + "/modeldeployments/fg", 404));
}

TEST_F(ApiServerTest, CascadeOrphanKeepsDependents) {
  OwnerWithDependent("or", "or-r0");
  ASSERT_EQ(
      Call("DELETE", Ns() + "/modeldeployments/or", R"({"propagationPolicy":"Orphan"})").status,
      200);
  EXPECT_TRUE(WaitStatus(Ns() + "/modeldeployments/or", 404));
  auto r = Call("GET", Ns() + "/replicas/or-r0");
  ASSERT_EQ(r.status, 200);
  EXPECT_FALSE(r.body["metadata"].contains("ownerReferences")) << r.text;
}

TEST_F(ApiServerTest, ListSelectorsPagingAndTables) {
  for (int i = 0; i < 5; ++i) {
    json m = Model("l" + std::to_string(i));
    m["metadata"]["labels"] = {{"idx", std::to_string(i)}, {"grp", i % 2 ? "odd" : "even"}};
    ASSERT_EQ(Call("POST", "/apis/corral.dev/v1alpha1/namespaces/lists/models", m.dump()).status,
              201);
  }
  const std::string base = "/apis/corral.dev/v1alpha1/namespaces/lists/models";
  auto odd = Call("GET", base + "?labelSelector=grp%3Dodd");
  EXPECT_EQ(odd.body["items"].size(), 2u);
  auto byname = Call("GET", base + "?fieldSelector=metadata.name%3Dl3");
  ASSERT_EQ(byname.body["items"].size(), 1u);
  auto badsel = Call("GET", base + "?fieldSelector=spec.nope%3D1");
  EXPECT_EQ(badsel.status, 400);
  std::vector<std::string> names;
  std::string cont;
  for (int page = 0; page < 10; ++page) {
    auto r =
        Call("GET", base + "?limit=2" +
                        (cont.empty() ? "" : "&continue=" + web::uri::encode_data_string(cont)));
    ASSERT_EQ(r.status, 200) << r.text;
    for (const auto& i : r.body["items"]) names.push_back(i["metadata"]["name"]);
    cont = r.body["metadata"].value("continue", "");
    if (cont.empty()) break;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"l0", "l1", "l2", "l3", "l4"}));
  auto table = Call("GET", base, "", "", admin_,
                    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
  ASSERT_EQ(table.status, 200);
  EXPECT_EQ(table.body["kind"], "Table");
  EXPECT_EQ(table.body["columnDefinitions"][0]["format"], "name");
  EXPECT_EQ(table.body["rows"].size(), 5u);
  EXPECT_EQ(table.body["rows"][0]["object"]["kind"], "PartialObjectMetadata");
  auto all = Call("GET", "/apis/corral.dev/v1alpha1/models");
  EXPECT_GE(all.body["items"].size(), 5u);
}

TEST_F(ApiServerTest, WatchStreamsChangesFromResourceVersion) {
  const std::string base = "/apis/corral.dev/v1alpha1/namespaces/watch/models";
  auto c = Call("POST", base, Model("w1").dump());
  ASSERT_EQ(c.status, 201);
  const std::string rv = c.body["metadata"]["resourceVersion"];
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Call("PATCH", base + "/w1", R"({"metadata":{"labels":{"seen":"yes"}}})",
         "application/merge-patch+json");
  });
  auto w = Call("GET", base + "?watch=true&resourceVersion=" + rv + "&timeoutSeconds=2");
  writer.join();
  EXPECT_EQ(w.status, 200);
  std::istringstream lines(w.text);
  std::string line;
  std::vector<json> events;
  while (std::getline(lines, line)) {
    if (!line.empty()) events.push_back(json::parse(line));
  }
  ASSERT_EQ(events.size(), 1u) << w.text;
  EXPECT_EQ(events[0]["type"], "MODIFIED");
  EXPECT_EQ(events[0]["object"]["metadata"]["labels"]["seen"], "yes");
  // Without a resourceVersion: the current state first, as ADDED.
  auto w0 = Call("GET", base + "?watch=1&timeoutSeconds=1");
  EXPECT_THAT(w0.text, ::testing::HasSubstr("\"type\":\"ADDED\""));
  EXPECT_EQ(handler_->open_watches(), 0);
}

TEST_F(ApiServerTest, WatchClientDisconnectReleasesTheStream) {
  const std::string base = "/apis/corral.dev/v1alpha1/namespaces/watch2/models";
  const int before = handler_->open_watches();
  {
    // A raw client: send the request, read the headers, hang up.
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(std::stoi(url_.substr(url_.rfind(':') + 1)));
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const std::string req = "GET " + base +
                            "?watch=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin_ +
                            "\r\n\r\n";
    ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
    char buf[512];
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const ssize_t n = read(fd, buf, sizeof buf);
    ASSERT_GT(n, 0);
    EXPECT_THAT(std::string(buf, n), ::testing::HasSubstr("200"));
    for (int i = 0; i < 50 && handler_->open_watches() == before; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(handler_->open_watches(), before + 1);
    close(fd);
  }
  // No writes happen: the idle keep-alive finds the closed connection.
  for (int i = 0; i < 50 && handler_->open_watches() > before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(handler_->open_watches(), before);
}

// Raw HTTP/1.1 exchange (for requests an HTTP client library would not send).
std::string RawHttp(const std::string& url, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(std::stoi(url.substr(url.rfind(':') + 1)));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "";
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (write(fd, request.data(), request.size()) < 0) return "";
  char buf[4096];
  const ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  return n > 0 ? std::string(buf, n) : "";
}

TEST_F(ApiServerTest, NodeMayOnlyRemoveFinalizersOfItsReplicas) {
  json r = {{"apiVersion", "corral.dev/v1alpha1"},
            {"kind", "Replica"},
            {"metadata", {{"name", "nr"}, {"finalizers", {"corral.dev/drain"}}}},
            {"spec", {{"modelRef", {{"name", "m"}}}, {"nodeName", "node-a"}}}};
  ASSERT_EQ(Call("POST", Ns() + "/replicas", r.dump()).status, 201);
  // Status: yes. Spec or labels: no. Removing the finalizer: yes.
  EXPECT_EQ(Call("PATCH", Ns() + "/replicas/nr/status", R"({"status":{"phase":"Ready"}})",
                 "application/merge-patch+json", node_)
                .status,
            200);
  EXPECT_EQ(Call("PATCH", Ns() + "/replicas/nr", R"({"metadata":{"labels":{"x":"y"}}})",
                 "application/merge-patch+json", node_)
                .status,
            403);
  EXPECT_EQ(Call("PATCH", Ns() + "/replicas/nr",
                 R"({"metadata":{"finalizers":["a","corral.dev/drain"]}})",
                 "application/merge-patch+json", node_)
                .status,
            403);
  ASSERT_EQ(Call("DELETE", Ns() + "/replicas/nr").status, 200);
  EXPECT_EQ(Call("PATCH", Ns() + "/replicas/nr", R"({"metadata":{"finalizers":null}})",
                 "application/merge-patch+json", node_)
                .status,
            200);
  EXPECT_EQ(Call("GET", Ns() + "/replicas/nr").status, 404);
}

TEST_F(ApiServerTest, HostileRequestsGetClientErrors) {
  // Malformed escapes and bytes that are not UTF-8 in the URL.
  EXPECT_EQ(Call("GET", "/apis/corral.dev/v1alpha1/namespaces/t/models/%zz").status, 400);
  EXPECT_EQ(Call("GET", "/foo%FF").status, 404);
  auto bad_fv = Call("POST", Ns() + "/models?fieldValidation=%FF", Model("u8").dump());
  EXPECT_EQ(bad_fv.status, 400);
  EXPECT_TRUE(bad_fv.body.is_object()) << bad_fv.text;
  // A chunked upload (no Content-Length) is refused before it is read.
  const std::string chunked =
      "POST " + Ns() + "/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin_ +
      "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\n{}\r\n0\r\n\r\n";
  EXPECT_THAT(RawHttp(url_, chunked), ::testing::HasSubstr(" 411 "));
  // A numeric resourceVersion is a bad request, not a server error.
  ASSERT_EQ(Call("POST", Ns() + "/models", Model("numrv").dump()).status, 201);
  EXPECT_EQ(Call("PATCH", Ns() + "/models/numrv/status", R"({"metadata":{"resourceVersion":5}})",
                 "application/merge-patch+json")
                .status,
            400);
  json put = Call("GET", Ns() + "/models/numrv").body;
  put["metadata"]["resourceVersion"] = 5;
  EXPECT_EQ(Call("PUT", Ns() + "/models/numrv", put.dump()).status, 400);
  // An unknown method is bounded in metrics and refused.
  EXPECT_EQ(Call("FOO", Ns() + "/models").status, 405);
  auto metrics = Call("GET", "/metrics", "", "", "");
  EXPECT_THAT(metrics.text, ::testing::Not(::testing::HasSubstr("verb=\"FOO\"")));
}

TEST_F(ApiServerTest, SetBasedSelectorsWithPlusEncodedSpaces) {
  const std::string base = "/apis/corral.dev/v1alpha1/namespaces/sets/models";
  for (const char* tier : {"a", "b", "c"}) {
    json m = Model(std::string("s") + tier);
    m["metadata"]["labels"] = {{"tier", tier}};
    ASSERT_EQ(Call("POST", base, m.dump()).status, 201);
  }
  // Go's url.Values encodes spaces as '+'.
  auto r = Call("GET", base + "?labelSelector=tier+in+%28a%2Cb%29");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["items"].size(), 2u);
}

TEST_F(ApiServerTest, GcKeepsDependentsWhoseOwnerItCannotVerify) {
  json m = Model("ext-owned");
  m["metadata"]["ownerReferences"] = json::array(
      {{{"apiVersion", "apps/v1"}, {"kind", "Deployment"}, {"name", "d"}, {"uid", "u-ext"}}});
  ASSERT_EQ(Call("POST", Ns() + "/models", m.dump()).status, 201);
  // A cluster-scoped Node "owned" by a namespaced Model: an invalid reference.
  json node = {{"apiVersion", "corral.dev/v1alpha1"},
               {"kind", "Node"},
               {"metadata",
                {{"name", "odd-node"},
                 {"ownerReferences", json::array({{{"apiVersion", "corral.dev/v1alpha1"},
                                                   {"kind", "Model"},
                                                   {"name", "x"},
                                                   {"uid", "u-x"}}})}}},
               {"spec", json::object()}};
  ASSERT_EQ(Call("POST", "/apis/corral.dev/v1alpha1/nodes", node.dump()).status, 201);
  // Collection goes on around them: a real orphan is still deleted.
  OwnerWithDependent("gone-owner", "gone-owner-r0");
  ASSERT_EQ(Call("DELETE", Ns() + "/modeldeployments/gone-owner").status, 200);
  EXPECT_TRUE(WaitStatus(Ns() + "/replicas/gone-owner-r0", 404));
  EXPECT_EQ(Call("GET", Ns() + "/models/ext-owned").status, 200);
  EXPECT_EQ(Call("GET", "/apis/corral.dev/v1alpha1/nodes/odd-node").status, 200);
}

TEST_F(ApiServerTest, WatchLimitPerUser) {
  // The suite allows 3 watches per user; the 4th is refused with 429.
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back(
        [] { Call("GET", "/apis/corral.dev/v1alpha1/models?watch=1&timeoutSeconds=2"); });
  }
  for (int i = 0; i < 100 && handler_->open_watches() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto r = Call("GET", "/apis/corral.dev/v1alpha1/models?watch=1&timeoutSeconds=1");
  EXPECT_EQ(r.status, 429) << r.text;
  EXPECT_EQ(r.headers["Retry-After"], "5");
  for (auto& t : ts) t.join();
}

TEST_F(ApiServerTest, AuthorizationByRole) {
  EXPECT_EQ(Call("GET", Ns() + "/models", "", "", "bad-token").status, 401);
  EXPECT_EQ(Call("GET", Ns() + "/models", "", "", viewer_).status, 200);
  auto denied =
      Call("POST", Ns() + "/models", Model("viewer-made").dump(), "application/json", viewer_);
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(denied.body["reason"], "Forbidden");
  json node = {{"apiVersion", "corral.dev/v1alpha1"},
               {"kind", "Node"},
               {"metadata", {{"name", "node-a"}}},
               {"spec", json::object()}};
  EXPECT_EQ(Call("POST", "/apis/corral.dev/v1alpha1/nodes", node.dump(), "application/json", node_)
                .status,
            201);
  node["metadata"]["name"] = "node-b";
  EXPECT_EQ(Call("POST", "/apis/corral.dev/v1alpha1/nodes", node.dump(), "application/json", node_)
                .status,
            403);
  EXPECT_EQ(
      Call("POST", Ns() + "/models", Model("node-made").dump(), "application/json", node_).status,
      403);
}

}  // namespace
}  // namespace corral::api
