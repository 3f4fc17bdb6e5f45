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

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .dictconfig import select as select_in
from .dictconfig import to_plain
from .errors import ConfigError

#: field metadata of options that change only timing, not the counted graph
TIMING = {"timing": True}
#: the runtime assumed when there is no configuration or it has no runtime group (a graph
#: from a YAML spec): plain diffusers-style behaviour, as wanir modelled before runtimes
#: (wanir/runtime.py holds its values). A composed configuration always names one
#: (config.yaml: wan-official).
DEFAULT_RUNTIME = "diffusers"
#: the attention kernel when neither the configuration nor a runtime names one
DEFAULT_ATTENTION_KERNEL = "flash2"


@dataclass(frozen=True)
class RooflineOptions:
    """``roofline.*``: timing model, fusion policy of the bytes pass, attention kernel."""

    mode: str = field(default="calibrated", metadata=TIMING)   # calibrated | ideal
    fusion: str = "eager"                                       # eager | fused
    attention_kernel: str = DEFAULT_ATTENTION_KERNEL            # a kernel of wanir/data/kernels.yaml


@dataclass(frozen=True)
class MemoryOptions:
    """``memory.*``, checked (:func:`memory_from`): ``offload`` one of OFFLOAD_MODES (none;
    model: whole stages moved in and out; block: the DiT's blocks streamed), ``t5_cpu``,
    ``host`` (hardware name of the host CPU, or auto), ``resident_params`` (DiT parameters
    kept on the GPU under block streaming, int), ``reserve_bytes`` (CUDA context and
    allocator reserve, int). The one memory-options class: the runtime's default offload
    policy is filled in before it is parsed (wanir/runtime.py)."""

    offload: str = "none"
    t5_cpu: bool = False
    host: str = field(default="auto", metadata=TIMING)
    resident_params: int = 0
    reserve_bytes: int = 0
    expandable_segments: bool = False   # PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (passes/allocator.py)
    empty_cache: str = "never"          # the runtime's torch.cuda.empty_cache() rule (passes/allocator.py)

    @property
    def offload_model(self) -> bool:
        """Whether whole stages are moved in and out (``memory.offload_model=true``)."""
        return self.offload == "model"


#: memory.offload_model values as parsed: off, whole stages moved in and out, block streaming
OFFLOAD_MODES = ("none", "model", "block")


def memory_from(m) -> MemoryOptions:
    """The checked :class:`MemoryOptions` of a ``memory`` mapping (None or missing keys:
    the defaults; ``offload_model`` null reads as false). Raises ConfigError naming the key."""
    m = m if m is not None else {}
    off = m.get("offload_model")
    off = False if off is None else off
    if off is True:
        mode = "model"
    elif off is False:
        mode = "none"
    elif off == "block":
        mode = "block"
    else:
        raise ConfigError(f"memory.offload_model must be true, false or block, got {off!r}")
    t5 = m.get("t5_cpu")
    t5 = False if t5 is None else t5
    if not isinstance(t5, bool):
        raise ConfigError(f"memory.t5_cpu must be true or false, got {t5!r}")
    host = m.get("host") or "auto"
    if not isinstance(host, str) or not 0 < len(host) <= 64:
        raise ConfigError(f"memory.host must be a hardware name (host-cpu, host-workstation, auto), got {host!r}")
    rp = m.get("resident_params")
    rp = 0 if rp is None else rp
    if isinstance(rp, bool) or not isinstance(rp, int) or not 0 <= rp <= 10**13:
        raise ConfigError(f"memory.resident_params must be an integer number of parameters in [0, 1e13], got {rp!r}")
    res = m.get("reserve_gib")
    res = 0.0 if res is None else res
    if isinstance(res, bool) or not isinstance(res, (int, float)) or not math.isfinite(res) or not 0 <= res <= 64:
        raise ConfigError(f"memory.reserve_gib must be a number of GiB in [0, 64], got {res!r}")
    exp = m.get("expandable_segments")
    exp = False if exp is None else exp
    if not isinstance(exp, bool):
        raise ConfigError(f"memory.expandable_segments must be true or false, got {exp!r}")
    return MemoryOptions(mode, t5, host, rp, int(round(res * 2**30)), exp)


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


#: dotted keys whose null in a composed configuration means "the options class's field
#: default": the config files say null there and :func:`wanir.config.compose` fills the
#: value from the dataclass field (:func:`option_defaults`), so the value has one home
NULL_IS_DEFAULT: tuple[str, ...] = ("precision.keep_fp32", "precision.act_scales")


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
    defaults, wanir/runtime.py, so it changes counts), ``allow_tf32``: fp32 convolutions
    run as TF32 (PyTorch's cuDNN default; timing only), and ``matmul_tf32``: fp32 matmuls run
    as TF32 (``torch.backends.cuda.matmul.allow_tf32``, False by default in PyTorch >= 1.12;
    timing only), and ``cuda_graphs``: each model call replays a captured CUDA graph, so the
    host issues no per-op work (timing only)."""

    name: str = DEFAULT_RUNTIME
    allow_tf32: bool = field(default=True, metadata=TIMING)
    matmul_tf32: bool = field(default=False, metadata=TIMING)
    cuda_graphs: bool = field(default=False, metadata=TIMING)


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


def option_default(key: str):
    """The field default of the options class that owns the dotted ``key`` (``group.field``
    of :data:`GROUPS`), as the config files would write it: a tuple as a list."""
    group, _, name = key.partition(".")
    value = next(f.default for f in fields(GROUPS[group]) if f.name == name)
    return list(value) if isinstance(value, tuple) else value


def default_home(key: str) -> str:
    """Where the default of the dotted ``key`` lives, for provenance: the module file and the
    options class (e.g. ``wanir/options.py PrecisionOptions``)."""
    return f"wanir/options.py {GROUPS[key.partition('.')[0]].__name__}"


def option_defaults(cfg) -> dict:
    """The fills of a composed tree ``cfg``: dotted key → :func:`option_default` for every key
    of :data:`NULL_IS_DEFAULT` that ``cfg`` holds as null (a key it lacks is left out), in
    that order (a new mapping; ``cfg`` is not changed)."""
    missing = object()
    return {key: option_default(key) for key in NULL_IS_DEFAULT
            if select(cfg, key, missing, keep_null=True) is None}


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
            if type(data).__name__ == "DictConfig":
                data = to_plain(data)
            else:
                data = None
        kw[g] = memory_from(data) if cls is MemoryOptions else _group(cls, data)
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
        missing = object()
        d = select_in(cfg, key, missing)
        if d is missing:
            return default
    return default if (d is None and not keep_null) else d
