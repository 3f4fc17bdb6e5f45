"""The public API: build an annotated graph from a configuration and summarize it.

``estimate(overrides)`` returns an :class:`Estimate` whose ``to_dict()`` is the JSON
document ``wanir estimate --format json`` prints (schema in docs/cli.md; keys are never
renamed).
"""
from __future__ import annotations

import gc
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from . import fit_hints, hardware
from . import options as _options
from .backends import error_range
from .backends import host_stages as hostlib
from .backends import roofline
from .backends.host_stages import block_stream_plan
from .backends.parallel import DeviceGraph, Plan, check_plan
from .backends.parallel import resolve_plan as resolve_parallel_plan
from .backends.parallel.cost import plan_device_graph
from .frontends.pipeline import build_pipeline
from .graph import Graph, Node
from .options import TIMING_KEYS, RunOptions
from .passes import count as count_pass
from .passes import memory
from .passes.experts import apply_to_stage
from .resolve import clear_cache as clear_resolved
from .resolve import resolve, scenario_from_config
from .result import ADDITIVE, STAGE_KEYS, TOTAL_KEYS, Estimate, StageResult
from .result import summarize as _summarize
from .runtime import bare_run
from .scenario import Build, Run, Scenario, freeze

__all__ = ["ADDITIVE", "STAGE_KEYS", "TOTAL_KEYS", "TIMING_KEYS", "Estimate", "StageResult", "RunOptions",
           "annotate", "annotate_counts", "annotate_time", "summarize", "build", "estimate", "estimate_config",
           "estimate_graph", "paused_gc", "Graph", "Node", "count", "time", "evaluate", "Counted",
           "clear_caches"]


def annotate_counts(graph: Graph, check: bool | None = None, options: RunOptions | None = None,
                    mem=None) -> dict:
    """Run the hardware-independent passes over ``graph``: verify, flops, bytes (fusion
    policy ``roofline.fusion``) and memory (residency ``mem``, a checked
    ``wanir.runtime.MemoryOptions``, block streaming included) — the counting path of
    passes/count.py. ``options``/``mem``: the typed values of a Build (None: the defaults of
    :func:`wanir.runtime.bare_run`). Returns their summaries by name ("flops",
    "bytes_pass", "memory").

    ``check``: True always verifies, False never; None (default) verifies a graph that holds
    nodes the builder did not check (``graph.unchecked``: a transformed or hand-made graph).
    A graph made only by the GraphBuilder is verified by construction: every node's shape
    and weight rules ran, on inputs that already existed, when it was added."""
    if mem is None:
        mem = bare_run().memory
    if options is None:
        options = bare_run().options
    resident = None
    if mem.offload == "block":
        resident = {"diffusion_core": block_stream_plan(graph, mem.resident_params)["gpu_weight_bytes"]}
    return count_pass.run(graph, options, check, mem=mem, resident_weight_bytes=resident)


