"""Wan2.2 models: the two-expert step split from the flow-matching schedule, the stage and
per-expert records, memory with offload, size checks, and the shipped configs.

The expected step splits are derived here independently of wanir: the official Wan2.2
sampler's sigma formula written out with numpy (FlowUniPCMultistepScheduler), and, when
diffusers is installed, diffusers' own UniPCMultistepScheduler with flow sigmas."""
import math

import pytest

import wanir
from wanir.config import load_config
from wanir.errors import ConfigError
from wanir.frontends import wan22

np = pytest.importorskip("numpy")

#: the A14B experts as diffusers' pipelines call them (one timestep per sample), whatever the
#: runtime's default: the exact per-call counts below are those of that call
PER_SAMPLE = "dit.time_embedding_per_token=false"


def official_timesteps(steps, shift):
    """Wan2.2's FlowUniPCMultistepScheduler(num_train_timesteps=1000, shift=1,
    use_dynamic_shifting=False).set_timesteps(steps, shift=shift), written out:
    training sigmas 1 - linspace(1, 1/1000, 1000)[::-1]; sigma_max/min are their ends;
    sigmas = linspace(sigma_max, sigma_min, steps + 1)[:-1], shifted, times 1000, as int64."""
    alphas = np.linspace(1, 1 / 1000, 1000)[::-1].copy()
    train_sigmas = 1.0 - alphas
    sigma_max, sigma_min = float(train_sigmas[0]), float(train_sigmas[-1])
    sigmas = np.linspace(sigma_max, sigma_min, steps + 1).copy()[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return (sigmas * 1000).astype(np.int64)


def split(steps, shift, boundary):
    t = official_timesteps(steps, shift)
    high = int((t >= boundary * 1000).sum())
    return high, steps - high


def test_published_splits():
    # T2V-A14B: 40 steps, shift 12.0, boundary 0.875; I2V-A14B: shift 5.0, boundary 0.9
    assert split(40, 12.0, 0.875) == (26, 14)
    assert split(40, 5.0, 0.9) == (15, 25)
    assert wan22.expert_steps(40, 12.0, 0.875) == (26, 14)
    assert wan22.expert_steps(40, 5.0, 0.9) == (15, 25)


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 20, 40, 50, 64, 100, 333])
@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0, 8.0, 12.0, 17.5])
@pytest.mark.parametrize("boundary", [0.0, 0.5, 0.875, 0.9, 1.0])
def test_split_for_any_steps_and_shift(steps, shift, boundary):
    assert list(wan22.flow_timesteps(steps, shift)) == official_timesteps(steps, shift).tolist()
    assert wan22.expert_steps(steps, shift, boundary) == split(steps, shift, boundary)


@pytest.mark.slow
@pytest.mark.parametrize("steps,shift,boundary", [(40, 12.0, 0.875), (40, 5.0, 0.9), (27, 7.0, 0.9)])
def test_split_against_diffusers_scheduler(steps, shift, boundary):
    """diffusers' Wan2.2 pipelines use UniPCMultistepScheduler with flow sigmas and flow_shift:
    the same sigmas, but its integer timesteps round where the official sampler truncates, so
    the two can split one step apart at other settings (50 steps, shift 3.0: 16/34 in diffusers,
    15/35 official). At the published settings they agree."""
    schedulers = pytest.importorskip("diffusers.schedulers")
    s = schedulers.UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                           flow_shift=shift, num_train_timesteps=1000)
    s.set_timesteps(steps, device="cpu")
    high = sum(1 for t in s.timesteps.tolist() if t >= boundary * 1000)
    assert wan22.expert_steps(steps, shift, boundary) == (high, steps - high)


