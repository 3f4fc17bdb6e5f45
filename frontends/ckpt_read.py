"""Checkpoint file readers: tensor names, shapes and storage dtypes of a weights file
(safetensors header, sharded index, PyTorch state dict on meta) and JSON configs. No weight
is materialized."""
from __future__ import annotations

import json
import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from wanir.errors import ConfigError, WanirError
from wanir.limits import check_json_numbers
from wanir.safeio import (CAPS, MiB, TORCH_ZIP_MAX_MEMBERS, TORCH_ZIP_MAX_RATIO, _size, check_regular_file, load_json,
                          read_header, read_text_file, short)

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")

# safetensors dtype names -> wanir dtype names (others are kept lower-cased)
_ST_DTYPES = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F64": "fp64", "F8_E4M3": "fp8_e4m3",
              "F8_E5M2": "fp8_e5m2", "I8": "int8", "U8": "uint8", "I16": "int16", "I32": "int32",
              "I64": "int64", "BOOL": "bool"}
_TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "float64": "fp64",
                 "float8_e4m3fn": "fp8_e4m3", "float8_e5m2": "fp8_e5m2", "int8": "int8", "uint8": "uint8",
                 "int16": "int16", "int32": "int32", "int64": "int64", "bool": "bool"}



@dataclass(frozen=True)
class Tensor:
    """A tensor's shape and storage dtype as a checkpoint declares it (no data)."""

    shape: tuple
    dtype: str = "?"

    @property
    def numel(self) -> int:
        """Number of elements (a Python int)."""
        return math.prod(self.shape)



def read_safetensors_header(path) -> dict:
    """Tensor name -> :class:`Tensor` from a ``.safetensors`` file's header (8-byte
    little-endian header length, then the JSON header). No tensor data is read. Raises
    ConfigError naming the file when it is not a readable safetensors file."""
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
        header = load_json(read_header(path, "safetensors header", n, offset=8).decode("utf-8"), str(path))
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


def check_torch_zip(path, error: type[WanirError] = ConfigError) -> None:
    """Before ``torch.load``: ``path`` is a regular file; a zip archive has at most
    :data:`TORCH_ZIP_MAX_MEMBERS` members, each within its uncompressed-size cap (pickles
    ``CAPS['checkpoint pickle']``, the others ``CAPS['checkpoint member']``), no compressed
    member expands more than :data:`TORCH_ZIP_MAX_RATIO` times, and the pickle really
    decompresses to no more than its cap; a file that is not a zip (the legacy format,
    read whole) is at most ``CAPS['legacy checkpoint']``."""
    p = os.fspath(path)
    size = check_regular_file(p, "checkpoint", cap=2**62, error=error)
    try:
        is_zip = zipfile.is_zipfile(p)
    except OSError as e:
        raise error(f"{p}: cannot read the checkpoint: {e.strerror or e}") from None
    if not is_zip:
        cap = CAPS["legacy checkpoint"]
        if size > cap:
            raise error(f"{p}: a PyTorch checkpoint in the legacy (non-zip) format of {_size(size)}; at most "
                        f"{_size(cap)} is read (save it with a current torch.save, or as .safetensors)")
        return
    try:
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
            if len(infos) > TORCH_ZIP_MAX_MEMBERS:
                raise error(f"{p}: the checkpoint archive has {len(infos)} members; at most "
                            f"{TORCH_ZIP_MAX_MEMBERS} are read")
            for info in infos:
                is_pickle = info.filename.endswith(".pkl")
                kind = "checkpoint pickle" if is_pickle else "checkpoint member"
                cap = CAPS[kind]
                name = short(info.filename, 60)
                if info.file_size > cap:
                    raise error(f"{p}: member {name} is {_size(info.file_size)} uncompressed; a {kind} may be "
                                f"at most {_size(cap)}")
                if info.compress_type != zipfile.ZIP_STORED and \
                        info.file_size > TORCH_ZIP_MAX_RATIO * max(info.compress_size, 1024):
                    raise error(f"{p}: member {name} expands {info.file_size // max(info.compress_size, 1)} times "
                                f"when decompressed; at most {TORCH_ZIP_MAX_RATIO} is read")
                if is_pickle and info.compress_type != zipfile.ZIP_STORED:
                    # the stated size can lie: decompress it, bounded
                    with z.open(info) as f:
                        got = 0
                        while True:
                            chunk = f.read(MiB)
                            if not chunk:
                                break
                            got += len(chunk)
                            if got > cap:
                                raise error(f"{p}: member {name} decompresses to over {_size(cap)}; refused")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError) as e:
        if isinstance(e, WanirError):
            raise
        raise error(f"{p}: not a readable PyTorch checkpoint archive: {short(str(e), 120)}") from None
    except OSError as e:
        raise error(f"{p}: cannot read the checkpoint: {e.strerror or e}") from None


def read_torch_state_dict(path) -> dict:
    """Tensor name -> :class:`Tensor` from a PyTorch checkpoint (``torch.save`` of a state
    dict, possibly nested under ``state_dict``/``model``/``module``/``ema``), loaded with
    ``torch.load(map_location="meta", weights_only=True)``: shapes and dtypes only, no
    weight materialized. Raises ConfigError when torch is missing or the file cannot be
    read."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    # the file is checked before torch is asked for: a FIFO or a device is refused as such
    check_torch_zip(path)   # a regular file; every zip member's uncompressed size within its cap
    try:
        import torch  # late import: torch is the optional 'reference' extra
    except ImportError:
        raise ConfigError(f"{path}: reading PyTorch checkpoints needs torch, which is not installed "
                          f"(pip install 'wanir[reference]', or convert the file to .safetensors)") from None
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


#: nesting of state dicts looked through (``{"model": {"state_dict": {...}}}``)
MAX_STATE_DICT_NESTING = 8


def _find_state_dict(obj, seen: frozenset = frozenset()):
    """The first mapping of tensors in ``obj``, looking through the usual wrapper keys at most
    :data:`MAX_STATE_DICT_NESTING` levels deep; a dict that contains itself (a pickle may
    build one) is looked at once. Returns None when there is none."""
    import torch  # late import: torch is the optional 'reference' extra

    if not isinstance(obj, dict) or id(obj) in seen or len(seen) >= MAX_STATE_DICT_NESTING:
        return None
    if obj and any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for key in ("state_dict", "model", "module", "ema", "model_state_dict"):
        found = _find_state_dict(obj.get(key), seen | {id(obj)})
        if found is not None:
            return found
    return None


def read_tensors(path) -> dict:
    """Tensor name -> :class:`Tensor` of a weights file: ``.safetensors``, a sharded
    checkpoint's ``.safetensors.index.json``, or a PyTorch state dict."""
    path = Path(path)
    name = path.name
    if name.endswith(".index.json"):

        text = read_text_file(path, "index.json")
        try:
            index = load_json(text, str(path))
            shards = sorted(set(index["weight_map"].values()))
        except ConfigError:
            raise
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

    text = read_text_file(path, "config.json")   # a regular file under the size cap
    try:
        data = load_json(text, str(path))
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON (nested too deeply)") from None
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON: {short(str(e), 120)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a model config (a JSON object)")

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
