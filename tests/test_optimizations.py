"""Optimizations as graph transforms (docs/optimizations.md): distillation presets, step
caching, block-sparse self-attention. Every count is checked against a closed form written
out here from the DiT's per-call FLOPs (docs/lowering.md), not against wanir's output."""
import pytest

from wanir.errors import ConfigError
from wanir.estimate import estimate

# Wan2.1 T2V-1.3B at 128×128×9: latent 3×16×16, L = 3·8·8 = 192 tokens, as diffusers runs it
# (bf16 weights and residual stream; the official runtime has the same FLOPs, other bytes)
SMALL = ["runtime=diffusers", "model=wan2.1-t2v-1.3b", "workload.height=128", "workload.width=128", "workload.frames=9",
         "workload.steps=10"]
L, D, F, S, LAYERS, HEADS, HD = 192, 1536, 8960, 512, 30, 12, 128
C_IN, PATCH, C_OUT = 16, 4, 16


def outside_blocks_flops():
    """Tensor FLOPs of one DiT call outside the blocks (patch, time, time_proj, text, proj_out)."""
    return (2 * L * D * C_IN * PATCH + 2 * (256 * D + D * D) + 12 * D * D + 2 * S * (4096 * D + D * D)
            + 2 * L * D * C_OUT * PATCH)


def block_flops():
    """Tensor FLOPs of one block of one call: attn1, attn2, ffn."""
    return (8 * L * D * D + 4 * L * L * D) + (4 * L * D * D + 4 * S * D * D + 4 * L * S * D) + 4 * L * D * F


SELF_ATTN = 4 * L * L * D       # one block's self-attention sdpa, per call (4·B·H·L²·hd, H·hd = D)


def dit(est):
    return est.stage("diffusion_core")


def test_closed_form_matches_the_dense_graph():
    est = estimate(SMALL)
    assert dit(est).total["tensor_flops"] == 20 * (outside_blocks_flops() + LAYERS * block_flops())


# ------------------------------------------------------------------ distillation

def test_four_step_cfg_free_run_is_four_hundredths_of_the_default_dit():
    base = estimate([])                    # T2V-14B, 720p, 50 steps with guidance = 100 calls
    fast = estimate(["distill=4step"])     # 4 calls, no unconditional branch
    assert 100 * dit(fast).total["tensor_flops"] == 4 * dit(base).total["tensor_flops"]
    assert 100 * dit(fast).total["vector_flops"] == 4 * dit(base).total["vector_flops"]
    assert fast.stage("text_encoder").invocations == 1 and base.stage("text_encoder").invocations == 2
    assert fast.stage("vae_decode").total == base.stage("vae_decode").total
    # the same networks: weights and parameters unchanged
    assert fast.total["params"] == base.total["params"]


def test_distillation_makes_the_vae_and_text_encoder_matter():
    base, fast = estimate([]), estimate(["distill=4step"])

    def share(e):
        return (e.stage("vae_decode").total["time_s"] + e.stage("text_encoder").total["time_s"]) / e.total["time_s"]
    assert share(fast) > 10 * share(base)


def test_cfg_distillation_keeps_the_steps():
    est = estimate(SMALL + ["distill=cfg"])
    assert dit(est).invocations == 10
    assert dit(est).total["tensor_flops"] == 10 * (outside_blocks_flops() + LAYERS * block_flops())


# ------------------------------------------------------------------ step caching

@pytest.mark.parametrize("method", ["teacache", "magcache", "easycache"])
def test_cached_calls_skip_the_blocks(method):
    # skip 0.5 of 10 steps: per branch 5 full calls, 5 reused; 2 branches
    est = estimate(SMALL + [f"cache.method={method}", "cache.skip=0.5"])
    assert dit(est).invocations == 2
    assert dit(est).total["tensor_flops"] == 20 * outside_blocks_flops() + 10 * LAYERS * block_flops()


def test_fbcache_runs_the_first_block_in_every_call():
    est = estimate(SMALL + ["cache.method=fbcache", "cache.skip=0.5"])
    want = 20 * (outside_blocks_flops() + block_flops()) + 10 * (LAYERS - 1) * block_flops()
    assert dit(est).total["tensor_flops"] == want


def test_teacache_check_cost_is_the_modulated_input_l1():
    base = estimate(SMALL + ["cache.method=teacache", "cache.skip=0"])    # every call full
    dense = estimate(SMALL)
    # per call: sub, abs, mean, abs, mean on the (1, 6·D) timestep projection + one div
    check = 5 * 6 * D + 1
    # plus per full call the residual store (sub on (1, L, D))
    store = L * D
    assert dit(base).total["vector_flops"] - dit(dense).total["vector_flops"] == 20 * (check + store)


def test_reused_calls_floor_and_first_call_full():
    from fractions import Fraction

    from wanir.passes.step_cache import reused_calls
    assert reused_calls(10, Fraction(1, 2)) == 5
    assert reused_calls(10, Fraction(99, 100)) == 9       # floor(9.9), the first call always runs
    assert reused_calls(50, Fraction(7, 16)) == 21        # floor(21.875)
    assert reused_calls(1, Fraction(1, 2)) == 0
    assert reused_calls(10, Fraction(1)) == 9            # skip 1: every call but the first


