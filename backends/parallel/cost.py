"""Costing a plan: the per-device graph annotated once (:class:`DeviceGraph`), timed on a
hardware into a :class:`MultiDeviceCost`, and :func:`multi_device_cost`, the entry point."""
from __future__ import annotations

from dataclasses import dataclass

from wanir import hardware as hwlib
from wanir.dtypes import get_dtype
from wanir.frontends.pipeline import build_pipeline
from wanir.graph import Graph
from wanir.passes import count
from wanir.passes import memory as mem_pass
from wanir.passes.experts import calls_per_invocation
from wanir.result import Estimate
from wanir.options import count_key
from wanir.runtime import bare_run, memory_for_plan, run_attention_kernel

from .. import comm as commlib
from .. import host_stages as hostlib
from .. import roofline
from ..host_stages import block_stream_plan
from .plan import SINGLE_DEVICE_STAGES, SP_STAGES, Plan, check_plan, plan_from
from .transform import shard_graph


class DeviceGraph:
    """A plan's per-device graph, annotated once with the hardware-independent passes
    (flops, bytes, memory; verify for what the sharding did not check) so that :meth:`cost`
    can time it on any hardware."""

    def __init__(self, graph: Graph, plan: Plan, run=None):
        """``graph``: the single-device pipeline graph; ``plan``: its shape; ``run``: the
        resolved :class:`wanir.scenario.Run` it is timed with (its typed options, runtime,
        residency, whether the offload policy and the attention kernel are the runtime's
        defaults — a default kernel follows each GPU family timed); None: the Run of no
        configuration (:func:`wanir.runtime.bare_run`)."""
        run = bare_run() if run is None else run
        options, runtime, memory = run.options, run.runtime, run.memory
        self.plan, self.run, self.options = plan, run, options
        self._costs: dict = {}     # (hardware, per-device plan facts) -> the costed stages
        self.runtime = runtime
        self.graph = shard_graph(graph, plan, runtime.multi_gpu)
        ro = self.options.roofline
        self.kernel, self.fusion, self.mode = ro.attention_kernel, ro.fusion, ro.mode
        # one generate.py process group: the devices that work on one video or share its weights
        self.mem = memory_for_plan(memory, runtime, run.offload_from_runtime, max(plan.replica, plan.fsdp))
        self.offload = self.mem.offload_model
        self.t5_cpu = self.mem.t5_cpu
        g = self.graph
        resident = None
        if self.mem.offload == "block":
            resident = {"diffusion_core": block_stream_plan(g, self.mem.resident_params)["gpu_weight_bytes"]}
        elif "experts" not in g.meta:
            # FSDP: the memory pass replays the allocator with the weights one device keeps, so
            # that :meth:`cost` needs no replay of its own (two experts keep their own rule there)
            resident = self._fsdp_resident(g) or None
        # the counting path of the single-device estimate (passes/count.py); the sharding checks
        # every node it adds, so verify runs only on what was not checked (a transformed source)
        counts = count.run(g, self.options, mem=self.mem, resident_weight_bytes=resident)
        self.nodes = list(g)
        self.flops = counts["flops"]
        self.memory = counts["memory"]
        self.comm = g.meta["parallel"]["comm"]
        self.count = {n.id: n.scope.count_per_invocation for n in self.nodes}
        self._pipe = None
        self._keys = self._lay = self._blocks = self._wb = None     # made on the first cost()
        self._kernels: dict = {}       # hardware family -> the attention kernel the runtime runs there

    def cost(self, hw, single_time_s: float | None = None, plan: Plan | None = None) -> "MultiDeviceCost":
        """Time this device graph on ``hw`` (a :class:`wanir.hardware.Hardware`): the roofline
        for compute nodes, the alpha-beta model (backends/comm.py) for communication nodes.
        Writes ``time_s``, ``comm_bytes``, ``comm_s``, ``exposed_s`` and ``tier`` on every
        communication node; returns a :class:`MultiDeviceCost`. ``plan``: the plan to report
        (default the graph's; one with the same shape and more data-parallel replicas or
        another name reuses this per-device graph)."""


        p, g = plan or self.plan, self.graph
        # plans of this shape that differ only in data-parallel replicas or name cost the same
        # per device — but for the weight copies, whose host link the ranks of one host share
        # (offload under a plan): the stages on one hardware are computed once, the copy time
        # once per rank count (the node annotations hold the last hardware computed)
        ranks = min(p.degree, p.gpus_per_node)
        key = (id(hw), p.overlap, p.gpus_per_node, repr(p.network), repr(p.intra_node), p.vae, p.replica)
        hit = self._costs.get(key)
        if hit is not None and hit[0] is hw:
            _, stages, transfers, pipe, prov, copies = hit
            t = transfers.get(ranks)
            if t is None:
                t = transfers[ranks] = copies(ranks)
            return MultiDeviceCost(self, hw, _copy_stages(stages), t, dict(pipe), single_time_s, p, prov)
        host_stages = mem_pass.HOST_STAGES_T5_CPU if self.t5_cpu else ()
        host = hostlib.load_host(self.mem, hw) if host_stages else None
        wb = self.weight_bytes()
        kernel = self._kernel_for(hw)
        allow_tf32, matmul_tf32 = roofline.timing_options(self.options)[1], roofline.matmul_tf32_option(self.options)
        if self._keys is None:      # the nodes' timing keys do not depend on the hardware: made once
            self._keys = roofline.node_keys(self.nodes, allow_tf32, matmul_tf32)
        rf = roofline.run(g, hw, mode=self.mode, attention_kernel=kernel, host=host, host_stages=host_stages,
                          offload_model=False, nodes=self.nodes, weight_bytes=wb, allow_tf32_conv=allow_tf32,
                          matmul_tf32=matmul_tf32, fusion=self.fusion, cuda_graphs=self.options.runtime.cuda_graphs,
                          keys=self._keys)
        mem_for_copies = {"stages": {s: {**r, "weight_bytes": wb[s]} for s, r in self.memory["stages"].items()}}

        def copies(n: int) -> float:
            """Host↔device weight-copy seconds with ``n`` ranks of one host copying at once."""
            return hostlib.transfer_seconds(g, mem_for_copies, hw, self.mem, self.runtime, host_stages,
                                            self.mode == "ideal", rf, ranks=n)

        rf["transfer_s"] = copies(ranks)
        topo = commlib.topology(hw, p.gpus_per_node, dict(p.network), dict(p.intra_node))
        # communication nodes on their link tier
        for nid, e in self.comm.items():
            n = g.node(nid)
            t, tier = commlib.collective_time(n.kind, n.inputs[0].type.nbytes, n.outputs[0].nbytes, e["size"], topo,
                                              e["stride"], n.attrs.get("steps", 1))
            c = n.costs
            c.update(comm_bytes=commlib.volume(n.kind, n.inputs[0].type.nbytes, n.outputs[0].nbytes, e["size"],
                                               n.attrs.get("steps", 1)),
                     comm_s=t, time_s=t, exposed_s=t, tier=tier, compute_s=0.0, memory_s=0.0,
                     bound="communication")
        if p.overlap:
            self._overlap()
        stages = {}
        for s, scope in g.stages.items():
            stages[s] = {"name": s, "invocations": scope.repeat, "compute_s": 0.0, "comm_s": 0.0, "exposed_comm_s": 0.0,
                         "comm_bytes": 0, "tensor_flops": self.flops[s]["tensor_flops"],
                         "vector_flops": self.flops[s]["vector_flops"], "by_class": {}, "replicated_s": 0.0}
        for n, st, k, is_comm, is_replicated, cat, repeat in self._layout():
            r = stages[st]
            c = n.costs
            if is_comm:
                r["comm_s"] += c["comm_s"] * k
                r["exposed_comm_s"] += c["exposed_s"] * k
                r["comm_bytes"] += c["comm_bytes"] * k
                cls = "communication"
                t = c["exposed_s"] * k
            else:
                r["compute_s"] += c["time_s"] * k
                t = c["time_s"] * k
                if is_replicated:
                    r["replicated_s"] += t
                cls = cat if c["bound"] == "compute" else "memory-bound ops"
            by_class = r["by_class"]
            by_class[cls] = by_class.get(cls, 0.0) + t * repeat
        mem_stages = {}
        for s, r in stages.items():
            # a stage is at least its host issue time, plus the synchronizations that cannot overlap
            r["compute_s"] = max(r["compute_s"], rf["issue_s"][s]) + rf["host_exposed_s"][s]
            calls = calls_per_invocation(g, s)
            if calls > 1:       # two experts (Wan2.2 A14B): report per DiT call, as the single-device estimate
                r["invocations"] *= calls
                for key in ("compute_s", "comm_s", "exposed_comm_s", "replicated_s"):
                    r[key] /= calls
                for key in ("comm_bytes", "tensor_flops", "vector_flops"):
                    r[key] = r[key] // calls if r[key] % calls == 0 else r[key] / calls
            r["time_per_invocation_s"] = r["compute_s"] + r["exposed_comm_s"]
            r["time_s"] = r["time_per_invocation_s"] * r["invocations"]
            if s not in SP_STAGES and not (s == "vae_decode" and p.vae == "patch"):
                # a stage the plan does not split: every device of a replica runs it whole (or one
                # runs it while the others wait), so none of it shrinks with the device count
                r["replicated_s"] = r["compute_s"]
            r["replicated_s"] = min(r["replicated_s"], r["compute_s"])
            ms = dict(self.memory["stages"][s])
            if "offload_weight_bytes" in ms and ms["weight_bytes"]:
                # two experts, one on the device at a time: its share of the (sharded) weights
                ms["offload_weight_bytes"] = ms["offload_weight_bytes"] * wb[s] // ms["weight_bytes"]
            ms["weight_bytes"] = wb[s]
            mem_stages[s] = ms
            r["weight_bytes"] = wb[s]
            r["peak_activation_bytes"] = ms["peak_activation_bytes"]
            r["devices"] = 1 if s in SINGLE_DEVICE_STAGES and not (s == "vae_decode" and p.vae == "patch") else p.replica
        if self._pipe is None:   # per-device memory does not depend on the hardware: replay the allocator once
            if mem_stages == self.memory["stages"]:     # the counting pass replayed these very stages
                self._pipe = dict(self.memory["pipeline"])
            else:
                self._pipe = mem_pass.pipeline_peak(mem_stages, self.offload, self.mem.reserve_bytes,
                                                    self.memory.get("allocator"))
        pipe = dict(self._pipe)
        if len(self._costs) >= 64:
            self._costs.pop(next(iter(self._costs)))
        self._costs[key] = (hw, _copy_stages(stages), {ranks: rf["transfer_s"]}, dict(pipe), rf["provenance"], copies)
        return MultiDeviceCost(self, hw, stages, rf["transfer_s"], pipe, single_time_s, p, rf["provenance"])

    def _kernel_for(self, hw) -> str:
        """The attention kernel this graph's run runs on ``hw``
        (:func:`wanir.runtime.run_attention_kernel`: it depends on the hardware's family only;
        worked out once per family)."""
        k = self._kernels.get(hw.family)
        if k is None:
            k = self._kernels[hw.family] = run_attention_kernel(self.run, hw)
        return k

    def _layout(self) -> list:
        """Per node, in order, what :meth:`cost` needs that no hardware changes: (node, stage,
        executions per invocation, whether it communicates, whether every device runs it
        whole, op category, the stage's invocations). Made once."""
        if self._lay is None:
            g = self.graph
            stages = g.stages
            replicated = set(g.meta["parallel"].get("replicated", ()))
            self._lay = [(n, n.stage, self.count[n.id], n.id in self.comm, n.id in replicated, n.category,
                          stages[n.stage].repeat) for n in self.nodes]
        return self._lay

    def _block_members(self) -> list:
        """Per FSDP block gather overlapped with the previous block (:meth:`_overlap`): the
        gather node, its unit scope, and the (node, executions per invocation) of the compute
        nodes of its stage inside that unit, in order. Made once."""
        if self._blocks is None:
            g = self.graph
            out = []
            for nid, e in self.comm.items():
                if e.get("overlap") != "previous_block":
                    continue
                n = g.node(nid)
                unit = n.scope
                members = []
                for m in self.nodes:
                    if m.id in self.comm or m.stage != n.stage:
                        continue
                    s = m.scope
                    while s is not None and s is not unit:
                        s = s.parent
                    if s is unit:
                        members.append((m, self.count[m.id]))
                out.append((n, unit, members))
            self._blocks = out
        return self._blocks

    def weight_bytes(self) -> dict:
        """Resident weight bytes per stage on one device (FSDP stages hold 1/fsdp), ints (a
        new dict; worked out once)."""
        if self._wb is None:
            self._wb = self._weight_bytes()
        return dict(self._wb)

    def _weight_bytes(self) -> dict:
        fs = self._fsdp_resident(self.graph)
        return {s: (fs[s] if s in fs else r["weight_bytes"]) for s, r in self.memory["stages"].items()}

    def _fsdp_resident(self, g: Graph) -> dict:
        """Resident weight bytes on one device of each FSDP-sharded stage of the per-device
        graph ``g`` (1/fsdp of its weights), ints; {} without FSDP."""
        f = g.meta["parallel"]["fsdp"]
        out = {s: r["resident_weight_bytes"] for s, r in f.items()}
        shard = self.runtime.fsdp_shard_dtype
        if shard and "diffusion_core" in f:
            # FSDP mixed precision: the gathers and the compute use the graph's weight dtype,
            # the resident shards keep the stored one
            ws = [w for n in g if n.stage == "diffusion_core" for w in n.params.values()]
            if ws:
                out["diffusion_core"] = out["diffusion_core"] * get_dtype(shard).bits // ws[0].type.dtype.bits
        return out

    def _overlap(self):
        """Hide overlappable communication behind the compute it overlaps: ring exchanges
        behind their attention (all steps), an FSDP block gather behind the previous block."""
        g = self.graph
        ring: dict[int, list] = {}
        for nid, e in self.comm.items():
            ov = e.get("overlap")
            if ov and ov.startswith("sdpa:"):
                ring.setdefault(int(ov.split(":")[1]), []).append(g.node(nid))
        for sid, comms in ring.items():
            sd = g.node(sid)
            hide = sd.costs["time_s"] * sd.scope.repeat          # the attention's ring steps
            total = sum(n.costs["comm_s"] for n in comms)
            left = max(0.0, total - hide)
            for n in comms:
                n.costs["exposed_s"] = left * n.costs["comm_s"] / total if total else 0.0
        first_seen: set[str] = set()
        for n, unit, members in self._block_members():
            t_block = 0.0
            per_unit = unit.count_per_invocation
            for m, k in members:
                t_block += m.costs["time_s"] * k / per_unit
            t = n.costs["comm_s"]
            hidden = max(0.0, t - t_block)
            c = unit.repeat if unit.kind == "repeat" else 1
            if unit.kind == "repeat":
                n.costs["exposed_s"] = (t + (c - 1) * hidden) / c      # the first block's gather is not hidden
            elif n.stage in first_seen:
                n.costs["exposed_s"] = hidden
            else:
                first_seen.add(n.stage)
                n.costs["exposed_s"] = t


