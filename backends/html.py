"""A self-contained HTML report of one estimate.

One file, no network fetches: styles inline, the architecture diagram as inline SVG (made by
Graphviz), plots as inline SVG (matplotlib). Sections: the configuration, the stage table,
the diagram, the plots, the per-scope breakdown, and what is modeled and what is not (the
"Not modeled" notes of ``docs/lowering.md`` plus :data:`MODEL_NOTES`), then warnings.

:func:`to_html` returns the page as text; :func:`write_report` writes it.
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

import yaml

from wanir.result import Estimate
from wanir.safeout import check_output_path, write_output
from wanir.scenario import thaw

from . import graphviz as gv
from . import plots
from .graphviz import node_bytes
from .report import (fmt_bytes, fmt_count, fmt_time, fmt_time_range, heaviest_ops, optimizations, provenance_lines,
                     rows, stack_phrase)

#: what every estimate models and what it leaves out, independent of the model family
MODEL_NOTES = (
    ("modeled", "Every op of one generation's forward passes: text encoder, image encoder (image-to-video), "
                "VAE encode (when used), every denoising step of the DiT with both classifier-free-guidance "
                "branches, and the VAE decode."),
    ("modeled", "FLOPs split into tensor-core work (counted as torch's FlopCounterMode counts it) and vector "
                "work (elementwise, norms, softmax); bytes moved per op under the configured fusion policy; "
                "time per op as the larger of compute and memory time on the configured hardware."),
    ("not modeled", "The scheduler's own arithmetic between steps, tokenization, host-side Python overhead, "
                    "video encoding of the output frames, and disk or network I/O."),
    ("not modeled", "Overlap between kernels: ops run one after another, so stage time is the sum "
                    "over ops."),
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}tr.total td{font-weight:bold;border-top:2px solid #999}
.summary{color:#555}.diagram{overflow:auto;border:1px solid #eee;padding:.5rem;max-height:900px}
.diagram svg{max-width:100%;height:auto}.plot svg{max-width:100%;height:auto}
pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:.8rem}
.warn{color:#9a5b00}.tag{display:inline-block;font-size:.75rem;padding:0 .4rem;border-radius:3px;
background:#e8f1fa;margin-right:.4rem}.tag.no{background:#fae8e8}
"""


def _e(s) -> str:
    return html.escape(str(s))


