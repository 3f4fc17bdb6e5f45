"""What the web app computes, without any web framework: option lists, checked overrides,
and the data of each view (stage table, roofline points, time breakdown, memory timeline,
diagram, comparison, sizing).

Every request's overrides pass :func:`check_overrides` (the web's own limits: size, syntax,
no file paths unless allowed) and then the same :func:`wanir.config.load_config` the CLI
uses, so a bad value gets the CLI's one-line message. Every number shown comes from the
same functions the CLI prints with.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import yaml

from wanir import hardware as hwlib
from wanir.backends import graphviz as gv
from wanir.backends import report, sizing
from wanir.backends.graphviz import fmt_shape, node_bytes, node_flops
from wanir.backends.html import _strip_svg_header
from wanir.backends.parallel import cost_rows, multi_device_cost, summary_lines
from wanir.backends.report import _display_rows, fmt_bytes, fmt_time, fmt_time_range, rows, scope_rows
from wanir.config import CONFIG_DIR, GROUPS, list_options
from wanir.errors import ConfigError, WanirError
from wanir.estimate import estimate
from wanir.passes.memory import HOST_STAGES_T5_CPU, pipeline_peak
from wanir.resolve import resolve
from wanir.safeio import short
from wanir.scenario import thaw

#: most overrides one request may carry, and the longest one (characters)
MAX_OVERRIDES = 64
MAX_OVERRIDE_LEN = 300
#: limits of one sizing request
MAX_SIZE_DEVICES = 6          # device counts tried
MAX_DEVICE_COUNT = 64         # largest device count
MAX_PRICES = 64
MAX_SIZE_ROWS = 400           # candidates returned (the best first)
#: diagram depth allowed (scope levels drawn as clusters)
MAX_DIAGRAM_DEPTH = 4
#: breakdown / roofline scope depth allowed
MAX_SCOPE_DEPTH = 6

#: config groups laid out first, in this order; every other group of ``wanir.config.GROUPS``
#: follows (optimizations, roofline, memory, any group added later), the model components
#: last, folded
MAIN_GROUPS = ("model", "workload", "runtime", "precision", "hardware", "parallel")
COMPONENT_GROUPS = ("text_encoder", "image_encoder", "dit", "vae")
#: workload keys with their own input field
WORKLOAD_KEYS = ("height", "width", "frames", "steps", "guidance", "batch")

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")
_OPTION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
#: the last part of a key that names a file or folder on the server
_PATH_KEYS = ("from", "path", "file", "dir", "folder")


class WebError(ConfigError):
    """A request the web app refuses before composing a config (one line, names the key)."""


def _is_path_key(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return last in _PATH_KEYS or last.endswith(tuple("_" + p for p in _PATH_KEYS))


def check_overrides(overrides, allow_files: str | Path | None = None, config_dir=None) -> list[str]:
    """The overrides of one request, checked: a list of at most :data:`MAX_OVERRIDES`
    strings ``key=value`` of at most :data:`MAX_OVERRIDE_LEN` printable characters each, the
    key a plain dotted name (no ``+``/``~`` prefixes), the value without ``$`` (no
    interpolation, so no environment variables) and backslashes, a group option a plain name.
    A key naming a file (``model.from``) is refused unless ``allow_files`` is a folder; its
    value is then resolved inside that folder (relative to it) and refused outside it.
    Returns the overrides with such paths made absolute. Raises :class:`WebError`."""
    if not isinstance(overrides, (list, tuple)):
        raise WebError("overrides must be a list of KEY=VALUE strings")
    if len(overrides) > MAX_OVERRIDES:
        raise WebError(f"too many overrides: {len(overrides)} (at most {MAX_OVERRIDES})")

    out = []
    for o in overrides:
        if not isinstance(o, str):
            raise WebError(f"override {repr(o)[:60]}: must be a KEY=VALUE string")
        o = o.strip()
        if not o:
            continue
        if len(o) > MAX_OVERRIDE_LEN:
            raise WebError(f"override '{o[:40]}...': longer than {MAX_OVERRIDE_LEN} characters")
        if not o.isprintable():
            raise WebError(f"override {o!r}: control characters are not allowed")
        key, sep, value = o.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.fullmatch(key):
            raise WebError(f"override '{o}': write KEY=VALUE, e.g. workload.height=480 or hardware=a100-80gb "
                           "(adding or deleting keys with + or ~ is not accepted here)")
        if "$" in value or "\\" in value:
            raise WebError(f"{key}={value}: '$' and '\\' are not accepted here (no interpolation)")
        if key in GROUPS and value != "null" and not _OPTION_RE.fullmatch(value):
            raise WebError(f"{key}={value}: an option of group '{key}' is a plain name "
                           f"(options: {', '.join(options_of(key, config_dir))})")
        if _is_path_key(key):
            value = _allowed_path(key, value, allow_files)
            o = f"{key}={value}"
        out.append(o)
    return out


def _allowed_path(key: str, value: str, allow_files) -> str:
    if value in ("", "null"):
        return value
    if allow_files is None:
        raise WebError(f"{key}: reading files on the server is off; start `wanir serve --allow-files DIR` "
                       "to read models from DIR")
    root = Path(allow_files).resolve()
    p = Path(value)
    p = (p if p.is_absolute() else root / p).resolve()
    if p != root and root not in p.parents:
        raise WebError(f"{key}={value}: outside the folder this server may read ({root})")
    _no_link_out(key, value, p, root)
    if any(c in str(p) for c in ",[]{}()'\" "):
        raise WebError(f"{key}={value}: the path has characters the override syntax cannot carry")
    return str(p)


#: entries of a model folder looked at for links that lead out of ``--allow-files``
MAX_FOLDER_ENTRIES = 10_000


def _no_link_out(key: str, value: str, p: Path, root: Path) -> None:
    """Refuse ``p`` (inside ``root``) when it is a folder holding a symbolic link that
    resolves outside ``root`` (or a loop), or more than :data:`MAX_FOLDER_ENTRIES` entries
    to look at. Links to folders are not descended into (their target is checked)."""
    if not p.is_dir():
        return
    seen = 0
    for top, dirs, files in os.walk(p, followlinks=False):
        for name in dirs + files:
            seen += 1
            if seen > MAX_FOLDER_ENTRIES:
                raise WebError(f"{key}={value}: more than {MAX_FOLDER_ENTRIES} entries in the folder")
            q = Path(top) / name
            if not q.is_symlink():
                continue
            try:
                t = q.resolve(strict=True)
            except (OSError, RuntimeError):
                raise WebError(f"{key}={value}: {q.relative_to(p)} is a broken or looping link") from None
            if t != root and root not in t.parents:
                raise WebError(f"{key}={value}: {q.relative_to(p)} links outside the folder this server may "
                               f"read ({root})")


# ------------------------------------------------------------------------------ options


def options_of(group: str, config_dir=None) -> list[str]:
    """The options of ``group``: :func:`wanir.config.list_options`, plus the hardware
    registered as entry points for ``hardware``."""
    opts = list(list_options(group, config_dir))
    if group == "hardware":
        opts = sorted(set(opts) | set(hwlib.plugin_names()))
    return opts


def _defaults() -> dict:
    """The option each group of the primary config selects (``defaults:`` of config.yaml)."""


    try:
        doc = yaml.safe_load((CONFIG_DIR / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):   # pragma: no cover - the package's own file
        return {}
    out = {}
    for d in doc.get("defaults", []):
        if isinstance(d, dict):
            for k, v in d.items():
                out[str(k)] = None if v is None else str(v)
    return out


def options(config_dir=None) -> dict:
    """What the controls offer: every config group with its options and default, the
    hardware summaries, the workload keys with their own field, and the limits."""
    defaults = _defaults()
    groups = []
    for g in GROUPS:
        try:
            opts = options_of(g, config_dir)
        except WanirError:   # pragma: no cover - every group in GROUPS is listable
            continue
        groups.append({"name": g, "options": opts, "default": defaults.get(g),
                       "main": g in MAIN_GROUPS, "component": g in COMPONENT_GROUPS})
    hw = {}
    for h in hwlib.list_hardware(config_dir):
        s = h.summary()
        hw[s["name"]] = {k: s.get(k) for k in ("description", "kind", "bf16_tflops", "memory_gib", "bandwidth_tbps")}
    return {"groups": groups, "main_groups": list(MAIN_GROUPS), "component_groups": list(COMPONENT_GROUPS),
            "workload_keys": list(WORKLOAD_KEYS),
            "hardware": hw,
            "limits": {"overrides": MAX_OVERRIDES, "override_length": MAX_OVERRIDE_LEN,
                       "size_devices": MAX_SIZE_DEVICES, "device_count": MAX_DEVICE_COUNT,
                       "diagram_depth": MAX_DIAGRAM_DEPTH, "scope_depth": MAX_SCOPE_DEPTH}}


# ------------------------------------------------------------------------------ the engine


class Engine:
    """Estimates for the web app: one at a time (composition is process-global), the most
    recent ones kept. ``config_dir``: the server's ``--config-dir``; ``allow_files``: the
    folder ``model.from`` may read (None: no file is read)."""

    def __init__(self, config_dir=None, allow_files=None, cache_size: int = 16, prefetch: bool = False):
        self.config_dir = str(config_dir) if config_dir else None
        self.allow_files = str(Path(allow_files).resolve()) if allow_files else None
        self.lock = threading.RLock()
        self.cache: "OrderedDict[tuple, object]" = OrderedDict()
        self.costs: "OrderedDict[tuple, object]" = OrderedDict()
        self.cache_size = cache_size
        self.last_request = 0.0
        self._queue: list[tuple] = []
        self._done: set[tuple] = set()
        self._wake = threading.Event()
        if prefetch:
            threading.Thread(target=self._prefetch_loop, daemon=True, name="wanir-prefetch").start()

    # Resolving a new combination of group options composes it once (cached); counting a new
    # build takes tens of milliseconds (cached on the build). After each answer, while no
    # request is waiting, the combinations one hardware switch away are resolved ahead.
    def _prefetch(self, overrides: list[str]) -> None:

        groups = [o for o in overrides if o.split("=", 1)[0] in GROUPS and not o.startswith("hardware=")]
        try:
            names = options_of("hardware", self.config_dir)
        except WanirError:   # pragma: no cover
            return
        todo = [tuple(groups + [f"hardware={h}"]) for h in names]
        self._queue = [t for t in todo if t not in self._done]
        self._wake.set()

    def _prefetch_loop(self) -> None:   # pragma: no cover - timing only, measured by the benchmark

        while True:
            self._wake.wait()
            while self._queue:
                if time.monotonic() - self.last_request < 0.3:
                    time.sleep(0.1)
                    continue
                item = self._queue.pop(0)
                if len(self._done) > 512:
                    self._done.clear()
                self._done.add(item)
                with self.lock:
                    try:
                        resolve(list(item), self.config_dir)
                    except Exception:  # noqa: BLE001 - a combination that does not compose is just skipped
                        pass
            self._wake.clear()

    def overrides(self, overrides) -> list[str]:
        """:func:`check_overrides` with this server's file permission."""
        return check_overrides(overrides, self.allow_files, self.config_dir)

    def device_cost(self, overrides):
        """(Estimate, the plan's per-device :class:`~wanir.backends.parallel.MultiDeviceCost`
        or None on one device) of ``overrides``: what ``wanir estimate`` prints under a plan,
        cached like the estimates."""
        ov = tuple(self.overrides(overrides))
        with self.lock:
            est = self.estimate(ov)
            if est.parallel is None:
                return est, None
            hit = self.costs.get(ov)
            if hit is None or hit[0] is not est:
                hit = self.costs[ov] = (est, multi_device_cost(est))
                if len(self.costs) > self.cache_size:
                    self.costs.popitem(last=False)
            self.costs.move_to_end(ov)
            return hit

    def estimate(self, overrides):
        """The Estimate of ``overrides`` (checked here), from the cache when seen lately."""
        ov = tuple(self.overrides(overrides))
        with self.lock:
            hit = self.cache.get(ov)
            if hit is not None:
                self.cache.move_to_end(ov)
                return hit
            est = estimate(list(ov), self.config_dir)
            self.cache[ov] = est
            if len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
            return est

    # -- views ---------------------------------------------------------------------------

    def estimate_view(self, overrides) -> dict:
        """The main view: the stage table as the CLI prints it, the JSON document, warnings,
        fit, provenance, the per-device table of a parallel plan, the resolved config, the
        time breakdown and the memory timeline."""
        t0 = time.perf_counter()
        self.last_request = time.monotonic()
        with self.lock:
            est, cost = self.device_cost(overrides)
            out = estimate_payload(est, cost)
            out["multi_device"] = multi_device_payload(est, cost)
        out["overrides"] = self.overrides(overrides)
        out["compute_ms"] = round(1e3 * (time.perf_counter() - t0), 1)
        self.last_request = time.monotonic()
        self._prefetch(out["overrides"])
        return out

    def roofline_view(self, overrides, by: str = "op", depth: int = 2) -> dict:
        """Roofline points of every op (``by="op"``) or scope at ``depth``, and the roofs."""
        if by not in ("op", "scope"):
            raise WebError(f"by={by!r}: allowed: op, scope")
        depth = _depth(depth, MAX_SCOPE_DEPTH)
        with self.lock:
            est, cost = self.device_cost(overrides)
            return roofline_payload(est, by, depth, cost)

    def breakdown_view(self, overrides, depth: int = 2) -> dict:
        """The time breakdown at ``depth`` (:func:`breakdown`; one device's under a plan)."""
        depth = _depth(depth, MAX_SCOPE_DEPTH)
        with self.lock:
            est, cost = self.device_cost(overrides)
            return {"breakdown": breakdown(est, depth, cost)}

    def diagram_view(self, overrides, stage: str | None = None, depth: int = 2, color: str = "bound") -> str:
        """The Graphviz diagram (SVG text) of ``stage`` (None: the pipeline) at ``depth``."""
        depth = _depth(depth, MAX_DIAGRAM_DEPTH)
        if color not in gv.COLOR_MODES:
            raise WebError(f"color={color!r}: allowed: {', '.join(gv.COLOR_MODES)}")
        with self.lock:
            est = self.estimate(overrides)
            if stage in ("", None, "all"):
                stage = None
            elif stage not in est.graph.stages:
                raise WebError(f"stage={stage!r}: stages of this pipeline: {', '.join(est.graph.stages)}")
            _, cost = self.device_cost(overrides)
            graph = est.graph if cost is None else cost.graph     # one device's graph of the plan
            try:
                return _strip_svg_header(gv.to_svg(graph, stage=stage, depth=depth, color=color))
            except WanirError:
                raise
            except Exception as e:  # noqa: BLE001 - graphviz missing or failing: one line
                raise WebError(f"the diagram needs Graphviz's `dot` program: {str(e).splitlines()[0][:200]}") \
                    from None

    def download(self, overrides, kind: str) -> str:
        """The file ``wanir estimate --format json|csv`` prints (``kind`` 'json' or 'csv') or
        ``wanir report`` writes ('html') for ``overrides``: the command itself, run in a child
        process."""
        if kind not in ("json", "csv", "html"):
            raise WebError(f"no download {kind!r}; allowed: json, csv, html")
        ov = self.overrides(overrides)
        if kind != "html":
            return run_cli("estimate", ov, self.config_dir, "--format", kind)
        with tempfile.TemporaryDirectory(prefix="wanir-serve-") as d:
            path = Path(d) / "report.html"
            run_cli("report", ov, self.config_dir, "-o", str(path))
            return path.read_text(encoding="utf-8")

    def compare_view(self, a, b) -> dict:
        """Two configurations side by side: each one's stage records and the ratio B / A per
        stage and in total (time, FLOPs, bytes, peak memory)."""
        with self.lock:
            ea, eb = self.estimate(a), self.estimate(b)
        return compare(ea, eb)

    def size_request(self, overrides, latency=None, throughput=None, prices=None, hardware=None,
                     devices=None) -> dict:
        """The arguments of a sizing, checked (one-line :class:`WebError` otherwise) and in the
        form :meth:`size_view` takes: overrides without the controls' ``hardware`` and
        ``parallel`` (the sizing tries every GPU and plan), targets, prices, hardware, devices."""
        ov = [o for o in self.overrides(overrides)
              if o.split("=", 1)[0].split(".", 1)[0] not in ("hardware", "parallel")]
        latency_s = _pos_float("latency", latency)
        throughput = _pos_float("throughput", throughput)
        devs = _devices(devices)
        hws = None
        if hardware:
            if not isinstance(hardware, (list, tuple)) or len(hardware) > 64:
                raise WebError("hardware: a list of at most 64 names")
            known = set(options_of("hardware", self.config_dir))
            for h in hardware:
                if not isinstance(h, str) or h not in known:
                    raise WebError(f"hardware {str(h)[:60]!r}: not in the library (options: {', '.join(sorted(known))})")
            hws = list(hardware)
        if prices is not None and (not isinstance(prices, (list, tuple)) or len(prices) > MAX_PRICES):
            raise WebError(f"prices: a list of at most {MAX_PRICES} NAME=USD items")
        items = [str(p)[:100] for p in (prices or []) if str(p).strip()]
        sizing.parse_prices(items, set(options_of("hardware", self.config_dir)))
        return {"overrides": ov, "latency_s": latency_s, "throughput": throughput, "prices": items,
                "hardware": hws, "devices": list(devs)}

    def size_view(self, overrides, latency_s=None, throughput=None, prices=None, hardware=None,
                  devices=None, progress=None) -> dict:
        """``wanir size`` for the workload of ``overrides`` (their ``hardware`` and ``parallel``
        overrides left out: the sizing tries ``hardware``, default every GPU, and every plan on
        ``devices``): every candidate that fits (see :func:`size_payload`), with the Pareto
        front of cost per video against latency. Takes no lock (the server runs it in a child
        process: :mod:`wanir.web.jobs`); ``progress`` gets the fraction done."""
        r = self.size_request(overrides, latency_s, throughput, prices, hardware, devices)
        res = sizing.size(r["overrides"], self.config_dir, latency_s=r["latency_s"], throughput=r["throughput"],
                          hardware=r["hardware"], devices=tuple(r["devices"]),
                          prices=sizing.parse_prices(r["prices"]), progress=progress)
        return size_payload(res)


