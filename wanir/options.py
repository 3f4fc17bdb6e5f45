"""Typed run options: the ``roofline``, ``memory``, ``parallel``, ``precision`` and
``runtime`` groups of a composed configuration, parsed once into frozen dataclasses.

Every default lives here, in the dataclass fields, and nowhere else: passes and backends
take a :class:`RunOptions` (or one of its groups) instead of reading dotted keys from the
raw config. :func:`from_config` is called once per estimate; :func:`of` accepts a config,
a RunOptions or None (all defaults), so callers that still hold a config work unchanged.

A field whose metadata says ``timing=True`` changes only the timing of a counted graph,
never its counts (FLOPs, bytes, memory); :data:`TIMING_KEYS` is derived from those marks,
so a new timing option is one field with ``metadata=TIMING``.

Adding a group: a frozen dataclass with its defaults, one field of :class:`RunOptions` and
one entry of :data:`GROUPS`; adding a key: one field.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

#: field metadata of options that change only timing, not the counted graph
TIMING = {"timing": True}


@dataclass(frozen=True)
class RooflineOptions:
    """``roofline.*``: timing model, fusion policy of the bytes pass, attention kernel."""

    mode: str = field(default="calibrated", metadata=TIMING)   # calibrated | ideal
    fusion: str = "eager"                                       # eager | fused
    attention_kernel: str = "flash2"                            # flash2 | flash3 | math


@dataclass(frozen=True)
class MemoryOptions:
    """``memory.*``: residency of weights on the device and the host that runs host stages."""

    offload_model: Any = None      # None: the runtime's default; true, false or "block"
    t5_cpu: bool = False
    host: str = field(default="auto", metadata=TIMING)


@dataclass(frozen=True)
class PrecisionOptions:
    """``precision.*``: storage and compute dtypes per stage (names from wanir.dtypes)."""

    text_encoder: str = "bf16"
    image_encoder: str = "fp32"
    dit_weights: str = "bf16"
    dit_compute: str = "bf16"
    vae: str = "fp32"
    act_scales: str = "per-token"            # 8-bit GEMMs: activation scale granularity
    keep_fp32: tuple = ("patch_embedding", "condition_embedder", "proj_out")   # modules kept out of 8-bit


@dataclass(frozen=True)
class ParallelOptions:
    """``parallel.*``: the multi-device plan as configured (``auto`` allowed where the
    ``parallel/`` files allow it; :func:`wanir.backends.parallel.resolve_plan` resolves
    it). The plan does not change the single-device graph's counts: the per-device graph
    is derived from it, so every key is a timing key of the counted pipeline graph."""

    name: str = field(default="single", metadata=TIMING)
    degree: Any = field(default=1, metadata=TIMING)
    ulysses: Any = field(default=1, metadata=TIMING)
    ring: Any = field(default=1, metadata=TIMING)
    cfg: Any = field(default=1, metadata=TIMING)
    dp: Any = field(default=1, metadata=TIMING)
    fsdp: Any = field(default=1, metadata=TIMING)
    overlap: bool = field(default=True, metadata=TIMING)
    gpus_per_node: int = field(default=8, metadata=TIMING)
    vae: str = field(default="single", metadata=TIMING)          # single | patch (VAE decode split over the replica)
    intra_node: tuple = field(default=(), metadata=TIMING)   # sorted (key, value) pairs
    network: tuple = field(default=(), metadata=TIMING)      # sorted (key, value) pairs

    def as_mapping(self) -> dict:
        """The ``parallel`` mapping the plan resolver takes."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["intra_node"] = dict(self.intra_node)
        d["network"] = dict(self.network)
        return d

    @property
    def is_multi_device(self) -> bool:
        """Whether the plan (as configured) may use more than one device or shard weights;
        an ``auto`` dimension counts as multi-device."""
        vals = (self.degree, self.ulysses, self.ring, self.cfg, self.dp, self.fsdp)
        return any(v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v > 1) for v in vals)


