"""Checkpoint family ``clip_vision``: the image encoder of Wan image-to-video, from the official
``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`` (open-clip naming,
``wan/modules/clip.py``). The file holds the whole XLM-RoBERTa + ViT-H/14 CLIP model; Wan runs
only the vision tower ``visual.*``, so only those tensors are read and counted
(``textual.*`` and ``log_scale`` are named in a note).

The inferred config has the keys of ``wanir/configs/image_encoder/*.yaml`` (transformers'
``CLIPVisionConfig`` names), which the CLIP frontend builds. What the shapes cannot tell:
the number of attention heads (q, k and v are one fused ``to_qkv`` tensor; assumed head dim
80, ViT-H/14's 16 heads of 80; one head for a width that is no multiple of 80), the LayerNorm eps (1e-5) and the activation (exact GELU).
The heads do not change FLOPs or parameters (attention costs B·T²·d either way).
"""
from __future__ import annotations

import math

from wanir.errors import ConfigError
from wanir.frontends.ckpt_family import Family, _get, _indices, register

#: the config keys this family produces, in the order of wanir/configs/image_encoder/*.yaml
KEYS = ("family", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size",
        "image_size", "num_channels", "layer_norm_eps", "hidden_act", "projection_dim")

#: assumed head dim of the vision tower (open-clip ViT-H/14: width 1280, 16 heads)
CLIP_HEAD_DIM = 80


def _detect(t: dict) -> bool:
    return "visual.patch_embedding.weight" in t and any(k.startswith("visual.transformer.") for k in t)


def _normalize(t: dict, where: str):
    out = {k[len("visual."):]: (k, v) for k, v in t.items() if k.startswith("visual.")}
    return "official Wan CLIP", out


def _infer(t: dict, where: str, cfg_json: dict | None):
    d, c_in, p, p2 = _get(t, "patch_embedding.weight", where, 4)
    if p != p2:
        raise ConfigError(f"{where}: tensor 'visual.patch_embedding.weight' has a {p}x{p2} patch; "
                          f"wanir models square patches")
    n_pos = _get(t, "pos_embedding", where, 3)[1]
    grid = math.isqrt(max(n_pos - 1, 0))
    if grid * grid != n_pos - 1:
        raise ConfigError(f"{where}: tensor 'visual.pos_embedding' has {n_pos} positions, not a square grid "
                          f"plus the class token")
    layers = _indices(t, "transformer.")
    if not layers:
        raise ConfigError(f"{where}: no vision transformer blocks (visual.transformer.N.*) found")
    if layers != list(range(len(layers))):
        missing = sorted(set(range(layers[-1] + 1)) - set(layers))
        raise ConfigError(f"{where}: block indices are not contiguous: visual.transformer.{missing[0]}.* is missing")
    ff = _get(t, "transformer.0.mlp.0.weight", where, 2)[0]
    heads = d // CLIP_HEAD_DIM if d % CLIP_HEAD_DIM == 0 else 1
    cfg = {"family": "clip_vision", "hidden_size": d, "intermediate_size": ff, "num_hidden_layers": len(layers),
           "num_attention_heads": heads, "patch_size": p, "image_size": grid * p,
           "num_channels": c_in, "layer_norm_eps": 1e-5, "hidden_act": "gelu",
           "projection_dim": _get(t, "head", where, 2)[1] if "head" in t else None}
    how = f"head dim {CLIP_HEAD_DIM}, as ViT-H/14" if heads > 1 else f"width {d} is no multiple of head dim {CLIP_HEAD_DIM}"
    assumed = [f"num_attention_heads={heads} ({how}; q/k/v are fused, so the shapes do not tell the heads; "
               f"they change neither FLOPs nor parameters)",
               "layer_norm_eps=1e-05, hidden_act=gelu (not stored in the weights)"]
    return cfg, assumed, []


def _expected(c: dict) -> dict:
    d, ff, p, C = c["hidden_size"], c["intermediate_size"], c["patch_size"], c["num_channels"]
    n_pos = (c["image_size"] // p) ** 2 + 1
    e = {"patch_embedding.weight": (d, C, p, p), "cls_embedding": (1, 1, d), "pos_embedding": (1, n_pos, d)}
    for n in ("pre_norm", "post_norm"):
        e[f"{n}.weight"] = e[f"{n}.bias"] = (d,)
    for i in range(c["num_hidden_layers"]):
        b = f"transformer.{i}."
        for n in ("norm1", "norm2"):
            e[f"{b}{n}.weight"] = e[f"{b}{n}.bias"] = (d,)
        e[b + "attn.to_qkv.weight"], e[b + "attn.to_qkv.bias"] = (3 * d, d), (3 * d,)
        e[b + "attn.proj.weight"], e[b + "attn.proj.bias"] = (d, d), (d,)
        e[b + "mlp.0.weight"], e[b + "mlp.0.bias"] = (ff, d), (ff,)
        e[b + "mlp.2.weight"], e[b + "mlp.2.bias"] = (d, ff), (d,)
    if c.get("projection_dim") is not None:
        e["head"] = (d, c["projection_dim"])       # the projection; not run by Wan (see the CLIP frontend)
    return e


def _ignored(t: dict) -> list:
    """Notes on the tensors this family does not read."""
    other = [k for k in t if not k.startswith("visual.")]
    if not other:
        return []
    n = sum(t[k].numel for k in other)
    return [f"{len(other)} tensors outside visual.* ({n:,} params: textual.*, log_scale) not counted: "
            f"Wan runs the vision tower only"]


def _read_config(j: dict, where: str):
    raise ConfigError(f"{where}: wanir reads the Wan CLIP image encoder from its weights "
                      f"(models_clip_*.pth), not from a config")


FAMILY = register(Family(
    name="clip_vision", component="image_encoder", keys=KEYS, detect=_detect,
    detect_config=lambda c: False,
    normalize=_normalize, infer=_infer, expected=_expected, read_config=_read_config,
    ignored=_ignored))
