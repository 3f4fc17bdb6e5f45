"""roofline: the time of every node, stage and generation on one device.

Per node (one execution), with FLOPs from the flops pass and bytes from the bytes pass:

- compute time = max(tensor_flops / (peak[dtype] × eff), vector_flops / (vector_peak × eff_vector)).
  The **max**, not the sum: tensor cores and the vector (FP32/SFU) units are separate pipes
  that run concurrently (other warps' softmax overlaps a warp's matrix multiply), so the
  busier pipe bounds the kernel. A sum would not be a speed-of-light bound, and the
  calibrated efficiencies are whole-kernel throughputs that already include imperfect
  overlap. ``dtype`` is the compute dtype: the dtype of the node's first input; an fp32
  convolution runs at the TF32 peak (cuDNN allows TF32 by default), an fp32 matmul at the
  fp32 peak (PyTorch disallows TF32 matmuls by default).
- memory time = (bytes_read + bytes_written) / (bandwidth × eff_memory).
- node time = max(compute time, memory time) + launches × launch overhead.
- bound: ``compute`` if compute time ≥ memory time, else ``memory``; arithmetic intensity =
  (tensor + vector FLOPs) / bytes; the device's ridge point = peak / bandwidth.

Efficiencies come from the hardware's step tables by op class (matmul, conv, attention per
kernel, vector, memory), looked up at the node's FLOPs (or bytes). ``mode="ideal"`` sets
every efficiency to 1 and the launch overhead to 0: a bound real runs cannot beat.

Stage time per invocation = Σ node time × executions per invocation. The pipeline time is
Σ stage time × invocations, plus, under ``memory.offload_model``, moving each GPU stage's
weights onto the GPU and back once per generation over the host link
(2 × weight bytes / (host-link bandwidth × its efficiency)). Under ``memory.t5_cpu`` the
text encoder is timed on the host device.
"""
from __future__ import annotations

from wanir.errors import ConfigError
from wanir.graph import Graph
from wanir.hardware import Hardware
from wanir.ops import OPS

MODES = ("calibrated", "ideal")
_CLASS = {"matmul": "matmul", "conv": "conv", "attention": "attention"}


def compute_dtype(node, allow_tf32: bool = True) -> str:
    """Name of the dtype the node's tensor FLOPs run at (see the module docstring);
    ``allow_tf32``: whether fp32 convolutions may use TF32 (the runtime's setting)."""
    dt = node.inputs[0].type.dtype.name if node.inputs else node.outputs[0].dtype.name
    if dt == "fp32" and node.category == "conv" and allow_tf32:
        return "tf32"
    return dt


class _Timer:
    """Times nodes on one device in one mode (caches the per-class tables)."""

    def __init__(self, hw: Hardware, mode: str, attention_kernel: str, allow_tf32: bool = True):
        if mode not in MODES:
            raise ConfigError(f"roofline.mode={mode!r}: allowed: {', '.join(MODES)}")
        self.hw = hw
        self.ideal = mode == "ideal"
        self.kernel = attention_kernel
        self.allow_tf32 = allow_tf32
        self.tables = {c: hw.table(c, attention_kernel) for c in ("matmul", "conv", "attention", "vector", "memory")}
        self.overhead = 0.0 if self.ideal else hw.launch_overhead_s
        self.peaks: dict[str, float] = {}

    def peak(self, dt):
        p = self.peaks.get(dt)
        if p is None:
            p = self.peaks[dt] = self.hw.peak(dt)
        return p

    def node(self, n) -> tuple[float, float, float]:
        """(compute_s, memory_s, time_s) of one execution of node ``n``."""
        c = n.costs
        tf, vf = c["tensor_flops"], c["vector_flops"]
        by = c["bytes_read"] + c["bytes_written"]
        ideal = self.ideal
        t_tensor = 0.0
        if tf:
            eff = 1.0 if ideal else self.tables[_CLASS.get(OPS[n.kind].category, "matmul")](tf)
            t_tensor = tf / (self.peak(compute_dtype(n, self.allow_tf32)) * eff)
        t_vector = 0.0
        if vf:
            eff = 1.0 if ideal else self.tables["vector"](vf)
            t_vector = vf / (self.hw.vector_flops * eff)
        compute = t_tensor if t_tensor > t_vector else t_vector
        memory = 0.0
        if by:
            eff = 1.0 if ideal else self.tables["memory"](by)
            memory = by / (self.hw.memory_bandwidth * eff)
        t = (compute if compute > memory else memory) + c.get("launches", 0) * self.overhead
        return compute, memory, t


def run(graph: Graph, hw: Hardware, mode: str = "calibrated", attention_kernel: str = "flash2",
        host: Hardware | None = None, host_stages=(), offload_model: bool = False,
        weight_bytes: dict | None = None, nodes: list | None = None, allow_tf32: bool = True) -> dict:
    """Annotate every node with ``compute_s``, ``memory_s``, ``time_s`` (seconds per
    execution), ``bound`` and ``intensity`` (FLOPs per byte). Returns {"time_s": {stage:
    seconds per invocation}, "compute_share": {stage: fraction of the stage's time in
    compute-bound nodes}, "bound": {stage: "compute" | "memory"}, "device": {stage: device
    name}, "transfer_s": host↔device weight traffic per generation, "ridge_point": FLOPs per
    byte at bf16}. Nodes need the flops and bytes passes' annotations."""
    timers = {hw.name: _Timer(hw, mode, attention_kernel, allow_tf32)}
    stage_timer = {}
    for s in graph.stages:
        if s in host_stages:
            if host is None:
                raise ConfigError(f"stage '{s}' runs on the host, but no host hardware is configured (memory.host)")
            if host.name not in timers:
                timers[host.name] = _Timer(host, mode, attention_kernel if "attention." + attention_kernel
                                           in host.efficiency else "math")
            stage_timer[s] = timers[host.name]
        else:
            stage_timer[s] = timers[hw.name]
    time = {s: 0.0 for s in graph.stages}
    comp = {s: 0.0 for s in graph.stages}
    counts: dict[int, tuple] = {}
    for n in (graph if nodes is None else nodes):
        k = counts.get(id(n.scope))
        if k is None:
            k = counts[id(n.scope)] = (n.scope.count_per_invocation, n.scope.stage.name)
        k, st = k
        compute, memory, t = stage_timer[st].node(n)
        c = n.costs
        c["compute_s"] = compute
        c["memory_s"] = memory
        c["time_s"] = t
        c["bound"] = "compute" if compute >= memory and compute > 0 else "memory"
        by = c["bytes_read"] + c["bytes_written"]
        c["intensity"] = (c["tensor_flops"] + c["vector_flops"]) / by if by else float("inf")
        time[st] += t * k
        if c["bound"] == "compute":
            comp[st] += t * k
    share = {s: (comp[s] / time[s] if time[s] else 0.0) for s in time}
    transfer = 0.0
    if offload_model and weight_bytes:
        bw = hw.host_link_bandwidth * (1.0 if mode == "ideal" else hw.host_link_efficiency)
        transfer = sum(2 * b for s, b in weight_bytes.items() if s not in host_stages) / bw
    return {"time_s": time, "compute_share": share,
            "bound": {s: ("compute" if share[s] >= 0.5 else "memory") for s in share},
            "device": {s: stage_timer[s].hw.name for s in graph.stages},
            "transfer_s": transfer, "ridge_point": hw.ridge_point("bf16") if "bf16" in hw.tensor_flops else None}
