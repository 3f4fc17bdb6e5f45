"""TeaCache's threshold → skip tables per model and retention mode. The expected skips are
derived here from the published end-to-end times (reference/caching.md, the TeaCache4Wan2.1
README): skip = 1 − time / baseline, the saving taken as the DiT calls skipped."""
import pytest

from wanir.errors import ConfigError
from wanir.passes.optimize_options import optimization_options

#: (model, retention) -> (baseline s, {threshold: s}) as printed in the README (caching.md)
PUBLISHED = {
    ("wan2.1-t2v-1.3b", False): (175, {0.05: 117, 0.07: 110, 0.08: 88}),
    ("wan2.1-t2v-14b", False): (55 * 60, {0.14: 38 * 60, 0.15: 30 * 60, 0.2: 27 * 60}),
    ("wan2.1-i2v-14b-480p", False): (735, {0.13: 464, 0.19: 372, 0.26: 300}),
    ("wan2.1-i2v-14b-720p", False): (29 * 60, {0.18: 17 * 60, 0.2: 15 * 60, 0.3: 12 * 60}),
    ("wan2.1-t2v-1.3b", True): (97, {0.05: 61, 0.10: 41}),
    ("wan2.1-t2v-14b", True): (1829, {0.10: 915, 0.20: 578}),
    ("wan2.1-i2v-14b-480p", True): (385, {0.20: 212, 0.30: 164}),
    ("wan2.1-i2v-14b-720p", True): (903, {0.20: 430, 0.30: 340}),
}


def _opts(model, threshold, retention=False, method="teacache"):
    return optimization_options(model=model, cache_method=method, cache_threshold=threshold,
                                cache_retention=retention)


@pytest.mark.parametrize("model,retention,threshold", [(m, r, t) for (m, r), (_, rows) in PUBLISHED.items()
                                                       for t in rows])
def test_every_published_threshold_gives_its_published_saving(model, retention, threshold):
    base, rows = PUBLISHED[(model, retention)]
    o = _opts(model, threshold, retention)
    assert float(o.cache_skip) == pytest.approx(1 - rows[threshold] / base, abs=1e-4)
    assert o.notes == ()      # a published row is not an interpolation


def test_14b_accepts_its_own_thresholds():
    """The issue's case: 0.2 on the 14B model (refused when only the 1.3B table existed):
    ~55 min → ~27 min is a skip of 1 − 27/55 = 0.509."""
    assert float(_opts("wan2.1-t2v-14b", 0.2).cache_skip) == pytest.approx(1 - 27 / 55, abs=1e-4)


def test_between_two_rows_is_linear_and_said():
    # I2V 480P without retention: 0.13 → 464 s, 0.19 → 372 s of 735 s; 0.16 is the midpoint
    want = ((1 - 464 / 735) + (1 - 372 / 735)) / 2
    o = _opts("wan2.1-i2v-14b-480p", 0.16)
    assert float(o.cache_skip) == pytest.approx(want, abs=1e-4)
    assert len(o.notes) == 1 and "interpolated" in o.notes[0] and "0.13" in o.notes[0] and "0.19" in o.notes[0]
    assert any("interpolated" in d for d in o.describe())


@pytest.mark.parametrize("model,retention,threshold", [
    ("wan2.1-t2v-14b", False, 0.08),        # the 1.3B's threshold, below the 14B's range
    ("wan2.1-t2v-14b", False, 0.25),        # above it: no extrapolation
    ("wan2.1-t2v-1.3b", False, 0.1),
    ("wan2.1-t2v-1.3b", True, 0.04),
    ("wan2.1-i2v-14b-720p", True, 0.31),
])
def test_outside_a_models_published_range_is_refused(model, retention, threshold):
    with pytest.raises(ConfigError, match=r"cache.threshold=.*publishes .* for " + model + ".*cache.skip"):
        _opts(model, threshold, retention)


@pytest.mark.parametrize("model", ["wan2.2-t2v-a14b", "wan2.2-ti2v-5b", None])
def test_models_without_published_thresholds_keep_cache_skip(model):
    with pytest.raises(ConfigError, match="teacache publishes thresholds for wan2.1-t2v-1.3b, .* only.*cache.skip"):
        _opts(model, 0.1)
    o = optimization_options(model=model, cache_method="teacache", cache_skip=0.4)
    assert float(o.cache_skip) == pytest.approx(0.4)


def test_retention_needs_teacache_and_a_boolean():
    with pytest.raises(ConfigError, match="cache.retention=true .* needs cache.method=teacache"):
        _opts("wan2.1-t2v-1.3b", 0.12, True, method="magcache")
    with pytest.raises(ConfigError, match="cache.retention must be true or false"):
        _opts("wan2.1-t2v-1.3b", 0.05, "yes")


def test_retention_keeps_the_first_five_steps():
    """With retention the first 5 calls per branch always run: at most steps − 5 reuse."""
    from fractions import Fraction

    from wanir.passes.step_cache import reused_calls
    assert reused_calls(50, Fraction(1, 2), always=5) == 25
    assert reused_calls(8, Fraction(9, 10), always=5) == 3       # ⌊7.2⌋ = 7, capped at 8 − 5
    assert reused_calls(4, Fraction(1, 2), always=5) == 0        # fewer steps than retention: none reused


def test_cli_accepts_the_14b_threshold_and_retention():
    """End to end: the 14B model at 0.2 with retention (0.20 → 578 s of 1829 s) runs, and its
    DiT calls reuse ⌊(1 − 578/1829) × steps⌋ per branch."""
    import math

    import wanir
    steps = 10
    est = wanir.estimate(["model=wan2.1-t2v-14b", "workload.height=128", "workload.width=128", "workload.frames=9",
                          f"workload.steps={steps}", "cache.method=teacache", "cache.threshold=0.2",
                          "cache.retention=true"])
    applied = est.graph.meta["optimizations"]["applied"]
    assert any("first 5 steps kept" in a for a in applied), applied
    want = min(steps - 5, math.floor((1 - 578 / 1829) * steps))      # ⌊6.84⌋ = 6, capped at 5
    meta = est.graph.meta["optimizations"]
    assert meta["reused_calls_per_branch"] == want == 5
    assert meta["full_calls_per_branch"] == steps - want
