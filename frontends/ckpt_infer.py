"""Checkpoint inference: detect a file's family, infer its config, check every tensor against
it, count parameters by module; read whole directories (``model.from`` merges what they find into
the configuration in the resolver: wanir/model_from.py)."""
from __future__ import annotations

from pathlib import Path

from wanir.errors import ConfigError
# importing the family modules registers them; detection tries them in this order
from wanir.frontends import ckpt_clip  # noqa: F401,I001
from wanir.frontends import ckpt_dit, ckpt_release, ckpt_umt5, ckpt_vae  # noqa: F401,I001
from wanir.frontends.ckpt_family import FAMILIES, _fmt
from wanir.frontends.ckpt_read import Tensor, _read_json, _weights_in, read_tensors
from wanir.frontends.ckpt_render import Component, Inspection
from wanir.limits import check_component
from wanir.safeio import short


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
        if ckpt_release.is_release_folder(p):
            return Inspection(str(p), "official Wan release folder",
                              ckpt_release.read_release(p, read_tensors, _read_json, infer))
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
            cfg_from_json, json_assumed = FAMILIES[family].read_config(config_json, where)
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{where}: config.json holds a value of the wrong type or shape "
                              f"({type(e).__name__}: {short(str(e), 100)})") from None
        check_component(FAMILIES[family].component, cfg_from_json, where)   # types and ranges before any arithmetic
    if tensors is None:
        expected = {k: (k, Tensor(v)) for k, v in FAMILIES[family].expected(cfg_from_json).items()}
        counted = {orig: t for orig, (new, t) in _dedupe(expected, family).items()}
        return Component(FAMILIES[family].component, family, "config.json", source, cfg_from_json,
                         _by_module(counted, family), {}, json_assumed)
    naming, norm = FAMILIES[family].normalize(tensors, where)
    config, assumed, notes = FAMILIES[family].infer(norm, where, cfg_from_json)
    check_component(FAMILIES[family].component, config, where)
    if FAMILIES[family].ignored is not None:
        notes = list(notes) + FAMILIES[family].ignored(tensors)
    if cfg_from_json is not None:
        json_guessed = {a.split("=", 1)[0] for a in json_assumed}   # what the config.json did not state
        for k in FAMILIES[family].keys:
            if k in json_guessed:
                continue
            a, b = _plain(config[k]), _plain(cfg_from_json[k])
            if a != b:
                raise ConfigError(f"{where}: config.json has {k}={_fmt(b)} but the tensors imply {k}={_fmt(a)}")
        assumed = []
    _check_shapes(norm, FAMILIES[family].expected(config), where, family)
    counted = {orig: t for orig, (new, t) in _dedupe(norm, family).items()}
    dtypes: dict = {}
    for t in counted.values():
        dtypes[t.dtype] = dtypes.get(t.dtype, 0) + t.numel
    return Component(FAMILIES[family].component, family, naming, source, config, _by_module(counted, family),
                     dtypes, assumed, notes)


def _plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def _strip_prefix(tensors: dict) -> dict:
    for prefix in ("model.diffusion_model.", "diffusion_model.", "module."):
        if all(k.startswith(prefix) for k in tensors):
            return {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def _family_of_tensors(t: dict, where: str) -> str:
    for fam in FAMILIES.values():
        if fam.detect(t):
            return fam.name
    names = sorted(t)
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise ConfigError(f"{where}: not a Wan DiT, UMT5 encoder, Wan-VAE or Wan CLIP checkpoint: tensor '{names[0]}' "
                      f"fits none of them (no patch_embedding.weight, encoder.block.N.layer.0.SelfAttention.*, "
                      f"encoder.conv_in/down_blocks or visual.*; {len(names)} tensors: {shown})")


def _family_of_config(c: dict, where: str) -> str:
    for fam in FAMILIES.values():
        if fam.detect_config(c):
            return fam.name
    cls = c.get("_class_name")
    archs = c.get("architectures") if isinstance(c.get("architectures"), list) else []
    archs = [a for a in archs if isinstance(a, str)]
    what = str(cls or c.get("model_type") or ",".join(archs) or "an unknown model")[:80]
    raise ConfigError(f"{where}: config of {what}; wanir reads WanTransformer3DModel, WanModel, "
                      f"AutoencoderKLWan and umt5 configs")



def _check_shapes(norm: dict, expected: dict, where: str, family: str) -> None:
    """Every tensor present with the expected shape and none unexpected (tied aliases allowed)."""
    optional = set(FAMILIES[family].optional)
    for name, (orig, t) in norm.items():
        if name not in expected:
            raise ConfigError(f"{where}: tensor '{orig}' {list(t.shape)} does not fit a {family} "
                              f"(no such tensor in the inferred architecture)")
        if tuple(t.shape) != tuple(expected[name]):
            raise ConfigError(f"{where}: tensor '{orig}' has shape {list(t.shape)}; the inferred {family} "
                              f"config needs {list(expected[name])} (wanir models uniform blocks)")
    for name in expected:
        if name not in norm and name not in optional:
            alias = FAMILIES[family].tied.get(name)
            if alias and alias in norm:
                continue
            raise ConfigError(f"{where}: tensor '{name}' is missing (the inferred {family} has it)")


def _dedupe(norm: dict, family: str) -> dict:
    """Drop tied aliases (counted once)."""
    out = dict(((orig, (new, t)) for new, (orig, t) in norm.items()))
    for a, b in FAMILIES[family].tied.items():
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
