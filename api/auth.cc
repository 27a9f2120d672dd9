#include "api/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

namespace corral::api {
namespace {

using common::Status;

constexpr size_t kDigestSize = 32;  // SHA-256
// How often Authenticate() may stat the token file. Tokens are revoked by
// editing the file, so a second is the longest a revoked token keeps working.
constexpr auto kCheckInterval = std::chrono::seconds(1);
// A token file is a few lines per user; anything this large is a mistake
// (or an attempt to make the server allocate), not a token file.
constexpr std::uintmax_t kMaxTokenFileBytes = 16u << 20;

std::string_view Trim(std::string_view s) {
  const auto not_space = [](char c) { return c != ' ' && c != '\t' && c != '\r' && c != '\n'; };
  size_t b = 0;
  while (b < s.size() && !not_space(s[b])) ++b;
  size_t e = s.size();
  while (e > b && !not_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// RFC 6750 §2.1 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
// HTTP optional whitespace (RFC 9110 §5.6.3): space and tab only; a CR or LF
// in a header value is malformed, not padding.
std::string_view TrimOws(std::string_view s) {
  size_t b = 0;
  while (b < s.size() && (s[b] == ' ' || s[b] == '\t')) ++b;
  size_t e = s.size();
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

bool IsB64Token(std::string_view t) {
  size_t i = 0;
  for (; i < t.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(t[i]);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
      continue;
    }
    break;
  }
  if (i == 0) return false;
  for (; i < t.size(); ++i) {
    if (t[i] != '=') return false;
  }
  return true;
}

bool HasControlChar(std::string_view s) {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// SHA-256 with a digest implementation fetched once: the one-shot helpers
// re-fetch the algorithm from the provider on every call, which shows up on a
// path taken by every request.
std::string Sha256(std::string_view data) {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  if (md == nullptr || EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1 ||
      len != kDigestSize) {
    // Only on a broken OpenSSL installation; an empty digest matches nothing.
    return {};
  }
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

// Identity of one version of the token file. The inode catches a replacement
// by rename; size and mtime/ctime (nanoseconds) catch an in-place rewrite.
struct Fingerprint {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const Fingerprint&) const = default;
};

common::Result<Fingerprint> Stat(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    std::string msg = "token file " + path.string() + ": " + std::strerror(err);
    if (err == ENOENT) return common::NotFound(std::move(msg));
    return common::Unavailable(std::move(msg));
  }
  Fingerprint fp;
  fp.dev = st.st_dev;
  fp.ino = st.st_ino;
  fp.size = st.st_size;
  fp.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  fp.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec;
  return fp;
}

struct Entry {
  User user;
  int line = 0;
};
// SHA-256(token) → who. Immutable once built; swapped whole on reload.
using TokenTable = std::unordered_map<std::string, Entry>;

// Reads the whole file (bounded). The caller wipes the text after parsing.
common::Result<std::string> ReadTokenFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::string msg = "token file " + path.string() + ": cannot open: " + std::strerror(errno);
    if (errno == ENOENT) return common::NotFound(std::move(msg));
    return common::Unavailable(std::move(msg));
  }
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (size < 0 || !in) return common::Unavailable("token file " + path.string() + ": seek error");
  if (static_cast<std::uintmax_t>(size) > kMaxTokenFileBytes) {
    return common::InvalidArgument("token file " + path.string() + ": " + std::to_string(size) +
                                   " bytes is over the limit of " +
                                   std::to_string(kMaxTokenFileBytes));
  }
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), size);
  if (in.bad()) return common::Unavailable("token file " + path.string() + ": read error");
  // Shorter when truncated meanwhile; the fingerprint check catches that.
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

// Parses the file's text. Messages name the file and line and what is wrong,
// never the content of a line (it holds a secret).
common::Result<std::shared_ptr<const TokenTable>> ParseTokenFile(const std::filesystem::path& path,
                                                                 const std::string& text) {
  std::istringstream in(text);
  auto table = std::make_shared<TokenTable>();
  std::string raw;
  int line_no = 0;
  const std::string where = "token file " + path.string() + " line ";
  while (std::getline(in, raw)) {
    ++line_no;
    const std::string_view line = Trim(raw);
    if (line.empty() || line.front() == '#') continue;
    std::array<std::string_view, 3> fields;
    size_t n = 0;
    size_t start = 0;
    while (true) {
      const size_t comma = line.find(',', start);
      const std::string_view f = line.substr(
          start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
      if (n < fields.size()) fields[n] = Trim(f);
      ++n;
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    const std::string at = where + std::to_string(line_no) + ": ";
    if (n != 3) {
      return common::InvalidArgument(at + "want 3 comma-separated fields TOKEN,USER,ROLE, got " +
                                     std::to_string(n));
    }
    const auto [token, user, role_name] = fields;
    if (token.empty()) return common::InvalidArgument(at + "empty token");
    if (!IsB64Token(token)) {
      return common::InvalidArgument(
          at +
          "the token has characters a bearer token cannot carry (RFC 6750: letters, digits, "
          "-._~+/ and trailing =)");
    }
    if (user.empty()) return common::InvalidArgument(at + "empty user name");
    if (HasControlChar(user)) {
      return common::InvalidArgument(at + "the user name has a control character");
    }
    const auto role = ParseRole(role_name);
    if (!role) {
      return common::InvalidArgument(
          at + "unknown role " +
          nlohmann::json(std::string(role_name))
              .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
          " (want admin, viewer or node)");
    }
    const std::string digest = Sha256(token);
    if (digest.empty()) return common::Internal("token file: SHA-256 is unavailable in OpenSSL");
    auto [it, inserted] = table->emplace(digest, Entry{User{std::string(user), *role}, line_no});
    if (!inserted) {
      return common::InvalidArgument(at + "the same token as line " +
                                     std::to_string(it->second.line));
    }
  }
  OPENSSL_cleanse(raw.data(), raw.size());
  return std::shared_ptr<const TokenTable>(std::move(table));
}

std::string Quote(std::string_view s) {
  // Go's %q for the strings that occur here (names, verbs): JSON quoting.
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct KindInfo {
  std::string_view kind;
  std::string_view plural;
  std::string_view group;
};
constexpr std::array<KindInfo, 6> kKinds{{
    {"Node", "nodes", "corral.dev"},
    {"Model", "models", "corral.dev"},
    {"ModelDeployment", "modeldeployments", "corral.dev"},
    {"Replica", "replicas", "corral.dev"},
    {"Event", "events", ""},
    {"Lease", "leases", "coordination.k8s.io"},
}};

// Kubernetes RBAC's wording (k8s.io/apiserver/pkg/endpoints/handlers/
// responsewriters: forbiddenMessage), so kubectl users see what they know.
std::string ForbiddenMessage(const User& user, const Attributes& a) {
  std::string plural;
  std::string group = "corral.dev";
  bool known = false;
  for (const auto& k : kKinds) {
    if (k.kind == a.kind) {
      plural = k.plural;
      group = k.group;
      known = true;
      break;
    }
  }
  if (!known) {
    for (const char c : a.kind)
      plural += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    plural += "s";
  }
  std::string resource = plural;
  if (!a.subresource.empty()) resource += "/" + a.subresource;
  std::string msg = "User " + Quote(user.name) + " cannot " + a.verb + " resource " +
                    Quote(resource) + " in API group " + Quote(group);
  if (!a.ns.empty()) {
    msg += " in the namespace " + Quote(a.ns);
  } else {
    msg += " at the cluster scope";
  }
  return msg;
}

bool IsReadVerb(std::string_view v) { return v == "get" || v == "list" || v == "watch"; }

// The node role. Returns "" when allowed, else why not (appended to the
// RBAC-style message like the Kubernetes node authorizer's reasons); "-" for
// a plain "not in the role" with nothing to add.
std::string NodeDenial(const User& u, const Attributes& a) {
  const std::string me = Quote(u.name);
  if (IsReadVerb(a.verb)) {
    if (a.kind == "Model" || a.kind == "Node" || a.kind == "Lease") return "";
    if (a.kind == "Replica") {
      // A worker lists/watches replicas (with a nodeName field selector the
      // authorizer cannot see, like the kubelet's pod watch); one named
      // replica only when it is bound to this node.
      if (a.verb != "get" || a.bound_node == u.name) return "";
      return "node " + me + " may only get replicas bound to it";
    }
    return "-";
  }
  if (a.verb == "create") {
    if (!a.subresource.empty()) return "-";
    if (a.kind == "Event") return "";
    if (a.kind == "Node" || a.kind == "Lease") {
      if (a.name == u.name) return "";
      return "node " + me + " may only create its own " + std::string(a.kind);
    }
    return "-";
  }
  if (a.verb == "update" || a.verb == "patch") {
    if (a.kind == "Node") {
      if (a.subresource != "" && a.subresource != "status") return "-";
      if (a.name == u.name) return "";
      return "node " + me + " may only modify its own Node";
    }
    if (a.kind == "Lease") {
      if (!a.subresource.empty()) return "-";
      if (a.name == u.name) return "";
      return "node " + me + " may only modify its own Lease";
    }
    if (a.kind == "Replica") {
      // Status, or the main resource only to remove a finalizer (a drained
      // replica lets its deletion finish): the API server checks that no
      // other field changes.
      if (a.subresource != "status" && !a.subresource.empty()) return "-";
      if (!a.bound_node.empty() && a.bound_node == u.name) return "";
      return "node " + me + " may only modify replicas bound to it";
    }
    return "-";
  }
  return "-";
}

}  // namespace

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kAdmin: return "admin";
    case Role::kViewer: return "viewer";
    case Role::kNode: return "node";
  }
  return "unknown";
}

std::optional<Role> ParseRole(std::string_view name) {
  if (name == "admin") return Role::kAdmin;
  if (name == "viewer") return Role::kViewer;
  if (name == "node") return Role::kNode;
  return std::nullopt;
}

struct TokenAuthenticator::Impl {
  Impl(std::filesystem::path p, common::Clock* c) : path(std::move(p)), clock(c) {
    if (clock == nullptr) {
      owned_clock = std::make_unique<common::RealClock>();
      clock = owned_clock.get();
    }
  }

