"""``wanir validate``: estimate published (or your own) measured runs and print the error.

A validation set is a CSV file; lines starting with ``#`` are comments. Columns:

- ``overrides`` (required): the run's configuration as space-separated Hydra overrides,
  exactly as on the ``wanir estimate`` command line (``model=... hardware=...
  parallel=fsdp+ulysses parallel.degree=8``);
- ``measured_s`` (required): the measured seconds per video;
- ``measured_peak_gb`` (optional): the measured peak GPU memory per device, in GiB, as the
  process holds it (``nvidia-smi``: the allocator's reserve + the CUDA context);
- ``measured_reserved_gb`` (optional): ``torch.cuda.max_memory_reserved()`` per device, GiB;
- ``measured_allocated_gb`` (optional): ``torch.cuda.max_memory_allocated()`` per device, GiB;
- ``interconnect`` (optional): ``nvlink`` or ``pcie``, how the run's GPUs talked; must agree
  with the hardware entry the overrides name (a GPU-GPU link or not);
- ``cards_per_node`` (optional): GPUs per node, an integer in [1, 64]; sets
  ``parallel.gpus_per_node`` unless the overrides do;
- ``label`` (optional): a name for the row (default: its line number); control characters
  in it are shown as escapes (``\x1b``), never sent to the terminal;
- ``notes`` (optional): free text, not read.

Every row is put in its error class (backends/error_range.py); ``--class`` keeps the rows of
the classes it matches and ``--by-class`` prints the class table.

Each row is estimated with :func:`wanir.estimate`; a plan on several devices (or with
FSDP) is costed per device with :func:`wanir.multi_device_cost`. ``--runtime`` appends
``runtime=NAME`` to every row. The shipped set (``wanir/data/validation/wan2.1-readme.csv``)
is the Wan2.1 README's table of 28 runs; its header comments give the mapping of each row and
the ambiguities.

Input limits: at most :data:`MAX_FILE_BYTES` bytes and :data:`MAX_ROWS` rows; a row whose
overrides do not load, or whose measurements are not finite numbers in [:data:`MIN_MEASURED`, 1e9], is a one-line
error naming the file, the line and the column.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import shlex
import statistics
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from wanir import hardware as hwlib
from wanir.errors import ConfigError, WanirError
from wanir.estimate import evaluate
from wanir.resolve import resolve
from wanir.safeio import printable, short

from . import error_range
from .display import rich_table

MAX_FILE_BYTES = 1 << 20
MAX_ROWS = 500
MAX_FIELD = 2000
#: smallest measurement accepted (seconds, or GiB of peak memory): a smaller one is a typo or
#: a subnormal that would print an infinite error
MIN_MEASURED = 1e-3
FORMATS = ("table", "json", "md")
SHIPPED = Path(__file__).resolve().parent.parent / "wanir" / "data" / "validation" / "wan2.1-readme.csv"
COLUMNS = ("label", "overrides", "measured_s", "measured_peak_gb", "measured_reserved_gb", "measured_allocated_gb",
           "interconnect", "cards_per_node", "notes")
INTERCONNECTS = ("nvlink", "pcie")
MAX_CARDS_PER_NODE = 64
MAX_CLASS_PATTERN = 200


class ValidationError(ConfigError):
    """A validation CSV that cannot be read; the message names the file, line and column."""


@dataclass(frozen=True)
class Row:
    """One measured run: ``line`` in the file, ``label``, ``overrides`` (tuple of strings),
    ``measured_s`` (seconds), ``measured_peak_gib``, ``measured_reserved_gib``,
    ``measured_allocated_gib`` (GiB or None), ``interconnect`` ("nvlink", "pcie" or None)."""

    line: int
    label: str
    overrides: tuple
    measured_s: float
    measured_peak_gib: float | None
    measured_reserved_gib: float | None = None
    measured_allocated_gib: float | None = None
    interconnect: str | None = None


def shipped_path() -> Path:
    """The shipped Wan2.1 README validation set (inside the installed package)."""
    try:
        p = Path(str(files("wanir") / "data" / "validation" / "wan2.1-readme.csv"))
        if p.is_file():
            return p
    except Exception:  # pragma: no cover
        pass
    return SHIPPED


def _number(where, key, v, required):
    if v is None or str(v).strip() == "":
        if required:
            raise ValidationError(f"{where}: column '{key}' is empty; it needs a positive number")
        return None
    try:
        x = float(str(v).strip())
    except ValueError:
        raise ValidationError(f"{where}: column '{key}' = {printable(short(str(v), 40))} is not a number") from None
    if not math.isfinite(x) or not MIN_MEASURED <= x <= 1e9:
        raise ValidationError(f"{where}: column '{key}' = {printable(short(str(v), 40))} must be a finite number "
                              f"in [{MIN_MEASURED:g}, 1e9]")
    return x


def read_rows(path) -> list[Row]:
    """Parse a validation CSV (module docstring). Raises ValidationError on a malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"validation file {str(path)[:200]!r}: no such file")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValidationError(f"validation file {p.name}: {size} bytes; at most {MAX_FILE_BYTES} allowed")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError(f"validation file {p.name}: not UTF-8 text") from None
    lines = text.splitlines()
    body = [(i + 1, line) for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    if not body:
        raise ValidationError(f"validation file {p.name}: no header row (columns: {', '.join(COLUMNS)})")
    reader = csv.reader(io.StringIO("\n".join(line for _, line in body)))
    try:
        records = list(reader)
    except csv.Error as e:
        raise ValidationError(f"validation file {p.name}: not a CSV file ({e})") from None
    header = [h.strip() for h in records[0]]
    missing = [c for c in ("overrides", "measured_s") if c not in header]
    if missing:
        raise ValidationError(f"validation file {p.name}: missing column(s) {', '.join(missing)} "
                              f"(columns: {', '.join(COLUMNS)}; overrides and measured_s are required)")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ValidationError(f"validation file {p.name}: unknown column(s) {', '.join(repr(u[:40]) for u in unknown)}"
                              f"; columns: {', '.join(COLUMNS)}")
    if len(records) - 1 > MAX_ROWS:
        raise ValidationError(f"validation file {p.name}: {len(records) - 1} rows; at most {MAX_ROWS} allowed")
    rows = []
    for (lineno, _), rec in zip(body[1:], records[1:]):
        where = f"{p.name} line {lineno}"
        if len(rec) != len(header):
            raise ValidationError(f"{where}: {len(rec)} fields, the header has {len(header)}")
        d = dict(zip(header, rec))
        for k, v in d.items():
            if len(v) > MAX_FIELD:
                raise ValidationError(f"{where}: column '{k}' is longer than {MAX_FIELD} characters")
        try:
            ov = tuple(shlex.split(d["overrides"]))
        except ValueError as e:
            raise ValidationError(f"{where}: column 'overrides' cannot be split ({e})") from None
        if not ov:
            raise ValidationError(f"{where}: column 'overrides' is empty")
        label = printable(d.get("label", "").strip(), 120) or f"line {lineno}"   # no terminal escapes
        link = (d.get("interconnect") or "").strip().lower() or None
        if link is not None and link not in INTERCONNECTS:
            raise ValidationError(f"{where}: column 'interconnect' = {printable(link, 40)!r}; allowed: "
                                  f"{', '.join(INTERCONNECTS)} or empty")
        cards = (d.get("cards_per_node") or "").strip()
        if cards:
            if not (cards.isascii() and cards.isdigit()) or not 1 <= int(cards) <= MAX_CARDS_PER_NODE:
                raise ValidationError(f"{where}: column 'cards_per_node' = {printable(cards, 40)!r} must be an "
                                      f"integer in [1, {MAX_CARDS_PER_NODE}]")
            if not any(o.lstrip("+").startswith("parallel.gpus_per_node=") for o in ov):
                ov = ov + (f"parallel.gpus_per_node={int(cards)}",)
        rows.append(Row(lineno, label, ov, _number(where, "measured_s", d["measured_s"], True),
                        _number(where, "measured_peak_gb", d.get("measured_peak_gb"), False),
                        _number(where, "measured_reserved_gb", d.get("measured_reserved_gb"), False),
                        _number(where, "measured_allocated_gb", d.get("measured_allocated_gb"), False), link))
    return rows


def check_class_pattern(pattern: str) -> str:
    """``pattern`` of ``--class`` checked: a class name ``runtime/topology/tokens/kernel``
    whose parts may be ``*``, or one part alone (``pcie``, ``large``, ``assumed``,
    ``wan-official``). Raises ConfigError naming what is allowed."""
    KERNEL_PROVENANCE, TOKEN_REGIMES, TOPOLOGIES = \
        error_range.KERNEL_PROVENANCE, error_range.TOKEN_REGIMES, error_range.TOPOLOGIES
    allowed = (f"runtime/topology/tokens/kernel with parts or '*' (topology: {', '.join(TOPOLOGIES)}; tokens: "
               f"{', '.join(n for n, _ in TOKEN_REGIMES)}; kernel: {', '.join(KERNEL_PROVENANCE)}), or one part alone")
    if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_CLASS_PATTERN or \
            not re.fullmatch(r"[A-Za-z0-9._*/-]+", pattern):
        raise ConfigError(f"--class {str(pattern)[:40]!r}: expected {allowed}")
    parts = pattern.split("/")
    if len(parts) not in (1, 4):
        raise ConfigError(f"--class {pattern[:40]!r}: {len(parts)} parts; expected {allowed}")
    if len(parts) == 4:
        for part, values, what in zip(parts[1:], (TOPOLOGIES, [n for n, _ in TOKEN_REGIMES], KERNEL_PROVENANCE),
                                      ("topology", "tokens", "kernel")):
            if part != "*" and part not in values:
                raise ConfigError(f"--class {pattern[:40]!r}: {what} {part!r}; allowed: {', '.join(values)} or *")
    return pattern


def class_matches(pattern: str, key: str) -> bool:
    """Whether class name ``key`` matches a checked ``--class`` pattern."""
    parts = key.split("/")
    pat = pattern.split("/")
    if len(pat) == 1:
        return pat[0] in parts
    return all(p == "*" or p == k for p, k in zip(pat, parts))


def estimate_row(row: Row, runtime: str | None = None, config_dir=None) -> dict:
    """Estimate one row; returns {"label", "overrides", "measured_s", "estimated_s",
    "time_error", "measured_peak_gib", "estimated_peak_gib", "peak_error", "devices"} (errors
    as signed fractions: (estimated − measured) / measured), the reserved and allocated
    figures likewise, the row's error "class", the "assumed_share" of its time and its
    "time_range_s"."""
    ov = list(row.overrides) + ([f"runtime={runtime}"] if runtime else [])
    try:
        est = evaluate(resolve(ov, config_dir))   # the one seam, no fit hints: validation compares numbers only
        tot = est.parallel["total"] if est.parallel is not None else est.total
        devices = est.parallel["devices"] if est.parallel is not None else 1
        rng = est.extra["time_range"]["parallel" if est.parallel is not None else "total"]
        if row.interconnect is not None:
            modelled = "nvlink" if hwlib.load(est.hardware).gpu_link_bandwidth else "pcie"
            if modelled != row.interconnect:
                raise ConfigError(f"column 'interconnect' = {row.interconnect} but hardware={est.hardware} is modelled "
                                  f"with {modelled}; name a hardware entry with the interconnect the run used")
    except WanirError as e:
        raise type(e)(f"line {row.line} ({row.label}): {e}") from None
    t = tot["time_s"]
    gib = 2**30

    def err(est_v, meas):
        return None if meas is None or est_v is None else (est_v - meas) / meas
    peak_gib = tot["peak_memory_bytes"] / gib
    res_gib = tot["peak_reserved_bytes"] / gib if tot.get("peak_reserved_bytes") is not None else None
    all_gib = tot["peak_allocated_bytes"] / gib if tot.get("peak_allocated_bytes") is not None else None
    return {"label": row.label, "overrides": " ".join(row.overrides), "devices": devices,
            "measured_s": row.measured_s, "estimated_s": t, "time_error": (t - row.measured_s) / row.measured_s,
            "time_range_s": list(rng["time_range_s"]), "class": rng["time_range_class"],
            "assumed_share": rng["assumed_share"],
            "measured_peak_gib": row.measured_peak_gib, "estimated_peak_gib": peak_gib,
            "peak_error": err(peak_gib, row.measured_peak_gib),
            "measured_reserved_gib": row.measured_reserved_gib, "estimated_reserved_gib": res_gib,
            "reserved_error": err(res_gib, row.measured_reserved_gib),
            "measured_allocated_gib": row.measured_allocated_gib, "estimated_allocated_gib": all_gib,
            "allocated_error": err(all_gib, row.measured_allocated_gib)}


def summary(results: list[dict]) -> dict:
    """Median and worst absolute error of time and of peak memory (fractions; None when no
    row has that measurement), with the label of the worst row."""
    out = {"rows": len(results)}
    for key in ("time_error", "peak_error", "reserved_error", "allocated_error"):
        errs = [(abs(r[key]), r["label"]) for r in results if r[key] is not None]
        name = key.split("_")[0]
        if errs:
            worst = max(errs)
            out[name] = {"median_abs_error": statistics.median(e for e, _ in errs), "worst_abs_error": worst[0],
                         "worst_row": worst[1], "rows": len(errs)}
        else:
            out[name] = None
    return out


def validate(path=None, runtime: str | None = None, config_dir=None, klass: str | None = None) -> dict:
    """Validate the runs of ``path`` (default: the shipped Wan2.1 README set), keeping the
    rows whose error class matches ``klass`` (a ``--class`` pattern). Returns {"file",
    "runtime", "class", "rows": [per-row records of :func:`estimate_row`], "summary",
    "classes": the class table of those rows (backends/error_range.py)}."""
    if klass is not None:
        check_class_pattern(klass)
    p = Path(path) if path else shipped_path()
    rows = read_rows(p)
    results = [estimate_row(r, runtime, config_dir) for r in rows]
    if klass is not None:
        results = [r for r in results if class_matches(klass, r["class"])]
    return {"file": printable(p.name), "runtime": runtime, "class": klass, "rows": results,
            "summary": summary(results), "classes": error_range.build_table(results)}


def _pct(x):
    return "-" if x is None else f"{100 * x:+.0f} %"


def _rows_for_table(res):
    head = ["run", "measured", "estimated", "error", "peak measured", "peak estimated", "error"]
    body = []
    for r in res["rows"]:
        mp = "-" if r["measured_peak_gib"] is None else f"{r['measured_peak_gib']:.1f} GiB"
        body.append([r["label"], f"{r['measured_s']:.1f} s", f"{r['estimated_s']:.1f} s", _pct(r["time_error"]),
                     mp, f"{r['estimated_peak_gib']:.1f} GiB", _pct(r["peak_error"])])
    return head, body


def summary_lines(res) -> list[str]:
    """Plain-text summary lines: median and worst absolute error for time and peak memory."""
    s = res["summary"]
    out = []
    for name, what in (("time", "time"), ("peak", "peak memory"), ("reserved", "reserved memory"),
                       ("allocated", "allocated memory")):
        v = s[name]
        if v is None and name in ("reserved", "allocated"):
            continue
        if v is None:
            out.append(f"{what}: no measurements")
        else:
            out.append(f"{what}: median |error| {100 * v['median_abs_error']:.1f} %, worst {100 * v['worst_abs_error']:.1f} % "
                       f"({v['worst_row']}), over {v['rows']} rows")
    return out


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|")


def _class_rows(res):
    head = ["class", "rows", "error min", "median", "max", "assumed share"]
    def pct1(x):
        return f"{100 * x:+.1f} %"
    body = [[k, str(c["rows"]), pct1(c["error_min"]), pct1(c["error_median"]), pct1(c["error_max"]),
             f"{100 * c['assumed_share']:.0f} %"] for k, c in res["classes"].items()]
    return head, body


def render(res: dict, fmt: str = "table", by_class: bool = False) -> str | None:
    """Render a :func:`validate` result as 'json' or 'md' (a string); 'table' prints a rich
    table and returns None. ``by_class``: the class table instead of the rows."""
    if fmt == "json":
        return json.dumps(res, indent=2)
    head, body = _class_rows(res) if by_class else _rows_for_table(res)
    if fmt == "md":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in body]
        return "\n".join(lines + [""] + summary_lines(res)) + "\n"
    if fmt == "table":
        from rich.markup import escape  # late import: rich only to draw the table (as rich_table)
        Console, Table = rich_table()
        t = Table(title=("error classes" if by_class else "validation") + f": {res['file']}" +
                  (f", runtime={res['runtime']}" if res["runtime"] else "") +
                  (f", class {res['class']}" if res.get("class") else ""))
        for h in head:
            t.add_column(h, justify="left" if h in ("run", "class") else "right")
        for r in body:
            t.add_row(*(escape(c) for c in r))
        con = Console()
        con.print(t)
        for line in summary_lines(res):
            con.print(escape(line))
        return None
    raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")


