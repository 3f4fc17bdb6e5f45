"""Runtimes: what a code base executes for the same checkpoint (docs/runtimes.md).

The ``runtime`` config group (``wanir/configs/runtime/*.yaml``) describes one code base:
the DiT lowering variant, default precisions, the default attention kernel, TF32, offload
defaults and semantics, the multi-GPU path and the memory reserve. Its values are
*defaults*: a key the user sets (``precision.dit_weights=bf16``,
``roofline.attention_kernel=flash3``, ``memory.offload_model=false``,
``memory.reserve_gib=2``) wins; a key left ``null`` takes the runtime's value.

:func:`runtime_defaults` gives those keys' values once, when the configuration is
resolved (wanir.config.compose fills them into a new tree; :func:`config_for_plan` moves a
configuration to another plan);
:func:`runtime_options` and :func:`memory_options` are the one place the runtime's own
keys and the new ``memory`` keys are read (typed, checked, immutable).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

from .dictconfig import create, to_plain
from .errors import ConfigError
from .options import DEFAULT_ATTENTION_KERNEL, DEFAULT_RUNTIME, OFFLOAD_MODES, MemoryOptions, PrecisionOptions
from .options import from_config as _run_options_of
from .options import memory_from, select
from .scenario import Run, freeze, thaw

#: the DiT lowering variants of frontends/wan_dit.py
LOWERINGS = ("official", "diffusers")
#: multi-GPU paths: the official code's xDiT/yunchang Ulysses (permute copies around each
#: all-to-all, FlashAttention-2) or a plain sequence-parallel implementation
MULTI_GPU_PATHS = ("official", "plain")
DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "int8", "int4")
PRECISION_KEYS = ("text_encoder", "image_encoder", "dit_weights", "dit_compute", "vae")
#: runtime.empty_cache values: which torch.cuda.empty_cache() calls a runtime makes (the rules
#: are passes/allocator.py's EMPTY_CACHE_RULES)
EMPTY_CACHE = ("official", "never")


@dataclass(frozen=True)
class Runtime:
    """One runtime's settings (see the module docstring). Sizes in GiB, rates as fractions."""

    name: str
    dit_lowering: str
    allow_tf32: bool
    attention_kernel: str
    attention_kernel_wan22_sm90: str
    offload_default: str            # "single-device" | "always" | "never"
    pageable_copy_efficiency: float
    prefetch_blocks: bool
    reserve_gib: float
    multi_gpu: str
    precision: tuple
    dit_weights_fsdp: str
    fsdp_shard_dtype: str | None = None
    empty_cache: str = "never"      # torch.cuda.empty_cache() calls: passes/allocator.py EMPTY_CACHE_RULES

    def precision_default(self, key: str, fsdp: bool = False) -> str:
        """The runtime's dtype for ``precision.<key>`` (``dit_weights`` under FSDP: its FSDP value)."""
        if key == "dit_weights" and fsdp:
            return self.dit_weights_fsdp
        return dict(self.precision)[key]


_select = select


def _need(cond, key, allowed, v):
    if not cond:
        raise ConfigError(f"runtime.{key} must be {allowed}, got {v!r}")


