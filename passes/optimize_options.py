"""The optimization knobs, read and checked in one place.

:func:`optimization_options` checks every setting the optimization transforms use (the
``cache.*`` and ``attention.*`` values, ``distill.name``, the precision group's 8-bit GEMM
keys) for type, finiteness and range, and returns an immutable :class:`Optimizations`; the
resolver (wanir/resolve.py) calls it once with the values it read from the configuration. Every error is one ConfigError
line naming the key and what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from wanir.errors import ConfigError
from wanir.options import PrecisionOptions
from wanir.safeio import short

CACHE_METHODS = ("teacache", "magcache", "easycache", "fbcache")
SPARSE_PATTERNS = ("sliding-tile", "radial", "svg")
#: the largest denominator a fraction from the config is reduced to (keeps counts exact ints)
MAX_DENOMINATOR = 10_000

#: cache.threshold → expected fraction of DiT calls reused, per method, for the methods
#: published without a per-model table. Each row is a threshold the method's authors publish
#: with an end-to-end speedup s on Wan2.1; the skip fraction is 1 − 1/s (the check cost is
#: small; the transform adds it back). Sources and caveats in docs/optimizations.md. A
#: threshold between two rows interpolates linearly; outside the table is an error (no
#: extrapolation). TeaCache publishes per model: :data:`TEACACHE_RUNS`.
THRESHOLD_TABLE: dict[str, tuple[tuple[float, float], ...]] = {
    # MagCache (arXiv 2506.09045) on Wan2.1: "slow" ≈ 2.1×, "fast" ≈ 2.68×; the error
    # thresholds of its Wan2.1 scripts are 0.12 and 0.24 (approximate reading)
    "magcache": ((0.12, 1 - 1 / 2.1), (0.24, 1 - 1 / 2.68)),
    # EasyCache (arXiv 2507.02860): 2.1–3.3× speedups over the baselines; its Wan2.1 default
    # threshold 0.05 taken as the lower end (approximate reading)
    "easycache": ((0.05, 1 - 1 / 2.1),),
    # First-Block Cache (ParaAttention, diffusers FirstBlockCacheConfig): residual_diff_threshold
    # 0.08 at ≈ 1.5–2× on video DiTs; 0.08 taken as 1.5× (approximate reading)
    "fbcache": ((0.08, 1 - 1 / 1.5),),
}

#: TeaCache's published runs (ali-vilab/TeaCache:TeaCache4Wan2.1/README.md, commit 7c10efc;
#: reference/caching.md), per model and retention mode: (baseline seconds, ((threshold,
#: seconds), ...)), end to end on one A800 with the official code. Without retention: the
#: README's first table; with retention (``use_ret_steps``: the first 5 steps always run):
#: its second table, which has its own baselines. The skip fraction of a row is
#: 1 − seconds / baseline: the end-to-end saving taken as the DiT calls skipped, a lower
#: bound (T5, VAE and offload copies are not sped up).
TEACACHE_RUNS: dict[str, dict[bool, tuple[float, tuple[tuple[float, float], ...]]]] = {
    "wan2.1-t2v-1.3b": {False: (175, ((0.05, 117), (0.07, 110), (0.08, 88))),
                        True: (97, ((0.05, 61), (0.10, 41)))},
    "wan2.1-t2v-14b": {False: (55 * 60, ((0.14, 38 * 60), (0.15, 30 * 60), (0.2, 27 * 60))),
                       True: (1829, ((0.10, 915), (0.20, 578)))},
    "wan2.1-i2v-14b-480p": {False: (735, ((0.13, 464), (0.19, 372), (0.26, 300))),
                            True: (385, ((0.20, 212), (0.30, 164)))},
    "wan2.1-i2v-14b-720p": {False: (29 * 60, ((0.18, 17 * 60), (0.2, 15 * 60), (0.3, 12 * 60))),
                            True: (903, ((0.20, 430), (0.30, 340)))},
}
#: steps always computed with ``cache.retention=true`` (TeaCache's ``use_ret_steps``)
RETENTION_STEPS = 5


def teacache_table(model, retention: bool) -> tuple[tuple[float, float], ...] | None:
    """TeaCache's (threshold, skip fraction) rows for ``model`` (a model option name) and
    retention mode, from :data:`TEACACHE_RUNS` (skip = 1 − seconds / baseline); None when
    TeaCache publishes no thresholds for that model."""
    runs = TEACACHE_RUNS.get(model) if isinstance(model, str) else None
    if runs is None:
        return None
    base, rows = runs[bool(retention)]
    return tuple((t, 1 - sec / base) for t, sec in rows)


def published_threshold(method: str, model=None, retention: bool = False) -> float | None:
    """The largest threshold ``method`` publishes (its "fast" setting) for ``model``; None
    when there is none for that model (TeaCache publishes per model)."""
    rows = teacache_table(model, retention) if method == "teacache" else THRESHOLD_TABLE.get(method)
    return rows[-1][0] if rows else None


@dataclass(frozen=True)
class Optimizations:
    """The checked optimization knobs. ``cache_skip`` and ``attention_density`` are exact
    fractions (denominator ≤ MAX_DENOMINATOR) so that transformed counts stay ints."""

    cache_method: str | None = None
    cache_skip: Fraction = Fraction(0)
    cache_per_branch: bool = True
    attention_density: Fraction = Fraction(1)
    attention_pattern: str | None = None
    attention_dense_steps: int = 0
    distill: str = "none"
    gemm_dtype: str | None = None
    keep_high_precision: tuple = ()
    act_scales: str = PrecisionOptions.act_scales     # the default's one home: wanir/options.py
    #: TeaCache's retention steps: the first RETENTION_STEPS calls per branch always run
    cache_retention: bool = False
    #: how a threshold was read (an interpolation between published rows), for reports
    notes: tuple = ()

    @property
    def caching(self) -> bool:
        return self.cache_method is not None

    @property
    def sparse(self) -> bool:
        return self.attention_density < 1

    @property
    def any(self) -> bool:
        """Whether a transform of the DiT's schedule or attention applies."""
        return self.caching or self.sparse

    def describe(self) -> list[str]:
        """One short phrase per active optimization (for reports)."""
        out = []
        if self.gemm_dtype:
            out.append(f"{'FP8' if self.gemm_dtype.startswith('fp8') else 'INT8'} GEMMs ({self.act_scales} scales)")
        if self.distill not in (None, "none"):
            out.append(f"distill={self.distill}")
        if self.caching:
            out.append(f"cache={self.cache_method} (skip {float(self.cache_skip):.0%}"
                       f"{', per branch' if self.cache_per_branch else ''}"
                       f"{f', first {RETENTION_STEPS} steps kept' if self.cache_retention else ''})"
                       + "".join(f"; {n}" for n in self.notes))
        if self.sparse:
            out.append(f"sparse attention {self.attention_pattern} density {float(self.attention_density):g}"
                       f"{f', {self.attention_dense_steps} dense steps' if self.attention_dense_steps else ''}")
        return out


