"""``wanir size --optimizations --allow fp8,teacache,...``: hardware sizing across the
combinations of optimizations a user allows.

Every subset of the allowed optimizations (the empty one included: the baseline) is sized
with :func:`wanir.backends.sizing.size` on the hardware that can run it (8-bit GEMMs only on
hardware with a tensor peak for that dtype; an attention kernel only where the kernel model
has it), and the candidates of all subsets are ranked together, each labelled with its
optimizations. So the ranking can say that four L40S with FP8 and TeaCache beat two H100
in bf16 on cost per video at a latency.

Each name stands for fixed overrides (documented in docs/optimizations.md): step caching
uses the fastest threshold its method publishes for the model (TeaCache publishes per model;
a model without one is listed as skipped for that cache); sparse attention uses
``attention.density=0.25`` with the named pattern after ``attention.dense_steps`` = 10 % of
the steps.
"""
from __future__ import annotations

from itertools import combinations

from wanir import hardware as hwlib
from wanir import kernels
from wanir.backends import sizing
from wanir.errors import ConfigError
from wanir.passes.optimize_options import published_threshold
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
}


def _kernel_entries() -> dict[str, tuple[tuple[str, ...], str]]:
    """One ``--allow`` name per attention kernel of wanir/data/kernels.yaml (``cudnn``,
    ``flash3``, ``flash4``, ``sage2``, ...; ``sdpa`` and ``math`` too): each sets
    ``roofline.attention_kernel``. Sized only on hardware whose family has that kernel."""
    return {k: ((f"roofline.attention_kernel={k}",), "attention_kernel") for k in kernels.attention_kernels()}


OPTIMIZATIONS.update(_kernel_entries())
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


def _has_kernel(hw, name: str) -> bool:
    """Whether the attention kernel ``name`` exists on ``hw`` (its family, or its own
    ``kernels.attention`` overrides)."""
    return name in kernels.available_attention(hw.family) or name in hw.kernels.get("attention", {})


def _combo_overrides(combo, model) -> list[str] | None:
    """The overrides of a combination; a step cache runs at the fastest threshold its
    authors publish for ``model`` (TeaCache publishes per model). None when a cache in it
    has no published threshold for ``model``."""
    out: list[str] = []
    for n in combo:
        ovs = OPTIMIZATIONS[n][0]
        if OPTIMIZATIONS[n][1] == "cache":
            t = published_threshold(n, model)
            if t is None:
                return None
            ovs = (f"cache.method={n}", f"cache.threshold={t:g}")
        out.extend(ovs)
    return out


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
    model = None
    if any(OPTIMIZATIONS[n][1] == "cache" for n in names):
        model = resolve(list(overrides), config_dir).model
    for combo in subsets(names):
        label = "+".join(combo)
        opt_ovs = _combo_overrides(combo, model)
        if opt_ovs is None:
            skipped.append(f"all: {label} (no published {'/'.join(n for n in combo if OPTIMIZATIONS[n][1] == 'cache')} "
                           f"threshold for {model}; run it with cache.skip=<fraction>)")
            continue
        extra = opt_ovs + _steps_overrides(overrides, config_dir, combo)
        hws = []
        for h in all_hw:
            need = [_GEMM_DTYPE[n] for n in combo if n in _GEMM_DTYPE]
            dev = configured if configured is not None else hwlib.load(h, config_dir)
            missing = [d for d in need if d not in dev.tensor_flops]
            no_kernel = [n for n in combo if OPTIMIZATIONS[n][1] == "attention_kernel" and not _has_kernel(dev, n)]
            if missing:
                skipped.append(f"{h}: {label} (no {missing[0]} tensor peak)")
            elif no_kernel:
                skipped.append(f"{h}: {label} (no {no_kernel[0]} kernel for {dev.family})")
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
