"""The traffic file of ``wanir plan``: request classes, arrivals, the SLO and the candidate
deployments, read through the bounded YAML loader and checked key by key.

Every value is checked (type, finiteness, range, size) before any arithmetic or
allocation; a bad one raises :class:`wanir.errors.ConfigError` with one line that names
the key (``classes[2].share``) and what is allowed. The limits are the constants below
(documented in docs/capacity.md). :func:`load` returns a frozen :class:`Traffic`.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from wanir.errors import ConfigError
from wanir.safeio import load_yaml, read_text_file, short

MiB = 2**20
#: size cap of a traffic YAML file (bytes)
MAX_TRAFFIC_BYTES = 1 * MiB
#: size cap of a CSV arrival trace (bytes)
MAX_TRACE_BYTES = 32 * MiB
#: rows of a CSV arrival trace
MAX_TRACE_ROWS = 1_000_000
#: request classes
MAX_CLASSES = 16
#: overrides per class, and characters per override
MAX_OVERRIDES = 64
MAX_OVERRIDE_CHARS = 200
#: characters of a class name
MAX_NAME_CHARS = 64
#: explicit deployments
MAX_DEPLOYMENTS = 64
#: estimates an explicit-deployment plan may need (classes × deployments × batch sizes)
MAX_ESTIMATES = 512
#: simulated requests per candidate (replications × requests)
MAX_SIM_TOTAL = 1_000_000
#: arrival rate bounds, requests per hour (1e5/h = 2.4 million a day)
MAX_RATE_PER_HOUR = 1e5
#: videos per batch a deployment may try
MAX_BATCH = 16
#: devices per replica
MAX_DEVICES_PER_REPLICA = 64
#: seconds: an SLO bound, a cold start, a trace time (one year)
MAX_SECONDS = 365 * 86400.0
#: simulation knobs
MAX_REPLICATIONS = 50
MAX_SIM_REQUESTS = 200_000
#: shares may miss 1 by this much before they are normalized with a note
SHARE_TOLERANCE = 1e-6
#: allowed latency percentiles of the SLO
PERCENTILES = (50, 90, 95, 99)

_TOP_KEYS = ("classes", "arrivals", "slo", "deployments", "prices", "cold_start_s", "batching", "simulation")


@dataclass(frozen=True)
class RequestClass:
    """One request class: its name, the wanir overrides that describe one request, and
    its share of the traffic (a fraction, the shares sum to 1)."""

    name: str
    overrides: tuple
    share: float


@dataclass(frozen=True)
class Deployment:
    """One candidate deployment given in the traffic file: hardware name, devices per
    replica, plan (a name as ``parallel=`` takes it, or a label such as ``cfg2+ulysses2``),
    videos per batch, and cold-start seconds (None: derived)."""

    hardware: str
    devices: int
    plan: str = "single"
    batch: int = 1
    cold_start_s: float | None = None


@dataclass(frozen=True)
class Trace:
    """A recorded arrival trace: seconds since the trace start (sorted) and the class index
    of each request."""

    path: str
    times: tuple
    classes: tuple

    @property
    def duration_s(self) -> float:
        """Seconds from the trace start to its last arrival (at least one second)."""
        return max(1.0, float(self.times[-1])) if self.times else 1.0


@dataclass(frozen=True)
class Simulation:
    """Simulation knobs: seed, replications, requests per replication, warm-up fraction."""

    seed: int = 0
    replications: int = 5
    requests: int = 20_000
    warmup: float = 0.1


@dataclass(frozen=True)
class Traffic:
    """A checked traffic file. ``rate_per_hour``: the mean arrival rate (requests/hour);
    ``profile``: 24 hourly weights normalized to mean 1 (flat when none was given), so the
    rate in hour h is ``rate_per_hour * profile[h]``; ``trace``: a recorded trace instead of
    Poisson arrivals; ``slo_percentile`` / ``slo_latency_s``: the SLO (None: no SLO, the
    queue only has to be stable); ``notes``: what was adjusted (normalized shares)."""

    classes: tuple
    rate_per_hour: float
    profile: tuple
    slo_percentile: int | None = None
    slo_latency_s: float | None = None
    deployments: tuple = ()
    prices: tuple = ()
    cold_start_s: float | None = None
    max_batch: int = 1
    trace: Trace | None = None
    simulation: Simulation = field(default_factory=Simulation)
    notes: tuple = ()
    source: str = "<traffic>"

    @property
    def shares(self) -> tuple:
        """Class shares (fractions summing to 1)."""
        return tuple(c.share for c in self.classes)

    @property
    def peak_hour(self) -> int:
        """The hour of the day (0-23) with the highest arrival rate."""
        return max(range(24), key=lambda h: self.profile[h])

    @property
    def peak_rate_per_hour(self) -> float:
        """Arrival rate at the peak hour (requests/hour)."""
        return self.rate_per_hour * self.profile[self.peak_hour]

    def hourly_rates(self) -> tuple:
        """The arrival rate of each hour of the day (requests/hour, 24 floats)."""
        return tuple(self.rate_per_hour * w for w in self.profile)

    def to_dict(self) -> dict:
        """Plain data (the ``traffic`` object of ``wanir plan --format json``)."""
        return {"source": self.source,
                "classes": [{"name": c.name, "overrides": list(c.overrides), "share": c.share} for c in self.classes],
                "rate_per_hour": self.rate_per_hour, "rate_per_day": 24 * self.rate_per_hour,
                "peak_hour": self.peak_hour, "peak_rate_per_hour": self.peak_rate_per_hour,
                "profile": list(self.profile),
                "trace": None if self.trace is None else {"path": self.trace.path, "requests": len(self.trace.times),
                                                          "duration_s": self.trace.duration_s},
                "slo": None if self.slo_latency_s is None else {"percentile": self.slo_percentile,
                                                                  "latency_s": self.slo_latency_s},
                "prices": dict(self.prices), "cold_start_s": self.cold_start_s, "max_batch": self.max_batch,
                "simulation": {"seed": self.simulation.seed, "replications": self.simulation.replications,
                               "requests": self.simulation.requests, "warmup": self.simulation.warmup},
                "notes": list(self.notes)}


# ----------------------------------------------------------------------------- checks


def _fail(key: str, what: str, got=None) -> ConfigError:
    tail = "" if got is None else f", got {short(got, 60)}"
    return ConfigError(f"traffic {key}: {what}{tail}")


def _mapping(v, key: str, allowed) -> dict:
    if not isinstance(v, dict):
        raise _fail(key, "must be a mapping", type(v).__name__)
    bad = [k for k in v if not isinstance(k, str) or k not in allowed]
    if bad:
        name = bad[0][:40] if isinstance(bad[0], str) and bad[0].isprintable() else short(bad[0], 40)
        raise _fail(f"{key}.{name}" if key else name,
                    f"unknown key; allowed: {', '.join(allowed)}")
    return v


def number(v, key: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """``v`` as a finite float in [lo, hi] (or (lo, hi] with ``lo_open``); ConfigError naming ``key``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(key, f"must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]", v)
    if isinstance(v, int) and abs(v) > 10**18:
        raise _fail(key, f"must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]", v)
    f = float(v)
    if not math.isfinite(f) or f > hi or f < lo or (lo_open and f == lo):
        raise _fail(key, f"must be a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}]", v)
    return f