  // Re-reads the file when its fingerprint differs from the loaded version
  // and from the last version that failed (so a broken file is logged once,
  // not every second). Requires mu.
  void MaybeReloadLocked() {
    auto fp = Stat(path);
    if (!fp.ok()) {
      if (!stat_failed) {
        ++reload_failures;
        spdlog::error("token file {}: cannot check for changes, keeping the {} loaded tokens: {}",
                      path.string(), table->size(), fp.status().message());
      }
      stat_failed = true;
      return;
    }
    stat_failed = false;
    if (loaded == *fp || failed == *fp) return;
    auto text = ReadTokenFile(path);
    // A writer between the stat and the read (an editor rewriting in place)
    // shows as a changed fingerprint: leave it for the next check, when the
    // write is likely done, rather than load or reject a half-written file.
    auto after = Stat(path);
    if (!after.ok() || !(*after == *fp)) {
      if (text.ok()) OPENSSL_cleanse(text->data(), text->size());
      return;
    }
    if (text.ok() && text->empty() && !table->empty()) {
      // The truncate that starts an in-place rewrite would revoke every
      // token; to revoke all on purpose, leave a comment line.
      ++reload_failures;
      failed = *fp;
      spdlog::error(
          "token file {} is empty, keeping the {} loaded tokens (write a comment line "
          "to revoke every token)",
          path.string(), table->size());
      return;
    }
    auto parsed = text.ok() ? ParseTokenFile(path, *text)
                            : common::Result<std::shared_ptr<const TokenTable>>(text.status());
    if (text.ok()) OPENSSL_cleanse(text->data(), text->size());
    if (!parsed.ok()) {
      ++reload_failures;
      failed = *fp;
      spdlog::error("token file {} changed but cannot be used, keeping the {} loaded tokens: {}",
                    path.string(), table->size(), parsed.status().message());
      return;
    }
    const bool first = !loaded.has_value();
    table = std::move(*parsed);
    loaded = *fp;
    failed.reset();
    if (!first) spdlog::info("token file {} reloaded: {} tokens", path.string(), table->size());
  }

