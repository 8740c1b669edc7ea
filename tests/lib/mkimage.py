#!/usr/bin/env python3
"""Make a tiny, reproducible OCI image layout for imgforge's test fixtures.

    python3 tests/lib/mkimage.py --out LAYOUT --tag TAG --name NAME [--arch amd64]...

The image has one gzip layer holding the file /imgforge-fixture (its text names the image
and the platform) and a config with os linux, the architecture and rootfs diff_ids. With
one --arch, LAYOUT/index.json points at the image manifest; with several, at an image index
with one manifest per platform (arm64 gets variant v8, arm gets v7, as upstream images do).
The index.json entry carries org.opencontainers.image.ref.name = TAG, so
`skopeo copy oci:LAYOUT:TAG ...` finds it. Everything is byte-for-byte reproducible: fixed
mtimes, owners root, gzip mtime 0, sorted JSON. An existing LAYOUT is replaced.
"""

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tarfile

# hack/mkimage.py (real images from host files) writes the layout's index the same way.
_spec = importlib.util.spec_from_file_location(
    "imgf_mkimage", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "hack", "mkimage.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)

OCI_INDEX, OCI_MANIFEST, OCI_CONFIG = _base.OCI_INDEX, _base.OCI_MANIFEST, _base.OCI_CONFIG
OCI_LAYER_GZIP, EPOCH, VARIANTS = _base.OCI_LAYER_GZIP, _base.EPOCH, _base.VARIANTS


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    def __init__(self, path):
        self.path = path
        self.blobs = os.path.join(path, "blobs", "sha256")
        os.makedirs(self.blobs)

    def put(self, data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, digest), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def layer_tar(text):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = text.encode()
        info = tarfile.TarInfo("imgforge-fixture")
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    # filename "" and mtime 0 keep the gzip header free of anything that varies.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def make_image(layout, name, arch):
    text = "imgforge test fixture image %s (linux/%s)\n" % (name, arch)
    tar = layer_tar(text)
    layer = layout.put(gzip_bytes(tar), OCI_LAYER_GZIP)
    platform = {"architecture": arch, "os": "linux"}
    if arch in VARIANTS:
        platform["variant"] = VARIANTS[arch]
    config = dict(platform)
    config.update({
        "created": EPOCH,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/imgforge-fixture"],
            "Labels": {"org.imgforge.fixture": name},
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created": EPOCH, "created_by": "imgforge tests/lib/mkimage.py"}],
    })
    cfg = layout.put(canonical(config), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cfg,
        "layers": [layer],
    }
    desc = layout.put(canonical(manifest), OCI_MANIFEST)
    desc["platform"] = platform
    return desc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the layout directory to (re)create")
    ap.add_argument("--tag", required=True, help="org.opencontainers.image.ref.name")
    ap.add_argument("--name", required=True, help="the image's name, written into it")
    ap.add_argument("--arch", action="append", help="platform architecture (repeatable)")
    args = ap.parse_args()
    arches = args.arch or ["amd64"]

    tmp = args.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    layout = Layout(tmp)
    descs = [make_image(layout, args.name, a) for a in arches]
    if len(descs) == 1:
        top = descs[0]
        del top["platform"]
    else:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs}
        top = layout.put(canonical(index), OCI_INDEX)
    _base.finish_layout(tmp, args.out, top, args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
