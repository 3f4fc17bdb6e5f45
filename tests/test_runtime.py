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
from wanir.resolve import component
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
        wan_dit.build(b, component("dit", cfg), latent_shape=latent, batch=1, text_len=512, compute_dtype="bf16", variant=variant)
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


I2V = ["model=wan2.1-i2v-14b-480p", "workload.height=240", "workload.width=416", "workload.frames=17",
       "workload.steps=2"]


def test_flops_and_params_equal_across_runtimes(both):
    i2v = {rt: wanir.estimate(I2V + [f"runtime={rt}"]) for rt in ("wan-official", "diffusers")}
    for off, dif in ((both["wan-official"], both["diffusers"]), (i2v["wan-official"], i2v["diffusers"])):
        _equal_counts(off, dif)
    # the image-to-video DiT has the image branch in both variants
    assert [s.name for s in i2v["wan-official"].stages] == [s.name for s in i2v["diffusers"].stages]


def _equal_counts(off, dif):
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
                                      ("memory.offload_model=sometimes", "memory.offload_model"),
                                      ("memory.host=nope", "memory.host=nope")])
def test_bad_runtime_values_are_one_line_errors(bad, key):
    with pytest.raises(ConfigError) as e:
        wanir.estimate(SMALL + [bad, "memory.t5_cpu=true"])
    assert key in str(e.value) and "\n" not in str(e.value)


def test_unknown_variant_is_refused():
    b = GraphBuilder("x")
    with b.stage("diffusion_core"), pytest.raises(ConfigError, match="dit_lowering"):
        wan_dit.build(b, component("dit", _dit14b()), latent_shape=(16, 1, 4, 4), batch=1, text_len=8, compute_dtype="bf16",
                      variant="fast")


# ---------------------------------------------------------------- offload and host stages

def _hw(name):
    from wanir import hardware
    return hardware.load(name)


def test_official_offload_moves_t5_and_dit_not_the_vae():
    base = wanir.estimate(SMALL + ["memory.offload_model=false"])
    off = wanir.estimate(SMALL + ["memory.offload_model=true"])
    w = {s.name: s.per_invocation["weight_bytes"] for s in base.stages}
    hw = _hw("h100-sxm")
    # T5 in and out around encoding, the DiT in at the first step and out after the last;
    # pageable copies at half the pinned host-link rate (runtime.pageable_copy_efficiency)
    moved = 2 * (w["text_encoder"] + w["diffusion_core"])
    assert off.extra["transfer_s"] == pytest.approx(moved / (hw.host_link_bandwidth * hw.host_link_efficiency * 0.5))
    assert off.total["time_s"] - base.total["time_s"] == pytest.approx(off.extra["transfer_s"])


def test_t5_cpu_runs_on_the_host_of_the_machine_class():
    dc = wanir.estimate(SMALL + ["memory.t5_cpu=true"])
    assert dc.extra["stages"]["text_encoder"]["device"] == "host-cpu"
    ws = wanir.estimate(SMALL + ["memory.t5_cpu=true", "hardware=rtx-4090"])
    assert ws.extra["stages"]["text_encoder"]["device"] == "host-workstation"
    pick = wanir.estimate(SMALL + ["memory.t5_cpu=true", "hardware=rtx-4090", "memory.host=host-cpu"])
    assert pick.extra["stages"]["text_encoder"]["device"] == "host-cpu"
    # a 16-core workstation is slower at T5 than a 112-core server
    assert ws.stage("text_encoder").per_invocation["time_s"] > dc.stage("text_encoder").per_invocation["time_s"]


def _block_params_13b():
    """Parameters of one Wan2.1-1.3B block, by hand (D = 1536, F = 8960): self- and
    cross-attention (4 linears of D² + D each, two RMSNorm weights of D), the affine
    cross-attention norm (2D), the FFN (D·F + F + F·D + D) and the modulation table (6D)."""
    D, F = 1536, 8960
    attn = 4 * (D * D + D) + 2 * D
    return 2 * attn + 2 * D + (D * F + F + F * D + D) + 6 * D


