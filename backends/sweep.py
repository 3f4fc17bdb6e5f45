"""Parameter sweeps: Hydra's sweep syntax expanded to a cross product of estimates.

    wanir sweep workload.height=480,720,1080 workload.frames=33,81 hardware=h100-sxm,a100-80gb -o out/

Overrides are parsed with Hydra's override parser, so every Hydra sweep form works:
comma lists (``a=1,2,3``), ``range(start, stop[, step])`` and ``choice(a, b)``. Overrides
without a sweep are applied to every point.

Speed: each point goes through the one seam, resolve → count → time
(:func:`wanir.estimate.evaluate`). Group choices are composed once per distinct combination
(cached); the graph is lowered and counted once per distinct :class:`wanir.scenario.Build`
(cached): points that differ only in what changes time (hardware, timing mode, plan) share
the counted graph and re-run just the timing — they run back to back (:func:`run_order`), so
the count is still in the bounded cache. Worker processes are forked with this process's
imports and caches, take a few points at a time, and collect cyclic garbage every
:data:`COLLECT_EVERY` points instead of on allocation counts. ``benchmarks/bench_sweep.py``
reports where the time goes.

:func:`run_sweep` returns a :class:`SweepResult` whose ``rows`` are the CSV rows (one per
point): every override as given, then per-stage FLOPs, bytes, time and peak activation
memory, then the pipeline totals.
"""
from __future__ import annotations

import csv
import fcntl
import gc
import io
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from wanir import config as _config
from wanir.errors import ConfigError, WanirError
from wanir.hydra_compose import ChoiceSweep, RangeSweep
from wanir.estimate import evaluate
from wanir.limits import MAX_JOBS, MAX_SWEEP_POINTS, cap_jobs, check_int_arg, usable_cpus
from wanir.resolve import resolve_parsed
from wanir.safeio import short
from wanir.safeout import csv_cell, write_output

from .report import heaviest_ops  # noqa: F401  (re-exported: the ops of a point for the roofline chart)
from .roof import hardware_roof
from .workers import fork_pool, quiet_worker

#: per-stage columns, suffixes of ``<stage>.`` (FLOPs are tensor + vector; memory is one invocation's peak)
STAGE_COLUMNS = ("invocations", "tensor_flops", "vector_flops", "flops", "bytes", "time_s", "peak_activation_bytes")
#: pipeline total columns, suffixes of ``total.``
TOTAL_COLUMNS = ("tensor_flops", "vector_flops", "flops", "params", "bytes", "time_s", "peak_memory_bytes")
#: ops kept per hardware for the roofline chart
TOP_OPS = 25


