"""Capacity planning (``wanir plan``): for every candidate deployment, the fewest replicas
that keep the SLO at the peak hour, what they cost per video and per month, and the
cheapest deployment that meets the SLO.

Service times come from wanir's own estimates, per request class × deployment:

- with ``deployments:`` in the traffic file, one :func:`wanir.estimate` per class ×
  deployment (``hardware=``, the plan's ``parallel.*`` keys and ``workload.batch``),
  cached within the run by (class overrides, deployment);
- otherwise every GPU × device count × plan that :func:`wanir.backends.sizing.size`
  enumerates, one sizing run per class (its per-plan device graphs are built once and
  re-timed per hardware). Plans with data-parallel copies inside a replica are left out:
  ``dp`` copies of a plan are ``dp`` replicas of it, which the replica count already covers.

Method: analytic first (:mod:`.queueing`: M/G/c at the peak-hour rate, and at every
hour's rate for the replicas each hour needs, which sets the monthly cost); then the
discrete-event simulation (:mod:`.simulate`) checks the candidates nearest the frontier
(the cheapest that meet the SLO and the cost-vs-p95 Pareto front) under the daily
profile with hourly scaling and cold starts, adding replicas where it finds the SLO
missed. Batches of more than one video per replica are planned by simulation only.

Cost: ``replicas × devices × USD per GPU-hour`` in each hour of the day, summed over the
day and scaled to a month of 730 hours; per video: the day's cost over the day's videos.
"""
from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import re
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType

import wanir
from wanir import hardware as hwlib
from wanir.backends import sizing
from wanir.backends.host_stages import copy_rate
from wanir.backends.parallel import PlanError, make_plan, resolve_plan
from wanir.errors import ConfigError
from wanir.limits import cap_jobs, usable_cpus
from wanir.runtime import bare_run

from . import queueing as Q
from .simulate import replicate
from .traffic import Traffic

#: hours in a month (365 × 24 / 12)
HOURS_PER_MONTH = 730.0
#: device counts tried when neither the traffic file nor --devices gives them
DEFAULT_DEVICES = (1, 2, 4, 8)
#: candidates checked by simulation at most
SIMULATED = 6
#: extra replicas the simulation may add to a candidate
SIM_BUMPS = 3


@dataclass(frozen=True)
class Service:
    """Service seconds of one deployment: ``seconds[k][b]`` the latency of a batch of b
    videos of class k on one replica (b = 1 and the batch sizes tried), ``servers`` the
    independent copies per replica (a plan's dp), whether every class fits in memory,
    the plan (a :class:`wanir.backends.parallel.Plan`), cold-start seconds, and ``ranges``:
    per class the [low, high] seconds of one video that the time model's error range gives
    (JSON ``time_range_s`` of the estimate; None where an estimate has none)."""

    hardware: str
    devices: int
    plan: object
    batch: int
    seconds: tuple
    fits: bool
    cold_start_s: float | None     # None: not derived yet (see with_cold_start)
    price: float | None
    ranges: tuple | None = None    # per class: (low, high) seconds of one video (batch 1), the estimate's time_range_s

    @property
    def label(self) -> str:
        """The plan label (``cfg2+ulysses2``)."""
        return self.plan.label

    @property
    def servers(self) -> int:
        """Independent copies per replica (the plan's data-parallel degree)."""
        return self.plan.dp


