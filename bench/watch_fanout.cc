// Watch fan-out benchmark: opens N watches (plain HTTP, raw non-blocking
// sockets, one epoll thread) on a namespace holding one Model, then patches that
// Model W times and measures, per write, the time from just before the PATCH is
// sent to the moment the first and the last watcher has the event in hand.
//
//   watch_fanout --port P --token T --watches 1000 --writes 100
//
// Each write sets the label fanout-seq to a value unique to the run and the
// write; a watcher "has" the write when a decoded event line carries
// "fanout-seq":"<that value>". One thread reads every socket, so the figures
// include this client's own reading (about a microsecond per event); the
// server, PostgreSQL and this client share the machine.
//
// Prints a human-readable summary and one line starting with "RESULT " of
// key=value pairs for scripts. Every wait is bounded (--timeout-s overall,
// --event-timeout-ms per write). Exit status: 0 ok, 1 failed, 2 bad usage.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Incremental HTTP/1.1 response reader: status line and headers, then a body
// framed by Content-Length, chunked encoding, or the connection's end. The
// decoded body is appended to `payload`; the caller consumes it.
class ResponseReader {
 public:
  // Feeds raw bytes. Returns false on a framing error (message in error()).
  bool Feed(const char* data, size_t n) {
    raw_.append(data, n);
    if (!headers_done_) {
      const auto end = raw_.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (raw_.size() > 64 * 1024) return Fail("response headers larger than 64 KiB");
        return true;
      }
      if (!ParseHeaders(raw_.substr(0, end))) return false;
      raw_.erase(0, end + 4);
      headers_done_ = true;
    }
    return DecodeBody();
  }
  bool headers_done() const { return headers_done_; }
  int status() const { return status_; }
  // True when the whole body has arrived (Content-Length reached or last chunk).
  bool complete() const { return complete_; }
  const std::string& error() const { return error_; }
  std::string payload;

 private:
  bool Fail(std::string message) {
    error_ = std::move(message);
    return false;
  }

  bool ParseHeaders(const std::string& head) {
    // "HTTP/1.1 200 OK"
    const auto sp = head.find(' ');
    if (head.compare(0, 5, "HTTP/") != 0 || sp == std::string::npos)
      return Fail("not an HTTP response: " + head.substr(0, 40));
    status_ = std::atoi(head.c_str() + sp + 1);
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    chunked_ = lower.find("\r\ntransfer-encoding: chunked") != std::string::npos;
    const auto cl = lower.find("\r\ncontent-length:");
    if (!chunked_ && cl != std::string::npos) {
      remaining_ = std::strtoull(lower.c_str() + cl + 17, nullptr, 10);
      has_length_ = true;
      if (remaining_ == 0) complete_ = true;
    }
    return true;
  }

  bool DecodeBody() {
    if (!chunked_) {
      size_t take = raw_.size();
      if (has_length_) take = std::min<size_t>(take, remaining_);
      payload.append(raw_, 0, take);
      raw_.erase(0, take);
      if (has_length_) {
        remaining_ -= take;
        if (remaining_ == 0) complete_ = true;
      }
      return true;
    }
    while (!complete_) {
      if (remaining_ == 0 && !in_chunk_) {
        const auto eol = raw_.find("\r\n");
        if (eol == std::string::npos) return raw_.size() < 64 ? true : Fail("bad chunk size line");
        char* end = nullptr;
        const unsigned long long size = std::strtoull(raw_.c_str(), &end, 16);
        if (end == raw_.c_str()) return Fail("bad chunk size: " + raw_.substr(0, eol));
        raw_.erase(0, eol + 2);
        if (size == 0) {
          complete_ = true;  // trailers, if any, are ignored
          return true;
        }
        remaining_ = size;
        in_chunk_ = true;
      }
      if (in_chunk_ && remaining_ > 0) {
        const size_t take = std::min<size_t>(raw_.size(), remaining_);
        payload.append(raw_, 0, take);
        raw_.erase(0, take);
        remaining_ -= take;
        if (remaining_ > 0) return true;
      }
      // The CRLF after the chunk's data.
      if (raw_.size() < 2) return true;
      if (raw_.compare(0, 2, "\r\n") != 0) return Fail("chunk not followed by CRLF");
      raw_.erase(0, 2);
      in_chunk_ = false;
    }
    return true;
  }

  std::string raw_;
  bool headers_done_ = false;
  int status_ = 0;
  bool chunked_ = false;
  bool has_length_ = false;
  bool in_chunk_ = false;
  bool complete_ = false;
  unsigned long long remaining_ = 0;
  std::string error_;
};

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string token;
  std::string ns = "fanout";
  std::string name = "fanout";
  int watches = 1000;
  int writes = 100;
  int interval_ms = 50;
  int event_timeout_ms = 5000;
  int timeout_s = 180;
};