def test_block_streaming_copies_non_resident_blocks_every_call():
    per_block = _block_params_13b()
    full = wanir.estimate(SMALL + ["memory.offload_model=false", "memory.reserve_gib=0"])
    stream = wanir.estimate(SMALL + ["memory.offload_model=block", "memory.resident_params=0", "memory.reserve_gib=0"])
    keep10 = wanir.estimate(SMALL + ["memory.offload_model=block", f"memory.resident_params={10 * per_block}",
                                     "memory.reserve_gib=0"])
    hw = _hw("h100-sxm")
    rate = hw.host_link_bandwidth * hw.host_link_efficiency * 0.5
    calls = full.stage("diffusion_core").invocations
    # fp32 official weights: 4 bytes per parameter; 30 blocks streamed on every call, no prefetch
    assert stream.extra["transfer_s"] == pytest.approx(calls * 30 * 4 * per_block / rate)
    assert keep10.extra["transfer_s"] == pytest.approx(calls * 20 * 4 * per_block / rate)
    # on the GPU: all but the streamed blocks, plus two block buffers
    w_full = full.stage("diffusion_core").per_invocation["weight_bytes"]
    assert stream.stage("diffusion_core").per_invocation["weight_bytes"] == w_full - 28 * 4 * per_block
    assert stream.total["peak_memory_bytes"] < full.total["peak_memory_bytes"]


@pytest.mark.slow
def test_reserve_is_its_own_term_and_tight_warns():
    a = wanir.estimate(SMALL + ["memory.reserve_gib=0", "hardware=rtx-4090"])
    b = wanir.estimate(SMALL + ["memory.reserve_gib=2.5", "hardware=rtx-4090"])
    assert b.extra["memory"]["reserve_bytes"] == int(2.5 * 2**30)
    assert b.total["peak_memory_bytes"] - a.total["peak_memory_bytes"] == int(2.5 * 2**30)
    need = a.total["peak_memory_bytes"]
    cap = _hw("rtx-4090").memory_bytes
    # choose a reserve that puts the peak 2 % below the capacity: fits, but tight
    r = (0.98 * cap - need) / 2**30
    t = wanir.estimate(SMALL + [f"memory.reserve_gib={r}", "hardware=rtx-4090"])
    assert t.total["peak_memory_bytes"] <= cap
    assert any(w.startswith("tight:") for w in t.warnings)
    assert not any(w.startswith("tight:") for w in a.warnings)


@pytest.mark.integration
def test_estimate_json_reports_the_reserve_as_its_own_term():
    # total.reserve_bytes is the memory.reserve_gib term inside total.peak_memory_bytes: the peak
    # without it is the peak of the same run with no reserve
    import json
    import subprocess
    import sys

    def total(*ov):
        r = subprocess.run([sys.executable, "-m", "wanir.cli", "estimate", *SMALL, *ov, "--format", "json"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["total"]

    with_reserve, without = total("memory.reserve_gib=1.5"), total("memory.reserve_gib=0")
    assert with_reserve["reserve_bytes"] == int(1.5 * 2**30) and without["reserve_bytes"] == 0
    assert with_reserve["peak_memory_bytes"] - with_reserve["reserve_bytes"] == without["peak_memory_bytes"]
    # the runtime's default reserve, the CUDA context (docs/runtimes.md: 0.5 GiB), when the key is left null
    assert wanir.estimate(SMALL).total["reserve_bytes"] == 2**29


def test_default_attention_kernel_by_runtime_model_and_family():
    from wanir.runtime import default_attention_kernel, runtime_options
    off = runtime_options(load_config([]))
    dif = runtime_options(load_config(["runtime=diffusers"]))
    assert load_config([]).hardware.family == "sm90"
    assert default_attention_kernel(off, "wan2.1", "sm90") == "flash2"       # FA3 is not in Wan2.1's requirements
    assert default_attention_kernel(off, "wan2.2", "sm90") == "flash3"       # Wan2.2's README timings used FA3
    assert default_attention_kernel(off, "wan2.2", "sm80") == "flash2"
    assert default_attention_kernel(dif, "wan2.1", "sm90") == "sdpa"
    assert load_config(["runtime=diffusers"]).roofline.attention_kernel == "sdpa"
    assert load_config(["runtime=diffusers", "roofline.attention_kernel=flash3"]).roofline.attention_kernel == "flash3"
