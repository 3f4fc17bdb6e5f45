"""Documented sane ranges of every number a user or a file supplies, checked before any
arithmetic: type (an integer field refuses floats and booleans), finiteness, range.

:data:`LIMITS` maps a config key to its rule; :func:`check_config` checks a composed
config against it, :func:`check_component` checks a component's config (``dit``,
``text_encoder``, ``image_encoder``, ``vae``) read from a file before it is used, and
:func:`check_json_numbers` bounds every number of a raw ``config.json``. docs/limits.md
lists them all. Errors are one-line :class:`wanir.errors.ConfigError` naming the key, the
allowed range and the (truncated) value.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .safeio import short

#: most transformer / encoder layers (and block indices read from a checkpoint)
MAX_LAYERS = 1024
#: largest model width-like dimension (hidden size, FFN size, channels)
MAX_DIM = 2**20
#: largest vocabulary
MAX_VOCAB = 2**24
#: most devices of a parallel plan
MAX_DEVICES = 4096
#: most points of one sweep
MAX_SWEEP_POINTS = 100_000
#: most worker processes of a sweep (-j); a larger -j than the usable CPU cores is capped at them
MAX_JOBS = 64
#: range of a positive hardware spec number (in its key's unit: TFLOP/s, TB/s, GB/s, GiB, us)
HW_MIN, HW_MAX = 1e-6, 1e9
#: slowest inter-node network a plan may name, GB/s per GPU (a 100 Mb/s link is 0.0125): below
#: it a collective's time overflows to inf
MIN_NETWORK_GBPS = 0.01
#: smallest achieved fraction of a link's bandwidth
MIN_LINK_EFFICIENCY = 0.01
#: largest magnitude of any number read from a config.json
MAX_JSON_NUMBER = 2**40


@dataclass(frozen=True)
class Rule:
    """``kind``: int, float, bool, ints (a list of ints), bools (a list of booleans); ``lo``/``hi``
    inclusive bounds (of each element for lists); ``length``: allowed list lengths;
    ``optional``: null allowed; ``lo_open``: the lower bound is exclusive (floats)."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    optional: bool = False
    length: tuple[int, int] | None = None
    lo_open: bool = False

    def allowed(self) -> str:
        lo = "(" if self.lo_open else "["
        rng = f" in {lo}{_n(self.lo)}, {_n(self.hi)}]" if self.lo is not None and self.hi is not None else ""
        what = {"int": "an integer", "float": "a finite number", "ints": "a list of integers",
                "bools": "a list of true/false", "bool": "true or false"}[self.kind]
        if self.length is not None:
            a, b = self.length
            what = what.replace("a list of", f"a list of {a}" if a == b else f"a list of {a} to {b}")
        if self.kind == "ints" and rng:
            rng = " each" + rng
        return what + rng + (" or null" if self.optional else "")


def _n(v) -> str:
    if isinstance(v, float) and (abs(v) >= 1e6 or 0 < abs(v) < 1e-3):
        return f"{v:g}"
    if isinstance(v, int) and v >= 2**16 and v & (v - 1) == 0:
        return f"2**{v.bit_length() - 1}"
    return str(v)


def _int(lo, hi, optional=False):
    return Rule("int", lo, hi, optional)


def _float(lo, hi, optional=False, lo_open=False):
    return Rule("float", lo, hi, optional, lo_open=lo_open)


_DIT = {
    "patch_size": Rule("ints", 1, 64, length=(3, 3)),
    "num_attention_heads": _int(1, 1024),
    "attention_head_dim": _int(1, 4096),
    "in_channels": _int(1, 4096),
    "out_channels": _int(1, 4096),
    "text_dim": _int(1, MAX_DIM),
    "freq_dim": _int(2, MAX_DIM),
    "ffn_dim": _int(1, MAX_DIM),
    "num_layers": _int(1, MAX_LAYERS),
    "eps": _float(0.0, 1.0, lo_open=True),
    "image_dim": _int(1, MAX_DIM, optional=True),
    "added_kv_proj_dim": _int(1, MAX_DIM, optional=True),
    "rope_max_seq_len": _int(1, 2**24),
}
_TEXT = {
    "vocab_size": _int(1, MAX_VOCAB),
    "d_model": _int(1, MAX_DIM),
    "d_kv": _int(1, 4096),
    "d_ff": _int(1, MAX_DIM),
    "num_layers": _int(1, MAX_LAYERS),
    "num_heads": _int(1, 1024),
    "relative_attention_num_buckets": _int(1, 4096),
    "relative_attention_max_distance": _int(1, 2**20),
}
_IMAGE = {
    "hidden_size": _int(1, MAX_DIM),
    "intermediate_size": _int(1, MAX_DIM),
    "num_hidden_layers": _int(1, MAX_LAYERS),
    "num_attention_heads": _int(1, 1024),
    "patch_size": _int(1, 1024),
    "image_size": _int(1, 16384),
    "num_channels": _int(1, 64),
    "layer_norm_eps": _float(0.0, 1.0, lo_open=True),
}
_VAE = {
    "base_dim": _int(1, 4096),
    "z_dim": _int(1, 1024),
    "dim_mult": Rule("ints", 1, 64, length=(1, 8)),
    "num_res_blocks": _int(0, 64),
    "temperal_downsample": Rule("bools", length=(0, 8)),
    # the Wan2.2-VAE's keys (frontends/wan_vae.py): its decoder's own width, the residual
    # layout and the pixel (un)shuffle around it
    "decoder_base_dim": _int(1, 4096, optional=True),
    "is_residual": Rule("bool", optional=True),
    "in_channels": _int(1, 4096),
    "out_channels": _int(1, 4096),
    "patch_size": _int(1, 8, optional=True),
}
_COMPONENTS = {"dit": _DIT, "text_encoder": _TEXT, "image_encoder": _IMAGE, "vae": _VAE}

