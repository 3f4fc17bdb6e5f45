"""The public API: build an annotated graph from a configuration and summarize it.

``estimate(overrides)`` returns an :class:`Estimate` whose ``to_dict()`` is the JSON
document ``wanir estimate --format json`` prints (schema in docs/cli.md; keys are never
renamed).
"""
from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable

from .config import load_config
from .graph import Graph, Node

#: keys of a stage's per-invocation record, in output order
STAGE_KEYS = ("tensor_flops", "vector_flops", "params", "weight_bytes", "bytes", "peak_activation_bytes", "time_s")
#: keys multiplied by the invocation count in a stage's total
ADDITIVE = ("tensor_flops", "vector_flops", "bytes", "time_s")
TOTAL_KEYS = ("tensor_flops", "vector_flops", "params", "bytes", "time_s", "peak_memory_bytes")


@dataclass
class StageResult:
    """One stage: ``per_invocation`` and ``total`` records (STAGE_KEYS), invocations, notes."""

    name: str
    invocations: int
    per_invocation: dict
    total: dict
    notes: list[str] = field(default_factory=list)
    provenance: dict | None = None
    #: two-expert stages (Wan2.2 A14B): one record per expert (wanir.frontends.wan22.expert_breakdown)
    experts: list | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "invocations": self.invocations,
             "per_invocation": dict(self.per_invocation), "total": dict(self.total)}
        if self.provenance is not None:
            d["provenance"] = self.provenance
        if self.experts is not None:
            d["experts"] = [dict(e) for e in self.experts]
        return d


@dataclass
class Estimate:
    """The result of one estimate: the config, the annotated graph, per-stage results, the
    pipeline total and warnings."""

    config: object
    graph: Graph
    stages: list[StageResult]
    total: dict
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.graph.meta.get("model", self.graph.name)

    @property
    def hardware(self) -> str | None:
        return self.graph.meta.get("hardware")

    def stage(self, name: str) -> StageResult:
        """The result of stage ``name``."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage '{name}'; stages: {', '.join(s.name for s in self.stages)}")

    def nodes(self, stage: str | None = None) -> list[Node]:
        """Annotated nodes (of one stage, or all)."""
        return [n for n in self.graph if stage is None or n.stage == stage]

    def to_dict(self) -> dict:
        """The JSON document of ``wanir estimate --format json``."""
        return {
            "model": self.model,
            "hardware": self.hardware,
            "workload": dict(self.graph.meta.get("workload", {})),
            "stages": [s.to_dict() for s in self.stages],
            "total": dict(self.total),
            "optimizations": list(self.graph.meta.get("optimizations", {}).get("applied", [])),
        }


def _opt(cfg, key: str, default):
    """``cfg``'s value at dotted ``key``, or ``default`` when cfg is None or lacks it."""
    if cfg is None:
        return default
    from omegaconf import OmegaConf
    v = OmegaConf.select(cfg, key, default=None) if not isinstance(cfg, dict) else \
        _dict_select(cfg, key)
    return default if v is None else v


def _dict_select(d: dict, key: str):
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


#: config keys that change only the timing of an annotated graph, not its counts
TIMING_KEYS = ("hardware", "roofline.mode")


def annotate_counts(graph: Graph, cfg=None, check: bool | None = None) -> dict:
    """Run the hardware-independent passes over ``graph``: verify, flops, bytes (fusion
    policy ``roofline.fusion``) and memory (residency ``memory.*``). Returns their summaries
    by name ("flops", "bytes_pass", "memory").

    ``check``: True always verifies, False never; None (default) verifies a graph that holds
    nodes the builder did not check (``graph.unchecked``: a transformed or hand-made graph).
    A graph made only by the GraphBuilder is verified by construction: every node's shape
    and weight rules ran, on inputs that already existed, when it was added."""
    from wanir.passes import bytes as bytes_pass
    from wanir.passes import flops, memory, verify

    if check or (check is None and graph.unchecked):
        verify.run(graph)
    from wanir.runtime import memory_options

    fusion = _opt(cfg, "roofline.fusion", "eager")
    kernel = _opt(cfg, "roofline.attention_kernel", "flash2")
    mem = memory_options(cfg)
    nodes = list(graph)
    out = {"flops": flops.run(graph)}
    out["bytes_pass"] = bytes_pass.run(graph, fusion=fusion, attention_kernel=kernel, nodes=nodes)
    resident = None
    if mem.offload == "block":
        from wanir.backends.host_stages import block_stream_plan
        resident = {"diffusion_core": block_stream_plan(graph, mem.resident_params)["gpu_weight_bytes"]}
    out["memory"] = memory.run(graph, attention_kernel=kernel, offload_model=mem.offload_model, t5_cpu=mem.t5_cpu,
                               nodes=nodes, reserve_bytes=mem.reserve_bytes, resident_weight_bytes=resident)
    return out


