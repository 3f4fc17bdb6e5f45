"""TensorType: an immutable (shape, dtype) pair with concrete Python-int dimensions."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from .dtypes import DType, get_dtype
from .errors import WanirError


@dataclass(frozen=True)
class TensorType:
    """A tensor's type: ``shape`` (tuple of positive ints) and ``dtype``."""

    shape: tuple[int, ...]
    dtype: DType
    #: number of elements and size in bytes, computed once (a type never changes)
    numel: int = field(init=False, repr=False, compare=False)
    nbytes: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        shape = self.shape
        if type(shape) is not tuple:
            shape = tuple(shape)
            object.__setattr__(self, "shape", shape)
        for d in shape:
            if type(d) is not int or d <= 0:
                if isinstance(d, bool) or not isinstance(d, int):
                    raise WanirError(f"tensor dimensions must be ints, got {shape!r}")
                if d <= 0:
                    raise WanirError(f"tensor dimensions must be positive, got {shape!r}")
                object.__setattr__(self, "shape", tuple(int(x) for x in shape))   # int subclasses
                break
        dtype = self.dtype
        if type(dtype) is not DType:
            dtype = get_dtype(dtype)
            object.__setattr__(self, "dtype", dtype)
        n = prod(self.shape)
        state = self.__dict__     # the fields computed once (object.__setattr__'s effect, without the call)
        state["numel"] = n
        state["nbytes"] = dtype.nbytes(n)
        state["_hash"] = hash((self.shape, dtype))     # not a field: kept out of fields(), repr and pickles

    def __eq__(self, other):
        if self is other:
            return True
        if other.__class__ is not TensorType:
            return NotImplemented
        return self.shape == other.shape and self.dtype == other.dtype

    def __hash__(self):
        return self._hash

    def __reduce__(self):
        # made again from its fields: the cached hash of a str-holding tuple differs between processes
        return (TensorType, (self.shape, self.dtype))

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def with_dtype(self, dtype) -> "TensorType":
        """The same shape at another dtype."""
        return TensorType(self.shape, get_dtype(dtype))

    def __str__(self) -> str:
        return f"{self.dtype.name}[{','.join(map(str, self.shape))}]"
