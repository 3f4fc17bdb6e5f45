"""Kernel constants of the time model: one table (``wanir/data/kernels.yaml``) of
``{value, source, note}`` per (kernel, architecture family), next to the hardware library.

The table has four sections:

- ``sdpa``: per family, the attention kernel PyTorch's ``scaled_dot_product_attention``
  picks (the ``sdpa`` kernel name resolves through it);
- ``attention``: per kernel, a ``default`` block and one block per family the kernel exists
  on (a family without a block is a (kernel, family) pair that does not exist);
- ``gemm``, ``conv``, ``memory``: one block per family;
- ``issue``: per family, the host's CPU cost to issue one op in eager PyTorch.

A family's constants may also be written together under ``families.<family>`` (the
``generic`` family is): :func:`table` moves them into the sections above.

A hardware YAML may override any constant for that device under ``kernels:`` (same layout
without the family level, e.g. ``kernels: {gemm: {ceiling: {value: 0.7, source: measured}}}``);
``wanir calibrate`` writes such overrides. :func:`constants` returns the merged values and
their sources for one (section, kernel, hardware).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Mapping

from .errors import ConfigError
from .safeio import load_yaml
from .scenario import freeze

PATH = Path(__file__).parent / "data" / "kernels.yaml"
#: where a value came from: a vendor datasheet, a published measurement, a measurement of
#: wanir's own, or a modeling assumption (stated in the file's note)
SOURCES = ("datasheet", "reported", "measured", "assumed")
#: architecture families; each picks its per-kernel constants in wanir/data/kernels.yaml
#: (``generic``: an accelerator of none of the others, timed with assumed constants)
FAMILIES = ("sm80", "sm86", "sm89", "sm90", "sm100", "cdna3", "cpu", "generic")


def attention_kernels() -> tuple[str, ...]:
    """Every attention kernel name the table knows, plus ``sdpa``."""
    return tuple(table()["attention"]) + ("sdpa",)
SECTIONS = ("gemm", "conv", "memory", "issue")
#: per constant: (lower bound, upper bound) or a tuple of allowed strings
ATTENTION_KEYS = {
    "instruction": ("mma_sync", "wgmma", "tcgen05", "mfma", "amx", "avx512", "matrix", "simd"),
    "mma_ceiling": (1e-4, 1.0), "overlap_loss": (0.0, 1.0), "fp32_ops": (0.0, 1000.0),
    "exp_emulated": (0.0, 1.0), "poly_ops": (0.0, 100.0), "ramp_clocks": (0.0, 1e8), "block_m": (1, 4096),
    "ctas_per_sm": (1, 64), "qk_dtype": ("input", "int8", "fp8", "fp16", "bf16"),
    "pv_dtype": ("input", "int8", "fp8", "fp16", "bf16"),
}
SECTION_KEYS = {
    "gemm": {"instruction": ATTENTION_KEYS["instruction"], "ceiling": (1e-4, 1.0), "fp32_ceiling": (1e-4, 1.0),
             "tile_m": (1, 4096), "tile_n": (1, 4096), "k_ramp": (0.0, 1e6)},
    "conv": {"ceiling_factor": (1e-3, 1.0), "transposes": (0.0, 8.0)},
    "memory": {"fraction": (1e-3, 1.0), "l2_fraction": (1e-3, 1.0)},
    "issue": {"cpu_issue_us": (0.0, 1e5), "module_call_us": (0.0, 1e5), "tokenize_ms": (0.0, 1e5)},
}
#: keys a block may leave out: a device's measured host costs (``wanir calibrate``); the default
#: is the host table, wanir/data/host.yaml (backends/host_stages.py)
OPTIONAL_KEYS = {"issue": ("module_call_us", "tokenize_ms")}


@functools.lru_cache(maxsize=1)
def table() -> Mapping:
    """The parsed kernel table (checked once), read-only: mutating it raises TypeError."""
    data = load_yaml(PATH.read_text(), str(PATH))
    _merge_families(data)
    _check_table(data)
    return freeze(data)


def _merge_families(data: dict) -> None:
    """Move the table's ``families:`` blocks (a family's constants written together, e.g.
    ``generic``) into the per-section layout: ``families.F.sdpa`` → ``sdpa.F``,
    ``families.F.attention.K`` → ``attention.K.F``, ``families.F.gemm`` → ``gemm.F``, ..."""
    for fam, blocks in (data.pop("families", None) or {}).items():
        if not isinstance(blocks, Mapping):
            raise ConfigError(f"{PATH}: families.{fam}: must map sections to constants")
        for sec, block in blocks.items():
            if sec == "sdpa":
                data["sdpa"][fam] = block
            elif sec == "attention":
                for k, b in block.items():
                    if k not in data["attention"]:
                        raise ConfigError(f"{PATH}: families.{fam}.attention.{k}: unknown kernel")
                    data["attention"][k][fam] = b
            elif sec in SECTIONS:
                data[sec][fam] = block
            else:
                raise ConfigError(f"{PATH}: families.{fam}.{sec}: unknown section")


def _check_leaf(where: str, node, spec) -> None:
    if not isinstance(node, Mapping) or "value" not in node or "source" not in node:
        raise ConfigError(f"{where}: must be written {{value, source, note}}, got {node!r:.60}")
    if node["source"] not in SOURCES:
        raise ConfigError(f"{where}.source: must be one of {', '.join(SOURCES)}, got {node['source']!r}")
    v = node["value"]
    if spec and isinstance(spec[0], str):
        if v not in spec:
            raise ConfigError(f"{where}.value: must be one of {', '.join(spec)}, got {v!r}")
    else:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{where}.value: must be a number, got {v!r:.60}")
        lo, hi = spec
        if not lo <= v <= hi:
            raise ConfigError(f"{where}.value: must lie in [{lo:g}, {hi:g}], got {v:g}")


def _check_block(where: str, block, keys: dict) -> None:
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}: must be a mapping of constants ({', '.join(keys)})")
    for k, node in block.items():
        if k not in keys:
            raise ConfigError(f"{where}.{k}: unknown constant; allowed: {', '.join(keys)}")
        _check_leaf(f"{where}.{k}", node, keys[k])


def _check_table(data) -> None:
    where = str(PATH)
    names = tuple(data["attention"])
    for fam, node in data["sdpa"].items():
        _check_leaf(f"{where}: sdpa.{fam}", node, names)
    for k, blocks in data["attention"].items():
        if not isinstance(k, str) or not k.replace("-", "").isalnum() or k == "sdpa":
            raise ConfigError(f"{where}: attention.{k}: a kernel name is letters, digits and '-' (not 'sdpa')")
        for fam, block in blocks.items():
            if fam != "default" and fam not in FAMILIES:
                raise ConfigError(f"{where}: attention.{k}.{fam}: unknown family")
            _check_block(f"{where}: attention.{k}.{fam}", block, ATTENTION_KEYS)
    for s in SECTIONS:
        for fam, block in data[s].items():
            _check_block(f"{where}: {s}.{fam}", block, SECTION_KEYS[s])


def check_overrides(hw) -> None:
    """Validate a hardware's ``kernels:`` overrides; errors name the file and key."""
    where = f"{hw.origin or hw.name}: key 'kernels"
    for sec, block in hw.kernels.items():
        if sec == "attention":
            if not isinstance(block, Mapping):
                raise ConfigError(f"{where}.attention': must map kernels to constant overrides")
            for k, b in block.items():
                if k not in table()["attention"]:
                    raise ConfigError(f"{where}.attention.{k}': unknown kernel; allowed: "
                                      f"{', '.join(table()['attention'])}")
                _check_block(f"{where}.attention.{k}'", b, ATTENTION_KEYS)
        elif sec in SECTION_KEYS:
            _check_block(f"{where}.{sec}'", block, SECTION_KEYS[sec])
        else:
            raise ConfigError(f"{where}.{sec}': unknown section; allowed: attention, {', '.join(SECTIONS)}")