def write_classes() -> int:
    """Recompute the error-class table from the shipped rows and write it to
    wanir/data/error_classes.yaml (backends/error_range.py); returns the number of classes."""
    res = validate()
    table = error_range.build_table(res["rows"])
    error_range.CLASS_FILE.write_text(error_range.render_yaml(table, res["file"]))
    error_range.reload_classes()   # the next estimate reads the new table
    return len(table)


def worst_time_error(res: dict) -> float:
    """The largest absolute time error of the rows (a fraction)."""
    s = res["summary"]["time"]
    return 0.0 if s is None else s["worst_abs_error"]


def cmd_validate(args) -> int:
    """The ``wanir validate`` command: print the table; exit 1 when ``--fail-above PCT`` is
    given and some row's absolute time error exceeds PCT percent."""

    if args.fail_above is not None and (not math.isfinite(args.fail_above) or args.fail_above < 0):
        raise ConfigError(f"--fail-above {args.fail_above}: must be a percentage >= 0")
    if args.write_classes:
        if args.file or args.runtime or args.klass or args.config_dir:
            raise ConfigError("--write-classes regenerates the shipped class table from the shipped rows as "
                              "shipped; give it alone (no FILE, --runtime, --class or --config-dir)")
        n = write_classes()
        print(f"wrote {n} classes to wanir/data/error_classes.yaml", file=sys.stderr)
        return 0
    res = validate(args.file, args.runtime, args.config_dir, args.klass)
    out = render(res, args.format, args.by_class)
    if out is not None:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    if args.fail_above is not None and 100 * worst_time_error(res) > args.fail_above:
        print(f"wanir: validate: worst time error {100 * worst_time_error(res):.1f} % exceeds "
              f"--fail-above {args.fail_above:g} %", file=sys.stderr)
        return 1
    return 0


