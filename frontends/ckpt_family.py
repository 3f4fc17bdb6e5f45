"""The record describing one model family that checkpoint inference recognises, the
registry of families, and the helpers the per-family modules share."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from wanir.errors import ConfigError
from wanir.limits import MAX_LAYERS


@dataclass(frozen=True)
class Family:
    """One family of checkpoints: which component it fills, the config keys it produces
    (in the order of ``wanir/configs/<component>/*.yaml``), and its functions:

    - ``detect(tensors)``: whether tensor names (prefix stripped) belong to this family;
    - ``detect_config(config_json)``: whether a config.json describes this family;
    - ``normalize(tensors, where)`` -> ``(naming, {canonical name: (original name, Tensor)})``;
    - ``infer(normalized, where, config_from_json)`` -> ``(config, assumed, notes)``;
    - ``expected(config)`` -> ``{canonical name: shape}`` of every tensor the config implies;
    - ``read_config(config_json, where)`` -> ``(config, assumed)``.

    ``tied`` maps a tensor that aliases another one to it (counted once); ``optional`` names
    tensors a file may leave out; ``ignored(tensors)``, if given, returns notes on the tensors
    of a file the family does not read."""

    name: str
    component: str
    keys: tuple
    detect: Callable
    detect_config: Callable
    normalize: Callable
    infer: Callable
    expected: Callable
    read_config: Callable
    tied: dict = field(default_factory=dict)
    optional: tuple = ()
    ignored: Callable | None = None


#: family name -> :class:`Family`, in detection order (filled by the per-family modules)
FAMILIES: dict = {}


def register(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (detection tries families in registration order)."""
    FAMILIES[family.name] = family
    return family


def _get(t: dict, name: str, where: str, ndim: int | None = None) -> tuple:
    if name not in t:
        raise ConfigError(f"{where}: tensor '{name}' is missing")
    orig, tensor = t[name]
    if ndim is not None and len(tensor.shape) != ndim:
        raise ConfigError(f"{where}: tensor '{orig}' has shape {list(tensor.shape)}; expected {ndim} dims")
    return tensor.shape


def _indices(t: dict, prefix: str) -> list:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {m.group(1) for k in t if (m := pat.match(k))}

    for d in found:   # bounded before any range() over them
        if len(d) > 7 or int(d) >= MAX_LAYERS:
            raise ConfigError(f"tensor index {prefix}{d[:20]}{'...' if len(d) > 20 else ''}.*: at most {MAX_LAYERS} blocks are read")
    return sorted(int(d) for d in found)


def _fmt(v):
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    if isinstance(v, bool) or v is None:
        return str(v).lower() if v is not None else "null"
    return str(v)
