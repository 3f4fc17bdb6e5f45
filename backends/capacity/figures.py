"""Plots of a capacity plan (matplotlib, headless, as :mod:`wanir.backends.plots`):

- :func:`latency_cdf`: the end-to-end latency CDF at the peak hour of the leading
  deployments, with the SLO line;
- :func:`cost_vs_p95`: monthly cost (GPU-hours when unpriced) against p95 latency of every
  deployment that meets the SLO, the Pareto front drawn through;
- :func:`load_curves`: utilization and p95 latency against the arrival rate for the leading
  deployments at their peak replica count (where each one falls over).

Curves come from the closed forms (:mod:`.queueing`) at the row's peak servers. Each
function writes ``path`` (.png/.svg/.pdf) or returns SVG text with ``path=None``.
"""
from __future__ import annotations

import numpy as np

from wanir.backends.plots import _finish, plt

from . import queueing as Q
from .planner import pareto

#: deployments drawn in the CDF and load plots
DRAWN = 5


def _label(r) -> str:
    return f"{r.replicas}× {r.hardware}×{r.devices} {r.plan}" + (f" b{r.batch}" if r.batch > 1 else "")


def _queue(result, r, rate_per_hour: float | None = None):
    mix = Q.Mix(result.traffic.shares, tuple(r.class_service_s))
    lam = (result.traffic.peak_rate_per_hour if rate_per_hour is None else rate_per_hour) / 3600.0
    return mix, Q.mgc(lam, mix, r.servers)


def _drawn(result):
    return [r for r in result.rows if r.replicas is not None and r.servers and r.batch == 1][:DRAWN]


def latency_cdf(result, path=None):
    """Latency CDF (analytic, peak hour) of the leading deployments against the SLO."""
    t = result.traffic
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    xmax = 1.0
    for r in _drawn(result):
        mix, qr = _queue(result, r)
        if not qr.stable:
            continue
        hi = Q.latency_quantile(qr, mix, 0.999)
        xs = np.linspace(0, hi, 300)
        ax.plot(xs / 60, [1 - Q.latency_tail(qr, mix, x) for x in xs], label=_label(r))
        xmax = max(xmax, hi)
    if t.slo_latency_s is not None:
        ax.axvline(t.slo_latency_s / 60, color="crimson", ls="--",
                   label=f"SLO p{t.slo_percentile} {t.slo_latency_s / 60:g} min")
        ax.axhline(t.slo_percentile / 100, color="crimson", ls=":", lw=0.8)
    ax.set_xlabel("end-to-end latency at the peak hour (minutes): queueing + generation")
    ax.set_ylabel("fraction of requests")
    ax.set_ylim(0, 1.01)
    ax.set_title("Latency CDF per deployment (M/G/c, Allen–Cunneen)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def cost_vs_p95(result, path=None):
    """Monthly cost against p95 latency of the deployments that meet the SLO; Pareto front."""
    ok = [r for r in result.rows if r.meets_slo and r.replicas is not None]
    priced = all(r.usd_per_month is not None for r in ok) and ok
    cost = (lambda r: r.usd_per_month) if priced else (lambda r: r.gpu_hours_per_month)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    hws = sorted({r.hardware for r in ok})
    cmap = plt.get_cmap("tab20")
    for i, h in enumerate(hws):
        rs = [r for r in ok if r.hardware == h]
        ax.scatter([r.latency_s["p95"] / 60 for r in rs], [cost(r) for r in rs], s=18, color=cmap(i % 20), label=h)
    front = pareto(ok)
    if front:
        ax.plot([r.latency_s["p95"] / 60 for r in front], [cost(r) for r in front], "k-", lw=1, label="Pareto front")
        b = front[0]
        ax.annotate(_label(b), (b.latency_s["p95"] / 60, cost(b)), fontsize=8, xytext=(5, 5),
                    textcoords="offset points")
    t = result.traffic
    if t.slo_latency_s is not None:
        ax.axvline(t.slo_latency_s / 60, color="crimson", ls="--", label="SLO")
    ax.set_xlabel(f"p95 latency at the peak hour (minutes)")
    ax.set_ylabel("USD per month" if priced else "GPU-hours per month")
    ax.set_title("Cost vs p95 latency (deployments that meet the SLO)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def load_curves(result, path=None):
    """Utilization and p95 latency against the arrival rate (requests/hour) for the leading
    deployments at their peak servers, up to where each saturates."""
    t = result.traffic
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in _drawn(result):
        mix = Q.Mix(t.shares, tuple(r.class_service_s))
        cap = r.servers * 3600.0 / mix.mean
        rates = np.linspace(cap * 0.02, cap * 0.995, 80)
        util = rates / cap
        p95 = []
        for x in rates:
            qr = Q.mgc(x / 3600.0, mix, r.servers)
            p95.append(Q.latency_quantile(qr, mix, 0.95) / 60)
        line, = a1.plot(rates, util, label=_label(r))
        a2.plot(rates, p95, color=line.get_color(), label=_label(r))
    for a in (a1, a2):
        a.axvline(t.peak_rate_per_hour, color="grey", ls="--", lw=0.8, label="peak-hour rate")
        a.set_xlabel("arrival rate (requests/hour)")
        a.grid(alpha=0.3)
    if t.slo_latency_s is not None:
        a2.axhline(t.slo_latency_s / 60, color="crimson", ls="--", label="SLO")
    a1.set_ylabel("utilization")
    a2.set_ylabel("p95 latency (minutes)")
    a2.set_yscale("log")
    a1.set_title("Utilization vs arrival rate")
    a2.set_title("p95 latency vs arrival rate (falls over at capacity)")
    a2.legend(fontsize=7)
    return _finish(fig, path)


#: the plots -o DIR writes: file stem -> function
PLOTS = {"latency_cdf": latency_cdf, "cost_vs_p95": cost_vs_p95, "load_curves": load_curves}

