#!/usr/bin/env python3
"""A loopback HTTP/1.1 proxy to a GCS emulator that cuts one connection part-way.

    cutproxy.py --target 127.0.0.1:4443 [--cut-after N [--keep-partial]] [--flip-at M]
                [--fail-at M] [--fail-gets K] [--fail-puts K] [--drop-md5] [--drop-crc32c]
                [--log FILE]

Prints the port it listens on (127.0.0.1) on the first line of stdout, then forwards every
request to the target. Once, when the request bodies seen so far reach N bytes, it closes
the client's connection with a reset in the middle of the request, without forwarding it:
the upload loses that chunk. --cut-after 0 never cuts (a pass-through that logs).
With --keep-partial the cut request, when it is a resumable-upload PUT, is not lost
whole: what arrived of its body, rounded down to a multiple of 256 KiB, is forwarded to
the target as a chunk of the session before the client's connection is reset. That is
what the real GCS does with an interrupted upload request (it persists what it received
and reports it in the next status query), and what fake-gcs-server, which keeps nothing
of a request it did not read whole, cannot show by itself.
--flip-at M inverts the request-body byte at offset M (counted over all bodies) on its way
to the target, once: the server then stores something else than the client sent.
--fail-at M answers the request whose body holds byte M with 503 instead of forwarding it,
once; --fail-gets K answers the first K GET requests with 503, --fail-puts K the first K
PUT requests that carry a body. --drop-md5 removes "md5Hash" from the object resource the
target returns for a one-shot (uploadType=media) upload, as a server that does not report it;
--drop-crc32c removes "crc32c" from the object resource that finalizes a resumable upload.

It also answers resumable-upload status queries (an empty PUT with "Content-Range: bytes
*/SIZE") itself, with 308 and the Range the emulator last reported for that session, which
is what the real GCS answers. fake-gcs-server 1.56 instead finalizes the session with
whatever it has (fsouza/fake-gcs-server#1362, #2354), so without this the emulator cannot
show a resume. Every other request and reply passes through unchanged.

The log has one line per request: the method, the path, the Content-Range, the
Authorization header's token (test tokens only), the status, and what the proxy did.
"""
import argparse
import http.client
import json
import re
import socket
import socketserver
import struct
import sys
import threading
import urllib.parse

STATUS_QUERY = re.compile(r"^bytes \*/(\d+)$")
CHUNK_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
QUANTUM = 256 * 1024


class State:
    def __init__(self, args, log):
        self.lock = threading.Lock()
        self.cut_after = args.cut_after
        self.keep_partial = args.keep_partial
        self.flip_at = args.flip_at
        self.fail_at = args.fail_at
        self.fail_gets = args.fail_gets
        self.fail_puts = args.fail_puts
        self.drop_md5 = args.drop_md5
        self.drop_crc32c = args.drop_crc32c
        self.cut_done = args.cut_after <= 0
        self.body_bytes = 0
        self.sessions = {}  # upload_id -> last Range header value, or "final"
        self.log = log

    def note(self, line):
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()


