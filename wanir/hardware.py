"""Hardware specs: loading, validating and listing the accelerators the roofline backend
times a graph on.

A spec is data: one YAML file per device in the ``hardware`` config group
(``wanir/configs/hardware/*.yaml``, or ``hardware/NAME.yaml`` in a user's ``--config-dir``),
or a Python class registered under the ``wanir.hardware`` entry-point group whose
``spec()`` returns the same mapping. Every number is written ``{value: X, source: KIND}``
where KIND says where it came from (:data:`SOURCES`). The format is described in
docs/adding-hardware.md; :class:`Hardware` is the validated, unit-normalized form
(FLOP/s, bytes, bytes/s, seconds).
"""
from __future__ import annotations

import difflib
import functools
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from .dtypes import DTYPES
from .errors import ConfigError
from .dictconfig import check_config, create, omegaconf, to_plain
from .kernels import FAMILIES, SOURCES, check_overrides
from .limits import check_hw_number
from .paths import CONFIG_DIR
from .safeio import check_config_dir, check_yaml_text, load_yaml, printable, read_text_file
from .scenario import freeze

#: tensor instruction families a microarch may list rates for
#: (``matrix``: a generic accelerator's matrix unit, family generic; ``simd``: a CPU's vector
#: FMA units (AVX2, Arm ASIMD) when it has neither AMX nor AVX-512)
INSTRUCTIONS = ("mma_sync", "wgmma", "tcgen05", "mfma", "amx", "avx512", "matrix", "simd")
#: dtypes a tensor instruction rate is given for (fp8 covers e4m3 and e5m2)
RATE_DTYPES = ("bf16", "fp16", "fp8", "tf32", "int8")
KINDS = ("gpu", "cpu")
ENTRY_POINT_GROUP = "wanir.hardware"

_TERA = 10**12
_GIGA = 10**9
_GIB = 2**30


class HardwareError(ConfigError):
    """A hardware spec is malformed; the message names the file (or entry point) and key."""


def _ro(d):
    """A read-only deep copy of a spec's mapping."""
    return freeze(d)


@dataclass(frozen=True)
class Microarch:
    """Per-SM (per-CU, per-core) resources: ``sms`` count, ``boost_clock_hz`` (the FP32 peak's
    clock), ``tensor_clock_hz`` (the sustained tensor clock), ``rates`` FLOP per clock per SM by
    instruction family then dtype (the first family listed is the native one), ``sfu_exp``
    exp results per clock per SM, ``fp32_lanes`` FP32 FMA lanes per SM, ``l2_bytes`` and
    ``l2_bandwidth`` (bytes/s) of the last-level cache."""

    sms: int
    boost_clock_hz: float
    tensor_clock_hz: float
    rates: dict
    sfu_exp: float
    fp32_lanes: float
    l2_bytes: float
    l2_bandwidth: float

    def __post_init__(self):
        object.__setattr__(self, "rates", _ro(self.rates))

    @property
    def native(self) -> str:
        """The native tensor instruction family (the first one listed)."""
        return next(iter(self.rates))

    def rate(self, instruction: str, dtype: str) -> float | None:
        """FLOP per clock per SM of ``instruction`` at rate dtype ``dtype`` (None if absent;
        an instruction the device does not list falls back to the native one)."""
        r = self.rates.get(instruction) or self.rates[self.native]
        return r.get(dtype)


def rate_dtype(dtype: str) -> str:
    """The microarch rate key of a wanir compute dtype (fp8_e4m3/fp8_e5m2 -> fp8)."""
    return "fp8" if dtype.startswith("fp8") else dtype


@dataclass(frozen=True)
class HostTopology:
    """How a PCIe card reaches its peers and the host (``host_topology:`` in the YAML;
    backends/comm.py): ``p2p`` whether peers copy directly over PCIe (False: NCCL stages every
    collective through pinned host memory), ``cards_per_root_complex`` how many cards share
    one x16 uplink to the CPU (a PCIe switch or a bifurcated slot), ``host_memory_bandwidth``
    bytes/s of the host's DRAM that staged and offloaded traffic crosses."""

    p2p: bool
    cards_per_root_complex: int
    host_memory_bandwidth: float


