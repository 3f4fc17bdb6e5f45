"""Checkpoint family ``wan_dit``: the Wan DiT in diffusers ``WanTransformer3DModel`` naming
or the original ``WanModel`` naming."""
from __future__ import annotations

from wanir.errors import ConfigError
from wanir.frontends.ckpt_family import Family, _get, _indices, register
from wanir.limits import LIMITS, check_component, check_value

#: the config keys this family produces, in the order of its component YAMLs
KEYS = ("family", "patch_size", "num_attention_heads", "attention_head_dim", "in_channels",
        "out_channels", "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm",
        "qk_norm", "eps", "image_dim", "added_kv_proj_dim")

#: assumed Wan DiT attention head dim when no config.json says otherwise
DIT_HEAD_DIM = 128


_DIT_ORIGINAL = (  # original Wan name fragment -> diffusers fragment, applied in order
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("cross_attn", "attn2"), ("self_attn", "attn1"),
    (".o.", ".to_out.0."), (".q.", ".to_q."), (".k.", ".to_k."), (".v.", ".to_v."),
    (".k_img.", ".add_k_proj."), (".v_img.", ".add_v_proj."), (".norm_k_img.", ".norm_added_k."),
    ("head.modulation", "scale_shift_table"), ("head.head", "proj_out"), ("modulation", "scale_shift_table"),
    ("ffn.0", "ffn.net.0.proj"), ("ffn.2", "ffn.net.2"),
    ("norm3", "norm2"),  # the original block's norm3 (cross-attention norm) is diffusers' norm2
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
)


def _dit_normalize(t: dict, where: str):
    if any(k.startswith("condition_embedder.") for k in t):
        return "diffusers", {k: (k, v) for k, v in t.items()}
    if "text_embedding.0.weight" in t or "time_embedding.0.weight" in t:
        out = {}
        for k, v in t.items():
            new = "." + k + "."
            for a, b in _DIT_ORIGINAL:
                new = new.replace(a, b)
            out[new[1:-1]] = (k, v)
        return "original Wan", out
    raise ConfigError(f"{where}: tensor 'patch_embedding.weight' suggests a Wan DiT, but neither "
                      f"condition_embedder.* (diffusers) nor text_embedding.0.weight (original Wan) is present")


def _dit_infer(t: dict, where: str, cfg_json: dict | None):
    dim, c_in, pt, ph, pw = _get(t, "patch_embedding.weight", where, 5)
    # the kernel dims divide below: a 0 (or a huge value) is refused before any arithmetic
    check_component("dit", {"patch_size": [pt, ph, pw], "in_channels": c_in},
                    f"{where}: tensor '{t['patch_embedding.weight'][0]}'")
    assumed, notes = [], []
    if cfg_json is not None:
        head_dim, eps = cfg_json["attention_head_dim"], cfg_json["eps"]
    else:
        head_dim, eps = DIT_HEAD_DIM, 1e-6
        if dim % head_dim:
            raise ConfigError(f"{where}: tensor '{t['patch_embedding.weight'][0]}' gives dim {dim}, not a multiple "
                              f"of the assumed head dim {head_dim}; put the model's config.json beside the weights")
        assumed.append(f"attention_head_dim={head_dim} (Wan2.1 convention; heads = {dim}/{head_dim} = {dim // head_dim})")
        assumed.append("eps=1e-06")
    freq_dim = _get(t, "condition_embedder.time_embedder.linear_1.weight", where, 2)[1]
    text_dim = _get(t, "condition_embedder.text_embedder.linear_1.weight", where, 2)[1]
    out_flat = _get(t, "proj_out.weight", where, 2)[0]
    if out_flat % (pt * ph * pw):
        raise ConfigError(f"{where}: tensor '{t['proj_out.weight'][0]}' has {out_flat} outputs, not a multiple "
                          f"of the patch volume {pt}x{ph}x{pw}")
    layers = _indices(t, "blocks.")
    if not layers:
        raise ConfigError(f"{where}: no transformer blocks (blocks.N.*) found")
    if layers != list(range(len(layers))):
        missing = sorted(set(range(layers[-1] + 1)) - set(layers))
        raise ConfigError(f"{where}: block indices are not contiguous: blocks.{missing[0]}.* is missing")
    ffn = _get(t, "blocks.0.ffn.net.0.proj.weight", where, 2)[0]
    image_dim = added = None
    if "condition_embedder.image_embedder.norm1.weight" in t:
        image_dim = _get(t, "condition_embedder.image_embedder.norm1.weight", where, 1)[0]
        added = _get(t, "blocks.0.attn2.add_k_proj.weight", where, 2)[1]
    elif "blocks.0.attn2.add_k_proj.weight" in t:
        raise ConfigError(f"{where}: tensor '{t['blocks.0.attn2.add_k_proj.weight'][0]}' (image cross-attention) "
                          f"without the image embedder (condition_embedder.image_embedder.* / img_emb.proj.*)")
    cfg = {
        "family": "wan_dit", "patch_size": [pt, ph, pw], "num_attention_heads": dim // head_dim,
        "attention_head_dim": head_dim, "in_channels": c_in, "out_channels": out_flat // (pt * ph * pw),
        "text_dim": text_dim, "freq_dim": freq_dim, "ffn_dim": ffn, "num_layers": len(layers),
        "cross_attn_norm": "blocks.0.norm2.weight" in t,
        "qk_norm": "rms_norm_across_heads" if "blocks.0.attn1.norm_q.weight" in t else None,
        "eps": eps, "image_dim": image_dim, "added_kv_proj_dim": added,
    }
    if cfg_json is not None and cfg_json.get("qk_norm") not in (None, "rms_norm_across_heads"):
        cfg["qk_norm"] = cfg_json["qk_norm"]
    return cfg, assumed, notes


