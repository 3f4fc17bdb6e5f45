"""Analytic multi-server queues: Erlang C (M/M/c), the Allen–Cunneen correction for
general service times (M/G/c), exact Pollaczek–Khinchine for one server (M/G/1), and
latency quantiles of a class mix.

Units: rates in requests per second, times in seconds.

Waiting time. Erlang C gives the probability of waiting ``C(c, a)`` and the M/M/c mean
wait ``Wq = C / (c μ − λ)``. For general service times Allen–Cunneen scales it by
``(ca² + cs²) / 2`` (``ca² = 1`` for Poisson arrivals, ``cs²`` the squared coefficient of
variation of the service time of the class mix). For ``c = 1`` this is exactly the
Pollaczek–Khinchine mean ``λ E[S²] / (2 (1 − ρ))``.

Quantiles (an approximation, exact for M/M/c): the wait is 0 with probability ``1 − Pw``
and, given a wait, exponential with mean ``Wq / Pw``; ``Pw`` is Erlang C (``ρ`` for one
server, exact for M/G/1). A request's latency is its wait plus its class's service time;
with Poisson arrivals and FCFS the wait does not depend on the request's own class, so
``P(L > x) = Σ_k p_k P(W > x − S_k)``, solved for x by bisection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: replicas searched at most per deployment
MAX_SERVERS = 1_000_000


@dataclass(frozen=True)
class Mix:
    """A class mix: shares ``p`` (fractions summing to 1) and service seconds ``s`` per
    class (one request on one server)."""

    p: tuple
    s: tuple

    @property
    def mean(self) -> float:
        """E[S], seconds."""
        return math.fsum(p * s for p, s in zip(self.p, self.s))

    @property
    def second_moment(self) -> float:
        """E[S²], seconds²."""
        return math.fsum(p * s * s for p, s in zip(self.p, self.s))

    @property
    def cv2(self) -> float:
        """Squared coefficient of variation of the service time (0 for one class)."""
        m = self.mean
        return max(0.0, self.second_moment / (m * m) - 1.0)


#: servers up to which Erlang B is computed by its recursion (above: a log-space sum)
RECURSION_MAX = 64


def erlang_b(c: int, a: float) -> float:
    """Erlang B blocking probability of ``c`` servers at offered load ``a`` Erlangs. Up to
    RECURSION_MAX servers the stable recursion ``B(k) = a B(k−1) / (k + a B(k−1))``;
    above, ``B = pmf(c) / Σ_{k≤c} pmf(k)`` of Poisson(a) summed in log space relative to
    pmf(c) over the k within 14 standard deviations (and 30) of the mode or c — terms
    beyond are below 1e-40 of the sum — so the cost grows as √a, not a."""
    if c <= RECURSION_MAX:
        b = 1.0
        for k in range(1, c + 1):
            x = a * b
            b = x / (k + x)
        return b
    lo = max(0, min(c, math.floor(a)) - math.ceil(14 * math.sqrt(a + 1)) - 30)
    j = np.arange(lo + 1, c + 1, dtype=float)
    # log pmf(k) − log pmf(c) = −Σ_{j=k+1..c} log(a/j), for k = lo..c
    steps = np.log(a / j)
    rel = -np.concatenate([np.cumsum(steps[::-1])[::-1], [0.0]])
    m = float(np.max(rel))
    return math.exp(-m) / float(np.sum(np.exp(rel - m)))


def erlang_b_table(a: float, c_max: int) -> list[float]:
    """Erlang B for k = 0..c_max servers at offered load ``a`` (the recursion; O(c_max))."""
    b = [1.0]
    for k in range(1, c_max + 1):
        x = a * b[-1]
        b.append(x / (k + x))
    return b


def erlang_c_from_b(b: float, c: int, a: float) -> float:
    """Erlang C, the probability an arrival waits, from Erlang B of the same (c, a);
    1 when the queue is unstable (a >= c)."""
    rho = a / c
    if rho >= 1:
        return 1.0
    return b / (1.0 - rho * (1.0 - b))


def erlang_c(c: int, a: float) -> float:
    """Erlang C: probability that an arrival waits in an M/M/c queue with ``c`` servers
    and offered load ``a = λ/μ`` Erlangs (1 when unstable)."""
    return erlang_c_from_b(erlang_b(c, a), c, a)


@dataclass(frozen=True)
class QueueResult:
    """One analytic queue at one arrival rate: servers, utilization, probability of
    waiting, mean wait (s) and whether it is stable."""

    servers: int
    utilization: float
    p_wait: float
    wait_mean_s: float
    stable: bool

    def wait_quantile(self, q: float) -> float:
        """Seconds: the q-quantile (0 < q < 1) of the wait (atom at 0 plus an exponential
        tail; see the module docstring); inf when unstable."""
        if not self.stable:
            return math.inf
        if self.p_wait <= 1 - q or self.wait_mean_s <= 0:
            return 0.0
        return self.wait_mean_s / self.p_wait * math.log(self.p_wait / (1 - q))

    def wait_tail(self, t: float) -> float:
        """P(W > t) for t seconds."""
        if not self.stable:
            return 1.0
        if t < 0:
            return 1.0
        if self.p_wait <= 0 or self.wait_mean_s <= 0:
            return 0.0
        return self.p_wait * math.exp(-t * self.p_wait / self.wait_mean_s)


def mgc(lam: float, mix: Mix, c: int) -> QueueResult:
    """The M/G/c queue with arrival rate ``lam`` (requests/s), service mix ``mix`` and ``c``
    servers: Erlang C with the Allen–Cunneen correction (exact Pollaczek–Khinchine for
    c = 1)."""
    es = mix.mean
    a = lam * es
    rho = a / c
    if rho >= 1.0:
        return QueueResult(c, rho, 1.0, math.inf, False)
    if c == 1:   # Pollaczek–Khinchine, exact for M/G/1
        return QueueResult(1, rho, rho, lam * mix.second_moment / (2 * (1 - rho)), True)
    pw = erlang_c_from_b(erlang_b(c, a), c, a)
    wq = pw * es / (c - a) * (1.0 + mix.cv2) / 2.0
    return QueueResult(c, rho, pw, wq, True)


def latency_tail(qr: QueueResult, mix: Mix, x: float) -> float:
    """P(latency > x): Σ_k p_k P(W > x − S_k), for x seconds."""
    return math.fsum(p * (1.0 if x < s else qr.wait_tail(x - s)) for p, s in zip(mix.p, mix.s))


def latency_quantile(qr: QueueResult, mix: Mix, q: float) -> float:
    """Seconds: the q-quantile of the end-to-end latency (wait + service) over the class
    mix; inf when unstable. Bisection to 1e-9 relative, exact where it lands on a
    class's service time (a jump of the distribution)."""
    if not qr.stable:
        return math.inf
    lo = 0.0
    hi = max(mix.s) + qr.wait_quantile(1 - (1 - q) / 2) + 1.0
    while latency_tail(qr, mix, hi) > 1 - q:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if latency_tail(qr, mix, mid) > 1 - q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-9 * hi:
            break
    for s in mix.s:      # the quantile sits on a jump of the distribution (a class's service time)
        if lo <= s <= hi:
            return s
    return hi


