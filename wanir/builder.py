"""GraphBuilder: the only way frontends make graphs. It reads like the PyTorch module it
models::

    b = GraphBuilder(weight_dtype="bf16")
    with b.stage("diffusion_core", invocations=100):
        x = b.input("x", (1, 75600, 5120), "bf16")
        with b.repeat("blocks", 40):
            with b.scope("attn1"):
                q = b.linear(x, 5120, name="to_q")

Every op call runs the op's shape rule, so a malformed graph cannot be built silently. A
node whose op, input types and attributes were already checked (its signature) takes that
check's result (the rules are pure functions of them) instead of running it again.
"""
from __future__ import annotations

from contextlib import contextmanager
from math import copysign
from types import MappingProxyType

from .dtypes import DType, get_dtype
from .errors import GraphError, WanirError
from .graph import Graph, Node, Value, Weight
from .ops import OPS, get_op
from .ops.defs import BINARY, UNARY
from .ops.registry import MAX_ATTR_LIST
from .scope import Scope
from .tensor import TensorType

#: op signatures already checked: (op kind, input types, attributes with their Python types)
#: -> (OpDef, normalized attributes as items, output types, weight shapes as items, weight
#: types by storage dtype). A node's shape and weight rules are pure functions of its op,
#: input types and attributes, so a signature seen once needs no second check. Entries are
#: immutable but for their private dtype -> weight types table, only ever added to (the
#: same types for the same dtype). Bounded: emptied when it reaches _SIGNATURES_MAX entries.
_SIGNATURES: dict = {}
_SIGNATURES_MAX = 8192
#: attribute value types a signature may hold (tuples: of ints only); other values are
#: checked every time
_SIG_SCALARS = frozenset((int, float, bool, str, type(None), DType))
#: the weights of a node that has none (shared: read-only)
_NO_PARAMS = MappingProxyType({})


def _signature(opdef, types: tuple, attrs: dict):
    """The memo key of a node (see _SIGNATURES): the op kind, the input types and each
    attribute's name, value and Python type (so True and 1 differ), or None when an
    attribute value is of a type a key does not hold exactly."""
    if not attrs:
        return (opdef.kind, types)
    key = [opdef.kind, types]
    for k, v in attrs.items():
        t = v.__class__
        if t is tuple:
            if len(v) > MAX_ATTR_LIST:
                return None     # refused by the attribute check, unexamined here
            for x in v:
                if x.__class__ is not int:
                    return None
        elif t not in _SIG_SCALARS or (t is float and v == 0.0 and copysign(1.0, v) < 0):
            return None         # -0.0 is never a key: it equals 0.0
        key += (k, v, t)
    return tuple(key)


