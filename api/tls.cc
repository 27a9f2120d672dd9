#include "api/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>

namespace corral::api {
namespace {

using common::Result;
using common::Status;

constexpr long kCaDays = 3650;
constexpr long kServerDays = 365;
// Reuse a certificate only while it has more than this left, so a restart in
// the last month renews it instead of letting it expire under running clients.
constexpr long kMinRemainingDays = 30;
constexpr std::string_view kCaCommonName = "corral-ca";
constexpr std::string_view kServerCommonName = "corral-apiserver";

struct X509Deleter {
  void operator()(X509* p) const { X509_free(p); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BioDeleter {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct BnDeleter {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ExtDeleter {
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using BnPtr = std::unique_ptr<BIGNUM, BnDeleter>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, ExtDeleter>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter>;

// Drains OpenSSL's thread-local error queue into one line (and clears it, so
// a later failure does not report this one's errors).
std::string OpenSslErrors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    if (!out.empty()) out += "; ";
    out += buf.data();
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

Status SslError(std::string_view what) {
  return common::Internal(std::string(what) + ": " + OpenSslErrors());
}

// The hosts a serving certificate must name, normalized.
struct Sans {
  std::vector<std::string> ips;  // textual, as inet_ntop writes them
  std::vector<std::string> dns;  // lower case
};

bool IsDnsName(std::string_view s) {
  if (s.empty() || s.size() > 253 || s.front() == '.' || s.front() == '-') return false;
  for (const char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') return false;
  }
  return true;
}

Result<Sans> NormalizeHosts(const std::vector<std::string>& hosts) {
  Sans sans;
  std::vector<std::string> all = {"localhost", "127.0.0.1"};
  all.insert(all.end(), hosts.begin(), hosts.end());
  for (size_t i = 0; i < all.size(); ++i) {
    std::string h = all[i];
    // An unset listen host ("" from ":6443") names nothing to add.
    if (h.empty()) continue;
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    std::array<unsigned char, 16> addr{};
    std::array<char, INET6_ADDRSTRLEN> text{};
    if (inet_pton(AF_INET, h.c_str(), addr.data()) == 1) {
      inet_ntop(AF_INET, addr.data(), text.data(), text.size());
    } else if (inet_pton(AF_INET6, h.c_str(), addr.data()) == 1) {
      inet_ntop(AF_INET6, addr.data(), text.data(), text.size());
    }
    auto add = [](std::vector<std::string>& v, std::string s) {
      if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(std::move(s));
    };
    if (text[0] != '\0') {
      add(sans.ips, text.data());
      continue;
    }
    if (!IsDnsName(h)) {
      return common::InvalidArgument(
          "hosts[" + std::to_string(i - 2) + "]: \"" + all[i] +
          "\" is neither an IP address nor a DNS name (letters, digits, '-' and '.')");
    }
    std::transform(h.begin(), h.end(), h.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    add(sans.dns, h);
  }
  return sans;
}

Result<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return common::NotFound(path.string() + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return common::Unavailable(path.string() + ": read error");
  return ss.str();
}

// Writes `content` to `path` with `mode`, atomically: a temp file in the same
// directory, fsync, rename. A reader sees the old file or the new one.
Status WriteFileAtomic(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  std::string tmpl = path.string() + ".tmp-XXXXXX";
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0)
    return common::Unavailable(path.string() + ": create temp file: " + std::strerror(errno));
  auto fail = [&](std::string_view what) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    ::unlink(tmpl.c_str());
    return common::Unavailable(path.string() + ": " + std::string(what) + ": " + err);
  };
  if (::fchmod(fd, mode) != 0) return fail("chmod");
  size_t off = 0;
  while (off < content.size()) {
    const ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0) {
    ::unlink(tmpl.c_str());
    return common::Unavailable(path.string() + ": close: " + std::strerror(errno));
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmpl.c_str());
    return common::Unavailable(path.string() + ": rename: " + err);
  }
  return Status::Ok();
}

X509Ptr ParseCertPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

X509Ptr LoadCert(const std::filesystem::path& path) {
  auto pem = ReadFile(path);
  if (!pem.ok()) return nullptr;
  X509Ptr cert = ParseCertPem(*pem);
  if (!cert) ERR_clear_error();
  return cert;
}

PkeyPtr LoadKey(const std::filesystem::path& path) {
  auto pem = ReadFile(path);
  if (!pem.ok()) return nullptr;
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  OPENSSL_cleanse(pem->data(), pem->size());
  if (!key) ERR_clear_error();
  return key;
}

Result<std::string> CertPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return SslError("encode certificate");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<std::string> KeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return SslError("encode private key");
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  std::string pem(data, static_cast<size_t>(n));
  OPENSSL_cleanse(data, static_cast<size_t>(n));
  return pem;
}

// True when the certificate is already valid and stays valid for more than
// kMinRemainingDays.
bool ValidLongEnough(X509* cert) {
  time_t now = std::time(nullptr);
  time_t horizon = now + kMinRemainingDays * 24 * 3600;
  return X509_cmp_time(X509_get0_notBefore(cert), &now) < 0 &&
         X509_cmp_time(X509_get0_notAfter(cert), &horizon) > 0;
}

bool CoversHosts(X509* cert, const Sans& sans) {
  for (const auto& ip : sans.ips) {
    if (X509_check_ip_asc(cert, ip.c_str(), 0) != 1) return false;
  }
  for (const auto& dns : sans.dns) {
    // Exact names only: a wildcard someone put in by hand does not count.
    if (X509_check_host(cert, dns.data(), dns.size(), X509_CHECK_FLAG_NO_WILDCARDS, nullptr) != 1) {
      return false;
    }
  }
  return true;
}

Status AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return SslError(std::string("certificate extension ") + OBJ_nid2sn(nid) + "=" + value);
  }
  return Status::Ok();
}

Status AddSans(X509* cert, const Sans& sans) {
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return SslError("subjectAltName");
  for (const auto& dns : sans.dns) {
    GENERAL_NAME* gn = GENERAL_NAME_new();
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    if (gn == nullptr || s == nullptr ||
        ASN1_STRING_set(s, dns.data(), static_cast<int>(dns.size())) != 1) {
      GENERAL_NAME_free(gn);
      ASN1_IA5STRING_free(s);
      return SslError("subjectAltName DNS:" + dns);
    }
    GENERAL_NAME_set0_value(gn, GEN_DNS, s);
    sk_GENERAL_NAME_push(names.get(), gn);
  }
  for (const auto& ip : sans.ips) {
    ASN1_OCTET_STRING* o = a2i_IPADDRESS(ip.c_str());
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (o == nullptr || gn == nullptr) {
      ASN1_OCTET_STRING_free(o);
      GENERAL_NAME_free(gn);
      return SslError("subjectAltName IP:" + ip);
    }
    GENERAL_NAME_set0_value(gn, GEN_IPADD, o);
    sk_GENERAL_NAME_push(names.get(), gn);
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return SslError("subjectAltName");
  }
  return Status::Ok();
}

Result<PkeyPtr> NewKey() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return SslError("generate EC P-256 key");
  return key;
}

// A certificate for `key`, signed by `issuer_key` (issuer == nullptr: self-signed CA).
Result<X509Ptr> NewCert(EVP_PKEY* key, std::string_view common_name, X509* issuer,
                        EVP_PKEY* issuer_key, long days, const Sans* sans) {
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1)
    return SslError("new certificate");