def runtime_options(cfg) -> Runtime:
    """The checked :class:`Runtime` of ``cfg.runtime``; a config without a runtime group (or
    None) runs ``wanir.options.DEFAULT_RUNTIME`` with the values below, which are also what a
    profile leaves out takes (precisions: PrecisionOptions' defaults)."""
    r = _select(cfg, "runtime", None)
    if r is None:   # no runtime group: the values below (DEFAULT_RUNTIME)
        r = {}
    if not isinstance(r, dict) and hasattr(r, "items"):
        r = to_plain(r)
    if not isinstance(r, dict):
        raise ConfigError(f"runtime must be a mapping (a runtime/ config), got {type(r).__name__}")
    known = {"name", "description", "dit_lowering", "allow_tf32", "matmul_tf32", "cuda_graphs", "attention_kernel", "attention_kernel_wan22_sm90",
             "offload_model", "pageable_copy_efficiency", "prefetch_blocks", "reserve_gib", "multi_gpu",
             "precision", "dit_weights_fsdp", "fsdp_shard_dtype", "empty_cache", "defaults_applied"}
    extra = sorted(set(r) - known)
    if extra:
        raise ConfigError(f"unknown key(s) runtime.{', runtime.'.join(extra)}; keys: {', '.join(sorted(known))}")
    name = r.get("name", DEFAULT_RUNTIME)
    _need(isinstance(name, str) and 0 < len(name) <= 64, "name", "a name of at most 64 characters", name)
    low = r.get("dit_lowering", "diffusers")
    _need(low in LOWERINGS, "dit_lowering", f"one of {', '.join(LOWERINGS)}", low)
    tf32 = r.get("allow_tf32", True)
    _need(isinstance(tf32, bool), "allow_tf32", "true or false", tf32)
    mtf32 = r.get("matmul_tf32", False)
    _need(isinstance(mtf32, bool), "matmul_tf32", "true or false", mtf32)
    graphs = r.get("cuda_graphs", False)
    _need(isinstance(graphs, bool), "cuda_graphs", "true or false", graphs)
    kern = r.get("attention_kernel", DEFAULT_ATTENTION_KERNEL)
    _need(isinstance(kern, str) and 0 < len(kern) <= 32, "attention_kernel", "a kernel name", kern)
    k22 = r.get("attention_kernel_wan22_sm90", kern)
    _need(isinstance(k22, str) and 0 < len(k22) <= 32, "attention_kernel_wan22_sm90", "a kernel name", k22)
    off = r.get("offload_model", "never")
    _need(off in ("single-device", "always", "never"), "offload_model", "one of single-device, always, never", off)
    pce = r.get("pageable_copy_efficiency", 1.0)
    _need(not isinstance(pce, bool) and isinstance(pce, (int, float)) and math.isfinite(pce) and 0 < pce <= 1,
          "pageable_copy_efficiency", "a number in (0, 1]", pce)
    pf = r.get("prefetch_blocks", False)
    _need(isinstance(pf, bool), "prefetch_blocks", "true or false", pf)
    res = r.get("reserve_gib", 0.0)
    _need(not isinstance(res, bool) and isinstance(res, (int, float)) and math.isfinite(res) and 0 <= res <= 64,
          "reserve_gib", "a number of GiB in [0, 64]", res)
    mg = r.get("multi_gpu", "plain")
    _need(mg in MULTI_GPU_PATHS, "multi_gpu", f"one of {', '.join(MULTI_GPU_PATHS)}", mg)
    prec = r.get("precision") or {}
    _need(isinstance(prec, dict), "precision", "a mapping of precision keys to dtypes", prec)
    bad = sorted(set(prec) - set(PRECISION_KEYS))
    _need(not bad, "precision", f"a mapping with keys {', '.join(PRECISION_KEYS)}", bad)
    base = {k: getattr(PrecisionOptions(), k) for k in PRECISION_KEYS}
    for k, v in prec.items():
        _need(v in DTYPES, f"precision.{k}", f"one of {', '.join(DTYPES)}", v)
        base[k] = v
    fsdp_w = r.get("dit_weights_fsdp", base["dit_weights"])
    _need(fsdp_w in DTYPES, "dit_weights_fsdp", f"one of {', '.join(DTYPES)}", fsdp_w)
    shard = r.get("fsdp_shard_dtype")
    _need(shard is None or shard in DTYPES, "fsdp_shard_dtype", f"null or one of {', '.join(DTYPES)}", shard)
    ec = r.get("empty_cache", "never")
    _need(ec in EMPTY_CACHE, "empty_cache", f"one of {', '.join(EMPTY_CACHE)}", ec)
    return Runtime(name, low, tf32, kern, k22, off, float(pce), pf, float(res), mg,
                   tuple(sorted(base.items())), fsdp_w, shard, ec)


def default_attention_kernel(rt: Runtime, model_family: str | None, hw_family: str | None) -> str:
    """The attention kernel the runtime runs when ``roofline.attention_kernel`` is null:
    its ``attention_kernel``, or ``attention_kernel_wan22_sm90`` for a Wan2.2 model on an
    sm90 (Hopper) GPU. ``sdpa`` is resolved per GPU family by the kernel model."""
    return rt.attention_kernel_wan22_sm90 if (model_family == "wan2.2" and hw_family == "sm90") else rt.attention_kernel