#: the defaults of every knob (a None setting takes the field's default: their one home)
_DEFAULT = Optimizations()


def _number(key, v, lo, hi, lo_open=False, hi_open=False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{key} must be a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}, "
                          f"got {v!r}")
    v = float(v)
    bad = (not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi))
    if bad:
        raise ConfigError(f"{key} must be a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}, "
                          f"got {v!r}")
    return v


def _fraction(v: float) -> Fraction:
    return Fraction(v).limit_denominator(MAX_DENOMINATOR)


def threshold_skip(method: str, threshold: float, model=None, retention: bool = False) -> tuple[float, str | None]:
    """The expected skip fraction of ``method`` at ``threshold`` and a note saying how it was
    read (None at a published threshold; the two published rows when interpolated). TeaCache
    reads ``model``'s table for the retention mode (:func:`teacache_table`), the other
    methods :data:`THRESHOLD_TABLE`; linear between rows, a single row matches only its own
    threshold. Raises ConfigError outside the model's published range or for a model with
    no published thresholds."""
    if method == "teacache":
        rows = teacache_table(model, retention)
        mode = f" with cache.retention={'true' if retention else 'false'}"
        whose = f"for {model}{mode}"
        if rows is None:
            raise ConfigError(f"cache.threshold: teacache publishes thresholds for {', '.join(TEACACHE_RUNS)} only, "
                              f"not for model {short(model, 60)}; give cache.skip=<fraction of DiT calls reused, "
                              f"in [0, 1]> instead")
    else:
        rows, whose = THRESHOLD_TABLE[method], "on Wan2.1"
    lo, hi = rows[0][0], rows[-1][0]
    for t, s in rows:
        if math.isclose(threshold, t, rel_tol=1e-9, abs_tol=1e-12):
            return s, None
    if len(rows) == 1 or not lo <= threshold <= hi:
        known = ", ".join(f"{t:g}" for t, _ in rows)
        raise ConfigError(f"cache.threshold={threshold:g}: {method} publishes {known} {whose}"
                          + (f" (a threshold between {lo:g} and {hi:g} is interpolated; none outside)"
                             if len(rows) > 1 else "")
                          + "; give cache.skip=<fraction of calls reused> instead")
    for (t0, s0), (t1, s1) in zip(rows, rows[1:]):
        if t0 <= threshold <= t1:
            skip = s0 + (s1 - s0) * (threshold - t0) / (t1 - t0)
            return skip, (f"cache.threshold={threshold:g}: skip {skip:.0%} interpolated between {method}'s published "
                          f"{t0:g} ({s0:.0%}) and {t1:g} ({s1:.0%}) {whose}")
    raise AssertionError("unreachable")  # pragma: no cover


