"""Op definitions: each op kind declares its category, its attributes, its shape rule and
the weight tensors it owns. The builder runs the shape rule on every node it creates."""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..dtypes import DType, get_dtype
from ..errors import ShapeError, UnknownOpError, WanirError
from ..safeio import short
from ..tensor import TensorType

CATEGORIES = (
    "input", "matmul", "conv", "attention", "norm", "elementwise", "reduction",
    "embedding", "data_movement", "communication",
)

_MISSING = object()


@dataclass(frozen=True)
class Attr:
    """One attribute of an op: its type ('int', 'ints', 'float', 'bool', 'str', 'dtype',
    'any'), and a default (``required`` when it has none)."""

    name: str
    type: str
    default: Any = _MISSING
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _MISSING


class ShapeMismatch(Exception):
    """Raised by a shape rule; the builder turns it into a ShapeError with context."""


@dataclass(frozen=True)
class OpDef:
    """An op kind. ``shape`` maps (input types, attrs) to output types; ``params`` maps
    (input types, attrs) to the weights the op owns as name → shape (dtype is the
    graph's weight dtype). ``view`` ops alias their input (no copy, no traffic)."""

    kind: str
    category: str
    shape: Callable[[tuple[TensorType, ...], dict], tuple[TensorType, ...]]
    attrs: tuple[Attr, ...] = ()
    params: Callable[[tuple[TensorType, ...], dict], dict[str, tuple[int, ...]]] | None = None
    n_inputs: tuple[int, int | None] = (1, 1)
    view: bool = False
    doc: str = ""
    attr_map: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"op {self.kind}: unknown category {self.category}")
        self.attr_map.update({a.name: a for a in self.attrs})

    def normalize_attrs(self, attrs: dict, where: str) -> dict:
        """Check ``attrs`` against the declared ones; fill defaults; return a new dict.
        Raises WanirError naming ``where``, the op and the offending attribute."""
        out = {}
        amap = self.attr_map
        for name in attrs:
            if name not in amap:
                allowed = ", ".join(amap) or "none"
                raise WanirError(f"{where}: op '{self.kind}' has no attribute '{name}' (allowed: {allowed})")
        for a in self.attrs:
            v = attrs.get(a.name)
            if v is None:
                if a.required:
                    raise WanirError(f"{where}: op '{self.kind}' needs attribute '{a.name}' ({a.type})")
                out[a.name] = a.default
            elif _plain(a.type, v):   # already what _coerce would return
                out[a.name] = v
            else:
                out[a.name] = _coerce(a, v, f"{where}: op '{self.kind}' attribute '{a.name}'")
        return out

    def infer(self, inputs: tuple[TensorType, ...], attrs: dict, where: str) -> tuple[TensorType, ...]:
        """Run the shape rule; a mismatch raises ShapeError naming ``where``, op and shapes."""
        lo, hi = self.n_inputs
        if len(inputs) < lo or (hi is not None and len(inputs) > hi):
            want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
            raise ShapeError(f"{where}: op '{self.kind}' takes {want} inputs, got {len(inputs)}")
        try:
            outs = self.shape(tuple(inputs), attrs)
        except ShapeMismatch as e:
            shapes = ", ".join(str(t) for t in inputs)
            raise ShapeError(f"{where}: op '{self.kind}' rejects inputs ({shapes}): {e}") from None
        except WanirError as e:
            raise ShapeError(f"{where}: op '{self.kind}': {e}") from None
        return tuple(outs)

    def param_shapes(self, inputs, attrs) -> dict[str, tuple[int, ...]]:
        """Weights this op owns, name → shape."""
        return dict(self.params(inputs, attrs)) if self.params else {}


#: bounds of op attribute values (sizes, counts, axes) and of float attributes
MAX_ATTR_INT = 2**40
MAX_ATTR_FLOAT = 1e30
MAX_ATTR_LIST = 64


def _finite(v) -> bool:
    try:
        return math.isfinite(v) and abs(v) <= MAX_ATTR_FLOAT
    except OverflowError:  # an int too large for a float
        return False


def check_attr_int(v: int, where: str) -> int:
    """``v`` when its magnitude is at most :data:`MAX_ATTR_INT`; else a one-line error."""
    if not -MAX_ATTR_INT <= v <= MAX_ATTR_INT:
        raise WanirError(f"{where} must be an int in [-2**40, 2**40], got {short(v)}")
    return v


def _plain(t: str, v) -> bool:
    """Whether ``v`` is already a valid value of an attribute of type ``t`` that
    :func:`_coerce` returns unchanged (exact types only; everything else goes through it)."""
    c = v.__class__
    if c is int:
        return (t == "int" or t == "ints") and -MAX_ATTR_INT <= v <= MAX_ATTR_INT
    if c is bool:
        return t == "bool"
    if c is str:
        return t == "str"
    if c is tuple:
        if t != "ints" or len(v) > MAX_ATTR_LIST:
            return False
        for x in v:
            if x.__class__ is not int or not -MAX_ATTR_INT <= x <= MAX_ATTR_INT:
                return False
        return True
    if c is DType:
        return t == "dtype"
    return False


def _coerce(a: Attr, v, where: str):
    t = a.type
    if t == "any":
        return v
    if t == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise WanirError(f"{where} must be an int, got {short(v)}")
        return check_attr_int(v, where)
    if t == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
            raise WanirError(f"{where} must be a finite number of magnitude at most {MAX_ATTR_FLOAT:g}, got {short(v)}")
        return float(v)
    if t == "bool":
        if not isinstance(v, bool):
            raise WanirError(f"{where} must be true or false, got {short(v)}")
        return v
    if t == "str":
        if not isinstance(v, str):
            raise WanirError(f"{where} must be a string, got {short(v)}")
        return v
    if t == "ints":
        if isinstance(v, bool):
            raise WanirError(f"{where} must be an int or a list of ints, got {short(v)}")
        if isinstance(v, int):
            return check_attr_int(v, where)
        if isinstance(v, (list, tuple)) and len(v) <= MAX_ATTR_LIST and \
                all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return tuple(check_attr_int(x, where) for x in v)
        raise WanirError(f"{where} must be an int or a list of ints (at most {MAX_ATTR_LIST}), got {short(v)}")
    if t == "dtype":
        try:
            return get_dtype(v)
        except WanirError as e:
            raise WanirError(f"{where}: {e}") from None
    raise AssertionError(t)


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add an op kind to the registry (its kind must be new)."""
    if op.kind in OPS:
        raise ValueError(f"op kind {op.kind!r} registered twice")
    OPS[op.kind] = op
    return op


def get_op(kind: str, where: str = "") -> OpDef:
    """The definition of op ``kind``; an unknown kind raises UnknownOpError listing close ones."""
    try:
        return OPS[kind]
    except KeyError:
        close = difflib.get_close_matches(str(kind), OPS, n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        prefix = f"{where}: " if where else ""
        raise UnknownOpError(f"{prefix}unknown op '{kind}'{hint} (`wanir ops` lists the {len(OPS)} known ops)") from None