def test_caching_keeps_weights_and_adds_the_cached_residual():
    dense = estimate(SMALL)
    est = estimate(SMALL + ["cache.method=teacache", "cache.skip=0.5"])
    assert est.total["params"] == dense.total["params"]
    assert dit(est).per_invocation["weight_bytes"] == dit(dense).per_invocation["weight_bytes"]
    residual = L * D * 2           # (1, L, D) bf16
    # own residual and the other guidance branch's are live across calls
    assert dit(est).per_invocation["peak_activation_bytes"] >= dit(dense).per_invocation["peak_activation_bytes"] \
        + residual


def test_threshold_maps_through_the_table():
    """The per-method table (magcache, on Wan2.1): a published row, the midpoint of two rows
    (linear), and a threshold outside the rows refused. TeaCache's per-model tables:
    tests/test_step_cache_tables.py."""
    from wanir.passes.optimize_options import THRESHOLD_TABLE, optimization_options
    t, skip = THRESHOLD_TABLE["magcache"][-1]
    o = optimization_options(cache_method="magcache", cache_threshold=t)
    assert abs(float(o.cache_skip) - skip) < 1e-4
    (t0, s0), (t1, s1) = THRESHOLD_TABLE["magcache"][:2]
    o = optimization_options(cache_method="magcache", cache_threshold=(t0 + t1) / 2)
    assert abs(float(o.cache_skip) - (s0 + s1) / 2) < 1e-4
    with pytest.raises(ConfigError, match="cache.threshold"):
        optimization_options(cache_method="magcache", cache_threshold=0.5)


# ------------------------------------------------------------------ sparse attention

