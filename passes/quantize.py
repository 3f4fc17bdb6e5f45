"""Low-precision GEMMs of the DiT as a graph transform (``precision.dit_compute=fp8|int8``).

The DiT is lowered at bf16 activations; then every ``linear`` of the ``diffusion_core``
stage whose path is not in ``precision.keep_fp32`` (default, PrecisionOptions in
wanir/options.py: the modules outside the transformer blocks — patch embedding, condition
embedder, output projection) becomes:

- **quantize** the activation: with ``precision.act_scales=per-token`` (dynamic, one
  scale per row, as LightX2V's FP8/INT8 GEMMs run) an ``amax`` over the row (reads the
  bf16 activation, writes one bf16 scale per row) and a ``cast`` to the 8-bit dtype (reads
  bf16, writes 8-bit); ``per-tensor`` (a calibrated static scale) the ``cast`` only. One
  activation feeding several GEMMs (q, k, v) is quantized once.
- the GEMM on 8-bit inputs and 8-bit weights (weights stored at the 8-bit dtype: half the
  resident bytes of bf16), timed at the hardware's tensor peak of that dtype;
- **dequantize** in the GEMM's epilogue (scales multiplied, bf16 written: the node's
  ``out_dtype``), so no separate node and no extra bytes.

Hardware without a tensor peak for the dtype refuses the estimate (the roofline's
one-line error names the device, the dtype and what it has). Not modeled: the per-channel
weight scales (out_features fp32 values per GEMM), outlier smoothing (SmoothQuant's
per-channel activation scaling folded into the previous op), accuracy.
"""
from __future__ import annotations

import fnmatch

from wanir.dtypes import get_dtype
from wanir.errors import ConfigError
from wanir.graph import Graph, Weight
from wanir.tensor import TensorType

from .optimize_options import ACT_SCALES, DEFAULT_ACT_SCALES, DEFAULT_KEEP
from .rewrite import Rewriter

STAGE = "diffusion_core"


def kept(path: str, keep) -> bool:
    """Whether the node at ``path`` (relative to the DiT stage) stays in high precision: an
    entry matches a scope name on the path or is a glob over the path."""
    parts = path.split("/")
    for k in keep:
        if k in parts or fnmatch.fnmatchcase(path, k):
            return True
    return False


def quantize_gemms(graph: Graph, dtype: str, keep=DEFAULT_KEEP, act_scales: str = DEFAULT_ACT_SCALES) -> Graph:
    """The graph with the DiT's GEMMs (not in ``keep``) run at ``dtype`` (``fp8_e4m3`` or
    ``int8``) with their quantize nodes; a new graph. Counts per GEMM are unchanged
    (tensor FLOPs are dtype-independent)."""
    if dtype not in ("fp8_e4m3", "int8"):
        raise ConfigError(f"precision.dit_compute={dtype!r}: low-precision GEMMs are fp8 or int8")
    if act_scales not in ACT_SCALES:
        raise ConfigError(f"precision.act_scales must be one of {', '.join(ACT_SCALES)}, got {act_scales!r}")
    q_dtype = get_dtype(dtype)
    rw = Rewriter(graph)
    quantized: dict[tuple[int, int], object] = {}
    prefix = STAGE + "/"
    for node in graph:
        rel = node.path[len(prefix):] if node.path.startswith(prefix) else None
        if node.kind != "linear" or rel is None or kept(rel, keep):
            rw.copy(node)
            continue
        x_src = node.inputs[0]
        x = rw.get(x_src)
        if x.dtype.name not in ("bf16", "fp16"):
            rw.copy(node)           # an fp32 GEMM (diffusers' time embedder) stays as it is
            continue
        scope = rw.scope(node.scope)
        key = (x_src.producer, x_src.index)
        xq = quantized.get(key)
        if xq is None:
            if act_scales == "per-token":
                rw.emit("amax", [x], scope, f"{node.name}_act_scale", {"dims": (-1,), "keepdim": True})
            xq = rw.emit("cast", [x], scope, f"{node.name}_quantize", {"dtype": q_dtype.name}).output(0)
            quantized[key] = xq
        params = {}
        for pname, w in node.params.items():
            if pname == "weight":
                nw = Weight(w.key, TensorType(w.type.shape, q_dtype), w.copies)
                rw.g.weights[w.key] = nw
                params[pname] = nw
            else:
                params[pname] = w
        attrs = dict(node.attrs, out_dtype=x.dtype.name)
        new = rw.emit("linear", [xq], scope, node.name, attrs, params)
        rw.vals[(node.id, 0)] = new.output(0)
    g = rw.finish()
    g.meta.setdefault("optimizations", {})["gemm_dtype"] = dtype
    return g
