"""Stage lowerings a graph transform may run again at another shape, by name.

A frontend registers the function that lowers a stage (``register("wan_vae.decoder",
wan_vae.build_decoder)``) and records, as data on the graph, the name and the arguments it
was lowered with (``graph.meta["vae_decode_source"]``). A transform that re-lowers the stage
per device (the patch-parallel VAE decode, backends/parallel/vae_patch.py) looks the function
up here, so no backend imports a model frontend.
"""
from __future__ import annotations

from typing import Callable

from .errors import GraphError

_LOWERINGS: dict[str, Callable] = {}


def register(name: str, fn: Callable) -> Callable:
    """Register ``fn`` as the lowering called ``name``; returns ``fn``."""
    _LOWERINGS[name] = fn
    return fn


def get(name: str) -> Callable:
    """The lowering registered as ``name``. Raises GraphError naming the known ones."""
    fn = _LOWERINGS.get(name)
    if fn is None:
        raise GraphError(f"no stage lowering {name!r} is registered (known: {', '.join(sorted(_LOWERINGS)) or 'none'})")
    return fn