  // RFC 5280: positive, at most 20 octets; 159 random bits also make serials
  // unpredictable.
  std::array<unsigned char, 20> serial{};
  if (RAND_bytes(serial.data(), static_cast<int>(serial.size())) != 1) {
    return SslError("certificate serial");
  }
  serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x01);
  BnPtr bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return SslError("certificate serial");
  }

  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("corral"), -1, -1,
                                 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1) {
    return SslError("certificate subject");
  }
  X509* signer = issuer != nullptr ? issuer : cert.get();
  // Backdated an hour so a client whose clock runs a little behind accepts it.
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), static_cast<int>(days), 0, nullptr) ==
          nullptr ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return SslError("certificate fields");
  }

  const bool is_ca = issuer == nullptr;
  if (is_ca) {
    CORRAL_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE"));
    CORRAL_RETURN_IF_ERROR(
        AddExt(cert.get(), signer, NID_key_usage, "critical,digitalSignature,keyCertSign,cRLSign"));
  } else {
    CORRAL_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE"));
    CORRAL_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_key_usage, "critical,digitalSignature"));
    CORRAL_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_ext_key_usage, "serverAuth"));
  }
  CORRAL_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_subject_key_identifier, "hash"));
  CORRAL_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_authority_key_identifier, "keyid:always"));
  if (sans != nullptr) CORRAL_RETURN_IF_ERROR(AddSans(cert.get(), *sans));

  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) return SslError("sign certificate");
  return cert;
}

