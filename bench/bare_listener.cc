// The reference for the API benchmark: a cpprestsdk http_listener that answers
// every GET with one fixed JSON body, set up the way api/api_server.cc sets up
// corral's listener (a default http_listener_config, no thread-pool change, one
// support() handler, reply with set_body(string, content type)). Whatever corral
// costs beyond this is routing, authentication, the store and JSON. Other
// methods read the request body, then get the same fixed body (POST: 201).
//
//   bare_listener --listen 127.0.0.1:PORT --body-file get.json
//
// Serves until SIGINT or SIGTERM. Prints "ready" on stdout once listening so a
// script can wait for it.
#include <cpprest/http_listener.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace {

namespace http = web::http;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Bare cpprestsdk listener returning a fixed body (API benchmark reference)"};
  std::string listen = "127.0.0.1:18080";
  std::string body_file;
  size_t body_bytes = 0;
  app.add_option("--listen", listen, "HOST:PORT")->capture_default_str();
  auto* file_opt =
      app.add_option("--body-file", body_file, "File whose contents are the GET response body");
  app.add_option("--body-bytes", body_bytes, "Or: a JSON body padded to exactly this many bytes")
      ->excludes(file_opt);
  bool read_body_on_get = false;
  app.add_flag("--read-body-on-get", read_body_on_get,
               "Answer GET only after extract_vector() as well, as corral's Serve does for every "
               "method (one more task hop per request; for attributing cost, not the reference)");
  CLI11_PARSE(app, argc, argv);

  std::string body;
  if (!body_file.empty()) {
    std::ifstream in(body_file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "bare_listener: cannot read --body-file %s\n", body_file.c_str());
      return 2;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    body = ss.str();
  } else {
    // {"pad":"xxx..."}: valid JSON of exactly body_bytes (at least the 10 bytes of framing).
    const size_t framing = std::string(R"({"pad":""})").size();
    body =
        R"({"pad":")" + std::string(body_bytes > framing ? body_bytes - framing : 0, 'x') + "\"}";
  }

  // Block the stop signals in every thread (the listener's pool threads inherit
  // the mask), then wait for one here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::unique_ptr<http::experimental::listener::http_listener> listener;
  try {
    http::experimental::listener::http_listener_config config;
    listener = std::make_unique<http::experimental::listener::http_listener>(
        "http://" + listen + "/", config);
    // Same shape as corral: one handler for every method. Writes read their
    // body first (as corral does) and get the same fixed body back, with 201
    // for POST, so create/update have an HTTP-only reference too.
    listener->support([&body, read_body_on_get](http::http_request req) {
      auto answer = [&body, req](http::status_code code) mutable {
        http::http_response resp(code);
        resp.set_body(body, "application/json");
        req.reply(resp).then([](pplx::task<void> t) {
          try {
            t.get();
          } catch (const std::exception&) {
            // The client went away; nothing to do for a benchmark reference.
          }
        });
      };
      if (req.method() == http::methods::GET && !read_body_on_get) {
        answer(http::status_codes::OK);
        return;
      }
      const http::status_code code = req.method() == http::methods::POST
                                         ? http::status_codes::Created
                                         : http::status_codes::OK;  // GET too
      req.extract_vector().then([answer, code](pplx::task<std::vector<unsigned char>> t) mutable {
        try {
          t.get();
        } catch (const std::exception&) {
          return;  // the connection is gone
        }
        answer(code);
      });
    });
    listener->open().wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bare_listener: listen on %s: %s\n", listen.c_str(), e.what());
    return 1;
  }
  std::printf("ready listen=%s body_bytes=%zu\n", listen.c_str(), body.size());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);
  try {
    listener->close().wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bare_listener: close: %s\n", e.what());
  }
  return 0;
}
