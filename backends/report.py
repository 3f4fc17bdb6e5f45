"""Reports of an Estimate: a rich terminal table, Markdown, CSV and JSON.

Every view is made from the same uniform records (``Estimate.to_dict()``), so the formats
always agree.
"""
from __future__ import annotations

import csv
import heapq
import io
import json

from wanir import hardware as hwlib
from wanir import jsonout, kernels
from wanir.errors import WanirError
from wanir.result import STAGE_KEYS, Estimate

from .display import (TIME_UNITS, column_time_unit, fmt_bytes, fmt_count, fmt_time,  # noqa: F401 - re-exported
                      fmt_time_in, fmt_time_range, fmt_time_range_in, node_bytes, rich_table, time_unit)


def rows(est: Estimate) -> list[dict]:
    """One flat record per stage plus a 'total' record (raw numbers): the stage totals per
    generation, per-invocation weights and peaks, the stage's peak GPU memory alone (its
    weights + its activation peak), its share of the total time and its bound."""
    out = []
    info = est.extra.get("stages", {})
    total_t = est.total.get("time_s")
    for s in est.stages:
        r = {"stage": s.name, "invocations": s.invocations}
        for k in STAGE_KEYS:
            r[k] = s.total[k]
        r["params"] = s.per_invocation["params"]
        r["weight_bytes"] = s.per_invocation["weight_bytes"]
        r["peak_activation_bytes"] = s.per_invocation["peak_activation_bytes"]
        r["flops_per_invocation"] = s.per_invocation["tensor_flops"] + s.per_invocation["vector_flops"]
        pa = s.per_invocation["peak_activation_bytes"]
        on_gpu = info.get(s.name, {}).get("on_gpu", True)
        # a stage of two experts under offload holds one expert at a time (resident_weight_bytes)
        held = info.get(s.name, {}).get("resident_weight_bytes", s.per_invocation["weight_bytes"])
        r["peak_memory_bytes"] = None if pa is None else ((held + pa) if on_gpu else 0)
        r["time_share"] = (s.total["time_s"] / total_t) if total_t and s.total["time_s"] is not None else None
        r["bound"] = info.get(s.name, {}).get("bound")
        r["device"] = info.get(s.name, {}).get("device")
        out.append(r)
    t = est.total
    out.append({"stage": "total", "invocations": None, **{k: t.get(k) for k in STAGE_KEYS if k in t},
                "weight_bytes": sum(s.per_invocation["weight_bytes"] for s in est.stages),
                "peak_activation_bytes": est.extra.get("memory", {}).get("activation_bytes"),
                "flops_per_invocation": None, "peak_memory_bytes": t.get("peak_memory_bytes"),
                "time_share": 1.0 if total_t else None, "bound": None, "device": est.hardware})
    return out


def fmt_share(v) -> str:
    """A fraction as a percentage, or '-'."""
    return "-" if v is None else f"{100 * v:.1f} %"


def _display_rows(est: Estimate):
    head = ["stage", "invocations", "FLOPs", "bytes", "weights", "peak memory", "time", "share", "bound"]
    body = []
    for r in rows(est):
        flops = None if r["tensor_flops"] is None else r["tensor_flops"] + (r["vector_flops"] or 0)
        body.append([r["stage"], "" if r["invocations"] is None else str(r["invocations"]),
                     fmt_count(flops), fmt_bytes(r["bytes"]), fmt_bytes(r["weight_bytes"]),
                     fmt_bytes(r["peak_memory_bytes"]),
                     fmt_time_range(r["time_s"], est.total.get("time_range_s")) if r["stage"] == "total"
                     else fmt_time(r["time_s"]), fmt_share(r["time_share"]),
                     r["bound"] or ""])
    return head, body