// Writes the key first: a crash between the two writes leaves a certificate
// that does not match its key, which the next start detects and replaces.
Status WritePair(X509* cert, EVP_PKEY* key, const std::filesystem::path& cert_path,
                 const std::filesystem::path& key_path) {
  auto key_pem = KeyPem(key);
  if (!key_pem.ok()) return key_pem.status();
  const Status s = WriteFileAtomic(key_path, *key_pem, 0600);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  CORRAL_RETURN_IF_ERROR(s);
  auto cert_pem = CertPem(cert);
  if (!cert_pem.ok()) return cert_pem.status();
  return WriteFileAtomic(cert_path, *cert_pem, 0644);
}

// Keys found with looser permissions are tightened, not rewritten.
void EnsureKeyMode(const std::filesystem::path& key) {
  std::error_code ec;
  const auto perms = std::filesystem::status(key, ec).permissions();
  if (ec) return;
  using std::filesystem::perms;
  if ((perms & (perms::group_all | perms::others_all)) != perms::none) {
    spdlog::warn("tls: {} was readable by others; setting mode 0600", key.string());
    std::filesystem::permissions(key, perms::owner_read | perms::owner_write,
                                 std::filesystem::perm_options::replace, ec);
  }
}

}  // namespace

common::Result<GeneratedTls> EnsureServingCerts(const std::filesystem::path& dir,
                                                const std::vector<std::string>& hosts) {
  auto sans = NormalizeHosts(hosts);
  if (!sans.ok()) return sans.status();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return common::Unavailable("tls dir " + dir.string() + ": " + ec.message());
  GeneratedTls out{dir / "ca.crt", dir / "ca.key", dir / "server.crt", dir / "server.key"};

  X509Ptr ca = LoadCert(out.ca_cert);
  PkeyPtr ca_key = LoadKey(out.ca_key);
  bool new_ca = false;
  if (!ca || !ca_key || X509_check_private_key(ca.get(), ca_key.get()) != 1 ||
      X509_check_ca(ca.get()) < 1 || !ValidLongEnough(ca.get())) {
    ERR_clear_error();
    if (ca) {
      spdlog::warn(
          "tls: CA in {} is unusable or expires within {} days; creating a new one "
          "(kubeconfigs holding the old CA stop verifying)",
          dir.string(), kMinRemainingDays);
    }
    auto key = NewKey();
    if (!key.ok()) return key.status();
    auto cert = NewCert(key->get(), kCaCommonName, nullptr, key->get(), kCaDays, nullptr);
    if (!cert.ok()) return cert.status();
    CORRAL_RETURN_IF_ERROR(WritePair(cert->get(), key->get(), out.ca_cert, out.ca_key));
    ca = std::move(*cert);
    ca_key = std::move(*key);
    new_ca = true;
    spdlog::info("tls: created CA {}", out.ca_cert.string());
  } else {
    EnsureKeyMode(out.ca_key);
  }

  if (!new_ca) {
    X509Ptr server = LoadCert(out.server_cert);
    PkeyPtr server_key = LoadKey(out.server_key);
    PkeyPtr ca_pub(X509_get_pubkey(ca.get()));
    const bool reusable = server && server_key && ca_pub &&
                          X509_check_private_key(server.get(), server_key.get()) == 1 &&
                          X509_verify(server.get(), ca_pub.get()) == 1 &&
                          ValidLongEnough(server.get()) && CoversHosts(server.get(), *sans);
    ERR_clear_error();
    if (reusable) {
      EnsureKeyMode(out.server_key);
      return out;
    }
  }
  auto key = NewKey();
  if (!key.ok()) return key.status();
  auto cert = NewCert(key->get(), kServerCommonName, ca.get(), ca_key.get(), kServerDays, &*sans);
  if (!cert.ok()) return cert.status();
  CORRAL_RETURN_IF_ERROR(WritePair(cert->get(), key->get(), out.server_cert, out.server_key));
  std::string names;
  for (const auto& n : sans->dns) names += (names.empty() ? "" : ",") + n;
  for (const auto& n : sans->ips) names += (names.empty() ? "" : ",") + n;
  spdlog::info("tls: created serving certificate {} for {}", out.server_cert.string(), names);
  return out;
}