def format_value(v) -> str:
    """A parsed override value written back in override syntax (``true``, ``null``, ``480``)."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    return str(v)


@dataclass
class Axis:
    """One override: its key as written (``+`` prefix kept), the values it takes (parsed and
    as strings) and whether it is swept (more than one value, or a sweep form)."""

    key: str
    values: list
    strings: list[str]
    swept: bool
    is_group: bool

    @property
    def name(self) -> str:
        """The key without a ``+``/``++`` prefix."""
        return self.key.lstrip("+")


@dataclass
class Sweep:
    """A parsed sweep: all axes in the order given; ``points`` is the cross product, each a
    list of ``key=value`` override strings."""

    axes: list[Axis]

    @property
    def swept(self) -> list[Axis]:
        return [a for a in self.axes if a.swept]

    def __len__(self) -> int:
        n = 1
        for a in self.axes:
            n *= len(a.values)
        return n

    def points(self) -> Iterable[list[tuple[Axis, object, str]]]:
        """Each point as a list of (axis, parsed value, value string), axes in order."""
        per_axis = [list(zip(a.values, a.strings)) for a in self.axes]
        for combo in itertools.product(*per_axis):
            yield [(a, v, s) for a, (v, s) in zip(self.axes, combo)]


def parse_sweep(overrides: Iterable[str]) -> Sweep:
    """Parse ``overrides`` (Hydra syntax, sweeps allowed) into a :class:`Sweep`. Raises
    ConfigError naming an override that does not parse or sweeps nothing."""
    overrides = _config.check_overrides(overrides)
    parsed = _config.parse_hydra_overrides(overrides)
    axes = []
    seen = set()
    total = 1
    for raw, ov in zip(overrides, parsed):
        if ov.is_delete():
            raise ConfigError(f"'{raw}': deleting keys is not supported in a sweep")
        key = ov.get_key_element()
        if key.lstrip("+") in seen:
            raise ConfigError(f"'{raw}': key '{key.lstrip('+')}' is given twice")
        seen.add(key.lstrip("+"))
        is_group = ov.key_or_group in _config.GROUPS
        if ov.is_sweep_override():
            total *= sweep_length(raw, ov.value())   # bounded before any value is built
            if total > MAX_SWEEP_POINTS:
                raise ConfigError(f"the sweep has more than {MAX_SWEEP_POINTS} points (at {short(raw, 60)}); "
                                  f"split it into smaller sweeps")
            vals = list(ov.sweep_iterator())
            if not vals:
                raise ConfigError(f"'{raw}': the sweep has no values")
            axes.append(Axis(key, vals, [format_value(v) for v in vals], True, is_group))
        else:
            v = ov.value()
            axes.append(Axis(key, [v], [format_value(v) if is_group or not isinstance(v, str) else v], False,
                             is_group))
    return Sweep(axes)


def sweep_length(raw: str, sweep) -> int:
    """Number of values of one Hydra sweep (``a=1,2``, ``choice(...)``, ``range(...)``) without
    building them; ``interval()`` and ``glob()`` are refused."""
    if isinstance(sweep, ChoiceSweep):
        return len(sweep.list)
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        nums = (start, stop, step)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in nums):
            raise ConfigError(f"{short(raw, 60)}: range() takes finite numbers")
        if step == 0:
            raise ConfigError(f"{short(raw, 60)}: range() step must not be 0")
        n = math.ceil((stop - start) / step)
        if n > MAX_SWEEP_POINTS:
            raise ConfigError(f"{short(raw, 60)}: range() has {n} values; a sweep has at most "
                              f"{MAX_SWEEP_POINTS} points")
        return max(0, n)
    raise ConfigError(f"{short(raw, 60)}: only comma lists, choice() and range() sweeps are supported "
                      f"(interval() and glob() are not)")


class PointComposer:
    """Resolves one sweep point: its overrides (group choices and values, parsed once with
    the sweep) go through :func:`wanir.resolve.resolve_parsed`, which composes each distinct
    tuple of group choices once (cached) and checks every point as ``wanir estimate`` does
    (unknown keys, value schema, the hardware spec, the plan)."""

    def __init__(self, config_dir: str | os.PathLike | None = None):
        self.config_dir = str(config_dir) if config_dir else None
        self.compose_s = 0.0      # seconds spent resolving points
        self.apply_s = 0.0        # (kept for the timing record: resolving includes applying values)

    @staticmethod
    def overrides(point: list[tuple[Axis, object, str]]) -> list:
        """The point's overrides as parsed records (:class:`wanir.config.Override`)."""
        return [_config.Override(f"{a.key}={s}", a.name, s if a.is_group else v, a.key.startswith("+"))
                for a, v, s in point]

    def scenario(self, point: list[tuple[Axis, object, str]]):
        """The resolved, frozen :class:`wanir.scenario.Scenario` of one point."""
        t0 = time.perf_counter()
        sc = resolve_parsed(self.overrides(point), self.config_dir)
        self.compose_s += time.perf_counter() - t0
        return sc

    def compose(self, point: list[tuple[Axis, object, str]], copy: bool = False):
        """The resolved, read-only configuration of one point (``copy``: kept for callers;
        the configuration is immutable, so it is always safe to keep)."""
        return self.scenario(point).config


