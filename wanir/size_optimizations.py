"""``wanir size --optimizations --allow fp8,teacache,...``: hardware sizing across the
combinations of optimizations a user allows.

Every subset of the allowed optimizations (the empty one included: the baseline) is sized
with :func:`wanir.backends.sizing.size` on the hardware that can run it (8-bit GEMMs only on
hardware with a tensor peak for that dtype; an attention kernel only where the kernel model
has it), and the candidates of all subsets are ranked together, each labelled with its
optimizations. So the ranking can say that four L40S with FP8 and TeaCache beat two H100
in bf16 on cost per video at a latency.

Each name stands for fixed overrides (documented in docs/optimizations.md): step caching
uses the fastest published threshold of its method's table; sparse attention uses
``attention.density=0.25`` with the named pattern after ``attention.dense_steps`` = 10 % of
the steps.
"""
from __future__ import annotations

from itertools import combinations

from wanir import hardware as hwlib
from wanir.backends import sizing
from wanir.errors import ConfigError
from wanir.resolve import resolve

#: name → (config overrides, kind). Kinds that exclude each other: one per kind in a subset.
OPTIMIZATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "fp8": (("precision.dit_compute=fp8",), "gemm"),
    "int8": (("precision.dit_compute=int8",), "gemm"),
    "teacache": (("cache.method=teacache", "cache.threshold=0.08"), "cache"),
    "magcache": (("cache.method=magcache", "cache.threshold=0.24"), "cache"),
    "easycache": (("cache.method=easycache", "cache.threshold=0.05"), "cache"),
    "fbcache": (("cache.method=fbcache", "cache.threshold=0.08"), "cache"),
    "sliding-tile": (("attention.density=0.25", "attention.pattern=sliding-tile"), "sparse"),
    "radial": (("attention.density=0.25", "attention.pattern=radial"), "sparse"),
    "svg": (("attention.density=0.25", "attention.pattern=svg"), "sparse"),
    "compiled": (("roofline.fusion=compiled",), "fusion"),
    "4step": (("distill=4step",), "distill"),
    "sage2": (("roofline.attention_kernel=sage2",), "attention_kernel"),
    "sage2-fp16acc": (("roofline.attention_kernel=sage2-fp16acc",), "attention_kernel"),
    "flash3-fp8": (("roofline.attention_kernel=flash3-fp8",), "attention_kernel"),
    "flash3": (("roofline.attention_kernel=flash3",), "attention_kernel"),
}
#: at most this many names in --allow (2^n subsets are sized)
MAX_ALLOWED = 6
#: dtype a GEMM optimization needs a tensor peak for
_GEMM_DTYPE = {"fp8": "fp8_e4m3", "int8": "int8"}


def parse_allow(text) -> tuple[str, ...]:
    """``"fp8,teacache"`` → ("fp8", "teacache"); ConfigError on an unknown or repeated
    name or more than MAX_ALLOWED names."""
    if not isinstance(text, str) or len(text) > 1000:
        raise ConfigError("--allow takes a comma-separated list of optimization names")
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in OPTIMIZATIONS]
    if bad:
        raise ConfigError(f"--allow {bad[0]!r}: unknown optimization; allowed: {', '.join(OPTIMIZATIONS)}")
    if len(set(names)) != len(names):
        raise ConfigError("--allow lists a name twice")
    if not names:
        raise ConfigError(f"--allow needs at least one of: {', '.join(OPTIMIZATIONS)}")
    if len(names) > MAX_ALLOWED:
        raise ConfigError(f"--allow takes at most {MAX_ALLOWED} names ({2 ** MAX_ALLOWED} combinations), "
                          f"got {len(names)}")
    return tuple(names)


def subsets(names) -> list[tuple[str, ...]]:
    """Every subset of ``names`` with at most one name per kind (the empty one first)."""
    out = []
    for k in range(len(names) + 1):
        for c in combinations(names, k):
            kinds = [OPTIMIZATIONS[n][1] for n in c]
            if len(set(kinds)) == len(kinds):
                out.append(c)
    return out


def _steps_overrides(overrides, config_dir, combo) -> list[str]:
    """Dense warm-up steps for a sparse pattern: 10 % of the workload's steps."""
    if not any(OPTIMIZATIONS[n][1] == "sparse" for n in combo):
        return []
    sc = resolve(list(overrides) + [o for n in combo for o in OPTIMIZATIONS[n][0]
                                    if OPTIMIZATIONS[n][1] != "sparse"], config_dir)
    return [f"attention.dense_steps={int(sc.build.workload.steps) // 10}"]


def size_with_optimizations(overrides=(), config_dir=None, *, allow=(), hardware=None, **kw) -> dict:
    """:func:`wanir.backends.sizing.size` for every allowed subset of optimizations; returns
    the same record with all candidates ranked together (each with ``optimizations`` set to
    its '+'-joined names, '' for the baseline), ``evaluated`` and ``dropped`` summed, and
    ``skipped``: 'hardware: optimizations (reason)' for combinations a device cannot run."""
    names = tuple(allow)
    hw_overrides = [o for o in overrides if str(o).lstrip("+").split("=")[0].split(".")[0] == "hardware"]
    configured = None
    if hw_overrides and not hardware:    # the overrides select the device, as for plain `wanir size`
        configured = resolve(list(overrides), config_dir).run.hardware
    all_hw = [configured.name] if configured is not None else \
        list(hardware) if hardware else [h.name for h in hwlib.list_hardware(config_dir) if h.kind == "gpu"]
    merged = None
    skipped: list[str] = []
    for combo in subsets(names):
        label = "+".join(combo)
        extra = [o for n in combo for o in OPTIMIZATIONS[n][0]] + _steps_overrides(overrides, config_dir, combo)
        hws = []
        for h in all_hw:
            need = [_GEMM_DTYPE[n] for n in combo if n in _GEMM_DTYPE]
            peaks = (configured if configured is not None else hwlib.load(h, config_dir)).tensor_flops
            missing = [d for d in need if d not in peaks]
            if missing:
                skipped.append(f"{h}: {label} (no {missing[0]} tensor peak)")
            else:
                hws.append(h)
        if not hws:
            continue
        try:
            res = sizing.size(list(overrides) + extra, config_dir, hardware=None if configured else hws, **kw)
        except ConfigError:
            if len(hws) == 1:
                raise
            res = None
            for h in hws:      # one device cannot take the combination: size the others
                try:
                    r = sizing.size(list(overrides) + extra, config_dir, hardware=[h], **kw)
                except ConfigError as e:
                    skipped.append(f"{h}: {label} ({e})")
                    continue
                if res is None:
                    res = r
                else:
                    res["candidates"].extend(r["candidates"])
                    res["unfit"].extend(r["unfit"])
                    res["evaluated"] += r["evaluated"]
                    res["dropped"] += r["dropped"]
            if res is None:
                continue
        for c in res["candidates"] + res["unfit"]:
            c.optimizations = label
        if merged is None:
            merged = res
        else:
            merged["candidates"].extend(res["candidates"])
            merged["unfit"].extend(res["unfit"])
            merged["evaluated"] += res["evaluated"]
            merged["dropped"] += res["dropped"]
            merged["prices"] = {**merged["prices"], **res["prices"]}
    if merged is None:
        raise ConfigError("no hardware can run any combination of --allow " + ",".join(names))
    # the same ranking as plain `wanir size`: priced hardware by $/video, unpriced after it
    merged.update(sizing.rank(merged["candidates"] + merged["unfit"]))
    merged["allowed"] = list(names)
    merged["skipped"] = skipped
    return merged