def test_t2v_a14b_stage_and_expert_records():
    est = wanir.estimate(["model=wan2.2-t2v-a14b", PER_SAMPLE, "precision.dit_weights=bf16"])
    st = est.stage("diffusion_core")
    d = st.to_dict()
    # 26 high-noise and 14 low-noise steps, 2 calls each (guidance scales 4.0 / 3.0 > 1)
    assert st.invocations == 80
    assert [(e["name"], e["steps"], e["calls"]) for e in d["experts"]] == [("high_noise", 26, 52), ("low_noise", 14, 28)]
    # the per-expert totals add up to the stage total, and each call costs one 14B forward
    for k in ("tensor_flops", "vector_flops", "bytes"):
        assert sum(e[k] for e in d["experts"]) == st.total[k]
    assert math.isclose(sum(e["time_s"] for e in d["experts"]), st.total["time_s"], rel_tol=1e-12)
    assert st.per_invocation["tensor_flops"] * 80 == st.total["tensor_flops"]
    # one 14B forward at 1280x720x81 (docs: the Wan2.1 T2V-14B figure, checked against diffusers)
    assert st.per_invocation["tensor_flops"] == 6_523_436_592_005_120
    assert d["experts"][0]["tensor_flops"] == 52 * 6_523_436_592_005_120
    # both experts are held: 2 x 14,288,491,584 parameters (the Wan2.1 14B count), at bf16
    assert [e["params"] for e in d["experts"]] == [14_288_491_584] * 2
    assert st.per_invocation["params"] == 2 * 14_288_491_584
    assert st.per_invocation["weight_bytes"] == 2 * 2 * 14_288_491_584


@pytest.mark.slow
def test_guidance_scale_one_skips_the_unconditional_call():
    est = wanir.estimate(["model=wan2.2-t2v-a14b", PER_SAMPLE, "workload.guidance_scale_low=1.0"])
    st = est.stage("diffusion_core")
    assert st.invocations == 26 * 2 + 14
    assert [e["calls"] for e in st.experts] == [52, 14]
    assert st.total["tensor_flops"] == 66 * 6_523_436_592_005_120
    est = wanir.estimate(["model=wan2.2-t2v-a14b", "workload.guidance=false"])
    assert est.stage("diffusion_core").invocations == 40


@pytest.mark.slow
def test_shift_and_boundary_overrides():
    est = wanir.estimate(["model=wan2.2-t2v-a14b", "workload.steps=50", "workload.shift=3.0"])
    high, low = split(50, 3.0, 0.875)
    assert [e["steps"] for e in est.stage("diffusion_core").experts] == [high, low]
    # boundary 1.0: no timestep reaches 1000, so only the low-noise expert runs
    est = wanir.estimate(["model=wan2.2-i2v-a14b", "workload.boundary=1.0", "workload.height=480",
                          "workload.width=832"])
    ex = est.stage("diffusion_core").experts
    assert [(e["steps"], e["calls"]) for e in ex] == [(0, 0), (40, 80)]
    assert ex[0]["tensor_flops"] == 0
    assert est.stage("diffusion_core").invocations == 80


@pytest.mark.slow
def test_offload_holds_one_expert():
    """Both experts resident by default; with offload only the running one: the peak is the
    largest (weights + activations) of one stage, the DiT stage counting one expert's weights
    (plus the runtime's fixed reserve, where the runtime has one)."""
    common = ["model=wan2.2-t2v-a14b", "precision.dit_weights=bf16", "memory.t5_cpu=false"]
    on = wanir.estimate(common + ["memory.offload_model=false"])
    off = wanir.estimate(common + ["memory.offload_model=true"])
    one = 2 * 14_288_491_584                      # one expert's bf16 bytes
    mem = off.extra["memory"]
    stages = {s.name: s for s in off.stages}
    expect = max(
        (one if n == "diffusion_core" else s.per_invocation["weight_bytes"]) + s.per_invocation["peak_activation_bytes"]
        for n, s in stages.items())
    # the tensors at the peak; the allocator's blocks hold at least that, the process its segments + context
    assert mem["weight_bytes"] + mem["activation_bytes"] == expect
    assert expect <= mem["peak_allocated_bytes"] <= mem["peak_reserved_bytes"]
    assert mem["peak_memory_bytes"] == mem["peak_reserved_bytes"] + mem.get("reserve_bytes", 0)
    assert on.extra["memory"]["weight_bytes"] == sum(s.per_invocation["weight_bytes"] for s in on.stages)
    assert stages["diffusion_core"].per_invocation["weight_bytes"] == 2 * one
    # the stage's own row: the expert it holds, plus its activations
    from wanir.backends import report

    act = stages["diffusion_core"].per_invocation["peak_activation_bytes"]
    row = {r["stage"]: r for r in report.rows(off)}["diffusion_core"]
    assert row["peak_memory_bytes"] == one + act
    row = {r["stage"]: r for r in report.rows(on)}["diffusion_core"]
    assert row["peak_memory_bytes"] == 2 * one + on.stage("diffusion_core").per_invocation["peak_activation_bytes"]