@dataclass
class SweepResult:
    """Rows (one dict per point, raw numbers), the column order, the swept axes, and for the
    roofline chart the heaviest ops of the first point on each hardware with its roof."""

    rows: list[dict]
    columns: list[str]
    sweep: Sweep
    ops_by_hardware: dict = field(default_factory=dict)
    roofs: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)


#: columns of the run as configured, after the override columns: the parallel plan, its
#: devices, per-video seconds and per-device peak memory (the plan's when multi-device,
#: else the single-device totals), whether it fits and how many warnings it has
RUN_COLUMNS = ("plan", "devices", "time_s", "peak_memory_bytes", "fits", "warnings")


def point_row(point, est) -> dict:
    """The CSV row of one estimated point: override values, the run as configured
    (RUN_COLUMNS; ``runtime`` when the config has one), per-stage and total columns (the
    pipeline on one device)."""
    row = {a.name: s for a, _, s in point}
    row["model"] = est.model
    row["hardware"] = est.hardware
    par = est.parallel
    row["plan"] = par["plan"]["name"] if par is not None else "single"
    row["devices"] = par["devices"] if par is not None else 1
    row["time_s"] = est.time_s
    row["peak_memory_bytes"] = est.peak_memory_bytes
    row["fits"] = "" if est.fits is None else str(bool(est.fits)).lower()
    row["warnings"] = len(est.warnings)
    runtime = est.extra.get("runtime") or (est.run.runtime.name if est.run is not None else None)
    if runtime is not None:
        row["runtime"] = runtime
    for st in est.stages:
        t = st.total
        row[f"{st.name}.invocations"] = st.invocations
        row[f"{st.name}.tensor_flops"] = t["tensor_flops"]
        row[f"{st.name}.vector_flops"] = t["vector_flops"]
        row[f"{st.name}.flops"] = t["tensor_flops"] + t["vector_flops"]
        row[f"{st.name}.bytes"] = t.get("bytes")
        row[f"{st.name}.time_s"] = t.get("time_s")
        row[f"{st.name}.peak_activation_bytes"] = st.per_invocation.get("peak_activation_bytes")
    tot = est.total
    for k in TOTAL_COLUMNS:
        row[f"total.{k}"] = (tot["tensor_flops"] + tot["vector_flops"]) if k == "flops" else tot.get(k)
    return row


_WORKER: dict = {}

#: points a sweep process evaluates between two collections of cyclic garbage. While a sweep
#: runs, Python's allocation-triggered collector is off: every point leaves tens of thousands
#: of objects alive in the caches (the counted graph, the estimate), so collections triggered
#: by allocation count re-scan a growing heap again and again (about a quarter of a point's
#: CPU) and find almost nothing: a dropped graph is freed by reference counting (its scope
#: tree holds no cycle, wanir/scope.py). Collecting every this many points bounds whatever
#: cyclic garbage is left (a few dozen objects in 500 points).
COLLECT_EVERY = 256
#: most points a worker takes at a time (unless the points of one build run together): each
#: chunk costs this process about a millisecond to hand over and collect, and the last one
#: can leave the other workers idle while it runs
CHUNK_POINTS = 8


def _worker_init(config_dir, estimator, in_pool=False):
    """Set up this process for sweep points: the point composer, the estimator, which
    hardware's roofline ops it has already sent, and garbage collection paced by points
    (:data:`COLLECT_EVERY`; a pool worker lives only for the sweep, so its collector stays off)."""
    if in_pool:
        quiet_worker()
    _WORKER["composer"] = PointComposer(config_dir)
    _WORKER["estimator"] = estimator
    _WORKER["ops_sent"] = set()
    _WORKER["points"] = 0


