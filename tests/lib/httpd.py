#!/usr/bin/env python3
"""A loopback HTTP/1.1 file server with fault injection, for imgforge's tests.

    python3 tests/lib/httpd.py --root DIR [--port 0] [--log FILE]

Binds 127.0.0.1, prints the port on its first stdout line, serves DIR with GET and HEAD,
Content-Length and `Range: bytes=N-` / `bytes=N-M` (206 + Content-Range, 416 past the end).

Faults, chosen by the query string and counted per (path, query):
  fail=CODE&times=K   answer CODE to the first K requests, then serve normally
  retry_after=S       add `Retry-After: S` to injected failures
  message=TEXT        the injected failures' body is {"message": TEXT} (as the Docker Engine
                      says why), not "injected failure"
  truncate=N          on the first request send the full Content-Length but only N body
                      bytes, then close the connection
  ignore_range=1      answer 200 with the whole file even when a Range is asked for
  redirect=PATH       answer 302 to PATH
  echo=1              answer 200 with the request's headers as the body (and two X-Test
                      headers, "one" then "two")
  endless=1           answer 200 (or status=CODE) with no Content-Length and a body of zeros
                      that never ends (rate=N: N bytes a second, else as fast as it goes)
  stall=S             send the headers, then nothing for S seconds before the body
  echo_body=1         answer 200 with the request's body (PUT and POST, which are read
                      whole, with a Content-Length or chunked, before any fault applies)
  bearer=REALM        answer 401 with a Bearer challenge naming REALM unless the request
                      carries an Authorization header

--fault PATH=QUERY (repeatable) applies the faults of QUERY to requests for PATH that carry
no query of their own, for clients that build their URLs themselves (a registry client).

The --log file gets one line per request: METHOD PATH RANGE-HEADER-OR-- STATUS BYTES_SENT
(PATH with its query). Exits 0 on SIGTERM or SIGINT.
"""

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 64 * 1024


class State:
    def __init__(self, root, log_path):
        self.root = os.path.realpath(root)
        self.lock = threading.Lock()
        self.counts = {}
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.faults = {}

    def count(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]

    def record(self, line):
        if self.log is None:
            return
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "imgforge-test-httpd"
    sys_version = ""

    def handle(self):
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client hung up, as clients that abort a transfer do

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):  # quiet: the --log file is the record
        pass

    def do_GET(self):
        self.handle_request(send_body=True)

    def do_HEAD(self):
        self.handle_request(send_body=False)

    def do_PUT(self):
        self.read_body()
        self.handle_request(send_body=True)

    do_POST = do_PUT

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(n))
                self.rfile.readline()
            self.req_body = b"".join(parts)
        else:
            self.req_body = self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def handle_request(self, send_body):
        state = self.server.state
        url = urllib.parse.urlsplit(self.path)
        if not url.query and url.path in state.faults:
            url = url._replace(query=state.faults[url.path])
        query = urllib.parse.parse_qs(url.query)
        n = state.count((url.path, url.query))
        range_header = self.headers.get("Range")
        self.status, self.sent = 0, 0
        try:
            self.respond(state, url, query, n, range_header, send_body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up mid-body
        finally:
            state.record("%s %s %s %d %d" % (self.command, self.path,
                                             range_header or "--", self.status, self.sent))

    def send_response(self, code, message=None):
        self.status = code
        super().send_response(code, message)

    def simple(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            self.sent = len(body)

    def respond(self, state, url, query, n, range_header, send_body):
        def q(name, default=None):
            v = query.get(name)
            return v[0] if v else default

        fail = q("fail")
        if fail is not None and n <= int(q("times", "1")):
            headers = []
            if q("retry_after") is not None:
                headers.append(("Retry-After", q("retry_after")))
            body = b"injected failure\n"
            if q("message") is not None:
                body = json.dumps({"message": q("message")}).encode()
            return self.simple(int(fail), body, headers)

        if q("redirect") is not None:
            return self.simple(302, b"", [("Location", q("redirect"))])

        if q("echo_body") is not None:
            return self.simple(200, getattr(self, "req_body", b""))

        if q("echo") is not None:
            return self.simple(200, str(self.headers).encode("latin-1"),
                               [("X-Test", "one"), ("X-Test", "two")])

        if q("bearer") is not None and not self.headers.get("Authorization"):
            challenge = 'Bearer realm="%s",service="test"' % q("bearer")
            return self.simple(401, b"", [("WWW-Authenticate", challenge)])

        if q("endless") is not None:
            return self.endless(int(q("status", "200")), int(q("rate", "0")))

        rel = urllib.parse.unquote(url.path).lstrip("/")
        path = os.path.realpath(os.path.join(state.root, rel))
        if not (path == state.root or path.startswith(state.root + os.sep)) or \
                not os.path.isfile(path):
            return self.simple(404, b"not found\n")

        size = os.path.getsize(path)
        start, end = 0, size  # [start, end)
        status = 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
        if m and q("ignore_range") is None:
            start = int(m.group(1))
            if m.group(2):
                end = min(size, int(m.group(2)) + 1)
            if start >= size or start >= end:
                return self.simple(416, b"", [("Content-Range", "bytes */%d" % size)])
            status = 206

        truncate = q("truncate")
        limit = end - start
        if truncate is not None and n == 1:
            limit = min(limit, int(truncate))

        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, size))
        if limit < end - start:
            self.send_header("Connection", "close")
        self.end_headers()
        if not send_body:
            return
        if q("stall") is not None:
            self.wfile.flush()
            time.sleep(float(q("stall")))

        with open(path, "rb") as f:
            f.seek(start)
            while self.sent < limit:
                data = f.read(min(CHUNK, limit - self.sent))
                if not data:
                    break
                self.wfile.write(data)
                self.sent += len(data)
        self.wfile.flush()
        if limit < end - start:
            # Cut the body short: the client sees a connection closed mid-transfer.
            self.close_connection = True

    def endless(self, status, rate):
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        chunk = bytes(min(CHUNK, rate) if rate else CHUNK)
        while True:
            self.wfile.write(chunk)
            self.wfile.flush()
            self.sent += len(chunk)
            if rate:
                time.sleep(len(chunk) / rate)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    ap.add_argument("--fault", action="append", default=[], metavar="PATH=QUERY")
    args = ap.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args.root, args.log)
    for f in args.fault:
        path, _, q = f.partition("=")
        server.state.faults[path] = q

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except SystemExit:
        pass
    finally:
        server.server_close()
        if server.state.log:
            server.state.log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
