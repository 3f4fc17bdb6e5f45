"""Time a 1,000-point sweep and show where the time goes.

    python benchmarks/bench_sweep.py [--jobs N] [--points 1000] [--distinct] [--sample 40]

The sweep is model=wan2.1-t2v-1.3b × 10 heights × 10 frame counts × 10 hardware (1,000
points; ``--points`` takes a prefix of the heights for a shorter run): 100 builds, each
counted once and timed on 10 GPUs. ``--distinct`` sweeps 10 heights × 10 widths × 10 frame
counts on one GPU instead: 1,000 different graphs, none shared, the worst case for a sweep
(issue 18's target: ≤ 5 s on two cores).

Prints the wall time and the CPU seconds of the sweep (this process and its workers: the
machine may be shared, CPU seconds are the steadier figure), then, on a sample of points
run one by one in this process as a sweep worker runs them, what one point costs: resolve,
count, time (the seam, ``wanir.estimate``), the sweep's own work (the CSV row; the roofline
chart's ops, taken once per hardware, are shown apart) and the collections of cyclic garbage the sweep runs every
``COLLECT_EVERY`` points (amortised).
"""
from __future__ import annotations

import argparse
import gc
import resource
import time

HEIGHTS = list(range(320, 1120, 80))           # 10 values, multiples of 16
FRAMES = list(range(17, 97, 8))                # 10 values of the form 4k+1
WIDTHS = list(range(512, 1792, 128))           # 10 values, multiples of 16
HARDWARE = ["h100-sxm", "h100-pcie", "h200", "a100-80gb", "a100-40gb", "b200", "l40s", "mi300x", "h20",
            "rtx-4090"]


def _cpu() -> float:
    """CPU seconds of this process and its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=None, help="processes (default: as `wanir sweep`, one per core)")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=40, help="points timed stage by stage")
    ap.add_argument("--distinct", action="store_true", help="sweep widths instead of hardware: no shared graphs")
    a = ap.parse_args()

    from wanir.backends.sweep import COLLECT_EVERY, PointComposer, heaviest_ops, parse_sweep, point_row, run_sweep
    from wanir.estimate import clear_caches, count
    from wanir.estimate import time as time_run

    third = WIDTHS if a.distinct else HARDWARE
    n_h = max(1, min(len(HEIGHTS), a.points // (len(FRAMES) * len(third))))
    ovs = ["model=wan2.1-t2v-1.3b", "workload.height=" + ",".join(map(str, HEIGHTS[:n_h])),
           "workload.frames=" + ",".join(map(str, FRAMES)),
           ("workload.width=" if a.distinct else "hardware=") + ",".join(map(str, third))]
    c0, t0 = _cpu(), time.perf_counter()
    res = run_sweep(ovs, progress=False, jobs=a.jobs)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    n = len(res.rows)
    print(f"sweep: {n} points in {wall:.1f} s wall, {cpu:.1f} s CPU ({wall / n * 1e3:.1f} ms wall, "
          f"{cpu / n * 1e3:.1f} ms CPU per point; {res.timing['jobs']} process(es))")

    # one point at a time, as a sweep worker runs it (collector off, a collection every COLLECT_EVERY points)
    clear_caches()
    comp = PointComposer()
    pts = list(parse_sweep(ovs).points())[:: max(1, n // a.sample)][: a.sample]
    comp.scenario(pts[-1])          # the group choices are composed once per sweep (and process)
    parts = {"resolve": 0.0, "count": 0.0, "time": 0.0, "row": 0.0}
    t_ops = 0.0
    was = gc.isenabled()
    gc.disable()
    try:
        for p in pts:
            s0 = time.perf_counter()
            sc = comp.scenario(p)
            s1 = time.perf_counter()
            counted = count(sc.build)
            s2 = time.perf_counter()
            est = time_run(counted, sc.run)
            s3 = time.perf_counter()
            point_row(p, est)
            s4 = time.perf_counter()
            heaviest_ops(est)      # a worker does this once per hardware (the roofline chart)
            t_ops += time.perf_counter() - s4
            for k, d in zip(parts, (s1 - s0, s2 - s1, s3 - s2, s4 - s3)):
                parts[k] += d
        s0 = time.perf_counter()
        gc.collect()
        parts["gc"] = (time.perf_counter() - s0) * len(pts) / COLLECT_EVERY   # one collection per COLLECT_EVERY
    finally:
        if was:
            gc.enable()
    k, tot = len(pts), sum(parts.values())
    print(f"per point on {k} sampled points (ms): " +
          ", ".join(f"{name} {v / k * 1e3:.1f} ({v / tot:.0%})" for name, v in parts.items()) +
          f"; nodes per graph {len(counted.graph)}; the roofline chart's heaviest ops, once per hardware: "
          f"{t_ops / k * 1e3:.1f} ms")
    print(f"target (issue 18): 1,000 distinct points in ≤ 5 s on two cores; this run: "
          f"{wall / n * 1000:.1f} s for 1,000 points on {res.timing['jobs']} process(es)")


if __name__ == "__main__":
    main()
