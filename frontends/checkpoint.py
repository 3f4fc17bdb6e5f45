"""Models from files: infer a component's hyperparameters from its config and checkpoint files.

``wanir estimate model.from=PATH`` and ``wanir inspect PATH`` read:

- a diffusers or transformers ``config.json`` (``WanTransformer3DModel``, the original
  ``WanModel`` config, ``AutoencoderKLWan``, a ``umt5`` model config);
- a ``.safetensors`` file: only its header is read (an 8-byte little-endian length, then a
  JSON table of tensor names, dtypes, shapes and offsets); no weight is loaded;
- a sharded checkpoint's ``*.safetensors.index.json`` (every shard's header is read);
- a PyTorch state dict (``.pth``, ``.pt``, ``.bin``, ``.ckpt``): loaded with
  ``torch.load(path, map_location="meta", weights_only=True)``, which with torch 2.13
  restores every tensor on the meta device (shape and dtype, no storage), so no weight
  is materialized and no pickled code runs. torch is imported only for these files;
- a directory holding one component (``config.json`` beside its weights) or a whole
  diffusers pipeline (``model_index.json`` with ``transformer/``, ``text_encoder/`` and
  ``vae/`` folders).

Families and the tensors they are recognized by:

- ``wan_dit`` (``cfg.dit``): diffusers ``WanTransformer3DModel`` naming
  (``blocks.N.attn1.to_q.weight``, ``condition_embedder.*``, ``proj_out``) or the original
  Wan naming (``blocks.N.self_attn.q.weight``, ``text_embedding.0.weight``,
  ``time_embedding.0.weight``, ``head.head.weight``, ``img_emb.proj.*``), optionally under a
  ``model.diffusion_model.`` prefix.
- ``umt5`` (``cfg.text_encoder``): transformers ``UMT5EncoderModel`` naming
  (``shared.weight``, ``encoder.block.N.layer.0.SelfAttention.q.weight``, a
  ``relative_attention_bias`` in every layer). Decoder tensors of a full UMT5 model are
  ignored (Wan runs the encoder only).
- ``wan_vae`` (``cfg.vae``): diffusers ``AutoencoderKLWan`` naming (``encoder.conv_in``,
  ``encoder.down_blocks.N.*``, ``decoder.up_blocks.N.*``) or the original Wan-VAE naming
  (``encoder.conv1``, ``encoder.downsamples.N.residual.*``, ``decoder.upsamples.N.*``).

What the shapes cannot tell, and what is assumed then (a ``config.json`` beside the
weights, or a bare one, overrides each assumption):

- DiT attention head dim: 128 (every Wan2.1 DiT), so heads = dim / 128; eps 1e-6.
- UMT5 ``relative_attention_max_distance``: 128; a gated FFN (``wi_0``/``wi_1``) is
  ``gated-gelu``, an ungated one (``wi``) ``relu``.

After inference every tensor of the file is checked against the shapes the inferred config
implies; a tensor that is missing, unexpected or of another shape raises
:class:`wanir.errors.ConfigError` naming the file and the tensor.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from wanir.errors import ConfigError
from wanir.limits import check_component
from wanir.safeio import short

#: component (config group) of each family
COMPONENT = {"wan_dit": "dit", "umt5": "text_encoder", "wan_vae": "vae"}

#: the config keys each family produces, in the order of wanir/configs/<group>/*.yaml
KEYS = {
    "wan_dit": ("family", "patch_size", "num_attention_heads", "attention_head_dim", "in_channels",
                "out_channels", "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm",
                "qk_norm", "eps", "image_dim", "added_kv_proj_dim"),
    "umt5": ("family", "vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
             "relative_attention_num_buckets", "relative_attention_max_distance", "feed_forward_proj"),
    "wan_vae": ("family", "base_dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales",
                "temperal_downsample"),
}

#: assumed Wan DiT attention head dim when no config.json says otherwise
DIT_HEAD_DIM = 128

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")

# safetensors dtype names -> wanir dtype names (others are kept lower-cased)
_ST_DTYPES = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F64": "fp64", "F8_E4M3": "fp8_e4m3",
              "F8_E5M2": "fp8_e5m2", "I8": "int8", "U8": "uint8", "I16": "int16", "I32": "int32",
              "I64": "int64", "BOOL": "bool"}
_TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "float64": "fp64",
                 "float8_e4m3fn": "fp8_e4m3", "float8_e5m2": "fp8_e5m2", "int8": "int8", "uint8": "uint8",
                 "int16": "int16", "int32": "int32", "int64": "int64", "bool": "bool"}


# ---------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Tensor:
    """A tensor's shape and storage dtype as a checkpoint declares it (no data)."""

    shape: tuple
    dtype: str = "?"

    @property
    def numel(self) -> int:
        """Number of elements (a Python int)."""
        return math.prod(self.shape)


@dataclass
class Component:
    """One inferred model component.

    ``config`` has the keys of the matching ``wanir/configs/<component>/*.yaml``;
    ``params`` maps module name (top-level, or two levels under ``encoder``/``decoder``) to
    its parameter count; ``dtypes`` maps storage dtype to parameter count (empty when only
    a config was read); ``assumed`` lists the values no file stated."""

    component: str
    family: str
    naming: str
    source: str
    config: dict
    params: dict
    dtypes: dict = field(default_factory=dict)
    assumed: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def total_params(self) -> int:
        """Parameters of the component (tied tensors counted once)."""
        return sum(self.params.values())

    def summary(self) -> str:
        """One line: component, family, source and the inferred hyperparameters."""
        keys = [k for k in KEYS[self.family] if k != "family"]
        hp = ", ".join(f"{k}={_fmt(self.config[k])}" for k in keys)
        how = "" if self.naming == "config.json" else f" ({self.naming} naming)"
        return f"{self.component}: {self.family} from {self.source}{how}: {hp}"

    def lines(self) -> list:
        """The lines ``wanir estimate`` prints about this component (summary, assumptions, notes)."""
        out = [self.summary() + f"; {self.total_params:,} params"]
        out += [f"  assumed: {a}" for a in self.assumed]
        out += [f"  note: {n}" for n in self.notes]
        return out

    def to_dict(self) -> dict:
        """Plain containers (for JSON)."""
        return {"component": self.component, "family": self.family, "naming": self.naming,
                "source": self.source, "config": dict(self.config), "params": dict(self.params),
                "total_params": self.total_params, "dtypes": dict(self.dtypes),
                "assumed": list(self.assumed), "notes": list(self.notes)}