class Cut(Exception):
    pass


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.rfile = self.request.makefile("rb")
        self.upstream = None

    def finish(self):
        if self.upstream:
            self.upstream.close()
        try:
            self.rfile.close()
        except OSError:
            pass

    def reset_client(self):
        # SO_LINGER 0: close with a reset, as a dropped network path looks to the client.
        try:
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.request.close()

    def read_body(self, length):
        st = self.server.state
        chunks = []
        left = length
        while left:
            n = min(left, 65536)
            with st.lock:
                if not st.cut_done and st.body_bytes + n >= st.cut_after:
                    n = st.cut_after - st.body_bytes
                    cut_now = True
                else:
                    cut_now = False
            data = self.rfile.read(n) if n else b""
            if n and not data:
                raise ConnectionError("client closed")
            with st.lock:
                start = st.body_bytes
                st.body_bytes += len(data)
                if 0 <= st.fail_at - start < len(data):
                    st.fail_at = -1
                    self.fail = True
                if 0 <= st.flip_at - start < len(data):
                    i = st.flip_at - start
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                    st.flip_at = -1
                    self.flipped = True
            chunks.append(data)
            left -= len(data)
            if cut_now:
                with st.lock:
                    st.cut_done = True
                raise Cut(st.body_bytes, b"".join(chunks))
        return b"".join(chunks)

    def keep_partial(self, method, target, headers, crange, upload_id, data):
        """Forward the first multiple of 256 KiB of a cut PUT's body as a chunk; returns a note."""
        st = self.server.state
        m = CHUNK_RANGE.match(crange)
        keep = len(data) // QUANTUM * QUANTUM
        if not (st.keep_partial and method == "PUT" and upload_id and m and keep):
            return ""
        start, total = int(m.group(1)), m.group(3)
        hdrs = [(k, v) for k, v in headers if k.lower() not in ("content-length", "content-range")]
        hdrs += [("Content-Range", "bytes %d-%d/%s" % (start, start + keep - 1, total)), ("Content-Length", str(keep))]
        host, port = self.server.target
        conn = http.client.HTTPConnection(host, port, timeout=300)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for k, v in hdrs:
                conn.putheader(k, v)
            conn.endheaders(data[:keep])
            resp = conn.getresponse()
            resp.read()
        finally:
            conn.close()
        if resp.status == 308 and resp.getheader("Range"):
            with st.lock:
                st.sessions[upload_id] = resp.getheader("Range")
        return ", kept %d (-> %d range=%s)" % (keep, resp.status, resp.getheader("Range") or "-")

    def handle(self):
        st = self.server.state
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return
            try:
                method, target, _ = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            except ValueError:
                return
            headers = []
            while True:
                h = self.rfile.readline(65537)
                if h in (b"\r\n", b"\n", b""):
                    break
                name, _, value = h.decode("latin-1").rstrip("\r\n").partition(":")
                headers.append((name.strip(), value.strip()))
            hmap = {k.lower(): v for k, v in headers}
            if "chunked" in hmap.get("transfer-encoding", "").lower():
                self.request.sendall(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n")
                return
            length = int(hmap.get("content-length", "0") or 0)
            crange = hmap.get("content-range", "")
            auth = hmap.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else "-"
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
            upload_id = (query.get("upload_id") or [""])[0]
            desc = "%s %s range=%s token=%s" % (method, target, crange or "-", token)
            self.flipped = self.fail = False
            try:
                body = self.read_body(length)
            except Cut as c:
                kept = self.keep_partial(method, target, headers, crange, upload_id, c.args[1])
                st.note("%s -> cut after %d body bytes%s" % (desc, c.args[0], kept))
                self.reset_client()
                return
            except (ConnectionError, OSError):
                return

            with st.lock:
                if method == "GET" and st.fail_gets > 0:
                    st.fail_gets -= 1
                    self.fail = True
                if method == "PUT" and length and st.fail_puts > 0:
                    st.fail_puts -= 1
                    self.fail = True
            if self.fail:
                self.request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 52\r\n\r\n"
                    b'{"error":{"code":503,"message":"injected by proxy"}}'
                )
                st.note("%s -> 503 (injected here)" % desc)
                continue

            m = STATUS_QUERY.match(crange)
            if method == "PUT" and upload_id and m and length == 0:
                with st.lock:
                    have = st.sessions.get(upload_id)
                if have != "final":
                    reply = "HTTP/1.1 308 Resume Incomplete\r\nContent-Length: 0\r\n"
                    if have:
                        reply += "Range: %s\r\n" % have
                    self.request.sendall((reply + "\r\n").encode("latin-1"))
                    st.note("%s -> 308 range=%s (status query answered here)" % (desc, have or "-"))
                    continue

            if self.upstream is None:
                host, port = self.server.target
                self.upstream = http.client.HTTPConnection(host, port, timeout=300)
            try:
                self.upstream.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    self.upstream.putheader(k, v)
                self.upstream.endheaders(body if length else None)
                resp = self.upstream.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                st.note("%s -> upstream failed: %s" % (desc, e))
                self.upstream.close()
                self.upstream = None
                self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                continue
            if upload_id:
                with st.lock:
                    if resp.status == 308 and resp.getheader("Range"):
                        st.sessions[upload_id] = resp.getheader("Range")
                    elif resp.status in (200, 201):
                        st.sessions[upload_id] = "final"
            dropped = ""
            if st.drop_md5 and (query.get("uploadType") or [""])[0] == "media" and resp.status in (200, 201):
                try:
                    doc = json.loads(data)
                    if doc.pop("md5Hash", None) is not None:
                        data = json.dumps(doc).encode()
                        dropped = " (md5Hash dropped)"
                except ValueError:
                    pass
            if st.drop_crc32c and upload_id and resp.status in (200, 201):
                try:
                    doc = json.loads(data)
                    if doc.pop("crc32c", None) is not None:
                        data = json.dumps(doc).encode()
                        dropped = " (crc32c dropped)"
                except ValueError:
                    pass
            out = ["HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)]
            for k, v in resp.getheaders():
                if k.lower() in ("transfer-encoding", "content-length", "connection"):
                    continue
                out.append("%s: %s\r\n" % (k, v))
            out.append("Content-Length: %d\r\n\r\n" % len(data))
            try:
                self.request.sendall("".join(out).encode("latin-1") + data)
            except OSError:
                return
            st.note(
                "%s -> %d range=%s%s%s"
                % (desc, resp.status, resp.getheader("Range") or "-", " (a byte flipped)" if self.flipped else "", dropped)
            )


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="127.0.0.1:4443")
    ap.add_argument("--cut-after", type=int, default=0)
    ap.add_argument("--keep-partial", action="store_true")
    ap.add_argument("--flip-at", type=int, default=-1)
    ap.add_argument("--fail-at", type=int, default=-1)
    ap.add_argument("--fail-gets", type=int, default=0)
    ap.add_argument("--fail-puts", type=int, default=0)
    ap.add_argument("--drop-md5", action="store_true")
    ap.add_argument("--drop-crc32c", action="store_true")
    ap.add_argument("--log", default="-")
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    log = sys.stderr if args.log == "-" else open(args.log, "a", buffering=1)
    srv = Server(("127.0.0.1", 0), Handler)
    srv.target = (host or "127.0.0.1", int(port))
    srv.state = State(args, log)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
