"""Regenerate docs/hardware-sizing.md from real `wanir size` and `wanir estimate` output.

    python docs/gen_hardware_sizing.py          # rewrite docs/hardware-sizing.md
    python docs/gen_hardware_sizing.py --check  # exit 1 if the file differs from what it would write

Every table in the document is the output of the command printed above it, and every claim in
the text that names a hardware, a plan or a price is computed from that command's JSON output,
so the document cannot drift from what the code does.

The commands run in this process through the CLI's own entry point (``wanir.cli.main``), and a
`wanir size` whose table and JSON the document both show is sized once: the two outputs render
the same result, as they would from two runs of the same deterministic command. That keeps
``--check`` (tests/test_docs_generated.py) to one sizing per example.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

from wanir import cli
from wanir.backends import sizing

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "hardware-sizing.md"

LATENCY = ["--latency", "300", "--hardware", "h100-sxm,h200,a100-80gb,l40s", "--price", "h100-sxm=2.5",
           "--price", "h200=3.5", "--price", "a100-80gb=1.6", "--price", "l40s=1.0"]
THROUGHPUT = ["model=wan2.1-t2v-1.3b", "workload=480p", "--throughput", "200", "--hardware", "h100-sxm,l40s,rtx-4090",
              "--devices", "1,2,4,8,16,32", "--price", "h100-sxm=2.5", "--price", "l40s=1.0", "--price", "rtx-4090=0.4"]
PARTIAL = ["model=wan2.1-t2v-1.3b", "workload=480p", "--latency", "300", "--hardware", "h100-sxm,l40s",
           "--devices", "1,2", "--price", "l40s=1.0"]
KERNELS = ["--latency", "600", "--hardware", "b200,h100-sxm", "--devices", "1,2", "--price", "b200=5",
           "--price", "h100-sxm=2.5"]
MISS = ["--latency", "60", "--hardware", "h100-sxm,b200", "--devices", "1,2,4,8", "--price", "b200=5",
        "--price", "h100-sxm=2.5"]


_SIZED: dict = {}
_size = sizing.size


def _size_once(*args, **kw):
    """sizing.size, computed once per distinct arguments (the table and the JSON of one command)."""
    key = repr((args, sorted(kw.items())))
    if key not in _SIZED:
        _SIZED[key] = _size(*args, **kw)
    return _SIZED[key]


def run(*args: str) -> str:
    """The standard output of ``wanir ARGS`` (as a user types it, output not a terminal)."""
    os.environ["COLUMNS"] = "200"
    out, err = io.StringIO(), io.StringIO()
    sizing.size = _size_once
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        sizing.size = _size
    if code != 0:
        raise SystemExit(f"wanir {' '.join(args)} failed: {err.getvalue().strip()}")
    return out.getvalue()


def shown(args: list[str], top: int) -> tuple[str, list[dict]]:
    """The table of ``wanir size ARGS --top N`` (as a user types it) and the ranked rows
    that meet the target, from the same command's JSON."""
    table = run("size", *args, "--top", str(top))
    rows = json.loads(run("size", *args, "--format", "json"))["candidates"]
    return table.rstrip("\n"), [r for r in rows if r["fits"] and r["meets_target"]]


def block(args: list[str], out: str) -> str:
    return "```\n$ wanir " + " ".join(args) + "\n" + out.rstrip("\n") + "\n```"


def plan_overrides(row: dict) -> list[str]:
    """The overrides that select a size row's plan for `wanir estimate`."""
    lab = row["plan"]
    dims = {"ulysses": 1, "ring": 1, "cfg": 1, "dp": 1, "fsdp": 1}
    for part in lab.split("+"):
        name = part.rstrip("0123456789")
        if name in dims:
            dims[name] = int(part[len(name):] or 1)
    return [f"parallel.degree={row['devices']}"] + [f"parallel.{k}={v}" for k, v in dims.items()]


def fmt_min(s: float) -> str:
    sys.path.insert(0, str(ROOT))
    from wanir.backends.report import fmt_time   # the one formatter of durations
    return fmt_time(s)


def partial_block() -> str:
    """The partial-prices example as the document shows it (a small sizing: a fast check)."""
    part_table, _ = shown(PARTIAL, 20)
    return block(["size", *PARTIAL, "--top", "20"], part_table)


