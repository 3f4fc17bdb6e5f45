"""Op definitions: ``OPS`` maps each op kind to its OpDef (category, attributes, shape rule)."""
from .registry import CATEGORIES, OPS, Attr, OpDef, ShapeMismatch, get_op, register
from . import defs as _defs  # noqa: F401  (registers the built-in ops)
from .defs import broadcast

__all__ = ["CATEGORIES", "OPS", "Attr", "OpDef", "ShapeMismatch", "get_op", "register", "broadcast"]