def annotate_time(graph: Graph, cfg, counts: dict) -> dict:
    """Time a graph annotated by :func:`annotate_counts` with the roofline backend on
    ``cfg.hardware`` (h100-sxm when the config has none). Overwrites the nodes' timing
    annotations. Returns ``counts`` plus "roofline", the per-stage records ``bytes``,
    ``peak_activation_bytes`` and ``time_s`` (per invocation), the pipeline's
    ``peak_memory_bytes``, ``transfer_s`` and fit ``warnings``."""
    from wanir import hardware
    from wanir.backends import roofline
    from wanir.passes import memory

    from wanir.runtime import memory_options, runtime_options
    from wanir.backends import host_stages as hostlib

    kernel, allow_tf32_conv = roofline.timing_options(cfg)
    mode = _opt(cfg, "roofline.mode", "calibrated")
    mopt = memory_options(cfg)
    offload, t5_cpu = mopt.offload_model, mopt.t5_cpu
    hw = hardware.from_config(cfg)
    host_stages = memory.HOST_STAGES_T5_CPU if t5_cpu else ()
    host = hostlib.load_host(mopt, hw) if host_stages else None
    by, mem = counts["bytes_pass"], counts["memory"]
    rf = roofline.run(graph, hw, mode=mode, attention_kernel=kernel, host=host, host_stages=host_stages,
                      offload_model=False, allow_tf32_conv=allow_tf32_conv,
                      weight_bytes={s: r["weight_bytes"] for s, r in mem["stages"].items()})
    rf["transfer_s"] = hostlib.transfer_seconds(graph, mem, hw, mopt, runtime_options(cfg), host_stages,
                                                mode == "ideal", rf)
    graph.meta["hardware"] = hw.name
    out = dict(counts)
    out.update(roofline=rf,
               bytes={s: r["bytes"] for s, r in by.items()},
               peak_activation_bytes={s: r["peak_activation_bytes"] for s, r in mem["stages"].items()},
               time_s=dict(rf["time_s"]),
               peak_memory_bytes=mem["pipeline"]["peak_memory_bytes"],
               transfer_s=rf["transfer_s"])
    msg = memory.fit_message(mem["pipeline"], hw.memory_bytes, hw.name, offload, t5_cpu)
    out["warnings"] = [msg] if msg else []
    tight = memory.tight_message(mem["pipeline"], hw.memory_bytes, hw.name)
    if tight:
        out["warnings"].append(tight)
    return out


def annotate(graph: Graph, cfg=None) -> dict:
    """Run every pass over ``graph`` (:func:`annotate_counts`, then :func:`annotate_time`);
    returns the summaries by name."""
    return annotate_time(graph, cfg, annotate_counts(graph, cfg))


def summarize(graph: Graph, summaries: dict, cfg=None, warnings: Iterable[str] = ()) -> Estimate:
    """Assemble per-stage and total records from an annotated graph. The total time adds the
    host↔device weight transfer (``summaries['transfer_s']``) to the stages' times."""
    stages = []
    fl = summaries["flops"]
    mem = summaries.get("memory", {}).get("stages", {})
    for name, scope in graph.stages.items():
        per = {k: None for k in STAGE_KEYS}
        per["tensor_flops"] = fl[name]["tensor_flops"]
        per["vector_flops"] = fl[name]["vector_flops"]
        per["params"] = graph.stage_params(name)
        per["weight_bytes"] = mem[name]["weight_bytes"] if name in mem else graph.stage_weight_bytes(name)
        for key in ("bytes", "peak_activation_bytes", "time_s"):
            v = summaries.get(key, {}).get(name)
            per[key] = v
        tot = {k: (per[k] * scope.repeat if k in ADDITIVE and per[k] is not None else per[k]) for k in STAGE_KEYS}
        prov = summaries.get("roofline", {}).get("provenance", {}).get(name)
        stages.append(StageResult(name, scope.repeat, per, tot, provenance=prov))
        if "experts" in graph.meta:
            from wanir.frontends.wan22 import apply_to_stage
            apply_to_stage(graph, stages[-1], ADDITIVE)
    total = {k: None for k in TOTAL_KEYS}
    for k in ("tensor_flops", "vector_flops", "params"):
        total[k] = sum(s.total[k] for s in stages)
    for k in ("bytes", "time_s"):
        vals = [s.total[k] for s in stages]
        total[k] = None if any(v is None for v in vals) else sum(vals)
    if total["time_s"] is not None:
        total["time_s"] += summaries.get("transfer_s", 0.0)
    total["peak_memory_bytes"] = summaries.get("peak_memory_bytes")
    est = Estimate(cfg, graph, stages, total,
                   list(graph.meta.get("warnings", [])) + list(summaries.get("warnings", [])) + list(warnings))
    rf = summaries.get("roofline")
    if rf is not None:
        est.extra["transfer_s"] = rf["transfer_s"]
        est.extra["ridge_point"] = rf["ridge_point"]
        est.extra["stages"] = {s: {"bound": rf["bound"][s], "compute_share": rf["compute_share"][s],
                                   "device": rf["device"][s], "peak_node": mem.get(s, {}).get("peak_node"),
                                   "on_gpu": mem.get(s, {}).get("on_gpu", True),
                                   **({"resident_weight_bytes": mem[s]["resident_weight_bytes"]}
                                      if "resident_weight_bytes" in mem.get(s, {}) else {})} for s in graph.stages}
        est.extra["memory"] = dict(summaries["memory"]["pipeline"])
    return est


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
    """Estimate an already composed configuration (see :func:`wanir.config.load_config`)."""
    from wanir.frontends.checkpoint import apply_model_from
    from wanir.frontends.pipeline import build_pipeline

    cfg, inferred = apply_model_from(cfg)  # model.from: components read from a checkpoint
    with paused_gc():
        graph = build_pipeline(cfg)
        summaries = annotate(graph, cfg)
        est = summarize(graph, summaries, cfg)
    est.extra["inferred"] = inferred
    return est


def estimate(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None) -> Estimate:
    """Estimate one generation for the configuration given by Hydra-style ``overrides``
    (e.g. ``["model=wan2.1-t2v-1.3b", "workload.height=480"]``) and an optional user
    config directory. Returns an :class:`Estimate`."""
    return estimate_config(load_config(overrides, config_dir))


def estimate_graph(graph: Graph, cfg=None) -> Estimate:
    """Annotate and summarize a graph made elsewhere (e.g. from a YAML spec)."""
    return summarize(graph, annotate(graph, cfg), cfg)
