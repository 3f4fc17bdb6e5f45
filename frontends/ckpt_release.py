"""Official Wan release folders (``Wan2.1-T2V-14B/``, ``Wan2.1-I2V-14B-720P/``,
``Wan2.2-T2V-A14B/``, ...), read file by file and as a whole:

- the DiT: ``config.json`` (``"_class_name": "WanModel"``) beside
  ``diffusion_pytorch_model*.safetensors`` (one file, or shards with their index), or, for
  the two-expert Wan2.2 A14B models, one such folder per expert: ``high_noise_model/`` and
  ``low_noise_model/``;
- ``models_t5_umt5-xxl-enc-bf16.pth``: the UMT5-XXL encoder in the official naming;
- ``Wan2.1_VAE.pth`` / ``Wan2.2_VAE.pth``: the VAE;
- ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`` (image-to-video): the CLIP
  model, of which the vision tower is read;
- ``google/umt5-xxl/`` (the tokenizer) and other files are ignored.
"""
from __future__ import annotations

from pathlib import Path

from wanir.errors import ConfigError

#: the expert folders of a two-expert (Wan2.2 A14B) release, high-noise first
EXPERTS = ("high_noise_model", "low_noise_model")
#: file-name patterns of the official files, by component
PATTERNS = {"text_encoder": "models_t5_*.pth", "image_encoder": "models_clip_*.pth", "vae": "Wan2.*_VAE.pth"}


def is_release_folder(d: Path) -> bool:
    """Whether ``d`` holds an official release's files (any of them)."""
    return any((d / e).is_dir() for e in EXPERTS) or any(_glob(d, pat) for pat in PATTERNS.values())


def _glob(d: Path, pattern: str) -> list:
    return sorted(p for p in d.glob(pattern) if p.is_file())


def _one(d: Path, pattern: str):
    found = _glob(d, pattern)
    if len(found) > 1:
        raise ConfigError(f"{d}: {len(found)} files match {pattern} ({', '.join(p.name for p in found)}); "
                          f"keep one, or pass one file as the path")
    return found[0] if found else None


def dit_weights(d: Path):
    """The DiT weights of a release (sub)folder: the shards' index, or the one
    ``.safetensors`` file; None when there is none."""
    for pat, what in (("*.safetensors.index.json", "shard indexes"), ("*.safetensors", ".safetensors files and no index")):
        found = _glob(d, pat)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(f"{d}: {len(found)} {what} ({', '.join(p.name for p in found[:3])}"
                              f"{', ...' if len(found) > 3 else ''}); pass one file as the path")
    return None


def read_release(d: Path, read_tensors, read_json, infer) -> list:
    """The components of release folder ``d``, in pipeline order (text encoder, image encoder,
    DiT or its experts, VAE). ``read_tensors``, ``read_json`` and ``infer`` are the
    inference module's functions (passed in to keep this module free of import cycles)."""
    comps = []
    for comp in ("text_encoder", "image_encoder"):
        f = _one(d, PATTERNS[comp])
        if f is not None:
            comps.append(_expect(infer(read_tensors(f), None, source=f.name, where=str(f)), comp, f))
    experts = [e for e in EXPERTS if (d / e).is_dir()]
    if experts and len(experts) != len(EXPERTS):
        raise ConfigError(f"{d}: {experts[0]}/ without {[e for e in EXPERTS if e not in experts][0]}/ "
                          f"(a two-expert release has both)")
    for sub, label in ([(d / e, f"{e}/") for e in experts] or [(d, "")]):
        cfg = read_json(sub / "config.json") if (sub / "config.json").is_file() else None
        w = dit_weights(sub)
        if cfg is None and w is None:
            if experts:
                raise ConfigError(f"{sub}: no config.json and no .safetensors weights of the expert")
            continue
        src = f"{label}config.json + {w.name}" if cfg is not None and w is not None else \
            label + (w.name if w is not None else "config.json")
        c = infer(read_tensors(w) if w is not None else None, cfg, source=src,
                  where=str(w if w is not None else sub / "config.json"))
        c = _expect(c, "dit", w or sub / "config.json")
        if experts:
            c.expert = label[:-len("_model/")]
        comps.append(c)
    f = _one(d, PATTERNS["vae"])
    if f is not None:
        comps.append(_expect(infer(read_tensors(f), None, source=f.name, where=str(f)), "vae", f))
    if not comps:
        raise ConfigError(f"{d}: no model files found")
    return comps


def _expect(c, component: str, path):
    if c.component != component:
        raise ConfigError(f"{path}: named as the release's {component}, but its tensors are a {c.family}")
    return c
