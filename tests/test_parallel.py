"""Parallel plans as graph transforms: sharded FLOPs, communication nodes, FSDP memory,
rejected plans, speedup bounds."""
import pytest

import wanir
from wanir.backends.parallel import (DeviceGraph, Plan, PlanError, make_plan, multi_device_cost, resolve_plan,
                                     shard_graph)
from wanir.builder import GraphBuilder
from wanir.config import load_config
from wanir.frontends import wan_dit
from wanir.errors import GraphError
from wanir.estimate import count
from wanir.graph import Graph, Weight
from wanir.passes import flops, verify
from wanir.passes.blocks import _weights_under, subtree_weights
from wanir.passes.rewrite import emit_node
from wanir.resolve import component, resolve
from wanir.tensor import TensorType

# a small DiT with the real block structure: 8 heads of 64, 3 blocks
DIT = dict(patch_size=[1, 2, 2], num_attention_heads=8, attention_head_dim=32, in_channels=16, out_channels=16,
           text_dim=256, freq_dim=256, ffn_dim=1024, num_layers=3, cross_attn_norm=True,
           qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024)
LATENT = (16, 4, 16, 32)           # 4 * 8 * 16 = 512 tokens
TOKENS = 4 * 8 * 16
TEXT = 64


def dit_graph(heads=8, latent=LATENT, steps=5):
    b = GraphBuilder("dit")
    with b.stage("text_encoder", invocations=2):
        x = b.input("ids", (1, TEXT, 256))
        with b.repeat("block", 2):
            x = b.linear(x, 256, name="proj")
    with b.stage("diffusion_core", invocations=2 * steps):
        wan_dit.build(b, component("dit", {**DIT, "num_attention_heads": heads}), latent_shape=latent, batch=1, text_len=TEXT,
                      compute_dtype="bf16")
    g = b.graph
    g.meta["workload"] = {"guidance": True}
    return g


def flops_by_path(g):
    flops.run(g)
    out = {}
    for n in g:
        out[n.path] = out.get(n.path, 0) + n.costs["tensor_flops"] * n.count
    return out


SHARDED = ("blocks/attn1/to_q", "blocks/attn1/to_k", "blocks/attn1/to_v", "blocks/attn1/to_out.0",
           "blocks/attn1/sdpa", "blocks/attn2/to_q", "blocks/attn2/sdpa", "blocks/attn2/to_out.0",
           "blocks/ffn/net.0/proj", "blocks/ffn/net.2", "proj_out")


def test_ulysses_8_per_device_flops_of_sharded_ops_are_one_eighth():
    g = dit_graph()
    single = flops_by_path(g)
    dev = shard_graph(g, make_plan("ulysses", 8))
    verify.run(dev)
    per = flops_by_path(dev)
    for suffix in SHARDED:
        path = f"diffusion_core/{suffix}"
        assert single[path] > 0
        assert per[path] * 8 == single[path], path
    # cross-attention keys and values come from the whole text on every device
    for suffix in ("blocks/attn2/to_k", "blocks/attn2/to_v"):
        assert per[f"diffusion_core/{suffix}"] == single[f"diffusion_core/{suffix}"]


