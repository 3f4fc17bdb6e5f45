"""The result of an estimate: :class:`Estimate` and :class:`StageResult`, immutable once
made (frozen dataclasses; records are read-only mappings, lists are tuples).

``Estimate.to_dict()`` is the JSON document ``wanir estimate --format json`` prints; its
schema is documented in docs/cli.md. Keys are only ever added, never renamed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

from .graph import Graph, Node
from .options import RunOptions
from .scenario import freeze, thaw

#: keys of a stage's per-invocation record, in output order
STAGE_KEYS = ("tensor_flops", "vector_flops", "params", "weight_bytes", "bytes", "peak_activation_bytes", "time_s")
#: keys multiplied by the invocation count in a stage's total
ADDITIVE = ("tensor_flops", "vector_flops", "bytes", "time_s")
TOTAL_KEYS = ("tensor_flops", "vector_flops", "params", "bytes", "time_s", "peak_memory_bytes", "reserve_bytes",
              "peak_allocated_bytes", "peak_reserved_bytes", "time_range_s", "time_range_class")

def frozen(d: Mapping | None) -> Mapping:
    """A read-only deep copy of ``d`` (nested mappings read-only, lists made tuples)."""
    return freeze(dict(d or {}))


@dataclass(frozen=True, eq=False)
class StageResult:
    """One stage: ``per_invocation`` and ``total`` records (STAGE_KEYS), invocations, notes."""

    name: str
    invocations: int
    per_invocation: Mapping
    total: Mapping
    notes: tuple = ()
    provenance: Mapping | None = None
    experts: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "per_invocation", frozen(self.per_invocation))
        object.__setattr__(self, "total", frozen(self.total))
        object.__setattr__(self, "notes", tuple(self.notes))
        if self.provenance is not None:
            object.__setattr__(self, "provenance", frozen(self.provenance))
        if self.experts is not None:
            object.__setattr__(self, "experts", tuple(frozen(e) for e in self.experts))

    def to_dict(self) -> dict:
        """The stage's JSON record (plain, mutable containers)."""
        d = {"name": self.name, "invocations": self.invocations,
             "per_invocation": thaw(self.per_invocation), "total": thaw(self.total)}
        if self.provenance is not None:
            d["provenance"] = thaw(self.provenance)
        if self.experts is not None:
            d["experts"] = [thaw(e) for e in self.experts]
        return d


@dataclass(frozen=True, eq=False)
class Estimate:
    """The result of one estimate: the config, the annotated graph, per-stage results, the
    pipeline total (one device), warnings, whether it fits, and — for a multi-device plan —
    ``parallel``: the plan's per-device figures (plain data, see docs/cli.md); ``run``: the
    :class:`wanir.scenario.Run` it was timed with (None for a graph estimated on its own).

    Nothing in an Estimate changes after it is returned: its graph is annotated once and
    never re-timed (a sweep re-times a copy), records are read-only."""

    config: Any
    graph: Graph
    stages: tuple
    total: Mapping
    warnings: tuple = ()
    extra: Mapping | None = None
    options: RunOptions = RunOptions()
    fits: bool | None = None
    parallel: Mapping | None = None
    run: Any = None

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "total", frozen(self.total))
        object.__setattr__(self, "warnings", tuple(self.warnings))
        object.__setattr__(self, "extra", frozen(self.extra))
        if self.parallel is not None:
            object.__setattr__(self, "parallel", frozen(self.parallel))

    @property
    def model(self) -> str:
        return self.graph.meta.get("model", self.graph.name)

    @property
    def hardware(self) -> str | None:
        return self.graph.meta.get("hardware")

    @property
    def time_s(self) -> float | None:
        """Seconds per video as configured: the plan's per-video latency when a
        multi-device plan is set, else the single-device total."""
        if self.parallel is not None:
            return self.parallel["total"]["time_s"]
        return self.total.get("time_s")

    @property
    def peak_memory_bytes(self) -> int | None:
        """Peak memory of one device as configured (per device under a plan)."""
        if self.parallel is not None:
            return self.parallel["total"]["peak_memory_bytes"]
        return self.total.get("peak_memory_bytes")

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
        """The JSON document of ``wanir estimate --format json`` (schema in docs/cli.md)."""
        return {
            "model": self.model,
            "hardware": self.hardware,
            "workload": thaw(self.graph.meta.get("workload", {})),
            "stages": [s.to_dict() for s in self.stages],
            "total": thaw(self.total),
            "warnings": list(self.warnings),
            "fits": self.fits,
            "parallel": None if self.parallel is None else thaw(self.parallel),
            "optimizations": list(self.graph.meta.get("optimizations", {}).get("applied", [])),
        }