def integer(v, key: str, lo: int, hi: int) -> int:
    """``v`` as a Python int in [lo, hi]; ConfigError naming ``key``."""
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _fail(key, f"must be an integer in [{lo}, {hi}]", v)
    return int(v)


def _string(v, key: str, n: int, pattern: str | None = None) -> str:
    if not isinstance(v, str) or not v or len(v) > n or (pattern and not re.fullmatch(pattern, v)):
        extra = f" matching {pattern}" if pattern else ""
        raise _fail(key, f"must be a non-empty string of at most {n} characters{extra}", v)
    return v


def _list(v, key: str, n: int, lo: int = 1) -> list:
    if not isinstance(v, list):
        raise _fail(key, f"must be a list of {lo} to {n} items", type(v).__name__)
    if not lo <= len(v) <= n:
        raise _fail(key, f"must be a list of {lo} to {n} items", f"{len(v)} items")
    return v


def _classes(v) -> tuple[tuple, list]:
    items = _list(v, "classes", MAX_CLASSES)
    out, names, notes = [], set(), []
    for i, c in enumerate(items):
        k = f"classes[{i}]"
        c = _mapping(c, k, ("name", "overrides", "share"))
        name = _string(c.get("name", f"class{i}"), f"{k}.name", MAX_NAME_CHARS, r"[A-Za-z0-9_.\-]+")
        if name in names:
            raise _fail(f"{k}.name", "must be unique among the classes", name)
        names.add(name)
        ov = _list(c.get("overrides", []), f"{k}.overrides", MAX_OVERRIDES, lo=0)
        ovs = tuple(_string(o, f"{k}.overrides[{j}]", MAX_OVERRIDE_CHARS, r"\+{0,2}[A-Za-z0-9_.\-]+=[^\n\r]*")
                    for j, o in enumerate(ov))
        for j, o in enumerate(ovs):
            key = o.lstrip("+").split("=")[0]
            if key.split(".")[0] in ("hardware", "parallel"):
                raise _fail(f"{k}.overrides[{j}]", "a class describes a request; hardware and parallel plans "
                                                   "belong in deployments or --hardware/--devices", o)
        if "share" not in c and len(items) > 1:
            raise _fail(f"{k}.share", "is required when there is more than one class (a fraction in (0, 1])")
        share = number(c.get("share", 1.0), f"{k}.share", 0.0, 1.0, lo_open=True)
        out.append(RequestClass(name, ovs, share))
    total = math.fsum(c.share for c in out)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        notes.append(f"class shares summed to {total:.6g}; normalized to 1")
        out = [RequestClass(c.name, c.overrides, c.share / total) for c in out]
    return tuple(out), notes