#: config key -> rule (keys absent from a config are skipped)
LIMITS: dict[str, Rule] = {
    "workload.height": _int(16, 16384, optional=True),
    "workload.width": _int(16, 16384, optional=True),
    "workload.frames": _int(1, 10_001, optional=True),
    "workload.steps": _int(1, 10_000, optional=True),
    "workload.batch": _int(1, 4096),
    "workload.text_len": _int(1, 65_536),
    "model.default_steps": _int(1, 10_000, optional=True),
    "model.default_height": _int(16, 16384, optional=True),
    "model.default_width": _int(16, 16384, optional=True),
    "model.default_frames": _int(1, 10_001, optional=True),
    "model.trained_max_pixels": _int(1, 2**28, optional=True),
    "model.trained_max_frames": _int(1, 10_001, optional=True),
    "parallel.gpus_per_node": _int(1, 1024),
    "parallel.intra_node.latency_us": _float(0.0, 1e6),
    "parallel.intra_node.efficiency": _float(MIN_LINK_EFFICIENCY, 1.0),
    "parallel.network.bandwidth_GBps": _float(MIN_NETWORK_GBPS, 1e6),
    "parallel.network.latency_us": _float(0.0, 1e6),
    "parallel.network.efficiency": _float(MIN_LINK_EFFICIENCY, 1.0),
    # optimizations (docs/optimizations.md; cross-key rules in wanir/passes/optimize_options.py)
    "cache.skip": _float(0.0, 1.0, optional=True),
    "cache.threshold": _float(0.0, 10.0, optional=True, lo_open=True),
    "attention.density": _float(0.0, 1.0, lo_open=True),
    "attention.dense_steps": _int(0, 100_000),
    "vae.tile": _int(16, 16384, optional=True),
    "vae.tile_stride": _int(8, 16384, optional=True),
    **{f"{g}.{k}": r for g, keys in _COMPONENTS.items() for k, r in keys.items()},
}
#: parallel degrees: an integer in [1, MAX_DEVICES] or 'auto'
DEGREE_KEYS = ("parallel.degree", "parallel.ulysses", "parallel.ring", "parallel.cfg", "parallel.dp",
               "parallel.fsdp")


def check_value(key: str, v: Any, rule: Rule, where: str | None = None) -> None:
    """Raise ConfigError unless ``v`` satisfies ``rule`` (``where`` prefixes the message)."""
    head = f"{where}: {key}" if where else key
    if v is None:
        if rule.optional:
            return
        raise ConfigError(f"{head} must be {rule.allowed()}, got null")
    if rule.kind in ("ints", "bools"):
        if isinstance(v, tuple):
            v = list(v)
        if not isinstance(v, list) and not hasattr(v, "__iter__") or isinstance(v, (str, bytes, dict)):
            raise ConfigError(f"{head} must be {rule.allowed()}, got {short(v)}")
        try:
            items = list(v)
        except Exception:  # noqa: BLE001 - an OmegaConf node that fails to resolve
            raise ConfigError(f"{head} must be {rule.allowed()}, got {short(v)}") from None
        if rule.length is not None and not rule.length[0] <= len(items) <= rule.length[1]:
            raise ConfigError(f"{head} must be {rule.allowed()}, got {len(items)} values")
        for x in items:
            if rule.kind == "bools":
                if not isinstance(x, bool):
                    raise ConfigError(f"{head} must be {rule.allowed()}, got {short(x)} in it")
            elif not _int_ok(x, rule):
                raise ConfigError(f"{head} must be {rule.allowed()}, got {short(x)} in it")
        return
    if rule.kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError(f"{head} must be {rule.allowed()}, got {short(v)}")
        return
    if rule.kind == "int":
        if not _int_ok(v, rule):
            raise ConfigError(f"{head} must be {rule.allowed()}, got {short(v)}")
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{head} must be {rule.allowed()}, got {short(v)}")
    try:
        f = float(v)
    except OverflowError:
        raise ConfigError(f"{head} must be {rule.allowed()}, got {short(v)}") from None
    low_bad = rule.lo is not None and (f <= rule.lo if rule.lo_open else f < rule.lo)
    if not math.isfinite(f) or low_bad or (rule.hi is not None and f > rule.hi):
        raise ConfigError(f"{head} must be {rule.allowed()}, got {short(v)}")


