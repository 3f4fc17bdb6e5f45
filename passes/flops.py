"""flops: two FLOP counts per node, per execution.

``tensor_flops`` follows ``torch.utils.flop_counter.FlopCounterMode`` exactly: it counts
matrix multiplies (2·M·N·K, bias adds free), convolutions (2 · output elements ·
C_in/groups · kernel volume) and scaled-dot-product attention (2·B·H·Lq·Lk·(D + Dv)), and
nothing else. ``vector_flops`` counts the work that runs on vector units (elementwise,
norms, softmax, activations, reductions, bias adds) under the per-element convention
written in docs/conventions.md. Both are Python ints.

``RULES`` is the one table: op kind → function(node) → (tensor_flops, vector_flops).
An op kind with no rule is an error naming the op and node, never a silent zero.
"""
from __future__ import annotations

from math import prod

from wanir.errors import UnknownOpError
from wanir.graph import Graph, Node

# Vector FLOPs per output element of each elementwise kind (a transcendental counts 1).
ELEMENTWISE_COST = {
    "add": 1, "sub": 1, "mul": 1, "div": 1, "maximum": 1, "minimum": 1, "pow": 1,
    "scale": 1, "add_scalar": 1, "neg": 1, "abs": 1, "relu": 1, "square": 1, "reciprocal": 1,
    "exp": 1, "log": 1, "sin": 1, "cos": 1, "sqrt": 1, "rsqrt": 1, "tanh": 1,
    "clamp": 2,            # one compare per bound
    "sigmoid": 4,          # 1 / (1 + exp(-x)): neg, exp, add, reciprocal
    "silu": 5,             # x * sigmoid(x)
    "gelu": 5,             # 0.5 x (1 + erf(x / sqrt 2)): div, erf, add, mul, mul
    "gelu_tanh": 9,        # 0.5 x (1 + tanh(c (x + 0.044715 x^3))): 2 mul (x^3), mul, add, mul, tanh, add, mul, mul
    "rope": 3,             # complex multiply: 4 mul + 2 add per pair of elements
    "cast": 0, "dropout": 0,
}
SOFTMAX_PER_ELEMENT = 5      # max, subtract, exp, sum, divide
ATTENTION_PER_SCORE = 6      # scale, max, subtract, exp, sum (online softmax), + the final division per output
NORM_PER_ELEMENT = {"layernorm": 5, "groupnorm": 5, "rmsnorm": 3, "channel_rmsnorm": 3}
NORM_PER_ROW = 2             # add eps, rsqrt


def _out_numel(node: Node) -> int:
    outs = node.outputs
    return outs[0].numel if len(outs) == 1 else sum(t.numel for t in outs)


def _linear(node):
    x = node.inputs[0].type
    m = x.numel // x.shape[-1]
    n = node.attrs["out_features"]
    return 2 * m * n * x.shape[-1], (m * n if node.attrs["bias"] else 0)


def _matmul(node):
    a, b = node.inputs[0].type, node.inputs[1].type
    out = node.outputs[0]
    batch = out.numel // (out.shape[-2] * out.shape[-1])
    return 2 * batch * a.shape[-2] * b.shape[-1] * a.shape[-1], 0


def _conv(node):
    x = node.inputs[0].type
    out = node.outputs[0]
    w = node.params["weight"].type.shape          # (C_out, C_in/groups, *kernel)
    tensor = 2 * out.numel * w[1] * prod(w[2:])
    return tensor, (out.numel if node.attrs["bias"] else 0)


def _sdpa(node):
    q, k, v = (t.type for t in node.inputs[:3])
    bh = prod(q.shape[:-2])
    lq, lk, d, dv = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    tensor = 2 * bh * lq * lk * d + 2 * bh * lq * lk * dv
    vector = ATTENTION_PER_SCORE * bh * lq * lk + bh * lq * dv
    if len(node.inputs) == 4:
        vector += bh * lq * lk     # the additive mask/bias
    dens = node.attrs.get("density")
    if dens:                       # block-sparse: only num/den of the score tiles are computed
        num, den = dens
        tensor = tensor * num // den
        vector = (vector - bh * lq * dv) * num // den + bh * lq * dv
    return tensor, vector


def _norm(node):
    x = node.inputs[0].type
    per = NORM_PER_ELEMENT[node.kind]
    if node.kind == "groupnorm":
        rows = x.shape[0] * node.attrs["num_groups"]
    elif node.kind == "channel_rmsnorm":
        rows = x.numel // x.shape[1]
    else:
        ns = node.attrs.get("normalized_shape")
        width = prod(ns) if isinstance(ns, tuple) else (ns or x.shape[-1])
        rows = x.numel // width
    affine = 0
    if node.attrs.get("affine"):
        affine = x.numel * (1 + (1 if node.attrs.get("bias") and node.kind != "rmsnorm" else 0))
        if node.kind == "groupnorm":
            affine = 2 * x.numel
    return 0, per * x.numel + NORM_PER_ROW * rows + affine


def _elementwise(node):
    return 0, ELEMENTWISE_COST[node.kind] * _out_numel(node)


def _softmax(node):
    return 0, SOFTMAX_PER_ELEMENT * node.outputs[0].numel


def _reduce(node):
    return 0, node.inputs[0].type.numel


def _zero(node):
    return 0, 0


RULES = {
    "input": _zero, "parameter": _zero,
    "linear": _linear, "matmul": _matmul, "bmm": _matmul,
    "conv1d": _conv, "conv2d": _conv, "conv3d": _conv,
    "sdpa": _sdpa,
    "layernorm": _norm, "rmsnorm": _norm, "groupnorm": _norm, "channel_rmsnorm": _norm,
    "embedding": _zero,
    "softmax": _softmax, "sum": _reduce, "mean": _reduce, "amax": _reduce,
    **{k: _elementwise for k in ELEMENTWISE_COST},
    **{k: _zero for k in ("upsample_nearest2d", "upsample_nearest3d", "pad", "concat", "slice", "chunk",
                          "reshape", "permute", "transpose", "expand", "contiguous")},
    # collectives move data; their reduction arithmetic is not counted (it is bandwidth-bound)
    **{k: _zero for k in ("all_gather", "reduce_scatter", "all_reduce", "all_to_all", "send_recv")},
}


def node_flops(node: Node) -> tuple[int, int]:
    """(tensor_flops, vector_flops) of one execution of ``node``."""
    rule = RULES.get(node.kind)
    if rule is None:
        raise UnknownOpError(f"{node.path}: the flops pass has no rule for op '{node.kind}'")
    return rule(node)


def run(graph: Graph) -> dict[str, dict[str, int]]:
    """Annotate every node with ``tensor_flops`` and ``vector_flops`` (per execution) and
    return per stage the per-invocation totals {"tensor_flops", "vector_flops"} (each node
    times its count per invocation)."""
    out = {s: {"tensor_flops": 0, "vector_flops": 0} for s in graph.stages}
    rules = RULES
    for node in graph:
        rule = rules.get(node.kind)
        t, v = rule(node) if rule is not None else node_flops(node)     # node_flops raises
        c = node.costs
        c["tensor_flops"] = t
        c["vector_flops"] = v
        sc = node.scope
        k = sc.count_per_invocation
        acc = out[sc.stage_name]
        acc["tensor_flops"] += t * k
        acc["vector_flops"] += v * k
    return out
