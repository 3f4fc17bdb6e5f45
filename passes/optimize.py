"""Optimizations as graph transforms: the entry point the pipeline calls after lowering.

:func:`apply` reads the optimization knobs once (:mod:`wanir.passes.optimize_options`)
and returns the graph transformed by each active one: sparse self-attention
(:mod:`wanir.passes.sparse_attention`) and step caching or dense warm-up steps, which
reschedule the DiT stage per step (:mod:`wanir.passes.step_cache`). Distillation
presets change only the workload (steps, guidance) and need no transform. With no
optimization active the graph is returned unchanged. ``graph.meta['optimizations']``
records what was applied (for reports). What each one models and leaves out:
docs/optimizations.md.
"""
from __future__ import annotations

from wanir.graph import Graph
from wanir.options import select

from . import step_cache
from .attention_quant import QUANT_KERNELS, quantize_attention
from .optimize_options import optimization_options
from .quantize import quantize_gemms


def _cfg_parallel(cfg) -> bool:
    """Whether the configured plan runs the two guidance branches on different devices."""
    v = select(cfg, "parallel.cfg", 1)
    return isinstance(v, int) and not isinstance(v, bool) and v > 1


def _attention_kernel(cfg):
    return select(cfg, "roofline.attention_kernel")


def apply(graph: Graph, cfg, steps: int, guidance: bool) -> Graph:
    """``graph`` with the configured optimizations applied (a new graph), or ``graph``
    itself when none is active. ``steps`` and ``guidance`` are the resolved workload's."""
    opts = optimization_options(cfg)
    applied = opts.describe()
    if opts.any:
        split = _cfg_parallel(cfg)
        graph = step_cache.transform(graph, opts, steps, 2 if guidance else 1, both_branches_here=not split)
        graph.meta["cache_branches_split"] = split     # the cached graph differs by CFG parallelism
    kernel = _attention_kernel(cfg)
    if kernel in QUANT_KERNELS:
        graph = quantize_attention(graph, kernel)
        applied.append(f"{kernel} attention")
    if opts.gemm_dtype:
        graph = quantize_gemms(graph, opts.gemm_dtype, opts.keep_high_precision, opts.act_scales)
    if applied:
        graph.meta.setdefault("optimizations", {})["applied"] = applied
    return graph
