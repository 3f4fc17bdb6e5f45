"""Hardware sizing (``wanir size``): which hardware, how many devices and which parallel
plan meet a latency or throughput target at the lowest cost per video.

For a workload (the usual config overrides) the pipeline graph is built once; every plan's
per-device graph is built and annotated once (:class:`wanir.backends.parallel.DeviceGraph`,
cached by its shape: ulysses, ring, cfg, fsdp — data parallelism only multiplies
throughput) and re-timed per hardware. Candidates that do not fit in the device's memory
are dropped; the rest are ranked by cost per video:

    cost per video = devices × price per GPU-hour × hours per video on the replica
                   = devices × price × time_s / 3600 / dp

Prices come from ``--price NAME=USD`` or a hardware YAML's ``price_usd_per_gpu_hour`` key;
hardware with no price is ranked by GPU-hours per video instead (and says so).
"""
from __future__ import annotations

import difflib
import functools
import math
import os
from dataclasses import dataclass, field

from wanir import hardware as hwlib
from wanir import jsonout, kernels
from wanir.dictconfig import resolve as resolve_interpolations
from wanir.errors import ConfigError
from wanir.estimate import count, paused_gc
from wanir.limits import MAX_JOBS, cap_jobs, check_int_arg, usable_cpus
from wanir.resolve import resolve
from wanir.runtime import run_attention_kernel
from wanir.safeio import load_yaml, read_text_file

from .error_range import RISKS, cost_range
from .parallel import DeviceGraph, Plan, PlanError, check_plan
from .display import rich_table
from .report import column_time_unit, fmt_bytes, fmt_time, fmt_time_range_in
from .stack import PREC_NAMES as _PREC_NAMES
from .stack import STACK_PRECISIONS, stack_of
from .stack import kernel_label as _kernel_label
from .workers import fork_pool, quiet_worker

#: device counts tried by default
DEFAULT_DEVICES = (1, 2, 4, 8, 16, 32)
#: plans of one batch below which a sizing with ``jobs=None`` stays in one process (a worker
#: costs a fork and its own counts of the scenarios it meets)
PARALLEL_MIN_PLANS = 16

#: the plan function of the sizing running in this process, read by its forked workers
_JOB: dict = {}


def _run_job(item):
    return _JOB["fn"](item)