def _depth(v, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, str) and not v.strip().isdigit()):
        raise WebError(f"depth must be an integer in [0, {hi}], got {v!r}")
    d = int(v)
    if not 0 <= d <= hi:
        raise WebError(f"depth must be an integer in [0, {hi}], got {d}")
    return d


def _pos_float(name, v):
    """A sizing target as ``wanir size --NAME`` takes it, with the command's messages."""
    if v in (None, ""):
        return None
    if isinstance(v, bool):
        v = str(v)
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise WebError(f"argument --{name}: invalid float value: {str(v)[:40]!r}") from None
    if not (0 < x <= 1e9):   # the bound and the words of `wanir size` (docs/limits.md)
        raise WebError(f"--{name} must be a finite number in (0, 1e9], got {short(x)}")
    return x


def _devices(v) -> tuple:

    if v in (None, "", []):
        return tuple(d for d in sizing.DEFAULT_DEVICES if d <= MAX_DEVICE_COUNT)
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)) or len(items) > MAX_SIZE_DEVICES:
        raise WebError(f"devices: at most {MAX_SIZE_DEVICES} device counts, e.g. 1,2,4,8")
    out = []
    for x in items:
        try:
            n = int(str(x).strip())
        except ValueError:
            raise WebError(f"devices: {x!r} is not an integer in [1, {MAX_DEVICE_COUNT}]") from None
        if not 1 <= n <= MAX_DEVICE_COUNT:
            raise WebError(f"devices: {n} is not in [1, {MAX_DEVICE_COUNT}]")
        out.append(n)
    return tuple(sorted(set(out)))


