"""Invariants of the UMT5 text-encoder frontend (no torch needed)."""
import pytest
from omegaconf import OmegaConf

from wanir import GraphBuilder
from wanir.config import load_config
from wanir.errors import ConfigError
from wanir.frontends import umt5
from wanir.resolve import component
from wanir.passes import flops, verify


@pytest.fixture(scope="module")
def cfg():
    return load_config().text_encoder


def build(cfg, seq_len=64, batch=1, expanded=False, dtype="bf16"):
    b = GraphBuilder(weight_dtype="bf16")
    with b.stage("text_encoder"):
        out = umt5.build(b, component("text_encoder", cfg), seq_len=seq_len, batch=batch, dtype=dtype, expanded=expanded)
    return b.graph, out


def totals(g):
    verify.run(g)
    return flops.run(g)["text_encoder"]


def test_verify_passes_and_output_shape(cfg):
    g, out = build(cfg, seq_len=100, batch=3)
    assert verify.run(g) == len(g)
    assert out.shape == (3, 100, cfg.d_model)
    assert out.dtype.name == "bf16"


@pytest.mark.parametrize("seq_len", [1, 7, 512])
def test_collapsed_equals_expanded(cfg, seq_len):
    gc, _ = build(cfg, seq_len)
    ge, _ = build(cfg, seq_len, expanded=True)
    assert totals(gc) == totals(ge)
    assert gc.stage_params("text_encoder") == ge.stage_params("text_encoder")
    assert len(ge) > len(gc)


def test_flops_grow_with_seq_len(cfg):
    seq = [1, 16, 77, 256, 512, 1024]
    t = [totals(build(cfg, s)[0]) for s in seq]
    for a, b in zip(t, t[1:]):
        assert b["tensor_flops"] > a["tensor_flops"]
        assert b["vector_flops"] > a["vector_flops"]


def test_attention_term_is_quadratic(cfg):
    # tensor FLOPs are linear in S (projections) plus quadratic (QK^T and PV): the second
    # difference at step 1 is twice the S^2 coefficient, 2 * L * 4 * H * d_kv
    f = [totals(build(cfg, s)[0])["tensor_flops"] for s in (10, 11, 12)]
    assert f[2] - 2 * f[1] + f[0] == 2 * cfg.num_layers * 4 * cfg.num_heads * cfg.d_kv


def test_batch_scales_tensor_flops_linearly(cfg):
    one = totals(build(cfg, 33, 1)[0])["tensor_flops"]
    assert totals(build(cfg, 33, 4)[0])["tensor_flops"] == 4 * one


def test_params_do_not_depend_on_shape(cfg):
    p = {build(cfg, s, bt)[0].stage_params("text_encoder") for s, bt in ((1, 1), (512, 2), (77, 3))}
    assert len(p) == 1


def test_params_by_hand(cfg):
    # embedding once (tied), per layer q,k,v,o + wi_0, wi_1, wo + bias table + 2 norms, final norm
    d, dff, inner = cfg.d_model, cfg.d_ff, cfg.num_heads * cfg.d_kv
    per_layer = 4 * d * inner + 3 * d * dff + cfg.relative_attention_num_buckets * cfg.num_heads + 2 * d
    want = cfg.vocab_size * d + cfg.num_layers * per_layer + d
    assert build(cfg)[0].stage_params("text_encoder") == want


def test_relative_bias_in_every_layer(cfg):
    g, _ = build(cfg, 16)
    (emb,) = [n for n in g if n.name == "relative_attention_bias"]
    assert emb.count == cfg.num_layers
    (sdpa,) = [n for n in g if n.kind == "sdpa"]
    assert len(sdpa.inputs) == 4 and sdpa.inputs[3].shape == (1, cfg.num_heads, 16, 16)
    assert sdpa.attrs["scale"] == 1.0


def test_non_gated_ffn_has_two_matrices(cfg):
    c = OmegaConf.merge(cfg, {"feed_forward_proj": "relu"})
    gated = build(cfg)[0].stage_params("text_encoder")
    plain = build(c)[0].stage_params("text_encoder")
    assert gated - plain == cfg.num_layers * cfg.d_model * cfg.d_ff


@pytest.mark.parametrize("key,value", [("feed_forward_proj", "swiglu"), ("num_heads", 0), ("d_model", "big"),
                                       ("relative_attention_num_buckets", 30)])
def test_bad_config_names_the_key(cfg, key, value):
    c = OmegaConf.merge(cfg, {key: value})
    with pytest.raises(ConfigError, match=key):
        build(c)


def test_bad_seq_len(cfg):
    with pytest.raises(ConfigError, match="seq_len"):
        build(cfg, seq_len=0)
