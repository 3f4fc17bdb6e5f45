"""roofline backend: node times derived by hand, ideal <= calibrated, growth with workload."""
import pytest
import yaml

from wanir import hardware, kernels
from wanir.backends import roofline
from wanir.builder import GraphBuilder
from wanir.estimate import estimate, estimate_graph
from wanir.passes import bytes as bytes_pass
from wanir.passes import flops

from test_hardware import SPEC

# 100 SMs x 1 GHz x 1000 bf16 FLOP/clock/SM = 100 TFLOP/s; 2 x 50 FP32 lanes -> 10 TFLOP/s;
# 1 TB/s DRAM, 1 MiB L2, 5 us per launch; family sm90
HW = hardware.from_mapping(yaml.safe_load(SPEC), origin="test")
KT = yaml.safe_load(open(kernels.PATH))          # the constants, read independently of the model


def _k(section, key, fam="sm90"):
    return KT[section][fam][key]["value"]


def _graph():
    b = GraphBuilder()
    with b.stage("s", invocations=3):
        x = b.input("x", (1024, 1024), "bf16")
        with b.repeat("blocks", 2):
            y = b.linear(x, 1024, bias=False, name="fc")
        b.add(y, y, name="add")
    flops.run(b.graph)
    bytes_pass.run(b.graph)
    return b.graph


def test_node_times_by_hand():
    g = _graph()
    r = roofline.run(g, HW)
    fc, add = g.find("fc")[0].costs, g.find("add")[0].costs
    f = 2 * 1024 ** 3                                   # 2MNK
    by = 3 * 1024 * 1024 * 2                            # x, W, y in bf16 (6 MiB: beyond the 1 MiB L2)
    # GEMM: 1024/128 x 1024/256 = 32 tiles, no tile waste, one wave on 100 SMs: 32/100 busy;
    # K ramp 1024 / (1024 + k_ramp); under the sm90 ceiling
    tm, tn = _k("gemm", "tile_m"), _k("gemm", "tile_n")
    tiles = (1024 // tm) * (1024 // tn)
    eff = _k("gemm", "ceiling") * (tiles / 100) * 1024 / (1024 + _k("gemm", "k_ramp"))
    assert fc["compute_s"] == pytest.approx(f / (100e12 * eff))
    assert fc["memory_s"] == pytest.approx(by / (1e12 * _k("memory", "fraction")))
    assert fc["time_s"] == pytest.approx(max(fc["compute_s"], fc["memory_s"]) + 5e-6)
    assert fc["bound"] == "compute" and fc["intensity"] == pytest.approx(f / by)
    # add: 1024^2 vector FLOPs at the 10 TFLOP/s FP32 peak; reads y once per slot, writes one
    n = 1024 * 1024
    assert add["compute_s"] == pytest.approx(n / 10e12)
    assert add["memory_s"] == pytest.approx(3 * n * 2 / (1e12 * _k("memory", "fraction")))
    assert add["bound"] == "memory"
    assert r["time_s"]["s"] == pytest.approx(2 * fc["time_s"] + add["time_s"])
    assert r["ridge_point"] == pytest.approx(100)


def test_l2_fast_path():
    """An elementwise op whose reads and writes fit the 1 MiB L2 runs at the L2 bandwidth
    (2 TB/s x l2_fraction), not the DRAM's."""
    b = GraphBuilder()
    with b.stage("s"):
        x = b.input("x", (256, 256), "bf16")
        b.add(x, x, name="add")
    flops.run(b.graph)
    bytes_pass.run(b.graph)
    roofline.run(b.graph, HW)
    c = b.graph.find("add")[0].costs
    assert c["memory_s"] == pytest.approx(3 * 256 * 256 * 2 / (2e12 * _k("memory", "l2_fraction")))


def test_stage_is_at_least_its_cpu_issue_time():
    """Tiny ops: the GPU finishes each in ~5 us (its launch gap), the host needs cpu_issue_us
    per op; the stage takes max(GPU sum, issue sum) and says it is issue-bound when the host
    is slower."""
    b = GraphBuilder()
    with b.stage("s"):
        x = b.input("x", (8, 8), "bf16")
        for i in range(10):
            x = b.gelu(x, name=f"g{i}")
    flops.run(b.graph)
    bytes_pass.run(b.graph)
    spec = yaml.safe_load(SPEC)
    spec["launch_overhead_us"]["value"] = 0
    hw = hardware.from_mapping(spec, origin="test")
    r = roofline.run(b.graph, hw)
    issue = 10 * KT["issue"]["sm90"]["cpu_issue_us"]["value"] * 1e-6
    assert r["issue_s"]["s"] == pytest.approx(issue)
    assert r["time_s"]["s"] == pytest.approx(issue) and r["bound"]["s"] == "issue"
    assert r["provenance"]["s"]["assumed_share"] == pytest.approx(1.0)   # the issue cost is assumed


def test_ideal_is_speed_of_light():
    g = _graph()
    roofline.run(g, HW, mode="ideal")
    fc = g.find("fc")[0].costs
    assert fc["time_s"] == pytest.approx(2 * 1024 ** 3 / 100e12)


def test_offload_adds_weight_transfer():
    g = _graph()
    w = {"s": 2 * 1024 * 1024 * 2}
    r = roofline.run(g, HW, offload_model=True, weight_bytes=w)
    assert r["transfer_s"] == pytest.approx(2 * w["s"] / (32e9 * 0.8))


def test_flash3_off_hopper_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no flash3 kernel for sm80 .*available: flash2"):
        roofline.run(_graph(), hardware.load("a100-80gb"), attention_kernel="flash3")


def test_provenance_per_stage_in_json():
    d = estimate(SMALL).to_dict()
    for s in d["stages"]:
        p = s["provenance"]
        assert 0 <= p["assumed_share"] <= 1
        assert set(p["inputs"]) <= {"measured", "reported", "datasheet", "assumed"}
    dit = next(s for s in d["stages"] if s["name"] == "diffusion_core")
    # diffusers: the DiT's attention is PyTorch SDPA, resting on torch-sdpa's sm90 constants and the SFU rate (reported)
    assert "kernels.attention.torch-sdpa.mma_ceiling" in dit["provenance"]["inputs"]["reported"]
    assert "microarch.sfu_exp_per_clk_sm" in dit["provenance"]["inputs"]["reported"]


def test_estimate_graph_without_config_uses_defaults():
    b = GraphBuilder()
    with b.stage("s"):
        b.gelu(b.input("x", (64, 64), "bf16"))
    est = estimate_graph(b.graph)
    assert est.hardware == "h100-sxm" and est.total["time_s"] > 0
    # two 8 KiB tensors (multiples of 512 bytes) in one 2 MiB small-pool segment of PyTorch's allocator
    assert est.total["peak_allocated_bytes"] == 2 * 64 * 64 * 2 and est.total["peak_memory_bytes"] == 2 * 2**20


SMALL = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=17",
         "workload.steps=2", "runtime=diffusers"]


