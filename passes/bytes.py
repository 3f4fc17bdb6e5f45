"""bytes: memory traffic of every node, per execution, under a named fusion policy.

Each node gets ``bytes_read`` (inputs and weights it reads), ``bytes_written`` (outputs it
materializes), ``weight_bytes_read`` (the weight part of ``bytes_read``) and ``launches``
(kernels it launches: 0 or 1), all Python ints. Sizes come from the tensor types, so the
configured dtypes are what is counted.

``RULES`` is the one table, keyed by op category (``KIND_RULES`` overrides single kinds).
A rule returns the bytes read per input slot, the bytes written per output, the weight
bytes it reads and any extra traffic; the fusion policy and weight sharing are applied on
top of the table, the same way for every op:

- ``eager`` (what PyTorch eager runs): every op reads its inputs and writes its outputs;
  views (``reshape``, ``permute``, ``slice``, ``chunk``, ``expand``, ``transpose``) are free;
  attention is a flash kernel that reads Q, K, V (and the mask) once and writes O;
  ``attention_kernel="math"`` materializes the score matrix S and the probabilities P
  (QKᵀ writes S, softmax reads S and writes P, PV reads P; a mask adds one more read and
  write of S).
- ``fused`` (what a compiler emits): an elementwise or norm node folds into the producer of
  one of its inputs when that producer's output buffer (through views) has this node as
  its only consumer and both run equally often: the node does not read that input, the
  producer does not write it, and the node launches no kernel of its own. A graph input,
  a weight and a persistent value (``graph.meta['persistent']``) are never folded.
- ``compiled`` (``torch.compile``): as ``fused``, but only into elementwise, norm and
  reduction producers: the compiler generates one kernel per chain of pointwise ops and
  norms (norm + modulation, the rotary products, residual gates and adds, casts) and
  calls library kernels for GEMMs, convolutions and attention, whose outputs are written.

Weights are read at their storage dtype. When a matmul or convolution computes at another
dtype than its weights are stored in (an fp32 checkpoint under bf16 autocast), it also
writes a copy of each weight at the compute dtype and reads that copy. A weight shared by
several nodes of a stage (one key) is read once per invocation: by the first node that
uses it.
"""
from __future__ import annotations

from math import prod

from wanir.errors import ConfigError, UnknownOpError
from wanir.graph import Graph, Node
from wanir.kernels import attention_kernels
from wanir.ops import OPS
from wanir.options import DEFAULT_ATTENTION_KERNEL

FUSIONS = ("eager", "fused", "compiled")
#: categories whose weights autocast converts to the compute dtype per use
AUTOCAST_CATEGORIES = ("matmul", "conv")
#: categories that fold into their producer under the ``fused`` policy
FUSIBLE_CATEGORIES = ("elementwise", "norm")
#: producers a ``compiled`` policy folds into: a compiler (torch.compile's Inductor) fuses
#: chains of pointwise ops, norms and reductions into one generated kernel, but not into the
#: library GEMM, convolution and attention kernels it calls (their outputs are written)
COMPILED_PRODUCERS = ("elementwise", "norm", "reduction")


def _ins(node):
    out = []                 # (a loop: no comprehension frame per node)
    for v in node.inputs:
        out.append(v.type.nbytes)
    return out


def _outs(node):
    out = []
    for t in node.outputs:
        out.append(t.nbytes)
    return out


def _materialize(node, kernel):
    """Read every input, write every output, read every weight."""
    return _ins(node), _outs(node), (0, 0), 0


def _free(node, kernel):
    """No traffic: placeholders, weights used as tensors, views."""
    return [0] * len(node.inputs), [0] * len(node.outputs), (0, 0), 0


def _attention(node, kernel):
    """Q, K, V (and mask) read once, O written; the math kernel materializes S and P."""
    extra = 0
    if kernel == "math":
        q, k = node.inputs[0].type, node.inputs[1].type
        scores = q.dtype.nbytes(prod(q.shape[:-1]) * k.shape[-2])
        extra = (2 + (1 if len(node.inputs) == 4 else 0)) * scores
    return _ins(node), _outs(node), (extra, extra), 0