def summary(qr: QueueResult, mix: Mix) -> dict:
    """{"wait_s": {mean, p50, p95, p99}, "latency_s": {mean, p50, p95, p99}} in seconds."""
    return {"wait_s": {"mean": qr.wait_mean_s, **{f"p{p}": qr.wait_quantile(p / 100) for p in (50, 95, 99)}},
            "latency_s": {"mean": qr.wait_mean_s + mix.mean,
                          **{f"p{p}": latency_quantile(qr, mix, p / 100) for p in (50, 95, 99)}}}


def fewest_servers(lam: float, mix: Mix, ok, c_min: int = 1,
                   c_max: int = MAX_SERVERS) -> tuple[int, QueueResult] | None:
    """The fewest servers c in [c_min, c_max] whose queue satisfies ``ok(QueueResult)``
    (a property monotone in c), with its result; None when even c_max does not.
    Bisection between the stability bound and a bound that doubles until it holds."""
    a = lam * mix.mean
    lo = max(c_min, math.floor(a) + 1)
    if lo > c_max:
        return None
    hi = min(c_max, max(lo, math.ceil(a + 6 * math.sqrt(a) + 8)))
    while not ok(mgc(lam, mix, hi)):
        if hi >= c_max:
            return None
        lo, hi = hi + 1, min(c_max, math.ceil(a + 2 * (hi - a)) + 1)   # double the margin above the load
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mgc(lam, mix, mid)):
            hi = mid
        else:
            lo = mid + 1
    return hi, mgc(lam, mix, hi)
