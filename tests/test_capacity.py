"""Capacity planning (backends/capacity): the closed forms against formulas written out here,
the simulation against the closed forms within its confidence intervals, Little's law on
every simulated run, monotonicity, and the traffic file's checks."""
import math

import numpy as np
import pytest

from wanir.backends.capacity import queueing as Q
from wanir.backends.capacity import simulate as S
from wanir.backends.capacity import traffic as T
from wanir.errors import ConfigError


def erlang_c_textbook(c: int, a: float) -> float:
    """Erlang C from its defining sum: (a^c/c!)(c/(c-a)) / (Σ_{k<c} a^k/k! + (a^c/c!)(c/(c-a)))."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize("c, a", [(1, 0.5), (2, 1.0), (3, 2.4), (8, 6.5), (20, 17.0)])
def test_erlang_c_matches_the_defining_sum(c, a):
    assert Q.erlang_c(c, a) == pytest.approx(erlang_c_textbook(c, a), rel=1e-12)


@pytest.mark.parametrize("c, a", [(65, 50.0), (100, 90.0), (300, 280.5), (2000, 1950.0)])
def test_erlang_b_log_space_sum_matches_the_recursion(c, a):
    assert Q.erlang_b(c, a) == pytest.approx(Q.erlang_b_table(a, c)[c], rel=1e-10)


def test_erlang_c_hand_values():
    assert Q.erlang_c(1, 0.7) == pytest.approx(0.7)          # M/M/1: P(wait) = ρ
    assert Q.erlang_c(2, 1.0) == pytest.approx(1 / 3)        # (1/2·2)/(1+1+1) = 1/3


def test_one_server_is_pollaczek_khinchine():
    # M/G/1 with two classes, 40 % of 100 s and 60 % of 300 s, λ = 1/400 per s:
    # E[S] = 220, E[S²] = 0.4·1e4 + 0.6·9e4 = 58000, ρ = 0.55, Wq = λE[S²]/(2(1-ρ)) = 145/0.9
    mix = Q.Mix((0.4, 0.6), (100.0, 300.0))
    r = Q.mgc(1 / 400, mix, 1)
    assert r.utilization == pytest.approx(0.55)
    assert r.wait_mean_s == pytest.approx(58000 / 400 / 0.9)


def test_allen_cunneen_reduces_to_erlang_c_for_exponential_variability():
    # with cs² = 1 the correction (1 + cs²)/2 is 1: the M/M/c wait C/(cμ − λ)
    mix = Q.Mix((1.0,), (100.0,))
    r = Q.mgc(0.025, mix, 3)          # a = 2.5
    assert r.wait_mean_s * 2 == pytest.approx(erlang_c_textbook(3, 2.5) / (3 / 100 - 0.025))


def test_latency_quantile_of_one_class_is_service_plus_wait_quantile():
    mix = Q.Mix((1.0,), (60.0,))
    r = Q.mgc(1 / 80, mix, 1)
    for q in (0.5, 0.95, 0.99):
        assert Q.latency_quantile(r, mix, q) == pytest.approx(60 + r.wait_quantile(q), rel=1e-5)
    # M/M/1-shaped tail: P(W > t) = ρ exp(−t ρ/Wq); at the 95th percentile it is 0.05
    t95 = r.wait_quantile(0.95)
    assert r.p_wait * math.exp(-t95 * r.p_wait / r.wait_mean_s) == pytest.approx(0.05)


def test_unstable_queue_has_infinite_latency():
    mix = Q.Mix((1.0,), (100.0,))
    r = Q.mgc(0.02, mix, 2)
    assert not r.stable and Q.latency_quantile(r, mix, 0.95) == math.inf


# ----------------------------------------------------------------------------- simulation vs closed forms


def _replicate_fcfs(lam, draw_service, c, reps=10, n=20000, warmup=0.1, seed=1):
    """Mean waits of ``reps`` independent FCFS runs (and Little's law on each)."""
    means = []
    for child in np.random.SeedSequence(seed).spawn(reps):
        rng = np.random.default_rng(child)
        arr = np.cumsum(rng.exponential(1 / lam, n))
        svc = draw_service(rng, n)
        start, dep = S.fcfs(arr, svc, c)
        run = S.Run(arr, start, dep, np.zeros(n, dtype=int), int(n * warmup))
        L, lw = S.little(run)
        assert L == pytest.approx(lw, rel=1e-9)
        assert np.all(start >= arr) and np.all(dep >= start)
        means.append(float(np.mean(run.wait)))
    m = float(np.mean(means))
    h = S.t975(reps - 1) * float(np.std(means, ddof=1)) / math.sqrt(reps)
    return m, h


def test_simulated_mm1_wait_matches_closed_form():
    lam, mu = 0.7, 1.0    # Wq = ρ/(μ − λ) = 0.7/0.3
    m, h = _replicate_fcfs(lam, lambda rng, n: rng.exponential(1 / mu, n), 1)
    assert abs(m - 0.7 / 0.3) <= h, (m, h)


def test_simulated_mmc_wait_matches_erlang_c():
    lam, mu, c = 2.4, 1.0, 3      # Wq = C(3, 2.4)/(cμ − λ)
    m, h = _replicate_fcfs(lam, lambda rng, n: rng.exponential(1 / mu, n), c)
    assert abs(m - erlang_c_textbook(c, lam / mu) / (c * mu - lam)) <= h, (m, h)


def test_simulated_md1_wait_matches_pollaczek_khinchine():
    lam, s = 0.8, 1.0             # Wq = ρ s / (2 (1 − ρ))
    m, h = _replicate_fcfs(lam, lambda rng, n: np.full(n, s), 1)
    assert abs(m - 0.8 / (2 * 0.2)) <= h, (m, h)


def test_replicate_reports_littles_law_on_every_run_and_cis():
    service = [[0.0, 100.0], [0.0, 300.0]]
    out = S.replicate(service, (0.7, 0.3), 4, rate_per_s=1 / 60, replications=4, requests=4000, seed=3)
    assert out["runs"] == 4 and len(out["little"]) == 4
    for L, lw in out["little"]:
        assert L == pytest.approx(lw, rel=1e-9)
    ci = out["ci"]["p95"]
    assert ci["low"] <= ci["mean"] <= ci["high"]


def test_daily_profile_with_hourly_replicas_and_cold_start_obeys_littles_law():
    rates = [0.002] * 8 + [0.01] * 16
    servers = tuple([1] * 8 + [3] * 16)
    out = S.replicate([[0.0, 200.0]], (1.0,), servers, hourly_per_s=rates, cold_start_s=120.0,
                      replications=3, requests=3000, seed=5)
    for L, lw in out["little"]:
        assert L == pytest.approx(lw, rel=1e-9)
    # a cold start can only delay: the same runs with instant starts wait no longer on average
    warm = S.replicate([[0.0, 200.0]], (1.0,), servers, hourly_per_s=rates, cold_start_s=0.0,
                       replications=3, requests=3000, seed=5)
    assert warm["wait_s"]["mean"] <= out["wait_s"]["mean"]


def test_batching_serves_same_class_together_and_conserves_requests():
    arr = np.array([0.0, 1.0, 2.0, 3.0, 50.0])
    cls = np.array([0, 1, 0, 0, 1])
    service = [[0.0, 10.0, 15.0], [0.0, 20.0, 30.0]]
    start, dep = S.serve(arr, cls, service, 1, batch=2)
    # t=0: request 0 alone (nothing else waiting) until 10; then the oldest waiting is request 1
    # (class 1, alone: its class-mate arrives at 50) until 30; then requests 2 and 3 together until 45
    assert start.tolist() == [0.0, 10.0, 30.0, 30.0, 50.0]
    assert dep.tolist() == [10.0, 30.0, 45.0, 45.0, 70.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_more_servers_never_raise_any_wait_and_denser_arrivals_never_lower_them(seed):
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(1.0, 3000))
    svc = rng.choice([1.5, 4.0, 9.0], 3000)
    waits = [S.fcfs(arr, svc, c)[0] - arr for c in (2, 3, 4, 6)]
    for a, b in zip(waits, waits[1:]):
        assert np.all(b <= a + 1e-9)
    faster = S.fcfs(arr * 0.8, svc, 3)[0] - arr * 0.8
    assert np.all(faster >= waits[1] - 1e-9)


# ----------------------------------------------------------------------------- planner monotonicity (analytic)


def _svc(seconds, servers_plan=None):
    from wanir.backends.capacity.planner import Service
    from wanir.backends.parallel import Plan

    return Service("x", 1, servers_plan or Plan(), 1, tuple((0.0, s) for s in seconds), True, 0.0, 1.0)


def _traffic(rate, slo=(95, 900.0), shares=(0.8, 0.2), profile=None):
    doc = {"classes": [{"name": f"c{i}", "overrides": [], "share": s} for i, s in enumerate(shares)],
           "arrivals": {"rate_per_hour": rate, **({"profile": profile} if profile else {})}}
    if slo:
        doc["slo"] = {"percentile": slo[0], "latency_s": slo[1]}
    return T.from_mapping(doc)


def test_more_replicas_never_raise_p95_and_higher_rate_never_lowers_it():
    mix = Q.Mix((0.8, 0.2), (120.0, 400.0))
    lam = 60 / 3600
    p95 = [Q.latency_quantile(Q.mgc(lam, mix, c), mix, 0.95) for c in range(3, 12)]
    assert all(b <= a for a, b in zip(p95, p95[1:]))
    by_rate = [Q.latency_quantile(Q.mgc(r / 3600, mix, 6), mix, 0.95) for r in range(10, 120, 10)]
    assert all(b >= a for a, b in zip(by_rate, by_rate[1:]))


def test_planned_replicas_grow_with_the_rate_and_meet_the_slo():
    from wanir.backends.capacity.planner import analytic_row

    svc = _svc((120.0, 400.0))
    prev = 0
    for rate in (5, 20, 60, 200, 1000):
        row = analytic_row(_traffic(rate), svc)
        assert row.meets_slo and row.replicas >= prev
        assert row.latency_s["p95"] <= 900.0
        # one replica fewer would miss the SLO (or be unstable)
        if row.replicas > 1:
            mix = Q.Mix((0.8, 0.2), (120.0, 400.0))
            q = Q.mgc(rate / 3600, mix, row.replicas - 1)
            assert not q.stable or Q.latency_quantile(q, mix, 0.95) > 900.0
        prev = row.replicas


def test_per_class_latency_is_its_service_plus_the_common_wait():
    from wanir.backends.capacity.planner import analytic_row

    row = analytic_row(_traffic(20), _svc((120.0, 400.0)))
    qr = Q.mgc(20 / 3600, Q.Mix((0.8, 0.2), (120.0, 400.0)), row.servers)
    a, b = row.per_class
    assert a["latency_s"]["p95"] == pytest.approx(120.0 + qr.wait_quantile(0.95))
    assert b["latency_s"]["p95"] - a["latency_s"]["p95"] == pytest.approx(280.0)
    # the mix's mean latency is the share-weighted mean of the classes'
    assert row.latency_s["mean"] == pytest.approx(0.8 * a["latency_s"]["mean"] + 0.2 * b["latency_s"]["mean"])


def test_an_slo_below_the_generation_time_is_never_met():
    from wanir.backends.capacity.planner import analytic_row

    row = analytic_row(_traffic(10, slo=(95, 300.0)), _svc((120.0, 400.0)))   # 20 % take 400 s > 300 s
    assert not row.meets_slo


def test_monthly_cost_follows_the_daily_profile():
    from wanir.backends.capacity.planner import HOURS_PER_MONTH, analytic_row

    flat = analytic_row(_traffic(30, slo=None, shares=(1.0,)), _svc((600.0,)))
    # no SLO, no variability: the fewest replicas with utilization < 1: 30/h × 600 s = 5 Erlangs → 6
    assert flat.replicas == 6 and set(flat.hourly_replicas) == {6}
    assert flat.usd_per_month == pytest.approx(6 * 1.0 * HOURS_PER_MONTH)
    prof = [1] * 12 + [3] * 12          # mean rate 30/h: 15/h at night, 45/h by day
    day = analytic_row(_traffic(30, slo=None, shares=(1.0,), profile=prof), _svc((600.0,)))
    assert day.hourly_replicas == (3,) * 12 + (8,) * 12           # 2.5 → 3 and 7.5 → 8 Erlangs
    assert day.usd_per_month == pytest.approx((12 * 3 + 12 * 8) * HOURS_PER_MONTH / 24)


# ----------------------------------------------------------------------------- the traffic file


def test_shares_are_normalized_with_a_note():
    t = _traffic(10, shares=(2.0 / 3, 2.0 / 3))   # bounded in (0, 1], sum 4/3
    assert t.shares == pytest.approx((0.5, 0.5)) and "normalized" in t.notes[0]


def test_profile_sets_the_peak_hour():
    prof = [1] * 24
    prof[15] = 5
    t = _traffic(28 / 24 * 24, profile=prof)
    assert t.peak_hour == 15 and t.peak_rate_per_hour == pytest.approx(28 * 5 * 24 / 28)


@pytest.mark.parametrize("doc, key", [
    ({"classes": [{"name": "a", "share": -0.5}], "arrivals": {"rate_per_hour": 1}}, "classes[0].share"),
    ({"classes": [{"name": "a"}], "arrivals": {"rate_per_hour": float("nan")}}, "arrivals.rate_per_hour"),
    ({"classes": [{"name": "a"}], "arrivals": {"rate_per_hour": 1e300}}, "arrivals.rate_per_hour"),
    ({"classes": [{"name": "a"}], "arrivals": {"rate_per_hour": 1, "profile": [1] * 23}}, "arrivals.profile"),
    ({"classes": [{"name": "a"}], "arrivals": {"rate_per_hour": 1, "profile": [1] * 23 + [-1]}},
     "arrivals.profile[23]"),
    ({"classes": [{"name": "a"}], "arrivals": {"rate_per_hour": 1}, "slo": {"percentile": 97, "latency_s": 5}},
     "slo.percentile"),
    ({"classes": [{"name": "a"}], "arrivals": {"rate_per_hour": 1}, "colour": 1}, "colour"),
    ({"classes": [{"name": "a", "overrides": ["hardware=h100-sxm"]}], "arrivals": {"rate_per_hour": 1}},
     "classes[0].overrides[0]"),
    ({"classes": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}], "arrivals": {"rate_per_hour": 1}},
     "classes[1].name"),
    ({"classes": [{"name": "a"}], "arrivals": {"rate_per_hour": True}}, "arrivals.rate_per_hour"),
    ({"classes": [{"name": "a"}], "arrivals": {"rate_per_hour": 1, "rate_per_day": 24}}, "arrivals"),
    ({"classes": [{"name": "a"}], "arrivals": {"rate_per_hour": 1},
      "deployments": [{"hardware": "l40s", "devices": 0}]}, "deployments[0].devices"),
])
def test_bad_traffic_names_the_key(doc, key):
    with pytest.raises(ConfigError) as e:
        T.from_mapping(doc)
    msg = str(e.value)
    assert f"traffic {key}" in msg and "\n" not in msg


def test_trace_is_read_and_checked(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("time_s,class\n0,a\n30,b\n3700,a\n")
    doc = {"classes": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}], "arrivals": {"trace": str(f)}}
    t = T.from_mapping(doc)
    assert t.trace.times == (0.0, 30.0, 3700.0) and t.trace.classes == (0, 1, 0)
    assert t.rate_per_hour == pytest.approx(3 / 24) and t.peak_rate_per_hour == pytest.approx(2.0)
    f.write_text("time_s,class\n10,a\n5,a\n")
    with pytest.raises(ConfigError, match="must not decrease"):
        T.from_mapping(doc)
    f.write_text("time_s,class\nnan,a\n")
    with pytest.raises(ConfigError, match="line 2"):
        T.from_mapping(doc)


def test_sizing_can_leave_out_data_parallel_plans():
    from wanir.backends.sizing import candidate_plans

    every = candidate_plans(8, 40, True)
    no_dp = candidate_plans(8, 40, True, data_parallel=False)
    assert no_dp and all(p.dp == 1 for p in no_dp)
    assert {p.label for p in no_dp} == {p.label for p in every if p.dp == 1}