int Connect(const Options& o, bool nonblocking) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  if (::inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    errno = EINVAL;
    return -1;
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    const int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

std::string RequestText(const Options& o, const std::string& method, const std::string& path,
                        const std::string& content_type, const std::string& body) {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: " + o.host + ":" +
                  std::to_string(o.port) + "\r\nAuthorization: Bearer " + o.token +
                  "\r\nAccept: application/json\r\nUser-Agent: corral-watch-fanout\r\n";
  if (!body.empty() || method == "POST" || method == "PATCH" || method == "PUT") {
    r += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n";
  }
  r += "\r\n" + body;
  return r;
}

// Sends the whole buffer on a (possibly non-blocking) socket, waiting for
// writability with poll-like retries bounded by `deadline`.
bool SendAll(int fd, const std::string& data, Clock::time_point deadline) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOTCONN)) {
      if (Clock::now() > deadline) return false;
      ::usleep(200);
      continue;
    }
    return false;
  }
  return true;
}

// One blocking request/response on a fresh connection (setup only, not timed).
std::optional<std::pair<int, std::string>> Call(const Options& o, const std::string& method,
                                                const std::string& path,
                                                const std::string& content_type,
                                                const std::string& body) {
  const int fd = Connect(o, false);
  if (fd < 0) return std::nullopt;
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::optional<std::pair<int, std::string>> out;
  if (SendAll(fd, RequestText(o, method, path, content_type, body),
              Clock::now() + std::chrono::seconds(10))) {
    ResponseReader rr;
    char buf[16384];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (!rr.Feed(buf, static_cast<size_t>(n))) break;
      if (rr.complete()) {
        out.emplace(rr.status(), rr.payload);
        break;
      }
    }
  }
  ::close(fd);
  return out;
}

// Pulls "metadata.resourceVersion" out of an object's JSON without a parser:
// the first "resourceVersion":"N" in a single object is its own.
std::string ResourceVersionOf(const std::string& obj) {
  const std::string key = "\"resourceVersion\":\"";
  const auto p = obj.find(key);
  if (p == std::string::npos) return "";
  const auto e = obj.find('"', p + key.size());
  return e == std::string::npos ? "" : obj.substr(p + key.size(), e - p - key.size());
}