def optimization_options(*, cache_method=None, cache_skip=None, cache_threshold=None, cache_per_branch=None,
                         cache_retention=None, attention_density=None, attention_pattern=None,
                         attention_dense_steps=None, distill=None, model=None,
                         precision: PrecisionOptions = PrecisionOptions()) -> Optimizations:
    """Check the optimization settings — the ``cache.*`` and ``attention.*`` values, the
    ``distill.name``, the model's name (TeaCache's tables are per model) and the precision
    group (8-bit GEMMs) — and return an :class:`Optimizations`. A None setting takes the
    field's default of :class:`Optimizations` (no cache, dense attention, no distillation,
    per-branch caches, no retention).
    Raises ConfigError naming the key on a bad value."""
    method, skip, thr = cache_method, cache_skip, cache_threshold
    if method is not None and method not in CACHE_METHODS:
        raise ConfigError(f"cache.method must be one of {', '.join(CACHE_METHODS)} or null, got {method!r}")
    per_branch = _DEFAULT.cache_per_branch if cache_per_branch is None else cache_per_branch
    if not isinstance(per_branch, bool):
        raise ConfigError(f"cache.per_branch must be true or false, got {per_branch!r}")
    retention = _DEFAULT.cache_retention if cache_retention is None else cache_retention
    if not isinstance(retention, bool):
        raise ConfigError(f"cache.retention must be true or false, got {short(retention, 40)}")
    if retention and method != "teacache":
        raise ConfigError(f"cache.retention=true is TeaCache's use_ret_steps; it needs cache.method=teacache, "
                          f"got cache.method={method}")
    frac = Fraction(0)
    notes: tuple = ()
    if method is None:
        if skip is not None or thr is not None:
            raise ConfigError("cache.skip / cache.threshold need cache.method "
                              f"({', '.join(CACHE_METHODS)})")
    else:
        if skip is not None and thr is not None:
            raise ConfigError("give cache.skip or cache.threshold, not both")
        if skip is None and thr is None:
            raise ConfigError(f"cache.method={method}: give cache.skip=<fraction of DiT calls reused, in [0, 1]> "
                              "or cache.threshold=<the method's threshold>")
        if skip is not None:
            frac = _fraction(_number("cache.skip", skip, 0, 1))
        else:
            value, note = threshold_skip(method, _number("cache.threshold", thr, 0, 10, lo_open=True),
                                         model, retention)
            frac = _fraction(value)
            notes = (note,) if note else ()
    density = float(_DEFAULT.attention_density) if attention_density is None else attention_density
    dens = _fraction(_number("attention.density", density, 0, 1, lo_open=True))
    if dens == 0:
        raise ConfigError(f"attention.density={density!r} is below the smallest density modeled "
                          f"(1/{MAX_DENOMINATOR})")
    pattern = attention_pattern
    if pattern is not None and pattern not in SPARSE_PATTERNS:
        raise ConfigError(f"attention.pattern must be one of {', '.join(SPARSE_PATTERNS)} or null, got {pattern!r}")
    if dens < 1 and pattern is None:
        raise ConfigError(f"attention.density={density:g} needs attention.pattern ({', '.join(SPARSE_PATTERNS)})")
    if dens == 1 and pattern is not None:
        raise ConfigError(f"attention.pattern={pattern} needs attention.density < 1")
    ds = _DEFAULT.attention_dense_steps if attention_dense_steps is None else attention_dense_steps
    if isinstance(ds, bool) or not isinstance(ds, int) or ds < 0 or ds > 100_000:
        raise ConfigError(f"attention.dense_steps must be an integer in [0, 100000], got {ds!r}")
    if ds and dens == 1:
        raise ConfigError("attention.dense_steps needs sparse attention (attention.density < 1)")
    name = distill
    name = _DEFAULT.distill if name is None else name
    if name not in DISTILL_NAMES:
        raise ConfigError(f"distill.name must be one of {', '.join(DISTILL_NAMES)}, got {short(name, 40)}; "
                          f"choose one with distill=NAME (it sets the steps and guidance it runs)")
    gemm = GEMM_DTYPES.get(precision.dit_compute)
    keep = precision.keep_fp32
    if isinstance(keep, str) or not hasattr(keep, "__iter__"):
        raise ConfigError(f"precision.keep_fp32 must be a list of module names or path globs, got {keep!r}")
    keep = tuple(keep)
    if len(keep) > 256 or any(not isinstance(k, str) or not k or len(k) > 200 for k in keep):
        raise ConfigError("precision.keep_fp32 must be at most 256 non-empty strings of at most 200 characters")
    scales = precision.act_scales
    if scales not in ACT_SCALES:
        raise ConfigError(f"precision.act_scales must be one of {', '.join(ACT_SCALES)}, got {scales!r}")
    return Optimizations(method, frac, per_branch, dens, pattern, ds, name, gemm, keep, scales, retention, notes)


#: the distillations of wanir/configs/distill/ (the name labels the steps and guidance they set)
DISTILL_NAMES = ("none", "cfg", "3step", "4step")


#: ``precision.dit_compute`` values that mean low-precision GEMMs (activations stay bf16)
GEMM_DTYPES = {"fp8": "fp8_e4m3", "fp8_e4m3": "fp8_e4m3", "int8": "int8"}
#: modules kept at the activation dtype when ``precision.keep_fp32`` is unset: everything
#: outside the transformer blocks (what LightX2V's quantized Wan runs unquantized)
DEFAULT_KEEP = PrecisionOptions.keep_fp32     # the default's one home: wanir/options.py
#: activation scales when ``precision.act_scales`` is unset
DEFAULT_ACT_SCALES = PrecisionOptions.act_scales   # the default's one home: wanir/options.py
ACT_SCALES = ("per-token", "per-tensor")


def dit_activation_dtype(dit_compute: str) -> str:
    """The dtype the DiT's activations are built at: ``bf16`` for low-precision GEMMs
    (fp8, int8: only the GEMMs run 8-bit), else ``dit_compute`` itself."""
    return "bf16" if dit_compute in GEMM_DTYPES else dit_compute
