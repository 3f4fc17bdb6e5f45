"""The time range of every estimate (backends/error_range.py): its invariants, the class
table recomputed from the shipped validation rows, and where the range shows up."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wanir
from wanir.backends import error_range as er
from wanir.backends import validate as val
from wanir.cli import main

SMALL = ["model=wan2.1-t2v-1.3b", "workload.height=240", "workload.width=416", "workload.frames=17",
         "workload.steps=2"]

errors = st.floats(min_value=-0.8, max_value=2.0, allow_nan=False)
classes = st.fixed_dictionaries({"rows": st.integers(1, 50), "error_min": errors, "error_max": errors,
                                 "error_median": errors, "assumed_share": st.floats(0, 1)})


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(t=st.floats(min_value=1e-6, max_value=1e7, allow_nan=False), a=st.floats(0, 1), b=st.floats(0, 1),
       cls=st.one_of(st.none(), classes))
def test_range_contains_the_estimate_and_widens_with_the_assumed_share(t, a, b, cls):
    table = {} if cls is None else {"k": {**cls, "error_min": min(cls["error_min"], cls["error_max"]),
                                          "error_max": max(cls["error_min"], cls["error_max"])}}
    lo, hi = er.time_range(t, "k", a, table)
    assert 0 < lo <= t <= hi and math.isfinite(hi)
    a1, a2 = sorted((a, b))
    lo1, hi1 = er.time_range(t, "k", a1, table)
    lo2, hi2 = er.time_range(t, "k", a2, table)
    assert lo2 <= lo1 * (1 + 1e-12) and hi2 >= hi1 * (1 - 1e-12)


def test_unvalidated_class_gets_the_wide_default():
    # no rows: e in [-0.30, +0.30], widened by 0.15 x the assumed share (derived from the docstring)
    lo, hi = er.time_range(100.0, "nobody/single/large/fitted", 0.4, {})
    w = er.ASSUMED_WIDEN * 0.4
    assert (lo, hi) == pytest.approx((100 / (1 + 0.30 + w), 100 / (1 - 0.30 - w)))


def test_validated_class_band_from_its_rows():
    table = {"k": {"rows": 5, "error_min": -0.04, "error_max": 0.01, "error_median": 0.0, "assumed_share": 0.6}}
    pad = 0.02 + 0.05 / 5
    # below the class's assumed share: no widening
    assert er.time_range(10.0, "k", 0.5, table) == pytest.approx([10 / (1 + 0.01 + pad), 10 / (1 - 0.04 - pad)])
    # above it: widened by 0.15 x the excess on both sides
    w = 0.15 * 0.2
    assert er.time_range(10.0, "k", 0.8, table) == pytest.approx(
        [10 / (1 + 0.01 + pad + w), 10 / (1 - 0.04 - pad - w)])
    # narrower than a class without rows
    lo, hi = er.time_range(10.0, "k", 0.5, table)
    dlo, dhi = er.time_range(10.0, "none", 0.5, table)
    assert dlo < lo and hi < dhi


@pytest.mark.parametrize("tokens, want", [(1560, "small"), (16383, "small"), (16384, "medium"), (32760, "medium"),
                                          (49151, "medium"), (49152, "large"), (75600, "large"), (None, "large")])
def test_token_regimes(tokens, want):
    assert er.token_regime(tokens) == want


def _expected_class(label: str) -> str:
    """A shipped row's class, derived from its label: the official runtime; one GPU, PCIe (the
    RTX 4090 has no NVLink) or NVLink (H20, A800, H800) by its device count; the tokens of its
    resolution: 81 frames -> 21 latent frames, 8x VAE and 2x2 patch: 480P 832x480 -> 30x52
    = 32,760 tokens (medium), 720P 1280x720 -> 45x80 -> 75,600 (large); FA2 constants are
    fitted on sm89, sm90 and sm80."""
    n = int(label.rsplit("x", 1)[1])
    topo = "single" if n == 1 else ("pcie" if label.startswith("RTX 4090") else "nvlink")
    tokens = 21 * (480 // 16) * (832 // 16) if "480P" in label else 21 * (720 // 16) * (1280 // 16)
    assert tokens in (32760, 75600)
    return f"wan-official/{topo}/{'medium' if tokens < 49152 else 'large'}/fitted"


@pytest.fixture(scope="module")
def shipped():
    return val.validate()


@pytest.mark.slow
def test_class_table_is_current(shipped):
    """Recompute the class table from the shipped rows and compare with the shipped file:
    after a change to the time model, run `make error-classes`."""
    by: dict = {}
    for r in shipped["rows"]:
        assert r["class"] == _expected_class(r["label"]), r["label"]
        by.setdefault(r["class"], []).append(r)
    table = er.load_classes()
    assert set(table) == set(by), "stale wanir/data/error_classes.yaml: run `make error-classes`"
    for k, rows in by.items():
        errs = [r["time_error"] for r in rows]
        c = table[k]
        assert c["rows"] == len(rows)
        assert c["error_min"] == pytest.approx(min(errs), abs=6e-5), f"{k}: run `make error-classes`"
        assert c["error_max"] == pytest.approx(max(errs), abs=6e-5), f"{k}: run `make error-classes`"
        assert c["assumed_share"] == pytest.approx(sum(r["assumed_share"] for r in rows) / len(rows), abs=6e-5)
    assert er.CLASS_FILE.read_text() == er.render_yaml(er.build_table(shipped["rows"]), shipped["file"])
    # each shipped row's range holds its own measurement, as its class's band was made from it
    for r in shipped["rows"]:
        lo, hi = r["time_range_s"]
        assert lo <= r["estimated_s"] <= hi
        assert lo <= r["measured_s"] <= hi, r["label"]


@pytest.mark.slow
def test_validate_by_class_and_class_filter(capsys):
    assert main(["validate", "--by-class", "--class", "*/pcie/*/*", "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {r["class"] for r in res["rows"]} == {"wan-official/pcie/medium/fitted"} and len(res["rows"]) == 3
    assert list(res["classes"]) == ["wan-official/pcie/medium/fitted"]
    assert main(["validate", "--by-class", "--class", "single", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "wan-official/single/large/fitted" in out and "pcie" not in out


@pytest.mark.parametrize("pattern, msg", [("a/b", "2 parts"), ("*/infiniband/*/*", "topology 'infiniband'"),
                                          ("*/pcie/huge/*", "tokens 'huge'"), ("x;rm", "expected"),
                                          ("*" * 300, "expected")])
def test_hostile_class_pattern(pattern, msg, capsys):
    assert main(["validate", "--class", pattern]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err and "Traceback" not in err


def test_estimate_json_and_table_carry_the_range(capsys):
    est = wanir.estimate(SMALL + ["hardware=h100-sxm"])
    lo, hi = est.total["time_range_s"]
    assert lo <= est.total["time_s"] <= hi
    assert est.total["time_range_class"].startswith("wan-official/single/small/")
    par = wanir.estimate(SMALL + ["hardware=h100-sxm", "parallel=ulysses", "parallel.degree=2"])
    p = par.to_dict()["parallel"]["total"]
    assert p["time_range_s"][0] <= p["time_s"] <= p["time_range_s"][1]
    assert p["time_range_class"].split("/")[1] == "nvlink"
    pcie = wanir.estimate(SMALL + ["hardware=rtx-4090", "parallel=ulysses", "parallel.degree=2"])
    assert pcie.parallel["total"]["time_range_class"].split("/")[1] == "pcie"
    from wanir.backends.report import fmt_time_range, render
    assert fmt_time_range(1044.0, [966.0, 1134.0]) == "17.4 min (16.1–18.9)"
    md = render(est, "md")
    assert fmt_time_range(est.total["time_s"], est.total["time_range_s"]) in md


@pytest.mark.slow
def test_size_risk_upper_ranks_by_the_upper_end():
    from wanir.backends import sizing

    point = sizing.size(SMALL, latency_s=1e9, hardware=["h100-sxm", "rtx-4090"], devices=(1, 2))
    upper = sizing.size(SMALL, latency_s=1e9, hardware=["h100-sxm", "rtx-4090"], devices=(1, 2), risk="upper")
    assert upper["risk"] == "upper"
    for c in upper["candidates"]:
        lo, hi = c.time_range_s
        assert lo <= c.time_s <= hi == c.risk_time_s
        assert c.gpu_hours_per_video == pytest.approx(c.devices * hi / 3600 / c.plan.dp)
    assert {(c.hardware, c.plan.label) for c in point["candidates"]} == \
        {(c.hardware, c.plan.label) for c in upper["candidates"]}
    with pytest.raises(wanir.errors.ConfigError, match="--risk"):
        sizing.size(SMALL, latency_s=1e9, risk="lower")


@pytest.mark.slow
def test_html_report_prints_the_range():
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("needs graphviz's dot for the report's diagrams")
    pytest.importorskip("matplotlib", reason="the report's plots need matplotlib")
    from wanir.backends.html import to_html
    from wanir.backends.report import fmt_time_range

    est = wanir.estimate(SMALL + ["hardware=h100-sxm"])
    assert fmt_time_range(est.total["time_s"], est.total["time_range_s"]) in to_html(est)


def test_write_classes_refuses_other_rows(capsys):
    before = er.CLASS_FILE.read_text()
    assert main(["validate", "--write-classes", "--class", "pcie"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--write-classes" in err and "\n" not in err
    assert er.CLASS_FILE.read_text() == before