@dataclass(frozen=True)
class Hardware:
    """One device, in SI units: ``tensor_flops`` dense peak FLOP/s per compute dtype name,
    ``vector_flops`` FLOP/s of the non-tensor (FP32) units, ``memory_bytes`` capacity in
    bytes, ``memory_bandwidth`` bytes/s, ``host_link_bandwidth`` and ``gpu_link_bandwidth``
    bytes/s per direction (``gpu_link_bandwidth`` None when peers talk over the host link),
    ``host_link_efficiency`` the achieved fraction of the host link, ``launch_overhead_s``
    seconds of GPU-side gap per kernel, ``family`` the architecture family, ``micro`` the
    :class:`Microarch`, ``datasheet_flops`` the headline peaks the file lists (FLOP/s; the
    model uses the peaks derived from ``micro``), ``kernels`` per-device overrides of the
    kernel constants (``kernels:`` in the YAML, e.g. from ``wanir calibrate``), ``sources`` the
    source kind of every value by dotted key."""

    name: str
    description: str
    kind: str
    tensor_flops: dict[str, float]
    vector_flops: float
    memory_bytes: int
    memory_bandwidth: float
    host_link_bandwidth: float
    host_link_efficiency: float
    gpu_link_bandwidth: float | None
    launch_overhead_s: float
    family: str
    micro: Microarch
    datasheet_flops: dict[str, float] = field(default_factory=dict)
    kernels: dict = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    origin: str = ""
    host_topology: HostTopology | None = None

    def __post_init__(self):   # read-only all the way down: a spec is shared by every estimate on it
        for f in ("tensor_flops", "datasheet_flops", "kernels", "sources"):
            object.__setattr__(self, f, _ro(getattr(self, f)))

    def peak(self, dtype: str) -> float:
        """Dense tensor peak in FLOP/s for compute dtype ``dtype`` (``tf32`` falls back to
        ``fp32`` on devices without TF32). Raises ConfigError naming the device and the dtypes
        it has."""
        v = self.tensor_flops.get(dtype)
        if v is None and dtype == "tf32":
            v = self.tensor_flops.get("fp32")
        if v is None:
            raise ConfigError(f"hardware '{self.name}' has no tensor peak for dtype {dtype!r} "
                              f"(it has: {', '.join(self.tensor_flops)}); add microarch.tensor_flops_per_clk_sm.<instruction>."
                              f"{rate_dtype(dtype)} to {self.origin or 'its spec'}")
        return v

    def ridge_point(self, dtype: str = "bf16") -> float:
        """FLOPs per byte at which a kernel at peak turns from memory- to compute-bound."""
        return self.peak(dtype) / self.memory_bandwidth

    def summary(self) -> dict:
        """A flat record for listings: name, description, bf16/fp8 TFLOP/s, memory GiB,
        bandwidth TB/s, link GB/s, origin."""
        return {"name": self.name, "description": self.description, "kind": self.kind,
                "bf16_tflops": _tflops(self.tensor_flops.get("bf16")),
                "fp8_tflops": _tflops(self.tensor_flops.get("fp8_e4m3")),
                "vector_tflops": _tflops(self.vector_flops),
                "memory_gib": self.memory_bytes / _GIB,
                "bandwidth_tbps": self.memory_bandwidth / _TERA,
                "gpu_link_gbps": None if self.gpu_link_bandwidth is None else self.gpu_link_bandwidth / _GIGA,
                "host_link_gbps": self.host_link_bandwidth / _GIGA,
                "family": self.family, "sms": self.micro.sms,
                "sources": {k: sum(1 for v in self.sources.values() if v == k) for k in SOURCES},
                "l2_mib": self.micro.l2_bytes / 2**20,
                "origin": self.origin}


