"""Hints that work: when an estimate does not fit in the GPU's memory (or fits tightly),
the changes that would help are re-estimated, and only those found to fit are suggested,
each with the peak it gives.

A driver, not a pass: it composes the user's overrides with one candidate change at a time
and estimates each (:func:`wanir.resolve.resolve`, :func:`wanir.estimate.evaluate`). Candidates, in order, each only
where it changes something:

- ``precision.dit_weights=bf16`` when the DiT weights are wider (the official code keeps the
  fp32 checkpoint on one GPU);
- ``memory.offload_model=true`` when stages are not offloaded;
- ``memory.t5_cpu=true`` when the text encoder is on the GPU;
- on one device, FSDP under Ulysses on the fewest devices that fit
  (``parallel=fsdp+ulysses parallel.degree=N``, N in 2, 4, 8); under a plan without FSDP,
  ``parallel.fsdp`` over all its devices;
- the smallest larger GPU of the library that holds the peak (``hardware=NAME``);
- when no single change fits, the pairs of the first three.

A candidate that raises an error (a plan the heads cannot take, a kernel the GPU lacks) is
skipped. At most :data:`MAX_TRIES` estimates are made.
"""
from __future__ import annotations

import dataclasses

from . import hardware as hwlib
from .errors import WanirError
from .passes.memory import TIGHT_FRACTION
from .resolve import resolve

#: at most this many re-estimates per hint
MAX_TRIES = 12
#: device counts tried for FSDP under Ulysses
PLAN_DEGREES = (2, 4, 8)


def _key(ov: str) -> str:
    return str(ov).lstrip("+").split("=", 1)[0]


def _peak(est) -> int | None:
    """Peak memory per device (bytes) of an estimate: per device under a plan."""
    if est.parallel is not None:
        return est.parallel["total"]["peak_memory_bytes"]
    return est.total.get("peak_memory_bytes")


def _capacity(est) -> int | None:
    return est.run.hardware.memory_bytes if est.run is not None and est.run.hardware is not None else None


def needs_hint(est) -> str | None:
    """'does not fit' or 'tight' when ``est`` carries such a warning, else None."""
    for w in est.warnings:
        if w.startswith("does not fit"):
            return "does not fit"
        if w.startswith("tight:"):
            return "tight"
    return None


def _comfortable(peak: int, cap: int) -> bool:
    return peak < (1 - TIGHT_FRACTION) * cap


def candidates(est, overrides) -> list[tuple[str, ...]]:
    """The single changes worth trying for ``est`` (tuples of overrides), in order."""
    run = est.run
    out: list[tuple[str, ...]] = []
    if (run.configured_options or run.options).precision.dit_weights in ("fp32", "tf32"):
        out.append(("precision.dit_weights=bf16",))
    mem = (run.plan_run or run).memory      # the residency as configured (the plan's, under one)
    if mem.offload == "none":
        out.append(("memory.offload_model=true",))
    if not mem.t5_cpu and not mem.offload_model:
        out.append(("memory.t5_cpu=true",))     # under offload T5 already leaves the GPU
    if est.parallel is None:
        if not any(_key(o).split(".")[0] == "parallel" for o in overrides):
            out += [("parallel=fsdp+ulysses", f"parallel.degree={n}") for n in PLAN_DEGREES]
    elif est.parallel["plan"]["fsdp"] <= 1:
        out.append((f"parallel.fsdp={est.parallel['plan']['degree']}",))
    return out


def _larger_gpus(est, config_dir) -> list[str]:
    peak, cap = _peak(est), _capacity(est)
    if peak is None or cap is None:
        return []
    gpus = [h for h in hwlib.list_hardware(config_dir) if h.kind == "gpu" and h.memory_bytes > cap
            and _comfortable(peak, h.memory_bytes)]
    return [h.name for h in sorted(gpus, key=lambda h: (h.memory_bytes, h.name))]


def find(est, overrides, config_dir, evaluate) -> list[tuple[tuple[str, ...], int, int]]:
    """The changes found to fit: [(overrides added, peak bytes per device, capacity bytes)],
    each resolved (:func:`wanir.resolve.resolve`) and re-estimated by ``evaluate``
    (:func:`wanir.estimate.evaluate`, handed in: that module calls this one). Empty when
    ``est`` fits comfortably or nothing tried fits."""

    if est.run is None or est.run.config is None or needs_hint(est) is None:
        return []
    overrides = [str(o) for o in overrides]
    tries = 0
    found = []
    seen_plan = False

    def attempt(change):
        nonlocal tries
        tries += 1
        keys = {_key(c) for c in change}
        groups = {k.split(".")[0] for k in keys if "." not in k}
        base = [o for o in overrides if _key(o) not in keys and _key(o).split(".")[0] not in groups]
        try:
            e2 = evaluate(resolve(base + list(change), config_dir))
        except WanirError:
            return None
        peak, cap = _peak(e2), _capacity(e2)
        if peak is None or cap is None or not _comfortable(peak, cap):
            return None
        return (tuple(change), peak, cap)

    singles = candidates(est, overrides)
    for change in singles:
        if tries >= MAX_TRIES:
            break
        if change[0].startswith("parallel=") and seen_plan:
            continue
        r = attempt(change)
        if r:
            found.append(r)
            seen_plan = seen_plan or change[0].startswith("parallel=")
    for name in _larger_gpus(est, config_dir)[:1]:
        r = attempt((f"hardware={name}",))
        if r:
            found.append(r)
    if not found:
        small = [c for c in singles if not c[0].startswith("parallel")][:3]
        for i in range(len(small)):
            for j in range(i + 1, len(small)):
                if tries >= MAX_TRIES:
                    break
                r = attempt(small[i] + small[j])
                if r:
                    found.append(r)
    return found


def hint_line(est, found) -> str | None:
    """One warning line listing the changes of :func:`find` with the peak each gives, or
    saying that none of the changes tried fits."""
    kind = needs_hint(est)
    if kind is None:
        return None
    gib = 2**30
    if not found:
        return (f"{kind}: no change wanir tried fits with a {100 * TIGHT_FRACTION:.0f} % margin "
                f"(DiT weights in bf16, offload, T5 on the CPU, FSDP under Ulysses on up to "
                f"{PLAN_DEGREES[-1]} devices, a larger GPU); try a smaller workload")
    parts = []
    for ch, peak, cap in found:
        per = " per device" if any(c.startswith("parallel") for c in ch) else ""
        parts.append(f"{' '.join(ch)} (peak {peak / gib:.1f} GiB{per} of {cap / gib:.0f} GiB)")
    return "fits with (re-estimated): " + "; or ".join(parts)


def attach(est, overrides, config_dir, evaluate):
    """``est`` with a hint line appended to its warnings when it does not fit or is tight
    (:func:`find` with ``evaluate``, :func:`hint_line`); ``est`` itself otherwise."""
    if needs_hint(est) is None:
        return est
    line = hint_line(est, find(est, overrides, config_dir, evaluate))
    if not line:
        return est
    return dataclasses.replace(est, warnings=tuple(est.warnings) + (line,))
