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
from .options import TIMING_KEYS, RunOptions, select
from .result import ADDITIVE, STAGE_KEYS, TOTAL_KEYS, Estimate, StageResult
from .result import summarize as _summarize

__all__ = ["ADDITIVE", "STAGE_KEYS", "TOTAL_KEYS", "TIMING_KEYS", "Estimate", "StageResult", "RunOptions",
           "annotate", "annotate_counts", "annotate_time", "summarize", "build", "estimate", "estimate_config",
           "estimate_graph", "paused_gc", "Graph", "Node"]


def _opt(cfg, key: str, default):
    """``cfg``'s value at dotted ``key``, or ``default`` when cfg is None or lacks it. For keys
    not (yet) in wanir/options.py only."""
    if isinstance(cfg, RunOptions):
        return default
    return select(cfg, key, default)


def annotate_counts(graph: Graph, cfg=None, check: bool | None = None, options: RunOptions | None = None) -> dict:
    """Run the hardware-independent passes over ``graph``: verify, flops, bytes (fusion
    policy ``roofline.fusion``) and memory (residency ``memory.*`` as the runtime resolves
    it, block streaming included) — the counting path of passes/count.py. ``cfg``: a
    composed config (or None for the defaults). Returns their summaries by name ("flops",
    "bytes_pass", "memory").

    ``check``: True always verifies, False never; None (default) verifies a graph that holds
    nodes the builder did not check (``graph.unchecked``: a transformed or hand-made graph).
    A graph made only by the GraphBuilder is verified by construction: every node's shape
    and weight rules ran, on inputs that already existed, when it was added."""
    from wanir.passes import count
    from wanir.runtime import memory_options

    mem = memory_options(None if isinstance(cfg, RunOptions) else cfg)
    resident = None
    if mem.offload == "block":
        from wanir.backends.host_stages import block_stream_plan
        resident = {"diffusion_core": block_stream_plan(graph, mem.resident_params)["gpu_weight_bytes"]}
    return count.run(graph, options if options is not None else cfg, check, mem=mem,
                     resident_weight_bytes=resident)


def annotate_time(graph: Graph, cfg, counts: dict, hw=None, options: RunOptions | None = None) -> dict:
    """Time a graph annotated by :func:`annotate_counts` with the roofline backend on
    ``hw`` (default: the config's hardware, h100-sxm when it has none). Writes the nodes'
    timing annotations: give it a graph no Estimate holds (``graph.timing_copy()`` to
    re-time). Returns ``counts`` plus "roofline", the per-stage records ``bytes``,
    ``peak_activation_bytes`` and ``time_s`` (per invocation), the pipeline's
    ``peak_memory_bytes``, ``transfer_s``, ``fits``, fit ``warnings`` and ``hw``."""
    from wanir import hardware
    from wanir.backends import host_stages as hostlib
    from wanir.backends import roofline
    from wanir.passes import memory
    from wanir.runtime import memory_options, runtime_options

    conf = None if isinstance(cfg, RunOptions) else cfg
    opts = options if options is not None else _options.of(cfg)
    kernel, allow_tf32_conv = roofline.timing_options(opts)
    mode = opts.roofline.mode
    mopt = memory_options(conf)
    offload, t5_cpu = mopt.offload_model, mopt.t5_cpu
    if hw is None:
        hw = hardware.from_config(conf)
    host_stages = memory.HOST_STAGES_T5_CPU if t5_cpu else ()
    host = hostlib.load_host(mopt, hw) if host_stages else None
    by, mem = counts["bytes_pass"], counts["memory"]
    rf = roofline.run(graph, hw, mode=mode, attention_kernel=kernel, host=host, host_stages=host_stages,
                      offload_model=False, allow_tf32_conv=allow_tf32_conv,
                      matmul_tf32=roofline.matmul_tf32_option(opts), fusion=opts.roofline.fusion,
                      cuda_graphs=opts.runtime.cuda_graphs,
                      weight_bytes={s: r["weight_bytes"] for s, r in mem["stages"].items()})
    rf["transfer_s"] = hostlib.transfer_seconds(graph, mem, hw, mopt, runtime_options(conf), host_stages,
                                                mode == "ideal", rf)
    if hw.kind == "cpu":   # a CPU device: no CUDA context, and the weights already sit in its memory
        mem = dict(mem, pipeline=memory.pipeline_peak(mem["stages"], False, 0))   # every weight resident
        rf["transfer_s"] = 0.0
    graph.meta["hardware"] = hw.name
    out = dict(counts)
    out["memory"] = mem
    out.update(roofline=rf,
               bytes={s: r["bytes"] for s, r in by.items()},
               peak_activation_bytes={s: r["peak_activation_bytes"] for s, r in mem["stages"].items()},
               time_s=dict(rf["time_s"]),
               peak_memory_bytes=mem["pipeline"]["peak_memory_bytes"],
               transfer_s=rf["transfer_s"])
    out["fits"] = mem["pipeline"]["peak_memory_bytes"] <= hw.memory_bytes
    msg = memory.fit_message(mem["pipeline"], hw.memory_bytes, hw.name, offload, t5_cpu)
    out["warnings"] = [msg] if msg else []
    tight = memory.tight_message(mem["pipeline"], hw.memory_bytes, hw.name)
    if tight:
        out["warnings"].append(tight)
    out["hw"] = hw
    return out


