"""Checkpoint family ``umt5``: the UMT5 text encoder in transformers ``UMT5EncoderModel``
naming, or the official Wan naming of ``models_t5_umt5-xxl-enc-bf16.pth`` (``wan/modules/t5.py``:
``token_embedding``, ``blocks.N.attn.q``, ``blocks.N.ffn.gate.0``, ``blocks.N.pos_embedding``,
``norm``)."""
from __future__ import annotations

import re

from wanir.errors import ConfigError
from wanir.frontends.ckpt_family import Family, _get, _indices, register

#: the config keys this family produces, in the order of its component YAMLs
KEYS = ("family", "vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
        "relative_attention_num_buckets", "relative_attention_max_distance", "feed_forward_proj")


# official Wan T5 name (block-relative) -> transformers UMT5 name (block-relative)
_OFFICIAL_BLOCK = {"norm1.weight": "layer.0.layer_norm.weight", "attn.q.weight": "layer.0.SelfAttention.q.weight",
                   "attn.k.weight": "layer.0.SelfAttention.k.weight", "attn.v.weight": "layer.0.SelfAttention.v.weight",
                   "attn.o.weight": "layer.0.SelfAttention.o.weight",
                   "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
                   "norm2.weight": "layer.1.layer_norm.weight", "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
                   "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
                   "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight"}
_OFFICIAL_TOP = {"token_embedding.weight": "shared.weight", "norm.weight": "encoder.final_layer_norm.weight"}


def _is_official(t: dict) -> bool:
    return "token_embedding.weight" in t and any(k.startswith("blocks.") and ".attn.q." in k for k in t)


def _umt5_normalize(t: dict, where: str):
    if _is_official(t):
        out = {}
        for k, v in t.items():
            new = _OFFICIAL_TOP.get(k)
            if new is None and (m := re.match(r"blocks\.(\d+)\.(.*)$", k)) and m.group(2) in _OFFICIAL_BLOCK:
                new = f"encoder.block.{m.group(1)}.{_OFFICIAL_BLOCK[m.group(2)]}"
            out[new or k] = (k, v)
        return "official Wan T5", out
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
    return {k: c[k] for k in KEYS}, []


FAMILY = register(Family(
    name="umt5", component="text_encoder",
    keys=KEYS,
    detect=lambda t: _is_official(t) or any(k.startswith("encoder.block.") and ".SelfAttention." in k for k in t),
    detect_config=lambda c: c.get("model_type") == "umt5" or (isinstance(c.get("architectures"), list) and any(
        isinstance(a, str) and "UMT5" in a for a in c["architectures"])),
    normalize=_umt5_normalize, infer=_umt5_infer, expected=_umt5_expected, read_config=_umt5_config,
    #: the embedding is saved twice by transformers; the second is the same parameter
    tied={"encoder.embed_tokens.weight": "shared.weight"},
    optional=("encoder.embed_tokens.weight", "shared.weight")))
