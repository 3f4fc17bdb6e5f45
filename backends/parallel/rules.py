"""Sharding rules: for an op whose inputs are sharded along the token axis, the axis its
output is sharded along and, per input, the axis it must be sharded along (None: read
whole). One rule per op kind in :data:`RULES`, one per op category in
:data:`CATEGORY_RULES` (elementwise ops first: they broadcast); an op without a rule, or
whose rule refuses, raises :class:`Unshardable`, and the transform gathers whole tokens
before it."""
from __future__ import annotations

import math

from wanir.graph import Node


class Unshardable(Exception):
    """The op needs whole tokens along the sharded axis (internal signal of the transform)."""


def token_axis(shape, L) -> int | None:
    """The axis of ``shape`` that holds the L tokens: the first one of size L past the batch
    axis and before the last (channel) axis, or None."""
    for i, s in enumerate(shape[1:-1], start=1):
        if s == L:
            return i
    return None


# ------------------------------------------------------------------------ the rules
# Each rule takes (node, dims, x) — ``dims`` the sharded axis of each input (None:
# replicated), ``x`` the first input's type — and returns (output axis, axes per input).

def _broadcast(node: Node, dims: list, x) -> tuple[int, list]:
    """Elementwise ops and concat: inputs aligned from the right; every input whose axis is
    not a broadcast 1 is read sharded along the same axis."""
    ins = [v.type for v in node.inputs]
    R = node.outputs[0].rank
    aligned = {d + (R - ins[i].rank) for i, d in enumerate(dims) if d is not None}
    if len(aligned) != 1:
        raise Unshardable()
    od = aligned.pop()
    if node.kind == "concat" and (node.attrs["dim"] % R) == od:
        raise Unshardable()
    need = []
    for t in ins:
        p = od - (R - t.rank)
        need.append(p if p >= 0 and t.shape[p] != 1 else None)
    return od, need


def _same(node, dims, x):
    d = dims[0]
    return d, [d]


def _linear(node, dims, x):
    d = dims[0]
    if d != x.rank - 1:
        return d, [d]
    raise Unshardable()


def _norm(node, dims, x):
    d = dims[0]
    ns = node.attrs.get("normalized_shape")
    width = len(ns) if isinstance(ns, tuple) else 1
    if d < x.rank - width:
        return d, [d]
    raise Unshardable()


def _not_along_dim(node, dims, x):
    """softmax, slice, chunk: fine unless they work along the sharded axis."""
    d = dims[0]
    if node.attrs["dim"] % x.rank != d:
        return d, [d]
    raise Unshardable()


def _transpose(node, dims, x):
    d = dims[0]
    a, b = node.attrs["dim0"] % x.rank, node.attrs["dim1"] % x.rank
    return (b if d == a else a if d == b else d), [d]


def _permute(node, dims, x):
    d = dims[0]
    perm = [i % x.rank for i in node.attrs["dims"]]
    return perm.index(d), [d]


def _expand(node, dims, x):
    d = dims[0]
    out = node.outputs[0]
    od = d + (out.rank - x.rank)
    if x.shape[d] != out.shape[od]:
        raise Unshardable()
    return od, [d]


def _pad(node, dims, x):
    d = dims[0]
    pads = node.attrs["pad"]
    touched = {x.rank - 1 - i for i in range(len(pads) // 2) if pads[2 * i] or pads[2 * i + 1]}
    if d in touched:
        raise Unshardable()
    return d, [d]


def _reshape(node, dims, x):
    d = dims[0]
    return _reshape_axis(x.shape, d, node.outputs[0].shape), [d]


def _reduction(node, dims, x):
    d = dims[0]
    red = ({i % x.rank for i in node.attrs["dims"]} if isinstance(node.attrs["dims"], tuple)
           else {node.attrs["dims"] % x.rank})
    if d in red:
        raise Unshardable()
    if node.attrs.get("keepdim"):
        return d, [d]
    return d - sum(1 for i in red if i < d), [d]


#: rules by op kind (looked up after the elementwise category, before CATEGORY_RULES)
RULES = {
    "concat": _broadcast,
    "linear": _linear,
    "layernorm": _norm,
    "rmsnorm": _norm,
    "softmax": _not_along_dim,
    "slice": _not_along_dim,
    "chunk": _not_along_dim,
    "contiguous": _same,
    "cast": _same,
    "dropout": _same,
    "transpose": _transpose,
    "permute": _permute,
    "expand": _expand,
    "pad": _pad,
    "reshape": _reshape,
}
#: rules by op category
CATEGORY_RULES = {"elementwise": _broadcast, "reduction": _reduction}
#: rules that take several inputs (all others take one)
MULTI_INPUT = {_broadcast, _linear}


def propagate(node: Node, dims: list) -> tuple[int, list]:
    """For a node whose inputs are sharded along ``dims`` (None: replicated), the output's
    sharded axis and, per input, the axis it must be sharded along (None: read whole).
    Raises Unshardable when the op needs whole tokens."""
    if node.category == "elementwise":
        rule = _broadcast
    else:
        rule = RULES.get(node.kind) or CATEGORY_RULES.get(node.category)
    if rule is None:
        raise Unshardable()
    if rule is not _broadcast:
        if len(node.inputs) != 1 and rule not in MULTI_INPUT:
            raise Unshardable()
        if dims[0] is None:
            raise Unshardable()
    return rule(node, dims, node.inputs[0].type)


def _reshape_axis(shape, d, out) -> int:
    """The output axis of a reshape that carries input axis ``d`` whole (same elements
    before it, same size, or ``d`` merged with the axes after it). Raises Unshardable otherwise."""
    before = math.prod(shape[:d])
    acc = 1
    for e, s in enumerate(out):
        if acc == before:
            if s == shape[d]:
                return e
            # merged with following axes: (…, L, C) -> (…, L·C)
            tail = 1
            for k in range(d, len(shape)):
                tail *= shape[k]
                if tail == s and k > d:
                    return e
        if acc > before:
            break
        acc *= s
    raise Unshardable()
