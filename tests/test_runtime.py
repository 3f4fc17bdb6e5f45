"""Runtimes: the official Wan code's DiT lowering checked against the byte trace in
docs/runtimes.md, equal FLOPs across runtimes, runtime defaults and overrides.

The expected byte figures come from tracing one block of the official code's
``WanAttentionBlock`` (Wan-Video/Wan2.1 9737cba, aten ops under TorchDispatchMode, bf16
autocast, fp32 weights as loaded; docs/runtimes.md): bytes moved outside the GEMMs and the
attention kernel, per block, in units of L·D (L tokens, D model dim):

  modulated norms (norm1, norm2 with their modulation; the cross-attention norm3)   56
  residual gates and adds                                                           46
  the unfused WanRMSNorms on q and k                                               114
  complex128 RoPE on q and k (rope_apply)                                          144
  autocast casts of linear inputs                                                   42
  attention-wrapper casts and copies (flash_attention)                              42
  total                                                                            444

against about 254 for diffusers' WanTransformer3DModel with bf16 weights. The GELU hidden
(4·L·F) is outside these groups.
"""
import pytest
from omegaconf import OmegaConf

import wanir
from wanir.builder import GraphBuilder
from wanir.config import load_config
from wanir.errors import ConfigError
from wanir.frontends import wan_dit
from wanir.passes import bytes as bytes_pass

TRACE = {"modulated_norms": 56, "residual": 46, "rmsnorm": 114, "rope": 144, "autocast": 42, "wrapper": 42}
TRACE_TOTAL = 444
DIFFUSERS_TOTAL = 254


def _group(n):
    """The trace group of a DiT block node by its scope path and name (None: a GEMM or the
    attention kernel, outside the trace's groups)."""
    p = n.path
    if n.category in ("matmul", "conv", "attention"):
        return None
    if "/rope_q/" in p or "/rope_k/" in p or n.name.startswith(("rope_q", "rope_k")):
        return "rope"
    if any(f"/{s}/" in p for s in ("norm_q", "norm_k", "norm_added_k")) or n.name in ("norm_q", "norm_k"):
        return "rmsnorm"
    if "_wrapper/" in p or n.name == "sdpa_flatten":
        return "wrapper"
    if n.name.endswith("_autocast"):
        return "autocast"
    if n.name.startswith(("norm1", "norm2", "norm3")) or any(f"/{s}/" in p for s in ("norm1", "norm2", "norm3")):
        return "modulated_norms"
    if n.name.startswith(("gate_msa", "residual", "c_gate", "ffn_float")):
        return "residual"
    if n.name.startswith("gelu"):
        return "gelu"
    return "other"


def _dit14b():
    c = OmegaConf.to_container(load_config(["model=wan2.1-t2v-14b"]).dit)
    c["num_layers"] = 1
    return c


