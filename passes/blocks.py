"""The repeated blocks of a stage (the transformer blocks of a DiT): the unit FSDP shards
(backends/parallel/transform.py) and block streaming copies (backends/host_stages.py)."""
from __future__ import annotations

import re

from wanir.graph import Graph
from wanir.scope import Scope

_EXPANDED = re.compile(r"^(.*)\.(\d+)$")


def subtree_weights(graph: Graph, scope: Scope) -> dict:
    """The distinct weights (by key) of the nodes under ``scope``."""
    out = {}
    for n in graph:
        if not n.params:
            continue
        s = n.scope
        while s is not None and s is not scope:
            s = s.parent
        if s is scope:
            for w in n.params.values():
                out[w.key] = w
    return out


def _weights_under(graph: Graph) -> dict:
    """Per scope (by identity) the distinct weights (by key) of the nodes under it: what
    :func:`subtree_weights` gives for every scope, in one walk of the nodes that hold weights."""
    out: dict[int, dict] = {}
    for n in graph:
        if not n.params:
            continue
        s = n.scope
        while s is not None:
            d = out.get(id(s))
            if d is None:
                d = out[id(s)] = {}
            for w in n.params.values():
                d[w.key] = w
            s = s.parent
    return out


def _weight_bytes(under: dict, scope: Scope) -> int:
    return sum(w.type.nbytes * w.copies for w in under.get(id(scope), {}).values())


def block_units(graph: Graph, stage: str) -> list[Scope]:
    """The transformer blocks of ``stage``: the scopes that hold the most weights among
    (a) a ``repeat`` scope (blocks drawn once, ×N) and (b) sibling scopes named
    ``name.0``, ``name.1``, … (blocks drawn out). Returns the block scopes (one for a
    repeat scope), or [] when the stage has neither."""
    st = graph.stages.get(stage)
    if st is None:
        return []
    cands: list[tuple[int, list[Scope]]] = []
    under = _weights_under(graph)
    for s in st.walk():
        if s is st:
            continue
        if s.kind == "repeat":
            cands.append((_weight_bytes(under, s), [s]))
        groups: dict[str, list[Scope]] = {}
        for c in s.children.values():
            m = _EXPANDED.match(c.name)
            if m:
                groups.setdefault(m.group(1), []).append(c)
        for g in groups.values():
            if len(g) > 1:
                wb = sum(_weight_bytes(under, c) for c in g)
                cands.append((wb, sorted(g, key=lambda c: int(_EXPANDED.match(c.name).group(2)))))
    cands = [c for c in cands if c[0] > 0]
    if not cands:
        return []
    best = max(cands, key=lambda c: c[0])
    if len(best[1]) == 1 and best[1][0].kind == "repeat":
        # several models of one architecture in one stage (Wan2.2's two experts): all their blocks
        return [c[1][0] for c in cands if len(c[1]) == 1 and c[1][0].kind == "repeat" and c[0] == best[0]
                and c[1][0].name == best[1][0].name]
    return best[1]
