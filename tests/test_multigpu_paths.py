"""Multi-GPU paths as the runtimes execute them: the official Ulysses path's permute copies,
RoPE tables for the full sequence on every rank, the official DiT sharding like the diffusers
one, ring attention's fp32 merge, FSDP mixed precision, and the link each card uses."""
import pytest

from wanir import hardware
from wanir.backends import comm
from wanir.backends.parallel import make_plan, shard_graph
from wanir.builder import GraphBuilder
from wanir.frontends import wan_dit
from wanir.resolve import component
from wanir.passes import bytes as bytes_pass
from wanir.passes import flops, verify

DIT = dict(patch_size=[1, 2, 2], num_attention_heads=8, attention_head_dim=32, in_channels=16, out_channels=16,
           text_dim=256, freq_dim=256, ffn_dim=1024, num_layers=3, cross_attn_norm=True,
           qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024)
LATENT = (16, 4, 16, 32)           # 4 * 8 * 16 = 512 tokens
TOKENS = 512
D = 8 * 32


def dit_graph(variant):
    b = GraphBuilder("dit", weight_dtype="fp32" if variant == "official" else "bf16")
    with b.stage("diffusion_core", invocations=4):
        wan_dit.build(b, component("dit", DIT), latent_shape=LATENT, batch=1, text_len=64, compute_dtype="bf16", variant=variant)
    g = b.graph
    g.meta["workload"] = {"guidance": True}
    return g


def _tensor_flops(g):
    flops.run(g)
    return sum(n.costs["tensor_flops"] * n.count for n in g)


@pytest.mark.parametrize("plan", ["ulysses", "ring", "usp"])
def test_official_dit_shards_like_diffusers(plan):
    off, dif = dit_graph("official"), dit_graph("diffusers")
    p = make_plan(plan, 8) if plan != "usp" else make_plan("usp", 8, ulysses=4, ring=2)
    so, sd = shard_graph(off, p, "official"), shard_graph(dif, p)
    verify.run(so)
    # per device, the same tensor FLOPs whatever the runtime
    assert _tensor_flops(so) == _tensor_flops(sd)
    # no op fell back to whole tokens inside the blocks except the unpatchify
    assert all("blocks" not in path for path in so.meta["parallel"]["gathers"])


def test_official_ulysses_copies_around_each_all_to_all():
    p = make_plan("ulysses", 8)
    so, sp = shard_graph(dit_graph("official"), p, "official"), shard_graph(dit_graph("official"), p, "plain")
    a2a = [n for n in so if n.kind == "all_to_all"]
    assert len(a2a) == 4                      # q, k, v in; the output back (one block drawn once)
    copies = [n for n in so if n.kind == "contiguous" and "_permute_" in n.name]
    assert len(copies) == 8                   # a permute + contiguous before and after each
    assert not [n for n in sp if "_permute_" in n.name]
    bytes_pass.run(so)
    # each copy moves the (L/8 · D) bf16 buffer in and out
    for n in copies:
        assert n.costs["bytes_read"] == n.costs["bytes_written"] == 2 * TOKENS // 8 * D


def test_official_rope_table_is_built_for_the_full_sequence_on_every_rank():
    so = shard_graph(dit_graph("official"), make_plan("ulysses", 8), "official")
    cats = [n for n in so if n.kind == "concat" and "/rope_q/" in n.path + "/"]
    assert cats and all(n.outputs[0].numel == TOKENS * 32 for n in cats)     # L × head_dim, not L/8
    rope = [n for n in so if n.kind == "rope"]
    assert rope and all(n.outputs[0].shape[1] == TOKENS // 8 for n in rope)


def test_ring_merges_partial_outputs_in_fp32():
    so = shard_graph(dit_graph("diffusers"), make_plan("ring", 4))
    merge = [n for n in so if "ring_merge" in n.path]
    assert merge and all(n.scope.repeat == 3 or n.scope.parent.repeat == 3 for n in merge)   # ring - 1 merges
    bytes_pass.run(so)
    # per merge of the (1, 8, L/4, 32) partial output E elements: cast to fp32 (2 + 4 bytes),
    # out - block (3 × 4), the rescale by sigmoid(lse) (4 + 4, plus 4 bytes a row), out - d (3 × 4)
    E = 8 * (TOKENS // 4) * 32
    rows = 8 * (TOKENS // 4)
    per_merge = sum(n.costs["bytes_read"] + n.costs["bytes_written"] for n in merge if n.kind != "input")
    per_block_attention = [n for n in merge if n.kind == "sigmoid"]
    assert per_merge == 6 * E + 12 * E + (8 * E + 4 * rows) + 12 * E + len(per_block_attention) * 8 * rows


def test_nvlink_and_pcie_links():
    assert hardware.load("h800").gpu_link_bandwidth == 200e9
    assert hardware.load("a800").gpu_link_bandwidth == 200e9
    assert hardware.load("h100-sxm").gpu_link_bandwidth == 450e9
    for name in ("l40s", "l20", "rtx-4090"):
        hw = hardware.load(name)
        assert hw.gpu_link_bandwidth is None
        t = comm.topology(hw)
        # through host memory: device→host and host→device over the same link, half its rate
        assert t.intra.effective_bandwidth == pytest.approx(hw.host_link_bandwidth * hw.host_link_efficiency / 2)
        assert t.intra.effective_bandwidth < comm.network_link().effective_bandwidth


@pytest.mark.slow
def test_official_fsdp_gathers_bf16_and_keeps_fp32_shards():
    import wanir
    from wanir.backends.parallel import multi_device_cost
    small = ["model=wan2.1-t2v-1.3b", "workload.height=240", "workload.width=416", "workload.frames=17",
             "workload.steps=2", "parallel=fsdp", "parallel.degree=4"]
    est = wanir.estimate(small)
    params = est.stage("diffusion_core").per_invocation["params"]
    cost = multi_device_cost(est, devices=4)
    dit = next(r for r in cost.stages.values() if r["name"] == "diffusion_core")
    assert dit["weight_bytes"] == pytest.approx(4 * params / 4, rel=1e-6)         # fp32 shard, a quarter each
    gathers = [n for n in cost.graph if n.kind == "all_gather" and n.stage == "diffusion_core"]
    total_gathered = sum(n.outputs[0].nbytes * n.scope.weight_count for n in gathers)
    assert total_gathered == pytest.approx(2 * params, rel=0.01)                      # bf16


@pytest.mark.slow
def test_runtime_offload_default_follows_the_plan_unless_set():
    import wanir
    small = ["model=wan2.1-t2v-1.3b", "workload.height=240", "workload.width=416", "workload.frames=17",
             "workload.steps=2"]
    est = wanir.estimate(small)                       # one device: the official code offloads
    assert est.config.memory.offload_model is True and est.extra["transfer_s"] > 0
    # the same config on 4 devices: generate.py turns --offload_model off
    assert wanir.multi_device_cost(est, devices=4, plan="ulysses").transfer_s == 0
    # set by the user: kept on every plan
    forced = wanir.estimate(small + ["memory.offload_model=true"])
    assert wanir.multi_device_cost(forced, devices=4, plan="ulysses").transfer_s > 0
