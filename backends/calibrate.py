"""calibrate: measure the kernel-model constants on the device at hand.

``wanir calibrate -o DIR`` runs microbenchmarks with PyTorch (the ``reference`` extra) on the
device present (``--device auto|cpu|cuda``): GEMMs over a grid of shapes and dtypes,
attention through every available backend (SDPA's flash / efficient / cuDNN / math;
``flash_attn``, ``flash_attn_interface`` and SageAttention when importable), Conv3d in the
Wan-VAE's shapes (default NCDHW and channels_last_3d layouts), elementwise bandwidth with working sets beyond and inside the cache, the
per-op issue cost of eager PyTorch, and host↔device copies (pinned and pageable) on a GPU.
It then fits the kernel-model constants of that device against the model's own equations
(backends/roofline.py, docs/time-model.md):

- ``gemm.ceiling`` / ``gemm.fp32_ceiling``: the model's time at ceiling 1 over the measured
  time, the median over the grid (the model is linear in 1/ceiling);
- ``conv.ceiling_factor``: the same over the Conv3d grid, relative to the fitted GEMM;
- ``attention.<kernel>.mma_ceiling``: per measured kernel, the value in (0, 1] that
  minimizes the squared log error over the grid (the other attention constants stay the
  family's);
- ``memory.fraction`` and ``memory.l2_fraction``: measured over nominal bandwidth (when
  the device streams faster than the base spec's bandwidth, the bandwidth itself is
  replaced by the measurement and the fraction is 1);
- ``issue.cpu_issue_us``: the median host time per tiny eager op;
- ``host_link.efficiency`` (GPU only): pinned host→device copy over the link's nominal rate.

The result is a hardware YAML ``DIR/hardware/NAME.yaml`` (NAME defaults to
``BASE-calibrated``): on a GPU the base spec (``--base``, default the library entry whose
name matches the GPU's) with every fitted value marked ``source: measured``; on a CPU
without ``--base`` an entry built from this CPU (:func:`cpu_spec`: its name, cores, clock,
cache and memory from the OS, its rates from its ISA flags), with measurements that
disagree listed as warnings (:func:`consistency_warnings`). Beside it: ``NAME.csv`` (every raw measurement with the model's
prediction after the fit) and ``NAME.png`` (measured vs model per kernel). Use it with
``wanir estimate --config-dir DIR hardware=NAME``.
"""
from __future__ import annotations

import csv
import datetime
import importlib.util
import math
import os
import platform
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from rich.progress import Progress

from wanir import hardware
from wanir.backends.roofline import Model
from wanir.errors import ConfigError, WanirError
from wanir.kernels import resolve_attention
from wanir.limits import usable_cpus
from wanir.safeio import load_yaml, printable, read_text_file
from wanir.safeout import check_output_dir, check_output_path, write_output

DEVICES = ("auto", "cpu", "cuda")
#: attention backends: name -> (kernel-model name or None, import it needs, device)
ATTENTION_BACKENDS = {
    "sdpa": (None, "torch", "any"),                 # what SDPA picks; resolved per family
    "sdpa-math": ("math", "torch", "any"),
    "sdpa-flash": ("torch-sdpa", "torch", "cuda"),
    "sdpa-efficient": (None, "torch", "cuda"),
    "sdpa-cudnn": ("cudnn", "torch", "cuda"),
    "flash_attn": ("flash2", "flash_attn", "cuda"),
    "flash_attn_interface": ("flash3", "flash_attn_interface", "cuda"),
    "sageattention": ("sage2", "sageattention", "cuda"),
}


@dataclass
class Row:
    """One measurement: what ran, its work (FLOPs or bytes), the median seconds, the
    measured rate and (after the fit) the model's rate, in ``unit``."""

    bench: str
    backend: str
    dtype: str
    shape: str
    work: float
    seconds: float
    unit: str
    measured: float
    model: float | None = None
    note: str = ""


def _torch():
    """The ``torch`` module (with ``torch.nn.attention``, SDPA's backend switch); a WanirError
    naming the extra when PyTorch is missing."""
    try:
        import torch.nn.attention  # late import: torch is the optional 'reference' extra
    except ImportError:
        raise WanirError("wanir calibrate needs PyTorch: install the 'reference' extra "
                         "(pip install 'wanir[reference]')") from None
    return torch