common::Status WriteKubeconfig(const std::filesystem::path& path, const std::string& server_url,
                               const std::string& token, const std::string& ca_pem) {
  if (server_url.rfind("https://", 0) != 0 && server_url.rfind("http://", 0) != 0) {
    return common::InvalidArgument("kubeconfig server: \"" + server_url +
                                   "\" is not an http:// or https:// URL");
  }
  if (token.empty()) return common::InvalidArgument("kubeconfig token: empty");
  std::string ca_data;
  if (!ca_pem.empty()) {
    // Catches a path passed where the PEM text belongs.
    if (!ParseCertPem(ca_pem)) {
      ERR_clear_error();
      return common::InvalidArgument(
          "kubeconfig certificate-authority-data: not a PEM certificate");
    }
    ca_data.resize(4 * ((ca_pem.size() + 2) / 3) + 1);
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(ca_data.data()),
                                  reinterpret_cast<const unsigned char*>(ca_pem.data()),
                                  static_cast<int>(ca_pem.size()));
    ca_data.resize(static_cast<size_t>(n));
  }

  YAML::Emitter y;
  y << YAML::BeginMap;
  y << YAML::Key << "apiVersion" << YAML::Value << "v1";
  y << YAML::Key << "kind" << YAML::Value << "Config";
  y << YAML::Key << "clusters" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  y << YAML::Key << "name" << YAML::Value << "corral";
  y << YAML::Key << "cluster" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "server" << YAML::Value << server_url;
  if (!ca_data.empty()) y << YAML::Key << "certificate-authority-data" << YAML::Value << ca_data;
  y << YAML::EndMap << YAML::EndMap << YAML::EndSeq;
  y << YAML::Key << "users" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  y << YAML::Key << "name" << YAML::Value << "corral";
  y << YAML::Key << "user" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "token" << YAML::Value << token;
  y << YAML::EndMap << YAML::EndMap << YAML::EndSeq;
  y << YAML::Key << "contexts" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  y << YAML::Key << "name" << YAML::Value << "corral";
  y << YAML::Key << "context" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "cluster" << YAML::Value << "corral";
  y << YAML::Key << "user" << YAML::Value << "corral";
  y << YAML::EndMap << YAML::EndMap << YAML::EndSeq;
  y << YAML::Key << "current-context" << YAML::Value << "corral";
  y << YAML::EndMap;
  if (!y.good()) return common::Internal("kubeconfig: YAML emitter: " + y.GetLastError());
  std::string text = std::string(y.c_str()) + "\n";

  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) return common::Unavailable("kubeconfig " + path.string() + ": " + ec.message());
  const Status s = WriteFileAtomic(path, text, 0600);
  OPENSSL_cleanse(text.data(), text.size());
  return s;
}

}  // namespace corral::api