def _int_ok(x, rule: Rule) -> bool:
    if isinstance(x, bool) or not isinstance(x, int):
        return False
    return (rule.lo is None or x >= rule.lo) and (rule.hi is None or x <= rule.hi)


_MISSING = object()
#: LIMITS split as (group, [(rest of the key split at dots, full key, rule)])
_BY_GROUP: dict = {}


def _by_group() -> dict:
    if not _BY_GROUP:
        for key, rule in LIMITS.items():
            g, _, rest = key.partition(".")
            _BY_GROUP.setdefault(g, []).append((rest.split("."), key, rule))
    return _BY_GROUP


def _get(node, parts):
    for p in parts:
        if node is None or not hasattr(node, "get"):
            return _MISSING
        node = node.get(p, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node


def check_config(cfg) -> None:
    """Check every key of :data:`LIMITS` (and the parallel degrees' upper bound) present in ``cfg``."""
    for g, items in _by_group().items():
        group = cfg.get(g, None) if hasattr(cfg, "get") else None
        if group is None:
            continue
        for parts, key, rule in items:
            v = _get(group, parts)
            if v is _MISSING:
                continue
            if type(v).__name__ == "ListConfig" or isinstance(v, tuple):   # a DictConfig's list; a frozen one
                v = list(v)
            check_value(key, v, rule)
    par = cfg.get("parallel", None) if hasattr(cfg, "get") else None
    for key in DEGREE_KEYS if par is not None else ():
        v = _get(par, [key.split(".", 1)[1]])
        if isinstance(v, int) and not isinstance(v, bool) and v > MAX_DEVICES:
            raise ConfigError(f"{key} must be an integer in [1, {MAX_DEVICES}] or auto, got {short(v)}")


def check_component(group: str, comp: dict, where: str) -> None:
    """Check a component's config dict (as read from a config.json or inferred from tensors)
    against the rules of ``group``; errors name ``where`` (the file)."""
    for key, rule in _COMPONENTS.get(group, {}).items():
        if key in comp:
            check_value(f"{group}.{key}", comp[key], rule, where)


def check_json_numbers(data: Any, where: str, path: str = "", depth: int = 0) -> None:
    """Every number in a raw config.json is finite, not a boolean where a number is meant
    is not checked here, and at most :data:`MAX_JSON_NUMBER` in magnitude (so no later
    arithmetic meets a 400-digit integer or an infinity)."""
    if depth > 16:
        raise ConfigError(f"{where}: {path or 'the JSON'} nests deeper than 16 levels")
    if isinstance(data, dict):
        for k, v in data.items():
            check_json_numbers(v, where, f"{path}.{k}" if path else str(k), depth + 1)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            check_json_numbers(v, where, f"{path}[{i}]", depth + 1)
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        try:
            ok = math.isfinite(float(data)) and abs(data) <= MAX_JSON_NUMBER
        except OverflowError:
            ok = False
        if not ok:
            raise ConfigError(f"{where}: {short(path, 60)} = {short(data)}: numbers in a config.json must be "
                              f"finite and at most 2**40 in magnitude")


def check_int_arg(name: str, v, lo: int, hi: int) -> int:
    """A command-line integer (``-j``, ``--depth``, ``--top``) in [lo, hi]."""
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {short(v)}")
    return v


def usable_cpus() -> int:
    """CPU cores this process may run on (its scheduler affinity where the OS reports one,
    else ``os.cpu_count()``), at least 1. A sweep's worker processes are capped at it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cap_jobs(jobs: int) -> int:
    """``jobs`` worker processes capped at :func:`usable_cpus` (more processes than cores
    only add memory: each holds an interpreter and a model graph). Returns a process count."""
    return max(1, min(jobs, usable_cpus()))


def check_hw_number(v: float, positive: bool) -> str | None:
    """Why a hardware spec number is out of range (None when it is fine)."""
    if positive and not HW_MIN <= v <= HW_MAX:
        return f"must be in [{HW_MIN:g}, {HW_MAX:g}] (in the key's unit), got {short(v)}"
    if not positive and not (v == 0 or HW_MIN <= abs(v) <= HW_MAX):
        return f"must be 0 or of magnitude in [{HW_MIN:g}, {HW_MAX:g}], got {short(v)}"
    return None
