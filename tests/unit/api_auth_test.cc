// Unit tests for api/auth.h (tokens, roles) and api/tls.h (certificates,
// kubeconfig). Files live in a fresh temp dir per test; time is a FakeClock.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "api/auth.h"
#include "api/tls.h"
#include "common/clock.h"

namespace corral::api {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "corral-auth-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void WriteFile(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::perms Mode(const fs::path& p) { return fs::status(p).permissions() & fs::perms::mask; }
constexpr fs::perms k0600 = fs::perms::owner_read | fs::perms::owner_write;

// Captures spdlog output for the lifetime of the object.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    auto logger = std::make_shared<spdlog::logger>("capture", sink);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

// ---------------------------------------------------------------- token file

constexpr char kAdminTok[] = "admintoken0123456789abcdef";
constexpr char kViewTok[] = "viewer.Token-with_~+/chars==";
constexpr char kNodeTok[] = "nodetokenAAAAAAAAAAAAAAAA";

class TokenFileTest : public ::testing::Test {
 protected:
  fs::path file() const { return dir_.path() / "tokens.csv"; }
  TempDir dir_;
  common::FakeClock clock_;
};

TEST_F(TokenFileTest, ParsesCommentsBlankLinesWhitespaceAndCrlf) {
  WriteFile(file(), std::string("# corral tokens\n\n   # indented comment\n") + kAdminTok +
                        ",alice,admin\r\n  " + kViewTok + " ,  bob\t, viewer  \n\t\n" + kNodeTok +
                        ",node-a,node");  // no trailing newline
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  EXPECT_EQ(auth.TokenCount(), 3u);

  auto a = auth.Authenticate(std::string("Bearer ") + kAdminTok);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->name, "alice");
  EXPECT_EQ(a->role, Role::kAdmin);
  auto v = auth.Authenticate(std::string("Bearer ") + kViewTok);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->name, "bob");
  EXPECT_EQ(v->role, Role::kViewer);
  auto n = auth.Authenticate(std::string("Bearer ") + kNodeTok);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->name, "node-a");
  EXPECT_EQ(n->role, Role::kNode);
}

TEST_F(TokenFileTest, EmptyFileLoadsNoTokens) {
  WriteFile(file(), "# nothing yet\n");
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  EXPECT_EQ(auth.TokenCount(), 0u);
  EXPECT_FALSE(auth.Authenticate("Bearer anything"));
}

struct BadLine {
  std::string content;
  std::string want;  // substring of the message
};

TEST_F(TokenFileTest, BadLinesNameTheLineAndNeverTheToken) {
  const std::string secret = "s3cretTOKENvalue";
  const std::string ok = std::string(kAdminTok) + ",alice,admin\n# comment\n";
  const std::vector<BadLine> cases = {
      {ok + secret + ",bob\n", "line 3: want 3 comma-separated fields TOKEN,USER,ROLE, got 2"},
      {ok + secret + ",bob,viewer,extra\n", "line 3: want 3 comma-separated fields"},
      {ok + secret + "\n", "got 1"},
      {ok + secret + ",bob,superuser\n", "line 3: unknown role \"superuser\""},
      {ok + secret + ",bob,Admin\n", "unknown role \"Admin\""},
      {ok + secret + ", ,viewer\n", "line 3: empty user name"},
      {ok + " ,bob,viewer\n", "line 3: empty token"},
      {ok + "s3cret token,bob,viewer\n", "line 3: the token has characters"},
      {ok + secret + "=x,bob,viewer\n", "line 3: the token has characters"},
      {ok + "\n" + secret + ",bob,viewer\n" + secret + ",carol,admin\n",
       "line 5: the same token as line 4"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.want);
    WriteFile(file(), c.content);
    TokenAuthenticator auth(file(), clock_);
    const auto s = auth.Load();
    EXPECT_EQ(s.code(), common::Code::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr(c.want));
    EXPECT_THAT(s.message(), HasSubstr(file().string()));
    EXPECT_THAT(s.message(), Not(HasSubstr("s3cret")));
    // A failed Load leaves nothing usable.
    EXPECT_EQ(auth.TokenCount(), 0u);
  }
}

TEST_F(TokenFileTest, MissingFileIsNotFound) {
  TokenAuthenticator auth(file(), clock_);
  const auto s = auth.Load();
  EXPECT_EQ(s.code(), common::Code::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("tokens.csv"));
  EXPECT_FALSE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
}

TEST_F(TokenFileTest, FailedLoadKeepsPreviouslyLoadedTokens) {
  WriteFile(file(), std::string(kAdminTok) + ",alice,admin\n");
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  WriteFile(file(), "garbage\n");
  EXPECT_FALSE(auth.Load().ok());
  EXPECT_TRUE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
}

TEST(RoleTest, NamesRoundTrip) {
  for (Role r : {Role::kAdmin, Role::kViewer, Role::kNode}) {
    EXPECT_EQ(ParseRole(RoleName(r)), r);
  }
  EXPECT_EQ(RoleName(Role::kViewer), "viewer");
  EXPECT_FALSE(ParseRole("root"));
  EXPECT_FALSE(ParseRole(""));
  EXPECT_FALSE(ParseRole("ADMIN"));
}

// ---------------------------------------------------------------- authenticate