def summarize(graph: Graph, summaries: dict, cfg=None, warnings: Iterable[str] = (), **kw) -> Estimate:
    """Assemble the immutable Estimate of an annotated graph (:func:`wanir.result.summarize`);
    a two-expert stage reads as the model runs (frontends/wan22.py)."""
    if "experts" in graph.meta:
        from wanir.frontends.wan22 import apply_to_stage
        kw.setdefault("stage_adjust", apply_to_stage)
    return _summarize(graph, summaries, cfg, warnings, **kw)


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
    gib = 2**30
    if cost.fits:
        from wanir.passes.memory import TIGHT_FRACTION
        cap, need = cost.hardware.memory_bytes, cost.peak_memory_bytes
        if need >= (1 - TIGHT_FRACTION) * cap:
            return [f"tight: one device of the plan {cost.plan.label} peaks at {need / gib:.1f} GiB, within "
                    f"{100 * TIGHT_FRACTION:.0f} % of {cost.hardware.name}'s {cap / gib:.1f} GiB "
                    f"({(cap - need) / gib:.2f} GiB left); allocator fragmentation may not leave that much"]
        return []
    return [f"does not fit: one device of the plan {cost.plan.label} needs {cost.peak_memory_bytes / gib:.1f} GiB "
            f"at its peak, {cost.hardware.name} has {cost.hardware.memory_bytes / gib:.1f} GiB"]


def finish(graph: Graph, summaries: dict, cfg, opts: RunOptions, plan=None, device_graphs: dict | None = None,
           extra: dict | None = None, store_config: bool = True) -> Estimate:
    """Summarize an annotated pipeline graph into an Estimate; with a multi-device ``plan``
    also cost the plan's per-device graph (``device_graphs`` caches them by plan shape) and
    attach its ``parallel`` record, taking the fit warning from the per-device peak."""
    par = None
    warns = None
    cost = None
    if plan is not None:
        from wanir.backends.parallel import Plan, check_plan
        from wanir.backends.parallel.cost import plan_device_graph

        check_plan(plan, guidance=(graph.meta.get("workload") or {}).get("guidance"))
        cache = {} if device_graphs is None else device_graphs
        key = (plan.ulysses, plan.ring, plan.cfg, plan.fsdp)
        if key not in cache:      # the plan's per-device graph, with the runtime's defaults on that plan
            shape = Plan(plan.name, plan.ulysses, plan.ring, plan.cfg, 1, plan.fsdp, plan.overlap,
                         plan.gpus_per_node, plan.network, plan.intra_node, plan.vae)   # dp changes only totals
            cache[key] = plan_device_graph(graph, cfg, shape)
        dg = cache[key]
        # the one-device baseline as the runtime runs one device (its offload and weight defaults):
        # the same number as `wanir estimate` without the plan, `multi_device_cost` and `wanir size`
        if "one-device" not in cache:
            cache["one-device"] = plan_device_graph(graph, cfg, Plan())
        one = cache["one-device"]
        single_s = one.cost(summaries["hw"]).time_s
        cost = dg.cost(summaries["hw"], single_s, plan=plan)
        par = parallel_record(cost)
        # the one device's fit warnings do not apply to the plan: its per-device peak decides
        fit = [w for w in summaries.get("warnings", ()) if w.startswith(("does not fit", "tight:"))]
        warns = [w for w in summaries.get("warnings", ()) if w not in fit] + parallel_warnings(cost)
        summaries = dict(summaries, warnings=warns)
    from wanir.backends import error_range   # late import: backends import wanir at load
    rng = error_range.ranges(graph, summaries, cost)
    if par is not None:
        par["total"].update(time_range_s=rng["parallel"]["time_range_s"],
                            time_range_class=rng["parallel"]["time_range_class"])
    extra = dict(extra or {}, time_range=rng)
    return summarize(graph, summaries, cfg if store_config else None, options=opts, extra=extra, parallel=par,
                     time_range=rng["total"])


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
    # under a plan, `stages` and `total` are the pipeline on one device as the runtime runs it
    # there (docs/cli.md): the one-device config; the plan's per-device graph is made from it
    one = cfg if plan is None else one_device_config(cfg)
    one_opts = opts if plan is None else _options.from_config(one)
    with paused_gc():
        graph = build_pipeline(one)
        graph.meta["count_key"] = _options.count_key(one_opts)
        summaries = annotate_time(graph, one, annotate_counts(graph, one, options=one_opts),
                                  hw=hardware.from_config(one), options=one_opts)
        return finish(graph, summaries, cfg, opts, plan, extra={"inferred": inferred})


def one_device_config(cfg):
    """A copy of ``cfg`` moved to one device with the runtime's one-device defaults
    (:func:`wanir.runtime.config_for_plan`)."""
    from wanir.backends.parallel.cost import PLAN_KEYS
    from wanir.runtime import config_for_plan
    return config_for_plan(cfg, dict.fromkeys(PLAN_KEYS, 1))


def estimate(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None, *,
             hints: bool = True) -> Estimate:
    """Estimate one generation for the configuration given by Hydra-style ``overrides``
    (a list or tuple of strings, e.g. ``["model=wan2.1-t2v-1.3b", "workload.height=480"]``)
    and an optional user config directory. Returns an :class:`Estimate`. Safe to call from
    several threads. ``hints``: when the peak does not fit (or is tight), re-estimate the
    changes that could help and add a warning naming those that fit (wanir/fit_hints.py)."""
    from . import fit_hints   # late import: fit_hints re-estimates through this module
    est = estimate_config(load_config(overrides, config_dir))   # load_config checks the overrides' type
    return fit_hints.attach(est, list(overrides), config_dir) if hints else est


def estimate_graph(graph: Graph, cfg=None) -> Estimate:
    """Annotate and summarize a graph made elsewhere (e.g. from a YAML spec)."""
    opts = _options.of(cfg)
    return summarize(graph, annotate(graph, cfg), None if isinstance(cfg, RunOptions) else cfg, options=opts)
