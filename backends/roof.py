"""roof: the roof of the configured hardware (peak FLOP/s and bandwidth) that the roofline
charts draw. Kept apart from backends/plots.py so that a sweep's workers, which record the
roof of every point, need no matplotlib."""
from __future__ import annotations

from wanir import options as _options


def hardware_roof(cfg) -> dict | None:
    """The roof of the configured hardware: ``{'name', 'peak_flops' (FLOP/s, tensor units at
    the DiT compute dtype), 'vector_flops' (FLOP/s), 'bandwidth' (bytes/s)}``, or None when
    the config selects no hardware."""
    hw = cfg.get("hardware") if hasattr(cfg, "get") else None
    if not hw:
        return None

    def num(x):
        if x is None:
            return None
        if hasattr(x, "get") and x.get("value") is not None:
            return float(x.get("value"))
        try:
            return float(x)
        except (TypeError, ValueError):
            return None

    dtype = _options.of(cfg).precision.dit_compute
    tt = hw.get("tensor_tflops") or {}
    peak = num(tt.get(dtype)) if dtype and dtype in tt else None
    if peak is None and "bf16" in tt:
        peak = num(tt.get("bf16"))
    mem = hw.get("memory") or {}
    bw = num(mem.get("bandwidth_tbps"))
    if peak is None or bw is None:
        return None
    vec = num(hw.get("vector_tflops"))
    return {"name": str(hw.get("name", "hardware")), "peak_flops": peak * 1e12,
            "vector_flops": vec * 1e12 if vec else None, "bandwidth": bw * 1e12, "dtype": dtype or "bf16"}