def attention_kernel_for(cfg, hw) -> str:
    """The attention kernel name ``cfg`` runs on the hardware ``hw``: ``roofline.attention_kernel``
    as the user set it, or, when the runtime filled it (``runtime.defaults_applied``), the
    runtime's default for ``hw``'s family (:func:`default_attention_kernel`) — so re-timing one
    config on another GPU (``wanir size``, ``multi_device_cost``) runs what the runtime runs
    there. May be ``sdpa`` (resolved per family by :func:`wanir.kernels.resolve_attention`)."""
    kern = _select(cfg, "roofline.attention_kernel", None)
    applied = list(_select(cfg, "runtime.defaults_applied", []) or [])
    if kern is None or "roofline.attention_kernel" in applied:
        return default_attention_kernel(runtime_options(cfg), _select(cfg, "model.family"), hw.family)
    return kern


@functools.lru_cache(maxsize=1)
def bare_run() -> Run:
    """The :class:`wanir.scenario.Run` of no configuration, for a graph timed on its own:
    the run options' defaults, :data:`wanir.options.DEFAULT_RUNTIME` (:func:`runtime_options`
    of None), the default residency; no hardware and no plan of its own."""
    return Run(None, "", _run_options_of(None), runtime_options(None), memory_options(None), None, False)


def run_attention_kernel(run, hw) -> str:
    """The attention kernel name a resolved :class:`wanir.scenario.Run` runs on the hardware
    ``hw``: the runtime's default for ``hw``'s family (:func:`default_attention_kernel`) when
    the runtime chose it (``run.kernel_from_runtime``), else ``roofline.attention_kernel`` as
    the user set it — what :func:`attention_kernel_for` gives the run's configuration. May be
    ``sdpa`` (resolved per family by :func:`wanir.kernels.resolve_attention`)."""
    if run.kernel_from_runtime:
        return default_attention_kernel(run.runtime, run.model_family, hw.family)
    return (run.configured_options or run.options).roofline.attention_kernel


def _plan_sizes(cfg) -> tuple[int, int]:
    """(devices, FSDP degree) of ``cfg.parallel`` as far as they can be read without the
    parallel backend: ``degree`` (or the product of the dimensions) and ``fsdp`` (``auto``:
    all devices). A malformed plan reads as one device; the plan's own check reports it."""
    p = _select(cfg, "parallel", None)
    if p is None:
        return 1, 1

    def num(v):
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else None
    g = p.get if hasattr(p, "get") else (lambda k, d=None: d)
    dims = [num(g(d, 1)) for d in ("ulysses", "ring", "cfg", "dp")]
    degree = num(g("degree", None))
    if degree is None:
        degree = math.prod(d for d in dims if d) if all(d is not None or g(k, 1) == "auto"
                                                      for d, k in zip(dims, ("ulysses", "ring", "cfg", "dp"))) else 1
    f = g("fsdp", 1)
    fsdp = degree if f == "auto" else (num(f) or 1)
    return degree, fsdp


def runtime_defaults(cfg) -> dict:
    """The values the runtime fills for keys left null, by dotted key, in order (a new
    mapping; ``cfg`` is not changed): ``precision.*`` (``dit_weights`` from
    ``runtime.dit_weights_fsdp`` when the plan shards weights), ``roofline.attention_kernel``,
    ``memory.offload_model`` (``single-device``: on for one device, off for several, as the
    official ``generate.py``) and ``memory.reserve_gib``. Raises ConfigError for a malformed
    runtime. :func:`wanir.config.compose` applies them and records their provenance."""
    rt = runtime_options(cfg)
    degree, fsdp_n = _plan_sizes(cfg)
    fsdp = fsdp_n > 1
    out = {}
    missing = "__missing__"

    def null(key):
        return _select(cfg, key, missing, keep_null=True) is None

    for k in PRECISION_KEYS:
        if null(f"precision.{k}"):
            out[f"precision.{k}"] = rt.precision_default(k, fsdp)
    if _select(cfg, "roofline") is not None and null("roofline.attention_kernel"):
        out["roofline.attention_kernel"] = default_attention_kernel(rt, _select(cfg, "model.family"),
                                                                    _select(cfg, "hardware.family"))
    if _select(cfg, "memory") is not None:
        if null("memory.offload_model"):
            out["memory.offload_model"] = offload_default(rt, degree)
        if null("memory.reserve_gib"):
            out["memory.reserve_gib"] = rt.reserve_gib
    return out