TEST_F(TokenFileTest, BearerSchemeIsCaseInsensitiveAndStrict) {
  WriteFile(file(), std::string(kAdminTok) + ",alice,admin\n");
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  const std::string t = kAdminTok;
  for (const std::string& h :
       std::vector<std::string>{"Bearer " + t, "bearer " + t, "BEARER " + t, "bEaReR " + t,
                                "  Bearer   " + t + "  ", "Bearer\t" + t}) {
    SCOPED_TRACE(h);
    auto u = auth.Authenticate(h);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->name, "alice");
  }
  for (const std::string& h : std::vector<std::string>{
           std::string(), t, "Bearer", "Bearer ", "Bearer" + t, "Basic " + t, "Token " + t,
           "Bearer " + t + " extra", "Bearer " + t + "x", "Bearer " + t.substr(0, t.size() - 1),
           "Bearer wrongtoken", "Bearer " + t + "\n", "Bearerx " + t}) {
    SCOPED_TRACE(h);
    EXPECT_FALSE(auth.Authenticate(h));
  }
}

TEST_F(TokenFileTest, AuthenticateLoadsLazilyWithoutLoad) {
  WriteFile(file(), std::string(kNodeTok) + ",node-a,node\n");
  TokenAuthenticator auth(file(), clock_);
  auto u = auth.Authenticate(std::string("Bearer ") + kNodeTok);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->role, Role::kNode);
}

// ---------------------------------------------------------------- reload

TEST_F(TokenFileTest, ReloadsAfterRewriteAtMostOncePerSecond) {
  WriteFile(file(), std::string(kAdminTok) + ",alice,admin\n");
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  ASSERT_TRUE(auth.Authenticate(std::string("Bearer ") + kAdminTok));

  // Revoke alice, add bob (different size, so the change is visible even on
  // a file system with coarse timestamps).
  WriteFile(file(), std::string(kViewTok) + ",bob,viewer\n# rotated\n");
  clock_.Advance(500ms);  // inside the check interval: still the old table
  EXPECT_TRUE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
  EXPECT_FALSE(auth.Authenticate(std::string("Bearer ") + kViewTok));

  clock_.Advance(500ms);
  EXPECT_FALSE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
  auto bob = auth.Authenticate(std::string("Bearer ") + kViewTok);
  ASSERT_TRUE(bob);
  EXPECT_EQ(bob->name, "bob");
  EXPECT_EQ(auth.TokenCount(), 1u);
  EXPECT_EQ(auth.ReloadFailures(), 0u);
}

TEST_F(TokenFileTest, ReloadsSameSizeRewriteByMtime) {
  WriteFile(file(), "aaaaaaaaaaaaaaaa,alice,admin\n");
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  const auto mtime = fs::last_write_time(file());
  WriteFile(file(), "bbbbbbbbbbbbbbbb,alice,admin\n");
  fs::last_write_time(file(), mtime + 2s);
  clock_.Advance(1s);
  EXPECT_FALSE(auth.Authenticate("Bearer aaaaaaaaaaaaaaaa"));
  EXPECT_TRUE(auth.Authenticate("Bearer bbbbbbbbbbbbbbbb"));
}

TEST_F(TokenFileTest, ReloadsFileReplacedByRename) {
  WriteFile(file(), "aaaaaaaaaaaaaaaa,alice,admin\n");
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  const fs::path tmp = dir_.path() / "tokens.new";
  WriteFile(tmp, "cccccccccccccccc,carol,viewer\n");
  fs::rename(tmp, file());
  clock_.Advance(1s);
  auto carol = auth.Authenticate("Bearer cccccccccccccccc");
  ASSERT_TRUE(carol);
  EXPECT_EQ(carol->role, Role::kViewer);
}

TEST_F(TokenFileTest, BrokenRewriteKeepsOldTokensAndLogsOnceWithoutToken) {
  LogCapture logs;
  WriteFile(file(), std::string(kAdminTok) + ",alice,admin\n");
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());

  const std::string leaked = "newSECRETtoken123";
  WriteFile(file(), std::string(kAdminTok) + ",alice,admin\n" + leaked + ",eve,god\n");
  clock_.Advance(1s);
  EXPECT_TRUE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
  EXPECT_FALSE(auth.Authenticate("Bearer " + leaked));
  EXPECT_EQ(auth.ReloadFailures(), 1u);
  EXPECT_EQ(auth.TokenCount(), 1u);

  // The same broken file is not re-parsed (or re-logged) every second.
  clock_.Advance(1s);
  EXPECT_TRUE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
  EXPECT_EQ(auth.ReloadFailures(), 1u);

  const std::string text = logs.text();
  EXPECT_THAT(text, HasSubstr("line 2: unknown role \"god\""));
  EXPECT_THAT(text, HasSubstr("keeping the 1 loaded tokens"));
  EXPECT_THAT(text, Not(HasSubstr(leaked)));
  EXPECT_THAT(text, Not(HasSubstr(kAdminTok)));

  // Fixed: picked up at the next check.
  WriteFile(file(), leaked + ",eve,viewer\n");
  clock_.Advance(1s);
  EXPECT_FALSE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
  EXPECT_TRUE(auth.Authenticate("Bearer " + leaked));
  EXPECT_THAT(logs.text(), Not(HasSubstr(leaked)));
}

TEST_F(TokenFileTest, VanishedFileKeepsTokens) {
  LogCapture logs;
  WriteFile(file(), std::string(kAdminTok) + ",alice,admin\n");
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  fs::remove(file());
  clock_.Advance(1s);
  EXPECT_TRUE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
  clock_.Advance(1s);
  EXPECT_TRUE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
  EXPECT_EQ(auth.ReloadFailures(), 1u);
  EXPECT_THAT(logs.text(), HasSubstr("cannot check for changes"));
}

