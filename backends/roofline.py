"""roofline: the time of every node, stage and generation on one device.

Two modes. ``ideal`` is the speed-of-light bound: per node
``max(tensor_flops / peak, vector_flops / vector_peak, bytes / bandwidth)`` with the peaks
derived from the hardware's microarchitecture (the fastest instruction family for the
dtypes the kernel computes in), the DRAM bandwidth (the L2 bandwidth when the node's
working set fits the L2), and no launch cost. ``calibrated`` (the default) times each op
class with a kernel model whose per-device inputs are the microarchitecture fields of the
hardware YAML and whose per-(kernel, family) constants live in ``wanir/data/kernels.yaml``
(docs/time-model.md has the equations and the sources):

- **attention** (per kernel: flash2, flash3, flash4, cudnn, sage2, math; sdpa resolves per
  family): per score element and SM, MMA clocks ``(2d/R_qk + 2dv/R_pv) / mma_ceiling`` with
  R the kernel's instruction rate, softmax clocks ``max((1 − e)/S, (fp32_ops + e·poly_ops)/F)``
  with S the exp/clock/SM, F the FP32 lanes and e the fraction of exp emulated on the FMA
  pipe; element clocks ``max(mma, softmax) + overlap_loss · min(mma, softmax)``; times
  ``ramp_clocks`` per CTA (its prologue and epilogue, which short sequences feel) and over
  the SMs with wave quantization of the B·H·⌈Lq/block_m⌉ CTAs; at least the bytes at the
  sustained bandwidth. ``math`` is two batched GEMMs plus the score matrix's traffic.
- **GEMM**: ``flops / (SMs · clock · R · ceiling · tile · wave · K/(K + k_ramp))`` with tile
  quantization of M, N against the tile and wave quantization of the tiles against the SMs;
  fp32 without TF32 runs on the FP32 lanes at ``fp32_ceiling``; with ``runtime.matmul_tf32`` an fp32
  matmul runs at the TF32 tensor rate under the family's GEMM ``ceiling``.
- **convolution**: the implicit GEMM (M = N·output voxels, N = C_out/groups, K =
  C_in/groups · kernel volume) at ``ceiling_factor`` of the GEMM, plus the NCDHW↔NDHWC
  transposes cuDNN inserts (``transposes`` passes over input and output); fp32 runs as TF32
  when ``allow_tf32_conv`` (PyTorch's default for cuDNN), else on the FP32 lanes.
- **everything else** (elementwise, norms, reductions, data movement): bytes at
  ``fraction`` of the DRAM bandwidth, or at ``l2_fraction`` of the L2 bandwidth when the
  node's reads and writes fit the L2; at least its vector FLOPs at the FP32 peak.

Every node's time is at least its ideal time, plus ``launches × launch_overhead`` (the GPU-
side gap per kernel). A stage's time is at least its host issue time: eager PyTorch issues
ops one by one from the host (``Σ launches × cpu_issue_us``) inside module calls
(``module_call_us`` each), the text encoder tokenizes its prompt and the DiT's steps run the
scheduler's eager ops; synchronizations per step add time that cannot overlap
(backends/host_stages.py: host_seconds; ``roofline.fusion=compiled`` and
``runtime.cuda_graphs`` remove what they remove).

Stage time per invocation = max(Σ node time × executions per invocation, host time) + exposed
host time. The
pipeline time is Σ stage time × invocations, plus, under ``memory.offload_model``, moving
each GPU stage's weights onto the GPU and back once per generation over the host link
(2 × weight bytes / (host-link bandwidth × its efficiency)). Under ``memory.t5_cpu`` the
text encoder is timed on the host device.

Every node also records which inputs its time rests on; :func:`run` returns per stage the
source kinds of those inputs (datasheet, reported, measured, assumed) and the share of the
stage's time resting on at least one assumed value (``provenance``).
"""
from __future__ import annotations

import threading
from math import ceil, prod
from types import MappingProxyType

from wanir import kernels as klib
from wanir import options as _options
from wanir import options as _run_options
from wanir.errors import ConfigError
from wanir.graph import Graph, Node
from wanir.hardware import Hardware, rate_dtype
from wanir.ops import OPS
from wanir.options import DEFAULT_ATTENTION_KERNEL
from wanir.scenario import freeze as _deep_freeze

from .host_stages import host_constants, host_seconds

MODES = ("calibrated", "ideal")
#: GEMM dtypes that have no fallback: hardware without their tensor instructions refuses them
LOW_PRECISION = ("fp8", "int8", "int4")
SOURCE_ORDER = ("measured", "reported", "datasheet", "assumed")


def timing_options(cfg) -> tuple[str, bool]:
    """(attention kernel, allow_tf32_conv) of a config or RunOptions: ``roofline.attention_kernel``
    (default flash2) and ``runtime.allow_tf32`` (default True, PyTorch's cuDNN default), as
    parsed by wanir/options.py."""
    opts = _options.of(cfg)
    kernel, allow = opts.roofline.attention_kernel, opts.runtime.allow_tf32
    if not isinstance(allow, bool):
        raise ConfigError(f"runtime.allow_tf32={allow!r}: must be true or false")
    if not isinstance(kernel, str):
        raise ConfigError(f"roofline.attention_kernel={kernel!r}: allowed: {', '.join(klib.attention_kernels())}")
    return kernel, allow