def add_parser(sub) -> None:
    """Register ``wanir validate`` on an argparse subparsers object."""
    v = sub.add_parser("validate", help="estimate measured runs (default: the Wan2.1 README table) and print "
                                        "the error per row, median and worst")
    v.add_argument("file", nargs="?", default=None,
                   help="a CSV of measured runs (columns: label, overrides, measured_s, measured_peak_gb, "
                        "measured_reserved_gb, measured_allocated_gb, interconnect, cards_per_node, notes); "
                        "default: the shipped Wan2.1 README set")
    v.add_argument("--runtime", default=None, help="estimate every row under this runtime (wan-official, diffusers)")
    v.add_argument("--format", choices=FORMATS, default="table")
    v.add_argument("--fail-above", type=float, default=None, metavar="PCT",
                   help="exit 1 if some row's absolute time error exceeds PCT percent")
    v.add_argument("--config-dir", default=None, help="your own config directory (searched first)")
    v.add_argument("--class", dest="klass", default=None, metavar="CLASS",
                   help="keep the rows of matching error classes: runtime/topology/tokens/kernel with '*' parts "
                        "(e.g. '*/pcie/*/*'), or one part alone (pcie, large, assumed, wan-official)")
    v.add_argument("--by-class", action="store_true",
                   help="print the error-class table of the rows (docs/time-model.md) instead of the rows")
    v.add_argument("--write-classes", action="store_true",
                   help="regenerate wanir/data/error_classes.yaml from the shipped rows (after a time-model change)")
    v.set_defaults(func=cmd_validate)
