#!/usr/bin/env python3
"""Fails when a library crate's top-level modules import each other in a circle.

ARCHITECTURE: dependencies between modules point one way (config <- context <- socket <-
endpoint <- session <- transport), so a module can be read, tested and moved without the rest.
This reads every `crate::<module>` path in a crate's sources (comments stripped; `#[cfg(test)]`
code counts too), and every `super::` path that climbs to the crate root, and reports each strongly connected group of more than one module.

    python3 scripts/module_cycles.py framework/src rumbl/src fixture/src
"""
import pathlib
import re
import sys


def module_of(src: pathlib.Path, path: pathlib.Path) -> str:
    rel = path.relative_to(src).parts
    if rel[0] in ("lib.rs", "main.rs"):
        return ""
    return rel[0][:-3] if rel[0].endswith(".rs") else rel[0]


def strip_comments(text: str) -> str:
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def graph(src: pathlib.Path) -> dict:
    edges: dict = {}
    for path in sorted(src.rglob("*.rs")):
        me = module_of(src, path)
        if not me:
            continue
        text = strip_comments(path.read_text())
        used = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
        # `super::` climbs from the file's own module: from a top-level module's file
        # (src/x.rs, src/x/mod.rs) one `super::` reaches the crate root, from src/x/y.rs two.
        rel = path.relative_to(src).parts
        depth = len(rel) - (1 if rel[-1] in ("mod.rs",) or len(rel) == 1 else 0)
        for supers, name in re.findall(r"\b((?:super::)+)([a-z_][a-z0-9_]*)", text):
            if supers.count("super::") >= depth:
                used.add(name)
        # `use crate::{a, b::c}` groups
        for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
            used |= {m.split("::")[0].strip() for m in group.split(",") if m.strip()}
        used.discard(me)
        edges.setdefault(me, set()).update(u for u in used if (src / f"{u}.rs").exists() or (src / u).is_dir())
    return edges


def cycles(edges: dict) -> list:
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    bad = 0
    for arg in sys.argv[1:]:
        src = pathlib.Path(arg)
        edges = graph(src)
        for comp in cycles(edges):
            bad += 1
            detail = "; ".join(f"{m} -> {', '.join(sorted(set(edges[m]) & set(comp)))}" for m in comp)
            print(f"{src}: modules import each other in a circle: {detail}")
    if not bad:
        print("no circles of imports in " + ", ".join(sys.argv[1:]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