# ------------------------------------------------------------------------------ payloads


def _find_provenance(doc: dict):
    """``provenance`` entries of the JSON document: the top-level one and each stage's."""
    out = {}
    if doc.get("provenance") is not None:
        out["pipeline"] = doc["provenance"]
    for s in doc.get("stages", []):
        if isinstance(s, dict) and s.get("provenance") is not None:
            out[s.get("name")] = s["provenance"]
    return out or None


def _provenance_lines(est) -> list[str]:
    """The CLI's lines on what each stage's time rests on, where this wanir prints them."""
    f = getattr(report, "provenance_lines", None)
    return list(f(est)) if callable(f) else []


def fit_payload(est) -> dict | None:
    """Peak GPU memory against the device's capacity: peak, capacity (bytes), fits, and the
    fit verdict of the JSON document (``fits``) when it has one."""
    peak = est.peak_memory_bytes      # the per-device peak under a plan
    if est.run is None or est.run.hardware is None or peak is None:
        return None
    cap = est.run.hardware.memory_bytes
    doc_fits = est.parallel["total"]["fits"] if est.parallel is not None else est.to_dict().get("fits")
    return {"peak_memory_bytes": peak, "capacity_bytes": cap,
            "fits": bool(doc_fits) if doc_fits is not None else peak <= cap}


