"""The one counting path: the hardware-independent passes (verify, flops, bytes, memory)
run over a graph with the run options. The single-device estimate
(:func:`wanir.estimate.annotate_counts`) and every multi-device plan's per-device graph
(:class:`wanir.backends.parallel.DeviceGraph`) are counted by :func:`run`."""
from __future__ import annotations

from wanir import options as _options

from . import bytes as bytes_pass
from . import flops, memory, verify


def run(graph, opts=None, check: bool | None = None, *, mem=None, resident_weight_bytes=None) -> dict:
    """Annotate ``graph`` with counts under ``opts`` (a RunOptions, a composed config or None
    for the defaults): verify (True always, False never, None when ``graph.unchecked``),
    flops, bytes (fusion ``roofline.fusion``, attention kernel) and memory (residency).
    ``mem``: the residency as the runtime resolves it (``wanir.runtime.MemoryOptions``:
    ``offload_model``, ``t5_cpu``, ``reserve_bytes``), default ``opts.memory``;
    ``resident_weight_bytes``: per-stage weights kept on the device under block streaming.
    Returns the summaries by name: "flops", "bytes_pass", "memory"."""
    opts = _options.of(opts)
    if check or (check is None and graph.unchecked):
        verify.run(graph)
    ro = opts.roofline
    m = mem if mem is not None else opts.memory
    nodes = list(graph)
    out = {"flops": flops.run(graph)}
    out["bytes_pass"] = bytes_pass.run(graph, fusion=ro.fusion, attention_kernel=ro.attention_kernel, nodes=nodes)
    out["memory"] = memory.run(graph, attention_kernel=ro.attention_kernel, offload_model=bool(m.offload_model),
                               t5_cpu=bool(m.t5_cpu), nodes=nodes, reserve_bytes=getattr(m, "reserve_bytes", 0),
                               resident_weight_bytes=resident_weight_bytes,
                               expandable_segments=bool(getattr(m, "expandable_segments", False)),
                               empty_cache=getattr(m, "empty_cache", "never"))
    return out