def _profile(v) -> tuple:
    items = _list(v, "arrivals.profile", 24, lo=24)
    w = [number(x, f"arrivals.profile[{h}]", 0.0, 1e6) for h, x in enumerate(items)]
    s = math.fsum(w)
    if not s > 0:
        raise _fail("arrivals.profile", "needs at least one hour with a weight > 0 (24 non-negative weights)")
    return tuple(24 * x / s for x in w)


def read_trace(path: str, base: Path, class_names: list[str]) -> Trace:
    """Read a CSV arrival trace (header ``time_s,class``; ``time_s`` seconds since the trace
    start, non-decreasing; ``class`` a class name), bounded to MAX_TRACE_BYTES and
    MAX_TRACE_ROWS; returns a :class:`Trace`. ConfigError naming the row on anything else."""
    p = Path(path)
    if not p.is_absolute():
        p = base / p
    text = read_text_file(p, "traffic trace", cap=MAX_TRACE_BYTES)
    n = text.count("\n")
    if n > MAX_TRACE_ROWS + 1:      # before splitting: no list of millions of lines
        raise _fail("arrivals.trace", f"{p}: at most {MAX_TRACE_ROWS} rows are read", f"{n} lines")
    lines = text.splitlines()
    if not lines:
        raise _fail("arrivals.trace", "is empty; write a header time_s,class and one row per request")
    head = [h.strip() for h in lines[0].split(",")]
    if head != ["time_s", "class"]:
        raise _fail("arrivals.trace", f"{p}: the header must be exactly time_s,class", lines[0])
    if len(lines) - 1 > MAX_TRACE_ROWS:
        raise _fail("arrivals.trace", f"{p}: at most {MAX_TRACE_ROWS} rows are read", f"{len(lines) - 1} rows")
    index = {n: i for i, n in enumerate(class_names)}
    times, cls = [], []
    last = 0.0
    for r, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",", 2)
        if len(parts) != 2:
            raise _fail("arrivals.trace", f"{p} line {r}: two columns time_s,class", line)
        t = _trace_time(parts[0], p, r)
        if t < last:
            raise _fail("arrivals.trace", f"{p} line {r}: time_s must not decrease (sort the trace)", parts[0])
        c = parts[1].strip()
        if c not in index:
            raise _fail("arrivals.trace", f"{p} line {r}: class must be one of {', '.join(class_names)[:200]}", c)
        last = t
        times.append(t)
        cls.append(index[c])
    if len(times) < 2:
        raise _fail("arrivals.trace", f"{p}: needs at least 2 requests", f"{len(times)}")
    return Trace(str(p), tuple(times), tuple(cls))


