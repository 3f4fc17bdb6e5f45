"""``wanir plan`` end to end on real estimates: agreement with ``wanir size --throughput``
where there is no SLO and no variability, the explicit-deployment path (wanir.estimate)
against the enumerated one (sizing), the JSON schema, and the -o outputs."""
import json
import math

import pytest

import wanir
from wanir.backends import sizing
from wanir.backends.capacity import planner
from wanir.backends.capacity import traffic as T

BASE = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832"]


@pytest.mark.slow
def test_plan_agrees_with_size_throughput_without_slo_or_variability():
    """One class, a flat Poisson rate, no SLO: the plan's replicas of one device are the
    fewest r with utilization below 1, r × 3600 / S > λ. ``wanir size --throughput λ`` over
    1..8 devices meets the target with dp{n} (n copies of one device) for the fewest n with
    n × 3600 / S ≥ λ. Away from exact equality they are the same count; so is the cost:
    r devices × price × 730 hours a month."""
    rate = 40.0
    t = T.from_mapping({"classes": [{"name": "a", "overrides": BASE}], "arrivals": {"rate_per_hour": rate}})
    res = planner.plan(t, hardware=["rtx-4090"], devices=(1,), prices={"rtx-4090": 0.5}, simulate=False, jobs=1)
    row = next(r for r in res.rows if r.plan == "single")
    s1 = sizing.size(BASE, hardware=["rtx-4090"], devices=(1,), batches=[1])["candidates"][0].time_s
    guess = math.floor(rate * s1 / 3600) + 1       # the derivation above, to pick device counts around it
    ns = tuple(range(max(1, guess - 2), guess + 3))
    sz = sizing.size(BASE, hardware=["rtx-4090"], devices=(1, *ns), throughput=rate, prices={"rtx-4090": 0.5},
                     batches=[1])
    copies = {c.devices: c for c in sz["candidates"] if c.plan.label == "single" or c.plan.label == f"dp{c.devices}"}
    n_size = min(n for n, c in copies.items() if c.meets)
    one = copies[1]
    assert abs(n_size * 3600 / one.time_s - rate) > 1e-6 * rate      # not at the boundary
    assert row.replicas == n_size
    assert row.service_mean_s == pytest.approx(one.time_s) and row.service_cv == 0.0
    assert row.usd_per_month == pytest.approx(n_size * 0.5 * planner.HOURS_PER_MONTH)
    # and the cost per video is what size's cost per video is at that utilization
    assert row.usd_per_video == pytest.approx(one.cost_per_video * n_size / (rate * one.time_s / 3600))


@pytest.mark.slow
def test_explicit_deployments_use_wanir_estimate_and_agree_with_the_enumeration():
    doc = {"classes": [{"name": "a", "overrides": BASE, "share": 0.7},
                       {"name": "b", "overrides": [*BASE, "workload.steps=25"], "share": 0.3}],
           "arrivals": {"rate_per_hour": 30}, "slo": {"percentile": 95, "latency_s": 3600},
           "deployments": [{"hardware": "l40s", "devices": 1}, {"hardware": "l40s", "devices": 2, "plan": "cfg2"}]}
    ex = planner.plan(T.from_mapping(doc), simulate=False, jobs=1)
    # service times are wanir.estimate's own
    e = wanir.estimate([*BASE, "workload.steps=25", "hardware=l40s"])
    single = next(r for r in ex.rows if r.plan == "single")
    assert single.class_service_s[1] == pytest.approx(e.time_s)
    # the mean service time's range: each class's estimate's own time_range_s (the plan's
    # per-video range under cfg2), the low ends and the high ends each weighted by share
    for r in ex.rows:
        par = [] if r.plan == "single" else ["parallel=cfg", "parallel.degree=2"]
        ranges = []
        for ov in (BASE, [*BASE, "workload.steps=25"]):
            d = wanir.estimate([*ov, "hardware=l40s", *par]).to_dict()
            ranges.append((d["parallel"] if par else d)["total"]["time_range_s"])
        lo = 0.7 * ranges[0][0] + 0.3 * ranges[1][0]
        hi = 0.7 * ranges[0][1] + 0.3 * ranges[1][1]
        assert r.service_range_s == pytest.approx((lo, hi), rel=1e-9)
        assert lo <= r.service_mean_s <= hi and lo < hi
        assert r.to_dict()["service_s"]["range"] == pytest.approx([lo, hi], rel=1e-9)
        for c, rng in zip(r.to_dict()["per_class"], ranges):        # and each class's own range
            assert c["service_range_s"] == pytest.approx(rng, rel=1e-9)
    doc.pop("deployments")
    en = planner.plan(T.from_mapping(doc), hardware=["l40s"], devices=(1, 2), simulate=False, jobs=1)
    for r in ex.rows:
        m = next(x for x in en.rows if (x.hardware, x.devices, x.plan) == (r.hardware, r.devices, r.plan))
        assert m.class_service_s == pytest.approx(r.class_service_s, rel=1e-9)
        assert m.service_range_s == pytest.approx(r.service_range_s, rel=1e-9)   # sizing's ranges are the same
        assert m.replicas == r.replicas