TEST_F(TokenFileTest, TruncatedToEmptyKeepsTokensButACommentRevokesAll) {
  WriteFile(file(), std::string(kAdminTok) + ",alice,admin\n");
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  WriteFile(file(), "");  // what an in-place rewrite looks like half-way
  clock_.Advance(1s);
  EXPECT_TRUE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
  EXPECT_EQ(auth.ReloadFailures(), 1u);
  WriteFile(file(), "# everyone revoked\n");
  clock_.Advance(1s);
  EXPECT_FALSE(auth.Authenticate(std::string("Bearer ") + kAdminTok));
  EXPECT_EQ(auth.TokenCount(), 0u);
}

// The file is rewritten in place (truncate, then write) while readers
// authenticate: every state a reader can observe (empty, a partial line, a
// complete prefix) must keep alice, whose line comes first.
TEST_F(TokenFileTest, ConcurrentAuthenticateDuringReloads) {
  WriteFile(file(), std::string(kAdminTok) + ",alice,admin\n");
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      while (!stop) {
        auto u = auth.Authenticate(std::string("Bearer ") + kAdminTok);
        if (!u || u->name != "alice") ++bad;
      }
    });
  }
  const std::string alice = std::string(kAdminTok) + ",alice,admin\n";
  const std::string bob = std::string(kViewTok) + ",bob,viewer\n";
  constexpr int kRounds = 30;
  for (int i = 0; i < kRounds; ++i) {
    // alice stays; bob comes and goes. The clock moves first so readers
    // check while the write is under way; two flushed writes after the
    // truncate widen the window in which a reader sees a partial file.
    clock_.Advance(1s);
    {
      std::ofstream out(file(), std::ios::binary | std::ios::trunc);
      out << alice.substr(0, 10) << std::flush;
      out << alice.substr(10) << std::flush;
      if (i % 2) out << bob;
    }
    std::this_thread::sleep_for(2ms);  // let a reader run the check
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  // The last version (with bob) is what is loaded once the writes stop.
  clock_.Advance(1s);
  EXPECT_TRUE(auth.Authenticate(std::string("Bearer ") + kViewTok));
  EXPECT_EQ(auth.TokenCount(), 2u);
}

// ---------------------------------------------------------------- AddToken

TEST_F(TokenFileTest, AddTokenCreates0600FileAndAppends) {
  auto t1 = AddToken(file(), "alice", Role::kAdmin);
  ASSERT_TRUE(t1.ok()) << t1.status().ToString();
  EXPECT_EQ(t1->size(), 64u);
  EXPECT_EQ(t1->find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(Mode(file()), k0600);
  auto t2 = AddToken(file(), "node-a", Role::kNode);
  ASSERT_TRUE(t2.ok());
  EXPECT_NE(*t1, *t2);
  EXPECT_EQ(ReadFile(file()), *t1 + ",alice,admin\n" + *t2 + ",node-a,node\n");

  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  auto a = auth.Authenticate("Bearer " + *t1);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->role, Role::kAdmin);
  auto n = auth.Authenticate("Bearer " + *t2);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->name, "node-a");
}

TEST_F(TokenFileTest, AddTokenKeepsAHandWrittenLastLineWithoutNewline) {
  WriteFile(file(), "# ops\naaaaaaaaaaaaaaaa,bob,viewer");
  auto t = AddToken(file(), "carol", Role::kViewer);
  ASSERT_TRUE(t.ok());
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok()) << auth.Load().ToString();
  EXPECT_EQ(auth.TokenCount(), 2u);
  EXPECT_TRUE(auth.Authenticate("Bearer aaaaaaaaaaaaaaaa"));
  EXPECT_TRUE(auth.Authenticate("Bearer " + *t));
}

TEST_F(TokenFileTest, AddTokenIsSeenByARunningAuthenticator) {
  auto t1 = AddToken(file(), "alice", Role::kAdmin);
  ASSERT_TRUE(t1.ok());
  TokenAuthenticator auth(file(), clock_);
  ASSERT_TRUE(auth.Load().ok());
  auto t2 = AddToken(file(), "bob", Role::kViewer);
  ASSERT_TRUE(t2.ok());
  clock_.Advance(1s);
  EXPECT_TRUE(auth.Authenticate("Bearer " + *t2));
  EXPECT_TRUE(auth.Authenticate("Bearer " + *t1));
}

TEST_F(TokenFileTest, AddTokenRejectsUsersThatWouldNotParseBack) {
  for (const std::string& u : {std::string(), std::string("a,b"), std::string("a\nb"),
                               std::string(" padded"), std::string("tab\t")}) {
    SCOPED_TRACE(u);
    auto t = AddToken(file(), u, Role::kViewer);
    EXPECT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), common::Code::kInvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr("user"));
  }
  EXPECT_FALSE(fs::exists(file()));
}

TEST_F(TokenFileTest, AddTokenInMissingDirectoryFails) {
  auto t = AddToken(dir_.path() / "no" / "such" / "tokens", "alice", Role::kAdmin);
  EXPECT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokens"));
}

// ---------------------------------------------------------------- authorize

const std::vector<std::string> kVerbs = {"get",    "list",  "watch",  "create",
                                         "update", "patch", "delete", "deletecollection"};
const std::vector<std::string> kKinds = {"Node",    "Model", "ModelDeployment",
                                         "Replica", "Event", "Lease"};