def scope_rows(est: Estimate, depth: int = 2, by: str = "scope") -> list[dict]:
    """Per-generation totals grouped by scope path cut at ``depth`` levels below the stage
    (``by="scope"``), or by op kind within that scope (``by="kind"``). Each record:
    stage, scope, kind (or None), nodes, flops, bytes, time_s, share of the total time,
    bound (the bound of the larger part of its time). A stage whose time exceeds its nodes'
    (bound by the host's issue, or with host synchronizations that cannot overlap) gets a
    ``STAGE/(host)`` record with the difference, bound ``issue``, so the records add up to
    the stage times. Sorted by time, largest first."""
    if depth < 0:
        raise ValueError(f"--depth must be >= 0, got {depth}")
    total_t = est.total.get("time_s") or 0.0
    groups: dict[tuple, dict] = {}
    for n in est.graph:
        parts = n.scope.path.split("/")
        key_scope = "/".join(parts[:1 + depth])
        key = (n.stage, key_scope, n.kind if by == "kind" else None)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"stage": n.stage, "scope": key_scope, "kind": key[2], "nodes": 0, "flops": 0,
                               "bytes": 0, "time_s": 0.0, "_compute": 0.0}
        m = n.multiplicity
        c = n.costs
        g["nodes"] += 1
        g["flops"] += (c.get("tensor_flops", 0) + c.get("vector_flops", 0)) * m
        g["bytes"] += (c.get("bytes_read", 0) + c.get("bytes_written", 0)) * m
        t = c.get("time_s", 0.0) * m
        g["time_s"] += t
        if c.get("bound") == "compute":
            g["_compute"] += t
    node_t: dict[str, float] = {}
    for g in groups.values():
        node_t[g["stage"]] = node_t.get(g["stage"], 0.0) + g["time_s"]
    for st in getattr(est, "stages", ()):      # a bare graph view (one device of a plan) has none
        host = st.total.get("time_s") or 0.0
        extra = host - node_t.get(st.name, 0.0)
        if extra > 1e-12 * max(host, 1.0):
            groups[(st.name, f"{st.name}/(host)", None)] = {
                "stage": st.name, "scope": f"{st.name}/(host)", "kind": None, "nodes": 0, "flops": 0, "bytes": 0,
                "time_s": extra, "_compute": 0.0, "_issue": True}
    out = []
    for g in groups.values():
        comp = g.pop("_compute")
        if g.pop("_issue", False):
            g["share"] = g["time_s"] / total_t if total_t else None
            g["bound"] = "issue"
            out.append(g)
            continue
        g["share"] = g["time_s"] / total_t if total_t else None
        g["bound"] = "compute" if g["time_s"] and comp >= g["time_s"] / 2 else "memory"
        out.append(g)
    out.sort(key=lambda g: -g["time_s"])
    return out


def render_scopes(est: Estimate, fmt: str = "table", depth: int = 2, by: str = "scope", limit: int | None = 40):
    """Render :func:`scope_rows` as 'table' (prints, returns None), 'md', 'csv' or 'json'."""
    recs = scope_rows(est, depth, by)
    if fmt == "json":
        return jsonout.dumps(recs, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(recs[0].keys()) if recs else ["scope"])
        w.writeheader()
        for r in recs:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        return buf.getvalue()
    shown = recs if limit is None else recs[:limit]
    head = ["stage", "scope"] + (["op"] if by == "kind" else []) + ["nodes", "FLOPs", "bytes", "time", "share", "bound"]
    body = [[r["stage"], r["scope"]] + ([r["kind"]] if by == "kind" else []) +
            [str(r["nodes"]), fmt_count(r["flops"]), fmt_bytes(r["bytes"]), fmt_time(r["time_s"]),
             fmt_share(r["share"]), r["bound"]] for r in shown]
    if fmt == "md":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(b) + " |" for b in body]
        if len(recs) > len(shown):
            lines.append(f"\n{len(recs) - len(shown)} more rows")
        return "\n".join(lines) + "\n"
    Console, Table = rich_table()
    table = Table(title=f"{est.model} on {est.hardware}: time by {by} (depth {depth})",
                  caption=f"{len(recs) - len(shown)} more rows" if len(recs) > len(shown) else None)
    for h in head:
        table.add_column(h, justify="left" if h in ("stage", "scope", "op", "bound") else "right")
    for b in body:
        table.add_row(*b)
    Console().print(table)
    return None


def expert_lines(est: Estimate) -> list[str]:
    """One line per stage of two experts (Wan2.2 A14B): each expert's steps and DiT calls."""
    out = []
    for s in est.stages:
        experts = getattr(s, "experts", None)
        if experts:
            out.append(f"{s.name} experts: " + ", ".join(
                f"{e['name']} {e['steps']} steps ({e['calls']} calls)" for e in experts))
    return out


def to_json(est: Estimate) -> str:
    """The JSON document (schema in docs/cli.md)."""
    return jsonout.dumps(est.to_dict(), indent=2)


def optimizations(est: Estimate) -> list[str]:
    """The optimizations applied to the estimate's graph, one phrase each (docs/optimizations.md)."""
    return list(est.graph.meta.get("optimizations", {}).get("applied", []))