def annotate_time(graph: Graph, counts: dict, hw=None, options: RunOptions | None = None,
                  mem=None, runtime=None) -> dict:
    """Time a graph annotated by :func:`annotate_counts` with the roofline backend on
    ``hw`` (default: the built-in default hardware). Writes the nodes'
    timing annotations (a :class:`wanir.backends.roofline.TimedGraph` keeps them until its
    nodes are read): give it a graph no Estimate holds (``graph.timing_copy()`` to
    re-time). ``options``/``mem``/``runtime``: the typed values of a Run (None: those of
    :func:`wanir.runtime.bare_run`). Returns ``counts`` plus "roofline", the per-stage
    records ``bytes``, ``peak_activation_bytes`` and ``time_s`` (per invocation), the
    pipeline's ``peak_memory_bytes``, ``transfer_s``, ``fits``, fit ``warnings`` and ``hw``."""
    bare = bare_run()
    opts = options if options is not None else bare.options
    kernel, allow_tf32_conv = roofline.timing_options(opts)
    mode = opts.roofline.mode
    mopt = mem if mem is not None else bare.memory
    rt = runtime if runtime is not None else bare.runtime
    offload, t5_cpu = mopt.offload_model, mopt.t5_cpu
    if hw is None:
        hw = hardware.default_hardware()
    host_stages = memory.HOST_STAGES_T5_CPU if t5_cpu else ()
    host = hostlib.load_host(mopt, hw) if host_stages else None
    by, mem_summary = counts["bytes_pass"], counts["memory"]
    rf = roofline.run(graph, hw, mode=mode, attention_kernel=kernel, host=host, host_stages=host_stages,
                      offload_model=False, allow_tf32_conv=allow_tf32_conv,
                      matmul_tf32=roofline.matmul_tf32_option(opts), fusion=opts.roofline.fusion,
                      cuda_graphs=opts.runtime.cuda_graphs,
                      weight_bytes={s: r["weight_bytes"] for s, r in mem_summary["stages"].items()})
    rf["transfer_s"] = hostlib.transfer_seconds(graph, mem_summary, hw, mopt, rt, host_stages, mode == "ideal", rf)
    if hw.kind == "cpu":   # a CPU device: no CUDA context, and the weights already sit in its memory
        mem_summary = dict(mem_summary, pipeline=memory.pipeline_peak(mem_summary["stages"], False, 0))
        rf["transfer_s"] = 0.0
    graph.meta["hardware"] = hw.name
    out = dict(counts)
    out["memory"] = mem_summary
    out.update(roofline=rf,
               bytes={s: r["bytes"] for s, r in by.items()},
               peak_activation_bytes={s: r["peak_activation_bytes"] for s, r in mem_summary["stages"].items()},
               time_s=dict(rf["time_s"]),
               peak_memory_bytes=mem_summary["pipeline"]["peak_memory_bytes"],
               transfer_s=rf["transfer_s"])
    out["fits"] = mem_summary["pipeline"]["peak_memory_bytes"] <= hw.memory_bytes
    msg = memory.fit_message(mem_summary["pipeline"], hw.memory_bytes, hw.name, offload, t5_cpu)
    out["warnings"] = [msg] if msg else []
    tight = memory.tight_message(mem_summary["pipeline"], hw.memory_bytes, hw.name)
    if tight:
        out["warnings"].append(tight)
    out["hw"] = hw
    return out


def summarize(graph: Graph, summaries: dict, resolved=None, warnings: Iterable[str] = (), **kw) -> Estimate:
    """Assemble the immutable Estimate of an annotated graph (:func:`wanir.result.summarize`);
    a two-expert stage reads as the model runs (passes/experts.py)."""
    if "experts" in graph.meta:
        kw.setdefault("stage_adjust", apply_to_stage)
    return _summarize(graph, summaries, resolved, warnings, **kw)


def annotate(graph: Graph, options: RunOptions | None = None) -> dict:
    """Run every pass over ``graph`` (:func:`annotate_counts`, then :func:`annotate_time`)
    with run options ``options`` (None: the defaults); returns the summaries by name."""
    return annotate_time(graph, annotate_counts(graph, options=options), options=options)


def resolve_plan(opts: RunOptions):
    """The resolved parallel Plan of ``opts`` (PlanError naming the keys when it is invalid),
    or None when it runs on one device without sharding."""
    p = resolve_parallel_plan(opts.parallel.as_mapping())
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
        cap, need = cost.hardware.memory_bytes, cost.peak_memory_bytes
        if need >= (1 - memory.TIGHT_FRACTION) * cap:
            return [f"tight: one device of the plan {cost.plan.label} peaks at {need / gib:.1f} GiB, within "
                    f"{100 * memory.TIGHT_FRACTION:.0f} % of {cost.hardware.name}'s {cap / gib:.1f} GiB "
                    f"({(cap - need) / gib:.2f} GiB left); allocator fragmentation may not leave that much"]
        return []
    return [f"does not fit: one device of the plan {cost.plan.label} needs {cost.peak_memory_bytes / gib:.1f} GiB "
            f"at its peak, {cost.hardware.name} has {cost.hardware.memory_bytes / gib:.1f} GiB"]


