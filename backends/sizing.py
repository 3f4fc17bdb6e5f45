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

from dataclasses import dataclass

from wanir.errors import ConfigError

from .parallel import DeviceGraph, Plan, PlanError, check_plan

#: device counts tried by default
DEFAULT_DEVICES = (1, 2, 4, 8, 16, 32)


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
    optimizations: str = ""      # '+'-joined names under `wanir size --optimizations` ('' = none)

    @property
    def devices(self) -> int:
        return self.plan.degree

    @property
    def fits(self) -> bool:
        return self.peak_memory_bytes <= self.capacity_bytes

    def to_dict(self) -> dict:
        """Plain data for JSON output."""
        return {"hardware": self.hardware, "devices": self.devices, "plan": self.plan.label,
                "time_s": self.time_s, "peak_memory_bytes": self.peak_memory_bytes,
                "capacity_bytes": self.capacity_bytes, "videos_per_hour": self.videos_per_hour,
                "gpu_hours_per_video": self.gpu_hours_per_video, "cost_per_video_usd": self.cost_per_video,
                "bottleneck": self.bottleneck, "bottleneck_share": self.bottleneck_share,
                "comm_share": self.comm_share, "speedup": self.speedup, "meets_target": self.meets,
                "optimizations": self.optimizations}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidate_plans(n: int, heads: int, guidance: bool, gpus_per_node: int = 8,
                    fsdp_options=(False, True), base: dict | None = None) -> list[Plan]:
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


def parse_prices(items) -> dict[str, float]:
    """``["h100-sxm=2.5", ...]`` → {name: USD per GPU-hour}. Raises ConfigError on a bad item."""
    prices = {}
    for it in items or ():
        name, sep, val = str(it).partition("=")
        try:
            v = float(val)
        except ValueError:
            v = -1.0
        if not sep or not name or v < 0:
            raise ConfigError(f"--price {it!r}: write HARDWARE=USD_PER_GPU_HOUR, e.g. h100-sxm=2.5")
        prices[name] = v
    return prices


def _yaml_price(name: str, config_dir=None) -> float | None:
    from omegaconf import OmegaConf

    from wanir import hardware as hwlib
    f = hwlib.yaml_files(config_dir).get(name)
    if f is None:
        return None
    v = OmegaConf.load(f).get("price_usd_per_gpu_hour")
    if isinstance(v, dict) or hasattr(v, "get"):
        v = v.get("value")
    return None if v is None else float(v)


def size(overrides=(), config_dir=None, *, latency_s: float | None = None, throughput: float | None = None,
         hardware=None, devices=DEFAULT_DEVICES, prices: dict | None = None, fsdp_options=(False, True)) -> dict:
    """Enumerate hardware × device count × plan for the workload of ``overrides``; return
    {"candidates": [Candidate, ...] ranked (those meeting the target first, then by cost per
    video), "dropped": count that do not fit in memory, "evaluated": count, "target": ...,
    "priced": whether every ranked hardware had a price}. ``latency_s``: seconds per video;
    ``throughput``: videos per hour; ``hardware``: names (default: every GPU in the
    library)."""
    from wanir import hardware as hwlib
    from wanir.config import load_config
    from wanir.estimate import estimate_config

    if latency_s is not None and latency_s <= 0:
        raise ConfigError(f"--latency must be > 0 seconds, got {latency_s}")
    if throughput is not None and throughput <= 0:
        raise ConfigError(f"--throughput must be > 0 videos/hour, got {throughput}")
    cfg = load_config(list(overrides), config_dir)
    est = estimate_config(cfg)
    graph = est.graph
    heads = int(cfg.dit.num_attention_heads)
    guidance = bool(est.graph.meta.get("workload", {}).get("guidance", True))
    if "diffusion_core" in graph.stages and graph.stages["diffusion_core"].repeat % 2:
        guidance = False        # e.g. a Wan2.2 expert at guidance scale 1: the branches do not split evenly
    names = list(hardware) if hardware else [h.name for h in hwlib.list_hardware(config_dir) if h.kind == "gpu"]
    hws = [hwlib.load(n, config_dir) for n in names]
    prices = dict(prices or {})
    for h in hws:
        if h.name not in prices:
            p = _yaml_price(h.name, config_dir)
            if p is not None:
                prices[h.name] = p
    from omegaconf import OmegaConf
    base = OmegaConf.to_container(cfg.parallel, resolve=True) if cfg.get("parallel") is not None else {}
    graphs: dict[tuple, DeviceGraph] = {}
    singles: dict[str, float] = {}
    single = None
    cands, dropped, evaluated = [], 0, 0
    for n in devices:
        for plan in candidate_plans(n, heads, guidance, int(base.get("gpus_per_node", 8)), fsdp_options, base):
            key = (plan.ulysses, plan.ring, plan.cfg, plan.fsdp)
            dg = graphs.get(key)
            if dg is None:
                shape_plan = Plan(plan.name, plan.ulysses, plan.ring, plan.cfg, 1, plan.fsdp, plan.overlap,
                                  plan.gpus_per_node, plan.network, plan.intra_node, plan.vae)
                dg = graphs[key] = DeviceGraph(graph, shape_plan, cfg)
            for hw in hws:
                if hw.name not in singles:
                    single = single or DeviceGraph(graph, Plan(), cfg)
                    singles[hw.name] = single.cost(hw).time_s
                dg.plan = plan          # same per-device graph; dp and the name only change the totals
                c = dg.cost(hw, singles[hw.name])
                evaluated += 1
                if not c.fits:
                    dropped += 1
                    continue
                b, share = c.bottleneck()
                gh = plan.degree * c.time_s / 3600.0 / plan.dp
                price = prices.get(hw.name)
                vph = c.videos_per_hour
                meets = (latency_s is None or c.time_s <= latency_s) and (throughput is None or vph >= throughput)
                cands.append(Candidate(hw.name, plan, c.time_s, c.peak_memory_bytes, hw.memory_bytes, vph, gh,
                                       None if price is None else gh * price, b, share,
                                       c.comm_s / c.time_s if c.time_s else 0.0, c.speedup, meets))
    priced = all(c.cost_per_video is not None for c in cands)
    cands.sort(key=lambda c: (not c.meets, round(c.cost_per_video if priced and c.cost_per_video is not None
                                                 else c.gpu_hours_per_video, 9), c.devices, c.time_s))
    return {"candidates": cands, "dropped": dropped, "evaluated": evaluated, "priced": priced,
            "target": {"latency_s": latency_s, "videos_per_hour": throughput},
            "model": graph.meta.get("model"), "workload": graph.meta.get("workload", {}), "prices": prices}