std::vector<std::string> Subresources(const std::string& kind) {
  if (kind == "ModelDeployment") return {"", "status", "scale"};
  if (kind == "Event" || kind == "Lease") return {""};
  return {"", "status"};
}

bool Namespaced(const std::string& kind) { return kind != "Node"; }

// The node role as a list of grants, written from the contract in auth.h.
struct Grant {
  std::set<std::string> verbs;
  std::string kind;
  std::set<std::string> subresources;
  bool name_is_self = false;
  bool bound_to_self = false;
};
const std::vector<Grant> kNodeGrants = {
    {{"get", "list", "watch"}, "Model", {"", "status"}},
    {{"get", "list", "watch"}, "Node", {"", "status"}},
    {{"get", "list", "watch"}, "Lease", {""}},
    {{"list", "watch"}, "Replica", {"", "status"}},
    {{"get"}, "Replica", {"", "status"}, false, true},
    {{"create"}, "Node", {""}, true},
    {{"update", "patch"}, "Node", {"", "status"}, true},
    {{"create", "update", "patch"}, "Lease", {""}, true},
    {{"update", "patch"}, "Replica", {"", "status"}, false, true},
    {{"create"}, "Event", {""}},
};

bool NodeGranted(const std::string& user, const Attributes& a) {
  for (const auto& g : kNodeGrants) {
    if (g.kind != a.kind || !g.verbs.count(a.verb) || !g.subresources.count(a.subresource)) {
      continue;
    }
    if (g.name_is_self && a.name != user) continue;
    if (g.bound_to_self && a.bound_node != user) continue;
    return true;
  }
  return false;
}

TEST(AuthorizeTest, FullMatrixEveryRoleVerbKindSubresource) {
  const User admin{"root", Role::kAdmin};
  const User viewer{"bob", Role::kViewer};
  const User node{"node-a", Role::kNode};
  int checked = 0;
  int node_allowed = 0;
  for (const auto& kind : kKinds) {
    for (const auto& verb : kVerbs) {
      for (const auto& sub : Subresources(kind)) {
        for (const std::string name : {"node-a", "node-b", ""}) {
          for (const std::string bound : {"node-a", "node-b", ""}) {
            Attributes a{verb, kind, Namespaced(kind) ? "default" : "", name, sub, bound};
            SCOPED_TRACE(verb + " " + kind + "/" + sub + " name=" + name + " bound=" + bound);
            EXPECT_TRUE(Authorize(admin, a).allowed);
            const bool read = verb == "get" || verb == "list" || verb == "watch";
            const auto v = Authorize(viewer, a);
            EXPECT_EQ(v.allowed, read);
            if (!v.allowed) {
              EXPECT_THAT(v.reason, HasSubstr("User \"bob\" cannot " + verb));
            }
            const auto n = Authorize(node, a);
            EXPECT_EQ(n.allowed, NodeGranted(node.name, a));
            if (n.allowed) {
              ++node_allowed;
            } else {
              EXPECT_THAT(n.reason, HasSubstr("User \"node-a\" cannot " + verb + " resource"));
            }
            ++checked;
          }
        }
      }
    }
  }
  // (2 + 2 + 3 + 2 + 1 + 1) kind/subresource pairs × 8 verbs × 3 names × 3 bindings.
  EXPECT_EQ(checked, 11 * 8 * 9);
  EXPECT_GT(node_allowed, 0);
}

TEST(AuthorizeTest, NodeScopedToItsOwnObjects) {
  const User node{"node-a", Role::kNode};
  auto allowed = [&](Attributes a) { return Authorize(node, a).allowed; };
  // Its own Node and Lease, not another's.
  EXPECT_TRUE(allowed({"create", "Node", "", "node-a", "", ""}));
  EXPECT_FALSE(allowed({"create", "Node", "", "node-b", "", ""}));
  EXPECT_TRUE(allowed({"patch", "Node", "", "node-a", "status", ""}));
  EXPECT_FALSE(allowed({"update", "Node", "", "node-b", "status", ""}));
  EXPECT_FALSE(allowed({"delete", "Node", "", "node-a", "", ""}));
  EXPECT_TRUE(allowed({"update", "Lease", "corral-system", "node-a", "", ""}));
  EXPECT_TRUE(allowed({"create", "Lease", "other-ns", "node-a", "", ""}));
  EXPECT_FALSE(allowed({"update", "Lease", "corral-system", "node-b", "", ""}));
  EXPECT_FALSE(allowed({"delete", "Lease", "corral-system", "node-a", "", ""}));
  // Replica status only when bound to it.
  EXPECT_TRUE(allowed({"update", "Replica", "default", "r1", "status", "node-a"}));
  EXPECT_TRUE(allowed({"patch", "Replica", "default", "r1", "status", "node-a"}));
  EXPECT_FALSE(allowed({"update", "Replica", "default", "r1", "status", "node-b"}));
  EXPECT_FALSE(allowed({"update", "Replica", "default", "r1", "status", ""}));
  // The main resource only to remove its drain finalizer; the API server
  // refuses any other change (NodeRestriction-style, in the handler).
  EXPECT_TRUE(allowed({"update", "Replica", "default", "r1", "", "node-a"}));
  EXPECT_FALSE(allowed({"update", "Replica", "default", "r1", "", "node-b"}));
  EXPECT_FALSE(allowed({"create", "Replica", "default", "r1", "", "node-a"}));
  EXPECT_TRUE(allowed({"get", "Replica", "default", "r1", "", "node-a"}));
  EXPECT_FALSE(allowed({"get", "Replica", "default", "r1", "", "node-b"}));
  EXPECT_TRUE(allowed({"watch", "Replica", "default", "", "", ""}));
  // Reads it needs; nothing on deployments.
  EXPECT_TRUE(allowed({"list", "Model", "default", "", "", ""}));
  EXPECT_TRUE(allowed({"get", "Node", "", "node-b", "", ""}));
  EXPECT_FALSE(allowed({"get", "ModelDeployment", "default", "md", "", ""}));
  EXPECT_FALSE(allowed({"patch", "ModelDeployment", "default", "md", "scale", ""}));
  EXPECT_TRUE(allowed({"create", "Event", "default", "", "", ""}));
  EXPECT_FALSE(allowed({"list", "Event", "default", "", "", ""}));
  // A node named like another user's object gets nothing from the name alone.
  const User other{"r1", Role::kNode};
  EXPECT_FALSE(
      Authorize(other, {"update", "Replica", "default", "r1", "status", "node-a"}).allowed);
}

