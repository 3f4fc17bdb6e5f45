"""Work a sequence-parallel plan does not divide: the ops every rank runs whole.

Wan2.2's ``sp_dit_forward`` (wan/distributed/sequence_parallel.py, Wan-Video/Wan2.2 42bf4cf)
expands the timestep to one per token and runs the time embedding and the 6-way time
projection on the FULL sequence, under autocast(float32), on every rank before it chunks x,
e and e0. Hand derivation for L tokens and model dim D (time embedder: Linear(256 → D), SiLU,
Linear(D → D); time projection: SiLU, Linear(D → 6D)):

    FLOPs per DiT call = 2·L·256·D + 2·L·D·D + 2·L·D·6D = 2·L·(256·D + 7·D²)

independent of the number of ranks. For Wan2.2 TI2V-5B (D = 3072, Wan2.2-VAE stride 4×16×16,
patch 1×2×2) at 704×1280 and 5 frames: latent frames (5 − 1)/4 + 1 = 2, tokens
L = 2 · (704/32) · (1280/32) = 2 · 22 · 40 = 1760.
"""
import pytest

from wanir.backends.parallel import Plan, shard_graph
from wanir.frontends.pipeline import build_pipeline
from wanir.passes import flops
from wanir.resolve import resolve

D = 3072
L = 2 * (704 // 32) * (1280 // 32)
TIME_FLOPS = 2 * L * (256 * D + 7 * D * D)


@pytest.fixture(scope="module")
def ti2v():
    return build_pipeline(resolve(["model=wan2.2-ti2v-5b", "workload.frames=5", "workload.height=704",
                                   "workload.width=1280"]).build)


def _replicated_time_flops(graph, n):
    dg = shard_graph(graph, Plan(f"u{n}", n, 1, 1, 1, 1), "official")
    flops.run(dg)
    rep = set(dg.meta["parallel"]["replicated"])
    nodes = [x for x in dg if x.id in rep and "condition_embedder/time" in x.path]
    assert nodes, "the time embedding must be replicated on every rank"
    assert all(x.inputs[0].dtype.name == "fp32" for x in nodes if x.kind == "linear"), "autocast(float32)"
    assert dg.meta["parallel"]["seq_len"]["diffusion_core"] == L
    return sum(x.costs["tensor_flops"] * x.scope.count_per_invocation for x in nodes)


@pytest.mark.parametrize("ranks", [2, 4])
def test_wan22_time_embedding_is_replicated_on_every_rank(ti2v, ranks):
    assert _replicated_time_flops(ti2v, ranks) == TIME_FLOPS


def test_replicated_time_is_reported_and_does_not_shrink():
    """The per-device estimate carries the replicated seconds; they are a floor that adding
    devices does not lower (same per-device value on 2 and 4 ranks for the diffusion stage)."""
    from wanir import estimate
    base = ["model=wan2.2-ti2v-5b", "workload.frames=5", "hardware=h100-sxm", "parallel=ulysses"]
    r2 = estimate(base + ["parallel.degree=2"]).parallel
    r4 = estimate(base + ["parallel.degree=4"]).parallel
    d2, d4 = (next(s for s in r["stages"] if s["name"] == "diffusion_core") for r in (r2, r4))
    assert d2["replicated_s"] > 0
    assert d4["replicated_s"] == pytest.approx(d2["replicated_s"], rel=1e-9)
    assert d4["compute_s"] < d2["compute_s"]
    for r in (r2, r4):
        assert 0 < r["replicated"]["time_s"] < r["total"]["time_s"]
        assert r["replicated"]["share"] == pytest.approx(r["replicated"]["time_s"] / r["total"]["time_s"])
    assert r4["replicated"]["share"] > r2["replicated"]["share"]
