#!/usr/bin/env python3
"""A throw-away API server stub for checking what an old kubectl needs.

Serves just enough for `kubectl create/apply --dry-run=client --validate=true`
against a corral.dev/v1alpha1 Model: /version, legacy discovery (/api, /apis,
/apis/corral.dev/v1alpha1) and /openapi/v2 (protobuf bytes from a file, as
produced by corral::api::EncodeOpenApiV2Proto; JSON too when given one).
Everything else is a 404 Status. Every request line is logged with its Accept
header, so a test can assert what the client asked for.

Usage: openapi_v2_stub.py --openapi-pb FILE [--openapi-json FILE] [--port 0]
                          [--minor 20] [--log FILE] [--no-openapi]
Prints "PORT <n>" on stdout once listening (port 0 picks a free one).
Standard library only; single-threaded (kubectl's requests are sequential).
"""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PROTO_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "corral.dev/v1alpha1",
    "resources": [
        {
            "name": "models",
            "singularName": "model",
            "namespaced": True,
            "kind": "Model",
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "categories": ["all"],
        }
    ],
}

GROUPS = {
    "kind": "APIGroupList",
    "apiVersion": "v1",
    "groups": [
        {
            "name": "corral.dev",
            "versions": [{"groupVersion": "corral.dev/v1alpha1", "version": "v1alpha1"}],
            "preferredVersion": {"groupVersion": "corral.dev/v1alpha1", "version": "v1alpha1"},
        }
    ],
}


def make_handler(args, openapi_pb, openapi_json, log):
    version = {
        "major": "1",
        "minor": str(args.minor),
        "gitVersion": "v1.%d.0" % args.minor,
        "gitCommit": "corral-stub",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.22",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
    routes = {
        "/version": version,
        "/api": {"kind": "APIVersions", "versions": []},
        "/apis": GROUPS,
        "/apis/corral.dev/v1alpha1": RESOURCES,
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # replaced by log_request_line below
            pass

        def send(self, code, body, content_type):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            accept = self.headers.get("Accept", "")
            path = self.path.split("?", 1)[0]
            status = self.route(path, accept)
            log.write("%s %s Accept=%r -> %d\n" % (self.command, self.path, accept, status))
            log.flush()

        def route(self, path, accept):
            if path == "/openapi/v2" and not args.no_openapi:
                if PROTO_ACCEPT in accept or openapi_json is None:
                    self.send(200, openapi_pb, "application/octet-stream")
                else:
                    self.send(200, openapi_json, "application/json")
                return 200
            if path in routes:
                self.send(200, json.dumps(routes[path]).encode(), "application/json")
                return 200
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "the stub does not serve %s" % path,
                "reason": "NotFound",
                "code": 404,
            }
            self.send(404, json.dumps(status).encode(), "application/json")
            return 404

        def do_POST(self):  # writes are not expected with --dry-run=client
            length = int(self.headers.get("Content-Length", "0") or 0)
            self.rfile.read(length)
            log.write("%s %s Content-Type=%r -> 405\n"
                      % (self.command, self.path, self.headers.get("Content-Type", "")))
            log.flush()
            self.send(405, b"{}", "application/json")

        do_PUT = do_PATCH = do_DELETE = do_POST

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--openapi-pb", required=True)
    p.add_argument("--openapi-json")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--minor", type=int, default=20)
    p.add_argument("--log", help="request log (default stderr)")
    p.add_argument("--no-openapi", action="store_true",
                   help="answer /openapi/v2 with 404 (what a client does without it)")
    args = p.parse_args()
    with open(args.openapi_pb, "rb") as f:
        openapi_pb = f.read()
    openapi_json = None
    if args.openapi_json:
        with open(args.openapi_json, "rb") as f:
            openapi_json = f.read()
    log = open(args.log, "a") if args.log else sys.stderr
    server = HTTPServer(("127.0.0.1", args.port),
                        make_handler(args, openapi_pb, openapi_json, log))
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
