"""Sparse attention as a graph transform: the DiT's self-attention becomes a block-sparse
``sdpa`` that computes ``attention.density`` of its (query tile, key tile) scores, plus
the ops the sparse pattern adds around it.

A self-attention node is an ``sdpa`` inside the transformer blocks whose queries and keys
are the video tokens (Lq = Lk = the longest sequence of the stage's blocks); the
cross-attention to the text and image tokens stays dense. The replacement keeps the
node's inputs, shapes and name and carries ``density = (num, den)`` and ``pattern``
attributes: the flops pass scales the node's tensor FLOPs and its per-score vector FLOPs
by num/den (passes/flops.py). Its bytes are the dense kernel's: Q, K, V read once, O
written (a flash-style kernel streams K and V per query tile either way).

Pattern overheads, per attention call (B·H heads of head dim d over L tokens):

- ``sliding-tile`` (STA, arXiv 2502.04507; FastVideo): tokens are reordered into
  3-D tiles so that every tile is a dense block: a ``contiguous`` copy of q, k and v into
  the tiled order and one of the output back (4 copies of B·L·H·d).
- ``radial`` (Radial Attention, arXiv 2506.19852): a static energy-decay mask built once;
  the kernel reads a block mask (one int8 per tile pair and head group) and nothing more.
- ``svg`` (Sparse-VideoGen, arXiv 2502.01776): online profiling picks per head between a
  spatial and a temporal mask by attending with ``SVG_SAMPLED_QUERIES`` sampled query rows
  under both masks and dense (three ``sdpa`` on the sampled rows; the masked ones counted
  dense, an upper bound), then the temporal heads' tokens are permuted frame-major ↔
  token-major (a copy of q, k, v and of the output back).

The kernel model times the node on the key tiles each query tile visits (backends/
roofline.py). Not modeled: the overhead of irregular tile lists (each tile runs at the
dense kernel's speed), partially filled tiles at mask edges, and mask construction done
once per generation.
"""
from __future__ import annotations

import math

from wanir.graph import Node, Value

#: query rows Sparse-VideoGen samples per head for its online head classification
SVG_SAMPLED_QUERIES = 64
#: query/key tile of the block mask (the block-sparse kernels' tile)
TILE = 128


def is_self_attention(node: Node, seq_len: int) -> bool:
    """Whether ``node`` is an ``sdpa`` over the video tokens (Lq = Lk = ``seq_len``)."""
    if node.kind != "sdpa" or node.inputs[0].type.rank < 3:
        return False
    q, k = node.inputs[0].type, node.inputs[1].type
    return q.shape[-2] == seq_len and k.shape[-2] == seq_len and len(node.inputs) == 3


def _copy(rw, x: Value, scope, name) -> Value:
    """A materialized copy of ``x`` in another token order (same shape)."""
    return rw.emit("contiguous", [x], scope, name).output(0)


def emit_sparse(rw, node: Node, scope, density, pattern: str) -> Value:
    """Emit the block-sparse replacement of self-attention ``node`` (a source node) under
    ``scope`` with its pattern's overhead ops; record and return its output Value.
    ``density`` is a Fraction."""
    q, k, v = (rw.get(x) for x in node.inputs[:3])
    attrs = dict(node.attrs, density=(density.numerator, density.denominator), pattern=pattern)
    ov = scope.child(f"sparse_{pattern.replace('-', '_')}")
    if pattern == "sliding-tile":
        q, k, v = (_copy(rw, x, ov, f"tile_{n}") for x, n in ((q, "q"), (k, "k"), (v, "v")))
    elif pattern == "svg":
        n = min(SVG_SAMPLED_QUERIES, q.shape[-2])
        qs = rw.emit("slice", [q], ov, "sample_queries", {"dim": q.type.rank - 2, "start": 0, "end": n}).output(0)
        qs = rw.emit("contiguous", [qs], ov, "sample_copy").output(0)
        for tag in ("dense", "spatial", "temporal"):
            rw.emit("sdpa", [qs, k, v], ov, f"profile_{tag}", {"scale": node.attrs.get("scale")})
        q, k, v = (_copy(rw, x, ov, f"permute_{nm}") for x, nm in ((q, "q"), (k, "k"), (v, "v")))
    elif pattern == "radial":
        tq = math.ceil(q.shape[-2] / TILE)
        tk = math.ceil(k.shape[-2] / TILE)
        rw.emit("input", [], ov, "block_mask", {"shape": (tq, tk), "dtype": "int8"})
    out = rw.emit("sdpa", [q, k, v], scope, node.name, attrs, node.params).output(0)
    if pattern in ("sliding-tile", "svg"):
        out = _copy(rw, out, ov, "untile_out" if pattern == "sliding-tile" else "unpermute_out")
    rw.vals[(node.id, 0)] = out
    return out


def emit_complement(rw, node: Node, scope, density) -> None:
    """For a dense step: the score tiles the sparse node skipped, as one more block-sparse
    ``sdpa`` of density 1 − ``density`` on the same q, k, v, whose output is added to the
    sparse node's (one ``add`` per dense step: a dense kernel would write one output)."""
    q, k, v = (rw.get(x) for x in node.inputs[:3])
    rest = 1 - density
    o = rw.emit("sdpa", [q, k, v], scope, f"{node.name}_dense_rest",
                dict(node.attrs, density=(rest.numerator, rest.denominator), pattern="dense-step")).output(0)
    merged = rw.emit("add", [rw.vals[(node.id, 0)], o], scope, f"{node.name}_dense_merge").output(0)
    rw.vals[(node.id, 0)] = merged