def _tflops(v):
    return None if v is None else v / _TERA


# ---------------------------------------------------------------------------------- parsing


class _Reader:
    """Reads a spec mapping, collecting the source of every value; errors name origin + key."""

    def __init__(self, data: Mapping, origin: str):
        self.data = data
        self.origin = origin
        self.sources: dict[str, str] = {}

    def fail(self, key: str, msg: str):
        raise HardwareError(f"{self.origin}: key '{key}': {msg}")

    def node(self, key: str, required: bool = True):
        cur: Any = self.data
        for part in key.split("."):
            if not isinstance(cur, Mapping) or part not in cur:
                if not required:
                    return None
                self.fail(key, "missing")
            cur = cur[part]
        return cur

    def source(self, key: str, node) -> str:
        src = node.get("source") if isinstance(node, Mapping) else None
        if src not in SOURCES:
            self.fail(key + ".source", f"must be one of {', '.join(SOURCES)}, got {src!r}")
        self.sources[key] = src
        return src

    def number(self, key: str, required: bool = True, positive: bool = True, allow_null: bool = False):
        node = self.node(key, required)
        if node is None:
            return None
        if not isinstance(node, Mapping) or "value" not in node:
            self.fail(key, f"must be written {{value: NUMBER, source: {'|'.join(SOURCES)}}}, got {_show(node)}")
        v = node["value"]
        if v is None and allow_null:
            self.source(key, node)
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(key + ".value", f"must be a number, got {_show(v)}")
        if positive and v <= 0:
            self.fail(key + ".value", f"must be positive, got {v}")
        if (why := check_hw_number(v, positive)) is not None:   # no 1e-320 bandwidth (inf times)
            self.fail(key + ".value", why)
        self.source(key, node)
        return float(v)

    def fraction(self, key: str, v) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            self.fail(key, f"an efficiency must be a number in (0, 1], got {_show(v)}")
        return float(v)

    def bounded(self, key: str, lo: float, hi: float) -> float:
        v = self.number(key)
        if not lo <= v <= hi:
            self.fail(key + ".value", f"must lie in [{lo:g}, {hi:g}], got {v:g}")
        return v


def _show(v) -> str:
    s = repr(v)
    return s if len(s) < 60 else s[:57] + "..."


