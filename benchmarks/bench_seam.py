"""Time the figures of issue 18 (README "Speed"): medians of several runs, wall and CPU.

    .venv/bin/python benchmarks/bench_seam.py [--repeats N] [--skip-sweep] [--skip-size]

1. a distinct configuration in process: the default Wan2.1 T2V-14B 720p pipeline with a new
   height each time (resolve → count → time, nothing cached for it), in a warm process;
2. the same configuration again (the scenario and estimate caches);
3. ``wanir estimate --format json`` as a whole process (import, resolve, count, time, JSON),
   as the environment runs it and with Python's bytecode cached;
4. a 1,000-point sweep of distinct shapes (Wan2.1 T2V-1.3B, 10 heights × 10 widths × 10
   frame counts on one GPU: 1,000 builds, none shared) on two processes;
5. ``wanir size`` over every shipped GPU × 1, 2, 4, 8 devices × every plan (latency target),
   in one process and on the CLI's default processes; ``wanir size --latency 300`` and
   ``--throughput 100`` as whole processes (devices 1-32; throughput also tries batches).

The machine may be shared: the CPU seconds the process (or its children) used are printed
next to the wall time; both are medians.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HEIGHTS = list(range(320, 1120, 80))           # 10 values, multiples of 16
WIDTHS = list(range(512, 1792, 128))           # 10 values, multiples of 16
FRAMES = list(range(17, 97, 8))                # 10 values of the form 4k+1


def _cpu(who=resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _timed(fn):
    t0, c0 = time.perf_counter(), _cpu()
    out = fn()
    return time.perf_counter() - t0, _cpu() - c0, out


def _med(xs) -> float:
    return statistics.median(xs)


def in_process(repeats: int) -> None:
    import wanir
    from wanir.estimate import count, evaluate, time as time_run
    from wanir.resolve import resolve

    wanir.estimate([])                       # warm: imports, the composed groups, hardware, kernels
    distinct, same, parts = [], [], []
    for i in range(repeats):
        h = 16 * (30 + i)                    # 480, 496, ...: a height no earlier run used
        ov = [f"workload.height={h}"]
        w, c, _ = _timed(lambda: wanir.estimate(ov))
        distinct.append((w, c))
        w2, c2, _ = _timed(lambda: wanir.estimate(ov))
        same.append((w2, c2))
        # where a distinct configuration's time goes (a fresh height again)
        ov2 = [f"workload.height={h + 1600}"]
        t0 = time.perf_counter()
        sc = resolve(ov2)
        t1 = time.perf_counter()
        counted = count(sc.build)
        t2 = time.perf_counter()
        time_run(counted, sc.run)
        t3 = time.perf_counter()
        parts.append((t1 - t0, t2 - t1, t3 - t2))
    print(f"distinct configuration (14B 720p, new height): {_med([d[0] for d in distinct]) * 1e3:.1f} ms wall, "
          f"{_med([d[1] for d in distinct]) * 1e3:.1f} ms CPU (median of {repeats})")
    print(f"  resolve {_med([p[0] for p in parts]) * 1e3:.1f} ms, count {_med([p[1] for p in parts]) * 1e3:.1f} ms, "
          f"time {_med([p[2] for p in parts]) * 1e3:.1f} ms")
    print(f"same configuration again: {_med([s[0] for s in same]) * 1e6:.0f} us wall, "
          f"{_med([s[1] for s in same]) * 1e6:.0f} us CPU (median of {repeats})")
    evaluate  # noqa: B018 - the seam's third entry point, used by the drivers


def whole_process(repeats: int) -> None:
    """``wanir estimate --format json`` as a fresh process, twice: as this environment runs it,
    and with Python's bytecode cache (as after an install; written by a first run under a
    temporary PYTHONPYCACHEPREFIX). With PYTHONDONTWRITEBYTECODE set and no __pycache__ in the
    source tree, the first figure includes compiling every wanir module each run."""
    exe = os.path.join(os.path.dirname(sys.executable), "wanir")
    with tempfile.TemporaryDirectory() as cache:
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = cache
        subprocess.run([exe, "estimate", "--format", "json"], check=True, stdout=subprocess.DEVNULL, env=cached)
        for label, env in ((f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}", None),
                           ("bytecode cached", cached)):
            walls, cpus = [], []
            for _ in range(repeats):
                c0 = _cpu(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run([exe, "estimate", "--format", "json"], check=True, stdout=subprocess.DEVNULL, env=env)
                walls.append(time.perf_counter() - t0)
                cpus.append(_cpu(resource.RUSAGE_CHILDREN) - c0)
            print(f"wanir estimate --format json (whole process, {label}): {_med(walls):.2f} s wall, "
                  f"{_med(cpus):.2f} s CPU (median of {repeats})")


def sweep(points: int, jobs: int) -> None:
    from wanir.backends.sweep import run_sweep

    n_h = max(1, min(len(HEIGHTS), points // (len(FRAMES) * len(WIDTHS))))
    ovs = ["model=wan2.1-t2v-1.3b", "workload.height=" + ",".join(map(str, HEIGHTS[:n_h])),
           "workload.width=" + ",".join(map(str, WIDTHS)), "workload.frames=" + ",".join(map(str, FRAMES))]
    c0 = _cpu(resource.RUSAGE_CHILDREN) + _cpu()
    t0 = time.perf_counter()
    res = run_sweep(ovs, progress=False, jobs=jobs)
    wall = time.perf_counter() - t0
    cpu = _cpu(resource.RUSAGE_CHILDREN) + _cpu() - c0
    print(f"sweep of {len(res.rows)} distinct shapes on {res.timing['jobs']} process(es): {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU ({wall / len(res.rows) * 1e3:.1f} ms wall, {cpu / len(res.rows) * 1e3:.1f} ms CPU "
          f"per point)")


def size(repeats: int) -> None:
    from wanir.backends.sizing import size as size_fn
    from wanir.estimate import clear_caches

    size_fn([], latency_s=300.0, devices=(1,))          # warm: hardware library
    for jobs, label in ((1, "one process"), (None, "the CLI's default processes")):
        runs = []
        for _ in range(repeats):
            clear_caches()                                # every distinct build counted again
            c0 = _cpu(resource.RUSAGE_CHILDREN) + _cpu()
            t0 = time.perf_counter()
            res = size_fn([], latency_s=300.0, devices=(1, 2, 4, 8), jobs=jobs)
            runs.append((time.perf_counter() - t0, _cpu(resource.RUSAGE_CHILDREN) + _cpu() - c0))
        print(f"wanir size, every GPU x 1,2,4,8 devices x every plan ({res['evaluated']} configurations), {label}: "
              f"{_med([r[0] for r in runs]):.2f} s wall, {_med([r[1] for r in runs]):.2f} s CPU "
              f"(median of {repeats})")
    # the commands as a user types them: devices 1-32 by default; a throughput target also tries batches
    for args in (["--latency", "300"], ["--throughput", "100"]):
        walls = []
        for _ in range(max(1, repeats // 2)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "wanir", "size", *args], check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
        print(f"wanir size {' '.join(args)} (whole process, devices 1-32): {_med(walls):.2f} s wall "
              f"(median of {len(walls)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-size", action="store_true")
    a = ap.parse_args()
    in_process(a.repeats)
    whole_process(max(3, a.repeats // 2))
    if not a.skip_size:
        size(max(3, a.repeats // 2))
    if not a.skip_sweep:
        sweep(a.points, a.jobs)


if __name__ == "__main__":
    main()