def summarize(graph: Graph, summaries: dict, resolved=None, warnings: Iterable[str] = (), *,
              options: RunOptions | None = None, extra: Mapping | None = None,
              parallel: Mapping | None = None, stage_adjust=None, run=None,
              time_range: Mapping | None = None) -> Estimate:
    """Assemble per-stage and total records from an annotated graph. The total time adds the
    host↔device weight transfer (``summaries['transfer_s']``) to the stages' times.
    ``stage_adjust(graph, stage, ADDITIVE)``: a frontend's hook that may rewrite a stage's
    record before it is frozen (its ``invocations``, ``per_invocation``, ``experts``).
    ``time_range``: {"time_range_s": [low, high], "time_range_class"} of the total
    (backends/error_range.py); ``run``: the Scenario's Run the estimate was timed with;
    ``resolved``: the resolved configuration the Estimate keeps as data for the configuration
    view of its reports (the resolver's frozen ``Scenario.config``; None for a graph
    estimated on its own)."""
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
        rec = SimpleNamespace(name=name, invocations=scope.repeat, per_invocation=per, total=tot, experts=None)
        if stage_adjust is not None:
            stage_adjust(graph, rec, ADDITIVE)
        stages.append(StageResult(name, rec.invocations, rec.per_invocation, rec.total, provenance=prov,
                                  experts=rec.experts))
    total = {k: None for k in TOTAL_KEYS}
    for k in ("tensor_flops", "vector_flops", "params"):
        total[k] = sum(s.total[k] for s in stages)
    for k in ("bytes", "time_s"):
        vals = [s.total[k] for s in stages]
        total[k] = None if any(v is None for v in vals) else sum(vals)
    if total["time_s"] is not None:
        total["time_s"] += summaries.get("transfer_s", 0.0)
    total["peak_memory_bytes"] = summaries.get("peak_memory_bytes")
    if total["peak_memory_bytes"] is not None:   # the CUDA context and allocator reserve, part of the peak
        pipe = summaries.get("memory", {}).get("pipeline", {})
        total["reserve_bytes"] = int(pipe.get("reserve_bytes", 0))
        # what tensors occupy and what PyTorch's caching allocator holds (passes/allocator.py)
        total["peak_allocated_bytes"] = pipe.get("peak_allocated_bytes")
        total["peak_reserved_bytes"] = pipe.get("peak_reserved_bytes")
    if time_range is not None and total["time_s"] is not None:
        total["time_range_s"] = tuple(time_range["time_range_s"])
        total["time_range_class"] = time_range["time_range_class"]
    ex = {}
    rf = summaries.get("roofline")
    if rf is not None:
        ex["transfer_s"] = rf["transfer_s"]
        ex["ridge_point"] = rf["ridge_point"]
        ex["stages"] = {s: {"bound": rf["bound"][s], "compute_share": rf["compute_share"][s],
                            "device": rf["device"][s], "peak_node": mem.get(s, {}).get("peak_node"),
                            "on_gpu": mem.get(s, {}).get("on_gpu", True),
                            **({"resident_weight_bytes": mem[s]["resident_weight_bytes"]}
                               if "resident_weight_bytes" in mem.get(s, {}) else {})} for s in graph.stages}
        ex["memory"] = dict(summaries["memory"]["pipeline"])
    ex.update(extra or {})
    warns = list(graph.meta.get("warnings", [])) + list(summaries.get("warnings", [])) + list(warnings)
    fits = summaries.get("fits")
    if parallel is not None:
        fits = bool(parallel["total"]["fits"])
    return Estimate(resolved, graph, stages, total, warns, ex,
                    options if options is not None else RunOptions(), fits, parallel, run)