@pytest.mark.slow
def test_i2v_a14b_pipeline_stages():
    est = wanir.estimate(["model=wan2.2-i2v-a14b"])
    # no CLIP image encoder; the condition video is encoded at full length
    assert [s.name for s in est.stages] == ["text_encoder", "vae_encode", "diffusion_core", "vae_decode"]
    assert [e["steps"] for e in est.stage("diffusion_core").experts] == [15, 25]
    assert est.graph.find("vae_encode/video")[0].outputs[0].shape == (1, 3, 81, 720, 1280)
    assert est.graph.find("diffusion_core/high_noise/calls/latents")[0].outputs[0].shape == (1, 36, 21, 90, 160)


@pytest.mark.parametrize("overrides,msg", [
    (["model=wan2.2-t2v-a14b", "workload.height=712"], "allowed nearby: 704 or 720"),
    (["model=wan2.2-ti2v-5b", "workload.width=1296"], "allowed nearby: 1280 or 1312"),
    (["model=wan2.2-ti2v-5b", "workload.height=720"], "allowed nearby: 704 or 736"),
    (["model=wan2.2-ti2v-5b", "workload.frames=122"], "allowed nearby: 121 or 125"),
    (["model=wan2.2-t2v-a14b", "workload.mode=i2v"], "workload.mode"),
    (["model=wan2.2-ti2v-5b", "workload.mode=v2v"], "allowed t2v, i2v"),
    (["model=wan2.1-t2v-14b", "workload.boundary=0.5"], "two-expert"),
    (["model=wan2.2-ti2v-5b", "workload.shift=3.0"], "two-expert"),
    (["model=wan2.2-t2v-a14b", "workload.shift=nan"], "workload.shift"),
    (["model=wan2.2-t2v-a14b", "workload.shift=0"], "workload.shift"),
    (["model=wan2.2-t2v-a14b", "workload.boundary=1.5"], "workload.boundary"),
    (["model=wan2.2-t2v-a14b", "workload.guidance_scale_high=inf"], "workload.guidance_scale_high"),
    (["model=wan2.2-t2v-a14b", "workload.guidance_scale_low=abc"], "workload.guidance_scale_low"),
    (["model=wan2.2-t2v-a14b", "dit.time_embedding_per_token=sometimes"], "dit.time_embedding_per_token"),
])
def test_bad_input_is_one_clear_error(overrides, msg):
    with pytest.raises(ConfigError, match=msg):
        wanir.estimate(overrides)


@pytest.mark.slow
def test_extrapolation_warnings_use_each_models_sizes():
    def extrapolation(w):
        return [x for x in w if "official sizes" in x or "training range" in x or "frames lie" in x]

    assert extrapolation(wanir.estimate(["model=wan2.2-t2v-a14b", "workload.height=480",
                                         "workload.width=832"]).warnings) == []
    w = wanir.estimate(["model=wan2.2-t2v-a14b", "workload.height=1088", "workload.width=1920"]).warnings
    assert any("921,600" in x for x in w) and any("official sizes" in x for x in w)
    # 1280x720 is a Wan2.1/A14B size, not one of TI2V-5B's (1280x704, 704x1280)
    w = wanir.estimate(["model=wan2.2-ti2v-5b", "workload.height=640", "workload.width=1280"]).warnings
    assert any("official sizes" in x for x in w)
    w = wanir.estimate(["model=wan2.2-ti2v-5b", "workload.frames=161"]).warnings
    assert any("121 frames" in x for x in w)


# the Wan2.2 release's hyperparameters, written out (diffusers' conversion script configs)
DIT_A14B = dict(family="wan_dit", patch_size=[1, 2, 2], num_attention_heads=40, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None)
DIT_I2V_A14B = dict(DIT_A14B, in_channels=36)
DIT_TI2V_5B = dict(DIT_A14B, num_attention_heads=24, in_channels=48, out_channels=48, ffn_dim=14336, num_layers=30)
VAE_21 = dict(family="wan_vae", base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
              temperal_downsample=[False, True, True])
VAE_22 = dict(family="wan_vae", base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
              attn_scales=[], temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
              out_channels=12, patch_size=2)


