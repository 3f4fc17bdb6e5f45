"""Pipeline invariants: stage structure, additivity, monotonic growth, large workloads,
and clear errors for workloads the model cannot produce."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wanir
from wanir.config import load_config
from wanir.errors import ConfigError
from wanir.estimate import estimate_config


def est(*ov):
    return wanir.estimate(list(ov))


SMALL = ("workload.height=64", "workload.width=64", "workload.frames=5", "workload.steps=2")


def test_default_is_the_14b_t2v_pipeline():
    e = est()
    d = e.to_dict()
    assert d["model"] == "wan2.1-t2v-14b"
    assert (d["workload"]["width"], d["workload"]["height"], d["workload"]["frames"], d["workload"]["steps"]) == \
        (1280, 720, 81, 50)
    inv = {s["name"]: s["invocations"] for s in d["stages"]}
    assert inv == {"text_encoder": 2, "diffusion_core": 100, "vae_decode": 1}
    for s in d["stages"]:
        for k in ("tensor_flops", "vector_flops", "params", "weight_bytes"):
            assert isinstance(s["per_invocation"][k], int) and s["per_invocation"][k] > 0, (s["name"], k)


@pytest.mark.slow
def test_guidance_off_halves_encoder_and_dit_invocations():
    d = est("workload.guidance=false", "workload.steps=30").to_dict()
    inv = {s["name"]: s["invocations"] for s in d["stages"]}
    assert inv == {"text_encoder": 1, "diffusion_core": 30, "vae_decode": 1}


def test_vae_encode_stage_on_request():
    names = [s.name for s in est(*SMALL, "workload.vae_encode=true").stages]
    assert names == ["text_encoder", "vae_encode", "diffusion_core", "vae_decode"]


def test_stage_totals_sum_to_pipeline_total():
    e = est(*SMALL)
    for k in ("tensor_flops", "vector_flops", "params"):
        assert e.total[k] == sum(s.total[k] for s in e.stages)
    for s in e.stages:
        assert s.total["tensor_flops"] == s.per_invocation["tensor_flops"] * s.invocations
        assert s.total["params"] == s.per_invocation["params"]


def test_stage_flops_equal_sum_over_nodes():
    e = est(*SMALL)
    for s in e.stages:
        nodes = e.nodes(s.name)
        assert sum(n.costs["tensor_flops"] * n.count for n in nodes) == s.per_invocation["tensor_flops"]
        assert sum(n.costs["tensor_flops"] * n.multiplicity for n in nodes) == s.total["tensor_flops"]


@pytest.mark.parametrize("key,lo,hi", [("workload.height", 480, 720), ("workload.width", 832, 1280),
                                       ("workload.frames", 33, 81), ("workload.steps", 10, 50)])
def test_flops_grow_strictly(key, lo, hi):
    base = ("model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=33",
            "workload.steps=10")
    a = est(*base, f"{key}={lo}").total["tensor_flops"]
    b = est(*base, f"{key}={hi}").total["tensor_flops"]
    assert b > a


@pytest.mark.slow
def test_4k_241_frames_counts_without_per_step_copies():
    big = est("workload.height=2160", "workload.width=3840", "workload.frames=241", "workload.steps=50")
    small = est(*SMALL)
    # the graph does not grow with steps, frames or resolution: repeats are counts, not copies
    assert len(big.graph) == len(small.graph)
    t = big.total["tensor_flops"]
    assert isinstance(t, int) and t > 10**18
    # the DiT stage against the 14B's closed form (D = 40·128, text S = 512, patch 1×2×2, 16 channels):
    # latents 61×270×480 -> L = 61·135·240 tokens; per call patch + time + text embedders, 40 blocks of
    # self-attention (8·L·D² + 4·L²·D), cross-attention (4·L·D² + 4·S·D² + 4·L·S·D) and FFN (4·L·D·13824),
    # and proj_out (2·L·D·64)
    D, S, F, L = 5120, 512, 13824, 61 * 135 * 240
    per_call = (2 * L * D * 16 * 4 + 2 * (256 * D + D * D) + 12 * D * D + 2 * S * (4096 * D + D * D)
                + 40 * (8 * L * D * D + 4 * L * L * D + 4 * L * D * D + 4 * S * D * D + 4 * L * S * D + 4 * L * D * F)
                + 2 * L * D * 64)
    dit = big.stage("diffusion_core")
    assert dit.per_invocation["tensor_flops"] == per_call
    assert dit.total["tensor_flops"] == per_call * 50 * 2


@pytest.mark.parametrize("override,key", [("workload.frames=80", "workload.frames"),
                                          ("workload.height=721", "workload.height"),
                                          ("workload.width=1000", "workload.width")])
def test_sizes_the_model_cannot_produce(override, key):
    with pytest.raises(ConfigError, match=key + r"=\d+: .*allowed nearby"):
        est(override)


def test_trained_range_warnings():
    assert any("training range" in w for w in est("model=wan2.1-t2v-1.3b", "workload.height=720",
                                                  "workload.width=1280", "workload.frames=5").warnings)
    assert any("frames" in w for w in est(*SMALL[:2], "workload.frames=121").warnings)
    assert not est(*SMALL).warnings


_cfg_cache = {}


def _cfg():
    if "c" not in _cfg_cache:
        _cfg_cache["c"] = load_config(["model=wan2.1-t2v-1.3b"])
    return _cfg_cache["c"].copy()


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 80), w=st.integers(1, 80), k=st.integers(0, 40), steps=st.integers(1, 60),
       guidance=st.booleans())
def test_random_valid_workloads_keep_invariants(h, w, k, steps, guidance):
    cfg = _cfg()
    cfg.workload.height, cfg.workload.width, cfg.workload.frames = 16 * h, 16 * w, 4 * k + 1
    cfg.workload.steps, cfg.workload.guidance = steps, guidance
    e = estimate_config(cfg)
    assert e.stage("diffusion_core").invocations == steps * (2 if guidance else 1)
    assert e.total["tensor_flops"] == sum(s.total["tensor_flops"] for s in e.stages) > 0
    assert e.to_dict()["workload"]["frames"] == 4 * k + 1


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 4000), w=st.integers(1, 4000), f=st.integers(1, 400))
def test_random_invalid_workloads_get_clear_errors(h, w, f):
    if h % 16 == 0 and w % 16 == 0 and f % 4 == 1:
        return
    cfg = _cfg()
    cfg.workload.height, cfg.workload.width, cfg.workload.frames = h, w, f
    with pytest.raises(ConfigError, match=r"workload\.(height|width|frames)=\d+: "):
        estimate_config(cfg)


@pytest.mark.parametrize("model", ["wan2.1-t2v-14b", "wan2.1-i2v-14b-480p"])
def test_whole_pipeline_graph_verifies(model):
    from wanir.passes import verify

    g = wanir.estimate([f"model={model}", *SMALL[:3]]).graph
    assert g.unchecked == 0                       # every node came through the builder's checks
    assert verify.run(g) == len(g)
