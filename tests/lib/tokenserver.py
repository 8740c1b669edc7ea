#!/usr/bin/env python3
"""A loopback OAuth2 token endpoint for service-account keys (the JWT bearer grant).

    tokenserver.py --pubkey pub.pem --email SA@PROJECT.iam.gserviceaccount.com [--log FILE]

Prints its port (127.0.0.1) on the first line of stdout; its token_uri is
http://127.0.0.1:PORT/token. A POST there with grant_type=urn:ietf:params:oauth:grant-type:
jwt-bearer and assertion=JWT gets {"access_token": "test-token-N", ...} only when the JWT is
RS256 over header.claims and the signature verifies with the public key (checked by
`openssl dgst -sha256 -verify`: Python's standard library has no RSA), and the claims are
iss=EMAIL, aud=the token_uri, scope=devstorage.read_write, exp=iat+3600, iat within 5 minutes
of now. Anything else gets 400 {"error": "invalid_grant", "error_description": why}.
Each decision is one line in the log.
"""
import argparse
import base64
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def rs256_verify(pubkey, signing_input, signature):
    with tempfile.TemporaryDirectory() as d:
        data, sig = os.path.join(d, "data"), os.path.join(d, "sig")
        with open(data, "wb") as f:
            f.write(signing_input)
        with open(sig, "wb") as f:
            f.write(signature)
        p = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", pubkey, "-signature", sig, data],
            capture_output=True,
        )
        return p.returncode == 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def check(self, form):
        srv = self.server
        if form.get("grant_type") != [GRANT]:
            return "grant_type is not the JWT bearer grant"
        assertion = (form.get("assertion") or [""])[0]
        parts = assertion.split(".")
        if len(parts) != 3:
            return "the assertion is not header.claims.signature"
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except ValueError as e:
            return "the assertion does not decode: %s" % e
        if header.get("alg") != "RS256" or header.get("typ") != "JWT":
            return "header is %r, want alg RS256, typ JWT" % header
        if not rs256_verify(srv.pubkey, (parts[0] + "." + parts[1]).encode(), signature):
            return "the RS256 signature does not verify with the public key"
        now = int(time.time())
        want = {"iss": srv.email, "aud": srv.token_uri, "scope": SCOPE}
        for k, v in want.items():
            if claims.get(k) != v:
                return "claim %s is %r, want %r" % (k, claims.get(k), v)
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return "iat and exp must be integers"
        if abs(iat - now) > 300 or exp - iat != 3600:
            return "iat %d / exp %d are not now / now+3600" % (iat, exp)
        return None

    def do_POST(self):
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("ascii", "replace")
        if self.path != "/token":
            self.reply(404, {"error": "not_found"})
            return
        why = self.check(urllib.parse.parse_qs(raw))
        if why:
            srv.note("rejected: " + why)
            self.reply(400, {"error": "invalid_grant", "error_description": why})
            return
        with srv.lock:
            srv.issued += 1
            token = "test-token-%d" % srv.issued
        srv.note("issued %s" % token)
        self.reply(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def note(self, line):
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pubkey", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--log", default="-")
    args = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.lock = threading.Lock()
    srv.issued = 0
    srv.pubkey = args.pubkey
    srv.email = args.email
    srv.token_uri = "http://127.0.0.1:%d/token" % srv.server_address[1]
    srv.log = sys.stderr if args.log == "-" else open(args.log, "a", buffering=1)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
