"""The public API: build an annotated graph from a configuration and summarize it.

``estimate(overrides)`` returns an :class:`Estimate` whose ``to_dict()`` is the JSON
document ``wanir estimate --format json`` prints (schema in docs/cli.md; keys are never
renamed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

from .config import load_config, to_dict
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

    def to_dict(self) -> dict:
        return {"name": self.name, "invocations": self.invocations,
                "per_invocation": dict(self.per_invocation), "total": dict(self.total)}


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
        }


def annotate(graph: Graph, cfg=None) -> dict:
    """Run the passes over ``graph`` (verify, flops, and those the config enables);
    return their per-stage summaries by pass name."""
    from wanir.passes import flops, verify

    verify.run(graph)
    return {"flops": flops.run(graph)}


def summarize(graph: Graph, summaries: dict, cfg=None, warnings: Iterable[str] = ()) -> Estimate:
    """Assemble per-stage and total records from an annotated graph."""
    stages = []
    fl = summaries["flops"]
    for name, scope in graph.stages.items():
        per = {k: None for k in STAGE_KEYS}
        per["tensor_flops"] = fl[name]["tensor_flops"]
        per["vector_flops"] = fl[name]["vector_flops"]
        per["params"] = graph.stage_params(name)
        per["weight_bytes"] = graph.stage_weight_bytes(name)
        for key in ("bytes", "peak_activation_bytes", "time_s"):
            v = summaries.get(key, {}).get(name)
            per[key] = v
        tot = {k: (per[k] * scope.repeat if k in ADDITIVE and per[k] is not None else per[k]) for k in STAGE_KEYS}
        stages.append(StageResult(name, scope.repeat, per, tot))
    total = {k: None for k in TOTAL_KEYS}
    for k in ("tensor_flops", "vector_flops", "params"):
        total[k] = sum(s.total[k] for s in stages)
    for k in ("bytes", "time_s"):
        vals = [s.total[k] for s in stages]
        total[k] = None if any(v is None for v in vals) else sum(vals)
    total["peak_memory_bytes"] = summaries.get("peak_memory_bytes")
    return Estimate(cfg, graph, stages, total, list(graph.meta.get("warnings", [])) + list(warnings))


def build(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None) -> Graph:
    """Compose the config, lower the pipeline and run the passes; return the annotated graph."""
    return estimate(overrides, config_dir).graph


def estimate_config(cfg) -> Estimate:
    """Estimate an already composed configuration (see :func:`wanir.config.load_config`)."""
    from wanir.frontends.checkpoint import apply_model_from
    from wanir.frontends.pipeline import build_pipeline

    cfg, inferred = apply_model_from(cfg)  # model.from: components read from a checkpoint
    graph = build_pipeline(cfg)
    summaries = annotate(graph, cfg)
    est = summarize(graph, summaries, cfg)
    est.extra["config"] = to_dict(cfg)
    est.extra["inferred"] = inferred
    return est


def estimate(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None) -> Estimate:
    """Estimate one generation for the configuration given by Hydra-style ``overrides``
    (e.g. ``["model=wan2.1-t2v-1.3b", "workload.height=480"]``) and an optional user
    config directory. Returns an :class:`Estimate`."""
    return estimate_config(load_config(list(overrides), config_dir))


def estimate_graph(graph: Graph, cfg=None) -> Estimate:
    """Annotate and summarize a graph made elsewhere (e.g. from a YAML spec)."""
    return summarize(graph, annotate(graph, cfg), cfg)
