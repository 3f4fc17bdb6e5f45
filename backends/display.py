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


def fmt_time(v) -> str:
    """Seconds as s / ms / min, or '-'."""
    if v is None:
        return "-"
    if v >= 120:
        return f"{v / 60:.3g} min"
    if v >= 1:
        return f"{v:.3g} s"
    return f"{v * 1e3:.3g} ms"


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
    import rich.console, rich.table  # late import: rich loads in ~0.1 s; only table output needs it
    return rich.console.Console, rich.table.Table
