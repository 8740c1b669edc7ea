#!/usr/bin/env python3
"""Write a one-layer OCI image layout from host files, with no container engine.

    python3 hack/mkimage.py --out LAYOUT --tag TAG --name NAME [--arch ARCH]
        [--tree DIR]... [--add SRC=DEST[:MODE]]... [--entrypoint JSON] [--cmd JSON]
        [--env K=V]... [--user U] [--expose PORT/PROTO]...

--tree copies DIR's contents to / (symlinks kept, later trees win); --add puts one file at
DEST (parent directories are made). The layer is a gzip'd tar with sorted names, owners
0:0 and mtime 0, so the same inputs give the same digests. LAYOUT/index.json names the
manifest with org.opencontainers.image.ref.name = TAG (`skopeo copy oci:LAYOUT:TAG ...`).
Used by hack/kube-from-source.sh for the control-plane, etcd, CoreDNS, pause and storage
images. An existing LAYOUT is replaced.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
EPOCH = "1970-01-01T00:00:00Z"
VARIANTS = {"arm64": "v8", "arm": "v7"}
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def collect(args):
    """Map of image path (no leading /) -> (host path or None for a directory, mode)."""
    entries = {}

    def add_parents(path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            entries.setdefault(d, (None, 0o755))

    for tree in args.tree or []:
        for root, dirs, files in os.walk(tree):
            dirs.sort()
            rel = os.path.relpath(root, tree)
            for name in dirs + files:
                host = os.path.join(root, name)
                path = os.path.normpath(os.path.join(rel, name))
                st = os.lstat(host)
                add_parents(path)
                if stat.S_ISDIR(st.st_mode) and not os.path.islink(host):
                    entries[path] = (None, stat.S_IMODE(st.st_mode))
                else:
                    entries[path] = (host, stat.S_IMODE(st.st_mode))
    for spec in args.add or []:
        src, _, dest = spec.partition("=")
        mode = None
        if ":" in dest:
            dest, _, m = dest.rpartition(":")
            mode = int(m, 8)
        if not src or not dest.startswith("/"):
            sys.exit("mkimage: --add wants SRC=/DEST[:MODE], got '%s'" % spec)
        if not os.path.isfile(src):
            sys.exit("mkimage: --add '%s': no such file" % src)
        path = dest.lstrip("/")
        add_parents(path)
        entries[path] = (src, mode if mode is not None else stat.S_IMODE(os.stat(src).st_mode))
    return entries


def layer_tar(entries, out):
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            host, mode = entries[path]
            info = tarfile.TarInfo(path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = mode
            if host is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif os.path.islink(host):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(host)
                info.mode = 0o777
                tar.addfile(info)
            else:
                info.size = os.path.getsize(host)
                with open(host, "rb") as f:
                    tar.addfile(info, f)


class HashWriter:
    """A file object that hashes what passes through it."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)

    def flush(self):
        self.f.flush()

    def tell(self):
        return self.n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--name", required=True, help="recorded as the image's ref name label")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--tree", action="append")
    ap.add_argument("--add", action="append")
    ap.add_argument("--entrypoint")
    ap.add_argument("--cmd")
    ap.add_argument("--env", action="append")
    ap.add_argument("--user")
    ap.add_argument("--expose", action="append")
    args = ap.parse_args()

    entries = collect(args)
    tmp = args.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    blobs = os.path.join(tmp, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    # The layer streams to disk: tar -> (diff_id hash) -> gzip -> (digest hash) -> file.
    part = os.path.join(blobs, "layer.partial")
    with open(part, "wb") as raw:
        outer = HashWriter(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=outer, mtime=0, compresslevel=6) as gz:
            inner = HashWriter(gz)
            layer_tar(entries, inner)
    layer_digest = outer.h.hexdigest()
    os.rename(part, os.path.join(blobs, layer_digest))
    layer = {"mediaType": OCI_LAYER_GZIP, "digest": "sha256:" + layer_digest, "size": outer.n}

    platform = {"architecture": args.arch, "os": "linux"}
    if args.arch in VARIANTS:
        platform["variant"] = VARIANTS[args.arch]
    cfg = {"Env": [PATH_ENV] + (args.env or []), "Labels": {"org.imgforge.source": args.name}}
    if args.entrypoint:
        cfg["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        cfg["Cmd"] = json.loads(args.cmd)
    if args.user:
        cfg["User"] = args.user
    if args.expose:
        cfg["ExposedPorts"] = {p: {} for p in args.expose}
    config = dict(platform)
    config.update({
        "created": EPOCH,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + inner.h.hexdigest()]},
        "history": [{"created": EPOCH, "created_by": "imgforge hack/mkimage.py"}],
    })
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": put(canonical(config), OCI_CONFIG),
        "layers": [layer],
    }
    finish_layout(tmp, args.out, put(canonical(manifest), OCI_MANIFEST), args.tag)
    return 0


def finish_layout(tmp, out, top, tag):
    """Name `top` (a manifest or index descriptor) TAG in tmp's index.json, then move tmp to out."""
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(os.path.join(tmp, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(tmp, "index.json"), "wb") as f:
        f.write(canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


if __name__ == "__main__":
    sys.exit(main())