def estimate_payload(est, cost=None) -> dict:
    """The data of the main view (see :meth:`Engine.estimate_view`); ``cost``: the plan's
    :class:`~wanir.backends.parallel.MultiDeviceCost` (None on one device): the breakdown and
    the memory timeline are then one device's of the plan."""
    head, body = _display_rows(est)
    doc = est.to_dict()
    wl = doc.get("workload", {})
    # the resolved configuration the Estimate keeps as data (the resolver's frozen
    # Scenario.config), shown as it is: nothing here re-reads it
    cfg = thaw(est.config) if est.config is not None else {}
    fit = fit_payload(est)
    if fit:
        fit["text"] = (f"peak {fmt_bytes(fit['peak_memory_bytes'])} of {fmt_bytes(fit['capacity_bytes'])} — "
                       + ("fits" if fit["fits"] else "does not fit"))
    return {
        "title": f"{est.model}" + (f" on {est.hardware}" if est.hardware else ""),
        "caption": report.table_caption(est),
        "time": time_payload(est),
        "table": {"head": head, "rows": body},
        "document": doc,
        "warnings": list(est.warnings),
        "fit": fit,
        "provenance": _find_provenance(doc),
        "provenance_lines": _provenance_lines(est),
        "stages": [s.name for s in est.stages],
        "workload": wl,
        "config": cfg,
        "keys": _leaf_keys(cfg),
        "breakdown": breakdown(est, 2, cost),
        "memory": memory_timeline(est, cost),
        "plan": plan_payload(cost, est),
    }