@pytest.mark.slow
def test_json_schema_and_outputs(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("classes: [{name: a, overrides: [model=wan2.1-t2v-1.3b, workload.height=480, workload.width=832]}]\n"
                 "arrivals: {rate_per_day: 600, profile: [1,1,1,1,1,1,1,1,2,2,2,2,3,3,3,3,2,2,2,2,1,1,1,1]}\n"
                 "slo: {percentile: 95, latency_s: 1800}\n"
                 "prices: {l40s: 1.0}\n"
                 "simulation: {replications: 3, requests: 2000}\n"
                 "deployments: [{hardware: l40s, devices: 1}]\n")
    from wanir.cli import main
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["plan", str(f), "--format", "json", "-q", "-o", str(tmp_path / "out")]) == 0
    d = json.loads(buf.getvalue())
    assert set(d) >= {"deployments", "best", "traffic"}
    row = d["deployments"][0]
    for k in ("hardware", "devices", "plan", "replicas", "batch", "utilization", "service_s", "wait_s", "latency_s",
              "meets_slo", "usd_per_video", "usd_per_month"):
        assert k in row
    assert set(row["service_s"]) == {"mean", "cv", "range"}
    lo, hi = row["service_s"]["range"]
    assert lo <= row["service_s"]["mean"] <= hi
    assert set(row["wait_s"]) == set(row["latency_s"]) == {"mean", "p50", "p95", "p99"}
    assert d["best"]["hardware"] == "l40s" and row["meets_slo"]
    assert row["method"] == "simulation"       # the leading candidate was checked by simulation
    for L, lw in row["simulated"]["little"]:
        assert L == pytest.approx(lw, rel=1e-9)
    # $/month follows the hourly replicas; $/video is the day's cost over the day's videos
    day = sum(row["hourly_replicas"]) * 1.0
    assert row["usd_per_month"] == pytest.approx(day * 730 / 24)
    assert row["usd_per_video"] == pytest.approx(day / 600)
    out = tmp_path / "out"
    for name in ("latency_cdf.png", "cost_vs_p95.png", "load_curves.png", "plan.json", "report.html"):
        assert (out / name).stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "<svg" in html and "Recommendation" in html
    # the report prints the mean service time with its range and says what the range is
    from wanir.backends.report import fmt_time_range
    assert fmt_time_range(row["service_s"]["mean"], row["service_s"]["range"]) in html
    assert "error range" in html
    assert 'src="http' not in html and "<link" not in html and "<script" not in html   # nothing fetched


def test_csv_has_one_row_per_deployment(tmp_path):
    from wanir.backends.capacity.render import CSV_COLUMNS, render

    t = T.from_mapping({"classes": [{"name": "a", "overrides": BASE}], "arrivals": {"rate_per_hour": 20},
                        "deployments": [{"hardware": "l40s", "devices": 1}, {"hardware": "rtx-4090", "devices": 1}]})
    res = wanir.plan(t, simulate=False, jobs=1)        # the public entry point
    lines = render(res, "csv").strip().splitlines()
    assert lines[0].split(",") == list(CSV_COLUMNS) and len(lines) == 3
    i, lo, hi = (CSV_COLUMNS.index(f"service_s.{k}") for k in ("mean", "low", "high"))
    for ln in lines[1:]:
        c = ln.split(",")
        assert float(c[lo]) <= float(c[i]) <= float(c[hi])
    assert all(math.isfinite(r.latency_s["p95"]) for r in res.rows)


def _two_classes(**extra):
    return {"classes": [{"name": "a", "overrides": BASE, "share": 0.8},
                        {"name": "b", "overrides": [*BASE, "workload.steps=25"], "share": 0.2}],
            "slo": {"percentile": 95, "latency_s": 1800}, "simulation": {"replications": 3, "requests": 3000},
            **extra}


def test_batched_deployment_is_planned_by_simulation():
    t = T.from_mapping(_two_classes(arrivals={"rate_per_hour": 40}, prices={"l40s": 1.0},
                                    deployments=[{"hardware": "l40s", "devices": 1, "batch": 2}]))
    res = planner.plan(t, jobs=1)
    row = next(r for r in res.rows if r.batch == 2)
    assert row.method == "simulation" and row.replicas >= 1
    # a batch of 2 takes wanir's estimate at workload.batch=2; utilization counts full batches
    e2 = wanir.estimate([*BASE, "hardware=l40s", "workload.batch=2"])
    e2b = wanir.estimate([*BASE, "workload.steps=25", "hardware=l40s", "workload.batch=2"])
    per_video = (0.8 * e2.time_s + 0.2 * e2b.time_s) / 2
    assert row.utilization == pytest.approx(40 / 3600 * per_video / row.hourly_replicas[res.traffic.peak_hour])
    for L, lw in row.simulated["little"]:
        assert L == pytest.approx(lw, rel=1e-9)


def test_trace_is_replayed_in_the_simulation(tmp_path):
    f = tmp_path / "trace.csv"
    f.write_text("time_s,class\n" + "".join(f"{60.0 * i:.1f},{'b' if i % 5 == 0 else 'a'}\n" for i in range(600)))
    t = T.from_mapping(_two_classes(arrivals={"trace": str(f)}, deployments=[{"hardware": "l40s", "devices": 1}]))
    res = planner.plan(t, jobs=1)
    row = res.rows[0]
    assert row.method == "simulation" and row.simulated["requests"] == 600     # every recorded request
    assert res.traffic.peak_rate_per_hour == pytest.approx(60.0)               # one a minute for ten hours


def test_fleet_view_refuses_a_search_and_files():
    from wanir.backends.capacity.web import fleet_view
    from wanir.errors import ConfigError

    base = "classes: [{name: a, overrides: [model=wan2.1-t2v-1.3b]}]\n"
    with pytest.raises(ConfigError, match="traffic deployments: the page plans"):
        fleet_view({"traffic": base + "arrivals: {rate_per_hour: 5}\n"})
    with pytest.raises(ConfigError, match="arrivals.trace"):
        fleet_view({"traffic": base + "arrivals: {trace: /etc/passwd}\n"})
    with pytest.raises(ConfigError, match="YAML"):
        fleet_view({"traffic": "classes: [\n"})