def test_ulysses_inserts_all_to_all_around_each_self_attention():
    g = dit_graph()
    dev = shard_graph(g, make_plan("ulysses", 4))
    a2a = [n for n in dev if n.kind == "all_to_all"]
    assert sorted(n.name for n in a2a) == sorted(["ulysses_all_to_all_q", "ulysses_all_to_all_k",
                                                  "ulysses_all_to_all_v", "ulysses_all_to_all_out"])
    assert all(n.scope.path == "diffusion_core/blocks/attn1" for n in a2a)
    # q enters as (B, H, L/4, D) and leaves as (B, H/4, L, D)
    q = next(n for n in a2a if n.name == "ulysses_all_to_all_q")
    assert q.inputs[0].shape == (1, 8, TOKENS // 4, 32)
    assert q.outputs[0].shape == (1, 2, TOKENS, 32)
    # no communication around cross-attention
    assert not [n for n in dev if n.category == "communication" and "attn2" in n.path]


def test_ring_exchanges_degree_minus_one_blocks_and_loops_attention():
    g = dit_graph()
    single = flops_by_path(g)
    dev = shard_graph(g, make_plan("ring", 4))
    verify.run(dev)
    sr = [n for n in dev if n.kind == "send_recv"]
    assert len(sr) == 2 and all(n.attrs["steps"] == 3 for n in sr)
    sd = next(n for n in dev if n.kind == "sdpa" and n.path.endswith("attn1/ring/sdpa"))
    assert sd.scope.repeat == 4 and sd.inputs[1].shape[-2] == TOKENS // 4
    per = flops_by_path(dev)
    assert per["diffusion_core/blocks/attn1/ring/sdpa"] * 4 == single["diffusion_core/blocks/attn1/sdpa"]


def test_usp_combines_both():
    dev = shard_graph(dit_graph(), make_plan("usp", 8, ulysses=2, ring=4))
    verify.run(dev)
    kinds = sorted(n.kind for n in dev if n.category == "communication" and "attn1" in n.path)
    assert kinds == ["all_to_all"] * 4 + ["send_recv"] * 2


def test_tokens_not_divisible_are_padded():
    # 3 * 8 * 16 = 384 tokens over 5 ... use 7 ring devices: ceil(384 / 7) = 55 per device
    g = dit_graph(latent=(16, 3, 16, 32))
    dev = shard_graph(g, make_plan("ring", 7))
    verify.run(dev)
    sd = next(n for n in dev if n.kind == "sdpa" and "attn1" in n.path)
    assert sd.inputs[0].shape[-2] == -(-384 // 7)
    out = [n for n in dev.stage_nodes("diffusion_core") if not dev.consumers(n.id) and n.kind != "input"]
    assert any(n.outputs[0].shape == (1, 16, 3, 16, 32) for n in out)


def test_cfg_halves_invocations_and_gathers_prediction():
    g = dit_graph(steps=5)
    dev = shard_graph(g, make_plan("cfg", 2))
    assert dev.stages["diffusion_core"].repeat == 5
    assert dev.stages["text_encoder"].repeat == 1
    gathers = [n for n in dev if n.name == "cfg_all_gather"]
    assert len(gathers) == 1 and gathers[0].outputs[0].shape[0] == 2


def test_fsdp_gathers_each_block_and_shards_resident_weights():
    g = dit_graph()
    w = g.stage_weight_bytes("diffusion_core")
    resident = []
    for f in (1, 2, 4, 8):
        plan = make_plan("fsdp", f) if f > 1 else Plan()
        dg = DeviceGraph(g, plan)
        resident.append(dg.weight_bytes()["diffusion_core"])
        if f > 1:
            gathers = [n for n in dg.graph if n.name == "fsdp_all_gather" and n.stage == "diffusion_core"]
            block = next(n for n in gathers if n.scope.name == "blocks")
            assert block.multiplicity == g.stages["diffusion_core"].repeat * DIT["num_layers"]
            assert resident[-1] == -(-w // f)
    assert resident[0] == w
    assert resident == sorted(resident, reverse=True) and len(set(resident)) == 4


def test_fsdp_peak_memory_per_device_falls_with_degree():
    g = dit_graph()
    # what the tensors occupy falls (the weights are sharded); what the allocator reserves for this
    # MiB-sized toy graph is a few 2 and 20 MiB segments (passes/allocator.py), so it is not compared
    costs = [multi_device_cost(g, "h100-sxm", f, "fsdp") for f in (1, 2, 4, 8)]
    peaks = [c.memory["peak_allocated_bytes"] for c in costs]
    assert peaks == sorted(peaks, reverse=True) and len(set(peaks)) == 4
    assert all(c.memory["peak_allocated_bytes"] <= c.peak_memory_bytes for c in costs)


def test_ulysses_degree_must_divide_heads():
    g = dit_graph(heads=12)
    with pytest.raises(PlanError, match=r"12 heads.*parallel=ring.*usp"):
        shard_graph(g, make_plan("ulysses", 8))
    shard_graph(g, make_plan("usp", 8, ulysses=4, ring=2))     # 12 % 4 == 0: fine


def test_degree_mismatch_names_the_keys():
    with pytest.raises(PlanError, match=r"parallel.ulysses × parallel.ring.*parallel.degree = 16"):
        resolve_plan({"degree": 16, "ulysses": 2, "ring": 4})
    with pytest.raises(PlanError, match="parallel.cfg=3"):
        resolve_plan({"degree": 3, "cfg": 3})
    with pytest.raises(PlanError, match="guidance"):
        g = dit_graph()
        g.meta["workload"] = {"guidance": False}
        multi_device_cost(g, "h100-sxm", 2, "cfg")


def test_hydra_accepts_plan_names_with_plus():
    p = resolve_plan(load_config(["parallel=fsdp+ulysses", "parallel.degree=8"]).parallel)
    assert (p.degree, p.ulysses, p.fsdp) == (8, 8, 8)
    p = resolve_plan(load_config(["parallel=usp", "parallel.ulysses=2", "parallel.ring=4"]).parallel)
    assert (p.ulysses, p.ring, p.degree) == (2, 4, 8)
    assert resolve_plan(load_config([]).parallel).degree == 1


@pytest.mark.slow
@pytest.mark.parametrize("hw", ["h100-sxm", "l40s", "a100-80gb"])
def test_speedup_never_exceeds_device_count(hw):
    g = dit_graph()
    plans = [("ulysses", 2), ("ulysses", 8), ("ring", 4), ("usp", 8), ("cfg", 2), ("fsdp+ulysses", 8),
             ("dp", 4), ("fsdp", 8), ("ring", 16), ("cfg+usp", 8)]
    for name, n in plans:
        c = multi_device_cost(g, hw, n, name)
        assert c.speedup <= n * (1 + 1e-12), (name, n, c.speedup)
        assert 0 < c.efficiency <= 1 + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("name,n", [("ulysses", 2), ("ulysses", 8), ("ring", 4), ("usp", 8), ("cfg", 2),
                                    ("fsdp+ulysses", 8)])
def test_splitting_the_14b_dit_makes_a_video_faster(name, n):
    """A lower bound to go with the upper one: at 1280x720x81 the DiT's work dwarfs the
    communication, so every plan that splits it must beat one device (data parallel and pure
    FSDP keep each device's work per video whole and are left out)."""
    c = multi_device_cost(wanir.estimate(), "h100-sxm", n, name)
    assert 1 < c.speedup <= n


def test_data_parallel_keeps_latency_and_scales_throughput():
    g = dit_graph()
    one = multi_device_cost(g, "h100-sxm", 1, "single")
    four = multi_device_cost(g, "h100-sxm", 4, "dp")
    assert four.time_s == pytest.approx(one.time_s)
    assert four.videos_per_hour == pytest.approx(4 * one.videos_per_hour)


def test_communication_nodes_carry_link_costs():
    # 16 devices, 8 per node: Ulysses 8 (stride 1) stays in a node, ring 2 (stride 8) crosses nodes
    c = multi_device_cost(dit_graph(), "h100-sxm", 16, make_plan("usp", 16, ulysses=8, ring=2))
    a2a = [n for n in c.graph if n.kind == "all_to_all"]
    sr = [n for n in c.graph if n.kind == "send_recv"]
    assert all(n.costs["tier"] == "intra_node" and n.costs["time_s"] > 0 for n in a2a)
    assert all(n.costs["tier"] == "inter_node" for n in sr)
    q = next(n for n in a2a if n.name.endswith("_q"))
    assert q.costs["comm_bytes"] == q.inputs[0].type.nbytes * 7 // 8
    assert sr[0].costs["comm_bytes"] == sr[0].inputs[0].type.nbytes * 1     # ring - 1 = 1 step


def test_overlap_hides_ring_exchanges():
    g = dit_graph()
    on = multi_device_cost(g, "h100-sxm", 4, make_plan("ring", 4))
    off = multi_device_cost(g, "h100-sxm", 4, make_plan("ring", 4, overlap=False))
    assert on.comm_s < off.comm_s
    assert off.time_s - on.time_s == pytest.approx(off.comm_s - on.comm_s)


@pytest.mark.parametrize("plan", [make_plan("ulysses", 2), make_plan("fsdp+ulysses", 2),
                                  make_plan("ring", 2), make_plan("usp", 4, ulysses=2, ring=2), make_plan("fsdp", 2)])
def test_sharding_a_frozen_graph_equals_sharding_a_plain_copy(plan):
    # invariant: the facts sharding remembers per frozen source graph (blocks, their weights, the
    # attention's tokens and heads) and the nodes it copies with their recorded outputs give the
    # same per-device graph as sharding a writable copy, and that graph is well formed
    frozen = dit_graph()
    frozen.freeze()

    def shape(g):
        return [(n.path, n.kind, n.outputs, tuple(sorted(n.params))) for n in g]

    for _ in range(2):                  # the second time from the remembered facts
        a = shard_graph(frozen, plan)
        verify.run(a)
        b = shard_graph(frozen.timing_copy(), plan)
        assert shape(a) == shape(b) and a.meta["parallel"]["fsdp"] == b.meta["parallel"]["fsdp"]
        assert a.meta["parallel"]["seq_len"] == b.meta["parallel"]["seq_len"]


def test_weights_under_every_scope_in_one_walk_equal_the_per_scope_walk():
    # block_units sizes every candidate scope from one walk of the weighted nodes; each
    # scope's weights must be exactly those subtree_weights finds by walking every node up
    g = wanir.estimate(["model=wan2.2-t2v-a14b", "workload.height=256", "workload.width=256",
                        "workload.frames=9", "workload.steps=2"]).graph
    under = _weights_under(g)
    scopes = list(g.root.walk())
    assert len(scopes) > 100
    for s in scopes:
        assert under.get(id(s), {}) == subtree_weights(g, s), s.path


@pytest.mark.parametrize("plan", [("ulysses", 4), ("ring", 4), ("fsdp", 8), ("cfg", 2), ("usp", 8), ("dp", 4)])
def test_a_sharded_graph_of_a_checked_source_needs_no_verify_and_passes_it(plan):
    # the sharding checks every node as it adds it (shape rule, weight shapes, one weight per
    # key), so its graph records none unchecked and the count skips verify; verify run anyway
    # must agree
    g = wanir.estimate(["model=wan2.1-t2v-1.3b", "workload=480p"]).graph
    assert g.unchecked == 0
    sg = shard_graph(g, make_plan(*plan))
    assert sg.unchecked == 0
    assert verify.run(sg) == len(sg)


def test_a_sharded_graph_of_a_transformed_source_is_verified():
    # 8-bit GEMMs rewrite the DiT (its nodes unchecked): their copies stay unchecked, so the
    # per-device graph's count verifies them
    src = count(resolve(["model=wan2.1-t2v-1.3b", "workload=480p", "precision.dit_compute=fp8"]).build).graph
    assert src.unchecked > 0
    assert shard_graph(src, make_plan("ulysses", 4)).unchecked > 0


def test_emitting_a_node_with_weights_of_the_wrong_shape_is_refused():
    g = Graph()
    stage = g.root.child("s", 1, "stage")
    x = emit_node(g, {}, "input", [], stage, "x", {"shape": (2, 8), "dtype": "bf16"}).output(0)
    w = Weight("lin.weight", TensorType((4, 7), "bf16"))      # in_features is 8
    with pytest.raises(GraphError, match="weights"):
        emit_node(g, {}, "linear", [x], stage, "lin", {"out_features": 4, "bias": False}, {"weight": w},
                  check_params=True)