def finish(graph: Graph, summaries: dict, run: Run, opts: RunOptions, plan=None, device_graphs: dict | None = None,
           extra: dict | None = None) -> Estimate:
    """Summarize an annotated pipeline graph timed with the resolved ``run`` into an Estimate;
    with a multi-device ``plan`` also cost the plan's per-device graph (``device_graphs``
    caches them by plan shape) and attach its ``parallel`` record, taking the fit warning
    from the per-device peak. ``opts``: the run options the Estimate reports (the plan's, as
    configured)."""
    par = None
    warns = None
    cost = None
    if plan is not None:
        check_plan(plan, guidance=(graph.meta.get("workload") or {}).get("guidance"))
        cache = {} if device_graphs is None else device_graphs
        key = (plan.ulysses, plan.ring, plan.cfg, plan.fsdp, plan.vae)
        if key not in cache:      # the plan's per-device graph, with the runtime's defaults on that plan
            shape = Plan(plan.name, plan.ulysses, plan.ring, plan.cfg, 1, plan.fsdp, plan.overlap,
                         plan.gpus_per_node, plan.network, plan.intra_node, plan.vae)   # dp changes only totals
            if run.plan_build is not None:     # the configuration's own build, counted once (cached)
                cache[key] = DeviceGraph(count(run.plan_build).graph, shape, run.plan_run)
            else:
                cache[key] = plan_device_graph(graph, run, shape)
        dg = cache[key]
        # the one-device baseline as the runtime runs one device (its offload and weight defaults):
        # the same number as `wanir estimate` without the plan, `multi_device_cost` and `wanir size`
        if "one-device" not in cache:
            cache["one-device"] = DeviceGraph(graph, Plan(), run)
        one = cache["one-device"]
        single_s = one.cost(summaries["hw"]).time_s
        cost = dg.cost(summaries["hw"], single_s, plan=plan)
        par = parallel_record(cost)
        # the one device's fit warnings do not apply to the plan: its per-device peak decides
        fit = [w for w in summaries.get("warnings", ()) if w.startswith(("does not fit", "tight:"))]
        warns = [w for w in summaries.get("warnings", ()) if w not in fit] + parallel_warnings(cost)
        summaries = dict(summaries, warnings=warns)
    rng = error_range.ranges(graph, summaries, cost)
    if par is not None:
        par["total"].update(time_range_s=rng["parallel"]["time_range_s"],
                            time_range_class=rng["parallel"]["time_range_class"])
    extra = dict(extra or {}, time_range=rng)
    # the Estimate keeps the resolved configuration as data (the HTML report and the web app show
    # it): the resolver's frozen output (Scenario.config, the same tree as run.config), not re-parsed
    return summarize(graph, summaries, run.config, options=opts, extra=extra, parallel=par,
                     time_range=rng["total"], run=run)


@dataclass(frozen=True, eq=False)
class Counted:
    """A Build lowered, transformed and counted: ``graph`` (frozen: annotated with counts,
    never with times) and ``counts`` (the counting passes' summaries, read-only). Shared by
    every Run timed on it; ``device_graphs`` caches the per-device graphs of plans (by plan
    shape and the run options they depend on)."""

    build: Build
    graph: Graph
    counts: Mapping
    device_graphs: dict = field(default_factory=dict, repr=False)
    lock: Any = field(default_factory=threading.Lock, repr=False)

    def device_graph_cache(self, run: Run) -> dict:
        """The per-device graph cache of plans timed with ``run``'s options (bounded): keyed
        on everything a :class:`DeviceGraph` takes from the run, the attention kernel's
        provenance included (a default kernel follows the GPU family, a set one does not)."""
        key = (run.options.roofline, run.memory, run.runtime, run.offload_from_runtime, run.kernel_from_runtime,
               run.model_family)
        with self.lock:
            d = self.device_graphs.get(key)
            if d is None:
                if len(self.device_graphs) >= 16:
                    self.device_graphs.pop(next(iter(self.device_graphs)))
                d = self.device_graphs[key] = {}
            return d


class _LRU:
    """A bounded, thread-safe least-recently-used cache."""

    def __init__(self, size: int):
        self.size, self.data, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            v = self.data.get(key)
            if v is not None:
                self.data.move_to_end(key)
            return v

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value

    def clear(self):
        with self.lock:
            self.data.clear()


#: counted builds kept (each holds one annotated pipeline graph, a few MB)
_COUNTED = _LRU(16)
#: estimates kept, by scenario
_ESTIMATES = _LRU(32)


def count(build: Build) -> Counted:
    """Lower ``build``'s pipeline (frontends/pipeline.py), apply its graph transforms and run
    the counting passes (verify, flops, bytes, memory). Returns a :class:`Counted` whose
    graph is frozen; cached (bounded LRU) on the frozen build, so every Run timed on the
    same build shares one count. Safe to call from several threads."""
    hit = _COUNTED.get(build)
    if hit is not None:
        return hit
    with paused_gc():
        graph = build_pipeline(build)
        graph.meta["count_key"] = _options.count_key(build.options)
        counts = annotate_counts(graph, options=build.options, mem=build.memory)
        graph.freeze()
        return _COUNTED.put(build, Counted(build, graph, _freeze(counts)))


