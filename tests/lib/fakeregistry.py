#!/usr/bin/env python3
"""A loopback OCI registry (the distribution API's push and pull parts), in memory, for the
unit tests of imgforge's push client: its request sequences and its authentication.

    fakeregistry.py [--port 0] [--log FILE] [--auth none|basic|bearer] [--user U --password P]
                    [--fail-puts N] [--tamper DIGEST]

Prints its port (127.0.0.1) on the first stdout line. --auth basic answers 401 with a Basic
challenge unless the request has the right credentials; --auth bearer answers 401 with a Bearer
challenge (realm http://127.0.0.1:PORT/token, service "fake") unless the request carries a token
the realm gave for a scope that covers it (repository:NAME:pull for GET/HEAD, :push for the
rest; a mount also needs pull on its `from`); the realm wants the user's Basic credentials when
--user is given. Uploads are POST then PUT ?digest= (the digest checked), or a mount
(POST ?mount=D&from=R: 201 when R has D); Locations are relative and carry a query of their
own. A manifest PUT is refused (400 MANIFEST_BLOB_UNKNOWN) unless every blob (or, for an
index, every manifest) it names is in the repository. --fail-puts N answers the first N upload
PUTs 500 after reading them and forgets their sessions. --tamper DIGEST (repeatable) serves that
blob, once pushed, with its first byte changed, as a registry whose storage was tampered with.
The log gets one line per request: METHOD PATH STATUS (token requests: GET /token?QUERY STATUS).
"""

import argparse
import base64
import hashlib
import json
import re
import signal
import sys
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