def time_payload(est) -> dict:
    """The time per video as ``wanir estimate`` states it: ``time_s`` (one device's total, or
    the plan's per-video time under a plan), ``time_range_s`` ([low, high] seconds, JSON
    ``total.time_range_s`` or ``parallel.total.time_range_s``; None without one) and
    ``text`` ("30.6 min (28.3–32.4)", :func:`~wanir.backends.report.fmt_time_range`)."""
    t = est.parallel["total"] if est.parallel is not None else est.total
    rng = t.get("time_range_s")
    rng = None if rng is None else [float(x) for x in rng]
    return {"time_s": t.get("time_s"), "time_range_s": rng, "text": fmt_time_range(t.get("time_s"), rng),
            "per_device": est.parallel is not None}


def plan_payload(cost, est=None) -> dict | None:
    """What the page says about a multi-device plan: its label, device count, hardware, the
    per-video time (with ``time_range_s`` and ``time_text`` from ``est``'s
    ``parallel.total``, as :func:`time_payload`) and per-device peak of one device (None on
    one device)."""
    if cost is None:
        return None
    rng = None
    if est is not None and est.parallel is not None:
        rng = est.parallel["total"].get("time_range_s")
    rng = None if rng is None else [float(x) for x in rng]
    return {"label": cost.plan.label, "devices": cost.plan.degree, "hardware": cost.hardware.name,
            "time_s": cost.time_s, "time_range_s": rng, "time_text": fmt_time_range(cost.time_s, rng),
            "peak_memory_bytes": cost.peak_memory_bytes,
            "caption": f"one device of {cost.plan.degree} × {cost.hardware.name}, plan {cost.plan.label}"}


def _leaf_keys(tree, prefix="") -> list[str]:
    out = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                out.extend(_leaf_keys(v, key + "."))
            else:
                out.append(key)
    return out


def multi_device_payload(est, cost=None) -> dict | None:
    """The per-device table of a parallel plan as ``wanir estimate`` prints it (None for one
    device). ``cost``: the plan's MultiDeviceCost when already computed."""
    if est.parallel is None:
        return None
    cost = cost if cost is not None else multi_device_cost(est)
    head, body = cost_rows(cost)
    return {"title": f"{est.model} per device: {cost.plan.degree} × {cost.hardware.name}, plan {cost.plan.label}",
            "table": {"head": head, "rows": body},
            "summary": summary_lines(cost, est.parallel["total"].get("time_range_s")), "document": cost.to_dict()}


#: seconds a download's command may run, and how many run at once
DOWNLOAD_TIMEOUT_S = 300
_DOWNLOADS = threading.BoundedSemaphore(2)