def from_mapping(data: Mapping, origin: str = "<spec>", name: str | None = None) -> Hardware:
    """Validate a spec mapping (the content of one hardware YAML file) and return the
    Hardware it describes, in SI units. Raises HardwareError naming ``origin`` and the key."""
    if type(data).__name__ == "DictConfig":
        data = _plain_spec(data)
    if not isinstance(data, Mapping):
        raise HardwareError(f"{origin}: a hardware spec must be a mapping, got {type(data).__name__}")
    r = _Reader(data, origin)
    hw_name = data.get("name", name)
    if not isinstance(hw_name, str) or not hw_name or len(hw_name) > 128 or not hw_name.isprintable():
        r.fail("name", f"must be a non-empty printable string of at most 128 characters, got {_show(hw_name)}")
    kind = data.get("kind", "gpu")
    if kind not in KINDS:
        r.fail("kind", f"must be one of {', '.join(KINDS)}, got {_show(kind)}")
    if "efficiency" in data:
        r.fail("efficiency", "step tables of efficiency were replaced by the kernel model: give 'family' and "
                             "'microarch' instead (docs/adding-hardware.md, docs/time-model.md)")
    family = data.get("family")
    if family not in FAMILIES:
        r.fail("family", f"must be one of {', '.join(FAMILIES)}, got {_show(family)}")
    micro = _microarch(r)
    datasheet = {}
    tt = r.node("tensor_tflops", required=False)
    if tt is not None:
        if not isinstance(tt, Mapping):
            r.fail("tensor_tflops", "must map compute dtypes (bf16, fp16, fp8_e4m3, tf32, fp32, ...) to {value, source}")
        for dt in tt:
            if dt not in DTYPES:
                r.fail(f"tensor_tflops.{dt}", f"unknown dtype; allowed: {', '.join(DTYPES)}")
            datasheet[dt] = r.bounded(f"tensor_tflops.{dt}", 1e-6, 1e6) * _TERA
    vector = micro.sms * micro.boost_clock_hz * 2 * micro.fp32_lanes
    tensor = {}
    for dt in ("bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "tf32", "int8"):
        rate = micro.rate(micro.native, rate_dtype(dt))
        if rate is not None:
            tensor[dt] = micro.sms * micro.tensor_clock_hz * rate
    tensor["fp32"] = vector
    if r.node("vector_tflops", required=False) is not None:
        datasheet["vector"] = r.bounded("vector_tflops", 1e-6, 1e6) * _TERA
    mem = r.bounded("memory.capacity_gib", 1e-3, 2**24) * _GIB
    bw = r.bounded("memory.bandwidth_tbps", 1e-4, 1e3) * _TERA
    host_bw = r.bounded("host_link.bandwidth_gbps", 1e-3, 1e5) * _GIGA
    host_eff_node = r.node("host_link.efficiency")
    host_eff = r.number("host_link.efficiency")
    r.fraction("host_link.efficiency.value", host_eff_node["value"])
    gl = r.number("gpu_link.bandwidth_gbps", required=False, allow_null=True)
    launch = r.number("launch_overhead_us", positive=False)
    if not 0 <= launch <= 1e5:
        r.fail("launch_overhead_us.value", f"must lie in [0, 100000], got {launch}")
    kernels = data.get("kernels") or {}
    if not isinstance(kernels, Mapping):
        r.fail("kernels", "must be a mapping of kernel-constant overrides (docs/time-model.md)")
    topo = _host_topology(r)
    hw = Hardware(hw_name, printable(data.get("description", hw_name), 200), kind, tensor, vector, int(mem), bw, host_bw,
                  host_eff, None if gl is None else gl * _GIGA, launch * 1e-6, family, micro, datasheet,
                  dict(kernels), dict(r.sources), origin, topo)
    if kernels:
        check_overrides(hw)
    return hw


def _host_topology(r: _Reader) -> HostTopology | None:
    """The optional ``host_topology`` block (None when absent)."""
    if r.node("host_topology", required=False) is None:
        return None
    node = r.node("host_topology.p2p")
    if not isinstance(node, Mapping) or not isinstance(node.get("value"), bool):
        r.fail("host_topology.p2p", f"must be written {{value: true|false, source: ...}}, got {_show(node)}")
    r.source("host_topology.p2p", node)
    cards = r.bounded("host_topology.cards_per_root_complex", 1, 64)
    if cards != int(cards):
        r.fail("host_topology.cards_per_root_complex.value", f"must be a whole number, got {cards}")
    mem = r.bounded("host_topology.host_memory_bandwidth_gbps", 1, 1e5) * _GIGA
    return HostTopology(node["value"], int(cards), mem)


def _microarch(r: _Reader) -> Microarch:
    node = r.node("microarch")
    if not isinstance(node, Mapping):
        r.fail("microarch", "must be a mapping (sms, boost_clock_ghz, tensor_clock_ghz, tensor_flops_per_clk_sm, "
                            "sfu_exp_per_clk_sm, fp32_lanes_per_sm, l2_mib, l2_bandwidth_tbps)")
    sms = r.bounded("microarch.sms", 1, 100000)
    if sms != int(sms):
        r.fail("microarch.sms.value", f"must be a whole number, got {sms}")
    boost = r.bounded("microarch.boost_clock_ghz", 0.05, 10)
    tclk = r.bounded("microarch.tensor_clock_ghz", 0.05, 10)
    rn = r.node("microarch.tensor_flops_per_clk_sm")
    if not isinstance(rn, Mapping) or not rn:
        r.fail("microarch.tensor_flops_per_clk_sm", f"must map instruction families ({', '.join(INSTRUCTIONS)}) "
                                                    f"to {{dtype: {{value, source}}}}")
    rates = {}
    for inst, per in rn.items():
        key = f"microarch.tensor_flops_per_clk_sm.{inst}"
        if inst not in INSTRUCTIONS:
            r.fail(key, f"unknown instruction family; allowed: {', '.join(INSTRUCTIONS)}")
        if not isinstance(per, Mapping) or not per:
            r.fail(key, f"must map dtypes ({', '.join(RATE_DTYPES)}) to {{value, source}}")
        rates[inst] = {}
        for dt in per:
            if dt not in RATE_DTYPES:
                r.fail(f"{key}.{dt}", f"unknown dtype; allowed: {', '.join(RATE_DTYPES)}")
            rates[inst][dt] = r.bounded(f"{key}.{dt}", 1, 1e6)
    sfu = r.bounded("microarch.sfu_exp_per_clk_sm", 0.01, 1e4)
    lanes = r.bounded("microarch.fp32_lanes_per_sm", 1, 1e5)
    l2 = r.bounded("microarch.l2_mib", 1e-3, 1e6)
    l2bw = r.bounded("microarch.l2_bandwidth_tbps", 1e-4, 1e4)
    return Microarch(int(sms), boost * 1e9, tclk * 1e9, rates, sfu, lanes, l2 * 2**20, l2bw * _TERA)


# ---------------------------------------------------------------------------------- finding


def _builtin_dir() -> Path:
    return CONFIG_DIR / "hardware"


def yaml_files(config_dir: str | Path | None = None) -> dict[str, Path]:
    """Hardware YAML files by option name: built-in ones, overridden by the user's
    ``config_dir/hardware/*.yaml``."""
    out = {p.stem: p for p in sorted(_builtin_dir().glob("*.yaml"))}
    if config_dir:
        check_config_dir(config_dir)   # regular files, no link loop, under the size caps
        out.update({p.stem: p for p in sorted((Path(config_dir) / "hardware").glob("*.yaml"))})
    return out


def _entry_points():
    """The entry points of the ``wanir.hardware`` group (installed packages' hardware)."""
    import importlib.metadata  # late import: it loads in ~15 ms (email, zipfile...); only plugin hardware needs it
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def plugin_names() -> list[str]:
    """Names of the hardware registered under the ``wanir.hardware`` entry point group."""
    return sorted(ep.name for ep in _entry_points())


def plugin_spec(name: str) -> dict | None:
    """The spec mapping of the entry-point hardware ``name`` (None if there is none). The
    entry point names a class (or object) whose ``spec()`` returns a mapping in the YAML
    format, or a :class:`Hardware` instance."""
    for ep in _entry_points():
        if ep.name == name:
            obj = ep.load()
            where = f"entry point '{name}' ({ep.value})"
            if isinstance(obj, type):
                obj = obj()
            if isinstance(obj, Hardware):
                return {"__hardware__": obj}
            spec = getattr(obj, "spec", None)
            if not callable(spec):
                raise HardwareError(f"{where}: must be a class with a spec() method returning a hardware mapping")
            data = spec()
            if not isinstance(data, Mapping):
                raise HardwareError(f"{where}: spec() must return a mapping, got {type(data).__name__}")
            data = dict(data)
            data.setdefault("name", name)
            return data
    return None


def load(name: str, config_dir: str | Path | None = None) -> Hardware:
    """The Hardware called ``name``: a YAML option (user's config dir first) or an entry
    point. Raises ConfigError listing the known names."""
    files = yaml_files(config_dir)
    if name in files:
        return load_file(files[name])
    spec = plugin_spec(name)
    if spec is not None:
        return _from_plugin(name, spec)
    known = sorted(set(files) | set(plugin_names()))
    close = difflib.get_close_matches(name, known, n=2)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"hardware={name}: no such hardware{hint} (known: {', '.join(known)})")