def _copy_stages(stages: dict) -> dict:
    """A copy of :meth:`DeviceGraph.cost`'s per-stage records that shares nothing mutable
    with them (each record and its ``by_class`` copied)."""
    return {s: {**r, "by_class": dict(r["by_class"])} for s, r in stages.items()}


@dataclass
class MultiDeviceCost:
    """Per-device costs of one plan on one hardware. ``stages``: per stage (per device)
    ``invocations``, ``compute_s`` and ``comm_s`` / ``exposed_comm_s`` per invocation
    (seconds), ``time_s`` per generation, ``comm_bytes`` per invocation, resident
    ``weight_bytes``, ``peak_activation_bytes``, ``devices`` that run it, and ``by_class``
    (seconds per generation by op class). See :meth:`to_dict` for the totals."""

    device_graph: DeviceGraph
    hardware: object
    stages: dict
    transfer_s: float
    memory: dict
    single_time_s: float | None = None
    plan: Plan | None = None
    provenance: dict | None = None      # per stage: what its time rests on (backends/roofline.py)

    def __post_init__(self):
        if self.plan is None:
            self.plan = self.device_graph.plan

    @property
    def graph(self) -> Graph:
        """The annotated per-device graph."""
        return self.device_graph.graph

    @property
    def time_s(self) -> float:
        """Seconds per video (one replica's latency)."""
        return sum(r["time_s"] for r in self.stages.values()) + self.transfer_s

    @property
    def comm_s(self) -> float:
        """Exposed communication seconds per video."""
        return sum(r["exposed_comm_s"] * r["invocations"] for r in self.stages.values())

    @property
    def replicated_s(self) -> float:
        """Seconds per video (one device) of work the plan does not divide: nodes of a
        sequence-sharded stage that every device runs whole (embeddings, context projections,
        Wan2.2's per-token time embedding) plus the stages the plan does not split."""
        return sum(r["replicated_s"] * r["invocations"] for r in self.stages.values())

    @property
    def peak_memory_bytes(self) -> int:
        """Peak memory of one device in bytes (int)."""
        return self.memory["peak_memory_bytes"]

    @property
    def fits(self) -> bool:
        """Whether the per-device peak fits the hardware's memory."""
        return self.peak_memory_bytes <= self.hardware.memory_bytes

    @property
    def videos_per_hour(self) -> float:
        """Throughput of all ``degree`` devices (dp replicas in parallel)."""
        return self.plan.dp * 3600.0 / self.time_s

    @property
    def speedup(self) -> float | None:
        """Throughput on ``degree`` devices over one device's (= latency speedup × dp)."""
        if self.single_time_s is None:
            return None
        return self.plan.dp * self.single_time_s / self.time_s

    @property
    def efficiency(self) -> float | None:
        """Parallel efficiency: speedup / devices."""
        s = self.speedup
        return None if s is None else s / self.plan.degree

    def bottleneck(self) -> tuple[str, float]:
        """(op class, share of the per-video time) of the largest contributor: an op class
        of compute-bound nodes (matmul, attention, conv, …), memory-bound ops, or exposed
        communication."""
        acc: dict[str, float] = {}
        for r in self.stages.values():
            for k, v in r["by_class"].items():
                acc[k] = acc.get(k, 0.0) + v
        if self.transfer_s:
            acc["host transfer"] = self.transfer_s
        k = max(acc, key=acc.get)
        return k, acc[k] / self.time_s if self.time_s else 0.0

    def to_dict(self) -> dict:
        """Plain data: plan, hardware, per-stage records and the totals (``time_s``,
        ``comm_s``, ``comm_share``, ``peak_memory_bytes``, ``fits``, ``speedup``,
        ``latency_speedup``, ``efficiency``, ``videos_per_hour``, ``bottleneck``), notes."""
        b, share = self.bottleneck()
        lat = None if self.single_time_s is None else self.single_time_s / self.time_s
        return {"plan": self.plan.to_dict(), "hardware": self.hardware.name, "devices": self.plan.degree,
                "stages": [{k: v for k, v in r.items()} for r in self.stages.values()],
                "total": {"time_s": self.time_s, "comm_s": self.comm_s,
                          "comm_share": self.comm_s / self.time_s if self.time_s else 0.0,
                          "peak_memory_bytes": self.peak_memory_bytes, "fits": self.fits,
                          "peak_allocated_bytes": self.memory.get("peak_allocated_bytes"),
                          "peak_reserved_bytes": self.memory.get("peak_reserved_bytes"),
                          "reserve_bytes": self.memory.get("reserve_bytes", 0),
                          "single_device_time_s": self.single_time_s, "speedup": self.speedup,
                          "latency_speedup": lat, "efficiency": self.efficiency,
                          "videos_per_hour": self.videos_per_hour, "bottleneck": b, "bottleneck_share": share},
                "replicated": {"time_s": self.replicated_s,
                               "share": self.replicated_s / self.time_s if self.time_s else 0.0,
                               "stages": {s: r["replicated_s"] * r["invocations"] for s, r in self.stages.items()}},
                "notes": list(self.graph.meta["parallel"]["notes"])}


