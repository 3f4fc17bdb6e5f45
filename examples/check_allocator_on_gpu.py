"""Check wanir's caching-allocator model (passes/allocator.py) against PyTorch's real one.

Replays allocation programs on a CUDA device with ``torch.empty(n, dtype=torch.uint8)`` /
``del`` / ``torch.cuda.empty_cache()`` and prints, per program, the peaks the model predicts
next to ``torch.cuda.max_memory_allocated()`` and ``max_memory_reserved()``. The programs: a
few synthetic ones (small-pool packing, the large-pool split rule, growing requests) and the
allocations of one wanir generation (weights + one invocation of each stage, the DiT loop
replayed as the model does). Needs PyTorch with CUDA; run it with and without
``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` (pass ``--expandable`` for the latter).

    python examples/check_allocator_on_gpu.py [--expandable] [OVERRIDES...]
    python examples/check_allocator_on_gpu.py model=wan2.1-t2v-1.3b workload=480p workload.frames=17
"""
from __future__ import annotations

import argparse
import sys

MiB = 1 << 20


def synthetic() -> dict:
    """Named programs whose peaks the documented rules fix (tests/test_allocator.py)."""
    out = {"small pool: 4097 x 100 B": [("alloc", i, 100) for i in range(4097)]}
    out["large split: 5 + 5 + 9.5 MiB"] = [("alloc", "x", 5 * MiB), ("alloc", "y", 5 * MiB),
                                          ("alloc", "z", 9 * MiB + 512 * 1024)]
    grow = []
    for i, s in enumerate((22, 42, 62, 82)):
        grow += [("alloc", i, s * MiB), ("free", i)]
    out["growing 22..82 MiB"] = grow
    return out


def pipeline(overrides) -> list:
    """The allocator program of one generation as wanir models it (one device)."""
    from wanir.estimate import annotate_counts
    from wanir.frontends.pipeline import build_pipeline
    from wanir.passes import allocator as al
    from wanir.passes.memory import _resident_tensors
    from wanir.resolve import resolve

    build = resolve(list(overrides)).build
    mem = build.memory
    rec = annotate_counts(build_pipeline(build), None, options=build.options, mem=mem)["memory"]
    rp = rec["allocator"]
    stages = {s: {"events": rp["events"][s], "invocations": rp["invocations"][s],
                  "weights": _resident_tensors(rp["weights"][s], r.get("offload_weight_bytes", r["weight_bytes"])
                                               if mem.offload_model else r["weight_bytes"]),
                  "on_gpu": r["on_gpu"]} for s, r in rec["stages"].items()}
    return list(al.pipeline_program(stages, rp["order"], mem.offload_model, rp["empty_cache"]))


def run_on_gpu(program) -> dict:
    """Replay ``program`` with real CUDA tensors; returns the measured peaks (bytes)."""
    import torch  # late import: this script's one optional dependency

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base_a, base_r = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    live = {}
    for op in program:
        if op[0] == "alloc":
            live[op[1]] = torch.empty(op[2], dtype=torch.uint8, device="cuda")
        elif op[0] == "free":
            del live[op[1]]
        else:
            torch.cuda.empty_cache()
    out = {"peak_allocated_bytes": torch.cuda.max_memory_allocated() - base_a,
           "peak_reserved_bytes": torch.cuda.max_memory_reserved() - base_r}
    live.clear()
    torch.cuda.empty_cache()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expandable", action="store_true", help="model expandable segments (set the env var too)")
    ap.add_argument("overrides", nargs="*", default=["model=wan2.1-t2v-1.3b", "workload=480p", "workload.frames=17",
                                                     "workload.steps=2"])
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("needs PyTorch", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    from wanir.passes import allocator as al

    progs = synthetic()
    progs["wanir: " + " ".join(args.overrides)] = pipeline(args.overrides)
    print(f"{'program':60s} {'alloc model':>12s} {'alloc GPU':>12s} {'reserved model':>15s} {'reserved GPU':>13s}")
    for name, prog in progs.items():
        m = al.replay(prog, args.expandable)
        g = run_on_gpu(prog)
        print(f"{name[:60]:60s} {m['peak_allocated_bytes'] / MiB:12.1f} {g['peak_allocated_bytes'] / MiB:12.1f} "
              f"{m['peak_reserved_bytes'] / MiB:15.1f} {g['peak_reserved_bytes'] / MiB:13.1f}   (MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
