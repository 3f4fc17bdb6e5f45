"""8-bit attention kernels, graph side (``roofline.attention_kernel=sage2|sage2-fp16acc|flash3-fp8``).

The kernel's time comes from the kernel model (backends/roofline.py, constants in
wanir/data/kernels.yaml); this transform adds what the kernel's wrapper runs around it in
the DiT, as ordinary nodes in a ``quantize_qkv`` scope before every ``sdpa`` of the
``diffusion_core`` stage, and makes the attention read the 8-bit tensors and write the
activation dtype (``out_dtype``):

- ``sage2``, ``sage2-fp16acc`` (SageAttention2, SageAttention2++): Q quantized to INT8
  (``quant_q``), K smoothed (its mean over tokens subtracted) and quantized to INT8 in the
  same pass (``smooth_quant_k``), V transposed to the layout the FP8 P·V MMA reads
  (``v_transpose``, a copy) and quantized to FP8 (``quant_v``);
- ``flash3-fp8`` (FlashAttention-3 FP8): Q, K and V cast to FP8 e4m3 with per-tensor
  descale factors (V is transposed inside the kernel).

Each quantize node reads the bf16 tensor and writes one byte per element. Not modeled:
the reduction computing K's mean (one more read of K; under sequence parallelism it needs
the whole sequence, which the attention only has after its all-to-all), the per-block
scale tensors (a few values per 64–128 rows), and on Ampere SageAttention's FP16 V (the
graph writes FP8 V; the kernel model times P·V at FP16 there). Under Ulysses the inserted
all-to-alls move the 8-bit q, k, v (the real wrapper exchanges bf16 and quantizes after).
"""
from __future__ import annotations

from wanir.graph import Graph

from .rewrite import Rewriter

STAGE = "diffusion_core"
#: kernel → (q dtype, k dtype, v dtype, whether V is transposed by a copy first)
QUANT_KERNELS = {
    "sage2": ("int8", "int8", "fp8_e4m3", True),
    "sage2-fp16acc": ("int8", "int8", "fp8_e4m3", True),
    "flash3-fp8": ("fp8_e4m3", "fp8_e4m3", "fp8_e4m3", False),
}


def quantize_attention(graph: Graph, kernel: str) -> Graph:
    """The graph with every DiT ``sdpa`` reading 8-bit q, k, v made by quantize nodes, for
    ``kernel`` (a key of QUANT_KERNELS); a new graph."""
    qd, kd, vd, transpose_v = QUANT_KERNELS[kernel]
    rw = Rewriter(graph)
    for node in graph:
        if node.kind != "sdpa" or node.stage != STAGE or len(node.inputs) != 3:
            rw.copy(node)
            continue
        q, k, v = (rw.get(x) for x in node.inputs)
        scope = rw.scope(node.scope).child("quantize_qkv")
        q8 = rw.emit("cast", [q], scope, "quant_q", {"dtype": qd}).output(0)
        k8 = rw.emit("cast", [k], scope, "smooth_quant_k" if kernel.startswith("sage") else "quant_k",
                     {"dtype": kd}).output(0)
        if transpose_v:
            v = rw.emit("contiguous", [v], scope, "v_transpose").output(0)
        v8 = rw.emit("cast", [v], scope, "quant_v", {"dtype": vd}).output(0)
        rw.copy_with_inputs(node, [q8, k8, v8], attrs=dict(node.attrs, out_dtype=q.dtype.name))
    g = rw.finish()
    g.meta.setdefault("optimizations", {})["attention_kernel"] = kernel
    return g