TEST(AuthorizeTest, DenialsAreWordedLikeKubernetesRbac) {
  const User node{"node-a", Role::kNode};
  EXPECT_EQ(Authorize(node, {"update", "Replica", "default", "r1", "status", "node-b"}).reason,
            "User \"node-a\" cannot update resource \"replicas/status\" in API group "
            "\"corral.dev\" in the namespace \"default\": node \"node-a\" may only modify "
            "replicas bound to it");
  const User viewer{"bob", Role::kViewer};
  EXPECT_EQ(Authorize(viewer, {"delete", "Node", "", "n1", "", ""}).reason,
            "User \"bob\" cannot delete resource \"nodes\" in API group \"corral.dev\" at the "
            "cluster scope");
  EXPECT_EQ(Authorize(viewer, {"create", "Event", "ns1", "", "", ""}).reason,
            "User \"bob\" cannot create resource \"events\" in API group \"\" in the namespace "
            "\"ns1\"");
  EXPECT_EQ(Authorize(viewer, {"patch", "Lease", "kube", "l", "", ""}).reason,
            "User \"bob\" cannot patch resource \"leases\" in API group \"coordination.k8s.io\" "
            "in the namespace \"kube\"");
  EXPECT_EQ(Authorize(viewer, {"update", "ModelDeployment", "d", "md", "scale", ""}).reason,
            "User \"bob\" cannot update resource \"modeldeployments/scale\" in API group "
            "\"corral.dev\" in the namespace \"d\"");
  // A plain "not in the role" has nothing appended.
  EXPECT_EQ(Authorize(node, {"delete", "Model", "default", "m", "", ""}).reason,
            "User \"node-a\" cannot delete resource \"models\" in API group \"corral.dev\" in "
            "the namespace \"default\"");
  // Names are quoted safely.
  const User odd{"a\"b", Role::kViewer};
  EXPECT_THAT(Authorize(odd, {"delete", "Model", "default", "m", "", ""}).reason,
              HasSubstr("User \"a\\\"b\" cannot"));
  // Allowed decisions carry no reason.
  EXPECT_TRUE(Authorize(viewer, {"get", "Model", "default", "m", "", ""}).reason.empty());
}

// ---------------------------------------------------------------- TLS

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

X509Ptr LoadCert(const fs::path& p) {
  const std::string pem = ReadFile(p);
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509Ptr cert(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  return cert;
}

PkeyPtr LoadKey(const fs::path& p) {
  const std::string pem = ReadFile(p);
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  return key;
}

// X509_verify_cert of `leaf` against `ca` as a TLS server certificate for `host`.
int VerifyServer(X509* ca, X509* leaf, const std::string& host) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
  if (!host.empty()) {
    if (host.find_first_not_of("0123456789.:abcdef") == std::string::npos &&
        host.find_first_of(".:") != std::string::npos) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    }
  }
  const int ok = X509_verify_cert(ctx);
  const int err = X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return ok == 1 ? X509_V_OK : (err == X509_V_OK ? -1 : err);
}

// A serving certificate signed by `ca_key` valid for `days` (may be short),
// to plant an almost-expired certificate.
X509Ptr SignShortLived(X509* ca, EVP_PKEY* ca_key, EVP_PKEY* key, int days) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 42);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("old"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_time_adj_ex(X509_getm_notAfter(cert.get()), days, 0, nullptr);
  X509_set_pubkey(cert.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca, cert.get(), nullptr, nullptr, 0);
  X509_EXTENSION* ext =
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
  X509_add_ext(cert.get(), ext, -1);
  X509_EXTENSION_free(ext);
  X509_sign(cert.get(), ca_key, EVP_sha256());
  return cert;
}

void WritePem(const fs::path& p, X509* cert) {
  BIO* bio = BIO_new_file(p.c_str(), "w");
  PEM_write_bio_X509(bio, cert);
  BIO_free(bio);
}

std::string Serial(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  char* hex = BN_bn2hex(bn);
  std::string s = hex;
  OPENSSL_free(hex);
  BN_free(bn);
  return s;
}

class TlsTest : public ::testing::Test {
 protected:
  fs::path dir() const { return dir_.path() / "tls"; }
  TempDir dir_;
};