@pytest.mark.parametrize("model,dit,vae,defaults", [
    ("wan2.2-t2v-a14b", DIT_A14B, VAE_21, dict(default_steps=40, default_height=720, default_width=1280,
                                               default_frames=81, shift=12.0, boundary=0.875)),
    ("wan2.2-i2v-a14b", DIT_I2V_A14B, VAE_21, dict(default_steps=40, default_height=720, default_width=1280,
                                                   default_frames=81, shift=5.0, boundary=0.9)),
    ("wan2.2-ti2v-5b", DIT_TI2V_5B, VAE_22, dict(default_steps=50, default_height=704, default_width=1280,
                                                 default_frames=121)),
])
def test_shipped_wan22_configs(model, dit, vae, defaults):
    from omegaconf import OmegaConf

    cfg = load_config([f"model={model}"])
    got = OmegaConf.to_container(cfg, resolve=True)
    assert {k: got["dit"].get(k) for k in dit} == dit
    assert {k: got["vae"].get(k) for k in vae} == vae
    assert {k: got["model"].get(k) for k in defaults} == defaults
    assert got["model"]["family"] == "wan2.2"
    assert "image_encoder" not in got


@pytest.mark.slow
def test_parallel_plans_shard_both_experts():
    """Ulysses splits the heads of every self-attention in both experts; FSDP shards both
    experts' blocks (each device holds 1/8 of the stage's weights, up to rounding)."""
    from wanir.backends import parallel

    est = wanir.estimate(["model=wan2.2-t2v-a14b", "workload.steps=4"])
    units = parallel.block_units(est.graph, "diffusion_core")
    assert sorted(u.path for u in units) == ["diffusion_core/high_noise/calls/blocks",
                                             "diffusion_core/low_noise/calls/blocks"]
    g = parallel.shard_graph(est.graph, parallel.make_plan("ulysses", 8))
    attn1 = [n for n in g if n.kind == "sdpa" and "/blocks/attn1/" in n.path + "/"]
    assert sorted({n.path.split("/")[1] for n in attn1}) == ["high_noise", "low_noise"]
    assert {n.inputs[0].shape[1] for n in attn1} == {40 // 8}
    cost = parallel.multi_device_cost(est, plan=parallel.make_plan("fsdp", 8))
    stage_weights = est.stage("diffusion_core").per_invocation["weight_bytes"]
    assert cost.stages["diffusion_core"]["weight_bytes"] <= -(-stage_weights // 8) + 8


@pytest.mark.slow
def test_sizing_skips_cfg_parallel_when_one_expert_runs_unguided():
    """Guidance scale 1 on the low-noise expert: 26·2 + 14 calls, which two guidance branches
    cannot split evenly, so no candidate plan uses CFG parallelism; with both experts guided,
    CFG-parallel plans are among the candidates."""
    from wanir.backends import sizing

    common = ["model=wan2.2-t2v-a14b", "workload.steps=4"]
    r = sizing.size(common + ["workload.guidance_scale_low=1"], hardware=["h200"], devices=(2,))
    assert r["evaluated"] > 0 and all(c.plan.cfg == 1 for c in r["candidates"])
    r = sizing.size(common, hardware=["h200"], devices=(2,))
    assert any(c.plan.cfg == 2 for c in r["candidates"])


@pytest.mark.slow
def test_diagram_shows_both_experts():
    from wanir.backends import graphviz

    est = wanir.estimate(["model=wan2.2-t2v-a14b"])
    dot = str(graphviz.to_digraph(est.graph, stage="diffusion_core", depth=3))
    assert "diffusion_core: 80 DiT calls (high_noise 26 steps, low_noise 14 steps) × 2 CFG branches" in dot
    assert "label=high_noise" in dot and "label=low_noise" in dot
    assert "calls × 26" in dot and "calls × 14" in dot


@pytest.mark.slow
def test_time_embedding_per_token_setting():
    """``dit.time_embedding_per_token=true`` (the official Wan2.2 computation) differs from the
    diffusers A14B call by the time embedder and time_proj on L rows instead of 1:
    (L − 1)·(2·256·D + 2·D² + 12·D²) tensor FLOPs per call, D = 5120, L = 21·45·80."""
    D, L = 5120, 21 * 45 * 80
    term = (L - 1) * (2 * 256 * D + 2 * D * D + 12 * D * D)
    off = wanir.estimate(["model=wan2.2-t2v-a14b", "dit.time_embedding_per_token=false"])
    on = wanir.estimate(["model=wan2.2-t2v-a14b", "dit.time_embedding_per_token=true"])
    auto = wanir.estimate(["model=wan2.2-t2v-a14b", "runtime=diffusers"])
    assert auto.total["tensor_flops"] == off.total["tensor_flops"]        # diffusers: one timestep per sample
    d = on.stage("diffusion_core")
    assert d.per_invocation["tensor_flops"] - off.stage("diffusion_core").per_invocation["tensor_flops"] == term
    assert on.total["tensor_flops"] - off.total["tensor_flops"] == 80 * term
    # auto under the official runtime embeds per token for Wan2.2, per sample for Wan2.1
    official = wanir.estimate(["model=wan2.2-t2v-a14b", "runtime=wan-official"])
    assert official.total["tensor_flops"] == on.total["tensor_flops"]
    w21 = ["model=wan2.1-t2v-14b", "workload.steps=2"]
    assert wanir.estimate(w21 + ["runtime=wan-official"]).total["tensor_flops"] == \
        wanir.estimate(w21 + ["runtime=diffusers"]).total["tensor_flops"]
    # TI2V-5B: auto is per token (its pipelines feed a (batch, tokens) timestep)
    ti = ["model=wan2.2-ti2v-5b", "workload.steps=1"]
    assert wanir.estimate(ti).total["tensor_flops"] == \
        wanir.estimate(ti + ["dit.time_embedding_per_token=true"]).total["tensor_flops"] > \
        wanir.estimate(ti + ["dit.time_embedding_per_token=false"]).total["tensor_flops"]


def test_tables_name_each_experts_steps():
    from wanir.backends import report

    est = wanir.estimate(["model=wan2.2-i2v-a14b", "workload=480p"])
    line = "diffusion_core experts: high_noise 15 steps (30 calls), low_noise 25 steps (50 calls)"
    assert report.expert_lines(est) == [line]
    assert line in report.to_markdown(est)
    assert report.expert_lines(wanir.estimate(["model=wan2.2-ti2v-5b", "workload.steps=2"])) == []


def test_official_runtime_attention_kernel_follows_the_model_family():
    """Under runtime=wan-official, Wan2.2 models default to FlashAttention-3 on Hopper (the
    Wan2.2 README's timings used it) and FlashAttention-2 elsewhere; Wan2.1 models to FA2."""
    pytest.importorskip("wanir.runtime")

    def kernel(*ov):
        return load_config(["runtime=wan-official", *ov]).roofline.attention_kernel

    assert kernel("model=wan2.2-t2v-a14b", "hardware=h100-sxm") == "flash3"
    assert kernel("model=wan2.2-ti2v-5b", "hardware=h200") == "flash3"
    assert kernel("model=wan2.2-i2v-a14b", "hardware=a100-80gb") == "flash2"
    assert kernel("model=wan2.1-t2v-14b", "hardware=h100-sxm") == "flash2"


@pytest.mark.slow
def test_parallel_cost_counts_dit_calls_as_the_estimate_does():
    """Multi-device costs report the two-expert stage per DiT call, as the single-device
    estimate: with CFG parallelism each device runs one branch of every step, 40 calls of
    exactly one expert call's FLOPs; with Ulysses all 80 calls."""
    from wanir.backends import parallel

    est = wanir.estimate(["model=wan2.2-t2v-a14b", "workload.steps=6"])
    one = est.stage("diffusion_core")
    high, low = wan22.expert_steps(6, 12.0, 0.875)
    assert one.invocations == 2 * (high + low)
    cfg = parallel.multi_device_cost(est, plan=parallel.make_plan("cfg", 2)).stages["diffusion_core"]
    assert cfg["invocations"] == high + low
    assert cfg["tensor_flops"] == one.per_invocation["tensor_flops"]
    uly = parallel.multi_device_cost(est, plan=parallel.make_plan("ulysses", 4)).stages["diffusion_core"]
    assert uly["invocations"] == 2 * (high + low)
    for r in (cfg, uly):
        assert math.isclose(r["time_s"], r["time_per_invocation_s"] * r["invocations"], rel_tol=1e-12)


@pytest.mark.integration
def test_cli_prints_wan22_tables_and_one_line_errors():
    import json
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "wanir.cli", *args], capture_output=True, text=True, timeout=300)

    r = cli("estimate", "model=wan2.2-ti2v-5b", "workload.mode=i2v", "workload.steps=2")
    assert r.returncode == 0 and "vae_encode" in r.stdout and "diffusion_core" in r.stdout
    r = cli("estimate", "model=wan2.2-t2v-a14b", "workload.steps=4", "--format", "json")
    d = json.loads(r.stdout)
    core = next(s for s in d["stages"] if s["name"] == "diffusion_core")
    assert core["invocations"] == sum(e["calls"] for e in core["experts"]) == 8
    r = cli("estimate", "model=wan2.2-ti2v-5b", "workload.width=1296")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "allowed nearby: 1280 or 1312" in r.stderr