def time(counted: Counted, run: Run, extra: Mapping | None = None) -> Estimate:
    """Time a counted build under ``run``: the roofline on the run's hardware, host stages
    and weight transfers, and — for a multi-device plan — the plan's per-device graph
    (cached on ``counted``). Returns a frozen :class:`Estimate` (its graph frozen too);
    ``extra``: read-only facts to attach (``inferred``)."""
    with paused_gc():
        g = roofline.TimedGraph(counted.graph)     # its nodes are made when someone reads them
        summaries = annotate_time(g, counted.counts, hw=run.hardware, options=run.options, mem=run.memory,
                                  runtime=run.runtime)
        dgs = counted.device_graph_cache(run) if run.plan is not None else None
        opts = run.configured_options or run.options
        if dgs is not None:
            with counted.lock:
                est = finish(g, summaries, run, opts, run.plan, dgs, extra=extra)
        else:
            est = finish(g, summaries, run, opts, None, extra=extra)
    g.freeze()
    return est


def evaluate(scenario: Scenario) -> Estimate:
    """``time(count(scenario.build), scenario.run)``: the Estimate of a resolved scenario,
    cached (bounded LRU) on the frozen scenario."""
    hit = _ESTIMATES.get(scenario)
    if hit is not None:
        return hit
    extra = {"inferred": list(scenario.inferred or ())}
    return _ESTIMATES.put(scenario, time(count(scenario.build), scenario.run, extra=extra))


def clear_caches() -> None:
    """Forget every cached scenario, count, estimate and shared roofline timer."""
    clear_resolved()
    roofline.clear_timers()
    _COUNTED.clear()
    _ESTIMATES.clear()


def _freeze(counts: dict) -> Mapping:
    return freeze(counts)


def build(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None) -> Graph:
    """Compose the config, lower the pipeline and run the passes; return the annotated graph."""
    return estimate(overrides, config_dir).graph


@contextmanager
def paused_gc():
    """Pause Python's cyclic garbage collector while a graph is built and annotated: the
    build allocates tens of thousands of small objects, which would trigger many collections
    that find nothing to free (everything is freed by reference counting: the graph, its
    scope tree included, holds no reference cycle). Restores the previous state afterwards.

    On the way out, the objects made meanwhile (an annotated graph, which the caches keep)
    join the oldest generation at once (``gc.freeze()`` then ``gc.unfreeze()``, which moves
    them without a scan) instead of being scanned by the young collections the re-enabled
    collector would run next. A caller's own ``gc.freeze`` is left alone (then the collector
    just resumes)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if gc.get_count()[0] > gc.get_threshold()[0] and not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def estimate_config(cfg) -> Estimate:
    """Estimate an already composed configuration (a mapping or the DictConfig
    :func:`wanir.config.load_config` returns): handed to the resolver
    (:func:`wanir.resolve.scenario_from_config`), then counted and timed through the same
    seam as :func:`estimate`."""
    return evaluate(scenario_from_config(cfg))


def estimate(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None, *,
             hints: bool = True) -> Estimate:
    """Estimate one generation for the configuration given by Hydra-style ``overrides``
    (a list or tuple of strings, e.g. ``["model=wan2.1-t2v-1.3b", "workload.height=480"]``)
    and an optional user config directory: :func:`wanir.resolve.resolve`, then
    :func:`count` and :func:`time`. Returns a frozen :class:`Estimate` (cached on the
    resolved scenario). Safe to call from several threads. ``hints``: when the peak does not
    fit (or is tight), re-estimate the changes that could help and add a warning naming those
    that fit (wanir/fit_hints.py)."""
    sc = resolve(overrides, config_dir)
    est = evaluate(sc)
    if not hints:
        return est
    key = ("hinted", sc)
    hit = _ESTIMATES.get(key)
    if hit is None:
        hit = _ESTIMATES.put(key, fit_hints.attach(est, list(overrides), config_dir, evaluate))
    return hit


def estimate_graph(graph: Graph, options: RunOptions | None = None) -> Estimate:
    """Annotate and summarize a graph made elsewhere (e.g. from a YAML spec) with run options
    ``options`` (None: the defaults) on the default hardware."""
    opts = options if options is not None else bare_run().options
    return summarize(graph, annotate(graph, opts), None, options=opts)
