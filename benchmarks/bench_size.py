"""Time `wanir size` over every shipped GPU, 1-8 devices and every plan (the latency case),
in one process, every build counted again each run. Prints the configurations evaluated
and the seconds taken (best and worst of N runs).

    .venv/bin/python benchmarks/bench_size.py [--repeats N]
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from wanir.backends.sizing import size
    from wanir.estimate import clear_caches

    size([], latency_s=300.0, devices=(1,))        # warm up: Hydra composition, hardware library
    times = []
    for _ in range(args.repeats):
        clear_caches()                             # each run counts every build again, as a new process would
        t0 = time.perf_counter()
        res = size([], latency_s=300.0, devices=(1, 2, 4, 8))
        times.append(time.perf_counter() - t0)
    print(f"wanir size, every GPU x 1,2,4,8 devices x every plan: {res['evaluated']} configurations, "
          f"best {min(times):.2f} s, worst {max(times):.2f} s of {args.repeats}")


if __name__ == "__main__":
    main()