def _pick_device(torch, device: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: allowed: {', '.join(DEVICES)}")
    has_cuda = bool(torch.cuda.is_available())
    if device == "cuda" and not has_cuda:
        raise WanirError("--device cuda: PyTorch sees no GPU (torch.cuda.is_available() is False)")
    return "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"


class _Clock:
    """Median timing with a shared time budget."""

    def __init__(self, torch, dev: str, budget_s: float, quick: bool):
        self.torch, self.dev = torch, dev
        self.t0 = time.perf_counter()
        self.budget = budget_s
        self.reps = 3 if quick else 7
        self.max_s = 0.3 if quick else 1.5

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def sync(self):
        if self.dev == "cuda":
            self.torch.cuda.synchronize()

    def time(self, fn, inner: int = 1) -> float:
        """Median seconds of one call of ``fn`` (``inner`` calls per sample)."""
        fn()
        self.sync()
        samples, spent = [], 0.0
        while len(samples) < self.reps and (not samples or spent < self.max_s):
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            self.sync()
            dt = time.perf_counter() - t
            spent += dt
            samples.append(dt / inner)
        return statistics.median(samples)


# ---------------------------------------------------------------------------------- grids


def grids(quick: bool, dev: str) -> dict:
    """Shapes of every benchmark (small ones with ``quick``)."""
    gpu = dev == "cuda"
    if quick:
        return {
            "gemm": [(n, n, n) for n in ((1024, 2048) if gpu else (128, 256))],
            "gemm_dtypes": ("bf16", "fp32") if gpu else ("fp32",),
            "attention": [(1, 4, s, 64) for s in ((1024, 2048) if gpu else (128, 256))],
            "conv3d": [(1, 16, 4, 32, 32)] if not gpu else [(1, 96, 4, 64, 64)],
            "memory_large_mib": 256 if gpu else 16,
            "memory_small_kib": 256,
            "issue_ops": 200,
            "host_mib": 64,
        }
    return {
        "gemm": [(m, n, k) for m in (512, 2048, 8192) for n, k in ((1536, 1536), (5120, 5120), (13824, 5120))]
        if gpu else [(n, n, n) for n in (256, 512, 1024)],
        "gemm_dtypes": ("bf16", "fp16", "fp32") if gpu else ("fp32", "bf16"),
        "attention": [(b, h, s, 128) for b, h, s in ((1, 40, 1024), (1, 40, 4096), (1, 12, 8192), (1, 5, 16384))]
        if gpu else [(1, 4, s, 64) for s in (256, 512, 1024)],
        "conv3d": [(1, c, t, h, w) for c, t, h, w in ((96, 4, 120, 208), (192, 4, 60, 104), (384, 2, 30, 52))]
        if gpu else [(1, 16, 4, 32, 32), (1, 32, 4, 32, 32)],
        "memory_large_mib": 1024 if gpu else 64,
        "memory_small_kib": 512,
        "issue_ops": 2000,
        "host_mib": 512,
    }


_TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _bench_gemm(torch, clock, g, rows, progress):
    for dt in g["gemm_dtypes"]:
        tdt = getattr(torch, _TORCH_DTYPES[dt])
        for m, n, k in g["gemm"]:
            if clock.left() <= 0:
                return
            a = torch.randn(m, k, device=clock.dev, dtype=tdt)
            b = torch.randn(k, n, device=clock.dev, dtype=tdt)
            s = clock.time(lambda: torch.matmul(a, b))
            f = 2 * m * n * k
            rows.append(Row("gemm", "torch.matmul", dt, f"{m}x{n}x{k}", f, s, "TFLOP/s", f / s / 1e12))
            progress()


def attention_backends(torch, dev: str, wanted: list[str] | None) -> list[str]:
    """The attention backends to measure; a requested one that cannot run is an error naming
    what it needs."""
    out = []
    for name, (_, mod, where) in ATTENTION_BACKENDS.items():
        ok = (where == "any" or where == dev) and importlib.util.find_spec(mod) is not None
        if wanted is not None and name in wanted and not ok:
            need = f"the '{mod}' package" if mod != "torch" else "a CUDA GPU"
            raise WanirError(f"--attention {name}: this backend is not available here (it needs {need}); "
                             f"available: {', '.join(attention_backends(torch, dev, None))}")
        if ok and (wanted is None or name in wanted):
            out.append(name)
    if wanted is not None:
        bad = [w for w in wanted if w not in ATTENTION_BACKENDS]
        if bad:
            raise ConfigError(f"--attention {bad[0]}: unknown backend; allowed: {', '.join(ATTENTION_BACKENDS)}")
    return out


def _attention_fn(torch, name, q, k, v):
    F = torch.nn.functional
    if name == "sdpa":
        return lambda: F.scaled_dot_product_attention(q, k, v)
    if name.startswith("sdpa-"):
        att = torch.nn.attention
        be = {"sdpa-math": att.SDPBackend.MATH, "sdpa-flash": att.SDPBackend.FLASH_ATTENTION,
              "sdpa-efficient": att.SDPBackend.EFFICIENT_ATTENTION,
              "sdpa-cudnn": att.SDPBackend.CUDNN_ATTENTION}[name]

        def run():
            with att.sdpa_kernel([be]):
                return F.scaled_dot_product_attention(q, k, v)
        return run
    fn = _kernel_function(name)
    if name == "sageattention":
        return lambda: fn(q, k, v, tensor_layout="HND")
    qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))     # (B, L, H, D)
    return lambda: fn(qt, kt, vt)


#: the attention function of each optional kernel package (by backend; its module in ATTENTION_BACKENDS)
KERNEL_FUNCTIONS = {"flash_attn": "flash_attn_func", "flash_attn_interface": "flash_attn_func",
                    "sageattention": "sageattn"}


def _kernel_function(name: str):
    """The attention function of backend ``name``'s optional kernel package."""
    module = importlib.import_module(ATTENTION_BACKENDS[name][1])  # late import: optional kernel package
    return getattr(module, KERNEL_FUNCTIONS[name])


def _bench_attention(torch, clock, g, rows, progress, backends):
    dt = "bf16" if clock.dev == "cuda" else "fp32"
    tdt = getattr(torch, _TORCH_DTYPES[dt])
    for name in backends:
        for b, h, s, d in g["attention"]:
            if clock.left() <= 0:
                return
            q, k, v = (torch.randn(b, h, s, d, device=clock.dev, dtype=tdt) for _ in range(3))
            try:
                fn = _attention_fn(torch, name, q, k, v)
                sec = clock.time(fn)
            except RuntimeError as e:      # a backend that refuses this shape or dtype
                rows.append(Row("attention", name, dt, f"b{b}h{h}s{s}d{d}", 0, 0, "TFLOP/s", 0,
                                note=f"did not run: {str(e).splitlines()[0][:80]}"))
                continue
            f = 4 * b * h * s * s * d
            rows.append(Row("attention", name, dt, f"b{b}h{h}s{s}d{d}", f, sec, "TFLOP/s", f / sec / 1e12))
            progress()