def _from_plugin(name: str, spec: Mapping) -> Hardware:
    if "__hardware__" in spec:
        return spec["__hardware__"]
    return from_mapping(spec, origin=f"entry point '{name}'", name=name)


@functools.lru_cache(maxsize=128)
def _load_file_cached(path: str, mtime: float) -> Hardware:
    text = read_text_file(path, "hardware YAML", error=HardwareError)   # a regular file under the cap
    check_yaml_text(text, path, error=HardwareError)                   # no alias bomb
    if "${" not in text:    # no interpolation: plain YAML
        try:
            data = load_yaml(text, path, error=HardwareError)
        except yaml.YAMLError as e:
            raise HardwareError(f"{path}: cannot parse: {str(e).splitlines()[0]}") from None
        return from_mapping(data, origin=path, name=Path(path).stem)
    try:
        conf = create(text)
    except Exception as e:  # a YAML syntax error
        raise HardwareError(f"{path}: cannot parse: {str(e).splitlines()[0]}") from None
    try:
        check_config(conf)   # no ${oc.env:...}, only whole-value ${key} references to one value
    except ConfigError as e:
        raise HardwareError(f"{path}: {e}") from None
    try:
        data = to_plain(conf)
    except Exception as e:  # noqa: BLE001 - an interpolation that does not resolve
        raise HardwareError(f"{path}: cannot parse: {str(e).splitlines()[0]}") from None
    return from_mapping(data, origin=path, name=Path(path).stem)


