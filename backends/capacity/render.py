"""Output of ``wanir plan``: a ranked table (rich), JSON (the schema in docs/cli.md) or CSV."""
from __future__ import annotations

import csv
import io
import math

from rich.console import Console
from rich.table import Table

from wanir import jsonout
from wanir.backends.report import fmt_time_range
from wanir.errors import ConfigError
from wanir.safeout import csv_cell

#: rows of the table when --top is not given
TABLE_TOP = 15
#: CSV columns (nested JSON keys joined with '.')
CSV_COLUMNS = ("rank", "hardware", "devices", "plan", "replicas", "gpus", "batch", "utilization", "service_s.mean",
               "service_s.low", "service_s.high", "service_s.cv",
               "wait_s.mean", "wait_s.p50", "wait_s.p95", "wait_s.p99", "latency_s.mean",
               "latency_s.p50", "latency_s.p95", "latency_s.p99", "meets_slo", "usd_per_video", "usd_per_month",
               "gpu_hours_per_month", "throughput_per_hour", "cold_start_s", "method")


def _dur(s) -> str:
    if s is None or not math.isfinite(s):
        return "∞"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def service_text(r) -> str:
    """A row's mean service time with the time model's range: '12.3 min (11.0–14.1)'
    (:func:`~wanir.backends.report.fmt_time_range`; just the time without a range)."""
    return fmt_time_range(r.service_mean_s, r.service_range_s)


def _flat(d: dict, key: str):
    if key in ("service_s.low", "service_s.high"):     # the two ends of service_s.range
        rng = d["service_s"].get("range")
        return None if rng is None else rng[key.endswith("high")]
    cur = d
    for k in key.split("."):
        cur = None if cur is None else cur.get(k)
    return cur


def render(result, fmt: str = "table", top: int | None = None) -> str | None:
    """Render a :class:`.planner.PlanResult`: 'json' and 'csv' return text (every row, or the
    first ``top``); 'table' prints the ``top`` (default TABLE_TOP) ranked rows and a summary
    to stdout and returns None."""
    if top is not None and top < 1:
        raise ConfigError(f"--top must be an integer >= 1, got {top}")
    rows = list(result.rows)
    if fmt == "json":
        d = result.to_dict()
        if top is not None:
            d["deployments"] = d["deployments"][:top]
        return jsonout.dumps(d, indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for i, r in enumerate(rows[:top] if top else rows, 1):
            d = r.to_dict()
            w.writerow([csv_cell(i if c == "rank" else _flat(d, c)) for c in CSV_COLUMNS])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; allowed: table, json, csv")
    t = result.traffic
    top = TABLE_TOP if top is None else top
    slo = "no SLO (stable queue)" if t.slo_latency_s is None else f"p{t.slo_percentile} ≤ {_dur(t.slo_latency_s)}"
    title = (f"{len(t.classes)} class(es), {24 * t.rate_per_hour:,.0f} videos/day, peak {t.peak_rate_per_hour:.1f}/h "
             f"at {t.peak_hour:02d}:00; {slo}")
    table = Table(title=title)
    heads = ["#", "hardware", "GPUs/replica", "plan", "batch", "replicas (peak)", "util", "service", "wait p95",
             "p50", "p95", "p99", "SLO", "$/video", "$/month", "by"]
    for h in heads:
        table.add_column(h, justify="left" if h in ("hardware", "plan", "by", "SLO") else "right")
    for i, r in enumerate(rows[:top], 1):
        table.add_row(str(i), r.hardware, str(r.devices), r.plan, str(r.batch),
                      "-" if r.replicas is None else f"{r.replicas}",
                      "-" if r.utilization is None else f"{100 * r.utilization:.0f} %",
                      f"{service_text(r)} cv {r.service_cv:.2f}", _dur(r.wait_s.get("p95")),
                      _dur(r.latency_s.get("p50")), _dur(r.latency_s.get("p95")), _dur(r.latency_s.get("p99")),
                      "yes" if r.meets_slo else "no",
                      "-" if r.usd_per_video is None else f"{r.usd_per_video:.3f}",
                      "-" if r.usd_per_month is None else f"{r.usd_per_month:,.0f}", r.method)
    con = Console()
    con.print(table)
    meets = sum(1 for r in rows if r.meets_slo)
    con.print(f"{result.evaluated} deployments evaluated, {result.unfit} do not fit in memory, {meets} meet the SLO; "
              f"showing the best {min(top, len(rows))} ({result.timing['total_s']:.1f} s)")
    b = result.best
    if b is not None:
        cost = "" if b.usd_per_month is None else f" for ${b.usd_per_month:,.0f}/month (${b.usd_per_video:.3f}/video)"
        con.print(f"best: {b.replicas} × {b.hardware} × {b.devices} ({b.plan}) at the peak hour, "
                  f"{min(b.hourly_replicas)}-{max(b.hourly_replicas)} replicas over the day{cost}; p95 "
                  f"{_dur(b.latency_s['p95'])}")
    else:
        con.print("no deployment meets the SLO")
    for n in result.notes:
        con.print(f"note: {n}")
    con.print("latency = queueing + generation; 'by': analytic (M/G/c, Allen–Cunneen) or simulation "
              "(daily profile, hourly scaling, cold starts); service = mean generation time of one video over the "
              "class mix, in brackets the time model's error range (docs/time-model.md), weighted by share like the "
              "mean; the latencies use the point estimate")
    return None