def _trace_time(s: str, p, r: int) -> float:
    s = s.strip()
    try:
        t = float(s) if len(s) <= 32 else math.nan
    except ValueError:
        t = math.nan
    if not math.isfinite(t) or not 0 <= t <= MAX_SECONDS:
        raise _fail("arrivals.trace", f"{p} line {r}: time_s must be a finite number of seconds in "
                                      f"[0, {MAX_SECONDS:g}]", s)
    return t


def _arrivals(v, base: Path, class_names) -> tuple[float, tuple, Trace | None]:
    v = _mapping(v, "arrivals", ("rate_per_hour", "rate_per_day", "profile", "trace", "process"))
    proc = v.get("process", "poisson")
    if proc != "poisson":
        raise _fail("arrivals.process", "allowed: poisson (or give a trace)", proc)
    given = [k for k in ("rate_per_hour", "rate_per_day", "trace") if k in v]
    if len(given) != 1:
        raise _fail("arrivals", "give exactly one of rate_per_hour, rate_per_day or trace",
                    ", ".join(given) or "none")
    if "trace" in v:
        if "profile" in v:
            raise _fail("arrivals.profile", "a trace carries its own time profile; give one or the other")
        tr = read_trace(_string(v["trace"], "arrivals.trace", 4096), base, class_names)
        # the trace is the traffic of its days: hour-of-day counts averaged over the days it spans
        days = max(1, math.ceil(tr.duration_s / 86400.0))
        hourly = [0] * 24
        for t in tr.times:
            hourly[int(t // 3600) % 24] += 1
        rate = sum(hourly) / (24 * days)
        number(rate * max(hourly) * 24 / sum(hourly), "arrivals.trace (its peak-hour rate per hour)", 0.0,
               MAX_RATE_PER_HOUR, lo_open=True)
        return rate, tuple(24 * h / sum(hourly) for h in hourly), tr
    if "rate_per_hour" in v:
        rate = number(v["rate_per_hour"], "arrivals.rate_per_hour", 0.0, MAX_RATE_PER_HOUR, lo_open=True)
    else:
        rate = number(v["rate_per_day"], "arrivals.rate_per_day", 0.0, 24 * MAX_RATE_PER_HOUR, lo_open=True) / 24
    prof = _profile(v["profile"]) if "profile" in v else (1.0,) * 24
    if rate * max(prof) > MAX_RATE_PER_HOUR:
        raise _fail("arrivals", f"the peak-hour rate must be at most {MAX_RATE_PER_HOUR:g} requests/hour",
                    f"{rate * max(prof):.6g}")
    return rate, prof, None


def _slo(v) -> tuple[int | None, float | None]:
    if v is None:
        return None, None
    v = _mapping(v, "slo", ("percentile", "latency_s"))
    if "latency_s" not in v:
        raise _fail("slo.latency_s", "is required (seconds, end to end: queueing + generation)")
    p = v.get("percentile", 95)
    if isinstance(p, bool) or p not in PERCENTILES:
        raise _fail("slo.percentile", f"allowed: {', '.join(map(str, PERCENTILES))}", p)
    return int(p), number(v["latency_s"], "slo.latency_s", 0.0, MAX_SECONDS, lo_open=True)


def _deployments(v) -> tuple:
    items = _list(v, "deployments", MAX_DEPLOYMENTS)
    out = []
    for i, d in enumerate(items):
        k = f"deployments[{i}]"
        d = _mapping(d, k, ("hardware", "devices", "plan", "batch", "cold_start_s"))
        if "hardware" not in d:
            raise _fail(f"{k}.hardware", "is required (a hardware name, see `wanir hardware`)")
        hw = _string(d["hardware"], f"{k}.hardware", 64, r"[A-Za-z0-9_.\-]+")
        n = integer(d.get("devices", 1), f"{k}.devices", 1, MAX_DEVICES_PER_REPLICA)
        plan = _string(d.get("plan", "single"), f"{k}.plan", 64, r"[a-z0-9+]+")
        b = integer(d.get("batch", 1), f"{k}.batch", 1, MAX_BATCH)
        cs = d.get("cold_start_s")
        cs = None if cs is None else number(cs, f"{k}.cold_start_s", 0.0, 86400.0)
        out.append(Deployment(hw, n, plan, b, cs))
    return tuple(out)


def _prices(v) -> tuple:
    v = v or {}
    if not isinstance(v, dict) or len(v) > 256:
        raise _fail("prices", "must be a mapping of at most 256 HARDWARE: USD_PER_GPU_HOUR entries")
    out = {}
    for name, p in v.items():
        name = _string(name, "prices", 64, r"[A-Za-z0-9_.\-]+")
        out[name] = number(p, f"prices.{name}", 0.0, 1e6)
    return tuple(sorted(out.items()))


def _simulation(v) -> Simulation:
    v = _mapping(v or {}, "simulation", ("seed", "replications", "requests", "warmup"))
    d = Simulation()
    out = Simulation(integer(v.get("seed", d.seed), "simulation.seed", 0, 2**32 - 1),
                     integer(v.get("replications", d.replications), "simulation.replications", 2, MAX_REPLICATIONS),
                     integer(v.get("requests", d.requests), "simulation.requests", 1000, MAX_SIM_REQUESTS),
                     number(v.get("warmup", d.warmup), "simulation.warmup", 0.0, 0.5))
    if out.replications * out.requests > MAX_SIM_TOTAL:
        raise _fail("simulation", f"replications × requests must be at most {MAX_SIM_TOTAL}",
                    out.replications * out.requests)
    return out


def from_mapping(doc, source: str = "<traffic>", base: str | os.PathLike = ".") -> Traffic:
    """A checked :class:`Traffic` from the parsed YAML mapping ``doc`` (``base``: the
    directory a relative trace path is read from). ConfigError (one line naming the key)
    on anything not allowed."""
    doc = _mapping(doc, "", _TOP_KEYS) if doc is not None else None
    if not doc:
        raise ConfigError(f"traffic {source}: empty; give at least classes and arrivals (docs/capacity.md)")
    for k in ("classes", "arrivals"):
        if k not in doc:
            raise _fail(k, "is required (docs/capacity.md)")
    classes, notes = _classes(doc["classes"])
    rate, prof, trace = _arrivals(doc["arrivals"], Path(base), [c.name for c in classes])
    pct, lat = _slo(doc.get("slo"))
    deps = _deployments(doc["deployments"]) if doc.get("deployments") is not None else ()
    n_est = sum(len(classes) * (2 if d.batch > 1 else 1) for d in deps)
    if n_est > MAX_ESTIMATES:
        raise _fail("deployments", f"classes × deployments (× 2 with a batch) must be at most {MAX_ESTIMATES} "
                                   f"estimates", n_est)
    cs = doc.get("cold_start_s")
    cs = None if cs is None else number(cs, "cold_start_s", 0.0, 86400.0)
    b = _mapping(doc.get("batching") or {}, "batching", ("max_batch",))
    max_batch = integer(b.get("max_batch", 1), "batching.max_batch", 1, MAX_BATCH)
    if trace is not None:
        notes.append(f"arrivals replayed from the trace {trace.path} ({len(trace.times)} requests); class shares "
                     f"taken from the file, the trace's own classes are used in the simulation")
    return Traffic(classes, rate, prof, pct, lat, deps, _prices(doc.get("prices")), cs, max_batch, trace,
                   _simulation(doc.get("simulation")), tuple(notes), source)


def load(path: str | os.PathLike) -> Traffic:
    """Read and check the traffic YAML file ``path`` (a regular file of at most
    MAX_TRAFFIC_BYTES); returns a :class:`Traffic`."""
    text = read_text_file(path, "traffic file", cap=MAX_TRAFFIC_BYTES)
    try:
        doc = load_yaml(text, os.fspath(path), max_nodes=20_000, max_depth=16)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"traffic {os.fspath(path)}{where}: not valid YAML "
                          f"({short(getattr(e, 'problem', None) or e, 80)})") from None
    return from_mapping(doc, os.fspath(path), Path(path).parent)
