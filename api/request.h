#pragma once
// Transport-independent request and response of the API server. The HTTP
// adapter (api_server.cc) fills a Request from cpprestsdk and writes the
// Response back; the handler (handler.h) never sees the transport, so it is
// exercised the same way by every test.
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace corral::api {

// Case-insensitive header map (HTTP header names are).
struct HeaderLess {
  bool operator()(const std::string& a, const std::string& b) const;
};
using Headers = std::map<std::string, std::string, HeaderLess>;

struct Request {
  std::string method;                        // "GET", ...
  std::string path;                          // percent-decoded path, no query
  std::map<std::string, std::string> query;  // decoded; last value wins
  Headers headers;
  std::string body;
  std::string remote;  // peer address, for logs

  std::string Header(const std::string& name) const;
  std::string Query(const std::string& name) const;
  bool HasQuery(const std::string& name) const { return query.count(name) > 0; }
};

// Where a streaming response (watch) writes. Thread-safety: one writer.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // Writes and flushes one chunk; false once the client is gone or the
  // stream is backed up past its limit (the producer should stop).
  virtual bool Write(const std::string& chunk) = 0;
  virtual bool Closed() const = 0;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra (Warning, Retry-After)
  // When set, the body is streamed: the adapter sends status and headers,
  // then runs `stream` on its own thread until it returns (chunked encoding).
  std::function<void(StreamSink&)> stream;
};

}  // namespace corral::api
