"""What one estimate is about, resolved once: :class:`Scenario` and its parts, all frozen.

:func:`wanir.resolve.resolve` is the only maker of a Scenario from overrides and config
files. Its parts:

- ``config``: every resolved value as a read-only tree (:class:`FrozenMap`), defaults filled;
- ``build`` (:class:`Build`): what changes counts — the model's components as typed,
  checked dataclasses, the resolved workload, stored and compute precisions, the lowering
  variant, the residency that the memory pass counts, graph transforms (cache, attention,
  distill, tiling);
- ``run`` (:class:`Run`): what changes only time and memory fit — hardware, runtime
  profile, timing mode, kernels' TF32 use, the parallel plan, the host;
- ``provenance``: for every value of ``config`` (dotted key), its :class:`Source`.

The split is a type: :func:`wanir.estimate.count` takes a Build and is cached on it;
:func:`wanir.estimate.time` takes its result and a Run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from collections import abc
from typing import Any, Iterator, Mapping

from .options import RunOptions


class FrozenMap(dict):
    """A read-only mapping that also reads as attributes (``m.dit.dim``): the resolved
    configuration as frontends and passes see it. Nested mappings are FrozenMaps, lists are
    tuples; every mutating method raises TypeError. Hashable (by content), so a tree of
    them is a cache key; pickles as a plain mapping."""

    __slots__ = ("_hash",)

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def _ro(self, *a, **k):
        raise TypeError("a resolved configuration is read-only; change it with an override and resolve again")

    __setitem__ = __delitem__ = _ro
    update = pop = popitem = clear = setdefault = _ro
    __ior__ = _ro

    def __setattr__(self, key, value):
        if key == "_hash":
            object.__setattr__(self, key, value)
            return
        self._ro()

    def __hash__(self):
        try:
            return self._hash
        except AttributeError:
            h = hash(tuple(sorted(((k, v) for k, v in self.items()), key=lambda kv: str(kv[0]))))
            object.__setattr__(self, "_hash", h)
            return h

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return thaw(self)    # a deep copy is for changing: plain, mutable containers

    def __reduce__(self):
        return (_frozen_from, (dict(self),))


def _frozen_from(d: dict) -> FrozenMap:
    return freeze(d)


_SCALARS = (int, float, str, bool, type(None), bytes)


def freeze(v) -> Any:
    """``v`` with every mapping made a :class:`FrozenMap` and every list a tuple (deep)."""
    t = type(v)
    if t in _SCALARS or t is FrozenMap:
        return v
    if t is dict or isinstance(v, abc.Mapping):
        return FrozenMap((k, freeze(x)) for k, x in v.items())
    if t is list or t is tuple:
        return tuple(x if type(x) in _SCALARS or (type(x) is tuple and _flat(x)) else freeze(x) for x in v)
    return v


def _flat(t: tuple) -> bool:
    """Whether a tuple holds only scalars (already frozen: kept as it is)."""
    for y in t:
        if type(y) not in _SCALARS:
            return False
    return True


def thaw(v) -> Any:
    """A mutable deep copy of a frozen value: mappings become dicts, tuples lists."""
    t = type(v)
    if t in _SCALARS:
        return v
    if t is dict or t is FrozenMap or isinstance(v, abc.Mapping):
        return {k: thaw(x) for k, x in v.items()}
    if t is tuple:
        return [thaw(x) for x in v]
    return v


def flat_items(tree: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf value) of every leaf of ``tree`` (an empty mapping is a leaf)."""
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            yield from flat_items(v, key + ".")
        else:
            yield key, v


#: kinds of :class:`Source`, in the order --explain explains them
SOURCE_KINDS = ("user", "runtime", "model", "file", "plan", "default")


