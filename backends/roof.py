"""roof: the roof of the configured hardware (peak FLOP/s and bandwidth) that the roofline
charts draw. Kept apart from backends/plots.py so that a sweep's workers, which record the
roof of every point, need no matplotlib."""
from __future__ import annotations


def hardware_roof(run) -> dict | None:
    """The roof of a resolved :class:`wanir.scenario.Run`'s hardware: ``{'name', 'peak_flops'
    (FLOP/s: the datasheet's tensor peak at the DiT compute dtype, else at bf16),
    'vector_flops' (FLOP/s, the datasheet's), 'bandwidth' (bytes/s), 'dtype'}``, or None for
    a run without hardware (a graph timed on its own) or a spec with no such peak."""
    hw = None if run is None else run.hardware
    if hw is None:
        return None
    dtype = (run.configured_options or run.options).precision.dit_compute
    ds = hw.datasheet_flops
    peak = ds.get(dtype) if dtype and dtype != "vector" else None
    if peak is None:
        peak = ds.get("bf16")
    if peak is None or hw.memory_bandwidth is None:
        return None
    return {"name": hw.name, "peak_flops": peak, "vector_flops": ds.get("vector") or None,
            "bandwidth": hw.memory_bandwidth, "dtype": dtype or "bf16"}