TEST_F(TlsTest, GeneratesCaAndServingCertThatVerify) {
  auto r = EnsureServingCerts(dir(), {"10.1.2.3", "API.Example.com", "[::1]", "corral-0"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->ca_cert, dir() / "ca.crt");
  EXPECT_EQ(r->ca_key, dir() / "ca.key");
  EXPECT_EQ(r->server_cert, dir() / "server.crt");
  EXPECT_EQ(r->server_key, dir() / "server.key");
  EXPECT_EQ(Mode(r->ca_key), k0600);
  EXPECT_EQ(Mode(r->server_key), k0600);

  X509Ptr ca = LoadCert(r->ca_cert);
  X509Ptr srv = LoadCert(r->server_cert);
  PkeyPtr ca_key = LoadKey(r->ca_key);
  PkeyPtr srv_key = LoadKey(r->server_key);
  ASSERT_TRUE(ca && srv && ca_key && srv_key);
  EXPECT_EQ(X509_check_private_key(ca.get(), ca_key.get()), 1);
  EXPECT_EQ(X509_check_private_key(srv.get(), srv_key.get()), 1);

  // EC P-256 keys.
  for (EVP_PKEY* k : {ca_key.get(), srv_key.get()}) {
    EXPECT_TRUE(EVP_PKEY_is_a(k, "EC"));
    char group[64] = {};
    size_t len = 0;
    ASSERT_EQ(EVP_PKEY_get_group_name(k, group, sizeof(group), &len), 1);
    EXPECT_STREQ(group, "prime256v1");
  }

  // The CA is a CA; the serving cert is not, and is for serverAuth.
  EXPECT_GE(X509_check_ca(ca.get()), 1);
  EXPECT_EQ(X509_check_ca(srv.get()), 0);
  EXPECT_TRUE(X509_get_key_usage(ca.get()) & KU_KEY_CERT_SIGN);
  EXPECT_TRUE(X509_get_extended_key_usage(srv.get()) & XKU_SSL_SERVER);
  EXPECT_EQ(X509_get_version(srv.get()), X509_VERSION_3);
  EXPECT_NE(Serial(ca.get()), Serial(srv.get()));

  // Chain verifies for every requested name, and for no other.
  for (const std::string host :
       {"localhost", "127.0.0.1", "10.1.2.3", "api.example.com", "::1", "corral-0"}) {
    SCOPED_TRACE(host);
    EXPECT_EQ(VerifyServer(ca.get(), srv.get(), host), X509_V_OK);
  }
  EXPECT_EQ(VerifyServer(ca.get(), srv.get(), "other.example.com"), X509_V_ERR_HOSTNAME_MISMATCH);
  EXPECT_EQ(VerifyServer(ca.get(), srv.get(), "10.1.2.4"), X509_V_ERR_IP_ADDRESS_MISMATCH);

  // Validity: CA ~10 years, serving ~1 year.
  int days = 0, secs = 0;
  ASSERT_EQ(
      ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(srv.get()), X509_get0_notAfter(srv.get())),
      1);
  EXPECT_NEAR(days, 365, 1);
  ASSERT_EQ(
      ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(ca.get()), X509_get0_notAfter(ca.get())), 1);
  EXPECT_NEAR(days, 3650, 1);

  // A cert from a different CA does not verify against this one.
  TempDir other;
  auto r2 = EnsureServingCerts(other.path(), {});
  ASSERT_TRUE(r2.ok());
  X509Ptr other_ca = LoadCert(r2->ca_cert);
  EXPECT_NE(VerifyServer(other_ca.get(), srv.get(), "localhost"), X509_V_OK);
}

TEST_F(TlsTest, ReuseLeavesFilesUntouched) {
  auto r = EnsureServingCerts(dir(), {"10.0.0.1", "corral.local"});
  ASSERT_TRUE(r.ok());
  const std::vector<fs::path> files = {r->ca_cert, r->ca_key, r->server_cert, r->server_key};
  std::vector<std::string> before;
  std::vector<fs::file_time_type> mtimes;
  for (const auto& f : files) {
    before.push_back(ReadFile(f));
    mtimes.push_back(fs::last_write_time(f));
  }
  // Same hosts, a subset, and the always-present ones spelled out: all covered.
  for (const std::vector<std::string>& hosts :
       {std::vector<std::string>{"10.0.0.1", "corral.local"}, std::vector<std::string>{},
        std::vector<std::string>{"CORRAL.local", "localhost", "127.0.0.1"}}) {
    auto again = EnsureServingCerts(dir(), hosts);
    ASSERT_TRUE(again.ok());
    for (size_t i = 0; i < files.size(); ++i) {
      EXPECT_EQ(ReadFile(files[i]), before[i]) << files[i];
      EXPECT_EQ(fs::last_write_time(files[i]), mtimes[i]) << files[i];
    }
  }
  // No temp files left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir())) ++entries;
  EXPECT_EQ(entries, 4);
}