def available_attention(family: str) -> list[str]:
    """The attention kernels that exist on ``family`` (plus ``sdpa`` when it resolves)."""
    t = table()
    out = [k for k, b in t["attention"].items() if family in b]
    if family in t["sdpa"]:
        out.append("sdpa")
    return out


def resolve_attention(kernel: str, hw) -> str:
    """The concrete kernel ``kernel`` names on ``hw`` (``sdpa`` resolves per family).
    Raises ConfigError naming the kernels available on the hardware's family."""
    t = table()
    if kernel not in attention_kernels():
        raise ConfigError(f"roofline.attention_kernel={kernel!r}: allowed: {', '.join(attention_kernels())}")
    if kernel == "sdpa":
        node = t["sdpa"].get(hw.family)
        if node is None:
            raise ConfigError(f"roofline.attention_kernel=sdpa: no SDPA choice is known for family {hw.family} "
                              f"(hardware '{hw.name}'); available: {', '.join(available_attention(hw.family))}")
        return node["value"]
    if hw.family not in t["attention"][kernel] and kernel not in hw.kernels.get("attention", {}):
        raise ConfigError(f"roofline.attention_kernel={kernel}: there is no {kernel} kernel for {hw.family} "
                          f"(hardware '{hw.name}'); available: {', '.join(available_attention(hw.family))}")
    return kernel


def constants(section: str, hw, kernel: str | None = None) -> tuple[dict, dict]:
    """(values, sources) of one constant block for ``hw``: for ``attention`` the kernel's
    ``default`` block, then its family block, then the hardware's overrides; for the other
    sections the family block, then the overrides. Raises ConfigError when the family has
    no block."""
    t = table()
    layers = []
    if section == "attention":
        blocks = t["attention"][kernel]
        layers.append(blocks.get("default", {}))
        fam = blocks.get(hw.family)
        over = hw.kernels.get("attention", {}).get(kernel)
        if fam is None and over is None:
            raise ConfigError(f"roofline.attention_kernel={kernel}: there is no {kernel} kernel for {hw.family} "
                              f"(hardware '{hw.name}'); available: {', '.join(available_attention(hw.family))}")
        layers += [fam or {}, over or {}]
    else:
        fam = t[section].get(hw.family)
        if fam is None:
            raise ConfigError(f"no {section} constants for family {hw.family} (hardware '{hw.name}') "
                              f"in {PATH.name}; families: {', '.join(t[section])}")
        layers += [fam, hw.kernels.get(section, {})]
    vals, srcs = {}, {}
    for layer in layers:
        for k, node in layer.items():
            vals[k] = node["value"]
            srcs[k] = node["source"]
    keys = ATTENTION_KEYS if section == "attention" else SECTION_KEYS[section]
    missing = [k for k in keys if k not in vals and k not in OPTIONAL_KEYS.get(section, ())]
    if missing:
        where = f"attention.{kernel}.{hw.family}" if section == "attention" else f"{section}.{hw.family}"
        raise ConfigError(f"{PATH.name}: {where} lacks {', '.join(missing)}")
    return vals, srcs
