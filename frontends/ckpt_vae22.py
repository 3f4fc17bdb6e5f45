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


# ---------------------------------------------------------------------------------------------
# the official Wan2.2_VAE.pth (wan/modules/vae2_2.py)
#
# Its tensors map one to one, in order and with the same shapes, onto diffusers'
# AutoencoderKLWan(is_residual=True), except that diffusers registers each middle block's
# attention before its two resnets (the official middle block is resnet, attention, resnet).
# So the file is read by position: the widths come from the first and last convolutions of
# each side and from the top-level conv2 (post-quant), the structure is the released one
# (assumed, and said so), and every tensor must then have the shape its position implies.

#: the structure of the released Wan2.2-VAE, which the official file's names are mapped onto
RELEASED = {"dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
            "temperal_downsample": [False, True, True]}


def _convs(t: dict, prefix: str) -> list:
    return [k for k, v in t.items() if k.startswith(prefix) and len(v.shape) == 5]


def is_official(t: dict) -> bool:
    """Whether tensors (in file order) look like an official Wan2.2_VAE.pth: the official
    top-level layout (``encoder.*``, ``conv1.*``, ``conv2.*``, ``decoder.*``) and an encoder
    whose first convolution takes patchified pixels (more than 3 channels)."""
    if "encoder.conv_in.weight" in t or "conv1.weight" not in t or "conv2.weight" not in t:
        return False
    enc = _convs(t, "encoder.")
    return bool(enc) and bool(_convs(t, "decoder.")) and t[enc[0]].shape[1] != 3


def _official_order(names: list) -> list:
    """diffusers' tensor order with each middle block's attention moved after its first resnet."""
    out, i = [], 0
    while i < len(names):
        n = names[i]
        side = n.split(".")[0]
        if n.startswith(f"{side}.mid_block.") and side in ("encoder", "decoder"):
            group = [m for m in names if m.startswith(f"{side}.mid_block.")]
            attn = [m for m in group if ".attentions." in m]
            r0 = [m for m in group if ".resnets.0." in m]
            r1 = [m for m in group if ".resnets.1." in m]
            out += r0 + attn + r1
            i += len(group)
        else:
            out.append(n)
            i += 1
    return out


def normalize_official(t: dict, where: str, expected) -> dict:
    """``{diffusers name: (official name, Tensor)}`` of an official Wan2.2_VAE.pth, mapped by
    position (see above); ``expected(config)`` is the family's tensor list (diffusers order).
    Raises ConfigError naming the first tensor that does not fit."""
    enc, dec = _convs(t, "encoder."), _convs(t, "decoder.")
    base, c_in = t[enc[0]].shape[:2]
    z = t["conv2.weight"].shape[0]
    mult = RELEASED["dim_mult"]
    if t[dec[0]].shape[0] % mult[-1]:
        raise ConfigError(f"{where}: tensor '{dec[0]}' has {t[dec[0]].shape[0]} outputs, not a multiple of "
                          f"{mult[-1]} (the released Wan2.2-VAE's last dim_mult)")
    patch = math.isqrt(c_in // 3)
    if 3 * patch * patch != c_in:
        raise ConfigError(f"{where}: tensor '{enc[0]}' takes {c_in} channels, not 3 · p · p")
    cfg = dict(RELEASED, family="wan_vae", base_dim=base, z_dim=z, decoder_base_dim=t[dec[0]].shape[0] // mult[-1],
               is_residual=True, in_channels=c_in, out_channels=t[dec[-1]].shape[0], patch_size=patch)
    exp = expected(cfg)
    order = _official_order(list(exp))
    names = list(t)
    if len(names) != len(order):
        raise ConfigError(f"{where}: {len(names)} tensors; the released Wan2.2-VAE layout with these widths has "
                          f"{len(order)} (wanir reads the official Wan2.2_VAE.pth by position)")
    out = {}
    for orig, new in zip(names, order):
        if tuple(t[orig].shape) != tuple(exp[new]):
            raise ConfigError(f"{where}: tensor '{orig}' has shape {list(t[orig].shape)}; at its position the "
                              f"released Wan2.2-VAE layout has {new} {list(exp[new])}")
        out[new] = (orig, t[orig])
    return out