def test_ideal_never_above_calibrated_per_node_and_total():
    cal = estimate(SMALL)
    cal_nodes = {n.id: n.costs["time_s"] for n in cal.graph}
    ideal = estimate(SMALL + ["roofline=ideal"])
    assert ideal.total["time_s"] <= cal.total["time_s"]
    for n in ideal.graph:
        assert n.costs["time_s"] <= cal_nodes[n.id] * (1 + 1e-12)


def test_time_and_memory_grow_with_resolution_and_frames():
    base = estimate(SMALL)
    taller = estimate(SMALL[:1] + ["workload.height=720", "workload.width=1280"] + SMALL[3:])
    longer = estimate(SMALL[:3] + ["workload.frames=33", "workload.steps=2", "runtime=diffusers"])
    for bigger in (taller, longer):
        assert bigger.total["time_s"] > base.total["time_s"]
        assert bigger.total["peak_memory_bytes"] > base.total["peak_memory_bytes"]
        for s in ("diffusion_core", "vae_decode"):
            assert bigger.stage(s).per_invocation["peak_activation_bytes"] > \
                base.stage(s).per_invocation["peak_activation_bytes"]


def test_policies_change_what_they_should():
    base = estimate(SMALL)
    t5 = estimate(SMALL + ["memory.t5_cpu=true"])
    off = estimate(SMALL + ["memory.offload_model=true"])
    fused = estimate(SMALL + ["roofline.fusion=fused"])
    math = estimate(SMALL + ["roofline.attention_kernel=math"])
    te_w = base.stage("text_encoder").per_invocation["weight_bytes"]
    def live(e):
        return e.extra["memory"]["weight_bytes"] + e.extra["memory"]["activation_bytes"]
    assert live(t5) == live(base) - te_w
    assert t5.total["peak_memory_bytes"] < base.total["peak_memory_bytes"]
    assert t5.extra["stages"]["text_encoder"]["device"] == "host-cpu"
    # the allocator's segments plus the diffusers runtime's 0.5 GiB CUDA context
    assert base.total["peak_memory_bytes"] == base.total["peak_reserved_bytes"] + 2**29
    assert live(base) <= base.total["peak_allocated_bytes"] <= base.total["peak_reserved_bytes"]
    assert off.total["peak_memory_bytes"] < base.total["peak_memory_bytes"]
    gpu_w = sum(s.per_invocation["weight_bytes"] for s in base.stages)
    hw = hardware.load("h100-sxm")
    # every stage in and out once, from pageable memory at half the pinned rate (docs/runtimes.md)
    assert off.total["time_s"] - base.total["time_s"] == pytest.approx(
        2 * gpu_w / (hw.host_link_bandwidth * hw.host_link_efficiency * 0.5))
    assert fused.total["bytes"] < base.total["bytes"]
    assert math.total["bytes"] > base.total["bytes"]
    dit = "diffusion_core"
    assert math.stage(dit).per_invocation["peak_activation_bytes"] > base.stage(dit).per_invocation["peak_activation_bytes"]


