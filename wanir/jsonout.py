"""JSON output: strict JSON only (``allow_nan=False``): a non-finite number is an error
naming where it is, never ``NaN``/``Infinity`` in a document."""
from __future__ import annotations

import json
import math

from .errors import WanirError


def _where(obj, path="$"):
    if isinstance(obj, float) and not math.isfinite(obj):
        return path
    if isinstance(obj, dict):
        for k, v in obj.items():
            w = _where(v, f"{path}.{k}")
            if w:
                return w
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            w = _where(v, f"{path}[{i}]")
            if w:
                return w
    return None


def dumps(obj, **kw) -> str:
    """``json.dumps(obj, allow_nan=False, **kw)``; a non-finite float raises WanirError
    naming its JSON path."""
    try:
        return json.dumps(obj, allow_nan=False, **kw)
    except ValueError:
        raise WanirError(f"result has a non-finite number at {_where(obj) or '?'}; refusing to write invalid JSON") \
            from None