def _embedding(node, kernel):
    """Indices read, the gathered rows of the table read (weights), output written."""
    w = node.params["weight"].type
    rows = node.inputs[0].type.numel
    return _ins(node), _outs(node), (0, 0), w.dtype.nbytes(rows * w.shape[-1])


def _data_movement(node, kernel):
    """Views are free; copies (pad, concat, upsample, contiguous) read and write."""
    return _free(node, kernel) if node.op.view else _materialize(node, kernel)


#: category → rule(node, attention_kernel) → (read per input, written per output,
#: (extra bytes read, extra bytes written), weight bytes read or 0 for "every weight, in full")
RULES = {
    "input": _free,
    "matmul": _materialize,
    "conv": _materialize,
    "attention": _attention,
    "norm": _materialize,
    "elementwise": _materialize,
    "reduction": _materialize,
    "embedding": _embedding,
    "data_movement": _data_movement,
    "communication": _materialize,
}
#: per-kind exceptions to the category rule
KIND_RULES: dict = {}


def persistent_values(graph: Graph) -> set[tuple[int, int]]:
    """The (node id, output index) pairs listed in ``graph.meta['persistent']`` — a list of
    Values or pairs, or a mapping of stage name to such a list: values that stay live for
    the whole invocation of their stage."""
    out = set()
    listed = graph.meta.get("persistent", ()) or ()
    if isinstance(listed, dict):
        listed = [v for vs in listed.values() for v in vs]
    for v in listed:
        if hasattr(v, "producer"):
            out.add((v.producer, v.index))
        else:
            nid, idx = v
            out.add((int(nid), int(idx)))
    return out


def buffer_roots(nodes) -> dict[tuple[int, int], tuple[int, int]]:
    """Map every view output (node id, output index) to the value whose buffer it uses: a
    view's outputs alias the buffer of its first input. Values missing from the map own
    their buffer."""
    root: dict[tuple[int, int], tuple[int, int]] = {}
    for n in nodes:
        if OPS[n.kind].view and n.inputs:
            v = n.inputs[0]
            r = root.get((v.producer, v.index), (v.producer, v.index))
            for i in range(len(n.outputs)):
                root[(n.id, i)] = r
    return root


class _Counts:
    """Per-scope cache of executions per invocation (``count(scope)``) and stage name
    (``count.stage(scope)``)."""

    def __init__(self):
        self._c: dict[int, tuple[int, str]] = {}

    def _get(self, scope):
        c = self._c.get(id(scope))
        if c is None:
            c = self._c[id(scope)] = (scope.count_per_invocation, scope.stage_name)
        return c

    def __call__(self, scope) -> int:
        return self._get(scope)[0]

    def stage(self, scope) -> str:
        return self._get(scope)[1]


