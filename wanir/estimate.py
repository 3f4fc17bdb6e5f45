"""The public API: build an annotated graph from a configuration and summarize it.

``estimate(overrides)`` returns an :class:`Estimate` whose ``to_dict()`` is the JSON
document ``wanir estimate --format json`` prints (schema in docs/cli.md; keys are never
renamed).
"""
from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from typing import Iterable

from . import options as _options
from .config import load_config
from .graph import Graph, Node
from .options import TIMING_KEYS, RunOptions
from .result import ADDITIVE, STAGE_KEYS, TOTAL_KEYS, Estimate, StageResult, summarize

__all__ = ["ADDITIVE", "STAGE_KEYS", "TOTAL_KEYS", "TIMING_KEYS", "Estimate", "StageResult", "RunOptions",
           "annotate", "annotate_counts", "annotate_time", "summarize", "build", "estimate", "estimate_config",
           "estimate_graph", "paused_gc", "Graph", "Node"]


def annotate_counts(graph: Graph, cfg=None, check: bool | None = None) -> dict:
    """Run the hardware-independent passes over ``graph``: verify, flops, bytes (fusion
    policy ``roofline.fusion``) and memory (residency ``memory.*``). ``cfg``: a RunOptions,
    a composed config or None (defaults). Returns their summaries by name ("flops",
    "bytes_pass", "memory").

    ``check``: True always verifies, False never; None (default) verifies a graph that holds
    nodes the builder did not check (``graph.unchecked``: a transformed or hand-made graph).
    A graph made only by the GraphBuilder is verified by construction: every node's shape
    and weight rules ran, on inputs that already existed, when it was added."""
    from wanir.passes import count

    return count.run(graph, cfg, check)


def annotate_time(graph: Graph, cfg, counts: dict, hw=None) -> dict:
    """Time a graph annotated by :func:`annotate_counts` with the roofline backend on
    ``hw`` (default: the config's hardware, h100-sxm when it has none). ``cfg``: a composed
    config or a RunOptions (then give ``hw``). Writes the nodes' timing annotations: give
    it a graph no Estimate holds (``graph.timing_copy()`` to re-time). Returns ``counts``
    plus "roofline", the per-stage records ``bytes``, ``peak_activation_bytes`` and
    ``time_s`` (per invocation), the pipeline's ``peak_memory_bytes``, ``transfer_s``,
    ``fits`` and fit ``warnings``."""
    from wanir import hardware
    from wanir.backends import roofline
    from wanir.passes import memory

    opts = _options.of(cfg)
    ro, mo = opts.roofline, opts.memory
    if hw is None:
        hw = hardware.from_config(None if isinstance(cfg, RunOptions) else cfg)
    host_stages = memory.HOST_STAGES_T5_CPU if mo.t5_cpu else ()
    host = hardware.load(mo.host) if host_stages else None
    by, mem = counts["bytes_pass"], counts["memory"]
    kernel, allow_tf32_conv = roofline.timing_options(cfg)
    rf = roofline.run(graph, hw, mode=ro.mode, attention_kernel=kernel, host=host,
                      host_stages=host_stages, offload_model=mo.offload_model, allow_tf32_conv=allow_tf32_conv,
                      weight_bytes={s: r["weight_bytes"] for s, r in mem["stages"].items()})
    graph.meta["hardware"] = hw.name
    out = dict(counts)
    out.update(roofline=rf,
               bytes={s: r["bytes"] for s, r in by.items()},
               peak_activation_bytes={s: r["peak_activation_bytes"] for s, r in mem["stages"].items()},
               time_s=dict(rf["time_s"]),
               peak_memory_bytes=mem["pipeline"]["peak_memory_bytes"],
               transfer_s=rf["transfer_s"])
    out["fits"] = mem["pipeline"]["peak_memory_bytes"] <= hw.memory_bytes
    msg = memory.fit_message(mem["pipeline"], hw.memory_bytes, hw.name, mo.offload_model, mo.t5_cpu)
    out["warnings"] = [msg] if msg else []
    out["hw"] = hw
    return out


def annotate(graph: Graph, cfg=None) -> dict:
    """Run every pass over ``graph`` (:func:`annotate_counts`, then :func:`annotate_time`);
    returns the summaries by name."""
    return annotate_time(graph, cfg, annotate_counts(graph, cfg))


def resolve_plan(opts: RunOptions):
    """The resolved parallel Plan of ``opts`` (PlanError naming the keys when it is invalid),
    or None when it runs on one device without sharding."""
    from wanir.backends.parallel import resolve_plan as _resolve

    p = _resolve(opts.parallel.as_mapping())
    return p if (p.degree > 1 or p.fsdp > 1) else None