class _Workers:
    """Maps a sizing's plan function over (plan, batch) items in order: in this process, or
    over ``jobs`` forked worker processes (None: one per usable core, up to 8, for batches of
    at least :data:`PARALLEL_MIN_PLANS` plans). A fork starts from this process's state, so
    each worker counts the scenarios it meets itself (the same numbers); only the items and
    the candidates cross. Forking needs a process without other threads: the CLI passes
    ``jobs``, the library's callers (the web service) keep the default of one process."""

    def __init__(self, fn, jobs: int | None):
        self.fn, self.jobs, self.pool, self.n = fn, jobs, None, 1

    def __enter__(self) -> "_Workers":
        return self

    def map(self, items: list):
        """The function's results for ``items``, in their order (an iterator)."""
        jobs = self.jobs
        if jobs is None:
            jobs = min(8, usable_cpus()) if len(items) >= PARALLEL_MIN_PLANS else 1
        jobs = min(cap_jobs(jobs), max(1, len(items)))
        if jobs <= 1 and self.pool is None:
            return map(self.fn, items)
        if self.pool is None:
            _JOB["fn"] = self.fn
            self.pool = fork_pool(jobs, quiet_worker)
            self.n = jobs
        return self.pool.imap(_run_job, items, chunksize=max(1, len(items) // (self.n * 4)))

    def __exit__(self, kind, value, tb) -> None:
        if self.pool is not None:
            if kind is not None:    # Ctrl-C or an error: stop the workers now
                self.pool.terminate()
            else:
                self.pool.close()
            self.pool.join()
            self.pool = None
            _JOB.clear()


@dataclass
class Candidate:
    """One feasible or infeasible configuration: hardware, plan, per-video seconds, peak
    memory per device (bytes), videos/hour, cost per video (USD, or None without a price),
    GPU-hours per video, bottleneck and whether it meets the target."""

    hardware: str
    plan: Plan
    time_s: float
    peak_memory_bytes: int
    capacity_bytes: int
    videos_per_hour: float
    gpu_hours_per_video: float
    cost_per_video: float | None
    bottleneck: str
    bottleneck_share: float
    comm_share: float
    speedup: float | None
    meets: bool
    batch: int = 1
    optimizations: str = ""      # '+'-joined names under `wanir size --optimizations` ('' = none)
    stack: dict = field(default_factory=dict)   # runtime, attention kernel, precisions (stack_of)
    time_range_s: tuple | None = None   # [low, high] seconds (backends/error_range.py)
    risk_time_s: float | None = None    # the time ranked and checked against the target (--risk)

    @property
    def devices(self) -> int:
        return self.plan.degree

    @property
    def fits(self) -> bool:
        return self.peak_memory_bytes <= self.capacity_bytes

    @property
    def priced(self) -> bool:
        return self.cost_per_video is not None

    def to_dict(self) -> dict:
        """Plain data for JSON output. ``time_s`` is the latency of one batch of ``batch``
        videos (every video of it is done then)."""
        return {"hardware": self.hardware, "devices": self.devices, "plan": self.plan.label,
                "batch": self.batch, "fits": self.fits, "priced": self.priced, "optimizations": self.optimizations,
                "time_s": self.time_s, "peak_memory_bytes": self.peak_memory_bytes,
                "capacity_bytes": self.capacity_bytes, "videos_per_hour": self.videos_per_hour,
                "gpu_hours_per_video": self.gpu_hours_per_video, "cost_per_video_usd": self.cost_per_video,
                "bottleneck": self.bottleneck, "bottleneck_share": self.bottleneck_share,
                "comm_share": self.comm_share, "speedup": self.speedup, "meets_target": self.meets,
                "runtime": self.stack.get("runtime"), "attention_kernel": self.stack.get("attention_kernel"),
                "precision": dict(self.stack.get("precision", {})),
                "optimizations": self.optimizations,
                "time_range_s": None if self.time_range_s is None else list(self.time_range_s)}




def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidate_plans(n: int, heads: int, guidance: bool, gpus_per_node: int = 8,
                    fsdp_options=(False, True), base: dict | None = None, data_parallel: bool = True) -> list[Plan]:
    """The plans tried on ``n`` devices: for each split into CFG (1 or 2 when guidance is on)
    × sequence parallel sp × data-parallel replicas, the sequence-parallel group as pure
    Ulysses (when heads allow), pure ring, and Ulysses × ring with the largest Ulysses
    degree the heads allow; each with and without FSDP over all devices. Plans the model
    cannot take are left out."""
    base = dict(base or {})
    out: dict[tuple, Plan] = {}
    for cfg in ((1, 2) if guidance else (1,)):
        if n % cfg:
            continue
        for sp in _divisors(n // cfg):
            dp = n // (cfg * sp)
            if dp > 1 and not data_parallel:    # wanir plan: dp copies are replicas
                continue
            splits = {(1, sp), (sp, 1) if heads % sp == 0 else (1, sp)}
            u = max(d for d in _divisors(sp) if heads % d == 0 and d <= gpus_per_node)
            splits.add((u, sp // u))
            for uly, ring in splits:
                for fs in fsdp_options:
                    f = n if fs and n > 1 else 1
                    key = (uly, ring, cfg, dp, f)
                    if key in out:
                        continue
                    name = "+".join([c for c, on in (("fsdp", f > 1), ("cfg", cfg > 1), ("ulysses", uly > 1),
                                                    ("ring", ring > 1), ("dp", dp > 1)) if on]) or "single"
                    p = Plan(name, uly, ring, cfg, dp, f, base.get("overlap", True),
                             base.get("gpus_per_node", gpus_per_node), tuple(sorted(base.get("network", {}).items())),
                             tuple(sorted(base.get("intra_node", {}).items())), base.get("vae") or "single")
                    try:
                        check_plan(p, heads=heads, guidance=guidance)
                    except PlanError:
                        continue
                    out[key] = p
    return list(out.values())


def parse_prices(items, known=None) -> dict[str, float]:
    """``["h100-sxm=2.5", ...]`` → {name: USD per GPU-hour}. Raises ConfigError on a bad
    item, and — with ``known`` (the valid hardware names) — on a name not among them."""

    prices = {}
    for it in items or ():
        name, sep, val = str(it).partition("=")
        try:
            v = float(val)
        except ValueError:
            v = -1.0
        if not sep or not name or not math.isfinite(v) or v < 0:
            raise ConfigError(f"--price {str(it)[:80]!r}: write HARDWARE=USD_PER_GPU_HOUR (a finite number >= 0), "
                              f"e.g. h100-sxm=2.5")
        if known is not None and name not in known:
            raise _unknown_price(name, known)
        prices[name] = v
    return prices


def _unknown_price(name: str, known) -> ConfigError:

    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"--price {name[:60]}=...: no hardware named {name[:60]!r}{hint} "
                       f"(hardware: {', '.join(sorted(known))})")


def parse_devices(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` → (1, 2, 4); ConfigError naming --devices on anything else."""
    out = []
    for x in str(text).split(","):
        x = x.strip()
        if not x.isdigit() or not 1 <= int(x) <= 4096:
            raise ConfigError(f"--devices {str(text)[:60]!r}: write comma-separated device counts in [1, 4096], "
                              f"e.g. 1,2,4,8")
        out.append(int(x))
    return tuple(out)


def _yaml_price(name: str, config_dir=None) -> float | None:
    """``price_usd_per_gpu_hour`` of hardware ``name``'s YAML file (None without one)."""
    f = hwlib.yaml_files(config_dir).get(name)
    if f is None:
        return None
    st = os.stat(f)
    return _price_of(str(f), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=256)
def _price_of(path: str, mtime_ns: int, size: int) -> float | None:
    text = read_text_file(path, "hardware YAML")
    if "${" in text:   # an interpolation: resolved as the hardware file itself is
        v = resolve_interpolations(text).get("price_usd_per_gpu_hour")
    else:
        v = (load_yaml(text, path) or {}).get("price_usd_per_gpu_hour")
    if isinstance(v, dict):
        v = v.get("value")
    return None if v is None else float(v)


def stack_line(result: dict) -> str | None:
    """One line naming the stack a :func:`size` result assumed: the runtime, the attention
    kernel per GPU (and whether the runtime chose it), the precisions (DiT weights per plan
    kind where they differ), and the other kernels the sized GPUs support (``--allow``)."""
    cands = result.get("candidates", []) + result.get("unfit", [])
    stacks = [c.stack for c in cands if c.stack]
    if not stacks:
        return None
    runtimes = sorted({s["runtime"] for s in stacks})
    by_kernel: dict[str, list[str]] = {}
    for c in cands:
        if c.stack and not c.optimizations:
            hws = by_kernel.setdefault(_kernel_label(c.stack), [])
            if c.hardware not in hws:
                hws.append(c.hardware)
    kern = "; ".join(f"{k} on {', '.join(h)}" for k, h in by_kernel.items()) or "-"
    default = all(s.get("kernel_default") for s in stacks if s)
    prec = []
    for key in STACK_PRECISIONS:
        vals = {}
        for c in cands:
            v = c.stack.get("precision", {}).get(key) if c.stack else None
            if v is not None:
                vals.setdefault(v, set()).add("FSDP" if c.plan.fsdp > 1 else "no FSDP")
        if len(vals) == 1:
            prec.append(f"{_PREC_NAMES[key]} {next(iter(vals))}")
        elif vals:
            prec.append(f"{_PREC_NAMES[key]} " + " / ".join(f"{v} ({', '.join(sorted(w))})"
                                                               for v, w in sorted(vals.items())))
    line = (f"stack: runtime {', '.join(runtimes)}; attention kernel {kern}"
            f"{' (the runtime default per GPU family, docs/runtimes.md)' if default else ''}; " + ", ".join(prec))
    if "allowed" in result:
        line += "; a row whose optimizations name a kernel runs that kernel instead"
    other = result.get("other_kernels") or []
    if other and "allowed" not in result:
        line += f"; other kernels these GPUs support: --allow {','.join(other)}"
    return line


#: videos per GPU batch tried for a throughput target (memory permitting)
BATCHES = (1, 2, 4)


def _gc_paused(fn):
    """``fn`` run with Python's cyclic collector paused (:func:`wanir.estimate.paused_gc`): the
    search builds dozens of per-device graphs whose many small objects would trigger
    collections that free nothing."""
    @functools.wraps(fn)
    def wrapper(*a, **k):
        with paused_gc():
            return fn(*a, **k)
    return wrapper


@_gc_paused
def size(overrides=(), config_dir=None, *, latency_s: float | None = None, throughput: float | None = None,
         hardware=None, devices=None, prices: dict | None = None, fsdp_options=(False, True),
         batches=None, progress=None, data_parallel: bool = True, risk: str = "point",
         jobs: int | None = 1) -> dict:
    """Enumerate hardware × device count × plan (× videos per batch, for a throughput
    target) for the workload of ``overrides``; return {"candidates": [Candidate, ...]
    ranked, "unfit": those that do not fit in memory, "dropped": their count, "evaluated":
    count, "target": ..., "priced": whether every fitting candidate has a price}.

    ``latency_s``: seconds per video; ``throughput``: videos per hour; ``hardware``: names
    (default: every GPU in the library, or the configured one when the overrides select or
    change it: ``hardware=NAME``, ``hardware.KEY=VALUE``); ``devices``: device counts (default
    DEFAULT_DEVICES); ``batches``: videos per GPU batch (``workload.batch``; default
    BATCHES with a throughput target, else the workload's); ``data_parallel=False`` leaves
    out plans with data-parallel copies (``wanir plan`` counts replicas instead). A ``parallel=`` plan in the
    overrides is honoured: only that plan (on its device count) is evaluated.

    Ranking: candidates that meet the target first; among them priced hardware by cost
    per video, then unpriced hardware by GPU-hours per video; then fewer devices, less time.
    Every evaluated candidate is returned (in "candidates" or "unfit"). ``progress``: called
    with the fraction of the search done (a float in [0, 1]) before each plan. ``risk``:
    "point" ranks by the estimate, "upper" by the upper end of its time range (the target,
    cost and GPU-hours per video use that time; backends/error_range.py). ``jobs``: processes
    to spread the plans over (1: this one; None: one per usable core, up to 8, when a batch
    has enough plans; forked, so only from a process without other threads); the result is
    the same."""
    if latency_s is not None and not latency_s > 0:
        raise ConfigError(f"--latency must be > 0 seconds, got {latency_s}")
    if throughput is not None and not throughput > 0:
        raise ConfigError(f"--throughput must be > 0 videos/hour, got {throughput}")
    if risk not in RISKS:
        raise ConfigError(f"--risk {str(risk)[:20]!r}: allowed {', '.join(RISKS)}")
    if jobs is not None:
        check_int_arg("jobs", jobs, 1, MAX_JOBS)
    overrides = list(overrides)
    sc0 = resolve(overrides, config_dir)
    opts = sc0.run.options
    fixed = sc0.run.plan
    if fixed is not None:
        if devices is not None and fixed.degree not in devices:
            raise ConfigError(f"the plan {fixed.label} (parallel=...) uses {fixed.degree} devices, but --devices is "
                              f"{','.join(map(str, devices))}; drop --devices or the parallel override")
        devices = (fixed.degree,)
    devices = tuple(devices) if devices is not None else DEFAULT_DEVICES
    heads = int(sc0.build.spec.dit.num_attention_heads)
    known = [h.name for h in hwlib.list_hardware(config_dir)]
    hw_overrides = [o for o in overrides if str(o).lstrip("+").split("=")[0].split(".")[0] == "hardware"]
    if hw_overrides and hardware:
        raise ConfigError(f"the hardware is given twice ({hw_overrides[0][:60]} and --hardware); give one of them")
    if hw_overrides:      # the configured device, with any hardware.* value overrides applied
        hws = [sc0.run.hardware]
    else:
        names = list(hardware) if hardware else [h.name for h in hwlib.list_hardware(config_dir) if h.kind == "gpu"]
        hws = [hwlib.load(n, config_dir) for n in names]
    prices = dict(prices or {})
    unknown = sorted(set(prices) - set(known))
    if unknown:
        raise _unknown_price(unknown[0], known)
    for h in hws:
        if h.name not in prices:
            p = _yaml_price(h.name, config_dir)
            if p is not None:
                prices[h.name] = p
    base_batch = int(sc0.build.workload.batch)
    if batches is None:
        batches = sorted({base_batch, *(b * base_batch for b in BATCHES)}) if throughput is not None else [base_batch]
    base = opts.parallel.as_mapping()
    cands, dropped, evaluated = [], 0, 0
    steps, step = len(batches) * len(devices), 0
    stacks: dict = {}
    graph0 = None
    dims = ("degree", "ulysses", "ring", "cfg", "dp", "fsdp")
    user = [o for o in overrides if str(o).lstrip("+").split("=")[0] not in {f"parallel.{d}" for d in dims}]
    by_class: dict = {}

    def for_plan(plan: Plan, b: int):
        """The resolved scenario of ``plan`` at batch ``b`` (the runtime's defaults follow the
        plan: weight precision under FSDP, offload on one device) and its counted build
        (:func:`wanir.estimate.count`: one per distinct build, shared by the plans and
        hardware that time it)."""
        # what the runtime's defaults read from a plan (wanir.runtime.runtime_defaults): one
        # device or several, FSDP or not; and whether the CFG branches split (passes/optimize.py:
        # a step cache keeps the other branch's residual only when one device runs both); plans
        # of one class share a resolved scenario
        cls = (b, plan.degree > 1, plan.fsdp > 1, plan.cfg > 1)
        hit = by_class.get(cls)
        if hit is None:
            ov = [*user, *([f"workload.batch={b}"] if b != base_batch else []),
                  *(f"parallel.{d}={v}" for d, v in zip(dims, (plan.degree, plan.ulysses, plan.ring, plan.cfg,
                                                               plan.dp, plan.fsdp)))]
            sc = sc0 if fixed is not None and b == base_batch and plan is fixed else resolve(ov, config_dir)
            # the configuration as given on that plan: its own build and run options (a plan's
            # scenario also carries the one-device ones its estimate reports)
            build, run = (sc.run.plan_build, sc.run.plan_run) if sc.run.plan_build is not None else (sc.build, sc.run)
            hit = by_class[cls] = (sc, count(build), run)
        return hit

    def device_graph(plan: Plan, b: int) -> DeviceGraph:
        """The per-device graph of ``plan``'s shape at batch ``b`` (cached on the counted build)."""
        sc, counted, r = for_plan(plan, b)
        graphs = counted.device_graph_cache(r)
        key = (plan.ulysses, plan.ring, plan.cfg, plan.fsdp, plan.vae)
        with counted.lock:
            dg = graphs.get(key)
            if dg is None:
                shape_plan = Plan(plan.name, plan.ulysses, plan.ring, plan.cfg, 1, plan.fsdp, plan.overlap,
                                  plan.gpus_per_node, plan.network, plan.intra_node, plan.vae)
                dg = graphs[key] = DeviceGraph(counted.graph, shape_plan, r)
        return dg

    singles: dict[tuple, float] = {}     # (batch, hardware) -> the one-device time

    def plan_candidates(item) -> list:
        """The candidates of one plan at one batch, one per hardware (in ``hws`` order)."""
        plan, b = item
        dg = device_graph(plan, b)
        c_plan = for_plan(plan, b)[0].run
        out = []
        for hw in hws:
            if (b, hw.name) not in singles:
                singles[(b, hw.name)] = device_graph(Plan(), b).cost(hw).time_s
            c = dg.cost(hw, singles[(b, hw.name)], plan=plan)   # dp and the name only change the totals
            bsh, share = c.bottleneck()
            rng = cost_range(c)["time_range_s"]
            t_risk = rng[1] if risk == "upper" else c.time_s
            gh = plan.degree * t_risk / 3600.0 / plan.dp / b
            price = prices.get(hw.name)
            vph = c.videos_per_hour * b * c.time_s / t_risk
            meets = c.fits and (latency_s is None or t_risk <= latency_s) and \
                (throughput is None or vph >= throughput)
            out.append(Candidate(hw.name, plan, c.time_s, c.peak_memory_bytes, hw.memory_bytes, vph, gh,
                                 None if price is None else gh * price, bsh, share,
                                 c.comm_s / c.time_s if c.time_s else 0.0, c.speedup, meets, b,
                                 stack=_stack_cached(stacks, c_plan, hw),
                                 time_range_s=tuple(rng), risk_time_s=t_risk))
        return out

    with _Workers(plan_candidates, jobs) as work:
        for b in batches:
            graph = for_plan(Plan(), b)[1].graph
            graph0 = graph0 or graph
            guidance = bool(graph.meta.get("workload", {}).get("guidance", True))
            if "diffusion_core" in graph.stages and graph.stages["diffusion_core"].repeat % 2:
                guidance = False    # e.g. a Wan2.2 expert at guidance scale 1: the branches do not split evenly
            items, at = [], []          # (plan, batch) in search order; where each device count starts
            for n in devices:
                plans = [fixed] if fixed is not None else \
                    candidate_plans(n, heads, guidance, int(base.get("gpus_per_node", 8)), fsdp_options, base,
                                    data_parallel)
                for plan in plans:
                    check_plan(plan, heads=heads, guidance=guidance)
                at.append((len(items), len(plans)))
                items += [(plan, b) for plan in plans]
            fits_any = False
            done = 0
            for got in work.map(items):
                if progress is not None:    # the fraction done before the next plan, as the search runs
                    k = next(i for i, (s0, m) in enumerate(at) if done < s0 + m)
                    s0, m = at[k]
                    progress((step + k + (done - s0) / m) / steps)
                done += 1
                for c in got:
                    evaluated += 1
                    if not c.fits:
                        dropped += 1
                    fits_any = fits_any or c.fits
                    cands.append(c)
            step += len(devices)
            if not fits_any:      # a larger batch only needs more memory
                break
    graph = graph0
    return {**rank(cands),
            "dropped": dropped, "evaluated": evaluated,
            "target": {"latency_s": latency_s, "videos_per_hour": throughput},
            "model": graph.meta.get("model"), "workload": graph.meta.get("workload", {}), "prices": prices,
            "batches": list(batches), "plan": None if fixed is None else fixed.label, "risk": risk,
            "other_kernels": other_kernels(sc0.run, hws), "devices_tried": list(devices)}


def _stack_cached(cache: dict, run, hw) -> dict:
    key = (id(run), hw.name)
    if key not in cache:
        cache[key] = stack_of(run, hw)
    return cache[key]


def other_kernels(run, hws) -> list[str]:
    """The attention kernels some GPU of ``hws`` supports (wanir/data/kernels.yaml) besides
    the one the resolved ``run`` (a :class:`wanir.scenario.Run`) runs there, ``math`` and
    ``sdpa``: what ``--allow`` can add."""
    out: list[str] = []
    for hw in hws:
        used = run_attention_kernel(run, hw)
        for k in kernels.available_attention(hw.family):
            if k not in ("math", "sdpa", used) and k not in out:
                out.append(k)
    return out


def rank(cands) -> dict:
    """The ranking of :func:`size` (also used by ``wanir size --optimizations``): candidates
    that fit first, those that meet the target first among them; then priced hardware by
    cost per video, unpriced hardware after it by GPU-hours per video; then fewer devices,
    less time. Returns {"candidates": the fitting ones ranked, "unfit": the others ranked the
    same way, "priced": whether every fitting candidate has a price}."""
    cands = sorted(cands, key=lambda c: (not c.fits, not c.meets, not c.priced,
                                         round(c.cost_per_video if c.priced else c.gpu_hours_per_video, 9),
                                         c.devices, c.time_s if c.risk_time_s is None else c.risk_time_s))
    fitting = [c for c in cands if c.fits]
    return {"candidates": fitting, "unfit": [c for c in cands if not c.fits],
            "priced": all(c.priced for c in fitting)}


#: rows of the table when --top is not given
TABLE_TOP = 20


def _fold(cands) -> list:
    """Drop rows that only add data-parallel copies of a replica layout already listed."""
    seen, kept = set(), []
    for c in cands:
        k = (c.hardware, c.plan.ulysses, c.plan.ring, c.plan.cfg, c.plan.fsdp > 1, c.batch, c.optimizations)
        if k not in seen:
            seen.add(k)
            kept.append(c)
    return kept


def shortfall(c: Candidate, target: dict) -> float:
    """How far ``c`` is from the target: the larger of (latency / target latency) and
    (target videos per hour / videos per hour); <= 1 meets it. Dimensionless."""
    out = 0.0
    if target.get("latency_s"):
        out = max(out, c.time_s / target["latency_s"])
    if target.get("videos_per_hour"):
        out = max(out, target["videos_per_hour"] / c.videos_per_hour if c.videos_per_hour else float("inf"))
    return out


def nearest_misses(result: dict, n: int = 5) -> list[Candidate]:
    """The ``n`` fitting candidates closest to the target (smallest :func:`shortfall`; data-
    parallel copies of one layout folded), for when none meets it."""
    t = result["target"]
    if not result["candidates"]:      # nothing fits in memory: the rows closest to fitting
        return _fold(sorted(result.get("unfit", []), key=lambda c: (c.peak_memory_bytes / c.capacity_bytes,
                                                                    c.devices)))[:n]
    return _fold(sorted(result["candidates"], key=lambda c: (shortfall(c, t), c.devices)))[:n]


def miss_advice(result: dict, misses: list[Candidate]) -> list[str]:
    """What would make the nearest misses meet the target, each derived from the model:
    enough data-parallel replicas for a throughput target (throughput scales with them: no
    communication between replicas), the latency they do reach, more devices when the best
    row already uses the most devices tried, and kernels or optimizations not yet searched."""
    if not misses:
        return []
    t, best, out = result["target"], misses[0], []
    if not best.fits:
        gib = 2**30
        return [f"nothing fits in memory: row 1 needs {best.peak_memory_bytes / gib:.1f} GiB per device of "
                f"{best.capacity_bytes / gib:.0f} GiB; `wanir estimate` with its plan names the changes that fit "
                f"(re-estimated), or try more devices (FSDP shards the weights) or a larger GPU"]
    if t.get("videos_per_hour") and not t.get("latency_s"):
        k = -(-t["videos_per_hour"] // best.videos_per_hour) if best.videos_per_hour else None
        if k:
            k = int(k)
            out.append(f"{k} data-parallel copies of row 1 ({k * best.devices} × {best.hardware}) give "
                       f"{k * best.videos_per_hour:.1f} videos/hour: add --devices {k * best.devices}")
    if t.get("latency_s"):
        out.append(f"the fastest fitting row takes {fmt_time(min(c.time_s for c in result['candidates']))}: "
                   f"a --latency of that much is met")
        most = max(result.get("devices_tried") or [best.devices])
        if best.devices >= most:
            out.append(f"row 1 already uses the most devices tried ({most}): try --devices {most * 2}")
    other = result.get("other_kernels") or []
    if "allowed" not in result:
        out.append(f"search faster kernels and optimizations: --allow {','.join([*other[:3], 'fp8', 'teacache'])}")
    return out


def render(result: dict, fmt: str = "table", top: int | None = None, show_all: bool = False) -> str | None:
    """Render a :func:`size` result: 'json' (a string: every evaluated candidate — fitting
    ones ranked, then those that do not fit — or the first ``top`` fitting ones) or 'table'
    (prints a rich table of the ``top`` (default TABLE_TOP) ranked candidates that meet the
    target, or of all that fit with ``show_all``; priced hardware first, unpriced after it,
    labelled)."""


    if top is not None and top < 1:
        raise ConfigError(f"--top must be an integer >= 1, got {top}")
    cands = result["candidates"]
    if fmt == "json":
        rows = cands[:top] if top is not None else cands + result.get("unfit", [])
        return jsonout.dumps({**{k: v for k, v in result.items() if k not in ("candidates", "unfit")},
                              "candidates": [c.to_dict() for c in rows]}, indent=2, default=str)
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; allowed: table, json")
    top = TABLE_TOP if top is None else top
    shown = cands if show_all else _fold([c for c in cands if c.meets])
    misses = [] if (shown or show_all) else nearest_misses(result, min(top, 5))
    rows = (shown or misses)[:top]
    Console, Table = rich_table()
    t = result["target"]
    target = " and ".join(x for x in (
        f"≤ {fmt_time(t['latency_s'])} per video" if t["latency_s"] else "",
        f"≥ {t['videos_per_hour']:g} videos/hour" if t["videos_per_hour"] else "") if x) or "no target"
    wl = result["workload"]
    runtimes = sorted({c.stack.get("runtime") for c in rows if c.stack.get("runtime")})
    title = (f"{result['model']} {wl.get('width')}x{wl.get('height')}x{wl.get('frames')}, {wl.get('steps')} steps"
             f"{', runtime ' + ', '.join(runtimes) if runtimes else ''}: {target}"
             + ("" if shown or show_all else " — nothing meets it; the nearest misses" if cands else
                " — nothing fits in memory; the closest"))
    table = Table(title=title)
    batched = any(c.batch > 1 for c in rows)
    opt = "allowed" in result       # `wanir size --optimizations`: one more column
    unit = column_time_unit([c.time_s for c in rows])
    heads = ["#", "hardware", "GPUs", "plan"] + (["optimizations"] if opt else []) + \
        (["videos/batch"] if batched else []) + \
        ["stack", f"latency ({unit[0]})", "videos/h", "$/video", "GPU-h/video", "peak mem/GPU", "comm",
         "bottleneck"]
    for h in heads:
        table.add_column(h, justify="left" if h in ("hardware", "plan", "optimizations", "bottleneck", "stack")
                         else "right")
    for i, c in enumerate(rows, 1):
        cost = f"{c.cost_per_video:.3f}" if c.priced else "no price"
        st = c.stack
        stack = "-" if not st else \
            f"{_kernel_label(st)}, {st['precision'].get('dit_weights')}/{st['precision'].get('dit_compute')}"
        row = [str(i), c.hardware, str(c.devices), c.plan.label] + ([c.optimizations or "none"] if opt else []) + \
            ([str(c.batch)] if batched else []) + \
            [stack, fmt_time_range_in(c.time_s, c.time_range_s, unit), f"{c.videos_per_hour:.1f}", cost,
             f"{c.gpu_hours_per_video:.3f}",
             f"{fmt_bytes(c.peak_memory_bytes)} / {c.capacity_bytes / 2**30:.0f} GiB",
             f"{100 * c.comm_share:.0f} %", f"{c.bottleneck} {100 * c.bottleneck_share:.0f} %"]
        table.add_row(*row)
    con = Console()
    con.print(table)
    meets = sum(1 for c in cands if c.meets)
    tail = "" if show_all else (f"; showing the best {len(rows)}" if shown else
                                f"; showing the {len(rows)} nearest misses" if rows and cands else
                                f"; showing the {len(rows)} closest to fitting" if rows else "")
    con.print(f"{result['evaluated']} configurations evaluated, {result['dropped']} dropped (do not fit in memory), "
              f"{len(cands)} fit, {meets} meet the target" + tail, highlight=False)
    con.print("columns: stack = attention kernel (configured→run where they differ), DiT weights/compute dtype; "
              "latency = from the start of a batch to its last video, its range (low–high) in brackets "
              "(docs/time-model.md)" + (" (videos/batch videos per replica, "
                                                                         "workload.batch)" if batched else ""),
              highlight=False)
    line = stack_line(result)
    if line:
        con.print(line, highlight=False)
    if misses:
        for a in miss_advice(result, misses):
            con.print(f"to meet the target: {a}", highlight=False)
    if not result["priced"]:
        unpriced = sorted({c.hardware for c in cands if not c.priced})
        con.print(f"no price for {', '.join(unpriced)}: ranked after the priced hardware, by GPU-hours per video "
                  f"(give --price NAME=USD_PER_GPU_HOUR)", highlight=False)
    if result.get("skipped"):
        con.print(f"not run: {'; '.join(result['skipped'])}", highlight=False)
    return None