  const std::filesystem::path path;
  common::Clock* clock;
  std::unique_ptr<common::Clock> owned_clock;

  mutable std::mutex mu;
  std::shared_ptr<const TokenTable> table = std::make_shared<TokenTable>();  // guarded by mu
  std::optional<Fingerprint> loaded;                                         // guarded by mu
  std::optional<Fingerprint> failed;                                         // guarded by mu
  bool stat_failed = false;                                                  // guarded by mu
  std::optional<common::TimePoint> last_check;                               // guarded by mu
  uint64_t reload_failures = 0;                                              // guarded by mu
};

TokenAuthenticator::TokenAuthenticator(std::filesystem::path token_file)
    : impl_(std::make_shared<Impl>(std::move(token_file), nullptr)) {}

TokenAuthenticator::TokenAuthenticator(std::filesystem::path token_file, common::Clock& clock)
    : impl_(std::make_shared<Impl>(std::move(token_file), &clock)) {}

common::Status TokenAuthenticator::Load() {
  // Fingerprint first: a write racing with the read then shows up as a newer
  // fingerprint at the next check and is read again.
  auto fp = Stat(impl_->path);
  if (!fp.ok()) return fp.status();
  auto text = ReadTokenFile(impl_->path);
  if (!text.ok()) return text.status();
  auto parsed = ParseTokenFile(impl_->path, *text);
  OPENSSL_cleanse(text->data(), text->size());
  if (!parsed.ok()) return parsed.status();
  std::lock_guard lock(impl_->mu);
  impl_->table = std::move(*parsed);
  impl_->loaded = *fp;
  impl_->failed.reset();
  impl_->stat_failed = false;
  impl_->last_check = impl_->clock->Now();
  return Status::Ok();
}

std::optional<User> TokenAuthenticator::Authenticate(std::string_view authorization_header) {
  // RFC 6750 §2.1 / RFC 7235: credentials = auth-scheme 1*SP token68; the
  // scheme is case-insensitive. Surrounding whitespace is tolerated.
  const std::string_view h = TrimOws(authorization_header);
  constexpr std::string_view kScheme = "bearer";
  if (h.size() <= kScheme.size() || (h[kScheme.size()] != ' ' && h[kScheme.size()] != '\t')) {
    return std::nullopt;
  }
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(h[i])) != kScheme[i]) return std::nullopt;
  }
  const std::string_view token = TrimOws(h.substr(kScheme.size()));
  if (token.empty() || !IsB64Token(token)) return std::nullopt;
  const std::string digest = Sha256(token);
  if (digest.size() != kDigestSize) return std::nullopt;

  std::shared_ptr<const TokenTable> table;
  {
    std::lock_guard lock(impl_->mu);
    const auto now = impl_->clock->Now();
    if (!impl_->last_check || now - *impl_->last_check >= kCheckInterval ||
        now < *impl_->last_check) {
      impl_->last_check = now;
      impl_->MaybeReloadLocked();
    }
    table = impl_->table;
  }
  // The table is keyed by SHA-256(token), so lookup timing can reveal at most
  // something about the digest of the guess, which does not help find a valid
  // token; the final comparison is constant-time all the same.
  const auto it = table->find(digest);
  if (it == table->end() || CRYPTO_memcmp(it->first.data(), digest.data(), kDigestSize) != 0) {
    return std::nullopt;
  }
  return it->second.user;
}