def config_for_plan(cfg, parallel: dict):
    """A copy of the composed ``cfg`` with ``parallel.*`` set to ``parallel`` (plan keys such
    as degree, ulysses, ring, cfg, dp, fsdp) and the runtime's defaults re-applied for that
    plan: every key the runtime filled (``runtime.defaults_applied``) is filled again — DiT
    weights under FSDP, offload on one device — while the keys the user set stay. The one
    way a config is moved to another plan, so the estimate, ``multi_device_cost`` and
    ``wanir size`` time the same plan alike. A read-only tree gives a read-only tree (a new
    one: nothing changes in place); a DictConfig a DictConfig."""
    if isinstance(cfg, dict):
        return freeze(_tree_for_plan(thaw(cfg), parallel))
    return create(_tree_for_plan(to_plain(cfg), parallel))


def _tree_for_plan(tree: dict, parallel: dict) -> dict:
    def put(key, value):
        d = tree
        parts = key.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value

    for key in list(_select(tree, "runtime.defaults_applied", []) or []):
        put(key, None)
    for k, v in parallel.items():
        put(f"parallel.{k}", v)
    filled = runtime_defaults(tree)
    for key, value in filled.items():
        put(key, value)
    if isinstance(tree.get("runtime"), dict):
        tree["runtime"]["defaults_applied"] = list(filled)
    return tree


def offload_default(rt: Runtime, devices: int) -> bool:
    """Whether the runtime offloads by default on ``devices`` devices."""
    return rt.offload_default == "always" or (rt.offload_default == "single-device" and devices == 1)


def memory_options_for_plan(cfg, devices: int) -> "MemoryOptions":
    """:func:`memory_options` for a plan on ``devices`` devices: when ``memory.offload_model``
    was the runtime's default (not set by the user), it follows that plan's device count, as
    the official ``generate.py`` does."""
    applied = _select(cfg, "runtime.defaults_applied", []) or []
    return memory_for_plan(memory_options(cfg), runtime_options(cfg), "memory.offload_model" in list(applied),
                           devices)


def memory_for_plan(mem: "MemoryOptions", rt: Runtime, offload_from_runtime: bool, devices: int) -> "MemoryOptions":
    """``mem`` on a plan of ``devices`` devices: an offload policy that is the runtime's
    default (``offload_from_runtime``) follows the device count (:func:`offload_default`)."""
    if offload_from_runtime and mem.offload in ("none", "model"):
        mem = replace(mem, offload="model" if offload_default(rt, devices) else "none")
    return mem


def memory_options(cfg) -> MemoryOptions:
    """The checked :class:`wanir.options.MemoryOptions` of ``cfg`` (defaults when cfg is None
    or lacks keys), with the runtime's ``empty_cache`` rule (passes/allocator.py)."""
    mem = memory_from(_select(cfg, "memory", None))
    if _select(cfg, "runtime", None) is not None:
        mem = replace(mem, empty_cache=runtime_options(cfg).empty_cache)
    return mem


#: hardware whose host is a workstation CPU (consumer cards); every other GPU is taken to
#: sit in a server with the ``host-cpu`` entry
WORKSTATION_GPUS = ("rtx-4090",)


def host_name(mem: MemoryOptions, hw_name: str | None) -> str:
    """The host hardware entry: ``memory.host`` unless it is ``auto``; ``auto`` picks the
    machine class of the GPU (host-workstation for consumer cards, host-cpu otherwise)."""
    if mem.host != "auto":
        return mem.host
    return "host-workstation" if hw_name in WORKSTATION_GPUS else "host-cpu"