class GraphBuilder:
    """Builds a Graph. ``weight_dtype`` is the storage dtype of weights created from here
    on (change it with ``with b.weights("fp32"):``); ``default_stage`` names the stage that
    nodes created outside any ``stage(...)`` fall into."""

    def __init__(self, name: str = "graph", weight_dtype="bf16", default_stage: str = "model"):
        self.graph = Graph(name)
        self._scope: Scope = self.graph.root
        self._wdtype = get_dtype(weight_dtype)
        self._default_stage = default_stage
        self._names: dict[int, dict[str, int]] = {}

    # ------------------------------------------------------------------ scopes
    def _enter(self, scope: Scope) -> "_Entered":
        return _Entered(self, scope)

    def stage(self, name: str, invocations: int = 1):
        """Open a top-level stage that runs ``invocations`` times per generation (a context manager)."""
        if self._scope.kind != "root":
            raise WanirError(f"stage '{name}' must be opened at top level, not inside '{self._scope.path}'")
        return self._enter(self.graph.root.child(name, invocations, "stage"))

    def scope(self, name: str, repeat: int = 1):
        """Open a named scope (a context manager); ``repeat`` > 1 means that many copies with
        distinct weights."""
        return self._enter(self._current().child(name, repeat, "repeat" if repeat > 1 else "scope"))

    def repeat(self, name: str, count: int):
        """Identical structure ``count`` times with distinct weights (an nn.ModuleList), built
        once (a context manager)."""
        return self._enter(self._current().child(name, count, "repeat"))

    def loop(self, name: str, count: int):
        """The same module run ``count`` times (shared weights), built once (a context manager)."""
        return self._enter(self._current().child(name, count, "loop"))

    @contextmanager
    def weights(self, dtype):
        """Weights created inside are stored at ``dtype``."""
        prev, self._wdtype = self._wdtype, get_dtype(dtype)
        try:
            yield
        finally:
            self._wdtype = prev

    @property
    def current_scope(self) -> Scope:
        return self._scope

    def _current(self) -> Scope:
        if self._scope.kind == "root":
            self._scope = self.graph.root.child(self._default_stage, 1, "stage")
        return self._scope

    # ------------------------------------------------------------------ generic op
    def op(self, kind: str, *inputs: Value, name: str | None = None, weight_key: str | None = None,
           **attrs):
        """Add one node of op ``kind``. Returns its output Value (or a tuple when the op has
        several outputs). ``weight_key`` shares this node's weights with every other node
        built with the same key (default: scope path without loop levels + node name)."""
        scope = self._scope
        if scope.kind == "root":
            scope = self._current()
        opdef = OPS.get(kind)
        if opdef is None:
            get_op(kind, f"{scope.path}/{name or kind}")      # raises, naming the close kinds
        for v in inputs:
            if v.__class__ is not Value:
                self._check_inputs(kind, inputs, scope, name)
                break
        if len(inputs) == 1:      # (no comprehension frame for the usual one or two inputs)
            types = (inputs[0].type,)
        elif len(inputs) == 2:
            types = (inputs[0].type, inputs[1].type)
        else:
            types = tuple([v.type for v in inputs])
        sig = _signature(opdef, types, attrs)
        hit = _SIGNATURES.get(sig) if sig is not None else None
        if hit is not None and hit[0] is opdef:
            _, attrs, outs, pshapes, wtypes = hit     # the checked attributes: shared, never written
        else:
            where = f"{scope.path}/{name or kind}"
            attrs = MappingProxyType(opdef.normalize_attrs(attrs, where))   # read-only: nodes share it
            outs = opdef.infer(types, attrs, where)
            pshapes = tuple(opdef.param_shapes(types, attrs).items())
            wtypes = {}
            if sig is not None:
                if len(_SIGNATURES) >= _SIGNATURES_MAX:
                    _SIGNATURES.clear()
                _SIGNATURES[sig] = (opdef, attrs, outs, pshapes, wtypes)
        given = name or kind
        name = self._unique(scope, given)
        params = _NO_PARAMS
        if pshapes:
            params = {}
            base = weight_key or (f"{scope.weight_path}/{name}" if scope.weight_path else name)
            wdtype, weights = self._wdtype, self.graph.weights
            wt = wtypes.get(wdtype)
            if wt is None:       # the weights' types at this storage dtype (kept with the signature)
                wt = wtypes[wdtype] = tuple([TensorType(shape, wdtype) for _, shape in pshapes])
            for (pname, _), t in zip(pshapes, wt):
                key = f"{base}.{pname}"
                old = weights.get(key)
                if old is not None and old.type == t and old.copies == scope.weight_count:
                    params[pname] = old     # a shared weight (same key, type and copies): the same record
                    continue
                w = Weight(key, t, scope.weight_count)
                if old is not None:
                    raise GraphError(f"{scope.path}/{given}: weight '{key}' is shared with another node but has "
                                     f"type {w.type} ×{w.copies}, there {old.type} ×{old.copies}")
                weights[key] = w
                params[pname] = w
        g = self.graph.__dict__
        nodes = g["_nodes"]
        for v in inputs:
            if v.producer not in nodes:
                self.graph.add_node(kind, name, scope, inputs, outs, attrs, params, checked=True)   # raises
        if g.get("_frozen"):
            self.graph.add_node(kind, name, scope, inputs, outs, attrs, params, checked=True)       # raises
        nid = g["_next"]
        g["_next"] = nid + 1
        nodes[nid] = Node(nid, kind, name, scope, inputs, outs, attrs, params, {})
        g["_consumers"] = None
        g["_nx"] = None
        if len(outs) == 1:
            return Value(nid, 0, outs[0])           # node.output(0)
        return tuple(Value(nid, i, t) for i, t in enumerate(outs))

    def _check_inputs(self, kind, inputs, scope, name) -> None:
        """Raise GraphError naming the first input that is not a graph Value."""
        for i, v in enumerate(inputs):
            if not isinstance(v, Value):
                raise GraphError(f"{scope.path}/{name or kind}: input {i} of op '{kind}' is {type(v).__name__}, "
                                 f"not a graph value")

    def _unique(self, scope: Scope, name: str) -> str:
        """``name``, or ``name_1``, ``name_2``, ... if the scope already has it."""
        used = self._names.get(id(scope))
        if used is None:
            used = self._names[id(scope)] = {}
        if name not in used:
            used[name] = 1
            return name
        i = used[name]
        cand = f"{name}_{i}"
        while cand in used:
            i += 1
            cand = f"{name}_{i}"
        used[name] = i + 1
        used[cand] = 1
        return cand

    # ------------------------------------------------------------------ sugar
    def input(self, name: str, shape, dtype="bf16") -> Value:
        """A graph input (placeholder)."""
        return self.op("input", name=name, shape=tuple(shape) if not isinstance(shape, int) else shape, dtype=dtype)

    def parameter(self, name: str, shape, dtype=None) -> Value:
        """A weight used directly as a tensor (stored at the current weight dtype)."""
        return self.op("parameter", name=name, shape=tuple(shape), dtype=dtype or self._wdtype)

    def linear(self, x, out_features: int, bias: bool = True, name: str = "linear", **kw) -> Value:
        return self.op("linear", x, name=name, out_features=out_features, bias=bias, **kw)

    def matmul(self, a, b, name: str = "matmul") -> Value:
        return self.op("matmul", a, b, name=name)

    def bmm(self, a, b, name: str = "bmm") -> Value:
        return self.op("bmm", a, b, name=name)

    def conv1d(self, x, out_channels, kernel, name="conv1d", **kw) -> Value:
        return self.op("conv1d", x, name=name, out_channels=out_channels, kernel=kernel, **kw)

    def conv2d(self, x, out_channels, kernel, name="conv2d", **kw) -> Value:
        return self.op("conv2d", x, name=name, out_channels=out_channels, kernel=kernel, **kw)

    def conv3d(self, x, out_channels, kernel, name="conv3d", **kw) -> Value:
        return self.op("conv3d", x, name=name, out_channels=out_channels, kernel=kernel, **kw)

    def sdpa(self, q, k, v, mask=None, name: str = "sdpa", **kw) -> Value:
        ins = (q, k, v) if mask is None else (q, k, v, mask)
        return self.op("sdpa", *ins, name=name, **kw)

    def layernorm(self, x, affine=True, bias=True, name="layernorm", **kw) -> Value:
        return self.op("layernorm", x, name=name, affine=affine, bias=bias, **kw)

    def rmsnorm(self, x, affine=True, name="rmsnorm", **kw) -> Value:
        return self.op("rmsnorm", x, name=name, affine=affine, **kw)

    def groupnorm(self, x, num_groups, affine=True, name="groupnorm", **kw) -> Value:
        return self.op("groupnorm", x, name=name, num_groups=num_groups, affine=affine, **kw)

    def embedding(self, idx, num_embeddings, embedding_dim, name="embedding") -> Value:
        return self.op("embedding", idx, name=name, num_embeddings=num_embeddings,
                       embedding_dim=embedding_dim, dtype=self._wdtype)

    def softmax(self, x, dim=-1, name="softmax") -> Value:
        return self.op("softmax", x, name=name, dim=dim)

    def rope(self, x, freqs=None, name="rope") -> Value:
        return self.op("rope", *((x,) if freqs is None else (x, freqs)), name=name)

    def upsample(self, x, scale, name=None) -> Value:
        kind = f"upsample_nearest{x.type.rank - 2}d"
        return self.op(kind, x, name=name or kind, scale=scale)

    def pad(self, x, pad, name="pad", value=0.0) -> Value:
        return self.op("pad", x, name=name, pad=tuple(pad), value=value)

    def concat(self, xs, dim=0, name="concat") -> Value:
        return self.op("concat", *xs, name=name, dim=dim)

    def slice(self, x, dim, start=0, end=None, step=1, name="slice") -> Value:
        return self.op("slice", x, name=name, dim=dim, start=start, end=end, step=step)

    def chunk(self, x, chunks, dim=-1, name="chunk"):
        return self.op("chunk", x, name=name, chunks=chunks, dim=dim)

    def reshape(self, x, shape, name="reshape") -> Value:
        return self.op("reshape", x, name=name, shape=tuple(shape))

    def permute(self, x, dims, name="permute") -> Value:
        return self.op("permute", x, name=name, dims=tuple(dims))

    def transpose(self, x, dim0, dim1, name="transpose") -> Value:
        return self.op("transpose", x, name=name, dim0=dim0, dim1=dim1)

    def expand(self, x, shape, name="expand") -> Value:
        return self.op("expand", x, name=name, shape=tuple(shape))

    def contiguous(self, x, name="contiguous") -> Value:
        return self.op("contiguous", x, name=name)

    def cast(self, x, dtype, name="cast") -> Value:
        return self.op("cast", x, name=name, dtype=dtype)

    def scale(self, x, value, name="scale") -> Value:
        return self.op("scale", x, name=name, value=value)

    def add_scalar(self, x, value, name="add_scalar") -> Value:
        return self.op("add_scalar", x, name=name, value=value)

    def reduce(self, kind, x, dims, keepdim=False, name=None) -> Value:
        return self.op(kind, x, name=name or kind, dims=dims, keepdim=keepdim)


class _Entered:
    """Context manager that makes ``scope`` the builder's current scope."""

    __slots__ = ("b", "scope", "prev")

    def __init__(self, b: GraphBuilder, scope: Scope):
        self.b, self.scope, self.prev = b, scope, None

    def __enter__(self) -> Scope:
        self.prev, self.b._scope = self.b._scope, self.scope
        return self.scope

    def __exit__(self, *exc) -> None:
        self.b._scope = self.prev


def _unary(kind):
    def f(self, x, name=kind):
        return self.op(kind, x, name=name)
    f.__name__ = kind
    f.__doc__ = f"elementwise {kind}"
    return f


def _binary(kind):
    def f(self, x, y, name=kind):
        return self.op(kind, x, y, name=name)
    f.__name__ = kind
    f.__doc__ = f"elementwise {kind} with broadcasting"
    return f


for _k in UNARY:
    if not hasattr(GraphBuilder, _k):
        setattr(GraphBuilder, _k, _unary(_k))
for _k in BINARY:
    if not hasattr(GraphBuilder, _k):
        setattr(GraphBuilder, _k, _binary(_k))
