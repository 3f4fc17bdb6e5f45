"""The report of a capacity plan: ``-o DIR`` writes the plots (PNG), ``plan.json`` and one
self-contained ``report.html`` (styles inline, plots as inline SVG, as ``wanir report``
builds it with :mod:`wanir.backends.html`'s helpers) for whoever approves the purchase:
the traffic, the candidates compared, the recommendation and its monthly cost, the plots,
the stack and assumptions each number rests on, and what is not modelled.
"""
from __future__ import annotations

import os
from pathlib import Path

import wanir
from wanir import jsonout
from wanir.backends.report import fmt_time_range
from wanir.backends.html import _CSS, _e, _md_inline, _strip_svg_header
from wanir.errors import WanirError
from wanir.safeout import write_output

from . import figures
from .render import _dur, service_text

#: what the plan models and what it leaves out (also in docs/capacity.md)
CAPACITY_NOTES = (
    ("modeled", "Service times: wanir's estimate of one request of each class on each deployment (hardware, "
                "devices, parallel plan, videos per batch), the same time model as `wanir estimate`."),
    ("modeled", "Queueing: Poisson arrivals at the peak-hour rate into c identical replicas served first come, "
                "first served; Erlang C with the Allen–Cunneen correction for the class mix (exact "
                "Pollaczek–Khinchine for one replica); latency quantiles from an exponential wait tail."),
    ("modeled", "The daily profile: each hour gets the fewest replicas that keep the SLO at its rate; the "
                "monthly cost follows them. The simulation replays the profile with those replicas, cold starts "
                "(weights copied over the host link) and batching of same-shape requests."),
    ("not modeled", "Failures, retries, preemption and maintenance; load-balancer and network latency; request "
                    "priorities and cancellation; time spent encoding and uploading the video."),
    ("not modeled", "Cold starts beyond the weight copy (container start, disk or object-store reads, compilation "
                    "and warm-up); autoscaler reaction delay other than the cold start."),
    ("not modeled", "Burstiness beyond Poisson within an hour (give a trace to replay real arrivals); the analytic "
                    "quantiles are approximations (the simulation checks the leading candidates)."),
    ("modeled", "Error range of the time: every wanir estimate states a range (`time_range_s`) from how well the "
                "time model does on validation runs of its class, widened by the share resting on assumed inputs "
                "(docs/time-model.md). Each deployment's mean service time carries the share-weighted ends of its "
                "classes' ranges (\"mean service\", in brackets)."),
    ("not modeled", "The error range in the queue: replicas, waits, latency quantiles and costs are planned with the "
                    "point estimate; a service time at the upper end of its range raises utilization and waits by "
                    "more than that share — check the SLO's margin against it."),
)


def check_output_dir(path) -> Path:
    """Check ``-o DIR`` before any work: not an existing file, not a link; returns it."""
    p = Path(os.fspath(path))
    if p.is_symlink():
        raise WanirError(f"-o {str(p)[:200]}: is a symbolic link; give a directory path")
    if p.exists() and not p.is_dir():
        raise WanirError(f"-o {str(p)[:200]}: exists and is not a directory")
    return p


