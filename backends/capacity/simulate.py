"""Discrete-event simulation of a fleet of replicas serving video requests (numpy + a heap).

What it handles that the closed forms (:mod:`.queueing`) cannot: a daily arrival profile
(piecewise-constant Poisson rate per hour), a recorded trace, replicas that scale with the
hourly rate and start cold (a replica added at an hour boundary serves only after its
cold-start seconds), batching of same-shape requests (a free replica takes the oldest
waiting request and up to ``batch − 1`` more of the same class that are already waiting),
and any mix of classes.

Discipline: first come, first served across classes; a request is never split; a replica
taken away at an hour boundary finishes its batch first.

Statistics: each replication draws its own arrivals (``numpy.random.default_rng`` seeded
from one ``SeedSequence``), discards the first ``warmup`` fraction of requests, and
reports its mean wait and latency quantiles; the replications' spread gives a 95 %
Student-t confidence interval. :func:`little` checks Little's law on a run: the
time-average number of requests in the system, integrated from the sorted arrival and
departure events, equals arrival rate × mean time in system.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

#: 97.5 % quantiles of Student's t for 1..30 degrees of freedom (two-sided 95 % intervals)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
#: days simulated at most per replication of a daily profile
MAX_DAYS = 60


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (conservative
    2.042 above 30)."""
    return _T975[min(df, 30) - 1]


@dataclass(frozen=True)
class Run:
    """One simulated replication: arrival, start and departure seconds and the class of
    every request (numpy arrays, arrival order), and the index of the first request
    counted after warm-up."""

    arrival: np.ndarray
    start: np.ndarray
    departure: np.ndarray
    cls: np.ndarray
    first: int

    @property
    def wait(self) -> np.ndarray:
        """Seconds each counted request waited."""
        return (self.start - self.arrival)[self.first:]

    @property
    def latency(self) -> np.ndarray:
        """Seconds from arrival to departure of each counted request."""
        return (self.departure - self.arrival)[self.first:]


def little(run: Run) -> tuple[float, float]:
    """Little's law over the whole run [first arrival, last departure]: returns (L, λW)
    where L is the time-average number in the system integrated from the sorted
    arrival (+1) and departure (−1) events, λ the arrivals per second over that window and
    W the mean time in the system. They agree for any correct simulation."""
    t0, t1 = float(run.arrival[0]), float(run.departure.max())
    ev_t = np.concatenate([run.arrival, run.departure])
    ev_d = np.concatenate([np.ones(len(run.arrival)), -np.ones(len(run.departure))])
    order = np.lexsort((-ev_d, ev_t))     # at a tie, count the arrival first
    t, d = ev_t[order], ev_d[order]
    n = np.cumsum(d)
    area = float(np.sum(n[:-1] * np.diff(t)))
    T = t1 - t0
    lam = len(run.arrival) / T
    w = float(np.mean(run.departure - run.arrival))
    return area / T, lam * w


def poisson_arrivals(rng, rate_per_s: float, n: int) -> np.ndarray:
    """Seconds of ``n`` Poisson arrivals at ``rate_per_s`` starting at 0."""
    return np.cumsum(rng.exponential(1.0 / rate_per_s, n))


def profile_arrivals(rng, hourly_per_s, days: int) -> np.ndarray:
    """Seconds of Poisson arrivals over ``days`` days whose rate is ``hourly_per_s[h]``
    (requests/s) in hour h of each day (piecewise constant), sorted."""
    out = []
    for d in range(days):
        for h, r in enumerate(hourly_per_s):
            k = int(rng.poisson(r * 3600.0)) if r > 0 else 0
            if k:
                out.append(np.sort(rng.uniform(0.0, 3600.0, k)) + (d * 24 + h) * 3600.0)
    return np.concatenate(out) if out else np.zeros(0)