def _strip_svg_header(svg: str) -> str:
    """SVG text without its XML declaration, DOCTYPE and leading comments (for inlining)."""
    svg = re.sub(r"<\?xml[^>]*\?>", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>", "", svg, flags=re.S)
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    return svg.strip()


def _md_inline(text: str) -> str:
    t = _e(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
    return t


def architecture_notes(path: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """The "Not modeled" paragraphs of ``docs/lowering.md`` (the per-model lowering
    reference) as (section heading, text) pairs, plus every paragraph of a section whose
    heading mentions "modeled"; empty when the file is not there (an installed copy without
    docs)."""
    path = Path(path) if path else Path(__file__).resolve().parent.parent / "docs" / "lowering.md"
    if not path.is_file():
        return []
    out = []
    heading = ""
    in_modeled_section = False
    for para in re.split(r"\n\s*\n", path.read_text()):
        p = para.strip()
        if p.startswith("#"):
            first, _, rest = p.partition("\n")
            heading = first.lstrip("#").strip()
            in_modeled_section = "modeled" in heading.lower()
            p = rest.strip()
            if not p:
                continue
        if in_modeled_section or p.lower().startswith(("not modeled", "not modelled")):
            out.append((heading, " ".join(line.strip() for line in p.splitlines())))
    return out


def stage_table(est: Estimate) -> str:
    """The stage table as an HTML <table id="stage-table">."""
    head = ("stage", "invocations", "tensor FLOPs", "vector FLOPs", "params", "weights", "bytes moved",
            "peak activations", "time")
    out = ['<table id="stage-table"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows(est):
        cls = ' class="total"' if r["stage"] == "total" else ""
        cells = [r["stage"], "" if r["invocations"] is None else r["invocations"], fmt_count(r["tensor_flops"]),
                 fmt_count(r["vector_flops"]), fmt_count(r["params"]), fmt_bytes(r["weight_bytes"]),
                 fmt_bytes(r["bytes"]), fmt_bytes(r["peak_activation_bytes"]), fmt_time(r["time_s"])]
        out.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def scope_breakdown(est: Estimate, depth: int = 2) -> list[dict]:
    """Per-scope totals per generation for the scopes down to ``depth`` levels below each
    stage: dicts with path, kind, repeat, ops, flops (int), bytes (int or None), time_s
    (float or None) and share (of time, or of FLOPs when there is no time)."""
    recs: dict[str, dict] = {}
    for n in est.graph:
        if n.category == "input":
            continue
        chain = list(reversed(list(n.scope.ancestors())))
        m = n.multiplicity
        fl = (int(n.costs.get("tensor_flops") or 0) + int(n.costs.get("vector_flops") or 0)) * m
        by = node_bytes(n)
        t = n.costs.get("time_s")
        for s in chain[: depth + 1]:
            r = recs.get(s.path)
            if r is None:
                r = recs[s.path] = {"path": s.path, "kind": s.kind, "repeat": s.repeat, "level": s.depth - 1,
                                    "ops": 0, "flops": 0, "bytes": 0, "time_s": 0.0, "_nobytes": False,
                                    "_notime": False}
            r["ops"] += 1
            r["flops"] += fl
            if by is None:
                r["_nobytes"] = True
            else:
                r["bytes"] += int(by) * m
            if t is None:
                r["_notime"] = True
            else:
                r["time_s"] += float(t) * m
    out = list(recs.values())
    for r in out:
        if r.pop("_nobytes"):
            r["bytes"] = None
        if r.pop("_notime"):
            r["time_s"] = None
    stages = [r for r in out if r["level"] == 0]
    use_time = stages and all(r["time_s"] is not None for r in stages)
    total = sum((r["time_s"] if use_time else r["flops"]) for r in stages) or 1
    for r in out:
        r["share"] = (r["time_s"] if use_time else r["flops"]) / total
        r["share_of"] = "time" if use_time else "FLOPs"
    return out


def _scope_table(recs: list[dict]) -> str:
    share_of = recs[0]["share_of"] if recs else "time"
    head = ("scope", "× repeat", "ops", "FLOPs", "bytes moved", "time", f"share of {share_of}")
    out = ['<table id="scope-table"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in recs:
        indent = "&nbsp;" * 4 * r["level"]
        name = r["path"].rsplit("/", 1)[-1]
        rep = "" if r["repeat"] == 1 else f"× {r['repeat']}" + (" (loop)" if r["kind"] == "loop" else "")
        out.append(f"<tr><td>{indent}{_e(name)}</td><td>{rep}</td><td>{r['ops']}</td>"
                   f"<td>{fmt_count(r['flops'])}</td><td>{fmt_bytes(r['bytes'])}</td>"
                   f"<td>{fmt_time(r['time_s'])}</td><td>{r['share'] * 100:.1f}%</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _config_section(est: Estimate) -> str:
    cfg = est.extra.get("config")
    if cfg is None and est.config is not None:
        # the resolved configuration the Estimate keeps as data (the resolver's frozen
        # Scenario.config), shown as it is: nothing here re-reads it
        cfg = thaw(est.config)
    wl = est.to_dict()["workload"]
    parts = ['<table id="config-table"><tbody>']
    parts.append(f"<tr><td>model</td><td>{_e(est.model)}</td></tr>")
    parts.append(f"<tr><td>hardware</td><td>{_e(est.hardware or '-')}</td></tr>")
    for k, v in wl.items():
        parts.append(f"<tr><td>workload.{_e(k)}</td><td>{_e(v)}</td></tr>")
    if optimizations(est):
        parts.append(f"<tr><td>optimizations</td><td>{_e(', '.join(optimizations(est)))}</td></tr>")
    parts.append("</tbody></table>")
    if cfg is not None:
        parts.append("<details><summary>full configuration</summary><pre>"
                     + _e(yaml.safe_dump(cfg, sort_keys=False)) + "</pre></details>")
    return "\n".join(parts)


def _notes_section() -> str:
    out = ["<ul>"]
    for tag, text in MODEL_NOTES:
        cls = "tag no" if tag.startswith("not") else "tag"
        out.append(f'<li><span class="{cls}">{_e(tag)}</span>{_md_inline(text)}</li>')
    for heading, text in architecture_notes():
        out.append(f'<li><span class="tag no">{_e(heading)}</span>{_md_inline(text)}</li>')
    out.append("</ul>")
    return "\n".join(out)


def to_html(est: Estimate, depth: int = 2, title: str | None = None) -> str:
    """The report page of ``est`` as HTML text (self-contained; nothing is fetched)."""
    title = title or f"wanir: {est.model}" + (f" on {est.hardware}" if est.hardware else "")
    t = est.total
    summary = (f"{fmt_count((t.get('tensor_flops') or 0) + (t.get('vector_flops') or 0))}FLOP, "
               f"{fmt_bytes(t.get('bytes'))} moved, peak memory {fmt_bytes(t.get('peak_memory_bytes'))}, "
               f"time {fmt_time_range(t.get('time_s'), t.get('time_range_s'))} per generation")
    diagram = _strip_svg_header(gv.to_svg(est.graph, depth=depth,
                                          color="bound" if t.get("time_s") is not None else "none"))
    stage_diagrams = []
    for st in est.graph.stages:
        svg = _strip_svg_header(gv.to_svg(est.graph, stage=st, depth=depth + 1,
                                          color="bound" if t.get("time_s") is not None else "none"))
        stage_diagrams.append(f'<details><summary>{_e(st)} at depth {depth + 1}</summary>'
                              f'<div class="diagram">{svg}</div></details>')
    bars = _strip_svg_header(plots.stage_bars(est))
    roof = None
    if est.run is not None:
        roof = plots.hardware_roof(est.run)
    hw = est.hardware or (roof or {}).get("name") or "-"
    roofline = _strip_svg_header(plots.roofline({hw: heaviest_ops(est)}, {hw: roof}))
    warn = "".join(f'<li class="warn">{_e(w)}</li>' for w in est.warnings)
    runtime = est.graph.meta.get("runtime")
    stack = "; ".join(x for x in (f"runtime {runtime}" if runtime else "", stack_phrase(est)) if x)
    prov = "".join(f"<li>{_e(line)}</li>" for line in provenance_lines(est))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="summary">{_e(summary)}</p>
{f'<p class="stack" id="stack">Stack: {_e(stack)}</p>' if stack else ''}
<h2 id="config">Configuration</h2>
{_config_section(est)}
<h2 id="stages">Stages</h2>
{stage_table(est)}
{f'<ul class="provenance" id="provenance">{prov}</ul>' if prov else ''}
<h2 id="diagram-heading">Architecture</h2>
<div class="diagram" id="diagram">{diagram}</div>
{''.join(stage_diagrams)}
<h2 id="plots">Plots</h2>
<div class="plot" id="plot-stages">{bars}</div>
<div class="plot" id="plot-roofline">{roofline}</div>
<h2 id="scopes">Per-scope breakdown</h2>
{_scope_table(scope_breakdown(est, depth))}
<h2 id="notes">Modeled and not modeled</h2>
{_notes_section()}
{f'<h2>Warnings</h2><ul>{warn}</ul>' if warn else ''}
</body></html>
"""


def write_report(est: Estimate, path: str | os.PathLike, **kw) -> Path:
    """Write the report of ``est`` to ``path``; returns the path."""
    check_output_path(path, (".html", ".htm"))   # before any work: suffix, no directory, no link
    return write_output(path, to_html(est, **kw), (".html", ".htm"))