def load_file(path: str | Path) -> Hardware:
    """Load and validate one hardware YAML file; errors name the file and key."""
    p = Path(path)
    return _load_file_cached(str(p), p.stat().st_mtime)


def list_hardware(config_dir: str | Path | None = None) -> list[Hardware]:
    """Every known device: built-in YAML, the user's YAML and entry points, by name."""
    out = {n: load_file(p) for n, p in yaml_files(config_dir).items()}
    for n in plugin_names():
        if n not in out:
            out[n] = _from_plugin(n, plugin_spec(n))
    return [out[k] for k in sorted(out)]


# ---------------------------------------------------------------------------------- config


@functools.lru_cache(maxsize=1)
def _default_choice() -> str:
    """The hardware the shipped config.yaml selects by default."""
    path = CONFIG_DIR / "config.yaml"
    for item in (load_yaml(read_text_file(path, "config YAML"), str(path)) or {}).get("defaults", []):
        if isinstance(item, Mapping) and "hardware" in item:
            return str(item["hardware"])
    return "h100-sxm"


def compose_hook(group_overrides: Iterable[str], config_dir: str | None) -> tuple[list[str], Callable]:
    """Prepare a config composition: a ``hardware=NAME`` override naming an entry point
    (not a YAML option) is taken out of what Hydra composes. Returns the overrides to
    compose and a function ``post(cfg)`` that puts the chosen hardware's spec into
    ``cfg.hardware`` (for an entry point) and validates it, naming the file and key on error."""
    keep, choice = [], None
    files = yaml_files(config_dir)
    for o in group_overrides:
        g, _, v = o.partition("=")
        if g.lstrip("+") == "hardware":
            choice = v
            if v not in files and plugin_spec(v) is not None:
                continue
        keep.append(o)
    choice = choice or _default_choice()

    def post(cfg):
        hw0 = cfg.get("hardware")
        if type(hw0).__name__ == "FrozenMap" and choice in files:
            key = _content_key(hw0)
            with _BY_CONTENT_LOCK:
                if key in _BY_CONTENT:     # this very spec was validated already
                    return
        if choice in files:
            origin = str(files[choice])
        else:
            spec = plugin_spec(choice)
            if spec is None:
                return
            origin = f"entry point '{choice}'"
            if "__hardware__" in spec:
                spec = {"name": choice, "__entry_point__": choice}
            else:
                spec = dict(spec)
                spec["__entry_point__"] = choice
            if isinstance(cfg, dict):
                cfg["hardware"] = spec
            else:
                omegaconf().OmegaConf.set_struct(cfg, False)
                cfg.hardware = create(spec)
        hw = cfg.get("hardware")
        if hw is None:
            return
        if "__entry_point__" not in hw:
            _remember(cfg, from_mapping(hw, origin=origin, name=choice))
        elif "microarch" in hw:
            _remember(cfg, from_mapping({k: v for k, v in _plain_spec(hw).items()
                                         if k != "__entry_point__"}, origin=origin, name=choice))

    return keep, post


