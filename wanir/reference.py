"""The real PyTorch modules wanir's frontends lower, built on the ``meta`` device from wanir's
component configs, and counted with ``torch.utils.flop_counter.FlopCounterMode`` under the
MATH SDPA backend. Used by ``wanir verify`` and by the reference tests.

Needs the ``reference`` extra (torch, diffusers, transformers); importing this module
without them raises :class:`ReferenceUnavailable` naming what is missing.

- text encoder (``umt5``): ``transformers.UMT5EncoderModel``
- image encoder (``clip_vision``): ``transformers.CLIPVisionModel``
- DiT (``wan_dit``): ``diffusers.WanTransformer3DModel``
- VAE (``wan_vae``): ``diffusers.AutoencoderKLWan``

Every module is built with ``torch.device("meta")``: shapes only, no memory, and a forward
on meta inputs runs the real code path (the VAE's chunked, feature-cached loop included).
"""
from __future__ import annotations

import importlib.util
import inspect as _inspect

from wanir.errors import WanirError


class ReferenceUnavailable(WanirError):
    """The reference extra is not installed, or a component has no reference module."""


def _require():
    """The ``reference`` extra's modules, imported on first use: ``(torch, transformers,
    diffusers)``. Raises ReferenceUnavailable naming what is missing."""
    missing = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ReferenceUnavailable(f"the real modules need the 'reference' extra ({', '.join(missing)} not "
                                   f"installed): pip install torch==2.13.0 'wanir[reference]'")
    import diffusers, torch, torch.nn.attention, torch.utils.flop_counter, transformers  # late import: the optional 'reference' extra
    return torch, transformers, diffusers


#: component family -> what builds its reference module
FAMILIES = {"umt5": "transformers.UMT5EncoderModel", "clip_vision": "transformers.CLIPVisionModel",
            "wan_dit": "diffusers.WanTransformer3DModel", "wan_vae": "diffusers.AutoencoderKLWan"}


def check_family(component: str, cfg) -> None:
    """Raise ReferenceUnavailable unless ``cfg`` (the config of ``component``) is of a family
    with a reference module."""
    fam = cfg.get("family") if cfg is not None else None
    if fam not in FAMILIES:
        raise ReferenceUnavailable(f"{component}.family={fam!r} has no reference module (families with one: "
                                   f"{', '.join(FAMILIES)})")


def _get(cfg, key, default=None):
    v = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if v is None else v


def _plain(v):
    if hasattr(v, "items"):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)) or type(v).__name__ == "ListConfig":
        return [_plain(x) for x in v]
    return v


def _accepted(cls, cfg, skip=("family",)) -> dict:
    """The keys of ``cfg`` that ``cls``'s constructor takes (plain values)."""
    params = _inspect.signature(cls.__init__).parameters
    return {k: _plain(v) for k, v in cfg.items() if k in params and k not in skip}


def build_umt5(cfg):
    """``UMT5EncoderModel`` with the hyperparameters of ``cfg`` (a ``text_encoder`` config), on meta."""
    torch, transformers, diffusers = _require()
    check_family("text_encoder", cfg)
    with torch.device("meta"):
        return transformers.UMT5EncoderModel(transformers.UMT5Config(
            vocab_size=cfg["vocab_size"], d_model=cfg["d_model"], d_kv=cfg["d_kv"], d_ff=cfg["d_ff"],
            num_layers=cfg["num_layers"], num_heads=cfg["num_heads"],
            relative_attention_num_buckets=cfg["relative_attention_num_buckets"],
            relative_attention_max_distance=cfg["relative_attention_max_distance"],
            feed_forward_proj=cfg["feed_forward_proj"], layer_norm_epsilon=1e-6, tie_word_embeddings=False)).eval()


def build_clip(cfg):
    """``CLIPVisionModel`` with the hyperparameters of ``cfg`` (an ``image_encoder`` config), on meta."""
    torch, transformers, diffusers = _require()
    check_family("image_encoder", cfg)
    with torch.device("meta"):
        return transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
            hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
            patch_size=cfg["patch_size"], image_size=cfg["image_size"], num_channels=cfg["num_channels"],
            hidden_act=_get(cfg, "hidden_act", "gelu"), layer_norm_eps=float(_get(cfg, "layer_norm_eps", 1e-5)))).eval()


def build_dit(cfg, num_layers: int | None = None):
    """``WanTransformer3DModel`` with the hyperparameters of ``cfg`` (a ``dit`` config; every
    key the constructor takes is passed), on meta; ``num_layers`` overrides the depth."""
    torch, transformers, diffusers = _require()
    check_family("dit", cfg)
    kw = _accepted(diffusers.WanTransformer3DModel, cfg)
    kw["patch_size"] = tuple(kw["patch_size"])
    if num_layers is not None:
        kw["num_layers"] = num_layers
    with torch.device("meta"):
        return diffusers.WanTransformer3DModel(**kw).eval()


def build_vae(cfg):
    """``AutoencoderKLWan`` with the hyperparameters of ``cfg`` (a ``vae`` config; every key the
    constructor takes is passed; dropout 0), on meta."""
    torch, transformers, diffusers = _require()
    check_family("vae", cfg)
    kw = _accepted(diffusers.AutoencoderKLWan, cfg)
    kw["dropout"] = 0.0
    with torch.device("meta"):
        return diffusers.AutoencoderKLWan(**kw).eval()


def count(fn):
    """Run ``fn()`` under FlopCounterMode with the MATH SDPA backend and no autograd. Returns
    ``(total FLOPs, {module path: FLOPs}, fn's result)``; module paths are FlopCounterMode's
    (the first component is the class name of the outermost module called)."""
    torch, transformers, diffusers = _require()
    fc = torch.utils.flop_counter.FlopCounterMode(display=False)
    with torch.no_grad(), torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH), fc:
        out = fn()
    per = {k: int(sum(v.values())) for k, v in fc.get_flop_counts().items()}
    return int(fc.get_total_flops()), per, out


def meta(*shape, dtype=None):
    """An empty tensor on the meta device (float32 unless ``dtype``)."""
    torch = _require()[0]
    return torch.empty(*shape, device="meta", dtype=dtype or torch.float32)


def nparams(*modules) -> int:
    """Parameters of ``modules`` together (shared ones once)."""
    seen = {}
    for m in modules:
        for p in m.parameters():
            seen[id(p)] = p.numel()
    return sum(seen.values())