def _estimate_point(point):
    """Estimate one point in this process through the one seam (resolve → count → time:
    points that share a build share one counted graph, cached); returns (row, hardware,
    heaviest ops, roof, seconds estimating). The heaviest ops and the roof (for the roofline
    chart, which shows the first point of each hardware) come only with this process's
    first point on that hardware, None after it: a process takes its points in the order the
    sweep runs them, so the sweep's first point on a hardware in that order is always its
    process's first on it (:func:`run_sweep` estimates again the rare one it lacks)."""
    composer = _WORKER.setdefault("composer", PointComposer(None))
    estimator = _WORKER.get("estimator")
    sc = composer.scenario(point)
    t0 = time.perf_counter()
    est = evaluate(sc) if estimator is None else estimator(sc)
    dt = time.perf_counter() - t0
    hw = est.hardware or (sc.run.hardware.name if sc.run.hardware is not None else "-")
    sent = _WORKER.setdefault("ops_sent", set())
    ops = roof = None
    if hw not in sent:
        sent.add(hw)
        ops, roof = heaviest_ops(est), hardware_roof(sc.run)
    n = _WORKER["points"] = _WORKER.get("points", 0) + 1
    if n % COLLECT_EVERY == 0 and not gc.isenabled():
        gc.collect()
    return point_row(point, est), hw, ops, roof, dt


def _chart_inputs(point, config_dir, estimator):
    """The heaviest ops and the roof of one point, estimated again in this process (for a
    point whose process did not send them)."""
    sc = PointComposer(config_dir).scenario(point)
    est = evaluate(sc) if estimator is None else estimator(sc)
    return heaviest_ops(est), hardware_roof(sc.run)


#: a swept axis with more values than this is not tested for sharing counts (:func:`run_order`)
ORDER_TEST_VALUES = 32
#: most points a worker takes at a time when the points of one build run back to back
CHUNK_GROUP_MAX = 64


def run_order(sweep: Sweep, points: list, config_dir=None) -> tuple[list[int], int]:
    """The order to evaluate a sweep's ``points`` in, and how many consecutive points share one
    build. Points that differ only in what changes time (the hardware, the parallel plan, the
    roofline mode...) share one counted graph — while it is still in count's bounded cache
    (:func:`wanir.estimate.count`), so they are run back to back: a swept axis is found to
    change no count when the sweep's first point, resolved with each of the axis's other values
    (up to :data:`ORDER_TEST_VALUES` of them), has the first point's :class:`wanir.scenario.Build`;
    such axes are evaluated innermost. Returns the point indices in evaluation order — cross-product
    order when no such axis precedes one that changes counts, or when a tested point does not
    resolve (it then fails in its turn, as it would) — and the product of those axes' lengths
    (1 without them). The points resolved here stay in the resolve cache (a fork inherits it)."""
    axes = sweep.axes
    n = len(points)
    sizes = [len(a.values) for a in axes]
    strides = [1] * len(axes)
    for k in range(len(axes) - 2, -1, -1):
        strides[k] = strides[k + 1] * sizes[k + 1]
    swept = [k for k, m in enumerate(sizes) if m > 1]
    if not swept:
        return list(range(n)), 1
    composer = PointComposer(config_dir)
    run_only = []
    try:
        base = composer.scenario(points[0]).build
        for k in swept:
            if sizes[k] <= ORDER_TEST_VALUES and all(composer.scenario(points[j * strides[k]]).build == base
                                                     for j in range(1, sizes[k])):
                run_only.append(k)
    except WanirError:   # a point that does not resolve: cross-product order, it fails in its turn
        return list(range(n)), 1
    group = math.prod(sizes[k] for k in run_only)
    order = [k for k in range(len(axes)) if k not in run_only] + run_only
    if order == list(range(len(axes))):
        return list(range(n)), group
    return [sum(i * strides[k] for i, k in zip(idx, order))
            for idx in itertools.product(*(range(sizes[k]) for k in order))], group


