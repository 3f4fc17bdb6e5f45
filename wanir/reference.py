"""The real PyTorch modules wanir's frontends lower, built on the ``meta`` device from the
components' typed descriptions (``DitArch``, ``VaeArch``, ``Umt5Arch``, ``ClipArch``), and counted with ``torch.utils.flop_counter.FlopCounterMode`` under the
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
from dataclasses import fields

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


def check_family(component: str, arch) -> None:
    """Raise ReferenceUnavailable unless ``arch`` (the typed description of ``component``,
    e.g. a :class:`wanir.frontends.wan_dit.DitArch`) is of a family with a reference module."""
    fam = getattr(arch, "family", None)
    if fam not in FAMILIES:
        raise ReferenceUnavailable(f"{component}.family={fam!r} has no reference module (families with one: "
                                   f"{', '.join(FAMILIES)})")


def _accepted(cls, arch, skip=("family",)) -> dict:
    """The hyperparameters of ``arch`` (a frozen dataclass) that ``cls``'s constructor takes,
    tuples as lists."""
    params = _inspect.signature(cls.__init__).parameters
    return {f.name: list(v) if isinstance(v, tuple) else v
            for f in fields(arch) if f.name in params and f.name not in skip
            for v in (getattr(arch, f.name),)}


def build_umt5(arch):
    """``UMT5EncoderModel`` with the hyperparameters of ``arch`` (a
    :class:`wanir.frontends.umt5.Umt5Arch`), on meta."""
    torch, transformers, diffusers = _require()
    check_family("text_encoder", arch)
    with torch.device("meta"):
        return transformers.UMT5EncoderModel(transformers.UMT5Config(
            vocab_size=arch.vocab_size, d_model=arch.d_model, d_kv=arch.d_kv, d_ff=arch.d_ff,
            num_layers=arch.num_layers, num_heads=arch.num_heads,
            relative_attention_num_buckets=arch.relative_attention_num_buckets,
            relative_attention_max_distance=arch.relative_attention_max_distance,
            feed_forward_proj=arch.feed_forward_proj, layer_norm_epsilon=arch.layer_norm_epsilon,
            tie_word_embeddings=False)).eval()


def build_clip(arch):
    """``CLIPVisionModel`` with the hyperparameters of ``arch`` (a
    :class:`wanir.frontends.clip.ClipArch`), on meta."""
    torch, transformers, diffusers = _require()
    check_family("image_encoder", arch)
    with torch.device("meta"):
        return transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
            hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
            num_hidden_layers=arch.num_hidden_layers, num_attention_heads=arch.num_attention_heads,
            patch_size=arch.patch_size, image_size=arch.image_size, num_channels=arch.num_channels,
            hidden_act=arch.hidden_act, layer_norm_eps=arch.layer_norm_eps)).eval()


def build_dit(arch, num_layers: int | None = None):
    """``WanTransformer3DModel`` with the hyperparameters of ``arch`` (a
    :class:`wanir.frontends.wan_dit.DitArch`; every field the constructor takes is passed), on
    meta; ``num_layers`` overrides the depth."""
    torch, transformers, diffusers = _require()
    check_family("dit", arch)
    kw = _accepted(diffusers.WanTransformer3DModel, arch)
    kw["patch_size"] = tuple(kw["patch_size"])
    if num_layers is not None:
        kw["num_layers"] = num_layers
    with torch.device("meta"):
        return diffusers.WanTransformer3DModel(**kw).eval()


def build_vae(arch):
    """``AutoencoderKLWan`` with the hyperparameters of ``arch`` (a
    :class:`wanir.frontends.wan_vae.VaeArch`; every field the constructor takes is passed;
    dropout 0), on meta."""
    torch, transformers, diffusers = _require()
    check_family("vae", arch)
    kw = _accepted(diffusers.AutoencoderKLWan, arch)
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