TEST_F(TlsTest, NewHostRegeneratesServingCertButKeepsCa) {
  auto r = EnsureServingCerts(dir(), {"10.0.0.1"});
  ASSERT_TRUE(r.ok());
  const std::string ca_before = ReadFile(r->ca_cert);
  const std::string ca_key_before = ReadFile(r->ca_key);
  const std::string srv_before = ReadFile(r->server_cert);
  const std::string srv_key_before = ReadFile(r->server_key);

  auto again = EnsureServingCerts(dir(), {"10.0.0.1", "10.0.0.2"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(ReadFile(r->ca_cert), ca_before);
  EXPECT_EQ(ReadFile(r->ca_key), ca_key_before);
  EXPECT_NE(ReadFile(r->server_cert), srv_before);
  EXPECT_NE(ReadFile(r->server_key), srv_key_before);
  X509Ptr ca = LoadCert(r->ca_cert);
  X509Ptr srv = LoadCert(r->server_cert);
  EXPECT_EQ(VerifyServer(ca.get(), srv.get(), "10.0.0.2"), X509_V_OK);
  EXPECT_EQ(VerifyServer(ca.get(), srv.get(), "10.0.0.1"), X509_V_OK);
  EXPECT_EQ(Mode(r->server_key), k0600);
}

TEST_F(TlsTest, ServingCertExpiringWithin30DaysIsRenewed) {
  auto r = EnsureServingCerts(dir(), {});
  ASSERT_TRUE(r.ok());
  X509Ptr ca = LoadCert(r->ca_cert);
  PkeyPtr ca_key = LoadKey(r->ca_key);
  PkeyPtr srv_key = LoadKey(r->server_key);
  X509Ptr old = SignShortLived(ca.get(), ca_key.get(), srv_key.get(), 10);
  WritePem(r->server_cert, old.get());
  const std::string planted = ReadFile(r->server_cert);
  // Sanity: the planted cert is otherwise acceptable.
  ASSERT_EQ(VerifyServer(ca.get(), old.get(), "localhost"), X509_V_OK);

  auto again = EnsureServingCerts(dir(), {});
  ASSERT_TRUE(again.ok());
  EXPECT_NE(ReadFile(r->server_cert), planted);
  X509Ptr renewed = LoadCert(r->server_cert);
  int days = 0, secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(renewed.get())), 1);
  EXPECT_GT(days, 360);

  // 60 days left is still good enough: kept.
  X509Ptr longer = SignShortLived(ca.get(), ca_key.get(), LoadKey(r->server_key).get(), 60);
  WritePem(r->server_cert, longer.get());
  const std::string planted60 = ReadFile(r->server_cert);
  ASSERT_TRUE(EnsureServingCerts(dir(), {}).ok());
  EXPECT_EQ(ReadFile(r->server_cert), planted60);
}

TEST_F(TlsTest, MismatchedKeyOrForeignCertIsReplaced) {
  auto r = EnsureServingCerts(dir(), {});
  ASSERT_TRUE(r.ok());
  // The serving key replaced by another key: the pair no longer matches.
  TempDir other;
  auto o = EnsureServingCerts(other.path(), {});
  ASSERT_TRUE(o.ok());
  fs::copy_file(o->server_key, r->server_key, fs::copy_options::overwrite_existing);
  ASSERT_TRUE(EnsureServingCerts(dir(), {}).ok());
  X509Ptr srv = LoadCert(r->server_cert);
  PkeyPtr key = LoadKey(r->server_key);
  EXPECT_EQ(X509_check_private_key(srv.get(), key.get()), 1);

  // A serving pair signed by another CA: replaced by one from ours.
  fs::copy_file(o->server_key, r->server_key, fs::copy_options::overwrite_existing);
  fs::copy_file(o->server_cert, r->server_cert, fs::copy_options::overwrite_existing);
  ASSERT_TRUE(EnsureServingCerts(dir(), {}).ok());
  X509Ptr ca = LoadCert(r->ca_cert);
  srv = LoadCert(r->server_cert);
  EXPECT_EQ(VerifyServer(ca.get(), srv.get(), "localhost"), X509_V_OK);
}

TEST_F(TlsTest, LostCaKeyRegeneratesEverything) {
  auto r = EnsureServingCerts(dir(), {});
  ASSERT_TRUE(r.ok());
  const std::string ca_before = ReadFile(r->ca_cert);
  fs::remove(r->ca_key);
  auto again = EnsureServingCerts(dir(), {});
  ASSERT_TRUE(again.ok());
  EXPECT_NE(ReadFile(r->ca_cert), ca_before);
  X509Ptr ca = LoadCert(r->ca_cert);
  X509Ptr srv = LoadCert(r->server_cert);
  EXPECT_EQ(VerifyServer(ca.get(), srv.get(), "localhost"), X509_V_OK);
  EXPECT_EQ(Mode(r->ca_key), k0600);
}

TEST_F(TlsTest, GarbageFilesAreReplaced) {
  fs::create_directories(dir());
  WriteFile(dir() / "ca.crt", "not a cert");
  WriteFile(dir() / "ca.key", "not a key");
  WriteFile(dir() / "server.crt", "");
  auto r = EnsureServingCerts(dir(), {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  X509Ptr ca = LoadCert(r->ca_cert);
  X509Ptr srv = LoadCert(r->server_cert);
  ASSERT_TRUE(ca && srv);
  EXPECT_EQ(VerifyServer(ca.get(), srv.get(), "127.0.0.1"), X509_V_OK);
}

TEST_F(TlsTest, LooseKeyPermissionsAreTightenedWithoutRewriting) {
  auto r = EnsureServingCerts(dir(), {});
  ASSERT_TRUE(r.ok());
  const std::string key = ReadFile(r->server_key);
  fs::permissions(r->server_key, fs::perms::owner_read | fs::perms::owner_write |
                                     fs::perms::group_read | fs::perms::others_read);
  ASSERT_TRUE(EnsureServingCerts(dir(), {}).ok());
  EXPECT_EQ(Mode(r->server_key), k0600);
  EXPECT_EQ(ReadFile(r->server_key), key);
}

TEST_F(TlsTest, RejectsHostsThatAreNeitherIpNorDnsName) {
  for (const std::string bad : {"bad host", "a,b", "-lead", "x/y", "ex ample.com"}) {
    SCOPED_TRACE(bad);
    auto r = EnsureServingCerts(dir(), {"10.0.0.1", bad});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), common::Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("hosts[1]"));
  }
  EXPECT_FALSE(fs::exists(dir() / "server.crt"));
}