def _bench_conv(torch, clock, g, rows, progress):
    dt = "bf16" if clock.dev == "cuda" else "fp32"
    tdt = getattr(torch, _TORCH_DTYPES[dt])
    for n, c, t, h, w in g["conv3d"]:
        if clock.left() <= 0:
            return
        f = 2 * n * c * t * h * w * c * 27
        for layout, fmt in (("", torch.contiguous_format), (" channels_last_3d", torch.channels_last_3d)):
            if clock.left() <= 0:
                return
            conv = torch.nn.Conv3d(c, c, 3, padding=1).to(clock.dev, tdt).to(memory_format=fmt)
            x = torch.randn(n, c, t, h, w, device=clock.dev, dtype=tdt).to(memory_format=fmt)
            with torch.no_grad():
                sec = clock.time(lambda: conv(x))
            rows.append(Row("conv3d", "torch.nn.Conv3d" + layout, dt, f"{n}x{c}x{t}x{h}x{w}", f, sec, "TFLOP/s",
                            f / sec / 1e12, note="" if not layout else "recorded, not fitted (the default layout is)"))
        progress()


def _bench_memory(torch, clock, g, rows, progress):
    for label, nbytes in (("large", g["memory_large_mib"] * 2**20), ("small", g["memory_small_kib"] * 2**10)):
        if clock.left() <= 0:
            return
        n = nbytes // 4
        a = torch.randn(n, device=clock.dev)
        b = torch.randn(n, device=clock.dev)
        out = torch.empty(n, device=clock.dev)
        inner = 1 if label == "large" else 50
        sec = clock.time(lambda: torch.add(a, b, out=out), inner=inner)
        moved = 3 * nbytes
        rows.append(Row("memory", f"add-{label}", "fp32", f"{nbytes} B x 3", moved, sec, "GB/s", moved / sec / 1e9))
        progress()


def _bench_issue(torch, clock, g, rows, progress):
    x = torch.zeros(1, device=clock.dev)
    n = g["issue_ops"]

    def ops():
        for _ in range(n):
            x.add_(1.0)
    sec = clock.time(ops) / n
    rows.append(Row("issue", "tensor.add_ (1 element)", "fp32", "1", 1, sec, "us", sec * 1e6))
    progress()


def _bench_host_work(torch, clock, g, rows, progress):
    """Host work around the ops (backends/host_stages.py): the overhead of one nn.Module call
    (calling a module whose forward returns its input, minus calling a plain function that
    does), and tokenizing one 512-token prompt when a UMT5 tokenizer is in the local cache."""
    x = torch.zeros(1)
    n = g["issue_ops"]

    class _Identity(torch.nn.Module):
        def forward(self, t):
            return t

    mod = _Identity()

    def plain(t):
        return t

    def calls():
        for _ in range(n):
            mod(x)

    def funcs():
        for _ in range(n):
            plain(x)
    sec = max(0.0, (clock.time(calls) - clock.time(funcs)) / n)
    rows.append(Row("module_call", "nn.Module.__call__ overhead", "-", "1", 1, sec, "us", sec * 1e6))
    try:
        from transformers import AutoTokenizer  # late import: optional extra, only to time a cached tokenizer
        tok = AutoTokenizer.from_pretrained("google/umt5-xxl", local_files_only=True)
    except Exception:    # not installed or not cached: nothing to measure (no download)
        tok = None
    if tok is not None:
        prompt = "A cat walks on the grass, realistic style, golden hour light, " * 8
        sec = clock.time(lambda: tok(prompt, padding="max_length", max_length=512, truncation=True))
        rows.append(Row("tokenize", "UMT5 tokenizer, 512 tokens", "-", "1", 1, sec, "ms", sec * 1e3))
    progress()


def _bench_host(torch, clock, g, rows, progress):
    if clock.dev != "cuda":
        return
    nbytes = g["host_mib"] * 2**20
    dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    for pinned in (True, False):
        h = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
        for direction, fn in (("h2d", lambda: dev.copy_(h, non_blocking=pinned)),
                              ("d2h", lambda: h.copy_(dev, non_blocking=pinned))):
            sec = clock.time(fn)
            rows.append(Row("host_link", f"{direction}-{'pinned' if pinned else 'pageable'}", "uint8", str(nbytes),
                            nbytes, sec, "GB/s", nbytes / sec / 1e9))
            progress()


# ---------------------------------------------------------------------------------- fitting


def _with(hw, kernels: dict, **fields):
    return replace(hw, kernels=kernels, **fields)


def _leaf(v, note=""):
    d = {"value": float(round(v, 6)), "source": "measured"}
    if note:
        d["note"] = note
    return d


def _clip(v, lo=1e-4, hi=1.0):
    return min(max(v, lo), hi)


def _att_model(model, shape: str, dt: str) -> float:
    b, rest = shape[1:].split("h", 1)
    h, rest = rest.split("s", 1)
    s, d = rest.split("d", 1)
    b, h, s, d = int(b), int(h), int(s), int(d)
    t, _ = model.attention(b * h, s, s, d, d, dt)
    return t


