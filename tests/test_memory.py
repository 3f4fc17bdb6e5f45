"""memory pass: liveness peaks of small graphs worked out by hand, residency policies."""
from wanir.builder import GraphBuilder
from wanir.passes import memory


def _peak(b, **kw):
    return memory.run(b.graph, **kw)["stages"]["s"]["peak_activation_bytes"]


def test_chain_peak_frees_after_last_use():
    b = GraphBuilder()
    with b.stage("s"):
        x = b.input("x", (10,), "fp32")      # 40 B
        a = b.relu(x)                          # x freed after this
        e = b.exp(a)
        b.add(a, e)                            # a, e, and the sum live together: 3 x 40
    assert _peak(b) == 120


def test_views_alias_their_input():
    b = GraphBuilder()
    with b.stage("s"):
        x = b.input("x", (10,), "fp32")
        r = b.reshape(x, (2, 5))
        b.relu(r)                              # x (40) + relu's output (40); the view costs nothing
    assert _peak(b) == 80


def test_repeated_scope_keeps_invariant_inputs_and_frees_carried_state():
    b = GraphBuilder()
    with b.stage("s"):
        ctx = b.input("ctx", (20,), "fp32")    # 80 B, read by every copy of the block
        h = b.input("h", (10,), "fp32")        # 40 B, the carried hidden state
        with b.repeat("blocks", 4):
            s = b.reduce("sum", ctx, dims=0, keepdim=True)   # 4 B
            y1 = b.add(h, s)                   # h and s die here in a real copy
            y2 = b.relu(y1)
            y3 = b.exp(y2)                     # the block's output (same type as h)
        b.neg(y3)
    # positions: ctx 80, h 40, s 4, y1 40 -> live 164 at y1 (ctx stays live to the end of the
    # blocks; h is freed after y1 as each copy's input is); later 80 + 40 + 40 at most.
    assert _peak(b) == 164


def test_persistent_values_live_across_loop_iterations():
    def build(mark):
        b = GraphBuilder()
        with b.stage("s"):
            x = b.input("x", (2, 5), "fp32")            # 40
            with b.loop("chunks", 3):
                c = b.relu(x)                             # 40, the cache
                w = b.exp(c)                              # 40
                y = b.reduce("sum", w, dims=1)            # 8
            b.neg(y)                                      # 8
        if mark:
            b.graph.meta["persistent"] = {"s": [c]}
        return b
    # unmarked: x 40 + c 40 + w 40 = 120 at w, then c is freed
    assert _peak(build(False)) == 120
    # marked: c stays live, at y: x 40 + c 40 + w 40 + y 8 = 128
    assert _peak(build(True)) == 128


def test_autocast_weight_copy_is_transient_workspace():
    b = GraphBuilder()
    with b.stage("s"), b.weights("fp32"):
        x = b.input("x", (4, 8), "bf16")                  # 64 B
        b.linear(x, 16, bias=False)                       # out 4*16*2 = 128 B, bf16 copy of W 16*8*2 = 256 B
    r = memory.run(b.graph)["stages"]["s"]
    assert r["peak_activation_bytes"] == 64 + 128 + 256
    assert r["weight_bytes"] == 16 * 8 * 4                # resident at the fp32 storage dtype


def test_math_attention_materializes_scores():
    b = GraphBuilder()
    with b.stage("s"):
        q = b.input("q", (1, 2, 8, 4), "bf16")           # 128 B each of q, k, v; o 128 B
        k = b.input("k", (1, 2, 8, 4), "bf16")
        v = b.input("v", (1, 2, 8, 4), "bf16")
        b.sdpa(q, k, v)
    assert _peak(b) == 4 * 128
    assert _peak(b, attention_kernel="math") == 4 * 128 + 2 * (2 * 8 * 8 * 2)


def test_repeat_weights_count_all_copies():
    b = GraphBuilder()
    with b.stage("s"):
        x = b.input("x", (2, 8), "bf16")
        with b.repeat("blocks", 5):
            b.linear(x, 8, bias=False)
    assert memory.run(b.graph)["stages"]["s"]["weight_bytes"] == 5 * 8 * 8 * 2


STAGES = {"text_encoder": {"weight_bytes": 10, "peak_activation_bytes": 1, "on_gpu": True},
          "diffusion_core": {"weight_bytes": 20, "peak_activation_bytes": 5, "on_gpu": True},
          "vae_decode": {"weight_bytes": 1, "peak_activation_bytes": 30, "on_gpu": True}}


def test_residency_policies():
    allres = memory.pipeline_peak(STAGES)
    assert allres["peak_memory_bytes"] == 31 + 30 and allres["peak_stage"] == "vae_decode"
    off = memory.pipeline_peak(STAGES, offload_model=True)
    assert off["peak_memory_bytes"] == max(10 + 1, 20 + 5, 1 + 30)
    t5 = {k: dict(v, on_gpu=(k != "text_encoder")) for k, v in STAGES.items()}
    assert memory.pipeline_peak(t5)["peak_memory_bytes"] == 21 + 30


def test_does_not_fit_message_names_amount_and_stage():
    p = memory.pipeline_peak(STAGES)
    assert memory.fit_message(p, 61, "gpu") is None
    msg = memory.fit_message({**p, "peak_memory_bytes": 3 * 2**30, "weight_bytes": 2**30,
                              "activation_bytes": 2 * 2**30}, 2**30, "tiny-gpu")
    assert "does not fit" in msg and "vae_decode" in msg and "2.0 GiB too much" in msg and "tiny-gpu" in msg