@dataclass(frozen=True)
class Row:
    """One planned deployment (seconds, USD). ``hourly_replicas``: replicas in each hour of
    the day; ``method``: 'analytic' or 'simulation' (the latency figures' source);
    ``simulated``: the simulation's figures and 95 % intervals (None when not simulated)."""

    hardware: str
    devices: int
    plan: str
    replicas: int | None
    batch: int
    utilization: float | None
    service_mean_s: float
    service_cv: float
    wait_s: dict
    latency_s: dict
    meets_slo: bool
    usd_per_video: float | None
    usd_per_month: float | None
    gpu_hours_per_month: float | None
    throughput_per_hour: float | None
    hourly_replicas: tuple
    cold_start_s: float | None       # None for a row that was not simulated and had none given
    method: str = "analytic"
    simulated: dict | None = None
    notes: tuple = ()
    class_service_s: tuple = ()      # seconds of one video of each class (batch 1)
    servers: int | None = None       # independent servers at the peak (replicas × the plan's dp)
    p_wait: float | None = None      # analytic probability of waiting at the peak
    analytic: dict | None = None     # the closed form's wait_s and latency_s of a simulated row
    per_class: tuple = ()            # per class: name, service_s, latency_s {mean, p50, p95, p99} (closed form)
    service_range_s: tuple | None = None   # (low, high) of service_mean_s: service_range(shares, class ranges)

    def __post_init__(self):    # results are immutable: nested records become read-only views
        for name in ("wait_s", "latency_s", "simulated", "analytic", "per_class", "hourly_replicas",
                     "class_service_s", "notes", "service_range_s"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @property
    def gpus(self) -> int | None:
        """GPUs at the peak hour (replicas × devices)."""
        return None if self.replicas is None else self.replicas * self.devices

    def to_dict(self) -> dict:
        """The row of ``wanir plan --format json`` (docs/cli.md); non-finite numbers are None."""
        return _finite({"hardware": self.hardware, "devices": self.devices, "plan": self.plan,
                        "replicas": self.replicas,
                "batch": self.batch, "utilization": self.utilization,
                "service_s": {"mean": self.service_mean_s, "cv": self.service_cv,
                              "range": None if self.service_range_s is None else list(self.service_range_s)},
                "wait_s": dict(self.wait_s), "latency_s": dict(self.latency_s), "meets_slo": self.meets_slo,
                "usd_per_video": self.usd_per_video, "usd_per_month": self.usd_per_month,
                "gpus": self.gpus, "gpu_hours_per_month": self.gpu_hours_per_month,
                "throughput_per_hour": self.throughput_per_hour, "hourly_replicas": list(self.hourly_replicas),
                "cold_start_s": self.cold_start_s, "method": self.method, "simulated": self.simulated,
                "notes": list(self.notes), "class_service_s": list(self.class_service_s),
                "analytic": self.analytic, "per_class": [dict(c) for c in self.per_class]})


def _frozen(x):
    """``x`` with every mapping a read-only view and every list a tuple (recursively)."""
    if isinstance(x, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        return tuple(_frozen(v) for v in x)
    return x


def _finite(x):
    """``x`` as plain data (dicts and lists) with non-finite floats as None (JSON has no inf)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


@dataclass(frozen=True)
class PlanResult:
    """The result of :func:`plan`: ranked rows, the best row (cheapest meeting the SLO, or
    None), the traffic, counts and timing (seconds), notes."""

    rows: tuple
    best: Row | None
    traffic: Traffic
    evaluated: int
    unfit: int
    timing: dict
    notes: tuple = ()
    priced: bool = True
    prices: tuple = ()     # (hardware, USD per GPU-hour) pairs used

    def to_dict(self) -> dict:
        """The document of ``wanir plan --format json``."""
        return {"deployments": [r.to_dict() for r in self.rows],
                "best": None if self.best is None else self.best.to_dict(),
                "traffic": self.traffic.to_dict(), "evaluated": self.evaluated, "unfit": self.unfit,
                "priced": self.priced, "prices": dict(self.prices), "notes": list(self.notes),
                "timing": dict(self.timing)}


# ----------------------------------------------------------------------------- service times

_LABEL = re.compile(r"(fsdp|cfg|ulysses|ring|dp)(\d+)")


def parse_plan(text: str, devices: int, where: str):
    """A Plan from a plan name (``single``, ``ulysses``, ``fsdp+ulysses``, as ``parallel=``
    takes it) or a label as ``wanir size`` prints it (``fsdp2+cfg2+ulysses2``) on
    ``devices`` devices; ConfigError naming ``where`` when it does not fit."""
    try:
        parts = text.split("+")
        if all(_LABEL.fullmatch(p) for p in parts):
            dims = {m.group(1): int(m.group(2)) for m in map(_LABEL.fullmatch, parts)}
            fsdp = dims.pop("fsdp", 1)
            return resolve_plan({"name": text, "degree": devices, "fsdp": fsdp, **dims})
        return make_plan(text, devices)
    except PlanError as e:
        raise ConfigError(f"traffic {where}: {e}") from None


def _plan_overrides(p) -> list[str]:
    return [f"parallel.{k}={v}" for k, v in (("degree", p.degree), ("ulysses", p.ulysses), ("ring", p.ring),
                                             ("cfg", p.cfg), ("dp", p.dp), ("fsdp", p.fsdp))]


def _cold_start(weight_bytes: int, hw_name: str, fsdp: int, config_dir) -> float:
    """Seconds to copy a replica's weights from host memory to its devices (each device
    its 1/fsdp share, in parallel) at the host link's pageable copy rate."""
    hw = hwlib.load(hw_name, config_dir)
    return weight_bytes / fsdp / copy_rate(hw, bare_run().runtime)


def _weight_bytes(est) -> int:
    """Weight bytes of every stage of an estimate (int)."""
    return int(sum(int(s["per_invocation"]["weight_bytes"] or 0) for s in est.to_dict()["stages"]))


class Estimates:
    """``wanir.estimate`` per (class overrides, deployment), cached for one planning run."""

    def __init__(self, config_dir=None):
        self.config_dir = config_dir
        self.cache: dict = {}

    def __call__(self, overrides: tuple, hardware: str | None = None, plan=None, batch: int = 1):
        """The Estimate of one request of ``overrides`` on ``hardware`` under ``plan`` at
        ``batch`` videos per batch."""
        key = (tuple(overrides), hardware, None if plan is None else plan.label, batch)
        hit = self.cache.get(key)
        if hit is None:
            ov = [*overrides, *([f"hardware={hardware}"] if hardware else []),
                  *(_plan_overrides(plan) if plan is not None and plan.degree * plan.fsdp > 1 else []),
                  *([f"workload.batch={batch}"] if batch > 1 else [])]
            hit = self.cache[key] = wanir.estimate(ov, self.config_dir)
        return hit


def time_range(e) -> tuple | None:
    """(low, high) seconds of one video of Estimate ``e`` as the time model's error range
    gives it (``parallel.total.time_range_s`` under a plan, else ``total.time_range_s``;
    docs/time-model.md), None when the estimate has none."""
    t = e.parallel["total"] if e.parallel is not None else e.total
    rng = t.get("time_range_s")
    return None if rng is None else (float(rng[0]), float(rng[1]))


def service_range(shares, ranges) -> tuple | None:
    """(low, high) of the mean service time Σ p_k s_k of a class mix, from each class's
    (low, high): Σ p_k low_k and Σ p_k high_k, the share-weighted ends. The time model's
    error on one deployment leans the same way for every class (the classes share its
    kernels, runtime and device: docs/time-model.md), so the ends are taken together, not
    as independent errors that would partly cancel; since low_k ≤ s_k ≤ high_k the range
    contains the mean. None when any class has no range (seconds)."""
    if ranges is None or any(r is None for r in ranges):
        return None
    return (math.fsum(p * r[0] for p, r in zip(shares, ranges)), math.fsum(p * r[1] for p, r in zip(shares, ranges)))


def with_cold_start(traffic: Traffic, svc: Service, est: Estimates) -> Service:
    """``svc`` with its cold-start seconds: as given, else the weights of the heaviest class
    copied to the replica's devices over the host link (:func:`_cold_start`)."""
    if svc.cold_start_s is not None:
        return svc
    w = max(_weight_bytes(est(c.overrides)) for c in traffic.classes)
    return dataclasses.replace(svc, cold_start_s=_cold_start(w, svc.hardware, svc.plan.fsdp, est.config_dir))


def _batches(traffic: Traffic) -> list[int]:
    return [b for b in (1, 2, 4, 8, 16) if b <= traffic.max_batch]


def explicit_services(traffic: Traffic, prices: dict, est: Estimates, progress=None) -> list[Service]:
    """Service times of the traffic file's ``deployments`` from :func:`wanir.estimate`."""
    out = []
    weights = {}
    for i, d in enumerate(traffic.deployments):
        plan = parse_plan(d.plan, d.devices, f"deployments[{i}].plan")
        secs, fits, ranges = [], True, []
        for c in traffic.classes:
            per = {}
            for b in sorted({1, d.batch}):
                e = est(c.overrides, d.hardware, plan, b)
                per[b] = float(e.time_s)
                fits = fits and bool(e.fits)
                if b == 1:
                    ranges.append(time_range(e))
            if c.overrides not in weights:
                weights[c.overrides] = _weight_bytes(est(c.overrides, d.hardware))
            secs.append(_fill(per, d.batch))
            if progress:
                progress()
        cs = d.cold_start_s if d.cold_start_s is not None else traffic.cold_start_s
        if cs is None:
            cs = _cold_start(max(weights.values()), d.hardware, plan.fsdp, est.config_dir)
        out.append(Service(d.hardware, d.devices, plan, d.batch, tuple(secs), fits, cs, prices.get(d.hardware),
                           tuple(ranges)))
    return out


def _fill(per: dict, batch: int) -> tuple:
    """Seconds for batches of 0..batch videos: a partial batch of n runs as the next batch
    size estimated (padded), index 0 unused."""
    sizes = sorted(per)
    return tuple([0.0] + [per[min(s for s in sizes if s >= n)] for n in range(1, batch + 1)])


def default_jobs() -> int:
    """Processes for the sizing runs: one per CPU core this process may use
    (:func:`wanir.limits.usable_cpus`), at most 8."""
    return min(8, usable_cpus())


def _size_task(a) -> dict:
    """One sizing run (a process-pool task): (overrides, config_dir, hardware, devices, prices, batches)."""
    ov, config_dir, hardware, devices, prices, batches = a
    return sizing.size(ov, config_dir, hardware=hardware, devices=devices, prices=prices, batches=batches,
                       data_parallel=False)


def _progressed(it, progress):
    for x in it:
        if progress:
            progress()
        yield x


def enumerated_services(traffic: Traffic, prices: dict, config_dir, hardware, devices, est: Estimates,
                        progress=None, jobs: int | None = None) -> tuple[list[Service], int, dict]:
    """Service times of every hardware × devices × plan (× batch) from
    :func:`wanir.backends.sizing.size`, one run per class and chunk of device counts (spread over
    ``jobs`` processes; default :func:`default_jobs`); plans with dp > 1 are left out.
    Returns (services, candidates that do not fit, the prices sizing used)."""

    batches = _batches(traffic)
    jobs = cap_jobs(jobs) if jobs else default_jobs()
    # one sizing run per class, its device counts split into chunks when there are fewer
    # classes than twice the processes (each run builds the class's graphs once: fewer, longer runs)
    chunks = 1 if jobs == 1 or len(traffic.classes) >= 2 * jobs else \
        min(len(devices), math.ceil(2 * jobs / len(traffic.classes)))
    tasks = [(c.overrides, tuple(devices[i::chunks])) for c in traffic.classes for i in range(chunks)]
    used_prices = dict(prices)
    per_class = [{} for _ in traffic.classes]
    jobs = min(jobs, len(tasks))
    if isinstance(progress, _Bar):
        progress.total = len(tasks) + SIMULATED
    args = [(list(ov), config_dir, hardware, devs, prices, batches) for ov, devs in tasks]
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as pool:
            results = list(_progressed(pool.map(_size_task, args), progress))
    else:
        results = list(_progressed(map(_size_task, args), progress))
    for (ov, _), res in zip(tasks, results):
        used_prices.update(res["prices"])
        k = next(i for i, c in enumerate(traffic.classes) if c.overrides == ov)
        per_class[k].update({(x.hardware, x.plan.label, x.batch): x for x in res["candidates"] + res["unfit"]})
    keys = set(per_class[0])
    for d in per_class[1:]:
        keys &= set(d)
    out, unfit = [], 0
    for hw, label, b in sorted({(h, lab, b) for h, lab, b in keys}):
        if b == 1 or all((hw, label, bb) in keys for bb in _batches(traffic) if bb <= b):
            cands = [d[(hw, label, b)] for d in per_class]
            fits = all(x.fits for x in cands)
            if not fits:
                unfit += 1
                continue
            secs = []
            for d in per_class:
                per = {bb: d[(hw, label, bb)].time_s for bb in _batches(traffic) if bb <= b}
                secs.append(_fill(per, b))
            plan = cands[0].plan     # cold start: derived when simulated (with_cold_start)
            ranges = tuple(None if d[(hw, label, 1)].time_range_s is None else tuple(d[(hw, label, 1)].time_range_s)
                           for d in per_class)
            out.append(Service(hw, plan.degree, plan, b, tuple(secs), True, traffic.cold_start_s, used_prices.get(hw),
                               ranges))
    return out, unfit, used_prices


# ----------------------------------------------------------------------------- planning


def _mix(traffic: Traffic, svc: Service) -> Q.Mix:
    return Q.Mix(traffic.shares, tuple(s[1] for s in svc.seconds))


def _ok(traffic: Traffic, mix: Q.Mix):
    q = None if traffic.slo_percentile is None else traffic.slo_percentile / 100

    def ok(qr: Q.QueueResult) -> bool:
        if not qr.stable:
            return False
        if q is None:
            return True
        return Q.latency_quantile(qr, mix, q) <= traffic.slo_latency_s
    return ok


def _replicas_at(traffic: Traffic, svc: Service, mix: Q.Mix, rate_per_hour: float, cache: dict) -> int | None:
    """Fewest replicas that keep the SLO at ``rate_per_hour`` (at least 1; None if none)."""
    if rate_per_hour <= 0:
        return 1
    hit = cache.get(rate_per_hour, 0)
    if hit != 0:
        return hit
    found = Q.fewest_servers(rate_per_hour / 3600.0, mix, _ok(traffic, mix))
    r = None if found is None else max(1, math.ceil(found[0] / svc.servers))
    cache[rate_per_hour] = r
    return r


def _costs(traffic: Traffic, svc: Service, hourly: tuple) -> tuple:
    """(USD/video, USD/month, GPU-hours/month) of the hourly replicas (None without a price)."""
    gpu_hours_day = sum(hourly) * svc.devices
    videos_day = 24 * traffic.rate_per_hour
    gh_month = gpu_hours_day * HOURS_PER_MONTH / 24
    if svc.price is None:
        return None, None, gh_month
    day = gpu_hours_day * svc.price
    return day / videos_day, day * HOURS_PER_MONTH / 24, gh_month


def per_class(traffic: Traffic, qr: Q.QueueResult, mix: Q.Mix, ranges=None) -> tuple:
    """Each class's latency under queue ``qr``: its service time plus the wait (whose
    distribution does not depend on the class under FCFS with Poisson arrivals), seconds;
    ``service_range_s``: the class's [low, high] from ``ranges`` (a Service's), or None."""
    out = []
    for k, (c, s) in enumerate(zip(traffic.classes, mix.s)):
        lat = {"mean": s + qr.wait_mean_s, **{f"p{p}": s + qr.wait_quantile(p / 100) for p in (50, 95, 99)}}
        rng = None if ranges is None or ranges[k] is None else list(ranges[k])
        out.append({"name": c.name, "service_s": s, "service_range_s": rng, "latency_s": lat})
    return tuple(out)


def analytic_row(traffic: Traffic, svc: Service) -> Row:
    """Plan one deployment (one video per batch) with the closed forms."""
    mix = _mix(traffic, svc)
    cache: dict = {}
    lam = traffic.peak_rate_per_hour / 3600.0
    peak = _replicas_at(traffic, svc, mix, traffic.peak_rate_per_hour, cache)
    cv = math.sqrt(mix.cv2)
    if peak is None:    # no replica count meets the SLO: report the fleet at which waiting stops mattering
        q = (traffic.slo_percentile or 95) / 100
        found = Q.fewest_servers(lam, mix, lambda r: r.stable and r.p_wait <= (1 - q) / 2)
        if found is None:
            nan = {k: math.inf for k in ("mean", "p50", "p95", "p99")}
            return Row(svc.hardware, svc.devices, svc.label, None, 1, None, mix.mean, cv, nan, nan, False, None,
                       None, None, None, (), svc.cold_start_s, notes=("more replicas than wanir searches",),
                       class_service_s=mix.s, service_range_s=service_range(traffic.shares, svc.ranges))
        c, qr = found
        r = math.ceil(c / svc.servers)
        hourly = (r,) * 24
        note = (f"the {traffic.slo_percentile}th percentile of the generation time alone exceeds the SLO",)
    else:
        r = peak
        hourly = tuple(_replicas_at(traffic, svc, mix, x, cache) or peak for x in traffic.hourly_rates())
        hourly = tuple(min(h, peak) for h in hourly)
        qr = Q.mgc(lam, mix, r * svc.servers)
        note = ()
    s = Q.summary(qr, mix)
    usd_v, usd_m, gh = _costs(traffic, svc, hourly)
    return Row(svc.hardware, svc.devices, svc.label, r, 1, qr.utilization, mix.mean, cv, s["wait_s"], s["latency_s"],
               peak is not None, usd_v, usd_m, gh, r * svc.servers * 3600.0 / mix.mean, hourly, svc.cold_start_s,
               notes=note, class_service_s=mix.s, servers=r * svc.servers, p_wait=qr.p_wait,
               per_class=per_class(traffic, qr, mix, svc.ranges),
               service_range_s=service_range(traffic.shares, svc.ranges))


def _sim_kwargs(traffic: Traffic, svc: Service) -> dict:
    sim = traffic.simulation
    kw = dict(replications=sim.replications, requests=sim.requests, warmup=sim.warmup, seed=sim.seed,
              batch=svc.batch, cold_start_s=svc.cold_start_s)
    if traffic.trace is not None:    # the recorded arrivals, every request counted
        kw.update(trace=(traffic.trace.times, traffic.trace.classes), replications=1)
    else:                            # the daily profile; the peak hour's requests are counted
        kw.update(hourly_per_s=[x / 3600.0 for x in traffic.hourly_rates()],
                  window=(traffic.peak_hour, traffic.peak_hour + 1))
    return kw


def simulated_row(traffic: Traffic, svc: Service, row: Row | None) -> Row:
    """Check (or, for batches, plan) one deployment by simulating the daily profile with
    hourly replicas and cold starts; replicas are added (all hours) while the simulated
    SLO percentile of the peak hour's requests misses the SLO."""
    mix = _mix(traffic, svc)
    if row is None:     # batches: start from the replicas full batches need each hour
        per_video = math.fsum(p * s[svc.batch] / svc.batch for p, s in zip(traffic.shares, svc.seconds))
        hourly = tuple(max(1, math.ceil(x / 3600.0 * per_video / svc.servers * 1.05)) for x in traffic.hourly_rates())
    else:
        hourly = row.hourly_replicas
    q = traffic.slo_percentile
    notes = list(row.notes) if row is not None else []
    servers_of = (lambda h: tuple(x * svc.servers for x in h))
    for bump in range(SIM_BUMPS + 1):
        sim = replicate([list(s) for s in svc.seconds], traffic.shares, servers_of(hourly), **_sim_kwargs(traffic, svc))
        if sim.get("runs", 0) == 0:
            break
        miss = q is not None and sim["latency_s"][f"p{q}"] > traffic.slo_latency_s
        if not miss or bump == SIM_BUMPS:
            break
        hourly = tuple(h + 1 for h in hourly)
        notes.append("the simulation added a replica in every hour (the closed form missed the SLO)" if row is not None
                     else "the simulation added a replica in every hour to the count full batches would need")
    meets = sim.get("runs", 0) > 0 and (q is None or sim["latency_s"][f"p{q}"] <= traffic.slo_latency_s)
    if q is None:
        meets = meets and max(x / 3600.0 * math.fsum(p * s[svc.batch] / svc.batch for p, s in
                                                    zip(traffic.shares, svc.seconds))
                              / (h * svc.servers) for x, h in zip(traffic.hourly_rates(), hourly)) < 1
    peak = max(hourly)
    usd_v, usd_m, gh = _costs(traffic, svc, hourly)
    per_video = math.fsum(p * s[svc.batch] / svc.batch for p, s in zip(traffic.shares, svc.seconds))
    util = traffic.peak_rate_per_hour / 3600.0 * per_video / (hourly[traffic.peak_hour] * svc.servers)
    simd = None if sim.get("runs", 0) == 0 else {
        "wait_s": sim["wait_s"], "latency_s": sim["latency_s"], "ci": sim["ci"], "runs": sim["runs"],
        "requests": sim["requests"], "little": [list(x) for x in sim["little"]]}
    if simd is None:
        return row if row is not None else analytic_row(traffic, svc)
    return Row(svc.hardware, svc.devices, svc.label, peak, svc.batch, util, mix.mean, math.sqrt(mix.cv2),
               sim["wait_s"], sim["latency_s"], meets, usd_v, usd_m, gh, peak * svc.servers * 3600.0 / per_video,
               hourly, svc.cold_start_s, "simulation", simd, tuple(notes), mix.s, peak * svc.servers,
               None if row is None else row.p_wait,
               None if row is None else {"replicas": row.replicas, "wait_s": row.wait_s, "latency_s": row.latency_s},
               () if row is None else per_class(traffic, Q.mgc(traffic.peak_rate_per_hour / 3600.0, mix,
                                                                 peak * svc.servers), mix, svc.ranges),
               service_range(traffic.shares, svc.ranges))


def rank_key(r: Row):
    """Meeting the SLO first; priced by USD per month, unpriced by GPU-hours per month;
    then fewer GPUs and lower p95 latency."""
    priced = r.usd_per_month is not None
    cost = r.usd_per_month if priced else (r.gpu_hours_per_month if r.gpu_hours_per_month is not None else math.inf)
    return (not r.meets_slo, not priced, round(cost, 9), r.gpus if r.gpus is not None else math.inf,
            r.latency_s.get("p95", math.inf))


def pareto(rows) -> list[Row]:
    """The rows no other row beats on both monthly cost (GPU-hours when unpriced) and p95
    latency, among those that meet the SLO, cheapest first."""
    ok = sorted((r for r in rows if r.meets_slo and r.replicas is not None), key=rank_key)
    front, best = [], math.inf
    for r in ok:
        p95 = r.latency_s["p95"]
        if p95 < best:
            front.append(r)
            best = p95
    return front


class _Bar:
    """A rich progress bar on stderr that appears only after a second of work."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done = total, enabled, 0
        self.t0 = time.perf_counter()
        self.bar = None

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is None and time.perf_counter() - self.t0 > 1.0:
            from rich import console, progress as rp  # late import: rich's progress loads only when a bar is shown
            self.bar = rp.Progress(rp.TextColumn("plan"), rp.BarColumn(), rp.MofNCompleteColumn(),
                                   rp.TimeElapsedColumn(), console=console.Console(stderr=True), transient=True)
            self.task = self.bar.add_task("plan", total=self.total, completed=self.done)
            self.bar.start()
        elif self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _merge_prices(traffic: Traffic, prices: dict | None, config_dir) -> dict:
    out = dict(traffic.prices)
    out.update(prices or {})
    known = [h.name for h in hwlib.list_hardware(config_dir)]
    for name in out:
        if name not in known:
            raise sizing._unknown_price(name, known)
    return out


def plan(traffic: Traffic, *, config_dir=None, hardware=None, devices=None, prices: dict | None = None,
         simulate: bool = True, progress: bool = False, jobs: int | None = None) -> PlanResult:
    """Plan the fleet for ``traffic`` (a :class:`Traffic`, see :func:`.traffic.load`).
    ``hardware``: names to consider (default: the traffic file's deployments, else every
    GPU); ``devices``: devices per replica (default 1, 2, 4, 8); ``prices``: USD per
    GPU-hour by hardware name (over the file's ``prices`` and the hardware YAML's);
    ``simulate``: check the candidates near the frontier by simulation; ``jobs``: processes
    for the sizing runs (default: one per CPU core, at most 8; 1 runs in this process). Returns a
    :class:`PlanResult` whose rows are ranked (:func:`rank_key`)."""
    t0 = time.perf_counter()
    prices = _merge_prices(traffic, prices, config_dir)
    est = Estimates(config_dir)
    notes = list(traffic.notes)
    if traffic.deployments:
        deps = [d for d in traffic.deployments if (not hardware or d.hardware in hardware)
                and (not devices or d.devices in devices)]
        if not deps:
            raise ConfigError("traffic deployments: none is left after --hardware/--devices; allowed: "
                              + ", ".join(f"{d.hardware}x{d.devices}" for d in traffic.deployments)[:300])
        total = len(deps) * len(traffic.classes)
        bar = _Bar(total + SIMULATED, progress)
        for d in deps:
            if d.hardware not in prices:
                p = sizing._yaml_price(d.hardware, config_dir)
                if p is not None:
                    prices[d.hardware] = p
        tr = dataclasses.replace(traffic, deployments=tuple(deps))
        services = explicit_services(tr, prices, est, bar)
        unfit = sum(1 for s in services if not s.fits)
        services = [s for s in services if s.fits]
    else:
        devices = tuple(devices) if devices else DEFAULT_DEVICES
        bar = _Bar(len(traffic.classes) * len(devices) + SIMULATED, progress)
        services, unfit, prices = enumerated_services(traffic, prices, config_dir, hardware, devices, est, bar, jobs)
        notes.append("plans with data-parallel copies inside a replica are left out: the replica count covers them")
    t_est = time.perf_counter() - t0
    rows = [analytic_row(traffic, s) for s in services if s.batch == 1]
    t_an = time.perf_counter() - t0 - t_est
    if simulate:
        by_key = {(s.hardware, s.label, s.batch): s for s in services}
        rows.sort(key=rank_key)
        chosen = []
        for r in [*rows[:SIMULATED // 2], *pareto(rows)]:
            if r not in chosen and r.replicas is not None and len(chosen) < SIMULATED:
                chosen.append(r)
        sims = {id(r): simulated_row(traffic, with_cold_start(traffic, by_key[(r.hardware, r.plan, 1)], est), r)
                for r in chosen}
        bar(len(chosen))
        rows = [sims.get(id(r), r) for r in rows]
        best_keys = {(r.hardware, r.plan) for r in rows[:SIMULATED]}
        batched = [s for s in services if s.batch > 1 and (traffic.deployments or (s.hardware, s.label) in best_keys)]
        rows += [simulated_row(traffic, with_cold_start(traffic, s, est), None) for s in batched]
    elif any(s.batch > 1 for s in services):
        notes.append("batches of more than one video are planned by simulation only; not run (--no-simulate)")
    bar.close()
    rows.sort(key=rank_key)
    best = rows[0] if rows and rows[0].meets_slo else None
    priced = all(r.usd_per_month is not None for r in rows)
    if not priced:
        notes.append("no price for " + ", ".join(sorted({r.hardware for r in rows if r.usd_per_month is None})) +
                     ": ranked after the priced hardware by GPU-hours per month (give prices: or --price)")
    timing = {"estimate_s": t_est, "analytic_s": t_an, "total_s": time.perf_counter() - t0}
    return PlanResult(tuple(rows), best, traffic, len(services) + unfit, unfit, timing, tuple(notes), priced,
                      tuple(sorted(prices.items())))
