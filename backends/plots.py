"""Plots of estimates and sweeps (matplotlib, headless ``Agg`` backend).

- :func:`stage_breakdown`: stacked per-stage time (FLOPs where no time is estimated)
  against each swept axis, the other axes held at their first value;
- :func:`time_vs_axis`: end-to-end time (FLOPs where no time) against each swept axis,
  one line per hardware;
- :func:`roofline`: arithmetic intensity (FLOP/byte) against attained FLOP/s of the
  heaviest ops, under the hardware's roof (peak FLOP/s and HBM bandwidth);
- :func:`stage_bars`: one estimate's per-stage time and FLOPs (for the HTML report).

Every function writes the figure to ``path`` (format from the suffix: .png, .svg, .pdf)
or, with ``path=None``, returns SVG text.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from wanir.safeout import write_output

from .roof import hardware_roof  # noqa: E402,F401  (re-exported: the charts and the HTML report use it)

STAGE_ORDER = ("text_encoder", "image_encoder", "vae_encode", "diffusion_core", "vae_decode")
_COLORS = {"text_encoder": "#8dd3c7", "image_encoder": "#bebada", "vae_encode": "#fb8072",
           "diffusion_core": "#80b1d3", "vae_decode": "#fdb462"}


def _finish(fig, path) -> str | Path:
    if path is None:
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()

    path = Path(path)
    try:   # a temporary file renamed into place; the suffix is the format
        write_output(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip(".")),
                     (".png", ".svg", ".pdf"))
    finally:
        plt.close(fig)
    return path


def _val(v):
    """A CSV-row value as a number (None for blanks)."""
    if v is None or v == "":
        return None
    return float(v)


def _metric(rows, stages) -> tuple[str, str, float]:
    """('time_s', 'time [s]', 1) when times are estimated, else FLOPs in PFLOP."""
    if rows and all(_val(r.get("total.time_s")) is not None for r in rows):
        return "time_s", "time per generation [s]", 1.0
    return "flops", "FLOPs per generation [PFLOP]", 1e15


def _slice(rows, axes, axis):
    """Rows where every swept axis other than ``axis`` (and hardware) takes its first value."""
    fixed = {a.name: a.strings[0] for a in axes if a.name != axis.name and a.name != "hardware"}
    return [r for r in rows if all(str(r.get(k)) == v for k, v in fixed.items())]


def _stages_in(rows) -> list[str]:
    seen = []
    for r in rows:
        for k in r:
            if k.endswith(".flops") and not k.startswith("total."):
                s = k[: -len(".flops")]
                if s not in seen:
                    seen.append(s)
    return sorted(seen, key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER))


def _xvals(axis):
    try:
        return [float(v) for v in axis.values], True
    except (TypeError, ValueError):
        return list(range(len(axis.values))), False


def stage_breakdown(result, path=None):
    """Stacked per-stage cost against each swept axis (one panel per axis); the first
    hardware value when hardware is swept. Writes ``path`` or returns SVG text."""
    axes = [a for a in result.sweep.swept if a.name != "hardware"] or result.sweep.swept or result.sweep.axes[:1]
    rows = result.rows
    hws = sorted({r.get("hardware") for r in rows}, key=str)
    if len(hws) > 1:
        rows = [r for r in rows if r.get("hardware") == hws[0]]
    stages = _stages_in(rows)
    key, ylabel, scale = _metric(rows, stages)
    n = max(1, len(axes))
    fig, panels = plt.subplots(1, n, figsize=(4.6 * n, 3.8), squeeze=False)
    for ax, axis in zip(panels[0], axes):
        sub = _slice(rows, result.sweep.swept, axis)
        labels = axis.strings
        by_val = {str(r.get(axis.name)): r for r in sub}
        x = range(len(labels))
        bottom = [0.0] * len(labels)
        for st in stages:
            ys = [(_val(by_val.get(lbl, {}).get(f"{st}.{key}")) or 0.0) / scale for lbl in labels]
            ax.bar(x, ys, bottom=bottom, label=st, color=_COLORS.get(st))
            bottom = [b + y for b, y in zip(bottom, ys)]
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=30 if max(len(lbl) for lbl in labels) > 6 else 0)
        ax.set_xlabel(axis.name)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    panels[0][0].legend(fontsize=8)
    title = "stage breakdown" + (f" on {hws[0]}" if hws and hws[0] else "")
    fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def time_vs_axis(result, path=None):
    """End-to-end cost against each swept axis, one line per hardware (log y when the range
    is wide). Writes ``path`` or returns SVG text."""
    axes = [a for a in result.sweep.swept if a.name != "hardware"] or result.sweep.axes[:1]
    rows = result.rows
    key, ylabel, scale = _metric(rows, [])
    hws = sorted({r.get("hardware") for r in rows}, key=str)
    n = max(1, len(axes))
    fig, panels = plt.subplots(1, n, figsize=(4.6 * n, 3.8), squeeze=False)
    for ax, axis in zip(panels[0], axes):
        sub = _slice(rows, result.sweep.swept, axis)
        xs, numeric = _xvals(axis)
        for hw in hws:
            by_val = {str(r.get(axis.name)): r for r in sub if r.get("hardware") == hw}
            ys = [(_val(by_val.get(lbl, {}).get(f"total.{key}")) or float("nan")) / scale for lbl in axis.strings]
            ax.plot(xs, ys, marker="o", label=str(hw or "no hardware"))
        if not numeric:
            ax.set_xticks(xs)
            ax.set_xticklabels(axis.strings, rotation=30)
        ax.set_xlabel(axis.name)
        ax.set_ylabel(ylabel.replace("time per generation", "end-to-end time"))
        vals = [_val(r.get(f"total.{key}")) for r in sub]
        vals = [v for v in vals if v]
        if vals and max(vals) / min(vals) > 30:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    panels[0][0].legend(fontsize=8)
    fig.suptitle("end-to-end " + ("time" if key == "time_s" else "FLOPs") + " per hardware")
    fig.tight_layout()
    return _finish(fig, path)


def roofline(ops_by_hw: dict, roofs: dict, path=None):
    """Arithmetic intensity against attained FLOP/s of the heaviest ops (``ops_by_hw``:
    hardware → op records with flops, bytes, time_s per execution) under each hardware's roof
    (``roofs``: hardware → :func:`hardware_roof`). Ops without bytes or time are left out
    and counted in the title. Writes ``path`` or returns SVG text."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    left_out = 0
    xs_all, ys_all = [], []
    markers = {"matmul": "o", "conv": "s", "attention": "^", "communication": "x", "norm": "v",
               "elementwise": "D", "reduction": "P", "embedding": "*", "data_movement": "."}
    for i, (hw, ops) in enumerate(ops_by_hw.items()):
        color = f"C{i}"
        pts = {}
        for r in ops:
            if not r.get("bytes") or not r.get("time_s") or not r.get("flops"):
                left_out += 1
                continue
            ai = r["flops"] / r["bytes"]
            perf = r["flops"] / r["time_s"]
            pts.setdefault(r["category"], []).append((ai, perf))
        for cat, p in pts.items():
            ax.scatter([a for a, _ in p], [b for _, b in p], s=22, color=color, marker=markers.get(cat, "D"),
                       alpha=0.8, label=f"{hw}: {cat}")
            xs_all += [a for a, _ in p]
            ys_all += [b for _, b in p]
        roof = roofs.get(hw)
        if roof:
            lo = min(xs_all + [1.0]) / 4
            hi = max(xs_all + [roof["peak_flops"] / roof["bandwidth"] * 4]) * 4
            grid = [lo * (hi / lo) ** (k / 200) for k in range(201)]
            ax.plot(grid, [min(roof["peak_flops"], g * roof["bandwidth"]) for g in grid], color=color, lw=1.5,
                    label=f"{hw} roof ({roof['peak_flops'] / 1e12:.0f} TFLOP/s {roof['dtype']}, "
                          f"{roof['bandwidth'] / 1e12:.2f} TB/s)")
            if roof.get("vector_flops"):
                ax.plot(grid, [min(roof["vector_flops"], g * roof["bandwidth"]) for g in grid], color=color,
                        lw=1, ls="--", label=f"{hw} vector roof")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity [FLOP/byte]")
    ax.set_ylabel("attained [FLOP/s]")
    title = "roofline: heaviest ops"
    if left_out:
        title += f" ({left_out} without FLOPs, bytes or time not shown)"
    if not xs_all:
        ax.text(0.5, 0.5, "no op has both bytes and time estimated", transform=ax.transAxes, ha="center")
        if not any(roofs.values()):
            ax.set_xlim(0.1, 1e4)
            ax.set_ylim(1e9, 1e16)
    ax.set_title(title, fontsize=10)
    ax.grid(which="both", alpha=0.2)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return _finish(fig, path)


