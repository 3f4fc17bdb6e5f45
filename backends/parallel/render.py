"""Rendering a :class:`MultiDeviceCost`: the per-device table, summary lines, and the
table / json / md / csv formats."""
from __future__ import annotations

import csv
import io
import json

from wanir import jsonout

from ..display import fmt_bytes, fmt_time, fmt_time_range, rich_table
from ..stack import kernel_label, stack_of
from .cost import MultiDeviceCost


def _fmt_s(v):
    return fmt_time(v)


def _fmt_b(v):
    return fmt_bytes(v)


def cost_rows(cost: MultiDeviceCost) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-device table: one row per stage plus a total row. Memory
    columns per device: the stage's resident weights, its peak live activations, and its
    peak memory alone (weights + activations, as the single-device table's stage rows); the
    total row holds the sum of weights, the largest activation peak and the pipeline's peak
    per device (residency policy and reserve included: ``peak_memory_bytes``)."""
    head = ["stage", "devices", "invocations/device", "compute", "comm", "comm exposed", "comm bytes", "time",
            "replicated", "weights/device", "peak activations", "peak memory/device"]
    body = []
    st = list(cost.stages.values())
    for r in st:
        k = r["invocations"]
        body.append([r["name"], str(r["devices"]), str(k), _fmt_s(r["compute_s"] * k), _fmt_s(r["comm_s"] * k),
                     _fmt_s(r["exposed_comm_s"] * k), _fmt_b(r["comm_bytes"] * k), _fmt_s(r["time_s"]),
                     _fmt_s(r["replicated_s"] * k), _fmt_b(r["weight_bytes"]), _fmt_b(r["peak_activation_bytes"]),
                     _fmt_b(r["weight_bytes"] + (r["peak_activation_bytes"] or 0))])
    body.append(["total", str(cost.plan.degree), "", _fmt_s(sum(r["compute_s"] * r["invocations"] for r in st)),
                 _fmt_s(sum(r["comm_s"] * r["invocations"] for r in st)), _fmt_s(cost.comm_s),
                 _fmt_b(sum(r["comm_bytes"] * r["invocations"] for r in st)), _fmt_s(cost.time_s),
                 _fmt_s(cost.replicated_s), _fmt_b(sum(r["weight_bytes"] for r in st)),
                 _fmt_b(max((r["peak_activation_bytes"] or 0 for r in st), default=0)),
                 _fmt_b(cost.peak_memory_bytes)])
    return head, body


def summary_lines(cost: MultiDeviceCost, time_range=None) -> list[str]:
    """Plain-text lines under the table: time (with its ``time_range`` [low, high] seconds
    when given), communication share, speedup, memory, notes."""
    d = cost.to_dict()["total"]
    gib = 2**30
    lines = [f"per video: {fmt_time_range(d['time_s'], time_range)} on {cost.plan.degree} × {cost.hardware.name} "
             f"(one device: {_fmt_s(d['single_device_time_s'])}); communication exposed {_fmt_s(d['comm_s'])} "
             f"({100 * d['comm_share']:.1f} % of the time)",
             f"speedup {d['speedup']:.2f}× on {cost.plan.degree} devices (latency {d['latency_speedup']:.2f}×), "
             f"parallel efficiency {100 * d['efficiency']:.0f} %, {d['videos_per_hour']:.1f} videos/hour",
             f"peak memory per device {d['peak_memory_bytes'] / gib:.1f} GiB of {cost.hardware.memory_bytes / gib:.0f} GiB"
             + ("" if d["fits"] else " — does not fit"),
             f"bottleneck: {d['bottleneck']} ({100 * d['bottleneck_share']:.0f} % of the time)",
             f"replicated work (runs whole on every device, does not shrink with the device count): "
             f"{_fmt_s(cost.replicated_s)} ({100 * cost.replicated_s / d['time_s'] if d['time_s'] else 0:.0f} % of the time)"]
    stack = stack_phrase(cost)
    if stack:
        lines.append(f"stack: {stack}")
    lines += [f"note: {n}" for n in cost.graph.meta["parallel"]["notes"]]
    return lines


def stack_phrase(cost: MultiDeviceCost) -> str:
    """The runtime, attention kernel (as run on the cost's hardware) and precisions of the
    plan's per-device graph, one phrase ('' without a config)."""
    run = cost.device_graph.run
    if run.config is None:     # a graph timed on its own: no configured stack to name
        return ""
    st = stack_of(run, cost.hardware)
    p = st["precision"]
    return (f"runtime {st['runtime']}, attention kernel {kernel_label(st)}; DiT weights {p['dit_weights']}, "
            f"DiT compute {p['dit_compute']}, text encoder {p['text_encoder']}, VAE {p['vae']}")


def render_cost(cost: MultiDeviceCost, fmt: str = "table", time_range=None) -> str | None:
    """Render a MultiDeviceCost as 'json', 'md' or 'csv' (a string); 'table' prints a rich
    table and returns None. ``time_range``: [low, high] seconds of the per-video time."""
    head, body = cost_rows(cost)
    if fmt == "json":
        return jsonout.dumps(cost.to_dict(), indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["stage", "devices", "invocations", "compute_s", "comm_s", "exposed_comm_s", "comm_bytes",
                    "time_s", "weight_bytes", "peak_activation_bytes", "peak_memory_bytes"])
        for r in cost.stages.values():
            k = r["invocations"]
            w.writerow([r["name"], r["devices"], k, r["compute_s"] * k, r["comm_s"] * k, r["exposed_comm_s"] * k,
                        r["comm_bytes"] * k, r["time_s"], r["weight_bytes"], r["peak_activation_bytes"],
                        r["weight_bytes"] + (r["peak_activation_bytes"] or 0)])
        return buf.getvalue()
    if fmt == "md":
        lines = [f"**{cost.graph.meta.get('model', cost.graph.name)}** on {cost.plan.degree} × {cost.hardware.name}, "
                 f"plan {cost.plan.label}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines + [""] + summary_lines(cost, time_range)) + "\n"
    if fmt == "table":
        Console, Table = rich_table()
        t = Table(title=f"{cost.graph.meta.get('model', cost.graph.name)} per device: {cost.plan.degree} × "
                        f"{cost.hardware.name}, plan {cost.plan.label}")
        for h in head:
            t.add_column(h, justify="left" if h == "stage" else "right")
        for i, r in enumerate(body):
            t.add_row(*r, end_section=(i == len(body) - 2))
        con = Console()
        con.print(t)
        for line in summary_lines(cost, time_range):
            con.print(line)
        return None
    raise ValueError(f"unknown format {fmt!r}; allowed: table, json, md, csv")