TEST_F(TlsTest, EmptyHostEntriesAreIgnored) {
  // What a listen address of ":6443" yields for its host.
  auto r = EnsureServingCerts(dir(), {"", "10.0.0.9"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  X509Ptr ca = LoadCert(r->ca_cert);
  X509Ptr srv = LoadCert(r->server_cert);
  EXPECT_EQ(VerifyServer(ca.get(), srv.get(), "10.0.0.9"), X509_V_OK);
}

TEST_F(TlsTest, UnwritableDirectoryIsAnError) {
  WriteFile(dir_.path() / "file", "x");
  auto r = EnsureServingCerts(dir_.path() / "file" / "tls", {});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("tls"));
}

// ---------------------------------------------------------------- kubeconfig

std::string Base64Decode(const std::string& in) {
  std::string out(in.size(), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) return {};
  out.resize(static_cast<size_t>(n));
  // EVP_DecodeBlock keeps the zero bytes that '=' padding stands for.
  size_t pad = 0;
  for (auto it = in.rbegin(); it != in.rend() && *it == '='; ++it) ++pad;
  out.resize(out.size() - pad);
  return out;
}

TEST_F(TlsTest, KubeconfigParsesBackWithEveryField) {
  auto certs = EnsureServingCerts(dir(), {});
  ASSERT_TRUE(certs.ok());
  const std::string ca_pem = ReadFile(certs->ca_cert);
  const fs::path kc = dir_.path() / "data" / "admin.kubeconfig";
  ASSERT_TRUE(WriteKubeconfig(kc, "https://127.0.0.1:6443", "tok123", ca_pem).ok());
  EXPECT_EQ(Mode(kc), k0600);

  YAML::Node y = YAML::LoadFile(kc.string());
  EXPECT_EQ(y["apiVersion"].as<std::string>(), "v1");
  EXPECT_EQ(y["kind"].as<std::string>(), "Config");
  EXPECT_EQ(y["current-context"].as<std::string>(), "corral");
  ASSERT_EQ(y["clusters"].size(), 1u);
  EXPECT_EQ(y["clusters"][0]["name"].as<std::string>(), "corral");
  EXPECT_EQ(y["clusters"][0]["cluster"]["server"].as<std::string>(), "https://127.0.0.1:6443");
  EXPECT_EQ(
      Base64Decode(y["clusters"][0]["cluster"]["certificate-authority-data"].as<std::string>()),
      ca_pem);
  EXPECT_FALSE(y["clusters"][0]["cluster"]["insecure-skip-tls-verify"]);
  ASSERT_EQ(y["users"].size(), 1u);
  EXPECT_EQ(y["users"][0]["name"].as<std::string>(), "corral");
  EXPECT_EQ(y["users"][0]["user"]["token"].as<std::string>(), "tok123");
  ASSERT_EQ(y["contexts"].size(), 1u);
  EXPECT_EQ(y["contexts"][0]["name"].as<std::string>(), "corral");
  EXPECT_EQ(y["contexts"][0]["context"]["cluster"].as<std::string>(), "corral");
  EXPECT_EQ(y["contexts"][0]["context"]["user"].as<std::string>(), "corral");

  // Overwrite (token rotated): replaced whole, still 0600, no temp files.
  ASSERT_TRUE(WriteKubeconfig(kc, "https://127.0.0.1:6443", "tok456", ca_pem).ok());
  EXPECT_EQ(YAML::LoadFile(kc.string())["users"][0]["user"]["token"].as<std::string>(), "tok456");
  EXPECT_EQ(Mode(kc), k0600);
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(kc.parent_path())) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(TlsTest, KubeconfigForPlainHttpHasNoCaData) {
  const fs::path kc = dir_.path() / "kc";
  ASSERT_TRUE(WriteKubeconfig(kc, "http://127.0.0.1:8080", "t", "").ok());
  YAML::Node y = YAML::LoadFile(kc.string());
  EXPECT_EQ(y["clusters"][0]["cluster"]["server"].as<std::string>(), "http://127.0.0.1:8080");
  EXPECT_FALSE(y["clusters"][0]["cluster"]["certificate-authority-data"]);
}

TEST_F(TlsTest, KubeconfigTokenWithYamlSpecialCharactersRoundTrips) {
  const fs::path kc = dir_.path() / "kc";
  const std::string token = "abc: #def 'g\"h";
  ASSERT_TRUE(WriteKubeconfig(kc, "http://localhost:1", token, "").ok());
  EXPECT_EQ(YAML::LoadFile(kc.string())["users"][0]["user"]["token"].as<std::string>(), token);
}

TEST_F(TlsTest, KubeconfigRejectsBadInput) {
  const fs::path kc = dir_.path() / "kc";
  auto s = WriteKubeconfig(kc, "127.0.0.1:6443", "t", "");
  EXPECT_EQ(s.code(), common::Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("server"));
  s = WriteKubeconfig(kc, "https://127.0.0.1:6443", "", "");
  EXPECT_EQ(s.code(), common::Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("token"));
  s = WriteKubeconfig(kc, "https://127.0.0.1:6443", "t", "/var/lib/corral/tls/ca.crt");
  EXPECT_EQ(s.code(), common::Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("certificate-authority-data"));
  EXPECT_FALSE(fs::exists(kc));
}

}  // namespace
}  // namespace corral::api