def run(graph: Graph, fusion: str = "eager", attention_kernel: str = DEFAULT_ATTENTION_KERNEL,
        nodes: list | None = None) -> dict[str, dict[str, int]]:
    """Annotate every node with ``bytes_read``, ``bytes_written``, ``weight_bytes_read`` and
    ``launches`` (per execution, ints); return per stage the per-invocation totals
    {"bytes_read", "bytes_written", "bytes"} (each node times its count per invocation)."""
    if fusion not in FUSIONS:
        raise ConfigError(f"roofline.fusion={fusion!r}: allowed: {', '.join(FUSIONS)}")
    if attention_kernel not in attention_kernels():
        raise ConfigError(f"roofline.attention_kernel={attention_kernel!r}: allowed: {', '.join(attention_kernels())}")
    nodes = list(graph) if nodes is None else nodes
    fuse = fusion in ("fused", "compiled")
    rows = []                            # (node, read per input, written per output, weight read, extra r, extra w)
    seen_weights: dict[str, set[str]] = {}
    by_kind: dict[str, tuple] = {}       # kind -> (rule, category, kernels launched)
    launches: dict[int, int] = {}
    for n in nodes:
        kr = by_kind.get(n.kind)
        if kr is None:
            op = OPS[n.kind]
            cat = op.category
            rule = KIND_RULES.get(n.kind) or RULES.get(cat)
            if rule is None:
                raise UnknownOpError(f"{n.path}: the bytes pass has no rule for op '{n.kind}' (category '{cat}')")
            kr = by_kind[n.kind] = (rule, cat, 0 if cat == "input" or op.view else 1)
        rule, cat, launches[n.id] = kr
        ins, outs, (extra, extra_w), wread = rule(n, attention_kernel)
        if n.params and cat != "input":
            seen = seen_weights.setdefault(n.scope.stage_name, set())
            compute = n.inputs[0].type.dtype if n.inputs else None
            autocast = compute is not None and cat in AUTOCAST_CATEGORIES
            total = 0
            for w in n.params.values():
                if w.key in seen:
                    continue
                seen.add(w.key)
                wt = w.type
                total += wt.nbytes
                if autocast and wt.dtype != compute:
                    copy = compute.nbytes(wt.numel)
                    extra += copy         # read the converted copy
                    extra_w += copy       # write it
            wread = min(wread, total) if wread else total
        rows.append((n, ins, outs, wread, extra, extra_w))
    if fuse:                              # fusion edits single slots of these lists
        reads = {n.id: list(ins) for n, ins, *_ in rows}
        writes = {n.id: list(outs) for n, _, outs, *_ in rows}
        _fuse(graph, nodes, reads, writes, launches, _Counts(),
              producers=COMPILED_PRODUCERS if fusion == "compiled" else None)
        rows = [(n, reads[n.id], writes[n.id], *rest) for n, _, _, *rest in rows]

    out = {s: {"bytes_read": 0, "bytes_written": 0, "bytes": 0} for s in graph.stages}
    acc_s = None
    for n, ins, outs, wread, extra_r, extra_w in rows:
        r = sum(ins) + wread + extra_r
        w = sum(outs) + extra_w
        c = n.costs
        c["bytes_read"] = r
        c["bytes_written"] = w
        c["weight_bytes_read"] = wread
        c["launches"] = launches[n.id]
        sc = n.scope
        k = sc.count_per_invocation
        stage = sc.stage_name
        if stage != acc_s:
            acc_s, acc = stage, out[stage]
        acc["bytes_read"] += r * k
        acc["bytes_written"] += w * k
        acc["bytes"] += (r + w) * k
    return out


def _fuse(graph, nodes, reads, writes, launches, count, producers=None):
    """Apply the ``fused`` policy to the per-slot traffic (see the module docstring)."""
    by_id = {n.id: n for n in nodes}
    root = buffer_roots(nodes)
    consumers: dict[tuple[int, int], set[int]] = {}
    for n in nodes:
        if OPS[n.kind].view:
            continue
        for v in n.inputs:
            r = root.get((v.producer, v.index), (v.producer, v.index))
            consumers.setdefault(r, set()).add(n.id)
    keep = persistent_values(graph)
    for n in nodes:
        if OPS[n.kind].category not in FUSIBLE_CATEGORIES:
            continue
        for slot, v in enumerate(n.inputs):
            r = root.get((v.producer, v.index), (v.producer, v.index))
            p = by_id.get(r[0])
            if p is None or p.category == "input" or r in keep or consumers.get(r) != {n.id}:
                continue
            if producers is not None and p.category not in producers:
                continue
            if count.stage(p.scope) != count.stage(n.scope) or count(p.scope) != count(n.scope):
                continue
            for s2, v2 in enumerate(n.inputs):     # every slot reading that buffer (x * x)
                if root.get((v2.producer, v2.index), (v2.producer, v2.index)) == r:
                    reads[n.id][s2] = 0
            writes[p.id][r[1]] = 0
            launches[n.id] = 0
            break