def test_json_has_no_nulls_for_t2v():
    d = estimate(SMALL).to_dict()
    for s in d["stages"]:
        assert all(v is not None for v in s["per_invocation"].values())
        assert all(v is not None for v in s["total"].values())
    assert all(v is not None for v in d["total"].values())
    assert d["hardware"] == "h100-sxm"


@pytest.mark.slow
def test_does_not_fit_warning():
    est = estimate(["hardware=rtx-4090"])
    assert any("does not fit" in w and "rtx-4090" in w for w in est.warnings)


@pytest.mark.slow
def test_attention_kernel_choice_moves_the_dit(capsys):
    """On an H100 the published SageAttention2 (882 TFLOP/s) beats FA2 (370): the DiT stage
    is faster with sage2; FA3 on an A100 does not exist: one line naming what does."""
    from wanir.cli import main
    fa2 = estimate(SMALL).stage("diffusion_core").per_invocation["time_s"]
    sage = estimate(SMALL + ["roofline.attention_kernel=sage2"]).stage("diffusion_core").per_invocation["time_s"]
    assert sage < fa2
    assert main(["estimate", "hardware=a100-80gb", "roofline.attention_kernel=flash3"] + SMALL) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "flash3" in err and "sm80" in err and "available: flash2" in err


def _two_blocks():
    """A graph whose two linears and two adds have equal shapes: equal timing keys."""
    b = GraphBuilder()
    with b.stage("s", invocations=2):
        x = b.input("x", (512, 1024), "bf16")
        y = b.linear(x, 1024, bias=False, name="fc1")
        y = b.add(y, x, name="add1")
        z = b.linear(y, 1024, bias=False, name="fc2")
        b.add(z, y, name="add2")
    flops.run(b.graph)
    bytes_pass.run(b.graph)
    return b.graph


def test_nodes_with_equal_keys_time_alike_and_the_memo_changes_nothing():
    # invariant: a node's time is a function of what its key covers, so two nodes of equal shape
    # take the same time, and timing again from the memo gives the very same numbers
    g = _two_blocks()
    keys = roofline.node_keys(list(g))
    fc1, fc2 = g.find("fc1")[0], g.find("fc2")[0]
    assert keys.index[fc1.id] == keys.index[fc2.id] and len(keys.unique) < len(g)
    roofline.clear_timers()
    first = roofline.run(g, HW)
    times = {n.id: dict(n.costs) for n in g}
    again = roofline.run(g, HW, keys=keys)           # every record from the memo now
    assert again == first and {n.id: dict(n.costs) for n in g} == times
    assert fc1.costs["time_s"] == fc2.costs["time_s"]


def test_timed_graph_reads_like_an_annotated_copy_and_stays_frozen():
    g = _two_blocks().freeze()
    copy = g.timing_copy()
    ref = roofline.run(copy, HW)
    timed = roofline.TimedGraph(g)
    assert roofline.run(timed, HW) == ref
    timed.freeze()
    assert timed.stage_params("s") == g.stage_params("s") and timed.stage_weight_bytes("s") == g.stage_weight_bytes("s")
    assert [dict(n.costs) for n in timed] == [dict(n.costs) for n in copy]     # made on first use
    with pytest.raises(TypeError):
        next(iter(timed)).costs["time_s"] = 0.0
    with pytest.raises(TypeError):
        timed.meta["hardware"] = "x"
    assert all("time_s" not in n.costs for n in g)      # the counted graph is untouched
    plain = timed.timing_copy()
    next(iter(plain)).costs["time_s"] = 1.0             # a copy for changing is writable
    assert type(plain) is not roofline.TimedGraph
