#!/usr/bin/env python3
"""A loopback token endpoint for docker-registry's `auth: token` (the distribution token spec),
so tests push to a real registry through bearer tokens.

    regtoken.py --key KEY.pem --cert CERT.pem --issuer I --service S --user U --password P
                [--log FILE]

Prints its port (127.0.0.1) on the first stdout line; the realm is http://127.0.0.1:PORT/token.
A GET there with the user's Basic credentials gets {"token": JWT, "access_token": JWT, ...}: an
RS256 JWT (signed by `openssl dgst -sha256 -sign KEY`: Python's standard library has no RSA)
whose header carries CERT as x5c (the registry's rootcertbundle is CERT itself), iss ISSUER,
aud SERVICE, sub the user, and `access` every action of every `scope=repository:NAME:ACTIONS`
asked for. Other credentials get 401. Each answer is one log line:
GET /token?QUERY STATUS.
"""
import argparse
import base64
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(key, data):
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return subprocess.run(["openssl", "dgst", "-sha256", "-sign", key, f.name],
                              check=True, capture_output=True).stdout


def cert_der(path):
    with open(path) as f:
        pem = f.read()
    body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return "".join(body.split())  # base64 of the DER, as x5c wants


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def answer(self, status, doc):
        a = self.server.args
        if a.log:
            with open(a.log, "a") as f:
                f.write("GET %s %d\n" % (self.path, status))
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        a = self.server.args
        url = urllib.parse.urlsplit(self.path)
        want = "Basic " + base64.b64encode(("%s:%s" % (a.user, a.password)).encode()).decode()
        if url.path != "/token" or self.headers.get("Authorization") != want:
            return self.answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
        q = urllib.parse.parse_qs(url.query)
        access = []
        for scope in q.get("scope", []):
            for one in scope.split(" "):
                parts = one.split(":")
                if len(parts) == 3 and parts[0] == "repository":
                    access.append({"type": "repository", "name": parts[1],
                                   "actions": parts[2].split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.server.x5c]}
        claims = {"iss": a.issuer, "sub": a.user, "aud": q.get("service", [""])[0],
                  "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": b64url(os.urandom(12)), "access": access}
        signing = (b64url(json.dumps(header).encode()) + "." +
                   b64url(json.dumps(claims).encode())).encode()
        token = signing.decode() + "." + b64url(sign(a.key, signing))
        self.answer(200, {"token": token, "access_token": token, "expires_in": 300})


def main():
    p = argparse.ArgumentParser()
    for k in ("key", "cert", "issuer", "service", "user", "password"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--log")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.args = args
    srv.x5c = cert_der(args.cert)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