def render(result: dict, fmt: str = "table", top: int = 20, show_all: bool = False) -> str | None:
    """Render a :func:`size` result: 'json' (string) or 'table' (prints a rich table of the
    ``top`` ranked candidates that meet the target, or of all with ``show_all``)."""
    from .report import fmt_bytes, fmt_time

    cands = result["candidates"]
    shown = cands if show_all else [c for c in cands if c.meets]
    if not show_all:   # the same replica layout with more data-parallel copies adds devices, not value
        seen, kept = set(), []
        for c in shown:
            k = (c.hardware, c.plan.ulysses, c.plan.ring, c.plan.cfg, c.plan.fsdp > 1, c.optimizations)
            if k not in seen:
                seen.add(k)
                kept.append(c)
        shown = kept
    if fmt == "json":
        import json
        return json.dumps({**{k: v for k, v in result.items() if k != "candidates"},
                           "candidates": [c.to_dict() for c in shown[:top]]}, indent=2, default=str)
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; allowed: table, json")
    from rich.console import Console
    from rich.table import Table
    t = result["target"]
    target = " and ".join(x for x in (
        f"≤ {fmt_time(t['latency_s'])} per video" if t["latency_s"] else "",
        f"≥ {t['videos_per_hour']:g} videos/hour" if t["videos_per_hour"] else "") if x) or "no target"
    wl = result["workload"]
    title = (f"{result['model']} {wl.get('width')}x{wl.get('height')}x{wl.get('frames')}, {wl.get('steps')} steps: "
             f"{target}")
    table = Table(title=title)
    cost_head = "$/video" if result["priced"] else "GPU-h/video"
    opt = "allowed" in result       # `wanir size --optimizations`: one more column
    for h in ("#", "hardware", "GPUs", "plan", *(("optimizations",) if opt else ()), "time/video", "videos/h",
              cost_head, "mem/GPU", "comm", "bottleneck"):
        table.add_column(h, justify="left" if h in ("hardware", "plan", "optimizations", "bottleneck") else "right")
    for i, c in enumerate(shown[:top], 1):
        cost = f"{c.cost_per_video:.3f}" if result["priced"] else f"{c.gpu_hours_per_video:.3f}"
        table.add_row(str(i), c.hardware, str(c.devices), c.plan.label, *((c.optimizations or "none",) if opt else ()),
                      fmt_time(c.time_s), f"{c.videos_per_hour:.1f}",
                      cost, f"{fmt_bytes(c.peak_memory_bytes)} / {c.capacity_bytes / 2**30:.0f} GiB",
                      f"{100 * c.comm_share:.0f} %", f"{c.bottleneck} {100 * c.bottleneck_share:.0f} %")
    con = Console()
    con.print(table)
    meets = sum(1 for c in cands if c.meets)
    con.print(f"{result['evaluated']} configurations evaluated, {result['dropped']} dropped (do not fit in memory), "
              f"{len(cands)} fit, {meets} meet the target" + ("" if show_all else f"; showing the best {min(top, len(shown))}"))
    if not result["priced"]:
        con.print("no price for some hardware: ranked by GPU-hours per video (give --price NAME=USD_PER_GPU_HOUR)")
    if result.get("skipped"):
        con.print(f"not run: {'; '.join(result['skipped'])}")
    return None