def multi_device_cost(estimate_or_graph, hardware=None, devices: int | None = None, plan=None,
                      run=None) -> MultiDeviceCost:
    """Cost one generation on ``devices`` devices of ``hardware`` (a name or a Hardware;
    default: the estimate's) under ``plan`` (a Plan, a name such as ``"fsdp+ulysses"``, or a
    ``parallel`` mapping; default: the run's configured plan, else single).
    ``estimate_or_graph`` is a :class:`wanir.Estimate` (timed with its ``run``) or an
    unannotated/annotated pipeline Graph (``run``, a resolved :class:`wanir.scenario.Run`,
    then gives the roofline and memory options; None: the defaults). Returns a
    :class:`MultiDeviceCost`: per-device time, memory and communication per stage and in
    total (seconds, bytes), speedup and parallel efficiency against one device of the same
    hardware."""
    if isinstance(estimate_or_graph, Estimate):
        graph = estimate_or_graph.graph
        run = run if run is not None else estimate_or_graph.run
        if run is None:   # an Estimate of a graph timed on its own: its options and hardware
            if plan is None:
                plan = estimate_or_graph.options.parallel.as_mapping()
            if hardware is None and graph.meta.get("hardware"):
                hardware = graph.meta["hardware"]
    else:
        graph = estimate_or_graph
    if hardware is None:
        hw = run.hardware if run is not None and run.hardware is not None else hwlib.default_hardware()
    elif isinstance(hardware, str):
        hw = hwlib.load(hardware)
    else:
        hw = hardware
    if plan is None:
        plan = (run.configured_options or run.options).parallel.as_mapping() if run is not None else "single"
    p = plan_from(plan, devices)
    check_plan(p, guidance=_guidance(graph))
    single = plan_device_graph(graph, run, Plan()).cost(hw)
    if p.degree == 1 and p.fsdp == 1:
        single.single_time_s = single.time_s
        return single
    return plan_device_graph(graph, run, p).cost(hw, single.time_s)