def run_cli(command: str, overrides, config_dir=None, *args: str) -> str:
    """What ``wanir COMMAND OVERRIDES... ARGS...`` prints on stdout, run as the command line
    in a child process (so a download is exactly what the CLI gives). Its one-line error
    becomes a :class:`WebError`. ``overrides`` must have passed :func:`check_overrides`
    (none starts with ``-``; no shell is involved)."""
    argv = [sys.executable, "-m", "wanir", command, *overrides, *args]
    if config_dir:
        argv += ["--config-dir", config_dir]
    with _DOWNLOADS:
        try:
            r = subprocess.run(argv, capture_output=True, timeout=DOWNLOAD_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise WebError(f"wanir {command} took longer than {DOWNLOAD_TIMEOUT_S} s") from None
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        msg = lines[-1] if lines else f"wanir {command} failed (exit status {r.returncode})"
        raise WebError(msg.removeprefix("wanir: error: "))
    return r.stdout.decode("utf-8")


def _node_record(n) -> dict:

    c = n.costs
    fl = node_flops(n)
    by = node_bytes(n)
    t = c.get("time_s")
    return {"name": n.path, "scope": n.scope.path, "stage": n.stage, "kind": n.kind, "category": n.category,
            "shape": fmt_shape(n.outputs[0].shape) if n.outputs else "", "flops": fl, "bytes": by, "time_s": t,
            "executions": n.multiplicity, "bound": c.get("bound"),
            "x": (fl / by) if by else None, "y": (fl / t) if t else None}


def roof_of(est) -> dict | None:
    """The roofs of the configured hardware: ``peak_flops`` (dense tensor FLOP/s at the DiT's
    compute dtype), ``vector_flops``, ``bandwidth`` (DRAM bytes/s) and, where the hardware
    describes its last-level cache, ``l2_bandwidth`` (a node whose working set fits the L2
    streams at that rate)."""
    run = est.run
    if run is None or run.hardware is None:
        return None
    hw = run.hardware
    dtype = str((run.configured_options or run.options).precision.dit_compute or "bf16")
    try:
        peak = hw.peak(dtype)
    except WanirError:
        dtype, peak = "bf16", hw.tensor_flops.get("bf16")
    if not peak:
        return None
    l2 = getattr(getattr(hw, "micro", None), "l2_bandwidth", None)
    return {"name": hw.name, "dtype": dtype, "peak_flops": float(peak), "vector_flops": float(hw.vector_flops),
            "bandwidth": float(hw.memory_bandwidth), "l2_bandwidth": float(l2) if l2 else None}


def roofline_payload(est, by: str = "op", depth: int = 2, cost=None) -> dict:
    """Points (arithmetic intensity ``x`` in FLOP/byte, attained FLOP/s ``y``) of every op
    with FLOPs, bytes and time, or of every scope cut at ``depth`` below its stage; and the
    roofs of the configured hardware (:func:`roof_of`). Under a plan (``cost``) the ops of
    one device's graph (communication has no FLOPs: left out)."""


    graph = est.graph if cost is None else cost.graph
    pts, left_out = [], 0
    if by == "op":
        for n in graph:
            if n.category == "input":
                continue
            r = _node_record(n)
            if not r["flops"] or not r["bytes"] or not r["time_s"]:
                left_out += 1
                continue
            pts.append(r)
    else:
        src = est if cost is None else SimpleNamespace(graph=graph, total={"time_s": cost.time_s})
        for r in scope_rows(src, depth, "scope"):
            if not r["flops"] or not r["bytes"] or not r["time_s"]:
                left_out += 1
                continue
            pts.append({"name": r["scope"], "scope": r["scope"], "stage": r["stage"], "kind": "scope",
                        "category": "scope", "shape": f"{r['nodes']} ops", "flops": r["flops"], "bytes": r["bytes"],
                        "time_s": r["time_s"], "executions": 1, "bound": r["bound"],
                        "x": r["flops"] / r["bytes"], "y": r["flops"] / r["time_s"]})
    roof = roof_of(est)
    return {"by": by, "depth": depth, "points": pts, "left_out": left_out, "roof": roof,
            "hardware": est.hardware, "devices": {s: i.get("device") for s, i in est.extra.get("stages", {}).items()},
            "plan": plan_payload(cost, est)}


def breakdown(est, depth: int = 2, cost=None) -> dict:
    """Where the time goes, as a tree for a sunburst: stage → scope levels (down to
    ``depth`` below the stage) → op kind, plus a ``(host)`` leaf for a stage's host-bound or
    synchronization time beyond its ops'. Parallel lists ``ids``, ``labels``, ``parents``,
    ``values`` (seconds per generation; FLOPs when nothing is timed), each parent's value the
    sum of its children's. ``metric``: 'time_s' or 'flops'. Under a plan (``cost``, a
    MultiDeviceCost) one device's graph: communication counts its exposed seconds, and
    ``plan`` says so."""
    graph = est.graph if cost is None else cost.graph
    have_time = any(n.costs.get("time_s") is not None for n in graph)
    vals: dict[str, float] = {}
    parent: dict[str, str] = {}
    label: dict[str, str] = {}
    order: list[str] = []
    for n in graph:
        if n.category == "input":
            continue
        t = n.costs.get("exposed_s", n.costs.get("time_s")) if n.category == "communication" else n.costs.get("time_s")
        v = (float(t or 0.0) if have_time else float(node_flops(n))) * n.multiplicity
        if v <= 0:
            continue
        parts = n.scope.path.split("/")[: 1 + depth]
        chain = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        leaf = chain[-1] + "::" + n.kind
        ids = chain + [leaf]
        for i, x in enumerate(ids):
            if x not in vals:
                vals[x] = 0.0
                parent[x] = ids[i - 1] if i else ""
                label[x] = n.kind if x == leaf else x.rsplit("/", 1)[-1]
                order.append(x)
            vals[x] += v
    if have_time:   # host-bound or synchronization time beyond the nodes' (backends/host_stages.py)
        stage_t = {s.name: s.total.get("time_s") or 0.0 for s in est.stages} if cost is None else \
            {name: r["time_s"] for name, r in cost.stages.items()}
        for name, total in stage_t.items():
            extra = total - vals.get(name, 0.0)
            if extra > 1e-9 * max(total, 1.0):
                if name not in vals:
                    vals[name], parent[name], label[name] = 0.0, "", name
                    order.append(name)
                hid = f"{name}/(host)"
                vals[hid], parent[hid], label[hid] = extra, name, "(host)"
                order.append(hid)
                vals[name] += extra
    return {"ids": order, "labels": [label[x] for x in order], "parents": [parent[x] for x in order],
            "values": [vals[x] for x in order], "metric": "time_s" if have_time else "flops", "depth": depth,
            "plan": plan_payload(cost, est)}


def memory_timeline(est, cost=None) -> dict | None:
    """GPU memory while each stage runs, in pipeline order: resident weights, the stage's
    live activations at its peak, ``allocator_bytes`` (what PyTorch's caching allocator
    reserves beyond the tensors: JSON ``peak_reserved_bytes`` less the tensors, known at the
    pipeline's peak only, so nonzero on the peak stage's bar) and ``reserve_bytes`` (the CUDA
    context), bytes, under the residency policy of the config (the memory pass's
    :func:`~wanir.passes.memory.pipeline_peak` applied to the stage alone); the pipeline's
    peak, the stage at it, ``peak_allocated_bytes`` (tensors), ``peak_reserved_bytes``
    (allocator) and ``context_bytes`` as the JSON's ``total``; the GPU's capacity. Under a
    plan (``cost``) one device's: its sharded weights and activations and the plan's
    per-device peak."""
    info = est.extra.get("stages")
    if not info or est.run is None:
        return None
    recs = {}
    if cost is None:
        mem = (est.run.plan_run or est.run).memory      # the residency as configured
        for s in est.stages:
            i = info.get(s.name, {})
            recs[s.name] = {"weight_bytes": s.per_invocation["weight_bytes"],
                            "peak_activation_bytes": s.per_invocation["peak_activation_bytes"] or 0,
                            "on_gpu": i.get("on_gpu", True)}
            if i.get("resident_weight_bytes") is not None:   # two experts under offload: one held at a time
                recs[s.name]["offload_weight_bytes"] = i["resident_weight_bytes"]
        peak, pipe = est.total.get("peak_memory_bytes"), est.extra.get("memory", {})
    else:      # the plan's per-device records, as MultiDeviceCost keeps them for its pipeline peak
        dg = cost.device_graph
        mem = dg.mem
        host = HOST_STAGES_T5_CPU if dg.t5_cpu else ()
        for name, r in cost.stages.items():
            recs[name] = {"weight_bytes": r["weight_bytes"], "peak_activation_bytes": r["peak_activation_bytes"] or 0,
                          "on_gpu": name not in host}
            ms = dg.memory["stages"].get(name, {})
            if "offload_weight_bytes" in ms and ms["weight_bytes"]:   # two experts: one on the device at a time
                recs[name]["offload_weight_bytes"] = ms["offload_weight_bytes"] * r["weight_bytes"] // ms["weight_bytes"]
        peak, pipe = cost.peak_memory_bytes, cost.memory
    offload, reserve = mem.offload_model, mem.reserve_bytes
    rows = []
    peak_stage = pipe.get("peak_stage")
    for name in recs:
        if not recs[name]["on_gpu"]:
            rows.append({"stage": name, "weight_bytes": 0, "activation_bytes": 0, "allocator_bytes": 0,
                         "reserve_bytes": 0, "on_gpu": False})
            continue
        # the memory pass's own rule with only this stage's activations live (offloading:
        # only this stage's weights resident)
        alone = {name: recs[name]} if offload else \
            {k: (r if k == name else {**r, "peak_activation_bytes": 0}) for k, r in recs.items()}
        p = pipeline_peak(alone, offload, reserve)
        act = recs[name]["peak_activation_bytes"]
        # what the caching allocator holds beyond the tensors is known at the pipeline's peak
        # (the allocator replay of the memory pass): that stage's bar carries it
        cached = 0
        if name == peak_stage and pipe.get("peak_reserved_bytes") is not None:
            cached = max(0, int(pipe["peak_reserved_bytes"]) - p["weight_bytes"] - act)
        rows.append({"stage": name, "weight_bytes": p["weight_bytes"], "activation_bytes": act,
                     "allocator_bytes": cached, "reserve_bytes": p.get("reserve_bytes", 0), "on_gpu": True})
    cap = est.run.hardware.memory_bytes if est.run.hardware is not None else None
    return {"stages": rows, "peak_memory_bytes": peak, "peak_stage": peak_stage,
            "peak_allocated_bytes": pipe.get("peak_allocated_bytes"),
            "peak_reserved_bytes": pipe.get("peak_reserved_bytes"), "context_bytes": pipe.get("reserve_bytes", reserve),
            "capacity_bytes": cap, "hardware": est.hardware, "offload_model": offload, "offload": mem.offload,
            "plan": plan_payload(cost, est)}


_CMP_KEYS = (("time_s", "time"), ("flops", "FLOPs"), ("bytes", "bytes moved"), ("peak_memory_bytes", "peak memory"))


def _title(est) -> str:
    """``MODEL on HARDWARE``, and the plan's device count and label under a plan."""
    p = est.parallel
    if p is None:
        return f"{est.model} on {est.hardware}"
    return f"{est.model} on {p['devices']} × {p['hardware']}, plan {p['plan'].get('label', p['plan'].get('name'))} " \
           "(per device)"


def compare_records(est) -> dict:
    """Per stage and ``total``: time_s, flops, bytes, peak_memory_bytes and ``time_text`` (the
    CLI's duration; the total's with its range, ``time_range_s``) of ``est`` as the CLI
    prints them: the stage table's (:func:`wanir.backends.report.rows`) on one device; under a
    plan one device's of the plan (``Estimate.parallel``: per-device time per generation and
    FLOPs; bytes moved and per-stage peaks are not in the per-device record: None)."""
    out = {}
    if est.parallel is None:
        for r in rows(est):
            fl = None if r["tensor_flops"] is None else r["tensor_flops"] + (r["vector_flops"] or 0)
            out[r["stage"]] = {"time_s": r["time_s"], "flops": fl, "bytes": r["bytes"],
                               "peak_memory_bytes": r["peak_memory_bytes"], "time_text": fmt_time(r["time_s"])}
    else:
        total_fl = 0
        for r in est.parallel["stages"]:
            fl = (r["tensor_flops"] + r["vector_flops"]) * r["invocations"]
            total_fl += fl
            out[r["name"]] = {"time_s": r["time_s"], "flops": fl, "bytes": None, "peak_memory_bytes": None,
                              "time_text": fmt_time(r["time_s"])}
        t = est.parallel["total"]
        out["total"] = {"time_s": t["time_s"], "flops": total_fl, "bytes": None,
                        "peak_memory_bytes": t["peak_memory_bytes"]}
    tp = time_payload(est)    # the total with its range, as the CLI prints it
    out["total"].update(time_range_s=tp["time_range_s"], time_text=tp["text"])
    return out


def compare(a, b) -> dict:
    """Per-stage records of two estimates (:func:`compare_records`: one device's of a plan)
    and the ratio B / A of each (None where either is missing or A is 0). Stages present in
    only one of them are listed with the other side None."""
    recs = compare_records

    ra, rb = recs(a), recs(b)
    names = [s for s in ra if s != "total"] + [s for s in rb if s not in ra and s != "total"] + ["total"]
    out = []
    for s in names:
        x, y = ra.get(s), rb.get(s)
        row = {"stage": s, "a": x, "b": y, "ratio": {}}
        for k, _ in _CMP_KEYS:
            va = x.get(k) if x else None
            vb = y.get(k) if y else None
            row["ratio"][k] = (vb / va) if va and vb is not None else None
        out.append(row)
    return {"a": {"title": _title(a), "document": a.to_dict(), "per_device": a.parallel is not None},
            "b": {"title": _title(b), "document": b.to_dict(), "per_device": b.parallel is not None},
            "keys": [{"key": k, "label": lbl} for k, lbl in _CMP_KEYS], "rows": out}


def pareto_front(points) -> list[int]:
    """Indices of the points (``(latency, cost)`` pairs) that no other point beats in both:
    none has lower-or-equal latency and cost with one of them strictly lower. Sorted by
    latency."""
    idx = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], float("inf")
    for i in idx:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def size_payload(res: dict) -> dict:
    """A :func:`wanir.backends.sizing.size` result as rows, in the ranking of ``wanir size``
    (``rank``: 1 = its first): the best :data:`MAX_SIZE_ROWS`, plus any Pareto-front member
    ranked lower. Each row is the candidate's own record (every key sizing gives) plus
    ``rank``, ``cost`` (what the ranking orders it by: USD per video on priced hardware,
    GPU-hours per video on unpriced), ``cost_unit`` and ``pareto``: on the front of latency
    against that cost among the rows of its kind (priced rows by dollars, unpriced ones by
    GPU-hours: the two are not comparable, as in the ranking). ``batched``: some row runs
    several videos per batch (its ``time_s`` is then the batch's latency). ``latency_text``:
    the latency with its range as the CLI prints times ("30.6 min (28.3–32.4)");
    ``precision_text``: DiT weights/compute dtype, as ``wanir size``'s stack column."""
    allrecs = [c.to_dict() for c in res["candidates"]]
    for i, r in enumerate(allrecs):
        r["rank"] = i + 1
        r["latency_text"] = fmt_time_range(r["time_s"], r.get("time_range_s"))
        prec = r.get("precision") or {}
        r["precision_text"] = f"{prec.get('dit_weights', '-')}/{prec.get('dit_compute', '-')}"
        r["cost"] = r["cost_per_video_usd"] if r["priced"] else r["gpu_hours_per_video"]
        r["cost_unit"] = "$/video" if r["priced"] else "GPU-h/video"
        r["pareto"] = False
    for priced in (True, False):
        idx = [i for i, r in enumerate(allrecs) if r["priced"] is priced]
        for j in pareto_front([(allrecs[i]["time_s"], allrecs[i]["cost"]) for i in idx]):
            allrecs[idx[j]]["pareto"] = True
    recs = [r for i, r in enumerate(allrecs) if i < MAX_SIZE_ROWS or r["pareto"]]
    priced_any = any(r["priced"] for r in allrecs)
    return {"rows": recs, "cost_key": "cost_per_video_usd" if res["priced"] else "gpu_hours_per_video",
            "priced": res["priced"], "priced_any": priced_any,
            "unpriced": sorted({r["hardware"] for r in allrecs if not r["priced"]}),
            "batched": any(r.get("batch", 1) > 1 for r in allrecs), "evaluated": res["evaluated"],
            "dropped": res["dropped"], "fit": len(res["candidates"]), "shown": len(recs),
            "meets": sum(1 for c in res["candidates"] if c.meets), "target": res["target"],
            "model": res["model"], "workload": res["workload"], "prices": res["prices"],
            "limit_rows": MAX_SIZE_ROWS}
