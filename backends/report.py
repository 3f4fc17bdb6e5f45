"""Reports of an Estimate: a rich terminal table, Markdown, CSV and JSON.

Every view is made from the same uniform records (``Estimate.to_dict()``), so the formats
always agree.
"""
from __future__ import annotations

import csv
import io
import json

from wanir.estimate import STAGE_KEYS, Estimate

COLUMNS = (  # (header, stage-total key, formatter)
    ("stage", None, None),
    ("invocations", "invocations", str),
)


def fmt_count(v) -> str:
    """A count in engineering units (1.23 P), or '-' for None."""
    if v is None:
        return "-"
    for unit, scale in (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return str(v)


def fmt_bytes(v) -> str:
    """Bytes in binary units (GiB), or '-'."""
    if v is None:
        return "-"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v} B"


def fmt_time(v) -> str:
    """Seconds as s / ms / min, or '-'."""
    if v is None:
        return "-"
    if v >= 120:
        return f"{v / 60:.3g} min"
    if v >= 1:
        return f"{v:.3g} s"
    return f"{v * 1e3:.3g} ms"


def rows(est: Estimate) -> list[dict]:
    """One flat record per stage plus a 'total' record (raw numbers)."""
    out = []
    for s in est.stages:
        r = {"stage": s.name, "invocations": s.invocations}
        for k in STAGE_KEYS:
            r[k] = s.total[k]
        r["params"] = s.per_invocation["params"]
        r["weight_bytes"] = s.per_invocation["weight_bytes"]
        r["peak_activation_bytes"] = s.per_invocation["peak_activation_bytes"]
        r["flops_per_invocation"] = s.per_invocation["tensor_flops"] + s.per_invocation["vector_flops"]
        out.append(r)
    t = est.total
    out.append({"stage": "total", "invocations": None, **{k: t.get(k) for k in STAGE_KEYS if k in t},
                "weight_bytes": sum(s.per_invocation["weight_bytes"] for s in est.stages),
                "peak_activation_bytes": t.get("peak_memory_bytes"),
                "flops_per_invocation": None})
    return out


def _display_rows(est: Estimate):
    head = ["stage", "invocations", "tensor FLOPs", "vector FLOPs", "params", "weights", "bytes", "peak act.",
            "time"]
    body = []
    for r in rows(est):
        body.append([r["stage"], "" if r["invocations"] is None else str(r["invocations"]),
                     fmt_count(r["tensor_flops"]), fmt_count(r["vector_flops"]), fmt_count(r["params"]),
                     fmt_bytes(r["weight_bytes"]), fmt_bytes(r["bytes"]), fmt_bytes(r["peak_activation_bytes"]),
                     fmt_time(r["time_s"])])
    return head, body


def to_json(est: Estimate) -> str:
    """The JSON document (schema in docs/cli.md)."""
    return json.dumps(est.to_dict(), indent=2)


def to_markdown(est: Estimate) -> str:
    """A Markdown table of the stages and the total."""
    head, body = _display_rows(est)
    lines = [f"**{est.model}** — " + ", ".join(f"{k}={v}" for k, v in est.to_dict()["workload"].items()), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    lines += [f"\n> warning: {w}" for w in est.warnings]
    return "\n".join(lines) + "\n"


def to_csv(est: Estimate) -> str:
    """CSV with one row per stage plus a total row (raw numbers)."""
    recs = rows(est)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(recs[0].keys()))
    w.writeheader()
    for r in recs:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def print_table(est: Estimate, console=None) -> None:
    """Print the stage table with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    head, body = _display_rows(est)
    wl = est.to_dict()["workload"]
    title = f"{est.model}" + (f" on {est.hardware}" if est.hardware else "")
    caption = ", ".join(f"{k}={v}" for k, v in wl.items() if k in ("width", "height", "frames", "steps", "guidance", "batch"))
    table = Table(title=title, caption=caption or None)
    for h in head:
        table.add_column(h, justify="left" if h == "stage" else "right")
    for i, r in enumerate(body):
        table.add_row(*r, end_section=(i == len(body) - 2))
    console.print(table)
    for w in est.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def render(est: Estimate, fmt: str) -> str | None:
    """Render ``est`` as 'json', 'md' or 'csv' (a string); 'table' prints and returns None."""
    if fmt == "json":
        return to_json(est)
    if fmt == "md":
        return to_markdown(est)
    if fmt == "csv":
        return to_csv(est)
    if fmt == "table":
        print_table(est)
        return None
    raise ValueError(f"unknown format {fmt!r}; allowed: table, json, md, csv")
