"""Host stages as a runtime executes them: weight offload, block-level weight streaming and
the host CPU that runs the text encoder.

- ``memory.offload_model=true``, **official runtime** (``wan/text2video.py``): T5 is moved
  to the GPU, encodes both prompts and is moved back (unless ``memory.t5_cpu``); the CLIP
  image encoder likewise (image-to-video); the DiT is moved to the GPU at the first step and
  to the CPU after the last one (``self.model.cpu()``), before the VAE decode; the VAE stays
  on the GPU. Each move copies the stage's weights once, from pageable host memory.
- ``memory.offload_model=true``, **diffusers** (``enable_model_cpu_offload``): every stage's
  weights move onto the GPU when it runs and off when the next one runs.
- Copies run at the host link's pinned rate × its efficiency × the runtime's
  ``pageable_copy_efficiency`` (pageable memory is staged through a pinned bounce buffer by
  the driver; docs/runtimes.md gives the figure and its source).
- ``memory.offload_model=block``: the DiT's transformer blocks beyond the first
  ``memory.resident_params`` parameters (whole blocks, in order) stay in host memory and are
  copied to the GPU on every DiT call; two blocks' worth of buffers are on the GPU at a
  time. When the runtime prefetches (``runtime.prefetch_blocks``), the copy of block k+1
  overlaps block k's compute: per call only what the compute cannot hide is exposed;
  otherwise every copy is exposed.
- ``memory.t5_cpu=true``: the text encoder runs on the host entry ``memory.host``
  (``auto``: ``host-workstation`` for consumer cards, ``host-cpu`` — a two-socket server —
  otherwise).
"""
from __future__ import annotations

import functools

from wanir import hardware as hwlib
from wanir import kernels as klib
from wanir.errors import ConfigError
from wanir.graph import Graph
from wanir.passes.blocks import block_units, subtree_weights
from wanir.runtime import MemoryOptions, Runtime, host_name
from wanir.safeio import load_yaml

from .comm import shared_copy_rate

#: the host-cost constants of wanir/data/host.yaml and their allowed ranges
HOST_KEYS = {"module_call_us": (0.0, 1e5), "launch_us": (0.0, 1e5), "compiled_call_us": (0.0, 1e6),
             "graph_launch_us": (0.0, 1e6), "sync_us": (0.0, 1e6), "syncs_per_step": (0, 1000),
             "scheduler_ops_per_step": (0, 1e5), "tokenize_ms": (0.0, 1e5)}


@functools.lru_cache(maxsize=1)
def host_table() -> dict:
    """The host-cost table (wanir/data/host.yaml) as {key: {value, source, note}}, checked once."""
    path = klib.PATH.parent / "host.yaml"
    data = load_yaml(path.read_text(), str(path))   # libyaml's parser where PyYAML has it
    if not isinstance(data, dict) or set(data) != set(HOST_KEYS):
        raise ConfigError(f"{path}: must hold exactly the keys {', '.join(HOST_KEYS)}")
    for k, node in data.items():
        klib._check_leaf(f"{path}: {k}", node, HOST_KEYS[k])
    return data


def host_constants(hw) -> tuple[dict, dict]:
    """(values, sources) of the host costs for a run whose host issues work to ``hw``: the
    host table, with the device's measured ``kernels: issue:`` overrides (module_call_us,
    tokenize_ms) and its family's ``cpu_issue_us`` (the per-op dispatch cost of eager PyTorch,
    microseconds)."""
    vals = {k: v["value"] for k, v in host_table().items()}
    srcs = {k: v["source"] for k, v in host_table().items()}
    issue, isrc = klib.constants("issue", hw)
    for k in ("cpu_issue_us", "module_call_us", "tokenize_ms"):
        if k in issue:
            vals[k], srcs[k] = issue[k], isrc[k]
    return vals, srcs


def host_seconds(stage: str, launches: float, module_calls: float, per_invocation_steps: float,
                 consts: dict, fusion: str = "eager", cuda_graphs: bool = False) -> tuple[float, float]:
    """(host issue seconds, seconds that cannot overlap) of one invocation of ``stage``, as the
    run executes it: every eager op's dispatch (``cpu_issue_us``) and every module call
    (``module_call_us``); under ``roofline.fusion=compiled`` the compiled wrapper's launches
    (``launch_us`` each) and one guarded call instead; under CUDA graphs one graph launch. Plus
    host work outside the model: tokenizing one prompt per text-encoder invocation, and per DiT
    invocation its share (``per_invocation_steps`` denoising steps) of the scheduler's eager ops,
    which the graphs do not capture. The second value is the synchronizations per step: the GPU
    waits for the host after each."""
    c = consts
    if cuda_graphs:
        host = c["graph_launch_us"] + (c["compiled_call_us"] if fusion == "compiled" else 0.0)
    elif fusion == "compiled":
        host = launches * c["launch_us"] + c["compiled_call_us"]
    else:
        host = launches * c["cpu_issue_us"] + module_calls * c["module_call_us"]
    host *= 1e-6
    exposed = 0.0
    if stage == "text_encoder":
        host += c["tokenize_ms"] * 1e-3
    elif stage == "diffusion_core":
        host += per_invocation_steps * c["scheduler_ops_per_step"] * c["cpu_issue_us"] * 1e-6
        exposed = per_invocation_steps * c["syncs_per_step"] * c["sync_us"] * 1e-6
    return host, exposed