@dataclass
class Inspection:
    """What :func:`inspect` found at ``path``: its format and one :class:`Component` per
    model it holds (one for a file, up to three for a pipeline directory)."""

    path: str
    format: str
    components: list

    def component(self, name: str) -> Component:
        """The component named ``dit``, ``text_encoder`` or ``vae``."""
        for c in self.components:
            if c.component == name:
                return c
        raise KeyError(f"{self.path}: no {name} component (found: {', '.join(c.component for c in self.components)})")

    @property
    def family(self) -> str:
        """The family of the only component (``wan_dit``, ``umt5``, ``wan_vae``), or
        ``pipeline`` for several."""
        return self.components[0].family if len(self.components) == 1 else "pipeline"

    @property
    def config(self) -> dict:
        """The inferred config of the only component."""
        return self._only().config

    @property
    def params(self) -> dict:
        """Parameter count by module of the only component."""
        return self._only().params

    @property
    def total_params(self) -> int:
        """Parameters of all components together."""
        return sum(c.total_params for c in self.components)

    def _only(self) -> Component:
        if len(self.components) != 1:
            raise ValueError(f"{self.path} holds {len(self.components)} components; use .component(name)")
        return self.components[0]

    def render(self) -> str:
        """The text ``wanir inspect`` prints: per component, the inferred hyperparameters,
        what was assumed, and the parameter count by module with its share."""
        out = [f"{self.path} ({self.format})"]
        for c in self.components:
            out.append("")
            how = "" if c.naming == "config.json" else f"{c.naming} naming, "
            out.append(f"{c.component}: {c.family} ({how}from {c.source})")
            for k in KEYS[c.family]:
                if k != "family":
                    out.append(f"  {k:<32} {_fmt(c.config[k])}")
            out += [f"  assumed: {a}" for a in c.assumed]
            out += [f"  note: {n}" for n in c.notes]
            total = c.total_params
            out.append("  parameters by module:")
            w = max([len(m) for m in c.params] + [5])
            for m, n in c.params.items():
                out.append(f"    {m:<{w}} {n:>16,}  {100 * n / total if total else 0:5.1f}%")
            out.append(f"    {'total':<{w}} {total:>16,}")
            if c.dtypes:
                out.append("  stored as: " + ", ".join(f"{d} {n:,}" for d, n in sorted(c.dtypes.items())))
        if len(self.components) > 1:
            out += ["", f"total: {self.total_params:,} params"]
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict:
        """Plain containers (the JSON of ``wanir inspect --format json``)."""
        return {"path": self.path, "format": self.format, "total_params": self.total_params,
                "components": [c.to_dict() for c in self.components]}


def _fmt(v):
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    if isinstance(v, bool) or v is None:
        return str(v).lower() if v is not None else "null"
    return str(v)


# ---------------------------------------------------------------------------------------------
# readers


def read_safetensors_header(path) -> dict:
    """Tensor name -> :class:`Tensor` from a ``.safetensors`` file's header (8-byte
    little-endian header length, then the JSON header). No tensor data is read. Raises
    ConfigError naming the file when it is not a readable safetensors file."""
    from wanir.safeio import check_regular_file, read_header

    path = Path(path)
    try:
        size = check_regular_file(path, "safetensors file", cap=2**62)   # no FIFO, device or directory
        raw = read_header(path, "safetensors header", 8)
        if len(raw) < 8:
            raise ConfigError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        n = struct.unpack("<Q", raw)[0]
        if n < 2 or n > size - 8:
            raise ConfigError(f"{path}: not a safetensors file (header length {n} does not fit a "
                              f"{size}-byte file)")
        header = json.loads(read_header(path, "safetensors header", n, offset=8).decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a safetensors file (its header nests too deeply)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a safetensors file (its header is not JSON: {e})") from None
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: not a safetensors file (its header is not a JSON object)")
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(entry, dict) and isinstance(entry.get("shape"), list) and len(entry["shape"]) <= 16
                and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 2**40 for d in entry["shape"])):
            raise ConfigError(f"{path}: malformed safetensors header entry for tensor {short(name)} (a shape is a "
                              f"list of at most 16 ints in [0, 2**40])")
        dt = str(entry.get("dtype", "?"))
        out[name] = Tensor(tuple(entry["shape"]), _ST_DTYPES.get(dt, dt.lower()))
    return out


def read_torch_state_dict(path) -> dict:
    """Tensor name -> :class:`Tensor` from a PyTorch checkpoint (``torch.save`` of a state
    dict, possibly nested under ``state_dict``/``model``/``module``/``ema``), loaded with
    ``torch.load(map_location="meta", weights_only=True)``: shapes and dtypes only, no
    weight materialized. Raises ConfigError when torch is missing or the file cannot be
    read."""
    path = Path(path)
    try:
        import torch
    except ImportError:
        raise ConfigError(f"{path}: reading PyTorch checkpoints needs torch, which is not installed "
                          f"(pip install 'wanir[reference]', or convert the file to .safetensors)") from None
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    from wanir.safeio import check_torch_zip

    check_torch_zip(path)   # a regular file; every zip member's uncompressed size within its cap
    try:
        obj = torch.load(str(path), map_location="meta", weights_only=True)
    except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: cannot read as a PyTorch checkpoint: {first[:200]}") from None
    sd = _find_state_dict(obj)
    if sd is None:
        raise ConfigError(f"{path}: a PyTorch file, but not a state dict (no name -> tensor mapping found)")
    out = {}
    for name, t in sd.items():
        if isinstance(t, torch.Tensor):
            out[str(name)] = Tensor(tuple(int(d) for d in t.shape), _TORCH_DTYPES.get(str(t.dtype).replace("torch.", ""), str(t.dtype)))
    return out