def fit(hw, rows: list[Row]) -> tuple[object, dict, dict]:
    """Fit the kernel constants of ``hw`` to ``rows``. Returns (the fitted Hardware, the
    ``kernels:`` overrides, other measured fields {dotted key: value}) and fills each row's
    ``model`` (the fitted model's rate)."""
    over: dict = {}
    fields: dict = {}
    notes = []

    def model_of(k=None):
        return Model(_with(hw, k if k is not None else over), "math")

    # memory
    mem = [r for r in rows if r.bench == "memory" and r.seconds]
    large = [r for r in mem if r.backend == "add-large"]
    small = [r for r in mem if r.backend == "add-small"]
    bw = hw.memory_bandwidth
    if large:
        meas = large[0].work / large[0].seconds
        if meas > bw:
            bw = meas
            fields["memory.bandwidth_tbps"] = meas / 1e12
            over.setdefault("memory", {})["fraction"] = _leaf(1.0, "the measured stream rate replaces the bandwidth")
        else:
            over.setdefault("memory", {})["fraction"] = _leaf(_clip(meas / bw, 1e-3))
    if small:
        meas = small[0].work / small[0].seconds
        l2bw = hw.micro.l2_bandwidth
        if meas > l2bw:
            fields["microarch.l2_bandwidth_tbps"] = meas / 1e12
            over.setdefault("memory", {})["l2_fraction"] = _leaf(1.0, "the measured in-cache rate replaces the L2 bandwidth")
        else:
            over.setdefault("memory", {})["l2_fraction"] = _leaf(_clip(meas / l2bw, 1e-3))
    if "memory.bandwidth_tbps" in fields:
        hw = replace(hw, memory_bandwidth=fields["memory.bandwidth_tbps"] * 1e12)
    if "microarch.l2_bandwidth_tbps" in fields:
        hw = replace(hw, micro=replace(hw.micro, l2_bandwidth=fields["microarch.l2_bandwidth_tbps"] * 1e12))
    # issue
    iss = [r for r in rows if r.bench == "issue" and r.seconds]
    if iss:
        over["issue"] = {"cpu_issue_us": _leaf(min(iss[0].measured, 1e5))}
    for bench, key in (("module_call", "module_call_us"), ("tokenize", "tokenize_ms")):
        hr = [r for r in rows if r.bench == bench and r.seconds]
        if hr:
            over.setdefault("issue", {})[key] = _leaf(min(hr[0].measured, 1e5))
    # GEMM: time is linear in 1/ceiling
    g = [r for r in rows if r.bench == "gemm" and r.seconds]
    for key, sel in (("ceiling", lambda r: r.dtype != "fp32"), ("fp32_ceiling", lambda r: r.dtype == "fp32")):
        rs = [r for r in g if sel(r)]
        if not rs:
            continue
        m = model_of({**over, "gemm": {**over.get("gemm", {}), key: _leaf(1.0)}})
        ratios = []
        for r in rs:
            mm, nn, kk = (int(x) for x in r.shape.split("x"))
            ratios.append(m.gemm(1, mm, nn, kk, r.dtype)[0] / r.seconds)
        c = statistics.median(ratios)
        if c > 1:
            notes.append(f"gemm.{key}: measured faster than the base spec's peak allows; clipped to 1")
        over.setdefault("gemm", {})[key] = _leaf(_clip(c))
    # conv: relative to the fitted GEMM
    cv = [r for r in rows if r.bench == "conv3d" and r.backend == "torch.nn.Conv3d" and r.seconds]
    if cv:
        m = model_of({**over, "conv": {"ceiling_factor": _leaf(1.0), "transposes": _leaf(0.0)}})
        ratios = []
        for r in cv:
            n, c_, t, h, w = (int(x) for x in r.shape.split("x"))
            ratios.append(m.conv_shape(1, n * t * h * w, c_, c_ * 27, 0, False, r.dtype)[0] / r.seconds)
        over["conv"] = {"ceiling_factor": _leaf(_clip(statistics.median(ratios), 1e-3)),
                        "transposes": _leaf(0.0, "measured convolutions include any layout transposes")}
    # attention: per kernel, the mma_ceiling minimizing the squared log error
    att = [r for r in rows if r.bench == "attention" and r.seconds]
    by_kernel: dict[str, list[Row]] = {}
    for r in att:
        k = ATTENTION_BACKENDS[r.backend][0]
        if r.backend == "sdpa":
            k = resolve_attention("sdpa", hw)
        if k in (None, "math"):
            continue
        by_kernel.setdefault(k, []).append(r)
    for k, rs in by_kernel.items():
        best = None
        for i in range(1, 201):
            c = i / 200 if i > 20 else 10 ** (-4 + 3 * i / 20)   # log-spaced below 0.1
            trial = {**over, "attention": {**over.get("attention", {}), k: {"mma_ceiling": _leaf(c)}}}
            try:
                m = Model(_with(hw, trial), k)
            except ConfigError:
                break
            err = sum(math.log(_att_model(m, r.shape, r.dtype) / r.seconds) ** 2 for r in rs)
            if best is None or err < best[0]:
                best = (err, c)
        if best is not None:
            over.setdefault("attention", {})[k] = {"mma_ceiling": _leaf(best[1])}
    fitted = _with(hw, over)
    # the fitted model's prediction per row
    for r in rows:
        if not r.seconds:
            continue
        if r.bench == "gemm":
            mm, nn, kk = (int(x) for x in r.shape.split("x"))
            r.model = r.work / Model(fitted, "math").gemm(1, mm, nn, kk, r.dtype)[0] / 1e12
        elif r.bench == "conv3d":
            n, c_, t, h, w = (int(x) for x in r.shape.split("x"))
            r.model = r.work / Model(fitted, "math").conv_shape(1, n * t * h * w, c_, c_ * 27, 0, False, r.dtype)[0] / 1e12
        elif r.bench == "attention":
            k = ATTENTION_BACKENDS[r.backend][0] or (resolve_attention("sdpa", hw) if r.backend == "sdpa" else None)
            if k:
                try:
                    r.model = r.work / _att_model(Model(fitted, k), r.shape, r.dtype) / 1e12
                except ConfigError:
                    pass
        elif r.bench == "memory":
            r.model = r.work / Model(fitted, "math").memory_time(r.work)[0] / 1e9
        elif r.bench == "issue":
            r.model = Model(fitted, "math").issue_s * 1e6
        elif r.bench in ("module_call", "tokenize"):
            r.model = r.measured     # taken as measured (no model to compare with)
    return fitted, over, {"fields": fields, "notes": notes}


