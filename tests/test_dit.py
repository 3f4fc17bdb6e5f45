"""DiT frontend: invariants, a closed-form derivation of FLOPs and parameters, dtypes, errors.

The closed form below is derived by hand from the module structure of
WanTransformer3DModel (FlopCounterMode conventions: 2·M·N·K per Linear, bias free;
2·out·C_in·kernel per Conv3d; 4·B·heads·Lq·Lk·head_dim per SDPA). With D = heads·head_dim,
P = prod(patch), L the patch tokens, S text tokens, I image tokens, B batch:

  patch_embedding  2·B·L·D·C_in·P
  time_embedder    2·B·(freq_dim·D + D·D)          time_proj  2·B·D·6D
  text_embedder    2·B·S·(text_dim·D + D·D)
  image_embedder   2·B·I·(image_dim² + image_dim·D)          (image-to-video)
  attn1            4·2·B·L·D² + 4·B·L²·D
  attn2            2·2·B·L·D² + 2·2·B·St·D² + 4·B·L·St·D  [+ 2·2·B·Si·Dkv·D + 4·B·L·Si·D]
                   St = S (text to video); image-to-video splits the I + S context tokens
                   at (I + S − 512): Si = I + S − 512 image, St = 512 text tokens
  ffn              2·2·B·L·D·ffn_dim
  proj_out         2·B·L·D·C_out·P
"""
import math

import pytest
from omegaconf import OmegaConf

from wanir import GraphBuilder
from wanir.config import load_config
from wanir.errors import ConfigError
from wanir.frontends import wan_dit
from wanir.resolve import component
from wanir.passes import flops, verify

STAGE = "diffusion_core"


def cfg_of(name):
    if name == "i2v-14b":
        return dict(cfg_of("t2v-14b"), in_channels=36, image_dim=1280, added_kv_proj_dim=5120)
    c = OmegaConf.to_container(load_config([f"dit=wan2.1-{name}"]).dit)
    return c


@pytest.fixture(scope="module", params=["t2v-1.3b", "t2v-14b", "i2v-14b"])
def cfg(request):
    return cfg_of(request.param)


def build(cfg, latent, batch=1, text_len=512, image_len=None, dtype="bf16", weights="bf16", **kw):
    b = GraphBuilder(weight_dtype=weights)
    with b.stage(STAGE):
        out = wan_dit.build(b, component("dit", cfg), latent_shape=latent, batch=batch, text_len=text_len, compute_dtype=dtype,
                            image_len=image_len, **kw)
    return b.graph, out


def totals(graph):
    return flops.run(graph)[STAGE]


