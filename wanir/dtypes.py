"""Data types of tensors in the IR: a name and a width in bits."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import WanirError


@dataclass(frozen=True, eq=False)
class DType:
    """A scalar type. ``bits`` is its width; ``nbytes(n)`` the bytes of n elements."""

    name: str
    bits: int

    def __eq__(self, other):
        if self is other:
            return True
        if other.__class__ is not DType:
            return NotImplemented
        return self.name == other.name and self.bits == other.bits

    def __hash__(self):
        return hash((self.name, self.bits))

    def nbytes(self, numel: int) -> int:
        """Bytes of ``numel`` elements of this type (rounded up to whole bytes), an int."""
        return (numel * self.bits + 7) // 8

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.name


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        DType("fp64", 64),
        DType("fp32", 32),
        DType("tf32", 32),
        DType("bf16", 16),
        DType("fp16", 16),
        DType("fp8_e4m3", 8),
        DType("fp8_e5m2", 8),
        DType("int64", 64),
        DType("int32", 32),
        DType("int8", 8),
        DType("int4", 4),
        DType("bool", 8),
    )
}

ALIASES = {"float64": "fp64", "double": "fp64", "float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
           "fp8": "fp8_e4m3", "long": "int64"}


def get_dtype(name: "str | DType") -> DType:
    """Return the DType called ``name`` (aliases such as ``bfloat16`` allowed)."""
    if isinstance(name, DType):
        return name
    key = ALIASES.get(str(name), str(name))
    try:
        return DTYPES[key]
    except KeyError:
        raise WanirError(f"unknown dtype {name!r}; allowed: {', '.join(DTYPES)}") from None