def parallel_record(cost) -> dict:
    """The ``parallel`` object of the estimate JSON from a MultiDeviceCost: plan, devices,
    hardware, per-device stages and totals, ``communication`` (seconds and bytes per video
    per device) and notes. Plain data."""
    d = cost.to_dict()
    st = list(cost.stages.values())
    d["communication"] = {
        "exposed_s": cost.comm_s,
        "total_s": sum(r["comm_s"] * r["invocations"] for r in st),
        "bytes": sum(int(r["comm_bytes"]) * r["invocations"] for r in st),
        "share": d["total"]["comm_share"],
    }
    return d


def parallel_warnings(cost) -> list[str]:
    """The per-device fit warning of a multi-device plan (empty when it fits)."""
    if cost.fits:
        return []
    gib = 2**30
    return [f"does not fit: one device of the plan {cost.plan.label} needs {cost.peak_memory_bytes / gib:.1f} GiB "
            f"at its peak, {cost.hardware.name} has {cost.hardware.memory_bytes / gib:.1f} GiB"]


def finish(graph: Graph, summaries: dict, cfg, opts: RunOptions, plan=None, device_graphs: dict | None = None,
           extra: dict | None = None) -> Estimate:
    """Summarize an annotated pipeline graph into an Estimate; with a multi-device ``plan``
    also cost the plan's per-device graph (``device_graphs`` caches them by plan shape) and
    attach its ``parallel`` record, taking the fit warning from the per-device peak."""
    par = None
    warns = None
    if plan is not None:
        from wanir.backends.parallel import DeviceGraph, Plan, check_plan

        check_plan(plan, guidance=(graph.meta.get("workload") or {}).get("guidance"))
        key = (plan.ulysses, plan.ring, plan.cfg, plan.fsdp)
        dg = None if device_graphs is None else device_graphs.get(key)
        if dg is None:
            shape = Plan(plan.name, plan.ulysses, plan.ring, plan.cfg, 1, plan.fsdp, plan.overlap,
                         plan.gpus_per_node, plan.network, plan.intra_node)
            dg = DeviceGraph(graph, shape, opts)
            if device_graphs is not None:
                device_graphs[key] = dg
        single_s = sum(summaries["time_s"][s] * sc.repeat for s, sc in graph.stages.items()) + \
            summaries.get("transfer_s", 0.0)
        cost = dg.cost(summaries["hw"], single_s, plan=plan)
        par = parallel_record(cost)
        fit = [w for w in summaries.get("warnings", ()) if w.startswith("does not fit")]
        warns = [w for w in summaries.get("warnings", ()) if w not in fit] + parallel_warnings(cost)
        summaries = dict(summaries, warnings=warns)
    return summarize(graph, summaries, cfg, options=opts, extra=extra, parallel=par)


def build(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None) -> Graph:
    """Compose the config, lower the pipeline and run the passes; return the annotated graph."""
    return estimate(overrides, config_dir).graph


@contextmanager
def paused_gc():
    """Pause Python's cyclic garbage collector while a graph is built and annotated: the
    build allocates tens of thousands of small objects, which would trigger many collections
    that find nothing to free (everything is freed by reference counting). Restores the
    previous state afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def estimate_config(cfg) -> Estimate:
    """Estimate an already composed configuration (see :func:`wanir.config.load_config`).
    Options are parsed once (:mod:`wanir.options`); a multi-device ``parallel`` plan is
    costed too (``Estimate.parallel``)."""
    from wanir import hardware
    from wanir.frontends.checkpoint import apply_model_from
    from wanir.frontends.pipeline import build_pipeline

    opts = _options.from_config(cfg)
    plan = resolve_plan(opts)
    cfg, inferred = apply_model_from(cfg)  # model.from: components read from a checkpoint
    with paused_gc():
        graph = build_pipeline(cfg)
        summaries = annotate_time(graph, opts, annotate_counts(graph, opts), hw=hardware.from_config(cfg))
        return finish(graph, summaries, cfg, opts, plan, extra={"inferred": inferred})


def estimate(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None) -> Estimate:
    """Estimate one generation for the configuration given by Hydra-style ``overrides``
    (a list or tuple of strings, e.g. ``["model=wan2.1-t2v-1.3b", "workload.height=480"]``)
    and an optional user config directory. Returns an :class:`Estimate`. Safe to call from
    several threads."""
    from .errors import ConfigError

    if not isinstance(overrides, (list, tuple)):
        raise ConfigError(f"overrides must be a list or tuple of strings such as ['workload.height=480'], "
                          f"got {type(overrides).__name__}")
    bad = [o for o in overrides if not isinstance(o, str)]
    if bad:
        raise ConfigError(f"overrides must be strings; got {type(bad[0]).__name__} {str(bad[0])[:60]!r}")
    return estimate_config(load_config(list(overrides), config_dir))


def estimate_graph(graph: Graph, cfg=None) -> Estimate:
    """Annotate and summarize a graph made elsewhere (e.g. from a YAML spec)."""
    opts = _options.of(cfg)
    return summarize(graph, annotate(graph, cfg), None if isinstance(cfg, RunOptions) else cfg, options=opts)