def _table(result, top: int = 15) -> str:
    head = ("#", "hardware", "GPUs/replica", "plan", "batch", "replicas (peak)", "utilization", "mean service",
            "p50", "p95", "p99", "meets SLO", "$/video", "$/month", "by")
    out = ['<table id="plan-table"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, r in enumerate(result.rows[:top], 1):
        cells = [i, r.hardware, r.devices, r.plan, r.batch, "-" if r.replicas is None else r.replicas,
                 "-" if r.utilization is None else f"{100 * r.utilization:.0f} %", service_text(r),
                 _dur(r.latency_s.get("p50")), _dur(r.latency_s.get("p95")), _dur(r.latency_s.get("p99")),
                 "yes" if r.meets_slo else "no", "-" if r.usd_per_video is None else f"{r.usd_per_video:.3f}",
                 "-" if r.usd_per_month is None else f"{r.usd_per_month:,.0f}", r.method]
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _traffic(result) -> str:
    t = result.traffic
    rows = "".join(f"<tr><td>{_e(c.name)}</td><td>{100 * c.share:.1f} %</td><td><code>{_e(' '.join(c.overrides))}"
                   f"</code></td></tr>" for c in t.classes)
    slo = "none (the queue only has to be stable)" if t.slo_latency_s is None else \
        f"p{t.slo_percentile} end-to-end latency ≤ {_dur(t.slo_latency_s)}"
    prof = ", ".join(f"{x:.2f}" for x in t.profile)
    src = f"trace {t.trace.path}" if t.trace is not None else "Poisson"
    return (f"<p>{24 * t.rate_per_hour:,.0f} requests/day ({src}); peak {t.peak_rate_per_hour:.1f}/hour at "
            f"{t.peak_hour:02d}:00; SLO: {_e(slo)}.</p>"
            f'<table id="classes"><thead><tr><th>class</th><th>share</th><th>overrides</th></tr></thead>'
            f"<tbody>{rows}</tbody></table><p>Hourly rate relative to the mean (00:00 to 23:00): {prof}</p>")


def _best(result) -> str:
    b = result.best
    if b is None:
        return '<p class="warn">No deployment meets the SLO.</p>'
    cost = "" if b.usd_per_month is None else \
        f" at <b>${b.usd_per_month:,.0f} per month</b> (${b.usd_per_video:.3f} per video)"
    sim = ""
    if b.simulated:
        ci = b.simulated["ci"]["p95"]
        sim = (f" The simulation of the daily profile (cold starts included) gives a peak-hour p95 of "
               f"{_dur(b.simulated['latency_s']['p95'])} (95 % interval across runs {_dur(ci['low'])} to "
               f"{_dur(ci['high'])}).")
    rng = "" if b.service_range_s is None else \
        (f" The mean generation time is {_e(service_text(b))}: the range is the time model's error range "
         f"(docs/time-model.md); the plan uses the point estimate.")
    return (f'<p id="recommendation"><b>{b.replicas} × {_e(b.hardware)}</b> with {b.devices} device(s) per replica '
            f"(plan {_e(b.plan)}, {b.batch} video(s) per batch) at the peak hour, {min(b.hourly_replicas)} to "
            f"{max(b.hourly_replicas)} replicas over the day{cost}; p95 latency {_dur(b.latency_s['p95'])}, "
            f"utilization {100 * (b.utilization or 0):.0f} % at the peak.{sim}{rng}</p>")


def _stack(result) -> str:
    """Per class: the model, workload and runtime wanir resolved for its overrides (one
    :func:`wanir.estimate` each), then prices and the plan's notes."""
    items = []
    for c in result.traffic.classes:
        e = wanir.estimate(list(c.overrides))
        wl = e.to_dict()["workload"]
        rt = e.run.runtime.name if e.run is not None else "-"
        items.append(f"<li>Class <b>{_e(c.name)}</b> (<code>{_e(' '.join(c.overrides) or 'defaults')}</code>): "
                     f"{_e(e.model)}, {wl.get('width')}×{wl.get('height')}×{wl.get('frames')} frames, "
                     f"{wl.get('steps')} steps, runtime {_e(rt)}; precision, kernels and offload as "
                     f"<code>wanir config</code> prints them for these overrides.</li>")
    priced = ", ".join(f"{k} {v:g}" for k, v in result.prices) or "none given"
    items.append(f"<li>Prices (USD per GPU-hour): {_e(priced)}.</li>")
    items += [f"<li>{_md_inline(n)}</li>" for n in result.notes]
    return "<ul>" + "".join(items) + "</ul>"


def _per_class(result) -> str:
    b = result.best
    if b is None or not b.per_class:
        return ""
    rows = "".join(f"<tr><td>{_e(c['name'])}</td>"
                   f"<td>{_e(fmt_time_range(c['service_s'], c.get('service_range_s')))}</td>"
                   + "".join(f"<td>{_dur(c['latency_s'][k])}</td>" for k in ("mean", "p50", "p95", "p99")) + "</tr>"
                   for c in b.per_class)
    return ('<table id="per-class"><thead><tr><th>class</th><th>generation</th><th>latency mean</th><th>p50</th>'
            f"<th>p95</th><th>p99</th></tr></thead><tbody>{rows}</tbody></table>"
            "<p class=\"summary\">Per class on the recommended deployment at the peak hour (closed form: the class's "
            "generation time plus the common wait).</p>")


def _notes() -> str:
    out = ["<ul>"]
    for tag, text in CAPACITY_NOTES:
        cls = "tag no" if tag.startswith("not") else "tag"
        out.append(f'<li><span class="{cls}">{_e(tag)}</span>{_md_inline(text)}</li>')
    out.append("</ul>")
    return "\n".join(out)


def to_html(result, title: str | None = None) -> str:
    """The report page of a :class:`.planner.PlanResult` as HTML text (self-contained)."""
    title = title or f"wanir plan: {Path(result.traffic.source).name}"
    plots = "".join(f'<div class="plot" id="plot-{k}">{_strip_svg_header(f(result))}</div>'
                    for k, f in figures.PLOTS.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<h2 id="best">Recommendation</h2>
{_best(result)}
{_per_class(result)}
<h2 id="traffic">Traffic</h2>
{_traffic(result)}
<h2 id="candidates">Candidates compared</h2>
<p class="summary">{result.evaluated} deployments evaluated, {result.unfit} do not fit in memory; the best
{min(15, len(result.rows))} shown, ranked by monthly cost among those that meet the SLO.</p>
{_table(result)}
<h2 id="plots">Plots</h2>
{plots}
<h2 id="assumptions">Stack and assumptions</h2>
{_stack(result)}
<h2 id="notes">Modeled and not modeled</h2>
{_notes()}
</body></html>
"""


def write_dir(result, out_dir) -> list[Path]:
    """Write the plots (PNG), plan.json and report.html of ``result`` into ``out_dir``;
    returns the paths written."""
    d = check_output_dir(out_dir)
    files = [f(result, d / f"{k}.png") for k, f in figures.PLOTS.items()]
    files.append(write_output(d / "plan.json", jsonout.dumps(result.to_dict(), indent=2, default=str), (".json",)))
    files.append(write_output(d / "report.html", to_html(result), (".html",)))
    return files