def generate() -> str:
    lat_args = ["size", *LATENCY, "--top", "10"]
    lat_table, lat_rows = shown(LATENCY, 10)
    best = lat_rows[0]
    thr_args = ["size", *THROUGHPUT, "--top", "8"]
    thr_table, thr_rows = shown(THROUGHPUT, 8)
    tbest = thr_rows[0]
    cheapest_other = next((r for r in thr_rows if r["hardware"] != tbest["hardware"]), None)
    part_args = ["size", *PARTIAL, "--top", "20"]
    part_table, part_rows = shown(PARTIAL, 20)
    flags = [r["priced"] for r in part_rows]
    if flags != sorted(flags, reverse=True) or all(flags) or not any(flags):
        raise SystemExit("partial prices: expected every priced row before every unpriced one, and both kinds")

    drill = ["estimate", f"hardware={best['hardware']}", *plan_overrides(best)]
    drill_out = run(*drill)
    drill_json = json.loads(run(*drill, "--format", "json"))
    t_drill = drill_json["parallel"]["total"]["time_s"] if drill_json["parallel"] else drill_json["total"]["time_s"]
    if abs(t_drill - best["time_s"]) > 1e-9 * best["time_s"]:
        raise SystemExit(f"estimate ({t_drill} s) and size ({best['time_s']} s) disagree on {best['plan']}")

    batched = [r for r in thr_rows[:8] if r["batch"] > 1]
    plain_args = ["size", *KERNELS, "--top", "4"]
    plain_table, plain_rows = shown(KERNELS, 4)
    allow = ["--allow", "cudnn,flash4"]
    kern_args = ["size", *KERNELS, *allow, "--top", "6"]
    kern_table, kern_rows = shown(KERNELS + allow, 6)
    b200_default = next(r for r in plain_rows + json.loads(run("size", *KERNELS, "--format", "json"))["candidates"]
                        if r["hardware"] == "b200" and r["plan"] == "single")
    b200_cudnn = next(r for r in json.loads(run("size", *KERNELS, *allow, "--format", "json"))["candidates"]
                      if r["hardware"] == "b200" and r["plan"] == "single" and r["optimizations"] == "cudnn")
    miss_args = ["size", *MISS, "--top", "5"]
    miss_table = run("size", *MISS, "--top", "5").rstrip("\n")
    return f"""# Sizing hardware with `wanir size`

<!-- generated by docs/gen_hardware_sizing.py from real command output; edit that script, not this file -->

`wanir size` answers: *which GPU, how many, and which parallel plan meet my target at the
lowest cost per video?* It builds the pipeline graph once for the workload, builds each
plan's per-device graph once (docs/parallel.md), times it on every hardware, drops what does
not fit in memory, and ranks the rest.

```
wanir size [OVERRIDES...] --latency SECONDS | --throughput VIDEOS_PER_HOUR
           [--price HW=USD_PER_GPU_HOUR ...] [--hardware a,b,c] [--devices 1,2,4,8,16,32]
           [--top N] [--all] [--format table|json]
```

- Workload and model: the usual overrides (`model=wan2.1-t2v-1.3b workload=480p
  workload.frames=121 ...`). A `parallel=...` plan among them is honoured: only that plan,
  on its device count, is evaluated; so is a `hardware=NAME` (or `hardware.KEY=VALUE`): only
  that device, as configured, is sized (`--hardware` lists several instead).
- Target: `--latency` (seconds per video) and/or `--throughput` (videos per hour).
- Prices: `--price NAME=USD` per GPU-hour, repeatable; a hardware YAML may carry
  `price_usd_per_gpu_hour: 2.5`. A name that is not a hardware is an error naming the valid
  ones. Hardware with a price is ranked by dollars per video; hardware without one is listed
  after it, labelled `no price`, ranked by GPU-hours per video.
- Plans tried per device count n: every split n = cfg × sp × dp (cfg = 2 only with
  guidance), the sequence-parallel group as pure Ulysses (when the heads allow), pure ring and
  Ulysses × ring with the largest Ulysses degree the heads allow (at most one node); each with
  and without FSDP over all n devices. Inter-node groups use `parallel.network` (set it like
  any override: `parallel.network.bandwidth_GBps=25`).
- Throughput targets also try several videos per batch on each replica (`workload.batch` =
  1, 2, 4) where memory allows; the `videos/batch` column shows it. Data-parallel replicas
  (`dp`) are part of every plan split.
- Columns: `stack` is the attention kernel the row runs (`sdpa→flash2` where PyTorch's SDPA
  picks another kernel) and the DiT's weight/compute dtypes; `latency` is the time from the
  start of a batch to its last video (one video unless `videos/batch` says more), in one unit
  for the whole column (in its header); `videos/h` counts every replica; `$/video` and
  `GPU-h/video` divide by the videos of a batch and the replicas; `peak mem/GPU` is the peak
  per device against its capacity. A line under the table names the stack assumed: the
  runtime (`runtime=`), the attention kernel per GPU — what the runtime runs on that GPU's
  family (docs/runtimes.md), re-resolved per GPU — and the precisions.
- Kernels: `--allow cudnn,flash4,...` also searches any attention kernel of
  `wanir/data/kernels.yaml`, on the GPUs whose family has it (others are listed as not run);
  such rows say so in the `optimizations` column. `--allow` combines with the other
  optimizations (docs/optimizations.md).
- Nothing meets the target: the table shows the nearest misses instead (closest to the target
  first) and what would meet it: the latency the fastest row reaches, more devices when the
  best row already uses the most tried, enough data-parallel copies for a throughput target,
  kernels and optimizations not yet searched.
- Ranking: candidates that meet the target first, by cost per video = GPUs × price × hours
  per batch ÷ (dp × videos per batch), then fewer GPUs. Rows that only add data-parallel
  copies of a layout already shown are folded (use `--all` to see every candidate, including
  those that miss the target). `--format json` lists every evaluated candidate (those that do
  not fit too, with `"fits": false`) unless `--top N` is given.

## 1. A latency target: one 720p video from the 14B in under 5 minutes

{block(lat_args, lat_table)}

At these prices the cheapest way to get under 5 minutes is {best['devices']} × {best['hardware']} with the
plan {best['plan']}: {fmt_min(best['time_s'])} per video at ${best['cost_per_video_usd']:.3f} per video. The
bottleneck column says where the time goes; communication is the `comm` share.

## 2. A throughput target: 200 videos/hour of 480p from the 1.3B

{block(thr_args, thr_table)}

With up to 32 devices allowed, the cheapest way to 200 videos/hour is {tbest['devices']} ×
{tbest['hardware']} ({tbest['plan']}, {tbest['batch']} video(s) per batch) at ${tbest['cost_per_video_usd']:.3f}
per video""" + (
        f"""; the best {cheapest_other['hardware']} layout costs ${cheapest_other['cost_per_video_usd']:.3f}"""
        if cheapest_other else "") + f""". For throughput, data parallelism is the natural answer: splitting one
video costs efficiency (replicated work, communication) that throughput does not need.""" + (
        f""" {len(batched)} of the rows shown run several videos per batch on each replica: a batch
takes about as much longer as it holds videos, so batching changes the cost per video only a
little (launch overheads and weight reads are shared) and needs more memory per GPU."""
        if batched else "") + f"""

## 3. Partial prices

Only the L40S has a price here: it is ranked by dollars per video, and the H100 rows follow,
labelled `no price` and ranked by GPU-hours per video.

{block(part_args, part_table)}

## 4. Drill into one row

The top row of the first example, per device and per stage:

{block(drill, drill_out)}

or from Python:

```python
import wanir
est = wanir.estimate({json.dumps(drill[1:])})
est.time_s, est.parallel["total"]["speedup"], est.parallel["communication"]
```

## 5. The stack decides the ranking: B200 and its attention kernel

The official Wan code runs FlashAttention-2 on Blackwell (FlashAttention-3 is Hopper-only and
the code has no cuDNN or FlashAttention-4 path); FA2's Ampere instructions leave a B200 at
about 16 % of its tensor peak in attention (docs/runtimes.md). A plain run says so in its stack
line:

{block(plain_args, plain_table)}

With `--allow cudnn,flash4` the search also tries code that calls those kernels, on the GPUs
that have them:

{block(kern_args, kern_table)}

One B200 takes {fmt_min(b200_default['time_s'])} with the runtime's kernel and
{fmt_min(b200_cudnn['time_s'])} with cuDNN; the rows name which one they assume.

## 6. Nothing meets the target

{block(miss_args, miss_table)}

## Caveats

The times are roofline estimates with the hardware library's efficiency tables (see
docs/parallel.md for what the communication model leaves out, notably ring attention's merge
step). Use the ranking to narrow down candidates, then measure the top few.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/hardware-sizing.md is out of date")
    args = ap.parse_args()
    text = generate()
    if args.check:
        if DOC.read_text() != text:
            print("docs/hardware-sizing.md is out of date: run python docs/gen_hardware_sizing.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
