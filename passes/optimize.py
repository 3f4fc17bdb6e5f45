"""Optimizations as graph transforms: the entry point the pipeline calls after lowering.

:func:`apply` takes the checked knobs (:class:`wanir.passes.optimize_options.Optimizations`,
made once by the resolver) and returns the graph transformed by each active one: sparse self-attention
(:mod:`wanir.passes.sparse_attention`) and step caching or dense warm-up steps, which
reschedule the DiT stage per step (:mod:`wanir.passes.step_cache`). Distillation
presets change only the workload (steps, guidance) and need no transform. With no
optimization active the graph is returned unchanged. ``graph.meta['optimizations']``
records what was applied (for reports). What each one models and leaves out:
docs/optimizations.md.
"""
from __future__ import annotations

from wanir.graph import Graph

from . import step_cache
from .attention_quant import QUANT_KERNELS, quantize_attention
from .optimize_options import Optimizations
from .quantize import quantize_gemms


def apply(graph: Graph, opts: Optimizations, steps: int, guidance: bool, *, attention_kernel: str | None = None,
          cfg_split: bool = False) -> Graph:
    """``graph`` with the optimizations ``opts`` applied (a new graph), or ``graph`` itself
    when none is active. ``steps`` and ``guidance`` are the resolved workload's;
    ``attention_kernel`` the run's kernel (a quantized one rewrites the attention);
    ``cfg_split``: the plan runs the two guidance branches on different devices (each keeps
    one branch's step cache)."""
    applied = opts.describe()
    if opts.any:
        graph = step_cache.transform(graph, opts, steps, 2 if guidance else 1, both_branches_here=not cfg_split)
        graph.meta["cache_branches_split"] = cfg_split     # the cached graph differs by CFG parallelism
    if attention_kernel in QUANT_KERNELS:
        graph = quantize_attention(graph, attention_kernel)
        applied.append(f"{attention_kernel} attention")
    if opts.gemm_dtype:
        graph = quantize_gemms(graph, opts.gemm_dtype, opts.keep_high_precision, opts.act_scales)
    if applied:
        graph.meta.setdefault("optimizations", {})["applied"] = applied
    return graph