def _self_attention_nodes(est):
    return [n for n in est.nodes("diffusion_core") if n.kind == "sdpa" and n.attrs.get("density")
            and n.attrs.get("pattern") != "dense-step"]


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["radial", "sliding-tile", "svg"])
def test_density_quarter_is_a_quarter_of_dense_attention_plus_overhead(pattern):
    dense = estimate(SMALL)
    est = estimate(SMALL + ["attention.density=0.25", f"attention.pattern={pattern}"])
    nodes = _self_attention_nodes(est)
    assert len(nodes) == 1 and nodes[0].count == LAYERS
    assert nodes[0].costs["tensor_flops"] * 4 == SELF_ATTN
    overhead = 0
    if pattern == "svg":          # dense, spatial and temporal attention of 64 sampled queries
        overhead = 3 * 4 * HEADS * 64 * L * HD
    want = dit(dense).total["tensor_flops"] - 20 * LAYERS * (SELF_ATTN - SELF_ATTN // 4 - overhead)
    assert dit(est).total["tensor_flops"] == want


@pytest.mark.slow
def test_sliding_tile_overhead_is_four_copies_per_attention():
    dense = estimate(SMALL)
    est = estimate(SMALL + ["attention.density=0.25", "attention.pattern=sliding-tile"])
    # tile q, k, v and untile o: each reads and writes (1, H, L, hd) bf16
    copies = 4 * 2 * L * D * 2
    assert dit(est).total["bytes"] - dit(dense).total["bytes"] == 20 * LAYERS * copies


def test_dense_steps_add_back_the_skipped_tiles():
    est = estimate(SMALL + ["attention.density=0.25", "attention.pattern=radial", "attention.dense_steps=3"])
    # 10 steps per branch, 2 branches: 20 calls at density 1/4, 3 per branch dense
    want = 20 * (outside_blocks_flops() + LAYERS * (block_flops() - SELF_ATTN + SELF_ATTN // 4)) \
        + 2 * 3 * LAYERS * (SELF_ATTN - SELF_ATTN // 4)
    assert dit(est).total["tensor_flops"] == want


def test_cache_and_sparse_compose():
    est = estimate(SMALL + ["cache.method=teacache", "cache.skip=0.5", "attention.density=0.5",
                            "attention.pattern=radial"])
    blk = block_flops() - SELF_ATTN + SELF_ATTN // 2
    assert dit(est).total["tensor_flops"] == 20 * outside_blocks_flops() + 10 * LAYERS * blk


def test_cross_attention_stays_dense():
    est = estimate(SMALL + ["attention.density=0.25", "attention.pattern=radial"])
    cross = [n for n in est.nodes("diffusion_core") if n.kind == "sdpa" and n.inputs[1].shape[-2] == S]
    assert cross and all(not n.attrs.get("density") for n in cross)


# ------------------------------------------------------------------ every model and plan

@pytest.mark.slow
@pytest.mark.parametrize("model", ["model=wan2.1-i2v-14b-480p", "model=wan2.1-t2v-14b"])
def test_every_wan21_model(model):
    over = [model, "workload.height=128", "workload.width=128", "workload.frames=9", "workload.steps=4"]
    dense = estimate(over)
    est = estimate(over + ["cache.method=fbcache", "cache.skip=0.5", "attention.density=0.5",
                           "attention.pattern=svg", "attention.dense_steps=1"])
    assert est.total["params"] == dense.total["params"]
    assert 0 < dit(est).total["tensor_flops"] < dit(dense).total["tensor_flops"]


@pytest.mark.slow
@pytest.mark.parametrize("plan,devices", [("ulysses", 2), ("ring", 2), ("cfg", 2), ("fsdp", 2), ("usp", 4),
                                          ("cfg+usp", 8), ("dp", 2)])
def test_every_parallel_plan(plan, devices):
    from wanir.backends.parallel import multi_device_cost
    est = estimate(SMALL + ["cache.method=teacache", "cache.skip=0.5", "attention.density=0.25",
                            "attention.pattern=sliding-tile", "attention.dense_steps=2"])
    cost = multi_device_cost(est, "h100-sxm", devices, plan)
    one = multi_device_cost(est, "h100-sxm", 1, "single")
    assert cost.time_s > 0 and cost.time_s <= one.time_s * 1.5
    inv = {s["name"]: s["invocations"] for s in cost.to_dict()["stages"]}
    assert inv["diffusion_core"] == (1 if "cfg" in plan else 2)
    sp = {"ulysses": 2, "ring": 2, "usp": 4, "cfg+usp": 4}.get(plan, 1)
    if sp > 1:   # the block-sparse attention runs on this device's share of the tokens or heads
        sd = [n for n in cost.graph if n.kind == "sdpa" and n.attrs.get("pattern") == "sliding-tile"]
        # 5 full calls per branch: the blocks' loop runs 5 times per invocation
        assert sd and sum(n.costs["tensor_flops"] * n.count for n in sd) * sp * 4 == 5 * SELF_ATTN * LAYERS


def test_render_draws_transformed_nodes_differently(tmp_path):
    from wanir.backends.graphviz import to_digraph

    def render_dot(graph, **kw):
        return to_digraph(graph, max_ops=None, **kw).source
    est = estimate(SMALL + ["cache.method=teacache", "cache.skip=0.5", "attention.density=0.25",
                            "attention.pattern=svg"])
    src = render_dot(est.graph, stage="diffusion_core", depth=6)
    assert "octagon" in src and "sparse 1/4" in src
    plain = render_dot(estimate(SMALL).graph, stage="diffusion_core", depth=6)
    assert "octagon" not in plain


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("over,key", [
    (["cache.method=tea"], "cache.method"),
    (["cache.method=teacache"], "cache.method"),
    (["cache.method=teacache", "cache.skip=1.5"], "cache.skip"),
    (["cache.method=teacache", "cache.skip=-0.1"], "cache.skip"),
    (["cache.method=teacache", "cache.skip=nan"], "cache.skip"),
    (["cache.method=teacache", "cache.skip=true"], "cache.skip"),
    (["cache.method=teacache", "cache.skip=0.5", "cache.threshold=0.1"], "cache.skip"),
    (["cache.skip=0.5"], "cache.skip"),
    (["cache.method=teacache", "cache.threshold=inf"], "cache.threshold"),
    (["cache.method=teacache", "cache.skip=0.5", "cache.per_branch=2"], "cache.per_branch"),
    (["attention.density=0"], "attention.density"),
    (["attention.density=1.5"], "attention.density"),
    (["attention.density=0.5"], "attention.pattern"),
    (["attention.density=0.5", "attention.pattern=star"], "attention.pattern"),
    (["attention.pattern=radial"], "attention.pattern"),
    (["attention.density=0.5", "attention.pattern=radial", "attention.dense_steps=-1"], "attention.dense_steps"),
    (["attention.density=0.5", "attention.pattern=radial", "attention.dense_steps=11"], "attention.dense_steps"),
    (["attention.dense_steps=2"], "attention.dense_steps"),
    (["cache.method=teacache", "cache.skip=0.9", "attention.density=0.5", "attention.pattern=radial",
      "attention.dense_steps=5"], "attention.dense_steps"),
])
def test_bad_values_are_one_line_errors_naming_the_key(over, key):
    with pytest.raises(ConfigError) as e:
        estimate(SMALL + over)
    msg = str(e.value)
    assert key in msg and "\n" not in msg


# ------------------------------------------------------------------ low-precision GEMMs

def _block_linear_params():
    """Weights of the GEMMs inside one block: attn1 q, k, v, o; attn2 q, k, v, o; ffn up, down."""
    return 8 * D * D + 2 * D * F


def test_fp8_gemms_keep_flops_and_halve_the_block_gemm_weights():
    bf16 = estimate(SMALL)
    fp8 = estimate(SMALL + ["precision.dit_compute=fp8"])
    assert dit(fp8).total["tensor_flops"] == dit(bf16).total["tensor_flops"]
    # every block GEMM weight goes from 2 bytes to 1; biases and kept modules stay bf16
    saved = LAYERS * _block_linear_params()
    assert dit(bf16).per_invocation["weight_bytes"] - dit(fp8).per_invocation["weight_bytes"] == saved
    assert fp8.total["params"] == bf16.total["params"]


def test_per_token_quantize_nodes_read_each_gemm_input_once():
    bf16 = estimate(SMALL)
    fp8 = estimate(SMALL + ["precision.dit_compute=fp8"])
    static = estimate(SMALL + ["precision.dit_compute=fp8", "precision.act_scales=per-tensor"])
    # distinct GEMM inputs per block: norm1 output (q, k, v), attn1 output, norm2 output,
    # the text context (k, v), attn2 output, norm3 output: 5·L·D + S·D, and the FFN hidden L·F;
    # the per-token amax reads each once (1 vector FLOP per element)
    per_block = 5 * L * D + S * D + L * F
    assert dit(fp8).total["vector_flops"] - dit(bf16).total["vector_flops"] == 20 * LAYERS * per_block
    assert dit(static).total["vector_flops"] == dit(bf16).total["vector_flops"]
    q = [n for n in fp8.nodes("diffusion_core") if n.kind == "cast" and n.name.endswith("_quantize")]
    assert len(q) == 7 and all(n.outputs[0].dtype.name == "fp8_e4m3" for n in q)
    # a quantize node reads bf16 and writes fp8: 3 bytes per element
    assert all(n.costs["bytes_read"] + n.costs["bytes_written"] == 3 * n.outputs[0].numel for n in q)


def test_fp8_gemms_run_faster_on_hopper():
    def gemm_time(e):
        return sum(n.costs["time_s"] * n.count for n in e.nodes("diffusion_core") if n.kind == "linear")
    over = ["model=wan2.1-t2v-1.3b", "workload=480p", "workload.steps=2"]
    assert gemm_time(estimate(over + ["precision.dit_compute=fp8"])) < gemm_time(estimate(over))


def test_gpus_without_fp8_refuse_it():
    with pytest.raises(ConfigError, match="a100-80gb.*fp8"):
        estimate(SMALL + ["precision.dit_compute=fp8", "hardware=a100-80gb"])


@pytest.mark.slow
def test_keep_list_decides_which_gemms_stay_bf16():
    bf16 = estimate(SMALL)
    kept = estimate(SMALL + ["precision.dit_compute=fp8", "precision.keep_fp32=[blocks,condition_embedder,proj_out]"])
    assert dit(kept).per_invocation["weight_bytes"] == dit(bf16).per_invocation["weight_bytes"]
    # the list replaces the default: with only the blocks kept, time_proj (6·D²), the text
    # embedder (4096·D + D²) and proj_out (D·64) run in fp8 (the time embedder is fp32: kept)
    blocks = estimate(SMALL + ["precision.dit_compute=fp8", "precision.keep_fp32=[blocks]"])
    assert dit(bf16).per_invocation["weight_bytes"] - dit(blocks).per_invocation["weight_bytes"] == \
        6 * D * D + 4096 * D + D * D + D * 64
    ffn_only = estimate(SMALL + ["precision.dit_compute=fp8", "precision.keep_fp32=[attn1,attn2,condition_embedder]"])
    assert dit(bf16).per_invocation["weight_bytes"] - dit(ffn_only).per_invocation["weight_bytes"] == \
        LAYERS * 2 * D * F + D * 64     # the FFNs, and proj_out (not in this keep list)


def test_fp8_storage_only_halves_weights_and_adds_the_upcast():
    bf16 = estimate(SMALL)
    st = estimate(SMALL + ["precision.dit_weights=fp8"])
    assert dit(st).per_invocation["weight_bytes"] * 2 == dit(bf16).per_invocation["weight_bytes"]
    assert dit(st).total["tensor_flops"] == dit(bf16).total["tensor_flops"]
    # each GEMM/conv weight is read at 1 byte and its bf16 copy written and read: 1 + 2 + 2 = 5 vs 2
    assert dit(st).total["bytes"] > dit(bf16).total["bytes"]


@pytest.mark.parametrize("over,key", [
    (["precision.dit_compute=fp9"], "precision.dit_compute"),
    (["precision.dit_compute=fp8", "precision.act_scales=per-row"], "precision.act_scales"),
    (["precision.dit_compute=fp8", "precision.keep_fp32=3"], "precision.keep_fp32"),
])
def test_bad_precision_values(over, key):
    with pytest.raises(ConfigError) as e:
        estimate(SMALL + over)
    assert key in str(e.value)


# ------------------------------------------------------------------ compiled fusion

def _gate_chain():
    """x → linear → ·gate → + residual → cast to fp32: a gated residual as the DiT writes it."""
    from wanir.builder import GraphBuilder
    b = GraphBuilder(weight_dtype="bf16")
    with b.stage("s"):
        x = b.input("x", (64, 32), "bf16")
        g = b.input("gate", (64, 32), "bf16")
        y = b.linear(x, 32, bias=False, name="proj")
        y = b.mul(y, g, name="gate_mul")
        y = b.add(y, x, name="residual")
        b.cast(y, "fp32", name="to_fp32")
    return b.graph


@pytest.mark.parametrize("fusion", ["eager", "fused", "compiled"])
def test_compiled_fuses_pointwise_chains_but_not_into_gemms(fusion):
    from wanir.passes import bytes as bytes_pass
    g = _gate_chain()
    tot = bytes_pass.run(g, fusion=fusion)["s"]["bytes"]
    n, k = 64 * 32, 32 * 32
    bf, f32 = 2 * n, 4 * n
    linear = bf + 2 * k + bf                       # x, weight in; y out
    mul = bf + bf + bf                             # y, gate in; out
    add = bf + bf + bf                             # mul out, x in; out
    cast = bf + f32                                # add out in; fp32 out
    eager = linear + mul + add + cast
    if fusion == "eager":
        assert tot == eager
    elif fusion == "fused":      # mul folds into the GEMM, add into mul, cast into add: 3 buffers gone
        assert tot == eager - 2 * (3 * bf)
    else:                        # the GEMM writes y; mul → add → cast is one kernel: 2 buffers gone
        assert tot == eager - 2 * (2 * bf)
        launches = {m.name: m.costs["launches"] for m in g}
        assert launches["proj"] == 1 and launches["gate_mul"] == 1
        assert launches["residual"] == 0 and launches["to_fp32"] == 0


def test_compiled_sits_between_eager_and_fused_on_the_dit():
    t = {f: dit(estimate(SMALL + [f"roofline.fusion={f}"])).total["bytes"] for f in ("eager", "fused", "compiled")}
    assert t["fused"] < t["compiled"] < t["eager"]


# ------------------------------------------------------------------ sizing across optimizations

def test_allow_list_is_checked():
    from wanir.size_optimizations import parse_allow, subsets
    assert parse_allow("fp8, teacache") == ("fp8", "teacache")
    for bad in ("fp9", "fp8,fp8", "", "a,b,c,d,e,f,g"):
        with pytest.raises(ConfigError, match="--allow"):
            parse_allow(bad)
    # one per kind: fp8 and int8 never together; 2 × 2 × 3 subsets of fp8, int8, teacache, compiled
    s = subsets(("fp8", "int8", "teacache", "compiled"))
    assert () in s and ("fp8", "teacache", "compiled") in s and not any("fp8" in c and "int8" in c for c in s)
    assert len(s) == 3 * 2 * 2


@pytest.mark.slow
def test_size_ranks_every_allowed_combination():
    from wanir.size_optimizations import size_with_optimizations
    res = size_with_optimizations(SMALL, allow=("fp8", "teacache"), latency_s=1e6,
                                  hardware=["h100-sxm", "a100-80gb"], devices=(1,), fsdp_options=(False,))
    got = {(c.hardware, c.optimizations) for c in res["candidates"]}
    # the A100 has no FP8 tensor peak: its FP8 combinations are skipped, and said so
    assert got == {("h100-sxm", ""), ("h100-sxm", "fp8"), ("h100-sxm", "teacache"), ("h100-sxm", "fp8+teacache"),
                   ("a100-80gb", ""), ("a100-80gb", "teacache")}
    assert any(s.startswith("a100-80gb: fp8") for s in res["skipped"])
    t = {(c.hardware, c.optimizations): c.time_s for c in res["candidates"]}
    assert t[("h100-sxm", "teacache")] < t[("h100-sxm", "")]
    assert all(c.to_dict()["optimizations"] == c.optimizations for c in res["candidates"])


def test_block_sparse_attention_is_timed_on_the_tiles_it_visits():
    def attn(e):
        return [n for n in e.nodes("diffusion_core") if n.kind == "sdpa" and n.inputs[1].shape[-2] != S][0]
    over = ["model=wan2.1-t2v-1.3b", "workload=480p", "workload.steps=2"]
    dense = attn(estimate(over)).costs["compute_s"]
    sparse = attn(estimate(over + ["attention.density=0.25", "attention.pattern=radial"])).costs["compute_s"]
    # each query tile runs a quarter of the key tiles: a quarter of the time, up to the per-CTA ramp
    assert 0.25 * dense <= sparse < 0.3 * dense


# ------------------------------------------------------------------ 8-bit attention

@pytest.mark.parametrize("kernel,per_block", [
    # self (Lq = Lk = L) and cross (Lq = L, Lk = S) attention per block, bytes added minus saved:
    # sage: q, k quantized (read 2, write 1 per element), V transposed (copy: 2 + 2) then
    # quantized (3); the kernel reads 1 byte instead of 2 per q, k, v element:
    #   3·Lq·D + 3·Lk·D + 4·Lk·D + 3·Lk·D − (Lq·D + 2·Lk·D) = 2·Lq·D + 8·Lk·D
    ("sage2", (2 * L * D + 8 * L * D) + (2 * L * D + 8 * S * D)),
    # FA3 FP8: three casts, no transpose: 2·Lq·D + 4·Lk·D
    ("flash3-fp8", (2 * L * D + 4 * L * D) + (2 * L * D + 4 * S * D)),
])
def test_8bit_attention_quantize_nodes_carry_their_bytes(kernel, per_block):
    base = estimate(SMALL)
    est = estimate(SMALL + [f"roofline.attention_kernel={kernel}"])
    assert dit(est).total["tensor_flops"] == dit(base).total["tensor_flops"]
    assert dit(est).total["bytes"] - dit(base).total["bytes"] == 20 * LAYERS * per_block
    for n in est.nodes("diffusion_core"):
        if n.kind == "sdpa":
            assert n.inputs[0].dtype.nbytes(1) == 1 and n.outputs[0].dtype.name == "bf16"


def test_8bit_attention_is_faster_where_the_kernel_exists():
    over = ["model=wan2.1-t2v-1.3b", "workload=480p", "workload.steps=2"]
    t = {k: dit(estimate(over + [f"roofline.attention_kernel={k}"])).total["time_s"]
         for k in ("flash2", "sage2", "flash3-fp8")}
    assert t["sage2"] < t["flash2"] and t["flash3-fp8"] < t["flash2"]
    t4090 = {k: dit(estimate(over + ["hardware=rtx-4090", f"roofline.attention_kernel={k}"])).total["time_s"]
             for k in ("flash2", "sage2", "sage2-fp16acc")}
    assert t4090["sage2-fp16acc"] < t4090["sage2"] < t4090["flash2"]
    with pytest.raises(ConfigError, match="no sage2-fp16acc kernel for sm90.*available"):
        estimate(over + ["roofline.attention_kernel=sage2-fp16acc"])


# ------------------------------------------------------------------ VAE tiling

def test_vae_tiles_decode_every_tile_and_their_overlaps():
    from wanir.frontends.vae_tiling import tiles
    # 128×128 video = 16×16 latent; 64 px tiles every 48 px = 8 latent every 6: starts 0, 6, 12
    assert tiles(16, 8, 6) == [8, 8, 4]
    base = ["model=wan2.1-t2v-1.3b", "workload.frames=9", "workload.steps=1"]

    def decode(hpx, wpx, extra=()):
        e = estimate(base + [f"workload.height={hpx}", f"workload.width={wpx}", *extra])
        return e.stage("vae_decode")
    tiled = decode(128, 128, ["vae.tile=64", "vae.tile_stride=48"])
    # 2×2 tiles of 8×8, 2 of 8×4, 2 of 4×8, one of 4×4 (latent), each a whole decode
    want = (4 * decode(64, 64).total["tensor_flops"] + 2 * decode(64, 32).total["tensor_flops"]
            + 2 * decode(32, 64).total["tensor_flops"] + decode(32, 32).total["tensor_flops"])
    assert tiled.total["tensor_flops"] == want
    whole = decode(128, 128)
    assert tiled.total["tensor_flops"] > whole.total["tensor_flops"]       # the overlaps decode twice
    assert tiled.per_invocation["weight_bytes"] == whole.per_invocation["weight_bytes"]
    assert decode(64, 64).per_invocation["peak_activation_bytes"] <= tiled.per_invocation["peak_activation_bytes"] \
        < whole.per_invocation["peak_activation_bytes"]


def test_one_tile_covering_the_latent_is_no_tiling():
    a = estimate(SMALL + ["vae.tile=256"]).stage("vae_decode").total
    b = estimate(SMALL).stage("vae_decode").total
    assert a == b


@pytest.mark.parametrize("over,key", [(["vae.tile=100"], "vae.tile"), (["vae.tile=0"], "vae.tile"),
                                      (["vae.tile=64", "vae.tile_stride=72"], "vae.tile_stride"),
                                      (["vae.tile_stride=64"], "vae.tile_stride")])
def test_bad_tile_values(over, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        estimate(SMALL + over)


def test_reports_name_the_optimizations():
    from wanir.backends.report import to_markdown
    est = estimate(SMALL + ["distill=cfg", "cache.method=teacache", "cache.skip=0.5", "precision.dit_compute=fp8"])
    got = est.to_dict()["optimizations"]
    assert any("FP8 GEMMs" in x for x in got) and any("teacache" in x for x in got) and "distill=cfg" in got
    assert "optimizations:" in to_markdown(est)
    assert estimate(SMALL).to_dict()["optimizations"] == []


# ------------------------------------------------------------------ every command

def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "wanir.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.integration
def test_sweep_render_and_report_take_the_knobs(tmp_path):
    import csv
    small = [a for a in SMALL if not a.startswith("workload.steps")] + ["workload.steps=4"]
    r = _cli("sweep", *small, "cache.method=teacache", "cache.skip=0,0.5", "attention.density=0.25",
             "attention.pattern=radial", "-o", str(tmp_path / "sw"))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "sw" / "results.csv")))
    assert len(rows) == 2
    t = sorted(float(x["total.time_s"]) for x in rows)
    assert t[0] < t[1]
    r = _cli("render", *small, "cache.method=fbcache", "cache.skip=0.5", "--stage", "diffusion_core", "--depth", "3",
             "-o", str(tmp_path / "d.dot"))
    assert r.returncode == 0, r.stderr
    assert "octagon" in (tmp_path / "d.dot").read_text()
    r = _cli("report", *small, "precision.dit_compute=fp8", "vae.tile=64", "-o", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    assert "FP8 GEMMs" in (tmp_path / "r.html").read_text()
    r = _cli("estimate", *small, "cache.method=teacache")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cache.method" in r.stderr


def test_int8_gemms_and_fp8_storage_where_fp8_compute_is_refused():
    bf16 = estimate(SMALL + ["hardware=a100-80gb"])
    i8 = estimate(SMALL + ["hardware=a100-80gb", "precision.dit_compute=int8"])   # Ampere has INT8 MMA
    assert dit(bf16).per_invocation["weight_bytes"] - dit(i8).per_invocation["weight_bytes"] == \
        LAYERS * _block_linear_params()
    assert any(n.kind == "cast" and n.outputs[0].dtype.name == "int8" for n in i8.nodes("diffusion_core"))
    # FP8 storage needs no FP8 instructions: the weights are upcast to bf16 before every GEMM
    st = estimate(SMALL + ["hardware=a100-80gb", "precision.dit_weights=fp8"])
    assert dit(st).per_invocation["weight_bytes"] * 2 == dit(bf16).per_invocation["weight_bytes"]


@pytest.mark.parametrize("knobs", [["cache.method=teacache", "cache.skip=0.5"], ["cache.method=fbcache", "cache.skip=0.5"]])
def test_official_runtime_takes_the_same_schedule(knobs):
    # the official code's DiT has the same tensor FLOPs as diffusers' (other dtypes and bytes)
    official = [a for a in SMALL if not a.startswith("runtime=")] + ["runtime=wan-official"]
    est = estimate(official + knobs)
    first = knobs[0].endswith("fbcache")
    want = 20 * (outside_blocks_flops() + (block_flops() if first else 0)) \
        + 10 * (LAYERS - (1 if first else 0)) * block_flops()
    assert dit(est).total["tensor_flops"] == want


# ------------------------------------------------------------------ patch-parallel VAE

def _vae_conv_and_attention(graph):
    conv = sum(n.costs["tensor_flops"] * n.count for n in graph if n.stage == "vae_decode" and n.category == "conv")
    att = sum(n.costs["tensor_flops"] * n.count for n in graph if n.stage == "vae_decode" and n.kind == "sdpa")
    return conv, att


def test_patch_parallel_vae_decodes_one_band_per_device_with_halo_exchange():
    from wanir.backends.parallel import make_plan, multi_device_cost
    est = estimate(SMALL)                                   # 16 latent rows
    cost = multi_device_cost(est, "h100-sxm", 2, make_plan("ulysses", 2, vae="patch"))
    g = cost.graph
    conv, att = _vae_conv_and_attention(g)
    # each device decodes 8 of the 16 latent rows: the decode of a 64-px-high video
    band = estimate([a for a in SMALL if not a.startswith("workload.height")] + ["workload.height=64"])
    bconv, batt = _vae_conv_and_attention(band.graph)
    assert conv == bconv
    assert att == 2 * batt              # the band's queries attend to both bands' keys and values
    # one halo exchange before every convolution whose kernel spans rows, carrying (k − 1) rows
    convs = [n for n in g if n.stage == "vae_decode" and n.category == "conv" and n.params["weight"].type.shape[-2] > 1]
    halos = [n for n in g if n.stage == "vae_decode" and n.kind == "send_recv"]
    assert len(halos) == len(convs) > 0
    for n in halos:
        assert n.inputs[0].shape[-2] == 2 and n.costs["comm_bytes"] == n.inputs[0].type.nbytes   # 3-row kernels
    rec = {s["name"]: s for s in cost.to_dict()["stages"]}
    assert rec["vae_decode"]["devices"] == 2
    single = multi_device_cost(est, "h100-sxm", 2, make_plan("ulysses", 2))
    assert {s["name"]: s for s in single.to_dict()["stages"]}["vae_decode"]["devices"] == 1
    assert rec["vae_decode"]["time_s"] < {s["name"]: s for s in single.to_dict()["stages"]}["vae_decode"]["time_s"]


@pytest.mark.slow
def test_patch_parallel_vae_refusals():
    from wanir.backends.parallel import PlanError, make_plan, multi_device_cost
    with pytest.raises(PlanError, match="parallel.vae"):
        make_plan("ulysses", 2, vae="rows")
    est = estimate(SMALL + ["vae.tile=64"])
    with pytest.raises(PlanError, match="vae.tile"):
        multi_device_cost(est, "h100-sxm", 2, make_plan("ulysses", 2, vae="patch"))


# ------------------------------------------------------------------ two-expert stages

def _two_experts(calls=(3, 1)):
    """A Wan2.2-A14B-like DiT stage: scopes high_noise and low_noise, each a ``calls`` loop
    around one DiT forward, the stage run once per guidance branch (built here from the
    1.3B DiT at the small size)."""
    from wanir.builder import GraphBuilder
    from wanir.config import load_config
    from wanir.frontends import wan_dit
    from wanir.resolve import component
    cfg = load_config(SMALL)
    b = GraphBuilder(weight_dtype="bf16")
    with b.stage("diffusion_core", 2):
        for name, c in zip(("high_noise", "low_noise"), calls):
            with b.scope(name), b.loop("calls", c):
                wan_dit.build(b, component("dit", cfg.dit), latent_shape=(16, 3, 16, 16), batch=1, text_len=S,
                              compute_dtype="bf16")
    return b.graph


def _dit_tensor_flops(graph):
    from wanir.passes import flops
    return flops.run(graph)["diffusion_core"]["tensor_flops"] * graph.stages["diffusion_core"].repeat


def test_two_expert_stage_caches_each_expert():
    from wanir.passes.optimize_options import optimization_options
    from wanir.passes.step_cache import transform
    g = _two_experts()
    assert _dit_tensor_flops(g) == 2 * 4 * (outside_blocks_flops() + LAYERS * block_flops())
    opts = optimization_options(cache_method="teacache", cache_skip=0.5)
    t = transform(g, opts, steps=4, branches=2)
    # high noise: 3 calls, ⌊1.5⌋ = 1 reused, 2 full; low noise: 1 call, the first always full
    assert _dit_tensor_flops(t) == 2 * (4 * outside_blocks_flops() + (2 + 1) * LAYERS * block_flops())
    fb = transform(g, optimization_options(cache_method="fbcache", cache_skip=0.5), steps=4, branches=2)
    assert _dit_tensor_flops(fb) == 2 * (4 * (outside_blocks_flops() + block_flops())
                                         + (2 + 1) * (LAYERS - 1) * block_flops())
    from wanir.estimate import annotate_counts
    for graph in (t, fb):           # well formed, and every pass runs on it
        annotate_counts(graph, check=True)


def test_two_expert_stage_dense_steps_go_to_the_first_expert():
    from wanir.passes.optimize_options import optimization_options
    from wanir.passes.step_cache import transform
    opts = optimization_options(attention_density=0.25, attention_pattern="radial", attention_dense_steps=2)
    t = transform(_two_experts(), opts, steps=4, branches=2)
    sparse_block = block_flops() - SELF_ATTN + SELF_ATTN // 4
    want = 2 * (4 * (outside_blocks_flops() + LAYERS * sparse_block) + 2 * LAYERS * (SELF_ATTN - SELF_ATTN // 4))
    assert _dit_tensor_flops(t) == want
    assert t.meta["optimizations"]["experts"]["high_noise"]["dense_steps"] == 2
    assert t.meta["optimizations"]["experts"]["low_noise"]["dense_steps"] == 0


@pytest.mark.slow
def test_size_optimizations_ranks_like_plain_size():
    # partial prices: priced hardware by $/video first, the unpriced after it by GPU-hours per
    # video, rows that do not fit in memory kept apart, whatever the optimization subset
    from wanir.backends.sizing import size
    from wanir.size_optimizations import size_with_optimizations
    big = ["runtime=diffusers", "model=wan2.1-t2v-14b", "workload.height=128", "workload.width=128",
           "workload.frames=9", "workload.steps=10"]
    kw = dict(latency_s=1e9, hardware=["rtx-4090", "l40s"], devices=(1, 2), fsdp_options=(False, True),
              prices={"l40s": 1.0})
    res = size_with_optimizations(big, allow=("teacache",), **kw)
    cands, unfit = res["candidates"], res["unfit"]
    assert not res["priced"] and all(c.fits for c in cands) and all(not c.fits for c in unfit)
    # 14B bf16 weights (28 GB) fit on no 24 GiB RTX 4090 alone: such rows are in "unfit", of both subsets
    assert {c.optimizations for c in unfit if c.hardware == "rtx-4090" and c.devices == 1} == {"", "teacache"}
    assert res["evaluated"] == len(cands) + len(unfit) and res["dropped"] == len(unfit)
    flags = [c.priced for c in cands]
    assert flags == sorted(flags, reverse=True) and True in flags and False in flags
    priced = [c.cost_per_video for c in cands if c.priced]
    unpriced = [c.gpu_hours_per_video for c in cands if not c.priced]
    assert priced == sorted(priced) and unpriced == sorted(unpriced)
    # each subset alone is what plain `wanir size` gives for its overrides
    # (0.2: the fastest threshold TeaCache publishes for T2V-14B, ~55 -> ~27 min, reference/caching.md)
    plain = size(big + ["cache.method=teacache", "cache.threshold=0.2"], **kw)
    mine = [(c.hardware, c.plan.label, c.time_s) for c in cands if c.optimizations == "teacache"]
    assert mine == [(c.hardware, c.plan.label, c.time_s) for c in plain["candidates"]]