@dataclass(frozen=True)
class RuntimeOptions:
    """``runtime.*``: which runtime executes the graph (``name``: its DiT lowering and
    defaults, wanir/runtime.py, so it changes counts) and ``allow_tf32``: fp32 convolutions
    run as TF32 (PyTorch's cuDNN default; timing only)."""

    name: str = "wan-official"
    allow_tf32: bool = field(default=True, metadata=TIMING)


@dataclass(frozen=True)
class RunOptions:
    """All run options of one estimate (hashable: usable as a cache key)."""

    roofline: RooflineOptions = RooflineOptions()
    memory: MemoryOptions = MemoryOptions()
    parallel: ParallelOptions = ParallelOptions()
    precision: PrecisionOptions = PrecisionOptions()
    runtime: RuntimeOptions = RuntimeOptions()


#: config group → its options class (the field of RunOptions of the same name)
GROUPS: dict[str, type] = {
    "roofline": RooflineOptions,
    "memory": MemoryOptions,
    "parallel": ParallelOptions,
    "precision": PrecisionOptions,
    "runtime": RuntimeOptions,
}

#: the config key of the device (a group, not a RunOptions field): timing only
HARDWARE_KEY = "hardware"

#: config keys that change only the timing of an annotated graph, not its counts
TIMING_KEYS: tuple[str, ...] = (HARDWARE_KEY,) + tuple(
    f"{g}.{f.name}" for g, cls in GROUPS.items() for f in fields(cls) if f.metadata.get("timing")) + tuple(
    g for g, cls in GROUPS.items() if all(f.metadata.get("timing") for f in fields(cls)))  # whole groups


def count_key(opts: RunOptions) -> tuple:
    """The options that can change a graph's counts (every field not marked timing), as
    resolved in a composed config: runtime defaults filled by the plan or the hardware (a
    default precision, offload policy or attention kernel) show up here even when the
    overrides that caused them are timing keys. Equal keys and equal non-timing overrides
    give equal counts."""
    return tuple((g, f.name, getattr(getattr(opts, g), f.name)) for g in GROUPS
                 for f in fields(GROUPS[g]) if not f.metadata.get("timing"))


def _plain(v):
    """A config value as a hashable plain value (mappings become sorted pairs)."""
    if isinstance(v, Mapping):
        return tuple(sorted((str(k), _plain(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    return v


def _group(cls, data) -> Any:
    if data is None:
        return cls()
    kw = {}
    for f in fields(cls):
        if f.name in data and data[f.name] is not None:
            kw[f.name] = _plain(data[f.name])
    return cls(**kw)


def from_config(cfg) -> RunOptions:
    """Parse the option groups of a composed config (DictConfig or plain mapping) once;
    missing groups and keys (and null values) take the defaults above. The values were
    checked when the config was composed (wanir.config.SCHEMA)."""
    if cfg is None:
        return RunOptions()
    kw = {}
    for g, cls in GROUPS.items():
        data = cfg.get(g) if hasattr(cfg, "get") else None
        if data is not None and not isinstance(data, dict):
            from omegaconf import DictConfig, OmegaConf
            data = OmegaConf.to_container(data, resolve=True) if isinstance(data, DictConfig) else None
        kw[g] = _group(cls, data)
    return RunOptions(**kw)


def of(x) -> RunOptions:
    """``x`` as RunOptions: a RunOptions as is, None as the defaults, a config parsed."""
    if isinstance(x, RunOptions):
        return x
    return from_config(x)


def select(cfg, key: str, default=None, keep_null: bool = False):
    """``cfg``'s value at dotted ``key`` (plain nested mappings, a FrozenMap, or an OmegaConf
    config a caller still holds), or ``default`` when ``cfg`` is None, lacks the key or (unless
    ``keep_null``) holds null there."""
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        d = cfg
        for part in key.split("."):
            if not isinstance(d, dict) or part not in d:
                return default
            d = d[part]
    else:
        from omegaconf import OmegaConf  # late import: a DictConfig from a caller that still holds one

        missing = object()
        d = OmegaConf.select(cfg, key, default=missing)
        if d is missing:
            return default
    return default if (d is None and not keep_null) else d