def by_hand(cfg, latent, batch=1, text_len=512, image_len=257):
    c = cfg
    D = c["num_attention_heads"] * c["attention_head_dim"]
    P = math.prod(c["patch_size"])
    pt, ph, pw = c["patch_size"]
    L = (latent[1] // pt) * (latent[2] // ph) * (latent[3] // pw)
    B, S = batch, text_len
    f = 2 * B * L * D * c["in_channels"] * P
    f += 2 * B * (c["freq_dim"] * D + D * D) + 2 * B * D * 6 * D
    f += 2 * B * S * (c["text_dim"] * D + D * D)
    if c["image_dim"]:
        Ci = c["image_dim"]
        f += 2 * B * image_len * (Ci * Ci + Ci * D)
        Si, St = image_len + S - 512, 512
    else:
        Si, St = 0, S
    block = 4 * 2 * B * L * D * D + 4 * B * L * L * D
    block += 2 * 2 * B * L * D * D + 2 * 2 * B * St * D * D + 4 * B * L * St * D
    if c["image_dim"]:
        block += 2 * 2 * B * Si * c["added_kv_proj_dim"] * D + 4 * B * L * Si * D
    block += 2 * 2 * B * L * D * c["ffn_dim"]
    f += c["num_layers"] * block
    f += 2 * B * L * D * c["out_channels"] * P
    return f


def params_by_hand(cfg):
    c = cfg
    D = c["num_attention_heads"] * c["attention_head_dim"]
    P = math.prod(c["patch_size"])

    def lin(i, o):
        return i * o + o

    p = lin(c["in_channels"] * P, D)                                      # patch_embedding
    p += lin(c["freq_dim"], D) + lin(D, D) + lin(D, 6 * D)                 # time_embedder, time_proj
    p += lin(c["text_dim"], D) + lin(D, D)                                 # text_embedder
    if c["image_dim"]:
        Ci = c["image_dim"]
        p += 2 * Ci + lin(Ci, Ci) + lin(Ci, D) + 2 * D                     # image_embedder
    attn = 4 * lin(D, D) + 2 * D                                           # q, k, v, out, norm_q, norm_k
    block = 2 * attn + 2 * D + lin(D, c["ffn_dim"]) + lin(c["ffn_dim"], D) + 6 * D
    if c["added_kv_proj_dim"]:
        block += 2 * lin(c["added_kv_proj_dim"], D) + D                    # add_k/v_proj, norm_added_k
    return p + c["num_layers"] * block + lin(D, c["out_channels"] * P) + 2 * D


@pytest.mark.parametrize("latent_thw,batch,text_len", [
    ((21, 60, 104), 1, 512), ((21, 90, 160), 1, 512), ((2, 8, 8), 2, 512), ((1, 7, 9), 1, 77),
    ((21, 135, 240), 1, 512),               # 1080p
    ((251, 270, 480), 4, 512),              # 4K, 1,001 frames, batch 4: Python ints do not overflow
])
def test_flops_and_params_match_the_derivation(cfg, latent_thw, batch, text_len):
    latent = (cfg["in_channels"], *latent_thw)
    g, _ = build(cfg, latent, batch=batch, text_len=text_len)
    assert totals(g)["tensor_flops"] == by_hand(cfg, latent, batch, text_len)
    assert g.stage_params(STAGE) == params_by_hand(cfg)


def test_known_parameter_totals():
    # published sizes: "1.3B" and "14B"; image-to-video adds the image embedder and K/V projections
    assert params_by_hand(cfg_of("t2v-1.3b")) == 1_418_996_800
    assert params_by_hand(cfg_of("t2v-14b")) == 14_288_491_584
    assert params_by_hand(cfg_of("i2v-14b")) == 16_394_878_784


@pytest.mark.parametrize("axis,step", [(1, 1), (2, 2), (3, 2)])
def test_flops_grow_strictly_with_t_h_w(cfg, axis, step):
    base = [cfg["in_channels"], 3, 12, 20]
    prev = None
    for _ in range(4):
        g, _ = build(cfg, tuple(base))
        t = totals(g)
        if prev is not None:
            assert t["tensor_flops"] > prev["tensor_flops"]
            assert t["vector_flops"] > prev["vector_flops"]
        prev = t
        base[axis] += step


def test_odd_latent_sizes_floor_like_the_strided_conv(cfg):
    c = cfg["in_channels"]
    a, _ = build(cfg, (c, 3, 12, 20))
    b, out = build(cfg, (c, 3, 13, 21))
    assert totals(a)["tensor_flops"] == totals(b)["tensor_flops"]
    assert out.shape == (1, cfg["out_channels"], 3, 12, 20)


def test_collapsed_repeat_equals_expanded_blocks(cfg):
    small = dict(cfg, num_layers=3)
    latent = (cfg["in_channels"], 2, 8, 12)
    a, ya = build(small, latent)
    b, yb = build(small, latent, collapse_blocks=False)
    assert ya.shape == yb.shape
    assert totals(a) == totals(b)
    assert a.stage_params(STAGE) == b.stage_params(STAGE)
    assert a.stage_weight_bytes(STAGE) == b.stage_weight_bytes(STAGE)
    assert len(b) > len(a)
    verify.run(a)
    verify.run(b)


def test_verify_passes_and_node_count_is_independent_of_size_and_depth(cfg):
    g1, _ = build(cfg, (cfg["in_channels"], 21, 90, 160))
    g2, _ = build(dict(cfg, num_layers=2), (cfg["in_channels"], 1, 4, 4))
    assert verify.run(g1) == len(g1)
    assert len(g1) == len(g2) < 300


def test_batch_scales_linearly(cfg):
    latent = (cfg["in_channels"], 2, 8, 8)
    one, _ = build(cfg, latent, batch=1)
    three, _ = build(cfg, latent, batch=3)
    assert totals(three)["tensor_flops"] == 3 * totals(one)["tensor_flops"]


def test_io_shapes_and_dtypes(cfg):
    latent = (cfg["in_channels"], 5, 16, 24)
    g, out = build(cfg, latent, batch=2, text_len=77, dtype="fp16")
    assert out.shape == (2, cfg["out_channels"], 5, 16, 24) and out.dtype.name == "fp16"
    inputs = {n.name: n.outputs[0] for n in g if n.kind == "input" and n.scope.path == STAGE}
    assert inputs["latents"].shape == (2, *latent)
    assert inputs["timestep"].shape == (2,) and inputs["timestep"].dtype.name == "fp32"
    assert inputs["text_embeds"].shape == (2, 77, cfg["text_dim"])
    if cfg["image_dim"]:
        assert inputs["image_embeds"].shape == (2, 257, cfg["image_dim"])
    else:
        assert "image_embeds" not in inputs
    assert wan_dit.dit_tokens(component("dit", cfg), latent) == 5 * 8 * 12


def test_layernorms_run_in_fp32_and_blocks_exchange_compute_dtype(cfg):
    g, _ = build(cfg, (cfg["in_channels"], 2, 8, 8), dtype="bf16")
    lns = [n for n in g if n.kind == "layernorm"]
    assert lns and all(n.inputs[0].dtype.name == "fp32" for n in lns)
    linears = [n for n in g if n.kind == "linear" and "/blocks/" in n.path]
    assert linears and all(n.inputs[0].dtype.name == "bf16" for n in linears)
    time = [n for n in g if n.kind == "linear" and "time_embedder" in n.path]
    assert len(time) == 2 and all(n.inputs[0].dtype.name == "fp32" for n in time)
    # three casts back to the compute dtype end the three residual updates of a block
    assert {n.name for n in g if n.kind == "cast" and n.scope.path == f"{STAGE}/blocks"} >= {
        "residual1_type_as", "residual3_type_as", "norm1_type_as", "norm2_type_as", "norm3_type_as"}


def test_fp32_compute_has_fewer_casts_same_tensor_flops(cfg):
    latent = (cfg["in_channels"], 2, 8, 8)
    a, _ = build(cfg, latent, dtype="bf16")
    b, _ = build(cfg, latent, dtype="fp32")
    assert totals(a)["tensor_flops"] == totals(b)["tensor_flops"]
    casts = lambda g: sum(1 for n in g if n.kind == "cast")  # noqa: E731
    assert casts(b) < casts(a)


def test_weights_stored_at_the_builder_dtype(cfg):
    g, _ = build(cfg, (cfg["in_channels"], 2, 8, 8), weights="fp8_e4m3")
    assert {w.type.dtype.name for w in g.weights.values()} == {"fp8_e4m3"}
    assert g.stage_weight_bytes(STAGE) == params_by_hand(cfg)


def test_block_weights_are_one_copy_per_layer(cfg):
    g, _ = build(cfg, (cfg["in_channels"], 2, 8, 8))
    block = {w.copies for k, w in g.weights.items() if k.startswith(f"{STAGE}/blocks/")}
    rest = {w.copies for k, w in g.weights.items() if not k.startswith(f"{STAGE}/blocks/")}
    assert block == {cfg["num_layers"]} and rest == {1}


def test_image_to_video_text_split_moves_tokens():
    cfg = cfg_of("i2v-14b")
    latent = (cfg["in_channels"], 2, 8, 8)
    g, _ = build(dict(cfg, num_layers=1), latent, text_len=600)
    sd = {n.name: n for n in g if n.kind == "sdpa" and "attn2" in n.path}
    assert sd["sdpa"].inputs[1].shape[-2] == 512                 # text keys: always the last 512
    assert sd["sdpa_img"].inputs[1].shape[-2] == 257 + 600 - 512


@pytest.mark.parametrize("change,needle", [
    ({"qk_norm": "rms_norm"}, "qk_norm"),
    ({"image_dim": 1280}, "added_kv_proj_dim"),
    ({"patch_size": [1, 2]}, "patch_size"),
])
def test_config_errors_name_the_key(change, needle):
    with pytest.raises(ConfigError, match=needle):
        build(dict(cfg_of("t2v-1.3b"), **change), (16, 2, 8, 8))


def test_shape_errors():
    c = cfg_of("t2v-1.3b")
    with pytest.raises(ConfigError, match="in_channels"):
        build(c, (36, 2, 8, 8))
    with pytest.raises(ConfigError, match="patch size"):
        build(c, (16, 2, 1, 8))
    with pytest.raises(ConfigError, match="rope_max_seq_len"):
        build(c, (16, 1025, 8, 8))
    with pytest.raises(ConfigError, match="image tokens"):
        build(cfg_of("i2v-14b"), (36, 2, 8, 8), text_len=412, image_len=100)