#: the plan dimensions a config's ``parallel`` group holds
PLAN_KEYS = ("degree", "ulysses", "ring", "cfg", "dp", "fsdp")


def plan_device_graph(graph: Graph, run, plan: Plan) -> "DeviceGraph":
    """The per-device graph of ``plan`` for the pipeline ``graph`` built for the resolved
    ``run`` (a :class:`wanir.scenario.Run`), with the runtime's defaults as they are on that
    plan (:meth:`wanir.scenario.Run.for_plan`: a one-device run offloads and keeps the fp32
    checkpoint, an FSDP plan gathers bf16 weights): the pipeline is lowered again from the
    plan's Build when the plan's defaults change its counts. Every path that costs a plan
    for an estimate (``multi_device_cost``) goes through here. ``run`` None or a Run of no
    configuration: the graph as it is."""
    moved = run.for_plan(plan) if run is not None else None
    if moved is None:
        return DeviceGraph(graph, plan, run)
    build, prun = moved
    built = graph.meta.get("count_key") or count_key(run.configured_options or run.options)
    split = graph.meta.get("cache_branches_split")     # a step cache built for the other CFG layout
    if count_key(build.options) != built or (split is not None and split != (plan.cfg > 1)):
        graph = build_pipeline(build)
    return DeviceGraph(graph, plan, prun)


def _guidance(graph: Graph):
    wl = graph.meta.get("workload") or {}
    return wl.get("guidance")


def is_multi_device(run) -> bool:
    """Whether the resolved :class:`wanir.scenario.Run`'s plan uses more than one device or
    shards weights."""
    return run is not None and run.plan is not None