def _dit_expected(c: dict) -> dict:
    D = c["num_attention_heads"] * c["attention_head_dim"]
    F, pt, ph, pw = c["ffn_dim"], *c["patch_size"]
    e = {"scale_shift_table": (1, 2, D), "patch_embedding.weight": (D, c["in_channels"], pt, ph, pw),
         "patch_embedding.bias": (D,), "proj_out.weight": (c["out_channels"] * pt * ph * pw, D),
         "proj_out.bias": (c["out_channels"] * pt * ph * pw,)}

    def lin(name, o, i, bias=True):
        e[name + ".weight"] = (o, i)
        if bias:
            e[name + ".bias"] = (o,)

    ce = "condition_embedder."
    lin(ce + "time_embedder.linear_1", D, c["freq_dim"])
    lin(ce + "time_embedder.linear_2", D, D)
    lin(ce + "time_proj", 6 * D, D)
    lin(ce + "text_embedder.linear_1", D, c["text_dim"])
    lin(ce + "text_embedder.linear_2", D, D)
    if c.get("image_dim") is not None:
        I = c["image_dim"]
        e[ce + "image_embedder.norm1.weight"] = e[ce + "image_embedder.norm1.bias"] = (I,)
        lin(ce + "image_embedder.ff.net.0.proj", I, I)
        lin(ce + "image_embedder.ff.net.2", D, I)
        e[ce + "image_embedder.norm2.weight"] = e[ce + "image_embedder.norm2.bias"] = (D,)
    qk = c.get("qk_norm") is not None
    for i in range(c["num_layers"]):
        b = f"blocks.{i}."
        e[b + "scale_shift_table"] = (1, 6, D)
        for a in ("attn1", "attn2"):
            for p in ("to_q", "to_k", "to_v", "to_out.0"):
                lin(f"{b}{a}.{p}", D, D)
            if qk:
                e[f"{b}{a}.norm_q.weight"] = e[f"{b}{a}.norm_k.weight"] = (D,)
        if c.get("added_kv_proj_dim") is not None:
            lin(b + "attn2.add_k_proj", D, c["added_kv_proj_dim"])
            lin(b + "attn2.add_v_proj", D, c["added_kv_proj_dim"])
            if qk:
                e[b + "attn2.norm_added_k.weight"] = (D,)
        if c.get("cross_attn_norm"):
            e[b + "norm2.weight"] = e[b + "norm2.bias"] = (D,)
        lin(b + "ffn.net.0.proj", F, D)
        lin(b + "ffn.net.2", D, F)
    return e


# diffusers WanTransformer3DModel defaults (used for keys a config.json leaves out)
_DIT_DEFAULTS = {"patch_size": [1, 2, 2], "num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 16,
                 "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40,
                 "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": None,
                 "added_kv_proj_dim": None}


def _dit_config(j: dict, where: str):
    assumed = []
    if j.get("_class_name") == "WanModel":  # the original Wan config.json
        dim, heads = j.get("dim", 5120), j.get("num_heads", 40)

        check_value("dim", dim, LIMITS["dit.text_dim"], where)
        check_value("num_heads", heads, LIMITS["dit.num_attention_heads"], where)
        if dim % heads:
            raise ConfigError(f"{where}: dim={dim} is not a multiple of num_heads={heads}")
        i2v = j.get("model_type", "t2v") in ("i2v", "flf2v")
        if j.get("model_type") == "flf2v":
            raise ConfigError(f"{where}: model_type flf2v (first-last-frame) is not modeled by wanir")
        c = dict(_DIT_DEFAULTS, patch_size=list(j.get("patch_size", [1, 2, 2])), num_attention_heads=heads,
                 attention_head_dim=dim // heads, in_channels=j.get("in_dim", 16), out_channels=j.get("out_dim", 16),
                 text_dim=j.get("text_dim", 4096), freq_dim=j.get("freq_dim", 256), ffn_dim=j.get("ffn_dim", 13824),
                 num_layers=j.get("num_layers", 40), cross_attn_norm=j.get("cross_attn_norm", True),
                 qk_norm="rms_norm_across_heads" if j.get("qk_norm", True) else None, eps=j.get("eps", 1e-6),
                 image_dim=1280 if i2v else None, added_kv_proj_dim=dim if i2v else None)
        if i2v:
            assumed.append("image_dim=1280 (the CLIP ViT-H/14 width of Wan2.1 I2V; WanModel configs do not state it; "
                           "Wan2.2 I2V-A14B has no image embedder, which its weights show)")
            assumed.append(f"added_kv_proj_dim={dim} (the image cross-attention of Wan2.1 I2V)")
    else:
        if j.get("pos_embed_seq_len") is not None:
            raise ConfigError(f"{where}: pos_embed_seq_len={j['pos_embed_seq_len']} (first-last-frame model) "
                              f"is not modeled by wanir")
        c = {k: j.get(k, v) for k, v in _DIT_DEFAULTS.items()}
        c["patch_size"] = list(c["patch_size"])
    c["family"] = "wan_dit"
    return {k: c[k] for k in KEYS}, assumed


FAMILY = register(Family(
    name="wan_dit", component="dit",
    keys=KEYS,
    detect=lambda t: "patch_embedding.weight" in t,
    detect_config=lambda c: c.get("_class_name") in ("WanTransformer3DModel", "WanModel"),
    normalize=_dit_normalize, infer=_dit_infer, expected=_dit_expected, read_config=_dit_config))
