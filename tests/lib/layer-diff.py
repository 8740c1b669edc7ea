#!/usr/bin/env python3
"""Compare image layer tars, or check one for the squashed layer's properties.

  layer-diff.py diff A.tar B.tar   one line per member that differs: "NAME: what"
  layer-diff.py check L.tar EPOCH  exits 1 naming each member that has an owner name, an
                                   mtime after EPOCH, a whiteout name, or is out of name order
"""
import hashlib
import sys
import tarfile


def members(path):
    out = {}
    with tarfile.open(path) as t:
        for m in t:
            digest = ""
            if m.isreg():
                h = hashlib.sha256()
                f = t.extractfile(m)
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                digest = h.hexdigest()
            out[m.name] = {
                "type": m.type.decode(),
                "mode": oct(m.mode),
                "owner": f"{m.uid}:{m.gid}",
                "names": f"{m.uname}:{m.gname}",
                "mtime": int(m.mtime),
                "size": m.size,
                "link": m.linkname,
                "sha256": digest,
                "pax": sorted(k for k in m.pax_headers if k not in ("path", "linkpath")),
            }
    return out


def diff(a_path, b_path):
    a, b = members(a_path), members(b_path)
    for name in sorted(set(a) | set(b)):
        if name not in a:
            print(f"{name}: only in the second")
        elif name not in b:
            print(f"{name}: only in the first")
        elif a[name] != b[name]:
            what = [f"{k} {a[name][k]} != {b[name][k]}" for k in a[name] if a[name][k] != b[name][k]]
            print(f"{name}: {'; '.join(what)}")


def key(name):
    # Name order as imgforge writes it: each directory's entries sorted, '/' first.
    return name.rstrip("/").encode().replace(b"/", b"\0")


def check(path, epoch):
    bad = 0
    prev = None
    with tarfile.open(path) as t:
        for m in t:
            why = []
            if m.uname or m.gname:
                why.append(f"owner names {m.uname!r}:{m.gname!r}")
            if m.mtime > epoch:
                why.append(f"mtime {m.mtime} after {epoch}")
            if m.name.rsplit("/", 1)[-1].startswith(".wh."):
                why.append("a whiteout")
            if prev is not None and key(m.name) <= key(prev):
                why.append(f"after {prev!r}")
            prev = m.name
            if why:
                bad += 1
                if bad <= 20:
                    print(f"{m.name}: {', '.join(why)}")
    if bad:
        print(f"{bad} members break the rules")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "diff":
        diff(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], int(sys.argv[3])))
    else:
        sys.exit(__doc__)