def _find_state_dict(obj):
    import torch

    if isinstance(obj, dict):
        if obj and any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        for key in ("state_dict", "model", "module", "ema", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                found = _find_state_dict(obj[key])
                if found is not None:
                    return found
    return None


def read_tensors(path) -> dict:
    """Tensor name -> :class:`Tensor` of a weights file: ``.safetensors``, a sharded
    checkpoint's ``.safetensors.index.json``, or a PyTorch state dict."""
    path = Path(path)
    name = path.name
    if name.endswith(".index.json"):
        from wanir.safeio import read_text_file

        text = read_text_file(path, "index.json")
        try:
            index = json.loads(text)
            shards = sorted(set(index["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise ConfigError(f"{path}: not a sharded-checkpoint index (a JSON object with a 'weight_map')") from None
        if len(shards) > 1000:
            raise ConfigError(f"{path}: the index names {len(shards)} shard files; at most 1000 are read")
        out = {}
        for s in shards:
            if not isinstance(s, str) or not s or s != Path(s).name or s in (".", ".."):
                raise ConfigError(f"{path}: shard {short(s)} is not a file name in the index's folder")
            reader = read_safetensors_header if s.endswith(".safetensors") else read_torch_state_dict
            out.update(reader(path.parent / s))
        return out
    if name.endswith(".safetensors"):
        return read_safetensors_header(path)
    if name.endswith(TORCH_SUFFIXES):
        return read_torch_state_dict(path)
    raise ConfigError(f"{path}: unknown file type; wanir reads config.json, .safetensors, "
                      f".safetensors.index.json, .pth, .pt, .bin, .ckpt or a model directory")


def _read_json(path) -> dict:
    from wanir.safeio import read_text_file

    text = read_text_file(path, "config.json")   # a regular file under the size cap
    try:
        data = json.loads(text)
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON: {short(str(e), 120)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a model config (a JSON object)")
    from wanir.limits import check_json_numbers

    check_json_numbers(data, str(path))   # finite, bounded numbers before any arithmetic
    return data


def _weights_in(d: Path):
    """The weights file (or index) of a component directory, or None."""
    for pat in ("*.safetensors.index.json", "*.bin.index.json"):
        found = sorted(d.glob(pat))
        if found:
            return found[0]
    for suffix in (".safetensors",) + TORCH_SUFFIXES:
        found = sorted(p for p in d.glob("*" + suffix) if p.is_file())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(f"{d}: {len(found)} {suffix} files and no index json; pass one file as model.from")
    return None


# ---------------------------------------------------------------------------------------------
# entry points


def inspect(path) -> Inspection:
    """Read ``path`` (a file or a directory, see the module docstring) and infer each model
    component it holds. Returns an :class:`Inspection`; raises ConfigError naming the file
    (and the tensor) when it cannot be read or does not fit a known family."""
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise ConfigError(f"{p}: no such file or directory")
    if p.is_dir():
        if (p / "model_index.json").is_file():
            comps = []
            for sub in ("transformer", "text_encoder", "vae"):
                if (p / sub).is_dir():
                    comps.append(_component_dir(p / sub, label=f"{sub}/"))
            if not comps:
                raise ConfigError(f"{p}: a pipeline directory without transformer/, text_encoder/ or vae/")
            return Inspection(str(p), "diffusers pipeline directory", comps)
        return Inspection(str(p), "component directory", [_component_dir(p, label="")])
    if p.name.endswith(".json") and not p.name.endswith(".index.json"):
        cfg = _read_json(p)
        return Inspection(str(p), "config.json", [infer(None, cfg, source=p.name, where=str(p))])
    tensors = read_tensors(p)
    cfg = None
    if p.name.endswith(".index.json") and (p.parent / "config.json").is_file():
        cfg = _read_json(p.parent / "config.json")
    fmt = ("safetensors index" if p.name.endswith(".index.json") else
           "safetensors header" if p.name.endswith(".safetensors") else "PyTorch state dict")
    return Inspection(str(p), fmt, [infer(tensors, cfg, source=p.name, where=str(p))])


def _component_dir(d: Path, label: str) -> Component:
    cfg = _read_json(d / "config.json") if (d / "config.json").is_file() else None
    w = _weights_in(d)
    if cfg is None and w is None:
        raise ConfigError(f"{d}: no config.json and no weights (.safetensors, .pth, ...) found")
    tensors = read_tensors(w) if w is not None else None
    src = label + (w.name if w is not None else "config.json")
    if w is not None and cfg is not None:
        src = f"{label}config.json + {w.name}"
    return infer(tensors, cfg, source=src, where=str(w if w is not None else d / "config.json"))


def infer(tensors: dict | None, config_json: dict | None, *, source: str = "?", where: str = "?") -> Component:
    """Infer one component from its tensors (name -> :class:`Tensor`, or None) and/or its
    ``config.json`` dict (or None). Where both are given, the config supplies what shapes
    cannot tell, and every value both determine must agree. ``where`` names the file in
    errors. Returns a :class:`Component`."""
    if tensors is not None:
        if not tensors:
            raise ConfigError(f"{where}: holds no tensors")
        tensors = _strip_prefix(tensors)
        family = _family_of_tensors(tensors, where)
    else:
        family = _family_of_config(config_json, where)
    cfg_from_json, json_assumed = (None, [])
    if config_json is not None:
        if _family_of_config(config_json, where) != family:
            raise ConfigError(f"{where}: config.json describes a {_family_of_config(config_json, where)} "
                              f"but the weights are a {family}")
        try:
            cfg_from_json, json_assumed = CONFIG_READERS[family](config_json, where)
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{where}: config.json holds a value of the wrong type or shape "
                              f"({type(e).__name__}: {short(str(e), 100)})") from None
        check_component(COMPONENT[family], cfg_from_json, where)   # types and ranges before any arithmetic
    if tensors is None:
        expected = {k: (k, Tensor(v)) for k, v in EXPECTED[family](cfg_from_json).items()}
        counted = {orig: t for orig, (new, t) in _dedupe(expected, family).items()}
        return Component(COMPONENT[family], family, "config.json", source, cfg_from_json,
                         _by_module(counted, family), {}, json_assumed)
    naming, norm = NORMALIZERS[family](tensors, where)
    config, assumed, notes = INFERRERS[family](norm, where, cfg_from_json)
    check_component(COMPONENT[family], config, where)
    if cfg_from_json is not None:
        for k in KEYS[family]:
            a, b = _plain(config[k]), _plain(cfg_from_json[k])
            if a != b:
                raise ConfigError(f"{where}: config.json has {k}={_fmt(b)} but the tensors imply {k}={_fmt(a)}")
        assumed = []
    _check_shapes(norm, EXPECTED[family](config), where, family)
    counted = {orig: t for orig, (new, t) in _dedupe(norm, family).items()}
    dtypes: dict = {}
    for t in counted.values():
        dtypes[t.dtype] = dtypes.get(t.dtype, 0) + t.numel
    return Component(COMPONENT[family], family, naming, source, config, _by_module(counted, family),
                     dtypes, assumed, notes)


def _plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


# ---------------------------------------------------------------------------------------------
# family detection


def _strip_prefix(tensors: dict) -> dict:
    for prefix in ("model.diffusion_model.", "diffusion_model.", "module."):
        if all(k.startswith(prefix) for k in tensors):
            return {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def _family_of_tensors(t: dict, where: str) -> str:
    if "patch_embedding.weight" in t:
        return "wan_dit"
    if any(k.startswith("encoder.block.") and ".SelfAttention." in k for k in t):
        return "umt5"
    if ("encoder.conv_in.weight" in t or "encoder.conv1.weight" in t) and \
            any(k.startswith(("encoder.down_blocks.", "encoder.downsamples.")) for k in t):
        return "wan_vae"
    names = sorted(t)
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise ConfigError(f"{where}: not a Wan2.1 DiT, UMT5 encoder or Wan-VAE checkpoint: tensor '{names[0]}' "
                      f"fits none of them (no patch_embedding.weight, encoder.block.N.layer.0.SelfAttention.*, "
                      f"or encoder.conv_in/down_blocks; {len(names)} tensors: {shown})")


def _family_of_config(c: dict, where: str) -> str:
    cls = c.get("_class_name")
    if cls in ("WanTransformer3DModel", "WanModel"):
        return "wan_dit"
    if cls == "AutoencoderKLWan":
        return "wan_vae"
    archs = c.get("architectures") if isinstance(c.get("architectures"), list) else []
    archs = [a for a in archs if isinstance(a, str)]
    if c.get("model_type") == "umt5" or any("UMT5" in a for a in archs):
        return "umt5"
    what = str(cls or c.get("model_type") or ",".join(archs) or "an unknown model")[:80]
    raise ConfigError(f"{where}: config of {what}; wanir reads WanTransformer3DModel, WanModel, "
                      f"AutoencoderKLWan and umt5 configs")


# ---------------------------------------------------------------------------------------------
# helpers


def _get(t: dict, name: str, where: str, ndim: int | None = None) -> tuple:
    if name not in t:
        raise ConfigError(f"{where}: tensor '{name}' is missing")
    orig, tensor = t[name]
    if ndim is not None and len(tensor.shape) != ndim:
        raise ConfigError(f"{where}: tensor '{orig}' has shape {list(tensor.shape)}; expected {ndim} dims")
    return tensor.shape


def _indices(t: dict, prefix: str) -> list:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {m.group(1) for k in t if (m := pat.match(k))}
    from wanir.limits import MAX_LAYERS

    for d in found:   # bounded before any range() over them
        if len(d) > 7 or int(d) >= MAX_LAYERS:
            raise ConfigError(f"tensor index {prefix}{d[:20]}{'...' if len(d) > 20 else ''}.*: at most {MAX_LAYERS} blocks are read")
    return sorted(int(d) for d in found)


def _check_shapes(norm: dict, expected: dict, where: str, family: str) -> None:
    """Every tensor present with the expected shape and none unexpected (tied aliases allowed)."""
    optional = set(OPTIONAL.get(family, ()))
    for name, (orig, t) in norm.items():
        if name not in expected:
            raise ConfigError(f"{where}: tensor '{orig}' {list(t.shape)} does not fit a {family} "
                              f"(no such tensor in the inferred architecture)")
        if tuple(t.shape) != tuple(expected[name]):
            raise ConfigError(f"{where}: tensor '{orig}' has shape {list(t.shape)}; the inferred {family} "
                              f"config needs {list(expected[name])} (wanir models uniform blocks)")
    for name in expected:
        if name not in norm and name not in optional:
            alias = TIED.get(family, {}).get(name)
            if alias and alias in norm:
                continue
            raise ConfigError(f"{where}: tensor '{name}' is missing (the inferred {family} has it)")


def _dedupe(norm: dict, family: str) -> dict:
    """Drop tied aliases (counted once)."""
    out = dict(((orig, (new, t)) for new, (orig, t) in norm.items()))
    for a, b in TIED.get(family, {}).items():
        if a in norm and b in norm:
            out.pop(norm[a][0], None)
    return out


def _by_module(tensors: dict, family: str) -> dict:
    out: dict = {}
    for name, t in tensors.items():
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] in ("encoder", "decoder") and len(parts) > 2 else parts[0]
        out[key] = out.get(key, 0) + t.numel
    return out


# ---------------------------------------------------------------------------------------------
# Wan DiT


_DIT_ORIGINAL = (  # original Wan name fragment -> diffusers fragment, applied in order
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("cross_attn", "attn2"), ("self_attn", "attn1"),
    (".o.", ".to_out.0."), (".q.", ".to_q."), (".k.", ".to_k."), (".v.", ".to_v."),
    (".k_img.", ".add_k_proj."), (".v_img.", ".add_v_proj."), (".norm_k_img.", ".norm_added_k."),
    ("head.modulation", "scale_shift_table"), ("head.head", "proj_out"), ("modulation", "scale_shift_table"),
    ("ffn.0", "ffn.net.0.proj"), ("ffn.2", "ffn.net.2"),
    ("norm3", "norm2"),  # the original block's norm3 (cross-attention norm) is diffusers' norm2
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
)


def _dit_normalize(t: dict, where: str):
    if any(k.startswith("condition_embedder.") for k in t):
        return "diffusers", {k: (k, v) for k, v in t.items()}
    if "text_embedding.0.weight" in t or "time_embedding.0.weight" in t:
        out = {}
        for k, v in t.items():
            new = "." + k + "."
            for a, b in _DIT_ORIGINAL:
                new = new.replace(a, b)
            out[new[1:-1]] = (k, v)
        return "original Wan", out
    raise ConfigError(f"{where}: tensor 'patch_embedding.weight' suggests a Wan DiT, but neither "
                      f"condition_embedder.* (diffusers) nor text_embedding.0.weight (original Wan) is present")


def _dit_infer(t: dict, where: str, cfg_json: dict | None):
    dim, c_in, pt, ph, pw = _get(t, "patch_embedding.weight", where, 5)
    assumed, notes = [], []
    if cfg_json is not None:
        head_dim, eps = cfg_json["attention_head_dim"], cfg_json["eps"]
    else:
        head_dim, eps = DIT_HEAD_DIM, 1e-6
        if dim % head_dim:
            raise ConfigError(f"{where}: tensor '{t['patch_embedding.weight'][0]}' gives dim {dim}, not a multiple "
                              f"of the assumed head dim {head_dim}; put the model's config.json beside the weights")
        assumed.append(f"attention_head_dim={head_dim} (Wan2.1 convention; heads = {dim}/{head_dim} = {dim // head_dim})")
        assumed.append("eps=1e-06")
    freq_dim = _get(t, "condition_embedder.time_embedder.linear_1.weight", where, 2)[1]
    text_dim = _get(t, "condition_embedder.text_embedder.linear_1.weight", where, 2)[1]
    out_flat = _get(t, "proj_out.weight", where, 2)[0]
    if out_flat % (pt * ph * pw):
        raise ConfigError(f"{where}: tensor '{t['proj_out.weight'][0]}' has {out_flat} outputs, not a multiple "
                          f"of the patch volume {pt}x{ph}x{pw}")
    layers = _indices(t, "blocks.")
    if not layers:
        raise ConfigError(f"{where}: no transformer blocks (blocks.N.*) found")
    if layers != list(range(len(layers))):
        missing = sorted(set(range(layers[-1] + 1)) - set(layers))
        raise ConfigError(f"{where}: block indices are not contiguous: blocks.{missing[0]}.* is missing")
    ffn = _get(t, "blocks.0.ffn.net.0.proj.weight", where, 2)[0]
    image_dim = added = None
    if "condition_embedder.image_embedder.norm1.weight" in t:
        image_dim = _get(t, "condition_embedder.image_embedder.norm1.weight", where, 1)[0]
        added = _get(t, "blocks.0.attn2.add_k_proj.weight", where, 2)[1]
    elif "blocks.0.attn2.add_k_proj.weight" in t:
        raise ConfigError(f"{where}: tensor '{t['blocks.0.attn2.add_k_proj.weight'][0]}' (image cross-attention) "
                          f"without the image embedder (condition_embedder.image_embedder.* / img_emb.proj.*)")
    cfg = {
        "family": "wan_dit", "patch_size": [pt, ph, pw], "num_attention_heads": dim // head_dim,
        "attention_head_dim": head_dim, "in_channels": c_in, "out_channels": out_flat // (pt * ph * pw),
        "text_dim": text_dim, "freq_dim": freq_dim, "ffn_dim": ffn, "num_layers": len(layers),
        "cross_attn_norm": "blocks.0.norm2.weight" in t,
        "qk_norm": "rms_norm_across_heads" if "blocks.0.attn1.norm_q.weight" in t else None,
        "eps": eps, "image_dim": image_dim, "added_kv_proj_dim": added,
    }
    if cfg_json is not None and cfg_json.get("qk_norm") not in (None, "rms_norm_across_heads"):
        cfg["qk_norm"] = cfg_json["qk_norm"]
    return cfg, assumed, notes


def _dit_expected(c: dict) -> dict:
    D = c["num_attention_heads"] * c["attention_head_dim"]
    F, pt, ph, pw = c["ffn_dim"], *c["patch_size"]
    e = {"scale_shift_table": (1, 2, D), "patch_embedding.weight": (D, c["in_channels"], pt, ph, pw),
         "patch_embedding.bias": (D,), "proj_out.weight": (c["out_channels"] * pt * ph * pw, D),
         "proj_out.bias": (c["out_channels"] * pt * ph * pw,)}

    def lin(name, o, i, bias=True):
        e[name + ".weight"] = (o, i)
        if bias:
            e[name + ".bias"] = (o,)

    ce = "condition_embedder."
    lin(ce + "time_embedder.linear_1", D, c["freq_dim"])
    lin(ce + "time_embedder.linear_2", D, D)
    lin(ce + "time_proj", 6 * D, D)
    lin(ce + "text_embedder.linear_1", D, c["text_dim"])
    lin(ce + "text_embedder.linear_2", D, D)
    if c.get("image_dim") is not None:
        I = c["image_dim"]
        e[ce + "image_embedder.norm1.weight"] = e[ce + "image_embedder.norm1.bias"] = (I,)
        lin(ce + "image_embedder.ff.net.0.proj", I, I)
        lin(ce + "image_embedder.ff.net.2", D, I)
        e[ce + "image_embedder.norm2.weight"] = e[ce + "image_embedder.norm2.bias"] = (D,)
    qk = c.get("qk_norm") is not None
    for i in range(c["num_layers"]):
        b = f"blocks.{i}."
        e[b + "scale_shift_table"] = (1, 6, D)
        for a in ("attn1", "attn2"):
            for p in ("to_q", "to_k", "to_v", "to_out.0"):
                lin(f"{b}{a}.{p}", D, D)
            if qk:
                e[f"{b}{a}.norm_q.weight"] = e[f"{b}{a}.norm_k.weight"] = (D,)
        if c.get("added_kv_proj_dim") is not None:
            lin(b + "attn2.add_k_proj", D, c["added_kv_proj_dim"])
            lin(b + "attn2.add_v_proj", D, c["added_kv_proj_dim"])
            if qk:
                e[b + "attn2.norm_added_k.weight"] = (D,)
        if c.get("cross_attn_norm"):
            e[b + "norm2.weight"] = e[b + "norm2.bias"] = (D,)
        lin(b + "ffn.net.0.proj", F, D)
        lin(b + "ffn.net.2", D, F)
    return e


# diffusers WanTransformer3DModel defaults (used for keys a config.json leaves out)
_DIT_DEFAULTS = {"patch_size": [1, 2, 2], "num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 16,
                 "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40,
                 "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": None,
                 "added_kv_proj_dim": None}


def _dit_config(j: dict, where: str):
    assumed = []
    if j.get("_class_name") == "WanModel":  # the original Wan config.json
        dim, heads = j.get("dim", 5120), j.get("num_heads", 40)
        from wanir.limits import LIMITS, check_value

        check_value("dim", dim, LIMITS["dit.text_dim"], where)
        check_value("num_heads", heads, LIMITS["dit.num_attention_heads"], where)
        if dim % heads:
            raise ConfigError(f"{where}: dim={dim} is not a multiple of num_heads={heads}")
        i2v = j.get("model_type", "t2v") in ("i2v", "flf2v")
        if j.get("model_type") == "flf2v":
            raise ConfigError(f"{where}: model_type flf2v (first-last-frame) is not modeled by wanir")
        c = dict(_DIT_DEFAULTS, patch_size=list(j.get("patch_size", [1, 2, 2])), num_attention_heads=heads,
                 attention_head_dim=dim // heads, in_channels=j.get("in_dim", 16), out_channels=j.get("out_dim", 16),
                 text_dim=j.get("text_dim", 4096), freq_dim=j.get("freq_dim", 256), ffn_dim=j.get("ffn_dim", 13824),
                 num_layers=j.get("num_layers", 40), cross_attn_norm=j.get("cross_attn_norm", True),
                 qk_norm="rms_norm_across_heads" if j.get("qk_norm", True) else None, eps=j.get("eps", 1e-6),
                 image_dim=1280 if i2v else None, added_kv_proj_dim=dim if i2v else None)
        if i2v:
            assumed.append("image_dim=1280 (the CLIP ViT-H/14 width of Wan2.1 I2V; WanModel configs do not state it)")
    else:
        if j.get("pos_embed_seq_len") is not None:
            raise ConfigError(f"{where}: pos_embed_seq_len={j['pos_embed_seq_len']} (first-last-frame model) "
                              f"is not modeled by wanir")
        c = {k: j.get(k, v) for k, v in _DIT_DEFAULTS.items()}
        c["patch_size"] = list(c["patch_size"])
    c["family"] = "wan_dit"
    return {k: c[k] for k in KEYS["wan_dit"]}, assumed


# ---------------------------------------------------------------------------------------------
# UMT5


def _umt5_normalize(t: dict, where: str):
    out = {}
    for k, v in t.items():
        if k.startswith(("decoder.", "lm_head.")):
            continue
        out[k] = (k, v)
    return "transformers", out


def _umt5_infer(t: dict, where: str, cfg_json: dict | None):
    notes, assumed = [], []
    emb = "shared.weight" if "shared.weight" in t else "encoder.embed_tokens.weight"
    vocab, d_model = _get(t, emb, where, 2)
    layers = _indices(t, "encoder.block.")
    if layers != list(range(len(layers))):
        missing = sorted(set(range(layers[-1] + 1)) - set(layers))
        raise ConfigError(f"{where}: encoder block indices are not contiguous: encoder.block.{missing[0]}.* is missing")
    a = "encoder.block.0.layer.0.SelfAttention."
    buckets, heads = _get(t, a + "relative_attention_bias.weight", where, 2)
    if len(layers) > 1 and "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" not in t:
        raise ConfigError(f"{where}: tensor 'encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight' "
                          f"is missing: a T5 encoder (one shared position bias), not UMT5 (one per layer)")
    inner = _get(t, a + "q.weight", where, 2)[0]
    if inner % heads:
        raise ConfigError(f"{where}: tensor '{a}q.weight' has {inner} outputs, not a multiple of the {heads} heads "
                          f"of '{a}relative_attention_bias.weight'")
    f = "encoder.block.0.layer.1.DenseReluDense."
    if f + "wi_0.weight" in t:
        d_ff, ffp = _get(t, f + "wi_0.weight", where, 2)[0], "gated-gelu"
    else:
        d_ff, ffp = _get(t, f + "wi.weight", where, 2)[0], "relu"
    if cfg_json is not None:
        max_dist, ffp = cfg_json["relative_attention_max_distance"], cfg_json["feed_forward_proj"]
    else:
        max_dist = 128
        assumed.append("relative_attention_max_distance=128 (the UMT5 default)")
        assumed.append(f"feed_forward_proj={ffp} (the activation is not stored in the weights)")
    if any(k.startswith("decoder.") for k in t):
        notes.append("decoder.* tensors ignored (Wan runs the encoder only)")
    cfg = {"family": "umt5", "vocab_size": vocab, "d_model": d_model, "d_kv": inner // heads, "d_ff": d_ff,
           "num_layers": len(layers), "num_heads": heads, "relative_attention_num_buckets": buckets,
           "relative_attention_max_distance": max_dist, "feed_forward_proj": ffp}
    return cfg, assumed, notes


def _umt5_expected(c: dict) -> dict:
    d, inner, ff = c["d_model"], c["num_heads"] * c["d_kv"], c["d_ff"]
    e = {"shared.weight": (c["vocab_size"], d), "encoder.embed_tokens.weight": (c["vocab_size"], d),
         "encoder.final_layer_norm.weight": (d,)}
    gated = str(c["feed_forward_proj"]).startswith("gated")
    for i in range(c["num_layers"]):
        a = f"encoder.block.{i}.layer.0."
        for p in "qkv":
            e[f"{a}SelfAttention.{p}.weight"] = (inner, d)
        e[a + "SelfAttention.o.weight"] = (d, inner)
        e[a + "SelfAttention.relative_attention_bias.weight"] = (c["relative_attention_num_buckets"], c["num_heads"])
        e[a + "layer_norm.weight"] = (d,)
        f = f"encoder.block.{i}.layer.1."
        for p in (("wi_0", "wi_1") if gated else ("wi",)):
            e[f"{f}DenseReluDense.{p}.weight"] = (ff, d)
        e[f + "DenseReluDense.wo.weight"] = (d, ff)
        e[f + "layer_norm.weight"] = (d,)
    return e


def _umt5_config(j: dict, where: str):
    defaults = {"vocab_size": 250112, "d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 8, "num_heads": 6,
                "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
                "feed_forward_proj": "gated-gelu"}
    c = {k: j.get(k, v) for k, v in defaults.items()}
    c["family"] = "umt5"
    return {k: c[k] for k in KEYS["umt5"]}, []


# ---------------------------------------------------------------------------------------------
# Wan VAE

_VAE_RES = {"residual.0.gamma": "norm1.gamma", "residual.2.weight": "conv1.weight", "residual.2.bias": "conv1.bias",
            "residual.3.gamma": "norm2.gamma", "residual.6.weight": "conv2.weight", "residual.6.bias": "conv2.bias",
            "shortcut.weight": "conv_shortcut.weight", "shortcut.bias": "conv_shortcut.bias"}


def _vae_normalize(t: dict, where: str):
    if "encoder.conv_in.weight" in t:
        return "diffusers", {k: (k, v) for k, v in t.items()}
    # original Wan-VAE naming
    top = {"conv1.weight": "quant_conv.weight", "conv1.bias": "quant_conv.bias",
           "conv2.weight": "post_quant_conv.weight", "conv2.bias": "post_quant_conv.bias"}
    for s in ("encoder", "decoder"):
        top.update({f"{s}.conv1.weight": f"{s}.conv_in.weight", f"{s}.conv1.bias": f"{s}.conv_in.bias",
                    f"{s}.head.0.gamma": f"{s}.norm_out.gamma", f"{s}.head.2.weight": f"{s}.conv_out.weight",
                    f"{s}.head.2.bias": f"{s}.conv_out.bias"})
    # decoder.upsamples is flat: (resnet ×(n+1), resample) per level; group it like diffusers
    ups = {}
    idx = _indices(t, "decoder.upsamples.")
    level, r = 0, 0
    for i in idx:
        if f"decoder.upsamples.{i}.resample.1.weight" in t or any(k.startswith(f"decoder.upsamples.{i}.time_conv.") for k in t):
            ups[i] = f"decoder.up_blocks.{level}.upsamplers.0."
            level, r = level + 1, 0
        else:
            ups[i] = f"decoder.up_blocks.{level}.resnets.{r}."
            r += 1
    out = {}
    for k, v in t.items():
        new = top.get(k)
        if new is None:
            m = re.match(r"(encoder|decoder)\.middle\.(\d+)\.(.*)$", k)
            if m:
                s, i, rest = m.group(1), int(m.group(2)), m.group(3)
                if i == 1:
                    new = f"{s}.mid_block.attentions.0.{rest}"
                else:
                    new = f"{s}.mid_block.resnets.{i // 2}.{_VAE_RES.get(rest, rest)}"
            elif (m := re.match(r"encoder\.downsamples\.(\d+)\.(.*)$", k)):
                new = f"encoder.down_blocks.{m.group(1)}.{_VAE_RES.get(m.group(2), m.group(2))}"
            elif (m := re.match(r"decoder\.upsamples\.(\d+)\.(.*)$", k)):
                new = ups[int(m.group(1))] + _VAE_RES.get(m.group(2), m.group(2))
            else:
                new = k
        out[new] = (k, v)
    return "original Wan-VAE", out


def _vae_infer(t: dict, where: str, cfg_json: dict | None):
    base, c_in = _get(t, "encoder.conv_in.weight", where, 5)[:2]
    z = _get(t, "post_quant_conv.weight", where, 5)[0]
    levels, cur = [[]], None
    for i in _indices(t, "encoder.down_blocks."):
        p = f"encoder.down_blocks.{i}."
        if p + "conv1.weight" in t:
            levels[-1].append(("res", _get(t, p + "conv1.weight", where, 5)[0]))
        elif p + "to_qkv.weight" in t:
            levels[-1].append(("attn", None))
        elif p + "resample.1.weight" in t:
            levels[-1].append(("down", p + "time_conv.weight" in t))
            levels.append([])
        else:
            first = sorted(k for k in t if k.startswith(p))[0]
            raise ConfigError(f"{where}: tensor '{t[first][0]}' does not fit a Wan2.1 VAE down block "
                              f"(residual block, attention or resample expected)")
    dim_mult, temporal, attn_scales = [], [], []
    n_res = sum(1 for k, _ in levels[0] if k == "res")
    for li, lv in enumerate(levels):
        res = [v for k, v in lv if k == "res"]
        if not res:
            raise ConfigError(f"{where}: encoder level {li} has no residual blocks")
        if res[-1] % base:
            raise ConfigError(f"{where}: encoder level {li} has {res[-1]} channels, not a multiple of base_dim {base}")
        dim_mult.append(res[-1] // base)
        temporal += [v for k, v in lv if k == "down"]
        if any(k == "attn" for k, _ in lv):
            attn_scales.append(1.0 / 2 ** li)
    cfg = {"family": "wan_vae", "base_dim": base, "z_dim": z, "dim_mult": dim_mult, "num_res_blocks": n_res,
           "attn_scales": attn_scales, "temperal_downsample": temporal}
    return cfg, [], []


def _vae_expected(c: dict) -> dict:
    base, z, mult, n = c["base_dim"], c["z_dim"], list(c["dim_mult"]), c["num_res_blocks"]
    attn = [float(s) for s in c.get("attn_scales") or []]
    tdown = list(c["temperal_downsample"])
    e = {}

    def conv(name, o, i, k):
        e[name + ".weight"] = (o, i, *k)
        e[name + ".bias"] = (o,)

    def res(p, i, o):
        e[p + "norm1.gamma"] = (i, 1, 1, 1)
        conv(p + "conv1", o, i, (3, 3, 3))
        e[p + "norm2.gamma"] = (o, 1, 1, 1)
        conv(p + "conv2", o, o, (3, 3, 3))
        if i != o:
            conv(p + "conv_shortcut", o, i, (1, 1, 1))

    def attn_block(p, d):
        e[p + "norm.gamma"] = (d, 1, 1)
        conv(p + "to_qkv", 3 * d, d, (1, 1))
        conv(p + "proj", d, d, (1, 1))

    def mid(p, d):
        attn_block(p + "attentions.0.", d)
        res(p + "resnets.0.", d, d)
        res(p + "resnets.1.", d, d)

    # encoder
    dims = [base * u for u in [1] + mult]
    conv("encoder.conv_in", base, 3, (3, 3, 3))
    j, scale = 0, 1.0
    for i, (di, do) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(n):
            res(f"encoder.down_blocks.{j}.", di, do)
            j += 1
            if scale in attn:
                attn_block(f"encoder.down_blocks.{j}.", do)
                j += 1
            di = do
        if i != len(mult) - 1:
            conv(f"encoder.down_blocks.{j}.resample.1", do, do, (3, 3))
            if tdown[i]:
                conv(f"encoder.down_blocks.{j}.time_conv", do, do, (3, 1, 1))
            j += 1
            scale /= 2.0
    mid("encoder.mid_block.", dims[-1])
    e["encoder.norm_out.gamma"] = (dims[-1], 1, 1, 1)
    conv("encoder.conv_out", 2 * z, dims[-1], (3, 3, 3))
    conv("quant_conv", 2 * z, 2 * z, (1, 1, 1))
    conv("post_quant_conv", z, z, (1, 1, 1))
    # decoder
    tup = tdown[::-1]
    dims = [base * u for u in [mult[-1]] + mult[::-1]]
    conv("decoder.conv_in", dims[0], z, (3, 3, 3))
    mid("decoder.mid_block.", dims[0])
    for i, (di, do) in enumerate(zip(dims[:-1], dims[1:])):
        if i > 0:
            di //= 2
        for r in range(n + 1):
            res(f"decoder.up_blocks.{i}.resnets.{r}.", di if r == 0 else do, do)
        if i != len(mult) - 1:
            p = f"decoder.up_blocks.{i}.upsamplers.0."
            conv(p + "resample.1", do // 2, do, (3, 3))
            if tup[i]:
                conv(p + "time_conv", 2 * do, do, (3, 1, 1))
    e["decoder.norm_out.gamma"] = (dims[-1], 1, 1, 1)
    conv("decoder.conv_out", 3, dims[-1], (3, 3, 3))
    return e


def _vae_config(j: dict, where: str):
    if j.get("is_residual"):
        raise ConfigError(f"{where}: is_residual=true (the Wan2.2 VAE) is not modeled by wanir; Wan2.1's VAE only")
    if j.get("decoder_base_dim") not in (None, j.get("base_dim", 96)):
        raise ConfigError(f"{where}: decoder_base_dim={j['decoder_base_dim']} differs from base_dim; wanir models "
                          f"the Wan2.1 VAE (one base dim)")
    for k in ("in_channels", "out_channels"):
        if j.get(k, 3) != 3:
            raise ConfigError(f"{where}: {k}={j[k]}; wanir models RGB video (3 channels)")
    c = {"family": "wan_vae", "base_dim": j.get("base_dim", 96), "z_dim": j.get("z_dim", 16),
         "dim_mult": list(j.get("dim_mult", [1, 2, 4, 4])), "num_res_blocks": j.get("num_res_blocks", 2),
         "attn_scales": [float(s) for s in j.get("attn_scales", [])],
         "temperal_downsample": list(j.get("temperal_downsample", [False, True, True]))}
    return c, []


# ---------------------------------------------------------------------------------------------
# tables

NORMALIZERS = {"wan_dit": _dit_normalize, "umt5": _umt5_normalize, "wan_vae": _vae_normalize}
INFERRERS = {"wan_dit": _dit_infer, "umt5": _umt5_infer, "wan_vae": _vae_infer}
EXPECTED = {"wan_dit": _dit_expected, "umt5": _umt5_expected, "wan_vae": _vae_expected}
CONFIG_READERS = {"wan_dit": _dit_config, "umt5": _umt5_config, "wan_vae": _vae_config}
#: tensors that alias another one (the second is the same parameter; counted once)
TIED = {"umt5": {"encoder.embed_tokens.weight": "shared.weight"}}
#: tensors a file may leave out (tied aliases saved once)
OPTIONAL = {"umt5": ("encoder.embed_tokens.weight", "shared.weight")}


# ---------------------------------------------------------------------------------------------
# config integration


def apply_model_from(cfg):
    """If ``cfg.model.from`` is set, infer the component(s) at that path and replace
    ``cfg.dit`` / ``cfg.text_encoder`` / ``cfg.vae`` with them (keys the inference does not
    produce are kept), and set ``cfg.model.name`` to ``from:<file name>``. Returns
    ``(cfg, lines)``: the (copied) config and the lines describing what was inferred and
    assumed (empty when ``model.from`` is null). Raises ConfigError for an unreadable file, a
    shape that fits no known family, or a DiT that does not match ``model.task``."""
    from omegaconf import OmegaConf

    src = cfg.get("model", {}).get("from") if hasattr(cfg, "get") else None
    if src is None or src == "":
        return cfg, []
    ins = inspect(str(src))
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    task = cfg.model.get("task")
    lines = []
    for comp in ins.components:
        if comp.component == "dit" and task is not None:
            i2v = comp.config["image_dim"] is not None
            if i2v and task != "i2v":
                raise ConfigError(f"model.from={src}: an image-to-video DiT (image_dim={comp.config['image_dim']}) "
                                  f"but model.task={task}; select an I2V model too, e.g. "
                                  f"model=wan2.1-i2v-14b-480p model.from={src}")
            if not i2v and task == "i2v":
                raise ConfigError(f"model.from={src}: a text-to-video DiT (no image embedder) but model.task=i2v; "
                                  f"select a T2V model too, e.g. model=wan2.1-t2v-14b model.from={src}")
        base = OmegaConf.to_container(cfg[comp.component]) if cfg.get(comp.component) is not None else {}
        base.update(comp.config)
        cfg[comp.component] = OmegaConf.create(base)
        lines += comp.lines()
    cfg.model.name = f"from:{Path(str(src)).name}"
    return cfg, lines + _consistency_notes(cfg)


def _consistency_notes(cfg) -> list:
    """Lines naming where the (partly inferred) components disagree with one another."""
    out = []
    dit, te, vae = cfg.get("dit"), cfg.get("text_encoder"), cfg.get("vae")
    if dit is not None and te is not None and te.get("d_model") is not None and dit.get("text_dim") != te.get("d_model"):
        out.append(f"note: dit.text_dim={dit.get('text_dim')} but text_encoder.d_model={te.get('d_model')}; "
                   f"the DiT's text embedder expects another text encoder width")
    if dit is not None and vae is not None and vae.get("z_dim") is not None:
        z = int(vae.get("z_dim"))
        want = 2 * z + 4 if dit.get("image_dim") is not None else z
        if dit.get("in_channels") != want:
            out.append(f"note: dit.in_channels={dit.get('in_channels')} but the VAE (z_dim={z}) gives {want} "
                       f"input channels")
    return out
