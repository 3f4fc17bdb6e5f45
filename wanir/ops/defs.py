"""The op kinds of the IR with their shape rules (one definition per kind).

Shapes follow PyTorch's conventions: channels-first convolutions, (batch..., L, D)
attention operands, ``pad`` ordered from the last dimension as ``F.pad`` does.
"""
from __future__ import annotations

from math import prod

from ..dtypes import get_dtype
from ..tensor import TensorType
from .registry import Attr, OpDef, ShapeMismatch, register

# ----------------------------------------------------------------------------- helpers


def _tt(shape, dtype) -> TensorType:
    shape = tuple(shape)
    for d in shape:
        if d <= 0:
            raise ShapeMismatch(f"would produce a non-positive dimension {shape}")
    return TensorType(shape, dtype)


def broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy/PyTorch broadcasting of two shapes; raises ShapeMismatch if incompatible."""
    if a == b:
        return a
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and x != 1 and y != 1:
            raise ShapeMismatch(f"shapes {a} and {b} do not broadcast (dim -{i}: {x} vs {y})")
        out.append(max(x, y))
    return tuple(reversed(out))


def promote(*dts):
    """Result dtype of mixing dtypes: the widest; ties keep the first."""
    best = dts[0]
    for d in dts[1:]:
        if d.bits > best.bits:
            best = d
    return best


def _tuple(v, n: int, name: str) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(v)
    if len(v) != n:
        raise ShapeMismatch(f"{name} needs {n} values, got {v}")
    return v


def _dim(d: int, rank: int, name: str = "dim") -> int:
    if not -rank <= d < rank:
        raise ShapeMismatch(f"{name}={d} is out of range for a rank-{rank} tensor")
    return d % rank


def _same(x: TensorType, attrs=None):
    return (x,)


# ----------------------------------------------------------------------------- inputs

register(OpDef(
    "input", "input", lambda ins, a: (_tt(a["shape"] if not isinstance(a["shape"], int) else (a["shape"],), a["dtype"]),),
    attrs=(Attr("shape", "ints"), Attr("dtype", "dtype")), n_inputs=(0, 0),
    doc="a graph input (placeholder) of the given shape and dtype"))

register(OpDef(
    "parameter", "input", lambda ins, a: (_tt(_shape_attr(a["shape"]), a["dtype"]),),
    attrs=(Attr("shape", "ints"), Attr("dtype", "dtype")), n_inputs=(0, 0),
    params=lambda ins, a: {"weight": _shape_attr(a["shape"])},
    doc="a weight used directly as a tensor (e.g. a learned table); owns one weight"))


def _shape_attr(s):
    return (s,) if isinstance(s, int) else tuple(s)


# ----------------------------------------------------------------------------- matmul


def _linear_shape(ins, a):
    (x,) = ins
    if a["in_features"] is not None and x.shape[-1] != a["in_features"]:
        raise ShapeMismatch(f"last dim {x.shape[-1]} != in_features {a['in_features']}")
    return (_tt(x.shape[:-1] + (a["out_features"],), a.get("out_dtype") or x.dtype),)


def _linear_params(ins, a):
    k = ins[0].shape[-1]
    p = {"weight": (a["out_features"], k)}
    if a["bias"]:
        p["bias"] = (a["out_features"],)
    return p


register(OpDef(
    "linear", "matmul", _linear_shape,
    attrs=(Attr("out_features", "int"), Attr("bias", "bool", True), Attr("in_features", "int", None),
           Attr("out_dtype", "dtype", None, "output dtype when it differs from the input's (a low-precision "
                "GEMM that dequantizes in its epilogue)")),
    params=_linear_params, doc="y = x W^T (+ b) over the last dimension (nn.Linear)"))


def _matmul_shape(ins, a):
    x, y = ins
    if x.rank < 2 or y.rank < 2:
        raise ShapeMismatch("matmul operands need rank >= 2")
    if x.shape[-1] != y.shape[-2]:
        raise ShapeMismatch(f"inner dims differ: {x.shape[-1]} vs {y.shape[-2]}")
    batch = broadcast(x.shape[:-2], y.shape[:-2])
    return (_tt(batch + (x.shape[-2], y.shape[-1]), promote(x.dtype, y.dtype)),)


register(OpDef("matmul", "matmul", _matmul_shape, n_inputs=(2, 2),
               doc="torch.matmul of two rank>=2 tensors with broadcast batch dims"))


def _bmm_shape(ins, a):
    x, y = ins
    if x.rank != 3 or y.rank != 3:
        raise ShapeMismatch("bmm operands must be rank 3")
    if x.shape[0] != y.shape[0]:
        raise ShapeMismatch(f"batch dims differ: {x.shape[0]} vs {y.shape[0]}")
    if x.shape[2] != y.shape[1]:
        raise ShapeMismatch(f"inner dims differ: {x.shape[2]} vs {y.shape[1]}")
    return (_tt((x.shape[0], x.shape[1], y.shape[2]), promote(x.dtype, y.dtype)),)


register(OpDef("bmm", "matmul", _bmm_shape, n_inputs=(2, 2), doc="batched matmul (B,M,K)@(B,K,N)"))

# ----------------------------------------------------------------------------- conv


def _conv_factory(nd: int):
    def shape(ins, a):
        (x,) = ins
        if x.rank != nd + 2:
            raise ShapeMismatch(f"conv{nd}d expects rank {nd + 2} (N, C, {'T, ' if nd == 3 else ''}H, W), got rank {x.rank}")
        c = x.shape[1]
        g = a["groups"]
        cout = a["out_channels"]
        if g <= 0 or c % g or cout % g:
            raise ShapeMismatch(f"groups={g} must divide in_channels {c} and out_channels {cout}")
        if a["in_channels"] is not None and c != a["in_channels"]:
            raise ShapeMismatch(f"channels {c} != in_channels {a['in_channels']}")
        k = _tuple(a["kernel"], nd, "kernel")
        s = _tuple(a["stride"], nd, "stride")
        p = _tuple(a["padding"], nd, "padding")
        d = _tuple(a["dilation"], nd, "dilation")
        sp = [x.shape[0], cout]
        for i in range(nd):
            kk, ss, pp, dd = k[i], s[i], p[i], d[i]
            if kk <= 0 or ss <= 0 or dd <= 0 or pp < 0:
                raise ShapeMismatch("kernel, stride and dilation must be positive and padding non-negative")
            L = x.shape[2 + i]
            o = (L + 2 * pp - dd * (kk - 1) - 1) // ss + 1
            if o <= 0:
                raise ShapeMismatch(f"input size {L} is too small for kernel {kk} (dilation {dd}, padding {pp})")
            sp.append(o)
        return (TensorType(tuple(sp), x.dtype),)

    def params(ins, a):
        k = _tuple(a["kernel"], nd, "kernel")
        p = {"weight": (a["out_channels"], ins[0].shape[1] // a["groups"], *k)}
        if a["bias"]:
            p["bias"] = (a["out_channels"],)
        return p

    return OpDef(
        f"conv{nd}d", "conv", shape,
        attrs=(Attr("out_channels", "int"), Attr("kernel", "ints"), Attr("stride", "ints", 1),
               Attr("padding", "ints", 0), Attr("dilation", "ints", 1), Attr("groups", "int", 1),
               Attr("bias", "bool", True), Attr("in_channels", "int", None)),
        params=params, doc=f"nn.Conv{nd}d on (N, C, {'T, ' if nd == 3 else ''}H, W)")


for _nd in (1, 2, 3):
    register(_conv_factory(_nd))

# ----------------------------------------------------------------------------- attention


def _sdpa_shape(ins, a):
    q, k, v = ins[:3]
    if q.rank < 2 or k.rank != q.rank or v.rank != q.rank:
        raise ShapeMismatch("q, k, v must have the same rank >= 2: (batch..., L, D)")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        raise ShapeMismatch(f"batch/head dims differ: q {q.shape[:-2]}, k {k.shape[:-2]}, v {v.shape[:-2]}")
    if q.shape[-1] != k.shape[-1]:
        raise ShapeMismatch(f"q and k head dims differ: {q.shape[-1]} vs {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ShapeMismatch(f"k and v lengths differ: {k.shape[-2]} vs {v.shape[-2]}")
    if len(ins) == 4:
        broadcast(ins[3].shape, q.shape[:-1] + (k.shape[-2],))
    d = a.get("density")
    if d is not None and (isinstance(d, int) or len(d) != 2 or not 0 < d[0] <= d[1]):
        raise ShapeMismatch(f"density must be (num, den) with 0 < num <= den, got {d!r}")
    return (_tt(q.shape[:-1] + (v.shape[-1],), a.get("out_dtype") or q.dtype),)


register(OpDef(
    "sdpa", "attention", _sdpa_shape, n_inputs=(3, 4),
    attrs=(Attr("causal", "bool", False), Attr("scale", "float", None),
           Attr("density", "ints", None, "block-sparse: (num, den), the fraction of score tiles computed"),
           Attr("pattern", "str", None, "block-sparse: the sparse pattern (docs/optimizations.md)"),
           Attr("out_dtype", "dtype", None, "output dtype when it differs from q's (8-bit attention kernels)")),
    doc="scaled-dot-product attention softmax(q k^T * scale + mask) v; q (B.., Lq, D), k (B.., Lk, D), "
        "v (B.., Lk, Dv); an optional 4th input is an additive mask/bias broadcastable to (B.., Lq, Lk); "
        "with ``density`` = (num, den) only num/den of the score tiles are computed (block-sparse)"))

# ----------------------------------------------------------------------------- norms


def _norm_shape(ins, a):
    (x,) = ins
    if a.get("normalized_shape") is not None:
        ns = _shape_attr(a["normalized_shape"])
        if tuple(x.shape[-len(ns):]) != ns:
            raise ShapeMismatch(f"trailing dims {x.shape[-len(ns):]} != normalized_shape {ns}")
    return (x,)


def _norm_params(with_bias: bool):
    def params(ins, a):
        if not a["affine"]:
            return {}
        ns = _shape_attr(a["normalized_shape"]) if a.get("normalized_shape") is not None else (ins[0].shape[-1],)
        p = {"weight": ns}
        if with_bias and a.get("bias", False):
            p["bias"] = ns
        return p
    return params


register(OpDef(
    "layernorm", "norm", _norm_shape,
    attrs=(Attr("affine", "bool", True), Attr("bias", "bool", True), Attr("normalized_shape", "ints", None),
           Attr("eps", "float", 1e-5)),
    params=_norm_params(True), doc="nn.LayerNorm over the trailing dims (default: the last one)"))
register(OpDef(
    "rmsnorm", "norm", _norm_shape,
    attrs=(Attr("affine", "bool", True), Attr("normalized_shape", "ints", None), Attr("eps", "float", 1e-6)),
    params=_norm_params(False), doc="RMS norm over the trailing dims (default: the last one), optional weight"))


def _gn_shape(ins, a):
    (x,) = ins
    if x.rank < 2:
        raise ShapeMismatch("groupnorm needs (N, C, ...)")
    if a["num_groups"] <= 0 or x.shape[1] % a["num_groups"]:
        raise ShapeMismatch(f"num_groups {a['num_groups']} must divide channels {x.shape[1]}")
    return (x,)


register(OpDef(
    "groupnorm", "norm", _gn_shape,
    attrs=(Attr("num_groups", "int"), Attr("affine", "bool", True), Attr("eps", "float", 1e-5)),
    params=lambda ins, a: {"weight": (ins[0].shape[1],), "bias": (ins[0].shape[1],)} if a["affine"] else {},
    doc="nn.GroupNorm on (N, C, ...)"))


def _chnorm_shape(ins, a):
    (x,) = ins
    if x.rank < 2:
        raise ShapeMismatch("channel_rmsnorm needs (N, C, ...)")
    return (x,)


register(OpDef(
    "channel_rmsnorm", "norm", _chnorm_shape,
    attrs=(Attr("affine", "bool", True), Attr("bias", "bool", False)),
    params=lambda ins, a: ({"weight": (ins[0].shape[1],), **({"bias": (ins[0].shape[1],)} if a["bias"] else {})}
                           if a["affine"] else {}),
    doc="RMS norm over the channel dim of (N, C, ...) (F.normalize(x, dim=1) * sqrt(C) * gamma (+ beta))"))

# ----------------------------------------------------------------------------- embedding


def _emb_shape(ins, a):
    (idx,) = ins
    if not idx.dtype.name.startswith("int"):
        raise ShapeMismatch(f"embedding indices must be an integer dtype, got {idx.dtype.name}")
    return (_tt(idx.shape + (a["embedding_dim"],), a["dtype"]),)


register(OpDef(
    "embedding", "embedding", _emb_shape,
    attrs=(Attr("num_embeddings", "int"), Attr("embedding_dim", "int"), Attr("dtype", "dtype", get_dtype("fp32"))),
    params=lambda ins, a: {"weight": (a["num_embeddings"], a["embedding_dim"])},
    doc="nn.Embedding lookup: integer indices (...) -> (..., embedding_dim)"))

# ----------------------------------------------------------------------------- elementwise

UNARY = ("gelu", "gelu_tanh", "silu", "relu", "sigmoid", "tanh", "exp", "log", "sin", "cos", "neg", "abs",
         "sqrt", "rsqrt", "square", "reciprocal", "dropout")
for _k in UNARY:
    register(OpDef(_k, "elementwise", lambda ins, a: ins[:1], doc=f"elementwise {_k}"))

register(OpDef("scale", "elementwise", lambda ins, a: ins[:1], attrs=(Attr("value", "float", 1.0),),
               doc="multiply by a scalar"))
register(OpDef("add_scalar", "elementwise", lambda ins, a: ins[:1], attrs=(Attr("value", "float", 0.0),),
               doc="add a scalar"))
register(OpDef("clamp", "elementwise", lambda ins, a: ins[:1],
               attrs=(Attr("min", "float", None), Attr("max", "float", None)), doc="clamp to [min, max]"))
register(OpDef("cast", "elementwise", lambda ins, a: (ins[0].with_dtype(a["dtype"]),),
               attrs=(Attr("dtype", "dtype"),), doc="convert to another dtype (materializes a copy)"))


def _binary_shape(ins, a):
    x, y = ins
    if x == y:
        return (x,)
    return (_tt(broadcast(x.shape, y.shape), promote(x.dtype, y.dtype)),)


BINARY = ("add", "sub", "mul", "div", "maximum", "minimum", "pow")
for _k in BINARY:
    register(OpDef(_k, "elementwise", _binary_shape, n_inputs=(2, 2), doc=f"elementwise {_k} with broadcasting"))


def _rope_shape(ins, a):
    x = ins[0]
    if len(ins) == 2:
        f = ins[1]
        try:
            broadcast(f.shape[:-1], x.shape[:-1])
        except ShapeMismatch:
            raise ShapeMismatch(f"frequencies {f.shape} do not broadcast against x {x.shape}") from None
        if f.shape[-1] not in (x.shape[-1], x.shape[-1] // 2):
            raise ShapeMismatch(f"frequency dim {f.shape[-1]} must be D={x.shape[-1]} or D/2")
    if x.shape[-1] % 2:
        raise ShapeMismatch(f"rotary dim {x.shape[-1]} must be even")
    return (x,)


register(OpDef("rope", "elementwise", _rope_shape, n_inputs=(1, 2),
               doc="rotary position embedding: rotate pairs of the last dim by per-position angles; optional "
                   "2nd input is the (..., L, D or D/2) frequency table"))

# ----------------------------------------------------------------------------- softmax / reductions


def _softmax_shape(ins, a):
    _dim(a["dim"], ins[0].rank)
    return ins[:1]


register(OpDef("softmax", "reduction", _softmax_shape, attrs=(Attr("dim", "int", -1),),
               doc="softmax along one dim"))


def _reduce_shape(ins, a):
    (x,) = ins
    dims = a["dims"]
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    dims = {_dim(d, x.rank) for d in dims}
    shape = tuple(1 if i in dims else s for i, s in enumerate(x.shape)) if a["keepdim"] else \
        tuple(s for i, s in enumerate(x.shape) if i not in dims)
    return (_tt(shape or (1,), x.dtype),)


for _k in ("sum", "mean", "amax"):
    register(OpDef(_k, "reduction", _reduce_shape, attrs=(Attr("dims", "ints"), Attr("keepdim", "bool", False)),
                   doc=f"{_k} over dims"))

# ----------------------------------------------------------------------------- data movement


def _upsample_factory(nd):
    def shape(ins, a):
        (x,) = ins
        if x.rank != nd + 2:
            raise ShapeMismatch(f"upsample_nearest{nd}d expects rank {nd + 2}, got {x.rank}")
        s = _tuple(a["scale"], nd, "scale")
        if min(s) <= 0:
            raise ShapeMismatch("scale must be positive")
        return (_tt(x.shape[:2] + tuple(L * k for L, k in zip(x.shape[2:], s)), x.dtype),)
    return OpDef(f"upsample_nearest{nd}d", "data_movement", shape, attrs=(Attr("scale", "ints"),),
                 doc=f"nearest-neighbour upsampling of the {nd} trailing dims by integer factors")


register(_upsample_factory(2))
register(_upsample_factory(3))


def _pad_shape(ins, a):
    (x,) = ins
    p = _shape_attr(a["pad"]) if not isinstance(a["pad"], int) else (a["pad"],)
    if len(p) % 2 or len(p) // 2 > x.rank:
        raise ShapeMismatch(f"pad needs pairs for at most {x.rank} dims, got {p}")
    shape = list(x.shape)
    for i in range(len(p) // 2):
        shape[-1 - i] += p[2 * i] + p[2 * i + 1]
    return (_tt(shape, x.dtype),)


register(OpDef("pad", "data_movement", _pad_shape, attrs=(Attr("pad", "ints"), Attr("value", "float", 0.0)),
               doc="constant padding, pairs ordered from the last dim as in F.pad"))


def _concat_shape(ins, a):
    d = _dim(a["dim"], ins[0].rank)
    for t in ins[1:]:
        if t.rank != ins[0].rank or any(s != r for i, (s, r) in enumerate(zip(t.shape, ins[0].shape)) if i != d):
            raise ShapeMismatch(f"shapes {ins[0].shape} and {t.shape} differ outside dim {a['dim']}")
        if t.dtype != ins[0].dtype:
            raise ShapeMismatch(f"dtypes differ: {ins[0].dtype.name} vs {t.dtype.name}")
    shape = list(ins[0].shape)
    shape[d] = sum(t.shape[d] for t in ins)
    return (_tt(shape, ins[0].dtype),)


register(OpDef("concat", "data_movement", _concat_shape, n_inputs=(1, None), attrs=(Attr("dim", "int", 0),),
               doc="torch.cat along dim"))


def _slice_shape(ins, a):
    (x,) = ins
    d = _dim(a["dim"], x.rank)
    if a["step"] <= 0:
        raise ShapeMismatch(f"slice step must be positive, got {a['step']}")
    n = len(range(x.shape[d])[slice(a["start"], a["end"], a["step"])])
    if n == 0:
        raise ShapeMismatch(f"slice [{a['start']}:{a['end']}:{a['step']}] of dim {a['dim']} (size {x.shape[d]}) is empty")
    shape = list(x.shape)
    shape[d] = n
    return (_tt(shape, x.dtype),)


register(OpDef("slice", "data_movement", _slice_shape, view=True,
               attrs=(Attr("dim", "int"), Attr("start", "int", 0), Attr("end", "int", None), Attr("step", "int", 1)),
               doc="basic slicing x[start:end:step] along dim (a view)"))


def _chunk_shape(ins, a):
    (x,) = ins
    d = _dim(a["dim"], x.rank)
    n = a["chunks"]
    if n <= 0 or x.shape[d] % n:
        raise ShapeMismatch(f"chunks={n} must divide dim {a['dim']} of size {x.shape[d]}")
    shape = list(x.shape)
    shape[d] //= n
    return tuple(_tt(shape, x.dtype) for _ in range(n))


register(OpDef("chunk", "data_movement", _chunk_shape, view=True,
               attrs=(Attr("chunks", "int"), Attr("dim", "int", -1)),
               doc="split into equal chunks along dim (views); one output per chunk"))


def _reshape_shape(ins, a):
    (x,) = ins
    shape = list(_shape_attr(a["shape"]))
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ShapeMismatch(f"target shape {tuple(shape)} may hold one -1 and otherwise positive sizes")
    if -1 in shape:
        known = prod(s for s in shape if s != -1)
        if x.numel % known:
            raise ShapeMismatch(f"cannot reshape {x.numel} elements into {tuple(shape)}")
        shape[shape.index(-1)] = x.numel // known
    if prod(shape) != x.numel:
        raise ShapeMismatch(f"cannot reshape {x.shape} ({x.numel} elements) into {tuple(shape)}")
    return (_tt(shape, x.dtype),)


register(OpDef("reshape", "data_movement", _reshape_shape, view=True, attrs=(Attr("shape", "ints"),),
               doc="reshape/view to a shape with the same number of elements (a view)"))


def _permute_shape(ins, a):
    (x,) = ins
    dims = [_dim(d, x.rank) for d in _shape_attr(a["dims"])]
    if sorted(dims) != list(range(x.rank)):
        raise ShapeMismatch(f"dims {tuple(a['dims'])} is not a permutation of {x.rank} dims")
    return (_tt([x.shape[d] for d in dims], x.dtype),)


register(OpDef("permute", "data_movement", _permute_shape, view=True, attrs=(Attr("dims", "ints"),),
               doc="permute dims (a view)"))


def _transpose_shape(ins, a):
    (x,) = ins
    d0, d1 = _dim(a["dim0"], x.rank), _dim(a["dim1"], x.rank)
    shape = list(x.shape)
    shape[d0], shape[d1] = shape[d1], shape[d0]
    return (_tt(shape, x.dtype),)


register(OpDef("transpose", "data_movement", _transpose_shape, view=True,
               attrs=(Attr("dim0", "int"), Attr("dim1", "int")), doc="swap two dims (a view)"))


def _expand_shape(ins, a):
    (x,) = ins
    target = _shape_attr(a["shape"])
    shape = broadcast(x.shape, target)
    if shape != target:
        raise ShapeMismatch(f"cannot expand {x.shape} to {target}")
    return (_tt(shape, x.dtype),)


register(OpDef("expand", "data_movement", _expand_shape, view=True, attrs=(Attr("shape", "ints"),),
               doc="broadcast to a larger shape (a view)"))
register(OpDef("contiguous", "data_movement", lambda ins, a: ins[:1],
               doc="materialize a copy in contiguous layout (e.g. after a permute)"))

# ----------------------------------------------------------------------------- communication


def _gather_shape(ins, a):
    x = ins[0]
    d = _dim(a["dim"], x.rank)
    shape = list(x.shape)
    shape[d] *= a["degree"]
    return (_tt(shape, x.dtype),)


def _scatter_shape(ins, a):
    x = ins[0]
    d = _dim(a["dim"], x.rank)
    if x.shape[d] % a["degree"]:
        raise ShapeMismatch(f"dim {a['dim']} of size {x.shape[d]} is not divisible by degree {a['degree']}")
    shape = list(x.shape)
    shape[d] //= a["degree"]
    return (_tt(shape, x.dtype),)


def _a2a_shape(ins, a):
    x = ins[0]
    s, g = _dim(a["scatter_dim"], x.rank), _dim(a["gather_dim"], x.rank)
    if x.shape[s] % a["degree"]:
        raise ShapeMismatch(f"scatter dim {a['scatter_dim']} of size {x.shape[s]} is not divisible by degree {a['degree']}")
    shape = list(x.shape)
    shape[s] //= a["degree"]
    shape[g] *= a["degree"]
    return (_tt(shape, x.dtype),)


_COMM = (Attr("degree", "int"), Attr("tier", "str", "intra_node"))
register(OpDef("all_gather", "communication", _gather_shape, attrs=_COMM + (Attr("dim", "int", 0),),
               doc="all-gather: every rank receives the concatenation of all ranks' shards along dim"))
register(OpDef("reduce_scatter", "communication", _scatter_shape, attrs=_COMM + (Attr("dim", "int", 0),),
               doc="reduce-scatter: sum across ranks, each keeps 1/degree along dim"))
register(OpDef("all_reduce", "communication", lambda ins, a: ins[:1], attrs=_COMM, doc="all-reduce (sum)"))
register(OpDef("all_to_all", "communication", _a2a_shape,
               attrs=_COMM + (Attr("scatter_dim", "int"), Attr("gather_dim", "int")),
               doc="all-to-all: split scatter_dim across ranks, concatenate received pieces along gather_dim"))
register(OpDef("send_recv", "communication", lambda ins, a: ins[:1], attrs=_COMM + (Attr("steps", "int", 1),),
               doc="point-to-point exchange with a neighbour, repeated `steps` times (ring attention)"))