def stage_bars(est, path=None):
    """One estimate's per-stage FLOPs (tensor and vector) and time as horizontal bars.
    Writes ``path`` or returns SVG text."""
    names = [s.name for s in est.stages]
    tf = [s.total["tensor_flops"] / 1e15 for s in est.stages]
    vf = [s.total["vector_flops"] / 1e15 for s in est.stages]
    times = [s.total.get("time_s") for s in est.stages]
    have_t = all(t is not None for t in times)
    fig, panels = plt.subplots(1, 2 if have_t else 1, figsize=(9 if have_t else 5.5, 0.5 * len(names) + 1.6),
                               squeeze=False)
    ax = panels[0][0]
    y = range(len(names))
    ax.barh(y, tf, color="#80b1d3", label="tensor")
    ax.barh(y, vf, left=tf, color="#fdb462", label="vector")
    ax.set_yticks(list(y))
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlabel("PFLOP per generation")
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    if have_t:
        ax2 = panels[0][1]
        ax2.barh(y, times, color=[_COLORS.get(n, "#999999") for n in names])
        ax2.set_yticks(list(y))
        ax2.set_yticklabels(names)
        ax2.invert_yaxis()
        ax2.set_xlabel("seconds per generation")
        ax2.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def sweep_plots(result, out_dir: str | os.PathLike, fmt: str = "png") -> list[Path]:
    """Write the three sweep plots into ``out_dir`` (``stage_breakdown``, ``time_vs_axis``,
    ``roofline`` with suffix ``fmt``); returns the paths."""
    out = Path(out_dir)
    return [stage_breakdown(result, out / f"stage_breakdown.{fmt}"),
            time_vs_axis(result, out / f"time_vs_axis.{fmt}"),
            roofline(result.ops_by_hardware, result.roofs, out / f"roofline.{fmt}")]
