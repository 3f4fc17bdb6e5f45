"""Checkpoint family ``wan_vae``: the Wan2.1 VAE in diffusers ``AutoencoderKLWan`` naming or
the original Wan-VAE naming."""
from __future__ import annotations

import re

from wanir.errors import ConfigError
from wanir.safeio import short
from wanir.frontends import ckpt_vae22
from wanir.frontends.ckpt_family import Family, _get, _indices, register

#: the config keys this family produces (those after temperal_downsample describe the Wan2.2-VAE)
KEYS = ("family", "base_dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales", "temperal_downsample",
        "decoder_base_dim", "is_residual", "in_channels", "out_channels", "patch_size")
#: the values of the Wan2.2-VAE keys for the Wan2.1 VAE (diffusers' defaults)
WAN21 = {"decoder_base_dim": None, "is_residual": False, "in_channels": 3, "out_channels": 3, "patch_size": None}

_VAE_RES = {"residual.0.gamma": "norm1.gamma", "residual.2.weight": "conv1.weight", "residual.2.bias": "conv1.bias",
            "residual.3.gamma": "norm2.gamma", "residual.6.weight": "conv2.weight", "residual.6.bias": "conv2.bias",
            "shortcut.weight": "conv_shortcut.weight", "shortcut.bias": "conv_shortcut.bias"}


def _vae_normalize(t: dict, where: str):
    if "encoder.conv_in.weight" in t:
        return "diffusers", {k: (k, v) for k, v in t.items()}
    if ckpt_vae22.is_official(t):
        return "official Wan2.2-VAE", ckpt_vae22.normalize_official(t, where, _vae_expected)
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
    if ckpt_vae22.is_residual(t):
        assumed = []
        if any(orig != new for new, (orig, _) in t.items()):       # the official file, mapped by position
            assumed.append("the released Wan2.2-VAE structure (dim_mult [1,2,4,4], num_res_blocks 2, "
                           "temperal_downsample [false,true,true]): the official names are mapped onto diffusers' "
                           "by their order, and every shape fits")
        return ckpt_vae22.infer(t, where), assumed, []
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
           "attn_scales": attn_scales, "temperal_downsample": temporal, **WAN21}
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

    if c.get("is_residual"):
        ckpt_vae22.expected(c, e, conv, res, mid)
        return e
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
    residual = j.get("is_residual", False)
    if not isinstance(residual, bool):
        raise ConfigError(f"{where}: vae.is_residual must be true or false, got {short(residual)}")
    if not residual:
        if j.get("decoder_base_dim") not in (None, j.get("base_dim", 96)):
            raise ConfigError(f"{where}: decoder_base_dim={j['decoder_base_dim']} differs from base_dim; the Wan2.1 "
                              f"VAE has one base dim (is_residual=false)")
        for k in ("in_channels", "out_channels"):
            if j.get(k, 3) != 3:
                raise ConfigError(f"{where}: {k}={j[k]}; the Wan2.1 VAE (is_residual=false) takes RGB video")
    c = {"family": "wan_vae", "base_dim": j.get("base_dim", 96), "z_dim": j.get("z_dim", 16),
         "dim_mult": list(j.get("dim_mult", [1, 2, 4, 4])), "num_res_blocks": j.get("num_res_blocks", 2),
         "attn_scales": [float(s) for s in j.get("attn_scales", [])],
         "temperal_downsample": list(j.get("temperal_downsample", [False, True, True])),
         "decoder_base_dim": j.get("decoder_base_dim"), "is_residual": residual,
         "in_channels": j.get("in_channels", 3), "out_channels": j.get("out_channels", 3),
         "patch_size": j.get("patch_size")}
    return c, []


def _detect(t: dict) -> bool:
    return ("encoder.conv_in.weight" in t or "encoder.conv1.weight" in t) and \
        any(k.startswith(("encoder.down_blocks.", "encoder.downsamples.")) for k in t) or ckpt_vae22.is_official(t)


FAMILY = register(Family(
    name="wan_vae", component="vae",
    keys=KEYS,
    detect=_detect,
    detect_config=lambda c: c.get("_class_name") == "AutoencoderKLWan",
    normalize=_vae_normalize, infer=_vae_infer, expected=_vae_expected, read_config=_vae_config))