@dataclass(frozen=True)
class Source:
    """Where a value came from: ``kind`` (one of SOURCE_KINDS: the user's override or group
    choice, a runtime profile's default, the model's own value, a checkpoint file read by
    ``model.from``, the parallel plan, or wanir's default) and ``detail`` (the override, the
    file or the profile)."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})" if self.detail else self.kind


@dataclass(frozen=True)
class Build:
    """Everything that changes counts (FLOPs, bytes, parameters, memory), typed: ``spec``
    (:class:`wanir.frontends.pipeline.PipelineSpec`: the model's facts, each component's
    checked hyperparameters, the Wan2.2 options, the optimizations, the VAE tiling — what the
    frontends and passes read), ``workload`` (the resolved
    :class:`wanir.frontends.pipeline.Workload`), ``options`` (the typed option groups:
    precision, fusion and attention kernel, ``parallel.cfg``), ``memory`` (the checked
    residency, ``wanir.options.MemoryOptions``), the runtime's DiT ``lowering`` and
    ``runtime_name``. ``config``: the count-relevant groups of the resolved configuration,
    read-only — the provenance and explain view it was made from (nothing below the
    resolver reads it); it is the Build's identity: ``spec`` is derived from it and the
    workload, so it is left out of comparison and hashing (a cheap cache key)."""

    config: FrozenMap
    workload: Any
    options: RunOptions
    memory: Any
    lowering: str
    runtime_name: str
    spec: Any = field(compare=False, hash=False)

    @property
    def model(self) -> str:
        """The model's name."""
        return self.spec.model.name


#: what makes a Build of a composed configuration (registered by wanir.resolve, the one
#: reader of configurations; see :func:`build_of_config`)
_BUILD_MAKERS: list = []


def register_build_maker(fn) -> None:
    """Register ``fn(cfg) -> Build``, the resolver's maker of a Build from a configuration
    composed elsewhere (wanir.resolve registers it when imported)."""
    _BUILD_MAKERS[:] = [fn]


def build_of_config(cfg) -> Build:
    """The :class:`Build` of a composed configuration a caller still holds (a read-only tree
    or a mapping with defaults filled, e.g. a configuration moved to another parallel plan),
    made by the resolver. Raises RuntimeError when no resolver is loaded."""
    if not _BUILD_MAKERS:
        raise RuntimeError("no resolver is loaded: import wanir (wanir.resolve) before lowering a configuration")
    return _BUILD_MAKERS[0](cfg)


@dataclass(frozen=True)
class Run:
    """Everything that changes only time and memory fit: ``hardware`` (a frozen
    :class:`wanir.hardware.Hardware`; compared by ``hardware_key``, its content), ``options``
    (typed groups: timing mode, kernel, TF32, plan as configured), ``runtime`` (the checked
    :class:`wanir.runtime.Runtime`), ``memory`` (checked residency, host included), ``plan``
    (the resolved multi-device Plan, None on one device) and ``offload_from_runtime``
    (whether ``memory.offload_model`` is the runtime's default, so it follows a plan's
    device count). Under a plan, ``options``, ``memory`` and the Build are the pipeline on one
    device as the runtime runs it there (what the estimate's stages and total report);
    ``configured_options`` and ``config`` are the configuration as given, the plan's;
    ``plan_build`` and ``plan_run`` (a Run without a plan of its own) are the Build and run
    options of that configuration, from which the plan's per-device graph is made."""

    hardware: Any = field(compare=False, hash=False)
    hardware_key: str
    options: RunOptions
    runtime: Any
    memory: Any
    plan: Any
    offload_from_runtime: bool
    config: FrozenMap = field(compare=False, hash=False, default=None)
    configured_options: RunOptions | None = None
    plan_build: Any = None
    plan_run: Any = None


@dataclass(frozen=True)
class Scenario:
    """One resolved estimate: ``config`` (every value, read-only), ``build``, ``run``,
    ``provenance`` (dotted key → :class:`Source`), ``inferred`` (what ``model.from`` read,
    plain data) and ``warnings``."""

    config: FrozenMap = field(compare=False, hash=False)
    build: Build
    run: Run
    provenance: Mapping = field(compare=False, hash=False, default_factory=lambda: MappingProxyType({}))
    inferred: FrozenMap | None = None

    @property
    def model(self) -> str:
        """The model's name."""
        return self.build.model

    def explain(self) -> list[tuple[str, Any, Source]]:
        """(dotted key, value, source) of every resolved value, in config order; the
        resolved workload's sizes and steps are shown with their source too."""
        out = []
        wl = self.build.workload
        for key, v in flat_items(self.config):
            if key.startswith("workload.") and v is None and hasattr(wl, key.split(".", 1)[1]):
                v = getattr(wl, key.split(".", 1)[1])
            out.append((key, v, self.provenance.get(key, Source("default"))))
        return out