def run_sweep(overrides: Iterable[str], config_dir=None, progress: bool = True,
              estimator: Callable | None = None, jobs: int | None = None,
              on_row: Callable | None = None) -> SweepResult:
    """Estimate every point of the sweep ``overrides``; returns a :class:`SweepResult` whose
    rows are in cross-product order. Each point is resolved, counted and timed through the
    one seam (:func:`wanir.estimate.evaluate`); ``estimator``, when given, maps the point's
    resolved :class:`wanir.scenario.Scenario` to an Estimate instead; ``jobs`` > 1 spreads the points over that many processes
    (None: one per CPU core, up to 8, when there are more than 32 points; never more than the
    cores this process may use, :func:`wanir.limits.usable_cpus`). ``timing`` holds seconds spent composing
    configs and estimating (summed over processes) and wall-clock seconds in all.
    Points that share a build run back to back (:func:`run_order`), so it is counted once.
    ``on_row(row)`` is called with each finished point's row as it completes, in the order the
    points run (cross-product order unless :func:`run_order` moved an axis inward), so a caller
    can keep them when the sweep is interrupted. On Ctrl-C the worker processes are stopped and
    KeyboardInterrupt propagates."""
    sweep = overrides if isinstance(overrides, Sweep) else parse_sweep(overrides)
    if jobs is not None:
        check_int_arg("jobs", jobs, 1, MAX_JOBS)
    points = list(sweep.points())   # len(sweep) <= MAX_SWEEP_POINTS (checked by parse_sweep)
    if jobs is None:
        jobs = min(8, usable_cpus()) if len(points) > 32 else 1
    jobs = min(cap_jobs(jobs), max(1, len(points)))   # never more processes than usable cores
    t_all = time.perf_counter()
    order, group = run_order(sweep, points, config_dir) if len(points) > 1 else (list(range(len(points))), 1)
    done: list = [None] * len(points)      # (row, hardware) by cross-product index
    charts: dict = {}                      # cross-product index -> (heaviest ops, roof), as sent
    t_est = 0.0
    bar = None
    if progress:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress,  # late import: rich only to draw the progress bar
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)
        from rich.console import Console  # late import: as above
        bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("eta"), TimeRemainingColumn(), transient=False, console=Console(stderr=True))
        task = bar.add_task("sweep", total=len(points))
        bar.start()
    pool = None
    composer = None
    gc_was = gc.isenabled()
    try:
        todo = [points[i] for i in order]
        if jobs > 1 and len(points) > 1:
            pool = fork_pool(jobs, _worker_init, (config_dir, estimator, True))
            chunk = max(1, min(max(CHUNK_POINTS, group), CHUNK_GROUP_MAX, len(points) // (jobs * 8)))
            results = pool.imap(_estimate_point, todo, chunksize=chunk)
        else:
            _worker_init(config_dir, estimator)
            composer = _WORKER["composer"]
            gc.disable()      # collections paced by points (COLLECT_EVERY), restored below
            results = map(_estimate_point, todo)
        for i, (row, hw, ops, roof, dt) in zip(order, results):
            done[i] = (row, hw)
            if ops is not None:
                charts[i] = (ops, roof)
            if on_row is not None:
                on_row(row)
            t_est += dt
            if bar is not None:
                bar.advance(task)
    except BaseException:   # Ctrl-C or a bad point: stop the workers now, keep nothing running
        if pool is not None:
            pool.terminate()
            pool.join()
            pool = None
        raise
    finally:
        if gc_was:
            gc.enable()
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            bar.stop()
    rows = [row for row, _ in done]
    # the roofline chart: the heaviest ops of the first point (cross-product order) on each hardware
    ops_by_hw: dict = {}
    roofs: dict = {}
    for i, (_, hw) in enumerate(done):
        if hw not in ops_by_hw:
            # a process sends them with its first point on a hardware: the first in cross-product
            # order too whenever the hardware is one axis's value; else estimated again here
            got = charts.get(i)
            ops_by_hw[hw], roofs[hw] = got if got is not None else _chart_inputs(points[i], config_dir, estimator)
    columns = _columns(sweep, rows)
    timing = {"points": len(rows), "jobs": jobs, "estimate_s": t_est, "total_s": time.perf_counter() - t_all}
    if composer is not None:
        timing.update(compose_s=composer.compose_s, apply_overrides_s=composer.apply_s)
    return SweepResult(rows, columns, sweep, ops_by_hw, roofs, timing)


def _columns(sweep: Sweep, rows: list[dict], stages: list[str] | None = None) -> list[str]:
    cols = [a.name for a in sweep.axes]
    run = ("model", "hardware") + RUN_COLUMNS + (("runtime",) if any("runtime" in r for r in rows) else ())
    for extra in run:
        if extra not in cols:
            cols.append(extra)
    stages = [] if stages is None else stages
    for r in rows:
        _add_stages(r, cols, stages)
    cols += [f"{st}.{c}" for st in stages for c in STAGE_COLUMNS]
    cols += [f"total.{c}" for c in TOTAL_COLUMNS]
    return cols


def _add_stages(r: dict, cols, stages: list[str]) -> bool:
    """Append the stages of row ``r`` not yet in ``stages``; True when one was added."""
    added = False
    for k in r:
        if "." in k and not k.startswith("total.") and k not in cols:
            st, col = k.rsplit(".", 1)
            if st not in stages and col in STAGE_COLUMNS:
                stages.append(st)
                added = True
    return added


def _csv_text(columns, rows) -> str:

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(_csv_row(r, columns))
    return buf.getvalue()


def _csv_row(r: dict, columns) -> dict:
    return {k: ("" if r.get(k) is None else csv_cell(r.get(k))) for k in columns}


def write_csv(result: SweepResult, path: str | os.PathLike) -> Path:
    """Write ``result.rows`` to ``path`` as CSV (empty cells for values not estimated; cells a
    spreadsheet would run as a formula escaped), atomically. Returns the path."""

    return write_output(path, _csv_text(result.columns, result.rows), (".csv",))


class SweepInterrupted(ConfigError):
    """A sweep stopped by Ctrl-C; the finished points are in ``results.csv`` (run.json: partial)."""


#: the run's metadata file and lock file in a sweep's output directory
RUN_FILE, LOCK_FILE = "run.json", ".wanir-sweep.lock"
#: files of a sweep run (plots in every format), removed by --overwrite
RUN_OUTPUTS = ("results.csv", RUN_FILE) + tuple(f"{n}.{f}" for n in ("stage_breakdown", "time_vs_axis", "roofline")
                                                for f in ("png", "svg", "pdf"))


class _RunDir:
    """A sweep's output directory while it runs: held by a lock file (a second sweep into it
    is refused), refused when it holds an earlier run unless ``overwrite`` (which removes that
    run's files), with ``results.csv`` appended as each point finishes and ``run.json``
    saying whether the run is partial."""

    def __init__(self, out: Path, sweep: Sweep, overrides: list, overwrite: bool):
        self.out, self.sweep, self.overrides = out, sweep, overrides
        if out.is_symlink() and not out.is_dir():
            raise ConfigError(f"-o {out}: a symbolic link that points to no directory")
        if out.exists() and not out.is_dir():
            raise ConfigError(f"-o {out}: exists and is not a directory")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"-o {out}: cannot create the directory: {e.strerror or e}") from None
        self._lock_fd = self._lock()
        try:
            earlier = [n for n in RUN_OUTPUTS if (out / n).exists() or (out / n).is_symlink()]
            if earlier and not overwrite:
                raise ConfigError(f"-o {out}: holds an earlier sweep ({', '.join(earlier[:3])}); "
                                  f"pass --overwrite to replace it, or choose another directory")
            for n in earlier:
                (out / n).unlink()
        except BaseException:
            self.close()
            raise
        self.rows: list[dict] = []
        self.stages: list[str] = []
        self.columns: list[str] = []
        self.csv = out / "results.csv"
        self._f = None
        self.write_meta("running")

    def _lock(self) -> int:

        path = self.out / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            raise ConfigError(f"-o {self.out}: cannot create the lock file {LOCK_FILE}: "
                              f"{e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"-o {self.out}: another sweep is writing into this directory "
                              f"(it holds {LOCK_FILE}); wait for it or choose another directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def write_meta(self, status: str, files=()) -> None:
        """Write the sweep's run record (status, points done, files) atomically."""
        meta = {"status": status, "partial": status != "complete", "points": len(self.sweep),
                "completed": len(getattr(self, "rows", [])), "overrides": list(self.overrides),
                "files": [Path(f).name for f in files]}
        write_output(self.out / RUN_FILE, json.dumps(meta, indent=2, allow_nan=False) + "\n", (".json",))

    def add(self, row: dict) -> None:
        """Append one finished point to results.csv (the whole file is rewritten, atomically,
        only when the point brings a stage the header lacks)."""
        self.rows.append(row)
        base = self.columns or _columns(self.sweep, [], [])
        if not self.columns or _add_stages(row, base, self.stages):
            self.columns = _columns(self.sweep, [], list(self.stages))
            if self._f is not None:
                self._f.close()
            write_output(self.csv, _csv_text(self.columns, self.rows), (".csv",))
            self._f = open(self.csv, "a", newline="")
            self._w = csv.DictWriter(self._f, fieldnames=self.columns, extrasaction="ignore")
            return
        self._w.writerow(_csv_row(row, self.columns))
        self._f.flush()

    def rewrite(self) -> None:
        """Write results.csv again from the rows kept (after an interruption that may have
        hit in the middle of an append)."""
        if self._f is not None:
            self._f.close()
            self._f = None
        if self.rows:
            write_output(self.csv, _csv_text(_columns(self.sweep, self.rows), self.rows), (".csv",))

    def close(self) -> None:
        if getattr(self, "_f", None) is not None:
            self._f.close()
            self._f = None
        if getattr(self, "_lock_fd", None) is not None:
            try:
                (self.out / LOCK_FILE).unlink()
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None


def sweep_to_dir(overrides: Iterable[str], out_dir: str | os.PathLike, config_dir=None,
                 progress: bool = True, fmt: str = "png", jobs: int | None = None,
                 overwrite: bool = False) -> tuple[SweepResult, list[Path]]:
    """Run the sweep and write ``out_dir/results.csv`` (a row appended as each point
    finishes), the plots (see :func:`wanir.backends.plots.sweep_plots`) and ``run.json``
    (``partial`` until every point is done). A directory holding an earlier run is refused
    unless ``overwrite``; a second sweep into the same directory is refused while one runs.
    Ctrl-C keeps the finished points and raises :class:`SweepInterrupted`. Returns the
    result and the files written."""
    from .plots import sweep_plots  # late import: matplotlib on demand (plots only)

    overrides = _config.check_overrides(overrides)
    sweep = parse_sweep(overrides)          # errors before the directory is touched
    if jobs is not None:
        check_int_arg("jobs", jobs, 1, MAX_JOBS)
    run = _RunDir(Path(out_dir), sweep, overrides, overwrite)
    try:
        try:
            res = run_sweep(sweep, config_dir, progress=progress, jobs=jobs, on_row=run.add)
        except KeyboardInterrupt:
            run.rewrite()
            run.write_meta("interrupted", [run.csv] if run.rows else [])
            raise SweepInterrupted(f"sweep interrupted: {len(run.rows)} of {len(sweep)} points kept in "
                                   f"{run.csv} (run.json marks the run partial)") from None
        except BaseException:
            run.rewrite()
            run.write_meta("failed", [run.csv] if run.rows else [])
            raise
        if run._f is not None:
            run._f.close()
            run._f = None
        files = [write_csv(res, run.csv)]
        files += sweep_plots(res, run.out, fmt=fmt)
        run.write_meta("complete", files)
        return res, files
    finally:
        run.close()