def serve(arrival: np.ndarray, cls: np.ndarray, service, servers, batch: int = 1,
          cold_start_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Serve the requests (``arrival`` seconds, sorted; ``cls`` class indices) FCFS;
    ``service[k][n]``: seconds for a batch of n requests of class k (n = 1..batch);
    ``servers``: a replica count, or 24 counts (one per hour of the day) — a replica added
    at an hour boundary is ready ``cold_start_s`` later. Returns (start, departure) seconds."""
    n = len(arrival)
    start = np.empty(n)
    dep = np.empty(n)
    hourly = not isinstance(servers, int)
    c_max = max(servers) if hourly else servers
    heap = [(0.0 if not hourly else _ready(j, 0.0, servers, cold_start_s), j) for j in range(c_max)]
    heapq.heapify(heap)
    if batch == 1:
        s1 = np.asarray([service[k][1] for k in range(len(service))])[cls]
        return fcfs(arrival, s1, servers, cold_start_s)
    # general case: per-class queues (class order is arrival order), batches, hourly replicas
    K = len(service)
    idx = [np.flatnonzero(cls == k) for k in range(K)]
    arr_k = [arrival[ix] for ix in idx]
    ptr = [0] * K
    left = n
    while left:
        head_k, head_t = -1, math.inf
        for k in range(K):
            if ptr[k] < len(idx[k]) and arr_k[k][ptr[k]] < head_t:
                head_k, head_t = k, float(arr_k[k][ptr[k]])
        while True:
            f, j = heapq.heappop(heap)
            t = max(f, head_t)
            r = _ready(j, t, servers, cold_start_s) if hourly else t
            if r == t:
                break
            heapq.heappush(heap, (r, j))
        upto = int(np.searchsorted(arr_k[head_k], t, side="right"))
        m = min(batch, upto - ptr[head_k])
        sel = idx[head_k][ptr[head_k]:ptr[head_k] + m]
        end = t + service[head_k][m]
        start[sel] = t
        dep[sel] = end
        ptr[head_k] += m
        left -= m
        heapq.heappush(heap, (end, j))
    return start, dep


def fcfs(arrival: np.ndarray, service: np.ndarray, servers, cold_start_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """First come, first served on identical replicas, one request at a time: ``arrival``
    seconds (sorted), ``service`` seconds per request, ``servers`` a count or 24 hourly
    counts (see :func:`serve`). Returns (start, departure) seconds. A heap of (free at,
    replica): each request takes the replica free first (Kiefer–Wolfowitz)."""
    n = len(arrival)
    hourly = not isinstance(servers, int)
    c_max = max(servers) if hourly else servers
    heap = [(0.0 if not hourly else _ready(j, 0.0, servers, cold_start_s), j) for j in range(c_max)]
    heapq.heapify(heap)
    a, s = arrival.tolist(), np.asarray(service, dtype=float).tolist()
    st = [0.0] * n
    pop, push = heapq.heappop, heapq.heappush
    for i in range(n):
        f, j = pop(heap)
        t = a[i] if a[i] > f else f
        if hourly:
            r = _ready(j, t, servers, cold_start_s)
            while r != t:      # replica j is down at t: put it back at the time it is up
                push(heap, (r, j))
                f, j = pop(heap)
                t = a[i] if a[i] > f else f
                r = _ready(j, t, servers, cold_start_s)
        st[i] = t
        push(heap, (t + s[i], j))
    start = np.asarray(st)
    return start, start + np.asarray(service, dtype=float)


def _ready(j: int, t: float, servers, cold_start_s: float) -> float:
    """The first time >= t at which replica j is up: it is up in hour h when j < servers[h]
    (hour of the day); coming up after an hour without it costs ``cold_start_s``."""
    for step in range(48):
        hour = int(t // 3600)
        if j < servers[hour % 24]:
            return t
        nxt = (hour + 1) * 3600.0
        if j < servers[(hour + 1) % 24]:
            return nxt + cold_start_s
        t = nxt
    return math.inf     # never up (not reached: replica 0..max-1 is up in some hour)


def _quantiles(x: np.ndarray) -> dict:
    return {"mean": float(np.mean(x)), "p50": float(np.quantile(x, 0.50)),
            "p95": float(np.quantile(x, 0.95)), "p99": float(np.quantile(x, 0.99))}


def _ci(vals) -> dict:
    v = np.asarray(vals, dtype=float)
    m = float(np.mean(v))
    h = t975(len(v) - 1) * float(np.std(v, ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else math.inf
    return {"mean": m, "low": m - h, "high": m + h}


def replicate(service, shares, servers, *, rate_per_s: float | None = None, hourly_per_s=None,
              trace=None, batch: int = 1, cold_start_s: float = 0.0, replications: int = 5,
              requests: int = 20_000, warmup: float = 0.1, seed: int = 0, window=None) -> dict:
    """Simulate ``replications`` independent runs and summarize them. Arrivals: Poisson at
    ``rate_per_s`` (``requests`` per run), or a daily profile ``hourly_per_s`` (24 rates,
    whole days, about ``requests`` per run), or a ``trace`` (times, classes) replayed as
    is. Classes are drawn with ``shares`` (not for a trace). ``window``: (start, end) hour
    of the day whose arrivals alone are counted (e.g. the peak hour), else all. When one
    day of the profile holds more than ``requests`` arrivals, each run simulates the peak
    hour's rate stationary with that hour's replicas instead (``requests`` arrivals).

    Returns {"wait_s", "latency_s": {mean, p50, p95, p99} pooled over runs, "ci": 95 %
    intervals across runs of the mean wait, mean latency and p50/p95/p99 latency,
    "utilization", "little": [(L, λW)] per run, "runs", "requests"} (seconds)."""
    if hourly_per_s is not None and sum(hourly_per_s) * 3600.0 > requests:
        # a day holds more requests than a replication: simulate the peak hour's rate, stationary,
        # with the replicas of that hour (what the SLO is judged on)
        peak = max(range(24), key=lambda h: hourly_per_s[h])
        rate_per_s, hourly_per_s, window = hourly_per_s[peak], None, None
        servers = servers if isinstance(servers, int) else servers[peak]
    ss = np.random.SeedSequence(seed)
    waits, lats, per = [], [], {"wait_mean": [], "latency_mean": [], "p50": [], "p95": [], "p99": []}
    lit, util = [], []
    mean_s = [service[k][1] for k in range(len(service))]
    for child in ss.spawn(replications):
        rng = np.random.default_rng(child)
        if trace is not None:
            arrival = np.asarray(trace[0], dtype=float)
            cls = np.asarray(trace[1], dtype=np.int64)
        else:
            if hourly_per_s is not None:
                per_day = sum(hourly_per_s) * 3600.0
                days = max(1, min(MAX_DAYS, math.ceil(requests / per_day))) if per_day > 0 else 1
                arrival = profile_arrivals(rng, hourly_per_s, days)
            else:
                arrival = poisson_arrivals(rng, rate_per_s, requests)
            cls = rng.choice(len(shares), size=len(arrival), p=np.asarray(shares) / np.sum(shares))
        if len(arrival) < 2:
            continue
        start, dep = serve(arrival, cls, service, servers, batch, cold_start_s)
        first = int(len(arrival) * warmup) if trace is None else 0
        run = Run(arrival, start, dep, cls, first)
        lit.append(little(run))
        keep = np.ones(len(arrival) - first, dtype=bool)
        if window is not None:
            hod = (arrival[first:] // 3600) % 24
            keep = (hod >= window[0]) & (hod < window[1])
            if not keep.any():
                continue
        w, lt = run.wait[keep], run.latency[keep]
        waits.append(w)
        lats.append(lt)
        per["wait_mean"].append(float(np.mean(w)))
        per["latency_mean"].append(float(np.mean(lt)))
        for q in (50, 95, 99):
            per[f"p{q}"].append(float(np.quantile(lt, q / 100)))
        span = float(dep.max() - arrival[0])
        cap = (servers if isinstance(servers, int) else sum(servers) / 24) * span
        util.append(float(np.sum(np.asarray(mean_s)[cls])) / cap if batch == 1 else math.nan)
    if not waits:
        return {"runs": 0}
    W, L = np.concatenate(waits), np.concatenate(lats)
    return {"wait_s": _quantiles(W), "latency_s": _quantiles(L),
            "ci": {k: _ci(v) for k, v in per.items()},
            "utilization": float(np.mean(util)), "little": lit, "runs": len(waits), "requests": int(len(W))}