#: stages the official code moves in and out under --offload_model (the VAE stays on the GPU)
OFFICIAL_OFFLOADED = ("text_encoder", "image_encoder", "diffusion_core")


def host_for(mem: MemoryOptions, hw) -> str:
    """The hardware name of the host CPU for ``hw`` (see :func:`wanir.runtime.host_name`)."""
    return host_name(mem, getattr(hw, "name", None))


def load_host(mem: MemoryOptions, hw):
    """The host Hardware for ``hw`` under ``memory.host``; an unknown name is a ConfigError
    naming ``memory.host`` and the known entries."""
    name = host_for(mem, hw)
    try:
        return hwlib.load(name)
    except ConfigError as e:
        msg = str(e)
        if msg.startswith(f"hardware={name}:"):
            msg = msg[len(f"hardware={name}:"):].strip()
        raise ConfigError(f"memory.host={name}: {msg}") from None


def copy_rate(hw, rt: Runtime, ideal: bool = False) -> float:
    """Bytes/s of host↔device weight copies under runtime ``rt`` (pinned rate when ideal)."""
    if ideal:
        return hw.host_link_bandwidth
    return hw.host_link_bandwidth * hw.host_link_efficiency * rt.pageable_copy_efficiency


def block_stream_plan(graph: Graph, resident_params: int) -> dict:
    """How block-level streaming splits the DiT's weights: ``blocks`` (count),
    ``block_weight_bytes`` (one block), ``resident_blocks`` (whole blocks within
    ``resident_params`` parameters), ``streamed_bytes`` (copied per DiT call),
    ``gpu_weight_bytes`` (on the GPU at once: the non-block weights, the resident blocks
    and two block buffers). Ints."""
    stage = "diffusion_core"
    total = graph.stage_weight_bytes(stage) if stage in graph.stages else 0
    units = block_units(graph, stage)
    if not units:
        return {"blocks": 0, "block_weight_bytes": 0, "resident_blocks": 0, "streamed_bytes": 0,
                "gpu_weight_bytes": total}
    ws = subtree_weights(graph, units[0]).values()
    per_bytes = sum(w.type.nbytes for w in ws)
    per_params = sum(w.type.numel for w in ws)
    n = sum(u.weight_count for u in units)
    resident = min(n, resident_params // per_params) if per_params else n
    streamed = (n - resident) * per_bytes
    buffers = min(2, n - resident) * per_bytes
    return {"blocks": n, "block_weight_bytes": per_bytes, "resident_blocks": resident,
            "streamed_bytes": streamed, "gpu_weight_bytes": total - streamed + buffers}


def transfer_seconds(graph: Graph, memory: dict, hw, mem: MemoryOptions, rt: Runtime, host_stages=(),
                     ideal: bool = False, roofline: dict | None = None, ranks: int = 1) -> float:
    """Host↔device weight-copy seconds per generation that are not hidden behind compute,
    under ``mem.offload`` and the runtime's semantics (module docstring). ``memory`` is the
    memory pass's summary (its per-stage ``weight_bytes``); ``roofline`` the roofline's
    summary (its per-stage ``time_s``, for block-stream overlap). ``ranks``: devices of one
    host that copy at the same time (per-rank offload under a plan), which share the host's
    uplinks and DRAM on hardware with a ``host_topology`` (backends/comm.py)."""
    rate = copy_rate(hw, rt, ideal)
    if not ideal and ranks > 1:
        rate = shared_copy_rate(hw, ranks, rate)
    stages = memory["stages"]
    if mem.offload == "model":
        moved = [s for s in stages if s not in host_stages and
                 (s in OFFICIAL_OFFLOADED if rt.dit_lowering == "official" else True)]
        return sum(2 * stages[s]["weight_bytes"] for s in moved) / rate
    if mem.offload == "block" and "diffusion_core" in graph.stages:
        plan = block_stream_plan(graph, mem.resident_params)
        per_call = plan["streamed_bytes"] / rate
        calls = graph.stages["diffusion_core"].repeat
        if rt.prefetch_blocks and roofline is not None:
            compute = roofline["time_s"].get("diffusion_core", 0.0)
            per_call = max(0.0, per_call - compute) + plan["block_weight_bytes"] / rate   # the first block waits
        return per_call * calls
    return 0.0