def _plain_spec(hw) -> dict:
    """A hardware config node as a plain mapping."""
    if isinstance(hw, dict):
        return dict(hw)
    return to_plain(hw)


_BY_CONTENT: dict = {}     # hardware mapping (as canonical JSON) -> validated Hardware
_BY_CONTENT_LOCK = threading.Lock()


#: content keys of read-only (frozen) hardware mappings, by identity: a frozen mapping never
#: changes, so its key is computed once (the entry keeps the mapping alive, so its id is not reused)
_KEY_BY_ID: dict = {}


def _content_key(hw) -> str | None:
    """A key of a ``hardware`` config node by its content (None when it has none)."""
    if hw is None:
        return None
    frozen = type(hw).__name__ == "FrozenMap"
    if frozen:
        hit = _KEY_BY_ID.get(id(hw))
        if hit is not None and hit[0] is hw:
            return hit[1]
    plain = hw if isinstance(hw, (dict, str)) else _plain_spec(hw)
    key = json.dumps(plain, sort_keys=True, default=str)
    if frozen:
        with _BY_CONTENT_LOCK:
            if len(_KEY_BY_ID) > 256:
                _KEY_BY_ID.pop(next(iter(_KEY_BY_ID)))
            _KEY_BY_ID[id(hw)] = (hw, key)
    return key


def _remember(cfg, hw: Hardware) -> None:
    key = _content_key(cfg.get("hardware"))
    with _BY_CONTENT_LOCK:
        _BY_CONTENT.setdefault(key, hw)
        if len(_BY_CONTENT) > 64:
            _BY_CONTENT.pop(next(iter(_BY_CONTENT)))


def default_hardware() -> Hardware:
    """The built-in default Hardware (what a configuration without a ``hardware`` group runs on)."""
    return load(_default_choice())


def from_config(cfg) -> Hardware:
    """The Hardware of a composed config (``cfg.hardware``, as validated when
    :func:`wanir.config.load_config` composed it; cached by the spec's content); the
    built-in default when the config has none."""
    hw = cfg.get("hardware") if cfg is not None else None
    if hw is None:
        return load(_default_choice())
    if isinstance(hw, str):
        return load(hw)
    key = _content_key(hw)
    with _BY_CONTENT_LOCK:
        hit = _BY_CONTENT.get(key)
    if hit is not None:
        return hit
    ep = hw.get("__entry_point__")
    if ep is not None:
        spec = plugin_spec(ep)
        if spec is not None and "__hardware__" in spec:
            return spec["__hardware__"]
    data = _plain_spec(hw)
    data.pop("__entry_point__", None)
    out = from_mapping(data, origin=f"hardware '{data.get('name', '?')}'")
    with _BY_CONTENT_LOCK:
        _BY_CONTENT[key] = out
    return out


def host_from_config(cfg) -> Hardware:
    """The host CPU that runs stages moved off the GPU (``memory.host``, default ``host-cpu``)."""
    name = "host-cpu"
    if cfg is not None:
        name = cfg.get("memory", {}).get("host", name) or name
    return load(name)
