"""Time a 1,000-point sweep and show where the time goes.

    python benchmarks/bench_sweep.py [--jobs N] [--points 1000]

The sweep is model=wan2.1-t2v-1.3b × 10 heights × 10 frame counts × 10 hardware (1,000
points; ``--points`` takes a prefix of the heights for a shorter run). ``--distinct`` sweeps
10 heights × 10 widths × 10 frame counts on one GPU instead: 1,000 different graphs, none
shared, the worst case for a sweep. Prints the wall time,
the time per point, and a breakdown measured on a sample of points: config composition,
pipeline build (frontends), and the passes (verify, flops, bytes, memory, roofline) plus the
summary.
"""
from __future__ import annotations

import argparse
import time

HEIGHTS = list(range(320, 1120, 80))           # 10 values, multiples of 16
FRAMES = list(range(17, 97, 8))                # 10 values of the form 4k+1
WIDTHS = list(range(512, 1792, 128))           # 10 values, multiples of 16
HARDWARE = ["h100-sxm", "h100-pcie", "h200", "a100-80gb", "a100-40gb", "b200", "l40s", "mi300x", "h20",
            "rtx-4090"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=None, help="processes (default: as `wanir sweep`, one per core)")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=20, help="points timed stage by stage")
    ap.add_argument("--distinct", action="store_true", help="sweep widths instead of hardware: no shared graphs")
    a = ap.parse_args()

    from wanir.backends.sweep import PointComposer, parse_sweep, run_sweep
    from wanir.estimate import annotate, summarize
    from wanir.frontends.pipeline import build_pipeline

    third = WIDTHS if a.distinct else HARDWARE
    n_h = max(1, min(len(HEIGHTS), a.points // (len(FRAMES) * len(third))))
    ovs = ["model=wan2.1-t2v-1.3b", "workload.height=" + ",".join(map(str, HEIGHTS[:n_h])),
           "workload.frames=" + ",".join(map(str, FRAMES)),
           ("workload.width=" if a.distinct else "hardware=") + ",".join(map(str, third))]
    t0 = time.perf_counter()
    res = run_sweep(ovs, progress=False, jobs=a.jobs)
    wall = time.perf_counter() - t0
    n = len(res.rows)
    print(f"sweep: {n} points in {wall:.1f} s wall ({wall / n * 1e3:.1f} ms per point, {res.timing['jobs']} process(es))")

    # breakdown on a sample
    comp = PointComposer()
    pts = list(parse_sweep(ovs).points())[:: max(1, n // a.sample)][: a.sample]
    comp.scenario(pts[0])         # the first Hydra composition of a group choice is paid once per sweep
    tc = tb = tp = 0.0
    for p in pts:
        s = time.perf_counter()
        sc = comp.scenario(p)     # wanir.resolve (resolve_parsed) of the point's overrides
        s1 = time.perf_counter()
        g = build_pipeline(sc.build)
        s2 = time.perf_counter()
        summarize(g, annotate(g, sc.run.options), sc.config, options=sc.run.options)
        s3 = time.perf_counter()
        tc, tb, tp = tc + s1 - s, tb + s2 - s1, tp + s3 - s2
    k = len(pts)
    tot = tc + tb + tp
    print(f"per point on {k} sampled points: compose {tc / k * 1e3:.1f} ms ({tc / tot:.0%}), "
          f"build {tb / k * 1e3:.1f} ms ({tb / tot:.0%}), passes+summary {tp / k * 1e3:.1f} ms ({tp / tot:.0%}); "
          f"nodes per graph {len(g)}")
    print(f"target: 1,000 points in < 30 s needs < 30 ms per point; "
          f"{'met' if wall / n * 1000 < 30 else 'not met'} ({wall / n * 1000:.1f} s for 1,000 points)")


if __name__ == "__main__":
    main()
