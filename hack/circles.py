#!/usr/bin/env python3
"""Import circles between imgforge's source files, of two kinds.

    hack/circles.py [--src TOP] OBJDIR    (the build's object directory, default build; TOP is
                                          the source tree, default this checkout)

Calls: an arrow a.c -> b.c is a symbol a.o takes (nm: undefined) that b.o defines.
Includes: an arrow a.c -> b.c is an `#include "b.h"` in a.c, or in a header of a.c's (a.h
including b.h), where b.h is the header of b.c beside it; headers without a .c of their own
(x-internal.h, data.h) tie nothing.

A circle is a set of two or more files that reach each other by arrows of one kind (a
strongly connected component); each is printed with the names on its arrows, and the exit
status is 1 when there is one. Objects from the generated data.c and the tests are left out:
they are not part of the layering.
"""
import os
import re
import subprocess
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def symbols(obj):
    out = subprocess.run(["nm", "-P", obj], check=True, capture_output=True, text=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind in "TDBRCGSV" or kind in "W":
            defined.add(name)
    return defined, undefined


def objects(top):
    for sub in ("src", "builders", "provisioners", "post-processors"):
        d = os.path.join(top, sub)
        for root, _, files in os.walk(d):
            for f in sorted(files):
                if f.endswith(".o"):
                    yield os.path.join(root, f)


def sccs(nodes, edges):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def header_owner(src, header):
    """The .c a header (a path under src) belongs to, relative to src, or None."""
    c = header[:-2] + ".c"
    return c if header.endswith(".h") and os.path.isfile(os.path.join(src, c)) else None


def src_dirs(src):
    """src/ and its folders: the quote include path the Makefile gives the compiler."""
    top = os.path.join(src, "src")
    subs = sorted(d for d in os.listdir(top) if os.path.isdir(os.path.join(top, d))) \
        if os.path.isdir(top) else []
    return ["src"] + [os.path.join("src", d) for d in subs]


def resolve(src, rel, name):
    """The file `#include "name"` in src/rel means (beside it, else in src/ or one of its
    folders, else under the top)."""
    for d in [os.path.dirname(rel)] + src_dirs(src) + [""]:
        cand = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(os.path.join(src, cand)):
            return cand
    return None


def includes(src, rel):
    try:
        with open(os.path.join(src, rel), encoding="utf-8", errors="replace") as f:
            return INCLUDE.findall(f.read())
    except OSError:
        return []


def include_edges(src, files):
    """a.c -> b.c for every header of b.c that a.c (or a.c's own header) includes."""
    edges, names = {}, {}
    for a in files:
        own = a[:-2] + ".h"
        seen = [a] + ([own] if os.path.isfile(os.path.join(src, own)) else [])
        for rel in seen:
            for name in includes(src, rel):
                h = resolve(src, rel, name)
                b = header_owner(src, h) if h else None
                if b and b != a and b in files:
                    edges.setdefault(a, set()).add(b)
                    names.setdefault((a, b), set()).add(os.path.basename(h))
    return edges, names


def report(kind, files, edges, names):
    bad = [c for c in sccs(files, edges) if len(c) > 1]
    for i, comp in enumerate(bad, 1):
        print(f"{kind}circle {i}: {', '.join(comp)}")
        for a in comp:
            for b in sorted(edges.get(a, ())):
                if b in comp:
                    print(f"  {a} -> {b}: {', '.join(sorted(names[(a, b)]))}")
    print(f"{kind}circles: {len(files)} files, {sum(len(v) for v in edges.values())} arrows, "
          f"{len(bad)} circle(s)")
    return len(bad)


def main():
    args = sys.argv[1:]
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if len(args) >= 2 and args[0] == "--src":
        src, args = args[1], args[2:]
    top = args[0] if args else "build"
    defs, undefs, owner = {}, {}, {}
    for obj in objects(top):
        name = os.path.relpath(obj, top)[:-2] + ".c"
        d, u = symbols(obj)
        defs[name], undefs[name] = d, u
        for s in d:
            owner.setdefault(s, name)
    if not defs:
        print(f"circles: no objects under {top}/ (run make first)", file=sys.stderr)
        return 2
    edges, names = {}, {}
    for a, u in undefs.items():
        for s in u:
            b = owner.get(s)
            if b and b != a:
                edges.setdefault(a, set()).add(b)
                names.setdefault((a, b), set()).add(s)
    bad = report("", defs.keys(), edges, names)
    files = set(defs.keys())
    iedges, inames = include_edges(src, files)
    bad += report("include ", sorted(files), iedges, inames)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
