"""The Wan2.2-VAE (``AutoencoderKLWan(is_residual=True)``, TI2V-5B) in diffusers naming: the
residual down/up blocks hold their resnets and one resampler each
(``encoder.down_blocks.N.resnets.R.*``, ``encoder.down_blocks.N.downsampler.*``,
``decoder.up_blocks.N.resnets.R.*``, ``decoder.up_blocks.N.upsampler.*``); the average /
duplicate shortcuts have no parameters. The 2x2 pixel patchify makes the encoder's input and
the decoder's output 12 channels (3 · 2 · 2), and the decoder has its own base dim.

Used by the ``wan_vae`` family (frontends/ckpt_vae.py) for files in this naming."""
from __future__ import annotations

import math

from wanir.errors import ConfigError
from wanir.frontends.ckpt_family import _get, _indices


def is_residual(t: dict) -> bool:
    """Whether normalized VAE tensors are in the residual (Wan2.2-VAE) layout."""
    return any(k.startswith("encoder.down_blocks.") and ".resnets." in k for k in t)


def infer(t: dict, where: str) -> dict:
    """The config of a residual VAE from its tensors (diffusers naming)."""
    base, c_in = _get(t, "encoder.conv_in.weight", where, 5)[:2]
    z = _get(t, "post_quant_conv.weight", where, 5)[0]
    levels = _indices(t, "encoder.down_blocks.")
    if levels != list(range(len(levels))) or not levels:
        raise ConfigError(f"{where}: encoder.down_blocks indices are not contiguous from 0")
    n_res = len(_indices(t, "encoder.down_blocks.0.resnets."))
    dim_mult, temporal = [], []
    for i in levels:
        out = _get(t, f"encoder.down_blocks.{i}.resnets.0.conv1.weight", where, 5)[0]
        if out % base:
            raise ConfigError(f"{where}: encoder level {i} has {out} channels, not a multiple of base_dim {base}")
        dim_mult.append(out // base)
        if i != levels[-1]:
            temporal.append(f"encoder.down_blocks.{i}.downsampler.time_conv.weight" in t)
    dec_last = _get(t, "decoder.norm_out.gamma", where)[0]
    if dec_last % dim_mult[0]:
        raise ConfigError(f"{where}: tensor 'decoder.norm_out.gamma' has {dec_last} channels, not a multiple of "
                          f"dim_mult[0]={dim_mult[0]}")
    c_out = _get(t, "decoder.conv_out.weight", where, 5)[0]
    patch = math.isqrt(c_in // 3) if c_in % 3 == 0 else 0
    if patch < 1 or 3 * patch * patch != c_in:
        raise ConfigError(f"{where}: tensor 'encoder.conv_in.weight' takes {c_in} channels, not 3 · p · p "
                          f"(RGB after a p x p patchify)")
    return {"family": "wan_vae", "base_dim": base, "z_dim": z, "dim_mult": dim_mult, "num_res_blocks": n_res,
            "attn_scales": [], "temperal_downsample": temporal, "decoder_base_dim": dec_last // dim_mult[0],
            "is_residual": True, "in_channels": c_in, "out_channels": c_out, "patch_size": patch}


def expected(c: dict, e: dict, conv, res, mid) -> None:
    """Add every tensor of a residual VAE with config ``c`` to ``e``; ``conv``, ``res`` and
    ``mid`` add a convolution, a residual block and a middle block to ``e`` (see ckpt_vae)."""
    base, z, mult, n = c["base_dim"], c["z_dim"], list(c["dim_mult"]), c["num_res_blocks"]
    if c.get("attn_scales"):
        raise ConfigError(f"vae: attn_scales={list(c['attn_scales'])} with is_residual: the residual VAE "
                          f"has attention only in its middle blocks")
    tdown = list(c["temperal_downsample"])
    dims = [base * u for u in [1] + mult]
    conv("encoder.conv_in", base, c["in_channels"], (3, 3, 3))
    for i, (di, do) in enumerate(zip(dims[:-1], dims[1:])):
        for r in range(n):
            res(f"encoder.down_blocks.{i}.resnets.{r}.", di if r == 0 else do, do)
        if i != len(mult) - 1:
            conv(f"encoder.down_blocks.{i}.downsampler.resample.1", do, do, (3, 3))
            if tdown[i]:
                conv(f"encoder.down_blocks.{i}.downsampler.time_conv", do, do, (3, 1, 1))
    mid("encoder.mid_block.", dims[-1])
    e["encoder.norm_out.gamma"] = (dims[-1], 1, 1, 1)
    conv("encoder.conv_out", 2 * z, dims[-1], (3, 3, 3))
    conv("quant_conv", 2 * z, 2 * z, (1, 1, 1))
    conv("post_quant_conv", z, z, (1, 1, 1))
    dec = c.get("decoder_base_dim") or base
    dims = [dec * u for u in [mult[-1]] + mult[::-1]]
    tup = tdown[::-1]
    conv("decoder.conv_in", dims[0], z, (3, 3, 3))
    mid("decoder.mid_block.", dims[0])
    for i, (di, do) in enumerate(zip(dims[:-1], dims[1:])):
        for r in range(n + 1):
            res(f"decoder.up_blocks.{i}.resnets.{r}.", di if r == 0 else do, do)
        if i != len(mult) - 1:
            conv(f"decoder.up_blocks.{i}.upsampler.resample.1", do, do, (3, 3))
            if tup[i]:
                conv(f"decoder.up_blocks.{i}.upsampler.time_conv", 2 * do, do, (3, 1, 1))
    e["decoder.norm_out.gamma"] = (dims[-1], 1, 1, 1)
    conv("decoder.conv_out", c["out_channels"], dims[-1], (3, 3, 3))