struct Watch {
  int fd = -1;
  ResponseReader reader;
  bool open = false;      // 200 and headers received
  bool lost = false;      // closed or failed after opening
  int64_t seen_seq = -1;  // highest write this watcher has received
  Clock::time_point seen_at;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // Nearest rank: the smallest value with at least p of the samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

int Run(const Options& o) {
  const auto hard_deadline = Clock::now() + std::chrono::seconds(o.timeout_s);
  // 1,000 watches need more descriptors than the usual soft limit of 1,024.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }

  // Setup: namespace, where the server has them (404: it has no Namespace kind
  // and needs none), and the object (409: already there).
  const std::string models = "/apis/corral.dev/v1alpha1/namespaces/" + o.ns + "/models";
  auto ns = Call(o, "POST", "/api/v1/namespaces", "application/json",
                 R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")" + o.ns + "\"}}");
  if (!ns || (ns->first != 201 && ns->first != 409 && ns->first != 404)) {
    std::fprintf(stderr, "watch_fanout: creating namespace %s: %s\n", o.ns.c_str(),
                 ns ? (std::to_string(ns->first) + " " + ns->second).c_str() : "no response");
    return 1;
  }
  auto created = Call(o, "POST", models, "application/json",
                      R"({"apiVersion":"corral.dev/v1alpha1","kind":"Model","metadata":{"name":")" +
                          o.name + R"("},"spec":{"engine":"sim","source":"sim://fanout"}})");
  if (!created || (created->first != 201 && created->first != 409)) {
    std::fprintf(
        stderr, "watch_fanout: creating model: %s\n",
        created ? (std::to_string(created->first) + " " + created->second).c_str() : "no response");
    return 1;
  }
  auto got = Call(o, "GET", models + "/" + o.name, "", "");
  if (!got || got->first != 200) {
    std::fprintf(stderr, "watch_fanout: reading model: %s\n",
                 got ? (std::to_string(got->first) + " " + got->second).c_str() : "no response");
    return 1;
  }
  const std::string rv = ResourceVersionOf(got->second);
  if (rv.empty()) {
    std::fprintf(stderr, "watch_fanout: no resourceVersion in %s\n", got->second.c_str());
    return 1;
  }

  // Open the watches, all from the object's current revision.
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    std::perror("epoll_create1");
    return 1;
  }
  std::vector<Watch> watches(static_cast<size_t>(o.watches));
  const std::string watch_req = RequestText(
      o, "GET", models + "?watch=true&resourceVersion=" + rv + "&timeoutSeconds=900", "", "");
  const auto open_started = Clock::now();
  for (size_t i = 0; i < watches.size(); ++i) {
    Watch& w = watches[i];
    w.fd = Connect(o, true);
    if (w.fd < 0) {
      std::fprintf(stderr, "watch_fanout: connect for watch %zu: %s\n", i, std::strerror(errno));
      return 1;
    }
    if (!SendAll(w.fd, watch_req, hard_deadline)) {
      std::fprintf(stderr, "watch_fanout: sending watch %zu failed\n", i);
      return 1;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, w.fd, &ev);
  }

  // Control connection for the writes: also non-blocking and in the same epoll
  // set, so watch events are timestamped while the PATCH response is pending.
  const uint64_t kControl = UINT64_MAX;
  int ctl = -1;
  ResponseReader ctl_reader;

  const std::string run_id = std::to_string(std::random_device{}() % 1000000);
  auto marker = [&](int64_t seq) {
    return "\"fanout-seq\":\"" + run_id + "-" + std::to_string(seq) + "\"";
  };

  int64_t current = -1;  // the write being measured; -1 while opening
  std::string current_marker;
  size_t opened = 0, lost = 0;
  std::string first_error;
  char buf[65536];
  std::vector<epoll_event> events(1024);

  // Reads what is ready; returns false on a fatal setup error.
  auto pump = [&](int timeout_ms) -> bool {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0) return errno == EINTR;
    for (int k = 0; k < n; ++k) {
      const uint64_t id = events[k].data.u64;
      const int fd = id == kControl ? ctl : watches[id].fd;
      ResponseReader& rr = id == kControl ? ctl_reader : watches[id].reader;
      bool closed = false;
      for (;;) {
        const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r > 0) {
          const auto now = Clock::now();
          if (!rr.Feed(buf, static_cast<size_t>(r))) {
            if (first_error.empty()) first_error = rr.error();
            closed = true;
            break;
          }
          if (id == kControl) continue;
          Watch& w = watches[id];
          if (rr.headers_done() && !w.open && !w.lost) {
            if (rr.status() != 200) {
              if (first_error.empty())
                first_error = "watch answered " + std::to_string(rr.status()) + ": " + rr.payload;
              closed = true;
              break;
            }
            w.open = true;
            ++opened;
          }
          // Whole event lines only; a partial line waits for the next read.
          size_t start = 0;
          for (;;) {
            const auto nl = rr.payload.find('\n', start);
            if (nl == std::string::npos) break;
            const std::string_view line(rr.payload.data() + start, nl - start);
            if (current >= 0 && w.seen_seq < current &&
                line.find(current_marker) != std::string_view::npos) {
              w.seen_seq = current;
              w.seen_at = now;
            } else if (line.find("\"type\":\"ERROR\"") != std::string_view::npos &&
                       first_error.empty()) {
              first_error = "watch error event: " + std::string(line.substr(0, 300));
            }
            start = nl + 1;
          }
          rr.payload.erase(0, start);
          continue;
        }
        if (r == 0)
          closed = true;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          closed = true;
        break;
      }
      if (closed) {
        ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        if (id == kControl) {
          ctl = -1;
        } else {
          Watch& w = watches[id];
          w.fd = -1;
          if (!w.lost) {
            w.lost = true;
            ++lost;
            if (w.open) --opened;
          }
        }
      }
    }
    return true;
  };

  while (opened + lost < watches.size() && Clock::now() < hard_deadline) {
    if (!pump(100)) break;
  }
  const double open_ms = Ms(Clock::now() - open_started);
  if (opened < watches.size()) {
    std::fprintf(stderr,
                 "watch_fanout: only %zu of %zu watches opened in %.0f ms (%zu failed)%s%s\n",
                 opened, watches.size(), open_ms, lost, first_error.empty() ? "" : ": ",
                 first_error.c_str());
    return 1;
  }
  std::printf("opened %zu watches in %.0f ms\n", opened, open_ms);
  std::fflush(stdout);

  std::vector<double> write_ms, first_ms, last_ms;
  size_t missed_writes = 0;
  for (int64_t seq = 0; seq < o.writes && Clock::now() < hard_deadline; ++seq) {
    if (ctl < 0) {
      ctl = Connect(o, true);
      if (ctl < 0) {
        std::fprintf(stderr, "watch_fanout: control connect: %s\n", std::strerror(errno));
        return 1;
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = kControl;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, ctl, &ev);
    }
    ctl_reader = ResponseReader();
    current = seq;
    current_marker = marker(seq);
    const std::string patch =
        R"({"metadata":{"labels":{"fanout-seq":")" + run_id + "-" + std::to_string(seq) + "\"}}}";
    const std::string req =
        RequestText(o, "PATCH", models + "/" + o.name, "application/merge-patch+json", patch);
    const auto t0 = Clock::now();
    if (!SendAll(ctl, req, hard_deadline)) {
      std::fprintf(stderr, "watch_fanout: sending write %lld failed\n",
                   static_cast<long long>(seq));
      return 1;
    }
    const auto deadline =
        std::min(hard_deadline, t0 + std::chrono::milliseconds(o.event_timeout_ms));
    std::optional<Clock::time_point> answered;
    auto all_seen = [&] {
      for (const Watch& w : watches)
        if (!w.lost && w.seen_seq < seq) return false;
      return true;
    };
    while (Clock::now() < deadline) {
      if (!pump(10)) break;
      if (!answered && ctl_reader.complete()) {
        answered = Clock::now();
        if (ctl_reader.status() != 200) {
          std::fprintf(stderr, "watch_fanout: write %lld answered %d: %s\n",
                       static_cast<long long>(seq), ctl_reader.status(),
                       ctl_reader.payload.c_str());
          return 1;
        }
      }
      if (answered && all_seen()) break;
    }
    if (!answered || !all_seen()) {
      ++missed_writes;
      std::fprintf(stderr, "watch_fanout: write %lld: %s within %d ms\n",
                   static_cast<long long>(seq),
                   !answered ? "no response" : "not every watcher received it", o.event_timeout_ms);
      continue;
    }
    Clock::time_point first = Clock::time_point::max(), last = Clock::time_point::min();
    for (const Watch& w : watches) {
      if (w.lost) continue;
      first = std::min(first, w.seen_at);
      last = std::max(last, w.seen_at);
    }
    write_ms.push_back(Ms(*answered - t0));
    first_ms.push_back(Ms(first - t0));
    last_ms.push_back(Ms(last - t0));
    // Let the system settle between writes (still reading, nothing should come).
    const auto pause_end = Clock::now() + std::chrono::milliseconds(o.interval_ms);
    while (Clock::now() < pause_end)
      pump(static_cast<int>(std::max<int64_t>(
          1, std::chrono::duration_cast<std::chrono::milliseconds>(pause_end - Clock::now())
                 .count())));
  }

  for (Watch& w : watches)
    if (w.fd >= 0) ::close(w.fd);
  if (ctl >= 0) ::close(ctl);
  ::close(ep);

  if (last_ms.empty()) {
    std::fprintf(stderr, "watch_fanout: no write was seen by every watcher%s%s\n",
                 first_error.empty() ? "" : ": ", first_error.c_str());
    return 1;
  }
  std::printf(
      "writes measured %zu (missed %zu), watchers lost %zu\n"
      "write response   p50 %.2f ms  p99 %.2f ms\n"
      "first watcher    p50 %.2f ms  p99 %.2f ms\n"
      "last watcher     p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
      last_ms.size(), missed_writes, lost, Percentile(write_ms, 0.5), Percentile(write_ms, 0.99),
      Percentile(first_ms, 0.5), Percentile(first_ms, 0.99), Percentile(last_ms, 0.5),
      Percentile(last_ms, 0.99), Percentile(last_ms, 1.0));
  std::printf(
      "RESULT watches=%zu writes=%zu missed=%zu lost=%zu open_ms=%.0f write_p50_ms=%.2f "
      "first_p50_ms=%.2f last_p50_ms=%.2f last_p99_ms=%.2f last_max_ms=%.2f\n",
      opened, last_ms.size(), missed_writes, lost, open_ms, Percentile(write_ms, 0.5),
      Percentile(first_ms, 0.5), Percentile(last_ms, 0.5), Percentile(last_ms, 0.99),
      Percentile(last_ms, 1.0));
  return missed_writes == 0 && lost == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Watch fan-out: time from a write to the last of N watchers receiving it"};
  Options o;
  app.add_option("--host", o.host, "Server IPv4 address")->capture_default_str();
  app.add_option("--port", o.port, "Server port (plain HTTP)")->required();
  app.add_option("--token", o.token, "Bearer token (admin)")->required();
  app.add_option("--namespace", o.ns, "Namespace holding the watched Model")->capture_default_str();
  app.add_option("--name", o.name, "Name of the Model that is patched")->capture_default_str();
  app.add_option("--watches", o.watches, "Open watches")
      ->check(CLI::Range(1, 50000))
      ->capture_default_str();
  app.add_option("--writes", o.writes, "Writes measured")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--interval-ms", o.interval_ms, "Pause after each write was fully delivered")
      ->check(CLI::Range(0, 60000))
      ->capture_default_str();
  app.add_option("--event-timeout-ms", o.event_timeout_ms,
                 "How long one write may take to reach every watcher")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  app.add_option("--timeout-s", o.timeout_s, "Bound on the whole run")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return Run(o);
}