# ---------------------------------------------------------------------------------- output


def _cpu_facts(torch) -> dict:
    """Core count (the threads ``torch`` runs on), last-level cache (MiB) and clock (GHz) of
    this CPU, where the OS says."""
    out = {"sms": int(torch.get_num_threads())}
    # the fast path's cache: the per-core L2 times the cores used (a shared L3 is not the
    # process's to keep, least of all in a virtual machine)
    p = Path("/sys/devices/system/cpu/cpu0/cache/index2/size")
    try:
        txt = p.read_text(encoding="ascii").strip()[:32]
        mult = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}.get(txt[-1:], None)
        if mult and txt[:-1].isdigit():
            out["l2_mib"] = int(txt[:-1]) * mult * out["sms"]
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for _, line in zip(range(4000), f):
                if line.startswith("cpu MHz"):
                    v = float(line.split(":", 1)[1])
                    if 100 < v < 10000:
                        out["clock_ghz"] = v / 1000
                    break
    except (OSError, ValueError):
        pass
    return out


#: ISA flags of /proc/cpuinfo that decide a CPU's matrix and vector rates (x86 ``flags``,
#: Arm ``Features``), in the order they are reported
ISA_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "avx2",
             "fma", "asimd", "sve", "sve2", "bf16", "i8mm")
#: bytes of /proc/cpuinfo read (a many-core machine's is a few hundred KiB)
CPUINFO_CAP = 4 * 2**20


