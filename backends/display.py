"""What every view shows the same way: counts, bytes, times and shapes written for people
(``fmt_*``), and the per-node figures a diagram or a table reads off an annotated node
(``node_*``). The diagram (graphviz), the reports and the web app share these."""
from __future__ import annotations

from wanir.graph import Node


def fmt_count(v) -> str:
    """A count in engineering units (1.23 P), or '-' for None."""
    if v is None:
        return "-"
    for unit, scale in (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return str(v)


def fmt_bytes(v) -> str:
    """Bytes in binary units (GiB), or '-'."""
    if v is None:
        return "-"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(v) >= scale:
            x = v / scale
            return f"{x:.0f} {unit}" if abs(x) >= 100 else f"{x:.3g} {unit}"
    return f"{v} B"


#: time units of :func:`fmt_time`: (name, seconds), smallest first
TIME_UNITS = (("µs", 1e-6), ("ms", 1e-3), ("s", 1.0), ("min", 60.0), ("h", 3600.0), ("d", 86400.0))
#: a value is shown in the largest unit it reaches this many times (120 s → 2 min; 119 s stays s)
_UNIT_SWITCH = {"µs": 0, "ms": 1, "s": 1, "min": 2, "h": 2, "d": 2}


def _sig3(x: float) -> str:
    """``x`` with three significant digits and never in exponent notation (1234 → '1,234')."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def time_unit(v: float) -> tuple[str, float]:
    """(unit name, seconds per unit) :func:`fmt_time` shows ``v`` seconds in: the largest of
    µs, ms, s, min, h, d that ``v`` reaches at least twice (once for ms and s)."""
    unit = TIME_UNITS[0]
    for name, scale in TIME_UNITS:
        if abs(v) >= _UNIT_SWITCH[name] * scale:
            unit = (name, scale)
    return unit


def fmt_time(v) -> str:
    """Seconds as a human duration with three significant digits: µs / ms / s / min / h / d
    (``142,920`` s → '39.7 h'; never exponent notation), '-' for None. The one formatter of
    durations: every table, caption and warning uses it (or :func:`fmt_time_in` for a column)."""
    if v is None:
        return "-"
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    if v == 0:
        return "0 s"
    name, scale = time_unit(v)
    return f"{_sig3(v / scale)} {name}"


def column_time_unit(values) -> tuple[str, float]:
    """The one unit (name, seconds) for a column of durations in seconds: the unit
    :func:`fmt_time` would choose for the column's median value (s when it is empty)."""
    vals = sorted(v for v in values if v is not None and v == v)
    if not vals:
        return "s", 1.0
    return time_unit(vals[len(vals) // 2])


def fmt_time_in(v, unit: tuple[str, float]) -> str:
    """``v`` seconds as a number of ``unit`` (from :func:`column_time_unit`), without the
    unit's name (the column header carries it); three significant digits, '-' for None."""
    if v is None:
        return "-"
    x = v / unit[1]
    return _sig3(x) if abs(x) >= 0.01 or x == 0 else f"{x:.2g}"


def fmt_time_range_in(v, rng, unit: tuple[str, float]) -> str:
    """``v`` seconds and its range as numbers of a column's ``unit`` (from
    :func:`column_time_unit`), the unit's name left to the header: "30.6 (28.3–32.4)"; just
    :func:`fmt_time_in` when ``rng`` ([low, high] seconds) is None."""
    if v is None or rng is None:
        return fmt_time_in(v, unit)
    lo, hi = (fmt_time_in(x, unit) for x in rng)
    return f"{fmt_time_in(v, unit)} ({lo}–{hi})"


def fmt_time_range(v, rng) -> str:
    """Seconds with their range in the same unit: "17.4 min (16.1–18.9)"; just the time
    when ``rng`` ([low, high] seconds, backends/error_range.py) is None."""
    if v is None or rng is None:
        return fmt_time(v)
    unit = time_unit(v)       # the unit fmt_time shows ``v`` in
    lo, hi = (fmt_time_in(x, unit) for x in rng)
    return f"{fmt_time(v)} ({lo}–{hi})"


def fmt_shape(shape) -> str:
    """A shape as ``(1, 75600, 5120)`` written compactly: ``1×75600×5120``."""
    return "×".join(str(d) for d in shape) if shape else "scalar"


def node_time(n: Node) -> float | None:
    """Seconds of one execution of ``n`` (``costs['time_s']``), or None when not annotated."""
    t = n.costs.get("time_s")
    return float(t) if t is not None else None


def node_flops(n: Node) -> int:
    """FLOPs (tensor + vector) of one execution of ``n``, an int (0 when not annotated)."""
    return int(n.costs.get("tensor_flops") or 0) + int(n.costs.get("vector_flops") or 0)


def node_bytes(n: Node) -> int | None:
    """Bytes one execution of ``n`` moves (``costs['bytes']``, else bytes read + written),
    or None when the bytes pass has not run."""
    c = n.costs
    if c.get("bytes") is not None:
        return int(c["bytes"])
    if c.get("bytes_read") is not None or c.get("bytes_written") is not None:
        return int(c.get("bytes_read") or 0) + int(c.get("bytes_written") or 0)
    return None


def rich_table() -> tuple[type, type]:
    """rich's ``(Console, Table)`` classes, imported on first use (rich loads in about 0.1 s
    and only table output needs it)."""
    from rich import console, table  # late import: rich loads in ~0.1 s; only table output needs it
    return console.Console, table.Table