def _block_bytes(variant, latent, weights):
    cfg = _dit14b()
    b = GraphBuilder("block", weight_dtype=weights)
    with b.stage("diffusion_core"):
        wan_dit.build(b, cfg, latent_shape=latent, batch=1, text_len=512, compute_dtype="bf16", variant=variant)
    g = b.graph
    bytes_pass.run(g)
    acc = {}
    for n in g:
        if "/blocks/" not in n.path:
            continue
        k = _group(n)
        if k is not None:
            acc[k] = acc.get(k, 0) + n.costs["bytes_read"] + n.costs["bytes_written"]
    _, t, h, w = latent
    L = t * (h // 2) * (w // 2)
    return acc, L, cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["ffn_dim"]


# 480p and 720p at 81 frames: 32,760 and 75,600 tokens
@pytest.mark.parametrize("latent", [(16, 21, 60, 104), (16, 21, 90, 160)])
def test_official_block_bytes_match_the_trace(latent):
    acc, L, D, F = _block_bytes("official", latent, "fp32")
    unit = L * D
    for k, want in TRACE.items():
        got = acc.get(k, 0) / unit
        assert abs(got - want) <= 0.10 * want, f"{k}: {got:.1f}·L·D, trace {want}·L·D"
    total = sum(acc.get(k, 0) for k in TRACE) / unit
    assert abs(total - TRACE_TOTAL) <= 0.05 * TRACE_TOTAL
    # nothing else of size L·D moves in the block: views and the tiny modulation only
    assert acc.get("other", 0) / unit < 0.5
    # the GELU hidden: bf16 read and written, 4·L·F
    assert acc["gelu"] == 4 * L * F


@pytest.mark.parametrize("latent", [(16, 21, 60, 104), (16, 21, 90, 160)])
def test_diffusers_block_bytes_match_the_trace(latent):
    acc, L, D, _ = _block_bytes("diffusers", latent, "bf16")
    total = sum(v for k, v in acc.items() if k != "gelu") / (L * D)
    assert abs(total - DIFFUSERS_TOTAL) <= 0.05 * DIFFUSERS_TOTAL


SMALL = ["model=wan2.1-t2v-1.3b", "workload.height=240", "workload.width=416", "workload.frames=17",
         "workload.steps=2"]


@pytest.fixture(scope="module")
def both():
    return {rt: wanir.estimate(SMALL + [f"runtime={rt}"]) for rt in ("wan-official", "diffusers")}


def test_flops_and_params_equal_across_runtimes(both):
    off, dif = both["wan-official"], both["diffusers"]
    for s in off.stages:
        d = dif.stage(s.name)
        assert s.per_invocation["tensor_flops"] == d.per_invocation["tensor_flops"], s.name
        assert s.per_invocation["vector_flops"] == d.per_invocation["vector_flops"], s.name
        assert s.per_invocation["params"] == d.per_invocation["params"], s.name


def test_bytes_and_time_differ_across_runtimes(both):
    off, dif = both["wan-official"].stage("diffusion_core"), both["diffusers"].stage("diffusion_core")
    assert off.per_invocation["bytes"] > dif.per_invocation["bytes"]
    assert off.per_invocation["time_s"] > dif.per_invocation["time_s"]
    # the official runtime keeps the released fp32 checkpoint: 4 bytes per DiT parameter
    assert off.per_invocation["weight_bytes"] == 4 * off.per_invocation["params"]
    assert dif.per_invocation["weight_bytes"] == 2 * dif.per_invocation["params"]


def test_runtime_defaults_and_overrides():
    c = load_config([])
    assert c.runtime.name == "wan-official"
    assert (c.precision.dit_weights, c.precision.image_encoder) == ("fp32", "fp16")
    assert c.memory.offload_model is True and c.roofline.attention_kernel == "flash2"
    # several devices: the official generate.py turns offload off; FSDP gathers bf16
    c = load_config(["parallel=fsdp+ulysses"])
    assert c.memory.offload_model is False and c.precision.dit_weights == "bf16"
    c = load_config(["runtime=diffusers"])
    assert (c.precision.dit_weights, c.precision.image_encoder) == ("bf16", "fp32")
    assert c.memory.offload_model is False
    # every knob stays overridable
    c = load_config(["precision.dit_weights=bf16", "memory.offload_model=false", "roofline.attention_kernel=math",
                     "memory.reserve_gib=3"])
    assert (c.precision.dit_weights, c.memory.offload_model, c.roofline.attention_kernel, c.memory.reserve_gib) == \
        ("bf16", False, "math", 3)


@pytest.mark.parametrize("bad, key", [("runtime.dit_lowering=fast", "runtime.dit_lowering"),
                                      ("runtime.reserve_gib=-1", "runtime.reserve_gib"),
                                      ("runtime.allow_tf32=3", "runtime.allow_tf32"),
                                      ("memory.reserve_gib=1e9", "memory.reserve_gib"),
                                      ("memory.offload_model=sometimes", "memory.offload_model")])
def test_bad_runtime_values_are_one_line_errors(bad, key):
    with pytest.raises(ConfigError) as e:
        wanir.estimate(SMALL + [bad])
    assert key in str(e.value) and "\n" not in str(e.value)


def test_unknown_variant_is_refused():
    b = GraphBuilder("x")
    with b.stage("diffusion_core"), pytest.raises(ConfigError, match="dit_lowering"):
        wan_dit.build(b, _dit14b(), latent_shape=(16, 1, 4, 4), batch=1, text_len=8, compute_dtype="bf16",
                      variant="fast")
