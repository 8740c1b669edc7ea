#!/usr/bin/env python3
"""Import circles between imgforge's source files, read from the objects the build made.

    hack/circles.py OBJDIR        (make circles; the build's object directory, default build)

An arrow a.c -> b.c is a symbol a.o takes (nm: undefined) that b.o defines. A circle is a set of
two or more files that reach each other by arrows (a strongly connected component); each is
printed with the names on its arrows, and the exit status is 1 when there is one. Objects from
the generated data.c and the tests are left out: they are not part of the layering.
"""
import os
import subprocess
import sys


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


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else "build"
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
    bad = [c for c in sccs(defs.keys(), edges) if len(c) > 1]
    for i, comp in enumerate(bad, 1):
        print(f"circle {i}: {', '.join(comp)}")
        for a in comp:
            for b in sorted(edges.get(a, ())):
                if b in comp:
                    print(f"  {a} -> {b}: {', '.join(sorted(names[(a, b)]))}")
    print(f"circles: {len(defs)} files, {sum(len(v) for v in edges.values())} arrows, "
          f"{len(bad)} circle(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