def to_markdown(est: Estimate) -> str:
    """A Markdown table of the stages and the total."""
    head, body = _display_rows(est)
    stack = stack_phrase(est)
    lines = [f"**{est.model}** — " + ", ".join(f"{k}={v}" for k, v in est.to_dict()["workload"].items()) +
             (f"; {stack}" if stack else ""), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    if optimizations(est):
        lines.insert(1, "optimizations: " + ", ".join(optimizations(est)))
    lines += [f"\n{x}" for x in expert_lines(est)]
    lines += [f"\n> warning: {w}" for w in est.warnings]
    return "\n".join(lines) + "\n"


def to_csv(est: Estimate) -> str:
    """CSV with one row per stage plus a total row (raw numbers); ``time_low_s`` and
    ``time_high_s``, the total's time range in seconds (``total.time_range_s``), are filled
    on the total row only and left empty on the stage rows."""
    rng = est.total.get("time_range_s")
    recs = [{**r, "time_low_s": rng[0] if rng and r["stage"] == "total" else None,
             "time_high_s": rng[1] if rng and r["stage"] == "total" else None} for r in rows(est)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(recs[0].keys()))
    w.writeheader()
    for r in recs:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def stack_phrase(est: Estimate) -> str:
    """The attention kernel and precisions the estimate assumed, one phrase: 'attention
    kernel flash2; DiT weights fp32, DiT compute bf16, text encoder bf16, VAE fp32' (``sdpa``
    shown with the kernel it picks on the GPU). '' when the estimate carries no options."""
    opts = getattr(est, "options", None)
    if opts is None:
        return ""
    kern = opts.roofline.attention_kernel
    if kern == "sdpa" and est.hardware:
        try:
            kern = f"sdpa→{kernels.resolve_attention('sdpa', hwlib.load(est.hardware))}"
        except WanirError:    # a --config-dir device: name sdpa as configured
            pass
    p = opts.precision
    return (f"attention kernel {kern}; DiT weights {p.dit_weights}, DiT compute {p.dit_compute}, "
            f"text encoder {p.text_encoder}, VAE {p.vae}")


def table_caption(est: Estimate) -> str:
    """The caption ``wanir estimate`` prints under its stage table, one line: the workload,
    the runtime, the stack (:func:`stack_phrase`), what the peak memory holds (allocator and
    CUDA context), the time range's validation class, the weight transfer, the optimizations,
    stages on another device, the experts' steps. The web app shows the same line."""
    wl = est.to_dict()["workload"]
    caption = ", ".join(f"{k}={v}" for k, v in wl.items()
                        if k in ("width", "height", "frames", "steps", "guidance", "batch"))
    extra = []
    if est.graph.meta.get("runtime"):
        extra.append(f"runtime={est.graph.meta['runtime']}")
    stack = stack_phrase(est)
    if stack:
        extra.append(stack)
    mem = est.extra.get("memory", {})
    if mem.get("reserve_bytes"):
        extra.append(f"peak memory: {fmt_bytes(mem.get('peak_reserved_bytes'))} reserved by PyTorch's allocator "
                     f"({fmt_bytes(mem.get('peak_allocated_bytes'))} in tensors) + {fmt_bytes(mem['reserve_bytes'])} "
                     f"CUDA context")
    if est.total.get("time_range_class"):
        extra.append(f"time range from validation class {est.total['time_range_class']} (docs/time-model.md)")
    if est.extra.get("transfer_s"):
        extra.append(f"host<->device weight transfer {fmt_time(est.extra['transfer_s'])} included in the total")
    if optimizations(est):
        extra.append("optimizations: " + ", ".join(optimizations(est)))
    for w in ("stages",):
        host = [s for s, i in est.extra.get(w, {}).items() if i.get("device") not in (None, est.hardware)]
        if host:
            extra.append(", ".join(f"{s} on {est.extra['stages'][s]['device']}" for s in host))
    extra += expert_lines(est)
    caption = "; ".join([c for c in [caption] + extra if c])
    return caption


def print_table(est: Estimate, console=None) -> None:
    """Print the stage table with rich."""
    Console, Table = rich_table()

    console = console or Console()
    head, body = _display_rows(est)
    title = f"{est.model}" + (f" on {est.hardware}" if est.hardware else "")
    caption = table_caption(est)
    table = Table(title=title, caption=caption or None)
    for h in head:
        table.add_column(h, justify="left" if h == "stage" else "right")
    for i, r in enumerate(body):
        table.add_row(*r, end_section=(i == len(body) - 2))
    console.print(table)
    for line in provenance_lines(est):
        console.print(line, highlight=False)
    for w in est.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


#: the kernel constants ``wanir calibrate`` measures (docs/time-model.md); other assumed
#: values (``microarch.*``, GEMM tiles) come from the hardware file
CALIBRATED_KEYS = ("kernels.gemm.ceiling", "kernels.gemm.fp32_ceiling", "kernels.conv.ceiling_factor",
                   "kernels.memory.fraction", "kernels.memory.l2_fraction", "kernels.issue.cpu_issue_us",
                   "host_link.efficiency")


def _calibrates(key: str) -> bool:
    return key in CALIBRATED_KEYS or (key.startswith("kernels.attention.") and key.endswith(".mma_ceiling"))


def provenance_lines(est: Estimate) -> list[str]:
    """One line per stage saying what its time rests on: how many of the inputs are
    measured, reported, datasheet or assumed values, and the share of the stage's time that
    rests on at least one assumed value (docs/time-model.md); then, when any share is
    assumed, what would replace the assumptions (:func:`calibration_hint`)."""
    out = []
    for s in est.stages:
        p = s.provenance
        if not p:
            continue
        kinds = ", ".join(f"{k} {len(v)}" for k, v in p["inputs"].items())
        out.append(f"time of {s.name}: inputs {kinds}; {100 * p['assumed_share']:.0f} % of it rests on assumed values")
    hw = est.run.hardware if est.run is not None else None
    if hw is not None and hw.family == "generic":
        out.append(f"hardware {est.hardware} is of family generic: every kernel constant it is timed with is assumed "
                   f"(wanir/data/kernels.yaml, families.generic); replace them with `wanir calibrate -o DIR` on the "
                   f"device or with its own benchmarks under kernels: (docs/adding-hardware.md)")
    hint = calibration_hint(est)
    if hint:
        out.append(hint)
    return out


def calibration_hint(est: Estimate) -> str | None:
    """What would replace the assumed values the estimate's time rests on: the exact
    ``wanir calibrate`` command to run on that device (for the kernel constants it measures)
    and the hardware-file values it cannot measure. None when no stage rests on an assumed
    value."""
    assumed = sorted({k for s in est.stages if s.provenance and s.provenance["assumed_share"] > 0
                      for k in s.provenance["inputs"].get("assumed", ())})
    if not assumed:
        return None
    name = est.hardware or "h100-sxm"
    kind = "gpu"
    try:
        kind = hwlib.load(name).kind
    except WanirError:    # a --config-dir or entry-point device: take it as a GPU
        pass
    measured = [k.removeprefix("kernels.") for k in assumed if _calibrates(k)]
    table = [k.removeprefix("kernels.") for k in assumed if not _calibrates(k) and k.startswith("kernels.")]
    files = [k for k in assumed if not _calibrates(k) and not k.startswith("kernels.")]
    dev = "--device cpu " if kind == "cpu" else ""
    parts = []
    if measured:
        parts.append(f"run `wanir calibrate {dev}--base {name} -o cal` on the {name}, then add "
                     f"`--config-dir cal hardware={name}-calibrated` (it measures {', '.join(measured)})")
    rest = []
    if table:
        rest.append(f"{', '.join(table)} (wanir/data/kernels.yaml; override under `kernels:`)")
    if files:
        rest.append(f"{', '.join(files)} (the {name} YAML: give published values with their source)")
    if rest:
        parts.append(("still assumed after it: " if measured else "assumed: ") + ", ".join(rest))
    return "assumed values: " + "; ".join(parts)


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


def heaviest_ops(est, n: int = 25) -> list[dict]:
    """The ``n`` ops with the most time per generation (most FLOPs where there is no time):
    dicts with path, kind, category, flops, bytes and time_s per execution and multiplicity."""
    nodes = [node for node in est.graph if node.category != "input"]

    def flops(node):
        c = node.costs
        return int(c.get("tensor_flops") or 0) + int(c.get("vector_flops") or 0)

    have_time = any(node.costs.get("time_s") is not None for node in nodes)
    key = (lambda nd: (nd.costs.get("time_s") or 0.0) * nd.multiplicity) if have_time else \
        (lambda nd: flops(nd) * nd.multiplicity)
    # the records of the n heaviest only (heapq.nlargest: the order of a stable descending sort)
    return [{"path": node.path, "kind": node.kind, "category": node.category, "flops": flops(node),
             "bytes": node_bytes(node), "time_s": node.costs.get("time_s"), "bound": node.costs.get("bound"),
             "multiplicity": node.multiplicity} for node in heapq.nlargest(n, nodes, key=key)]
