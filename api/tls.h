#pragma once
// Certificates for the API server: a self-signed CA and a serving certificate
// it signs (OpenSSL), and the admin kubeconfig.
// Pure functions over files; thread-safe.
#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"

namespace corral::api {

struct GeneratedTls {
  std::filesystem::path ca_cert;      // <dir>/ca.crt
  std::filesystem::path ca_key;       // <dir>/ca.key (0600)
  std::filesystem::path server_cert;  // <dir>/server.crt
  std::filesystem::path server_key;   // <dir>/server.key (0600)
};

// Creates (or reuses, when present, valid for > 30 days and covering every
// name) a CA (EC P-256, 10 years) and a serving certificate signed by it
// (1 year) with subjectAltNames for `hosts` (IP addresses as IP SANs, names
// as DNS SANs; "localhost" and 127.0.0.1 are always included; "[v6]" is
// accepted and empty entries are ignored). InvalidArgument naming hosts[i]
// for an entry that is neither an IP address nor a DNS name. A CA that is
// unusable or expires within 30 days is replaced (and with it the serving
// certificate); otherwise only the serving certificate is replaced when it
// does not match its key, is not signed by the CA, expires within 30 days or
// misses a name. Keys are written 0600, every file atomically.
common::Result<GeneratedTls> EnsureServingCerts(const std::filesystem::path& dir,
                                                const std::vector<std::string>& hosts);

// Writes a kubeconfig (mode 0600, atomically: temp file + rename) with one
// cluster/user/context named "corral": server URL, bearer token, and either
// certificate-authority-data (base64 of the CA PEM) or insecure plain http.
common::Status WriteKubeconfig(const std::filesystem::path& path, const std::string& server_url,
                               const std::string& token, const std::string& ca_pem);

}  // namespace corral::api