class Registry:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.blobs = {}  # repo -> {digest: bytes}
        self.manifests = {}  # repo -> {tag or digest: (media type, bytes)}
        self.uploads = {}  # uuid -> (repo, bytearray)
        self.tokens = {}  # token -> set of (repo, action)
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None
        self.port = 0
        self.fail_puts = args.fail_puts

    def record(self, line):
        if self.log:
            with self.lock:
                self.log.write(line + "\n")
                self.log.flush()


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeregistry"

    def log_message(self, format, *args):
        pass

    @property
    def reg(self):
        return self.server.reg

    def reply(self, status, body=b"", headers=(), ctype=None):
        path = self.path
        self.reg.record("%s %s %d" % (self.command, path, status))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message, headers=()):
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self.reply(status, body, headers, "application/json")

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def basic_ok(self):
        a = self.args.user is None or self.headers.get("Authorization") == "Basic " + (
            base64.b64encode(("%s:%s" % (self.args.user, self.args.password)).encode()).decode()
        )
        return a

    @property
    def args(self):
        return self.reg.args

    def authorized(self, needs):
        """needs: [(repo, action)]; answers the challenge itself when not authorized."""
        mode = self.args.auth
        if mode == "none":
            return True
        if mode == "basic":
            if self.headers.get("Authorization") and self.basic_ok():
                return True
            self.error(401, "UNAUTHORIZED", "authentication required",
                       [("WWW-Authenticate", 'Basic realm="fake"')])
            return False
        h = self.headers.get("Authorization") or ""
        granted = self.reg.tokens.get(h[len("Bearer "):]) if h.startswith("Bearer ") else None
        if granted is not None and all(n in granted for n in needs):
            return True
        scope = " ".join("repository:%s:%s" % n for n in needs) or "registry:catalog:*"
        ch = 'Bearer realm="http://127.0.0.1:%d/token",service="fake",scope="%s"' % (
            self.reg.port, scope)
        self.error(401, "UNAUTHORIZED", "authentication required", [("WWW-Authenticate", ch)])
        return False

    def token(self, query):
        if self.args.user is not None and not (self.headers.get("Authorization") and self.basic_ok()):
            self.error(401, "UNAUTHORIZED", "bad credentials")
            return
        q = urllib.parse.parse_qs(query)
        granted = set()
        for s in q.get("scope", []):
            for one in s.split(" "):
                parts = one.split(":")
                if len(parts) == 3 and parts[0] == "repository":
                    for action in parts[2].split(","):
                        granted.add((parts[1], action))
        tok = "tok-%d" % (len(self.reg.tokens) + 1)
        self.reg.tokens[tok] = granted
        self.reply(200, json.dumps({"token": tok}).encode(), ctype="application/json")

    def route(self):
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, url.query
        q = urllib.parse.parse_qs(query)
        if path == "/token":
            return self.token(query)
        if path == "/v2/":
            if self.authorized([]):
                self.reply(200, b"{}", ctype="application/json")
            return
        m = re.fullmatch(r"/v2/(.+)/blobs/uploads/(.*)", path)
        if m:
            return self.upload(m.group(1), m.group(2), q)
        m = re.fullmatch(r"/v2/(.+)/(blobs|manifests)/([^/]+)", path)
        if not m:
            return self.error(404, "NOT_FOUND", "no route")
        repo, kind, ref = m.groups()
        write = self.command in ("PUT", "POST", "PATCH", "DELETE")
        if not self.authorized([(repo, "pull")] + ([(repo, "push")] if write else [])):
            return
        if kind == "blobs":
            data = self.reg.blobs.get(repo, {}).get(ref)
            if self.command not in ("GET", "HEAD"):
                return self.error(405, "UNSUPPORTED", "method")
            if data is None:
                return self.error(404, "BLOB_UNKNOWN", "blob unknown to registry")
            if ref in (self.args.tamper or []) and self.command == "GET":
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            return self.reply(200, data, [("Docker-Content-Digest", ref)],
                              "application/octet-stream")
        if self.command in ("GET", "HEAD"):
            got = self.reg.manifests.get(repo, {}).get(ref)
            if got is None:
                return self.error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            return self.reply(200, got[1], [("Docker-Content-Digest", digest_of(got[1]))], got[0])
        if self.command != "PUT":
            return self.error(405, "UNSUPPORTED", "method")
        data = self.body()
        ctype = self.headers.get("Content-Type", "")
        try:
            doc = json.loads(data)
        except ValueError:
            return self.error(400, "MANIFEST_INVALID", "not JSON")
        d = digest_of(data)
        if ref.startswith("sha256:") and ref != d:
            return self.error(400, "DIGEST_INVALID", "manifest digest")
        if ctype in INDEX_TYPES:
            for e in doc.get("manifests", []):
                if e.get("digest") not in self.reg.manifests.get(repo, {}):
                    return self.error(400, "MANIFEST_BLOB_UNKNOWN", e.get("digest", "?"))
        else:
            for e in [doc.get("config", {})] + doc.get("layers", []):
                if e.get("digest") not in self.reg.blobs.get(repo, {}):
                    return self.error(400, "MANIFEST_BLOB_UNKNOWN", e.get("digest", "?"))
        store = self.reg.manifests.setdefault(repo, {})
        store[ref] = store[d] = (ctype, data)
        self.reply(201, b"", [("Docker-Content-Digest", d),
                              ("Location", "/v2/%s/manifests/%s" % (repo, d))])

    def upload(self, repo, rest, q):
        needs = [(repo, "pull"), (repo, "push")]
        if self.command == "POST" and "mount" in q and "from" in q:
            needs.append((q["from"][0], "pull"))
        if not self.authorized(needs):
            return
        if self.command == "POST" and not rest:
            self.body()
            if "mount" in q and "from" in q:
                d = q["mount"][0]
                data = self.reg.blobs.get(q["from"][0], {}).get(d)
                if data is not None:
                    self.reg.blobs.setdefault(repo, {})[d] = data
                    return self.reply(201, b"", [("Location", "/v2/%s/blobs/%s" % (repo, d)),
                                                 ("Docker-Content-Digest", d)])
            u = str(uuid.uuid4())
            self.reg.uploads[u] = (repo, bytearray())
            return self.reply(202, b"", [("Location", "/v2/%s/blobs/uploads/%s?_state=s%s" % (repo, u, u[:4])),
                                         ("Docker-Upload-UUID", u)])
        up = self.reg.uploads.get(rest)
        if up is None or up[0] != repo:
            self.body()
            return self.error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
        if self.command == "DELETE":
            del self.reg.uploads[rest]
            return self.reply(204)
        if self.command == "PATCH":
            up[1].extend(self.body())
            return self.reply(202, b"", [("Location", self.path)])
        if self.command == "PUT":
            up[1].extend(self.body())
            want = q.get("digest", [""])[0]
            del self.reg.uploads[rest]
            with self.reg.lock:
                fail = self.reg.fail_puts > 0
                self.reg.fail_puts -= 1 if fail else 0
            if fail:
                return self.error(500, "UNKNOWN", "injected failure")
            if digest_of(bytes(up[1])) != want:
                return self.error(400, "DIGEST_INVALID", "digest did not match content")
            self.reg.blobs.setdefault(repo, {})[want] = bytes(up[1])
            return self.reply(201, b"", [("Location", "/v2/%s/blobs/%s" % (repo, want)),
                                         ("Docker-Content-Digest", want)])
        return self.error(405, "UNSUPPORTED", "method")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = route


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log")
    p.add_argument("--auth", choices=["none", "basic", "bearer"], default="none")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--fail-puts", type=int, default=0)
    p.add_argument("--tamper", action="append")
    args = p.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.reg = Registry(args)
    srv.reg.port = srv.server_address[1]

    def stop(signum, frame):
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(srv.reg.port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