def cpu_identity(cpuinfo: str | None = None) -> dict:
    """What CPU this is: {"model": its name (/proc/cpuinfo ``model name``, else the platform
    module), "logical_cpus": CPUs the OS lists, "cores_used": CPUs this process may run on
    (sched_getaffinity), "isa": the :data:`ISA_FLAGS` it reports}. ``cpuinfo`` is the text
    of /proc/cpuinfo (read, size-capped, when None)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", "rb") as f:
                cpuinfo = f.read(CPUINFO_CAP).decode("utf-8", "replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    logical = 0
    for line in cpuinfo.splitlines():
        key, sep, val = line.partition(":")
        key = key.strip().lower()
        if not sep:
            continue
        if key == "processor":
            logical += 1
        fields.setdefault(key, val.strip())
    model = fields.get("model name") or fields.get("hardware") or platform.processor() or platform.machine() \
        or "an unknown CPU"
    if not fields.get("model name") and not fields.get("hardware") and "cpu part" in fields:   # Arm
        model = f"Arm CPU implementer {fields.get('cpu implementer', '?')} part {fields['cpu part']}"
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    return {"model": printable(" ".join(model.split()), 120), "logical_cpus": logical or os.cpu_count() or 1,
            "cores_used": usable_cpus(), "isa": [f for f in ISA_FLAGS if f in flags]}


def isa_rates(isa) -> dict:
    """The per-core rates a CPU's ISA flags imply, as upper bounds (two FMA pipes per core, the
    common server design; a core with one, or AVX-512 split into two 256-bit halves as on AMD
    Zen 4, reaches half, which the fitted ceilings carry): {"instruction": the microarch
    family, "rates": {dtype: FLOP (int8: OP) per clock per core}, "fp32_lanes": FP32 FMA lanes
    per core, "why": a phrase naming the flags}. AMX (Intel): 1024 BF16 / 2048 INT8 multiply-adds
    per clock per core; AVX-512: 2 × 16 FP32 lanes, BF16 dot products (avx512_bf16) twice the FP32
    rate; AVX2+FMA: 2 × 8 lanes; Arm ASIMD: 2 × 4 lanes; otherwise 4 lanes."""
    isa = set(isa)
    if "avx512f" in isa:
        lanes, why = 32, "avx512f: 2 FMA pipes x 16 FP32 lanes"
    elif {"avx2", "fma"} <= isa:
        lanes, why = 16, "avx2+fma: 2 FMA pipes x 8 FP32 lanes"
    elif "asimd" in isa or "sve" in isa:
        lanes, why = 8, "asimd: 2 FMA pipes x 4 FP32 lanes"
    else:
        lanes, why = 4, "no SIMD flag recognised: 4 FP32 lanes assumed"
    if "amx_bf16" in isa:
        rates = {"bf16": 2048, "int8": 4096 if "amx_int8" in isa else 2048}
        return {"instruction": "amx", "rates": rates, "fp32_lanes": lanes,
                "why": "amx_bf16: 1024 BF16 multiply-adds per clock per core; " + why}
    bf16 = 4 * lanes if "avx512_bf16" in isa or "bf16" in isa else 2 * lanes   # dot products, or converted to FP32
    rates = {"bf16": bf16}
    if "avx512_vnni" in isa:
        rates["int8"] = 8 * lanes
    return {"instruction": "avx512" if "avx512f" in isa else "simd", "rates": rates, "fp32_lanes": lanes,
            "why": why + ("; BF16 dot products at twice the FP32 rate" if bf16 == 4 * lanes else
                          "; BF16 converted to FP32")}


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f.read(65536).decode("ascii", "replace").splitlines():
                if line.startswith("MemTotal:"):
                    kib = line.split()[1]
                    return int(kib) / 2**20 if kib.isdigit() and len(kib) < 15 else None
    except OSError:
        pass
    return None


def cpu_spec(ident: dict, facts: dict) -> dict:
    """A hardware mapping of this CPU built from what the OS reports and the ISA implies (no
    library template): cores, clock, cache and memory size as read here (``measured``), the
    per-core rates of :func:`isa_rates` (``assumed``, upper bounds the fitted ceilings
    correct), placeholders the measurements replace (bandwidths, issue cost), and no host
    link or GPU link use (a CPU device copies nothing)."""
    r = isa_rates(ident["isa"])
    clock = facts.get("clock_ghz") or 2.0
    src_clock = "measured" if facts.get("clock_ghz") else "assumed"
    note = f"upper bound from the ISA flags ({r['why']})"
    isa = ", ".join(ident["isa"]) or "none recognised"
    return {
        "name": "host-cpu-calibrated",
        "description": f"{ident['model']} ({facts.get('sms', ident['cores_used'])} cores used of "
                       f"{ident['logical_cpus']} CPUs; ISA {isa})",
        "kind": "cpu", "family": "cpu",
        "microarch": {
            "sms": {"value": int(facts.get("sms", ident["cores_used"])), "source": "measured"},
            "boost_clock_ghz": {"value": round(clock, 4), "source": src_clock},
            "tensor_clock_ghz": {"value": round(clock, 4), "source": src_clock},
            "tensor_flops_per_clk_sm": {r["instruction"]: {dt: {"value": v, "source": "assumed", "note": note}
                                                            for dt, v in r["rates"].items()}},
            "sfu_exp_per_clk_sm": {"value": 2, "source": "assumed", "note": "vectorized exp, a few per clock"},
            "fp32_lanes_per_sm": {"value": r["fp32_lanes"], "source": "assumed", "note": note},
            "l2_mib": {"value": round(facts.get("l2_mib", 1.0), 4), "source": "measured" if "l2_mib" in facts
                       else "assumed"},
            "l2_bandwidth_tbps": {"value": 1e-4, "source": "assumed", "note": "replaced by the in-cache measurement"},
        },
        "memory": {"capacity_gib": {"value": round(_mem_total_gib() or 16.0, 3),
                                    "source": "measured" if _mem_total_gib() else "assumed"},
                   "bandwidth_tbps": {"value": 1e-4, "source": "assumed",
                                      "note": "replaced by the stream measurement"}},
        "host_link": {"bandwidth_gbps": {"value": 64, "source": "assumed",
                                         "note": "unused: a CPU device copies no weights to a device"},
                      "efficiency": {"value": 1.0, "source": "assumed", "note": "unused on a CPU device"}},
        "gpu_link": {"bandwidth_gbps": {"value": None, "source": "assumed"}},
        "launch_overhead_us": {"value": 0, "source": "assumed",
                               "note": "no kernel launch on a CPU: the measured issue cost (kernels.issue) is the gap"},
    }


#: a measurement this far above what the OS and ISA imply is a disagreement worth a warning
CONSISTENCY_TOLERANCE = 1.10


def consistency_warnings(rows: list[Row], hw) -> list[str]:
    """Where the measurements disagree with each other or with the entry they build:
    a GEMM faster than the peak the core count, clock and ISA imply (the clock the OS reports
    is low, or more cores ran than were counted); a stream over a working set beyond the
    cache faster than one inside it; the same benchmark losing more than half its rate from
    one size to the next larger (another process shared the cores, or the clock throttled).
    Returns one line per disagreement."""
    out = []
    for r in rows:
        if r.bench != "gemm" or not r.seconds:
            continue
        peak = hw.vector_flops if r.dtype == "fp32" else hw.tensor_flops.get(r.dtype)
        if peak and r.work / r.seconds > CONSISTENCY_TOLERANCE * peak:
            out.append(f"GEMM {r.dtype} {r.shape} measured {r.measured:.3g} TFLOP/s, above the {peak / 1e12:.3g} "
                       f"TFLOP/s that {hw.micro.sms} cores x {hw.micro.tensor_clock_hz / 1e9:.3g} GHz and the ISA "
                       f"imply: the clock or core count read from the OS is low (turbo, SMT), or a unit is missing "
                       f"from the ISA flags")
            break
    mem = {r.backend: r.work / r.seconds for r in rows if r.bench == "memory" and r.seconds}
    if "add-large" in mem and "add-small" in mem and mem["add-large"] > CONSISTENCY_TOLERANCE * mem["add-small"]:
        out.append(f"the stream over the large working set ({mem['add-large'] / 1e9:.3g} GB/s) is faster than the "
                   f"one that fits the cache ({mem['add-small'] / 1e9:.3g} GB/s): the small one is dominated by "
                   f"per-call overhead or the large one fits a big last-level cache; the bandwidths are unreliable")
    by: dict = {}
    for r in rows:
        if r.bench in ("gemm", "conv3d", "attention") and r.seconds:
            by.setdefault((r.bench, r.backend, r.dtype), []).append(r)
    for (bench, backend, dt), rs in by.items():
        for a, b in zip(rs, rs[1:]):
            if a.work < b.work and b.measured < 0.5 * a.measured:
                out.append(f"{bench} {backend} {dt}: {b.shape} ran at {b.measured:.3g} {b.unit}, under half the "
                           f"{a.measured:.3g} of the smaller {a.shape}: another process shared the cores or the "
                           f"clock throttled; rerun on an idle machine")
                break
    return out


def _base_spec(base: str, config_dir=None) -> dict:

    files = hardware.yaml_files(config_dir)
    if base not in files:
        hardware.load(base, config_dir)      # raises the usual one-line error listing known names
        raise ConfigError(f"--base {base}: calibrate needs a YAML hardware spec to start from")
    return load_yaml(read_text_file(files[base], "hardware YAML"), str(files[base]))   # bounded read and YAML


def _guess_base(torch, dev: str) -> str:
    if dev == "cpu":
        return "host-cpu"
    name = torch.cuda.get_device_name(0).lower()
    for key, hw in (("h100", "h100-sxm"), ("h200", "h200"), ("h800", "h800"), ("h20", "h20"), ("a800", "a800"),
                    ("a100", "a100-80gb"), ("l40s", "l40s"), ("l20", "l20"), ("4090", "rtx-4090"), ("b200", "b200"),
                    ("gb200", "gb200"), ("mi300x", "mi300x"), ("mi325x", "mi325x")):
        if key in name:
            return hw
    raise WanirError(f"calibrate: no library entry matches the GPU '{torch.cuda.get_device_name(0)}'; "
                     f"give --base NAME (a hardware with the same architecture family)")


def _set(spec: dict, dotted: str, value, note: str = ""):
    cur = spec
    parts = dotted.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = {"value": float(round(value, 6)) if not isinstance(value, int) else value, "source": "measured"}
    if note:
        cur[parts[-1]]["note"] = note


def write_csv(path: Path, rows: list[Row]) -> None:
    write_output(path, lambda tmp: _write_csv(tmp, rows), (".csv",))   # a temporary file renamed into place


def _write_csv(path: Path, rows: list[Row]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["bench", "backend", "dtype", "shape", "work", "seconds", "unit", "measured", "model", "note"])
        for r in rows:
            w.writerow([r.bench, r.backend, r.dtype, r.shape, r.work, f"{r.seconds:.6g}", r.unit,
                        f"{r.measured:.6g}", "" if r.model is None else f"{r.model:.6g}", r.note])


def write_plot(path: Path, rows: list[Row], title: str) -> None:
    from .plots import plt  # late import: matplotlib (made headless there) loads in ~0.3 s; only plots need it
    benches = sorted({r.bench for r in rows if r.model and r.measured})
    fig, axes = plt.subplots(1, max(len(benches), 1), figsize=(4 * max(len(benches), 1), 4), squeeze=False)
    for ax, b in zip(axes[0], benches):
        rs = [r for r in rows if r.bench == b and r.model and r.measured]
        for name in sorted({r.backend for r in rs}):
            sel = [r for r in rs if r.backend == name]
            ax.scatter([r.measured for r in sel], [r.model for r in sel], label=name, s=18)
        lo = min(min(r.measured, r.model) for r in rs) * 0.8
        hi = max(max(r.measured, r.model) for r in rs) * 1.25
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {rs[0].unit}")
        ax.set_ylabel(f"model {rs[0].unit}")
        ax.set_title(b)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    write_output(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), (".png",))
    plt.close(fig)


def _check_name(name) -> str:
    """``--name``: letters, digits, '-', '_' and '.', at most 64 characters. Returns it."""
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").replace(".", "").isalnum() \
            or len(name) > 64 or not name.isascii() or name.startswith("."):
        raise ConfigError(f"--name {str(name)[:80]!r}: letters, digits, '-', '_' and '.' only (not first), "
                          f"at most 64 characters")
    return name


def run(output: str | os.PathLike, device: str = "auto", base: str | None = None, name: str | None = None,
        quick: bool = False, budget_s: float = 600.0, attention: list[str] | None = None,
        config_dir: str | None = None, progress: bool = True) -> dict:
    """Measure, fit and write ``output/hardware/NAME.yaml`` (+ ``.csv``, ``.png``). Returns
    {"yaml": path, "csv": path, "plot": path, "name": NAME, "rows": [Row], "notes": [str],
    "warnings": [str] (measurements that disagree, CPU only), "cpu": :func:`cpu_identity` or None}.
    On a CPU without ``base`` the entry is built from this CPU (:func:`cpu_spec`), not from a
    library template."""
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not math.isfinite(budget_s) \
            or not 1 <= budget_s <= 86400:
        raise ConfigError(f"--budget-s {budget_s!r}: must be a number of seconds in [1, 86400]")
    out = check_output_dir(output, "-o", ConfigError)      # before any measuring: a file or /dev/null is refused
    if name is not None:
        _check_name(name)
    for suffix in (".yaml", ".csv", ".png"):
        if name is not None:
            check_output_path(out / "hardware" / f"{name}{suffix}", (suffix,), "-o", ConfigError)
    torch = _torch()
    dev = _pick_device(torch, device)
    ident = cpu_identity() if dev == "cpu" else None
    facts = _cpu_facts(torch) if dev == "cpu" else {}
    if dev == "cpu" and base is None:   # built from this CPU, not from a library template
        spec, base = cpu_spec(ident, facts), "host-cpu"
    else:
        base = base or _guess_base(torch, dev)
        spec = _base_spec(base, config_dir)
    name = _check_name(name or f"{base}-calibrated")
    backends = attention_backends(torch, dev, attention)
    hdir = out / "hardware"
    for suffix in (".yaml", ".csv", ".png"):
        check_output_path(hdir / f"{name}{suffix}", (suffix,), "-o", ConfigError)
    try:
        hdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"-o {str(output)[:200]}: cannot create {hdir}: {e.strerror or e}") from None
    base_hw = hardware.from_mapping(spec, origin=f"--base {base}")
    g = grids(quick, dev)
    clock = _Clock(torch, dev, float(budget_s), quick)
    rows: list[Row] = []
    steps = (len(g["gemm"]) * len(g["gemm_dtypes"]) + len(backends) * len(g["attention"]) + len(g["conv3d"]) + 4
             + (4 if dev == "cuda" else 0))
    if facts:
        hw0 = base_hw
        micro = hw0.micro
        if "sms" in facts:
            micro = replace(micro, sms=facts["sms"])
        if "l2_mib" in facts:
            micro = replace(micro, l2_bytes=facts["l2_mib"] * 2**20)
        if "clock_ghz" in facts:
            micro = replace(micro, boost_clock_hz=facts["clock_ghz"] * 1e9, tensor_clock_hz=facts["clock_ghz"] * 1e9)
        base_hw = replace(hw0, micro=micro)
    if progress:
        bar = Progress(transient=True)
    else:
        bar = nullcontext()
    with bar as p:
        task = p.add_task(f"calibrating {name} on {dev}", total=steps) if progress else None

        def tick():
            if progress:
                p.advance(task)
        with torch.inference_mode():
            _bench_issue(torch, clock, g, rows, tick)
            _bench_host_work(torch, clock, g, rows, tick)
            _bench_memory(torch, clock, g, rows, tick)
            _bench_gemm(torch, clock, g, rows, tick)
            _bench_conv(torch, clock, g, rows, tick)
            _bench_attention(torch, clock, g, rows, tick, backends)
            _bench_host(torch, clock, g, rows, tick)
    notes = []
    if clock.left() <= 0:
        notes.append(f"the time budget ({budget_s:g} s) ran out: later benchmarks were skipped")
    if dev == "cuda" and torch.cuda.device_count() > 1:
        notes.append("collectives are not measured in one process: run nccl-tests and set parallel.intra_node")
    fitted, over, extra = fit(base_hw, rows)
    notes += extra["notes"]
    warnings = consistency_warnings(rows, base_hw) if dev == "cpu" else []
    # the YAML: the base spec with the measured values
    spec = dict(spec)
    spec["name"] = name
    if ident is not None:   # the CPU it ran on, whatever the base was
        isa = ", ".join(ident["isa"]) or "no ISA flag recognised"
        what = f"{ident['model']} ({base_hw.micro.sms} cores used of {ident['logical_cpus']} CPUs; ISA {isa})"
    else:
        what = str(spec.get("description", base))
    spec["description"] = f"{what}, calibrated on this {dev} by wanir calibrate ({datetime.date.today().isoformat()})"
    if dev == "cpu":
        iss = [r for r in rows if r.bench == "issue" and r.seconds]
        if iss and base_hw.launch_overhead_s == 0:
            _set(spec, "launch_overhead_us", min(iss[0].measured, 1e5), "the measured issue cost per op")
    for k, v in facts.items():
        key = {"sms": "microarch.sms", "l2_mib": "microarch.l2_mib"}.get(k)
        if key:
            _set(spec, key, v)
        elif k == "clock_ghz":
            _set(spec, "microarch.boost_clock_ghz", v)
            _set(spec, "microarch.tensor_clock_ghz", v)
    for k, v in extra["fields"].items():
        _set(spec, k, v)
    h2d = [r for r in rows if r.backend == "h2d-pinned"]
    if h2d:
        _set(spec, "host_link.efficiency", _clip(h2d[0].measured * 1e9 / base_hw.host_link_bandwidth, 1e-3))
    spec["kernels"] = over
    spec.pop("tensor_tflops", None)         # the headline of the base part: the peaks derive from microarch
    spec.pop("vector_tflops", None)
    hardware.from_mapping(spec, origin=f"calibrated {name}")       # validate before writing
    ypath = hdir / f"{name}.yaml"
    header = (f"# Calibrated by `wanir calibrate --device {dev}{' --quick' if quick else ''}` from the base "
              f"'{base}'.\n# Values marked source: measured were measured or fitted here; raw data in {name}.csv, "
              f"measured vs model in {name}.png.\n")
    write_output(ypath, header + yaml.safe_dump(spec, sort_keys=False, width=120), (".yaml",))   # atomic
    cpath = hdir / f"{name}.csv"
    write_csv(cpath, rows)
    ppath = hdir / f"{name}.png"
    write_plot(ppath, rows, f"{name}: measured vs model")
    return {"yaml": ypath, "csv": cpath, "plot": ppath, "name": name, "rows": rows, "notes": notes,
            "warnings": warnings, "cpu": ident}


# ---------------------------------------------------------------------------------- CLI


def add_parser(sub) -> None:
    """Register ``wanir calibrate`` on an argparse subparsers object."""
    c = sub.add_parser("calibrate", help="measure this device with PyTorch microbenchmarks and write a calibrated "
                                         "hardware YAML (needs the 'reference' extra)")
    c.add_argument("-o", "--output", required=True, help="config directory to write hardware/NAME.yaml (+ .csv, .png) into")
    c.add_argument("--device", choices=DEVICES, default="auto", help="device to measure (default: a GPU if present)")
    c.add_argument("--base", default=None, help="hardware spec to start from (default: host-cpu on a CPU, the "
                                                "library entry matching the GPU's name otherwise)")
    c.add_argument("--name", default=None, help="name of the calibrated hardware (default: BASE-calibrated)")
    c.add_argument("--quick", action="store_true", help="a tiny grid (seconds)")
    c.add_argument("--budget-s", type=float, default=600.0, help="stop measuring after this many seconds (default 600)")
    c.add_argument("--attention", default=None,
                   help=f"comma-separated attention backends to measure (default: every available one of "
                        f"{', '.join(ATTENTION_BACKENDS)})")
    c.add_argument("--config-dir", default=None, help="your own config directory (for --base)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd)


def cmd(args) -> int:
    att = [a for a in args.attention.split(",") if a] if args.attention else None
    res = run(args.output, device=args.device, base=args.base, name=args.name, quick=args.quick,
              budget_s=args.budget_s, attention=att, config_dir=args.config_dir, progress=not args.quiet)
    fitted = sum(1 for r in res["rows"] if r.seconds)
    print(f"wrote {res['yaml']} ({fitted} measurements in {res['csv'].name}, measured vs model in {res['plot'].name})")
    if res.get("cpu"):
        c = res["cpu"]
        print(f"measured on {c['model']}: {c['cores_used']} usable cores of {c['logical_cpus']} CPUs; ISA "
              f"{', '.join(c['isa']) or 'none recognised'}")
    for n in res["notes"]:
        print(f"note: {n}")
    for w in res.get("warnings", ()):
        print(f"warning: {w}")
    print(f"use it: wanir estimate --config-dir {args.output} hardware={res['name']}")
    return 0