size_t TokenAuthenticator::TokenCount() const {
  std::lock_guard lock(impl_->mu);
  return impl_->table->size();
}

uint64_t TokenAuthenticator::ReloadFailures() const {
  std::lock_guard lock(impl_->mu);
  return impl_->reload_failures;
}

Decision Authorize(const User& user, const Attributes& attrs) {
  std::string why;
  switch (user.role) {
    case Role::kAdmin: return {true, ""};
    case Role::kViewer:
      if (IsReadVerb(attrs.verb)) return {true, ""};
      why = "-";
      break;
    case Role::kNode:
      why = NodeDenial(user, attrs);
      if (why.empty()) return {true, ""};
      break;
  }
  std::string reason = ForbiddenMessage(user, attrs);
  if (why != "-") reason += ": " + why;
  return {false, std::move(reason)};
}

common::Result<std::string> AddToken(const std::filesystem::path& token_file, std::string_view user,
                                     Role role) {
  // The line must parse back as written: no separators, no line breaks, no
  // padding the parser would trim.
  if (user.empty() || user != Trim(user)) {
    return common::InvalidArgument("user: must be non-empty with no surrounding whitespace");
  }
  if (user.find(',') != std::string_view::npos || HasControlChar(user)) {
    return common::InvalidArgument("user: must not contain ',' or control characters");
  }
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return common::Internal("token: OpenSSL RAND_bytes failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  token.reserve(bytes.size() * 2);
  for (const unsigned char b : bytes) {
    token += kHex[b >> 4];
    token += kHex[b & 0xf];
  }
  OPENSSL_cleanse(bytes.data(), bytes.size());

  const int fd = ::open(token_file.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return common::Unavailable("token file " + token_file.string() + ": " + std::strerror(errno));
  }
  struct stat st {};
  std::string line;
  if (::fstat(fd, &st) == 0 && st.st_size == 0) {
    // New (or empty) file: 0600 whatever the umask left.
    (void)::fchmod(fd, 0600);
  } else if (st.st_size > 0) {
    // Keep an existing last line (written by hand without a newline) intact.
    char last = '\n';
    if (::pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n') line += '\n';
  }
  line += token + "," + std::string(user) + "," + std::string(RoleName(role)) + "\n";
  // One write with O_APPEND: concurrent appenders do not interleave within a
  // line, and a reader sees either the old file or the old file plus the line
  // (a torn tail at worst, which fails the parse and keeps the old tokens).
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::write(fd, line.data() + off, line.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string err = std::strerror(errno);
      ::close(fd);
      return common::Unavailable("token file " + token_file.string() + ": write: " + err);
    }
    off += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const std::string sync_err = synced ? "" : std::strerror(errno);
  ::close(fd);
  if (!synced) {
    return common::Unavailable("token file " + token_file.string() + ": fsync: " + sync_err);
  }
  return token;
}

}  // namespace corral::api