def matmul_tf32_option(cfg) -> bool:
    """``runtime.matmul_tf32`` of a config or RunOptions (default False, PyTorch's
    ``torch.backends.cuda.matmul.allow_tf32``): whether fp32 matmuls run as TF32."""
    v = _run_options.of(cfg).runtime.matmul_tf32
    if not isinstance(v, bool):
        raise ConfigError(f"runtime.matmul_tf32={v!r}: must be true or false")
    return v


def compute_dtype(node, allow_tf32_conv: bool = True, matmul_tf32: bool = False) -> str:
    """Name of the dtype the node's tensor FLOPs run at: its first input's dtype; an fp32
    convolution runs as tf32 when TF32 is allowed for convolutions (cuDNN's flag), an fp32
    matmul (linear, matmul, bmm) when it is allowed for matmuls (cuBLAS's flag,
    kernels.md sec. 5: off by default, and autocast(float32) does not change it)."""
    dt = node.inputs[0].type.dtype.name if node.inputs else node.outputs[0].dtype.name
    if dt == "fp32" and ((node.category == "conv" and allow_tf32_conv) or
                         (node.category == "matmul" and matmul_tf32)):
        return "tf32"
    return dt


class Model:
    """The kernel model of one device: constants resolved once, times per op shape. Each
    method returns ``(seconds, provenance key)``; the key is a frozenset of
    (input name, source kind) pairs the time rests on."""

    def __init__(self, hw: Hardware, attention_kernel: str = DEFAULT_ATTENTION_KERNEL, allow_tf32_conv: bool = True,
                 matmul_tf32: bool = False):
        self.hw = hw
        self.m = hw.micro
        self.allow_tf32 = bool(allow_tf32_conv)
        self.matmul_tf32 = bool(matmul_tf32)
        self.kernel = klib.resolve_attention(attention_kernel, hw)
        self.att, self.att_src = klib.constants("attention", hw, self.kernel)
        self.gemm_c, self.gemm_src = klib.constants("gemm", hw)
        self.conv_c, self.conv_src = klib.constants("conv", hw)
        self.mem_c, self.mem_src = klib.constants("memory", hw)
        issue, issue_src = klib.constants("issue", hw)
        self.issue_s = issue["cpu_issue_us"] * 1e-6
        self.issue_prov = frozenset({("kernels.issue.cpu_issue_us", issue_src["cpu_issue_us"])})
        self.clk = self.m.tensor_clock_hz
        self.sms = self.m.sms
        s = hw.sources
        self._hw_src = s
        self.bw_dram = hw.memory_bandwidth * self.mem_c["fraction"]
        self.bw_l2 = self.m.l2_bandwidth * self.mem_c["l2_fraction"]
        self.prov_dram = frozenset({("memory.bandwidth_tbps", s.get("memory.bandwidth_tbps", "assumed")),
                                    ("kernels.memory.fraction", self.mem_src["fraction"])})
        self.prov_l2 = frozenset({("microarch.l2_bandwidth_tbps", s.get("microarch.l2_bandwidth_tbps", "assumed")),
                                  ("microarch.l2_mib", s.get("microarch.l2_mib", "assumed")),
                                  ("kernels.memory.l2_fraction", self.mem_src["l2_fraction"])})
        self._cache: dict = {}      # (op, shape...) -> (seconds, provenance); bounded
        self._prov: dict = {}       # the provenance sets, by the inputs they name (few)

    # ------------------------------------------------------------------ helpers

    def _src(self, key: str) -> str:
        return self._hw_src.get(key, "assumed")

    def rate(self, instruction: str, dtype: str) -> tuple[float, str]:
        """(FLOP per clock per SM, source key) of ``instruction`` at wanir dtype ``dtype``;
        an fp32 (or unlisted) dtype runs on the FP32 lanes."""
        m = self.m
        inst = instruction if instruction in m.rates else m.native
        r = m.rates[inst].get(rate_dtype(dtype))
        if r is None:
            return 2 * m.fp32_lanes, "microarch.fp32_lanes_per_sm"
        return r, f"microarch.tensor_flops_per_clk_sm.{inst}.{rate_dtype(dtype)}"

    def memory_time(self, nbytes: float) -> tuple[float, frozenset]:
        """Bytes at the sustained DRAM bandwidth, or at the L2's when they fit the L2."""
        if nbytes <= self.m.l2_bytes:
            return nbytes / self.bw_l2, self.prov_l2
        return nbytes / self.bw_dram, self.prov_dram

    # ------------------------------------------------------------------ GEMM

    def gemm(self, batch: int, m: int, n: int, k: int, dtype: str, fp32_pipe: bool = False,
             ceiling_factor: float = 1.0) -> tuple[float, frozenset]:
        """Seconds of ``batch`` GEMMs (M×K)·(K×N) at compute dtype ``dtype``."""
        key = ("gemm", batch, m, n, k, dtype, fp32_pipe, ceiling_factor)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if batch <= 0 or m <= 0 or n <= 0 or k <= 0:
            return 0.0, frozenset()
        g = self.gemm_c
        if fp32_pipe or dtype == "fp32":
            r, rkey = 2 * self.m.fp32_lanes, "microarch.fp32_lanes_per_sm"
            ceil_v, ckey = g["fp32_ceiling"], "fp32_ceiling"
            clk, clk_key = self.m.boost_clock_hz, "microarch.boost_clock_ghz"
        else:
            r, rkey = self.rate(g["instruction"], dtype)
            if rkey == "microarch.fp32_lanes_per_sm" and rate_dtype(dtype) in LOW_PRECISION:
                raise ConfigError(f"hardware '{self.hw.name}' ({self.hw.family}) has no {dtype} tensor instructions: "
                                  f"{dtype} GEMMs (precision.dit_compute) need a GPU that has them")
            ceil_v, ckey = g["ceiling"], "ceiling"
            clk, clk_key = self.clk, "microarch.tensor_clock_ghz"
        tm, tn = int(g["tile_m"]), int(g["tile_n"])
        mt, nt = -(-m // tm), -(-n // tn)
        util = (m * n) / (mt * tm * nt * tn)
        tiles = batch * mt * nt
        waves = -(-tiles // self.sms)
        wave = tiles / (waves * self.sms)
        kr = k / (k + g["k_ramp"])
        eff = ceil_v * ceiling_factor * util * wave * kr
        t = 2 * batch * m * n * k / (self.sms * clk * r * eff)
        pkey = ("gemm", rkey, clk_key, ckey)
        prov = self._prov.get(pkey)
        if prov is None:
            prov = self._prov[pkey] = frozenset({
                (rkey, self._src(rkey)), ("microarch.sms", self._src("microarch.sms")),
                (clk_key, self._src(clk_key)), (f"kernels.gemm.{ckey}", self.gemm_src[ckey]),
                ("kernels.gemm.tile", self.gemm_src["tile_m"]), ("kernels.gemm.k_ramp", self.gemm_src["k_ramp"])})
        return self._keep(key, (t, prov))

    def _keep(self, key: tuple, out: tuple) -> tuple:
        """Cache ``out`` (seconds, provenance) under ``key`` (bounded) and return it."""
        if len(self._cache) >= _MEMO_MAX:
            self._cache.clear()
        self._cache[key] = out
        return out

    # ------------------------------------------------------------------ attention

    def attention(self, bh: int, lq: int, lk: int, d: int, dv: int, dtype: str) -> tuple[float, frozenset]:
        """Seconds of one fused attention over ``bh`` (batch × heads) heads (no memory floor)."""
        key = ("att", bh, lq, lk, d, dv, dtype)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if bh <= 0 or lq <= 0 or lk <= 0 or d <= 0 or dv <= 0:
            return 0.0, frozenset()
        a, m = self.att, self.m
        if self.kernel == "math":
            t1, p1 = self.gemm(bh, lq, lk, d, dtype)
            t2, p2 = self.gemm(bh, lq, dv, lk, dtype)
            return self._keep(key, (t1 + t2, p1 | p2))
        qdt = dtype if a["qk_dtype"] == "input" else a["qk_dtype"]
        pdt = dtype if a["pv_dtype"] == "input" else a["pv_dtype"]
        rq, kq = self.rate(a["instruction"], qdt)
        rp, kp = self.rate(a["instruction"], pdt)
        t_mma = (2 * d / rq + 2 * dv / rp) / a["mma_ceiling"]
        e = a["exp_emulated"]
        t_soft = max((1 - e) / m.sfu_exp, (a["fp32_ops"] + e * a["poly_ops"]) / m.fp32_lanes)
        hi, lo = (t_mma, t_soft) if t_mma >= t_soft else (t_soft, t_mma)
        per_elem = hi + a["overlap_loss"] * lo
        bm = int(a["block_m"])
        qt = -(-lq // bm)
        ctas = bh * qt
        slots = self.sms * int(a["ctas_per_sm"])
        waves = -(-ctas // slots)
        # clocks: each CTA handles bm query rows against lk keys; CTAs run in waves over the slots
        clocks = waves * int(a["ctas_per_sm"]) * (bm * lk * per_elem + a["ramp_clocks"])
        t = clocks / self.clk
        pkey = ("att", kq, kp)
        fprov = self._prov.get(pkey)
        if fprov is None:
            prov = {(kq, self._src(kq)), (kp, self._src(kp)), ("microarch.sms", self._src("microarch.sms")),
                    ("microarch.tensor_clock_ghz", self._src("microarch.tensor_clock_ghz")),
                    ("microarch.sfu_exp_per_clk_sm", self._src("microarch.sfu_exp_per_clk_sm")),
                    ("microarch.fp32_lanes_per_sm", self._src("microarch.fp32_lanes_per_sm"))}
            k = self.kernel
            prov |= {(f"kernels.attention.{k}.{c}", self.att_src[c]) for c in
                     ("mma_ceiling", "overlap_loss", "fp32_ops", "ramp_clocks", "block_m")}
            fprov = self._prov[pkey] = frozenset(prov)
        return self._keep(key, (t, fprov))

    # ------------------------------------------------------------------ conv

    def conv(self, node, dtype: str) -> tuple[float, frozenset]:
        """Seconds of a convolution node: implicit GEMM plus cuDNN's layout transposes."""
        x = node.inputs[0].type
        out = node.outputs[0]
        w = node.params["weight"].type.shape
        groups = node.attrs.get("groups", 1) or 1
        return self.conv_shape(groups, out.numel // out.shape[1], out.shape[1] // groups, w[1] * prod(w[2:]),
                               x.nbytes + out.nbytes, len(x.shape) == 5, dtype)

    def conv_shape(self, groups: int, m: int, n: int, k: int, io_bytes: int, is_3d: bool,
                   dtype: str) -> tuple[float, frozenset]:
        """Seconds of a convolution as ``groups`` implicit GEMMs (M = N·output voxels, N =
        C_out/groups, K = C_in/groups · kernel volume) at ``ceiling_factor`` of the GEMM
        model, plus ``transposes`` NCDHW↔NDHWC passes over input and output (``io_bytes``)
        for 3-D convolutions."""
        key = ("conv", groups, m, n, k, io_bytes, is_3d, dtype)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        t, prov = self.gemm(groups, m, n, k, dtype, fp32_pipe=dtype == "fp32",
                            ceiling_factor=self.conv_c["ceiling_factor"])
        tr = self.conv_c["transposes"]
        pm = None
        if tr and is_3d:
            tt, pm = self.memory_time(tr * 2 * io_bytes)
            t += tt
        pkey = ("conv", prov, pm)
        out = self._prov.get(pkey)
        if out is None:
            out = prov
            if pm is not None:
                out = out | pm | {("kernels.conv.transposes", self.conv_src["transposes"])}
            out = self._prov[pkey] = out | {("kernels.conv.ceiling_factor", self.conv_src["ceiling_factor"])}
        return self._keep(key, (t, out))

    # ------------------------------------------------------------------ nodes

    def node_model(self, n, by: int) -> tuple[float, frozenset]:
        """Model seconds and provenance of the compute part of node ``n`` (0 when it has none)."""
        return self.model_time(model_args(n, self.allow_tf32, self.matmul_tf32))

    def model_time(self, args: tuple | None) -> tuple[float, frozenset]:
        """Model seconds and provenance of :func:`model_args`' tuple (0 for None)."""
        if args is None:
            return 0.0, frozenset()
        kind = args[0]
        if kind == "gemm":
            return self.gemm(*args[1:])
        if kind == "att":
            return self.attention(*args[1:])
        return self.conv_shape(*args[1:])


def model_args(n, allow_tf32: bool = True, matmul_tf32: bool = False, cdt: str | None = None) -> tuple | None:
    """The hardware-independent arguments of the kernel model's time of node ``n``:
    ``("att", bh, lq, lk, d, dv, dtype)`` (:meth:`Model.attention`), ``("gemm", batch, m, n,
    k, dtype)`` (:meth:`Model.gemm`), ``("conv", groups, m, n, k, io_bytes, is_3d, dtype)``
    (:meth:`Model.conv_shape`), or None for a node the model does not time (its category has
    no kernel model). Shapes in elements, bytes in bytes. ``cdt``: the node's
    :func:`compute_dtype` under these flags, when the caller has it."""
    cat = n.category
    if cdt is None and cat in ("attention", "matmul", "conv"):
        cdt = compute_dtype(n, allow_tf32, matmul_tf32)
    if cat == "attention":
        q, k, v = (i.type for i in n.inputs[:3])
        bh = prod(q.shape[:-2])
        lk = k.shape[-2]
        dens = n.attrs.get("density")
        if dens:        # block-sparse (docs/optimizations.md): each query tile visits num/den of the key tiles
            lk = max(1, -(-lk * dens[0] // dens[1]))
        return ("att", bh, q.shape[-2], lk, q.shape[-1], v.shape[-1], cdt)
    if cat == "matmul":
        dt = cdt
        if n.kind == "linear":
            x = n.inputs[0].type
            kk = x.shape[-1]
            return ("gemm", 1, x.numel // kk, n.attrs["out_features"], kk, dt)
        a, b = n.inputs[0].type, n.inputs[1].type
        out = n.outputs[0]
        batch = out.numel // (out.shape[-2] * out.shape[-1])
        return ("gemm", batch, a.shape[-2], b.shape[-1], a.shape[-1], dt)
    if cat == "conv":
        x = n.inputs[0].type
        out = n.outputs[0]
        w = n.params["weight"].type.shape
        groups = n.attrs.get("groups", 1) or 1
        return ("conv", groups, out.numel // out.shape[1], out.shape[1] // groups, w[1] * prod(w[2:]),
                x.nbytes + out.nbytes, len(x.shape) == 5, cdt)
    return None


def node_key(n, allow_tf32: bool = True, matmul_tf32: bool = False) -> tuple:
    """A hashable key covering everything a timer reads of node ``n`` (given the timer's
    hardware, mode, kernel and TF32 flags): its FLOPs, bytes and launches, and for a node
    with tensor FLOPs its kind, the dtype it computes in and its kernel model's arguments
    (:func:`model_args`). Nodes with equal keys take the same time on one timer."""
    c = n.costs
    tf = c["tensor_flops"]
    if not tf:
        return (c["vector_flops"], c["bytes_read"] + c["bytes_written"], c.get("launches", 0))
    cdt = compute_dtype(n, allow_tf32, matmul_tf32)
    return (n.kind, cdt, model_args(n, allow_tf32, matmul_tf32, cdt), tf,
            c["vector_flops"], c["bytes_read"] + c["bytes_written"], c.get("launches", 0))


#: the length of :func:`node_key`'s key of a node with tensor FLOPs (the short form has 3)
_TENSOR_KEY_LEN = 7


def _ideal_peak(hw: Hardware, node, allow_tf32: bool, kernel: str | None, matmul_tf32: bool = False) -> float:
    """Speed-of-light tensor peak of a node: the fastest instruction family at the dtype it
    computes in (sage2's INT8/FP8 for its attention)."""
    m = hw.micro
    dt = compute_dtype(node, allow_tf32, matmul_tf32)
    dts = [dt]
    if node.category == "attention" and kernel is not None:
        a, _ = klib.constants("attention", hw, kernel) if kernel != "math" else ({}, {})
        for key in ("qk_dtype", "pv_dtype"):
            v = a.get(key, "input")
            if v != "input":
                dts.append(v)
    best = 0.0
    for d in dts:
        for rates in m.rates.values():
            r = rates.get(rate_dtype(d))
            if r:
                best = max(best, r)
    if not best and rate_dtype(dt) in LOW_PRECISION and node.category == "matmul":
        raise ConfigError(f"hardware '{hw.name}' ({hw.family}) has no {dt} tensor instructions: "
                          f"{dt} GEMMs (precision.dit_compute) need a GPU that has them")
    if not best or dt == "fp32":
        return hw.vector_flops if not best else max(hw.vector_flops, m.sms * m.tensor_clock_hz * best)
    return m.sms * m.tensor_clock_hz * best


class _Timer:
    """Times nodes on one device in one mode."""

    def __init__(self, hw: Hardware, mode: str, attention_kernel: str, allow_tf32_conv: bool = True,
                 matmul_tf32: bool = False):
        if mode not in MODES:
            raise ConfigError(f"roofline.mode={mode!r}: allowed: {', '.join(MODES)}")
        self.hw = hw
        self.ideal = mode == "ideal"
        self.model = Model(hw, attention_kernel, allow_tf32_conv, matmul_tf32)
        self.kernel = self.model.kernel
        self.allow_tf32 = bool(allow_tf32_conv)
        self.matmul_tf32 = bool(matmul_tf32)
        self.overhead = 0.0 if self.ideal else hw.launch_overhead_s
        self.peaks: dict = {}
        s = hw.sources
        rate_key = f"microarch.tensor_flops_per_clk_sm.{hw.micro.native}.bf16"
        self.prov_peak = frozenset({(rate_key, s.get(rate_key, "assumed")),
                                    ("microarch.sms", s.get("microarch.sms", "assumed")),
                                    ("memory.bandwidth_tbps", s.get("memory.bandwidth_tbps", "assumed"))})
        self.prov_launch = frozenset({("launch_overhead_us", s.get("launch_overhead_us", "assumed"))})
        #: what a node timed at its speed-of-light compute bound without a kernel model rests on
        self.prov_vector = self.prov_peak | {("microarch.fp32_lanes_per_sm",
                                              s.get("microarch.fp32_lanes_per_sm", "assumed"))}
        l2 = hw.micro.l2_bytes
        self.l2 = l2
        self.l2_bw = max(hw.memory_bandwidth, hw.micro.l2_bandwidth)
        self._with_launch: dict = {}
        #: node key (:func:`node_key`) -> the node's timing record (:meth:`record`); bounded
        self.memo: dict = {}
        self._host = None

    def record(self, n, key: tuple) -> tuple:
        """The timing record of node ``n`` whose :func:`node_key` is ``key``, memoized on it:
        (annotations {"compute_s", "memory_s", "time_s", "bound", "intensity"}, time_s,
        provenance, whether compute-bound, launches). Seconds per execution. Callers look in
        :attr:`memo` first."""
        compute, memory, t, p = self.node(n, key)
        if len(key) == _TENSOR_KEY_LEN:
            tf, vf, by, launches = key[3:]
        else:
            (vf, by, launches), tf = key, 0
        bound = "compute" if compute >= memory and compute > 0 else "memory"
        rec = ({"compute_s": compute, "memory_s": memory, "time_s": t, "bound": bound,
                "intensity": (tf + vf) / by if by else float("inf")},
               t, p, bound == "compute", launches)
        if len(self.memo) >= _MEMO_MAX:
            self.memo.clear()
        self.memo[key] = rec
        return rec

    def host(self) -> tuple[dict, dict]:
        """:func:`host_constants` of this timer's hardware (computed once)."""
        if self._host is None:
            self._host = host_constants(self.hw)
        return self._host

    def peak(self, n, cdt: str | None = None) -> float:
        """The speed-of-light tensor FLOP/s of node ``n`` (``cdt``: its compute dtype, when known)."""
        key = (n.kind, compute_dtype(n, self.allow_tf32, self.matmul_tf32) if cdt is None else cdt, n.category)
        p = self.peaks.get(key)
        if p is None:
            p = self.peaks[key] = _ideal_peak(self.hw, n, self.allow_tf32, self.kernel, self.matmul_tf32)
        return p

    def node(self, n, key: tuple | None = None) -> tuple[float, float, float, frozenset]:
        """(compute_s, memory_s, time_s, provenance) of one execution of node ``n``
        (``key``: its :func:`node_key` under this timer's flags, when known: everything read
        is taken from it)."""
        if key is None:
            key = node_key(n, self.allow_tf32, self.matmul_tf32)
        if len(key) == _TENSOR_KEY_LEN:
            _, cdt, args, tf, vf, by, launches = key
        else:
            (vf, by, launches), tf, cdt, args = key, 0, None, None
        hw = self.hw
        # speed of light
        ideal_c = tf / self.peak(n, cdt) if tf else 0.0
        if vf:
            tv = vf / hw.vector_flops
            if tv > ideal_c:
                ideal_c = tv
        ideal_m = (by / (self.l2_bw if by <= self.l2 else hw.memory_bandwidth)) if by else 0.0
        if self.ideal:
            t = ideal_c if ideal_c > ideal_m else ideal_m
            return ideal_c, ideal_m, t, self.prov_peak
        model = self.model
        prov = frozenset()
        compute = 0.0
        if tf:
            compute, prov = model.model_time(args)
        if ideal_c > compute:
            compute = ideal_c
            if not prov:
                prov = self.prov_vector
        memory, mprov = model.memory_time(by) if by else (0.0, frozenset())
        if memory < ideal_m:
            memory = ideal_m
        t = (compute if compute >= memory else memory) + launches * self.overhead
        p = prov if compute >= memory and compute > 0 else mprov
        if launches and self.overhead:
            q = self._with_launch.get(p)
            if q is None:
                q = self._with_launch[p] = p | self.prov_launch
            p = q
        return compute, memory, t, p


class TimedGraph(Graph):
    """A counted graph timed without copying it: :func:`run` gives it one timing record per
    node instead of writing annotations, and its nodes — copies of the counted graph's with
    their own ``costs`` (the counts plus the timing annotations) — are made on first use
    (iterating it, :meth:`node`, ...). Reads like the :meth:`Graph.timing_copy` that
    :func:`run` annotated; stage, weight, scope and meta queries answer from the counted
    graph without making the nodes. Frozen like any graph (:meth:`freeze`); making the
    nodes of a frozen one is safe from several threads."""

    def __init__(self, source: Graph):
        """``source``: the counted graph (frozen, or at least never changed while this one lives)."""
        d = self.__dict__
        d.update(source.__dict__)
        d.pop("_nodes", None)
        d.update(_frozen=False, _nx=None, weights=dict(source.weights), meta=dict(source.meta),
                 _timed_source=source, _timed_records=None, _timed_nodes=None, _timed_lock=threading.Lock(),
                 _timed_weights=None)

    @property
    def _nodes(self) -> dict:
        d = self.__dict__
        nodes = d["_timed_nodes"]
        if nodes is None:
            with d["_timed_lock"]:
                nodes = d["_timed_nodes"]
                if nodes is None:
                    nodes = d["_timed_nodes"] = self._make_nodes()
        return nodes

    def _make_nodes(self) -> dict:
        d = self.__dict__
        recs, frozen = d["_timed_records"], d["_frozen"]
        out = {}
        for i, n in enumerate(d["_timed_source"]):
            c = n.costs.copy()
            if recs is not None:
                c.update(recs[i])
            out[n.id] = Node(n.id, n.kind, n.name, n.scope, n.inputs, n.outputs, n.attrs, n.params,
                             MappingProxyType(c) if frozen else c)
        cons = d["_consumers"]          # the source's map, or None: made on first use (Graph.consumers)
        d["_consumers"] = None if cons is None else {k: list(v) for k, v in cons.items()}
        return out

    @property
    def source_nodes(self) -> list:
        """The counted graph's nodes (read-only: their costs hold no times), in order."""
        return list(self.__dict__["_timed_source"])

    def set_timing(self, annotations: list) -> None:
        """Give every node its timing annotations (``annotations``: one mapping per node of
        :attr:`source_nodes`, in order, never changed afterwards); returns None."""
        d = self.__dict__
        if d["_frozen"]:
            raise TypeError(f"graph '{self.name}' is frozen (held by a result or a cache); "
                            f"change a copy: graph.timing_copy()")
        with d["_timed_lock"]:
            nodes = d["_timed_nodes"]
            if nodes is None:
                d["_timed_records"] = annotations
            else:                       # already made (read before it was timed): annotate them
                for n, ann in zip(nodes.values(), annotations):
                    n.costs.update(ann)

    def add_node(self, *a, **k) -> Node:
        """As :meth:`Graph.add_node` (the nodes are made first)."""
        self._nodes  # noqa: B018 - make the nodes (and this graph's own consumer map)
        return super().add_node(*a, **k)

    def freeze(self) -> "TimedGraph":
        """Make this graph read-only (as :meth:`Graph.freeze`) without making its nodes:
        nodes made later carry read-only ``costs``. Returns it."""
        d = self.__dict__
        with d["_timed_lock"]:
            if d["_timed_nodes"] is None:
                if not d["_frozen"]:
                    d["meta"] = _deep_freeze(d["meta"])
                    d["weights"] = MappingProxyType(d["weights"])
                    d["_frozen"] = True
                return self
        return super().freeze()

    def timing_copy(self) -> Graph:
        """A plain, writable copy (:meth:`Graph.timing_copy`)."""
        self._nodes  # noqa: B018 - make the nodes first
        g = super().timing_copy()
        for k in ("_timed_source", "_timed_records", "_timed_nodes", "_timed_lock", "_timed_weights"):
            g.__dict__.pop(k, None)
        return g

    def stage_weights(self, stage: str) -> dict:
        """As :meth:`Graph.stage_weights`, from the counted graph's nodes (every stage in one pass)."""
        d = self.__dict__
        sw = d["_timed_weights"]
        if sw is None:
            sw = {}
            for n in d["_timed_source"]:
                if n.params:
                    out = sw.get(n.scope.stage.name)
                    if out is None:
                        out = sw[n.scope.stage.name] = {}
                    for w in n.params.values():
                        out[w.key] = w
            d["_timed_weights"] = sw
        return dict(sw.get(stage, {}))


#: node timing records a timer keeps (:meth:`_Timer.record`) before it starts afresh
_MEMO_MAX = 1 << 16

#: timers shared across runs, keyed on the hardware's identity and the timing options: a
#: timer's kernel-model caches (GEMM, attention and convolution times per shape) and peaks
#: depend only on these, and hardware specs and kernel tables are immutable. Bounded.
_TIMERS: dict = {}
_TIMERS_MAX = 128


def _timer(hw: Hardware, mode: str, attention_kernel: str, allow_tf32_conv: bool, matmul_tf32: bool) -> "_Timer":
    """The shared :class:`_Timer` of ``hw`` under these options (made on first use)."""
    key = (id(hw), mode, attention_kernel, bool(allow_tf32_conv), bool(matmul_tf32))
    hit = _TIMERS.get(key)
    if hit is not None and hit[0] is hw:
        return hit[1]
    t = _Timer(hw, mode, attention_kernel, allow_tf32_conv, matmul_tf32)
    if len(_TIMERS) >= _TIMERS_MAX:
        _TIMERS.clear()
    _TIMERS[key] = (hw, t)      # the entry holds hw, so its id is not reused while cached
    return t


class NodeKeys:
    """The timing keys of a list of nodes: ``unique``, the distinct :func:`node_key` keys in
    order of first use, and ``index``, per node the position of its key in ``unique``."""

    __slots__ = ("unique", "index")

    def __init__(self, unique: list, index: list):
        self.unique, self.index = unique, index


def node_keys(nodes, allow_tf32_conv: bool = True, matmul_tf32: bool = False) -> NodeKeys:
    """The :class:`NodeKeys` of ``nodes`` (:func:`node_key` under these TF32 flags)."""
    a, m = bool(allow_tf32_conv), bool(matmul_tf32)
    pos: dict = {}
    unique: list = []
    index: list = []
    add = index.append
    for n in nodes:
        c = n.costs
        if c["tensor_flops"]:
            key = node_key(n, a, m)
        else:       # node_key's short form, inline
            key = (c["vector_flops"], c["bytes_read"] + c["bytes_written"], c.get("launches", 0))
        i = pos.get(key)
        if i is None:
            i = pos[key] = len(unique)
            unique.append(key)
        add(i)
    return NodeKeys(unique, index)


def clear_timers() -> None:
    """Forget the shared timers (their per-shape kernel times and per-key node records) and
    the provenance summaries; returns None."""
    _TIMERS.clear()
    _PROV_INPUTS.clear()
    _HAS_ASSUMED.clear()


def run(graph: Graph, hw: Hardware, mode: str = "calibrated", attention_kernel: str = DEFAULT_ATTENTION_KERNEL,
        host: Hardware | None = None, host_stages=(), offload_model: bool = False,
        weight_bytes: dict | None = None, nodes: list | None = None, allow_tf32_conv: bool = True,
        matmul_tf32: bool = False, fusion: str = "eager", cuda_graphs: bool = False,
        keys: NodeKeys | None = None) -> dict:
    """Annotate every node with ``compute_s``, ``memory_s``, ``time_s`` (seconds per
    execution), ``bound`` and ``intensity`` (FLOPs per byte). Returns {"time_s": {stage:
    seconds per invocation}, "compute_share": {stage: fraction of the stage's time in
    compute-bound nodes}, "bound": {stage: "compute" | "memory" | "issue"}, "device":
    {stage: device name}, "issue_s": {stage: CPU issue seconds per invocation},
    "provenance": {stage: {...}} (see :func:`provenance`), "transfer_s": host↔device weight
    traffic per generation, "ridge_point": FLOPs per byte at bf16}. ``attention_kernel``
    names the kernel (``sdpa`` resolves per family); ``allow_tf32_conv`` runs fp32
    convolutions as TF32, ``matmul_tf32`` fp32 matmuls (``runtime.matmul_tf32``). The host
    side (``issue_s`` per invocation: eager dispatch, module calls, tokenization, the
    scheduler; ``host_exposed_s``: synchronizations) follows ``fusion`` and ``cuda_graphs``
    (backends/host_stages.py: host_seconds); a stage takes max(device, host) + exposed. Nodes need the flops and bytes passes' annotations.

    ``nodes``: the nodes to time (default: the graph's, in order); ``keys``: their
    :func:`node_keys` under these TF32 flags (a :class:`NodeKeys`), for a caller that times one graph on many
    devices. Nodes with equal keys share one timing record per device and options (memoized
    across runs, bounded: :func:`clear_timers` forgets them)."""
    timers = {hw.name: _timer(hw, mode, attention_kernel, allow_tf32_conv, matmul_tf32)}
    stage_timer = {}
    for s in graph.stages:
        if s in host_stages:
            if host is None:
                raise ConfigError(f"stage '{s}' runs on the host, but no host hardware is configured (memory.host)")
            if host.name not in timers:
                k = attention_kernel if attention_kernel in klib.available_attention(host.family) else "sdpa"
                timers[host.name] = _timer(host, mode, k, allow_tf32_conv, matmul_tf32)
            stage_timer[s] = timers[host.name]
        else:
            stage_timer[s] = timers[hw.name]
    time = {s: 0.0 for s in graph.stages}
    comp = {s: 0.0 for s in graph.stages}
    launches = {s: 0 for s in graph.stages}
    prov_t: dict[str, dict] = {s: {} for s in graph.stages}
    modules: dict[int, object] = {}     # module scopes (not stages, loops or the root) the nodes sit in
    timed = nodes is None and isinstance(graph, TimedGraph)
    if nodes is None:
        nodes = graph.source_nodes if timed else list(graph)
    anns = []
    keep = anns.append
    if keys is None:
        keys = node_keys(nodes, allow_tf32_conv, matmul_tf32)
    unique = keys.unique
    per_timer: dict[int, list] = {}     # per timer: the records of the distinct keys, filled as nodes use them
    scopes: dict = {}                   # per scope (hashed by identity): executions per invocation, stage, its
    last = cur = None                   # timer and records
    acc_t = acc_c = 0.0                 # the current stage's sums (time, compute-bound time) and launches
    acc_l = 0
    for n, i in zip(nodes, keys.index):
        sc = n.scope
        if sc is not last:
            last = sc
            e = scopes.get(sc)
            if e is None:
                st = sc.stage.name
                tm = stage_timer[st]
                recs = per_timer.get(id(tm))
                if recs is None:
                    recs = per_timer[id(tm)] = [None] * len(unique)
                e = scopes[sc] = (sc.count_per_invocation, st, tm, recs, prov_t[st])
                while sc is not None and sc.kind in ("scope", "repeat", "loop") and id(sc) not in modules:
                    modules[id(sc)] = sc
                    sc = sc.parent
            k, st, tm, recs, pt = e
            if st != cur:
                if cur is not None:
                    time[cur], comp[cur], launches[cur] = acc_t, acc_c, acc_l
                cur = st
                acc_t, acc_c, acc_l = time[st], comp[st], launches[st]
        r = recs[i]
        if r is None:
            key = unique[i]
            r = tm.memo.get(key)
            if r is None:
                r = tm.record(n, key)
            recs[i] = r
        ann, t, p, is_compute, la = r
        if timed:
            keep(ann)
        else:
            n.costs.update(ann)
        tk = t * k
        acc_t += tk
        acc_l += la * k
        pt[p] = pt.get(p, 0.0) + tk
        if is_compute:
            acc_c += tk
    if cur is not None:
        time[cur], comp[cur], launches[cur] = acc_t, acc_c, acc_l
    if timed:
        graph.set_timing(anns)
    calls = {s: 0 for s in graph.stages}
    for sc in modules.values():
        if sc.kind != "loop" and sc.stage.name in calls:
            calls[sc.stage.name] += sc.count_per_invocation
    steps = (graph.meta.get("workload") or {}).get("steps")
    issue = {}
    exposed = {}
    bound = {}
    share = {s: (comp[s] / time[s] if time[s] else 0.0) for s in time}
    for s, sc in graph.stages.items():
        tm = stage_timer[s]
        bound[s] = "compute" if share[s] >= 0.5 else "memory"
        if tm.ideal:
            issue[s] = exposed[s] = 0.0
            continue
        consts, srcs = tm.host()
        per_step = steps / sc.repeat if isinstance(steps, int) and steps > 0 and sc.repeat else 0.0
        issue[s], exposed[s] = host_seconds(s, launches[s], calls[s], per_step, consts, fusion, cuda_graphs)
        if issue[s] > time[s]:
            prov_t[s] = {tm.model.issue_prov | {("host." + k, v) for k, v in srcs.items()
                                                if k not in ("cpu_issue_us",)}: issue[s]}
            time[s] = issue[s]
            bound[s] = "issue"
        if exposed[s]:
            prov_t[s][frozenset({("host.sync_us", srcs["sync_us"]), ("host.syncs_per_step", srcs["syncs_per_step"])})] = \
                exposed[s]
            time[s] += exposed[s]
    transfer = 0.0
    if offload_model and weight_bytes:
        bw = hw.host_link_bandwidth * (1.0 if mode == "ideal" else hw.host_link_efficiency)
        transfer = sum(2 * b for s, b in weight_bytes.items() if s not in host_stages) / bw
    return {"time_s": time, "compute_share": share, "bound": bound,
            "device": {s: stage_timer[s].hw.name for s in graph.stages}, "issue_s": issue,
            "host_exposed_s": exposed,
            "provenance": {s: provenance(prov_t[s], time[s]) for s in graph.stages},
            "transfer_s": transfer, "ridge_point": hw.ridge_point("bf16") if "bf16" in hw.tensor_flops else None}


def provenance(by_key: dict, total: float) -> dict:
    """Summarize {frozenset of (input, source): seconds} into {"inputs": {source: [input
    names]}, "assumed_share": fraction of ``total`` resting on at least one assumed input}."""
    keys = tuple(by_key)
    inputs = _PROV_INPUTS.get(keys)
    if inputs is None:
        sets: dict[str, set] = {k: set() for k in SOURCE_ORDER}
        for key in keys:
            for name, src in key:
                sets.setdefault(src, set()).add(name)
        inputs = {k: tuple(sorted(v)) for k, v in sets.items() if v}
        if len(_PROV_INPUTS) >= 4096:
            _PROV_INPUTS.clear()
        _PROV_INPUTS[keys] = inputs
    assumed = 0.0
    for key, t in by_key.items():
        has = _HAS_ASSUMED.get(key)
        if has is None:
            if len(_HAS_ASSUMED) >= 4096:
                _HAS_ASSUMED.clear()
            has = _HAS_ASSUMED[key] = any(src == "assumed" for _, src in key)
        if has:
            assumed += t
    return {"inputs": {k: list(v) for k, v in inputs.items()},
            "assumed_share": (assumed / total) if total else 0.0}


#: provenance summaries: the inputs of a stage's ordered provenance keys, and whether a key rests
#: on an assumed input (both pure functions of the frozen keys; bounded)
_PROV_INPUTS: dict = {}
_HAS_ASSUMED: dict = {}
