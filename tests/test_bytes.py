"""bytes pass: each category's rule derived by hand from tensor shapes and dtypes."""
import pytest

from wanir.builder import GraphBuilder
from wanir.passes import bytes as bytes_pass


def _run(b, **kw):
    bytes_pass.run(b.graph, **kw)
    return {n.name: dict(n.costs) for n in b.graph}


def test_linear_reads_input_and_weights_writes_output():
    b = GraphBuilder(weight_dtype="bf16")
    with b.stage("s"):
        x = b.input("x", (4, 8, 32), "bf16")
        b.linear(x, 64, name="fc")
    c = _run(b)["fc"]
    x_bytes = 4 * 8 * 32 * 2
    w_bytes = (64 * 32 + 64) * 2            # weight + bias, bf16
    out = 4 * 8 * 64 * 2
    assert c["bytes_read"] == x_bytes + w_bytes
    assert c["weight_bytes_read"] == w_bytes
    assert c["bytes_written"] == out
    assert c["launches"] == 1


def test_fp32_weights_under_bf16_compute_add_a_converted_copy():
    b = GraphBuilder()
    with b.stage("s"), b.weights("fp32"):
        x = b.input("x", (16, 128), "bf16")
        b.linear(x, 256, bias=False, name="fc")
    c = _run(b)["fc"]
    n = 256 * 128
    # read fp32 storage (4 B), write the bf16 copy (2 B), read the copy (2 B)
    assert c["bytes_read"] == 16 * 128 * 2 + 4 * n + 2 * n
    assert c["bytes_written"] == 16 * 256 * 2 + 2 * n


def test_conv_rule():
    b = GraphBuilder(weight_dtype="fp32")
    with b.stage("s"):
        x = b.input("x", (1, 4, 3, 10, 10), "fp32")
        b.conv3d(x, 8, 3, padding=1, name="conv")
    c = _run(b)["conv"]
    assert c["bytes_read"] == 4 * 3 * 10 * 10 * 4 + (8 * 4 * 27 + 8) * 4
    assert c["bytes_written"] == 8 * 3 * 10 * 10 * 4


@pytest.mark.parametrize("kernel", ["flash2", "math"])
def test_attention_reads_qkv_once_and_math_materializes_scores(kernel):
    b = GraphBuilder()
    with b.stage("s"):
        q = b.input("q", (2, 4, 100, 64), "bf16")
        k = b.input("k", (2, 4, 50, 64), "bf16")
        v = b.input("v", (2, 4, 50, 32), "bf16")
        b.sdpa(q, k, v, name="attn")
    c = _run(b, attention_kernel=kernel)["attn"]
    qkv = (2 * 4 * 100 * 64 + 2 * 4 * 50 * 64 + 2 * 4 * 50 * 32) * 2
    o = 2 * 4 * 100 * 32 * 2
    s = 2 * 4 * 100 * 50 * 2                 # one score matrix, bf16
    extra = 2 * s if kernel == "math" else 0  # S and P each written once and read once
    assert c["bytes_read"] == qkv + extra
    assert c["bytes_written"] == o + extra


def test_elementwise_broadcast_operand_read_at_its_own_size():
    b = GraphBuilder()
    with b.stage("s"):
        x = b.input("x", (8, 100), "fp32")
        y = b.input("y", (100,), "fp32")
        b.add(x, y, name="add")
    c = _run(b)["add"]
    assert c["bytes_read"] == 800 * 4 + 100 * 4
    assert c["bytes_written"] == 800 * 4


def test_norm_reduction_embedding_and_data_movement():
    b = GraphBuilder(weight_dtype="bf16")
    with b.stage("s"):
        idx = b.input("idx", (3, 7), "int64")
        e = b.embedding(idx, 1000, 16, name="emb")
        n = b.layernorm(e, name="ln")
        b.softmax(n, name="sm")
        r = b.reshape(n, (21, 16), name="view")
        b.pad(r, (1, 1), name="pad")
    c = _run(b)
    # embedding: indices + only the 21 gathered rows of the table
    assert c["emb"]["bytes_read"] == 21 * 8 + 21 * 16 * 2
    assert c["emb"]["bytes_written"] == 21 * 16 * 2
    assert c["ln"]["bytes_read"] == 21 * 16 * 2 + 2 * 16 * 2
    assert c["ln"]["bytes_written"] == 21 * 16 * 2
    assert c["sm"]["bytes_read"] == c["sm"]["bytes_written"] == 21 * 16 * 2
    assert c["view"]["bytes_read"] == c["view"]["bytes_written"] == 0 and c["view"]["launches"] == 0
    assert c["pad"]["bytes_read"] == 21 * 16 * 2 and c["pad"]["bytes_written"] == 21 * 18 * 2


def test_shared_weight_read_once_per_invocation():
    b = GraphBuilder()
    with b.stage("s"):
        x = b.input("x", (4, 32), "bf16")
        y = b.linear(x, 32, bias=False, name="a", weight_key="shared")
        b.linear(y, 32, bias=False, name="b", weight_key="shared")
    c = _run(b)
    assert c["a"]["weight_bytes_read"] == 32 * 32 * 2
    assert c["b"]["weight_bytes_read"] == 0


def test_fused_chain_folds_into_producer():
    b = GraphBuilder()
    with b.stage("s"):
        x = b.input("x", (64, 128), "bf16")
        h = b.linear(x, 256, bias=False, name="fc")
        g = b.gelu(h, name="act")
        b.mul(g, g, name="sq")                     # reads g twice, single consumer node
    eager = _run(b)
    fused = _run(b, fusion="fused")
    act = 64 * 256 * 2
    # fc no longer writes h, gelu does not read it; gelu's output is not written, sq does not read it
    assert fused["fc"]["bytes_written"] == eager["fc"]["bytes_written"] - act
    assert fused["act"]["bytes_read"] == 0 and fused["act"]["bytes_written"] == 0
    assert fused["sq"]["bytes_read"] == 0 and fused["sq"]["bytes_written"] == act
    assert fused["act"]["launches"] == 0 and fused["sq"]["launches"] == 0
    total = lambda c: sum(v["bytes_read"] + v["bytes_written"] for v in c.values())
    # saved: fc writing h, act reading h, act writing g, sq reading g twice
    assert total(eager) - total(fused) == 5 * act


def test_fused_does_not_fold_multi_consumer_values_or_inputs():
    b = GraphBuilder()
    with b.stage("s"):
        x = b.input("x", (64, 128), "bf16")
        a = b.silu(x, name="act")                   # producer is a graph input: never folded
        b.add(a, b.linear(a, 128, bias=False, name="fc"), name="res")   # a has two consumers
    fused = _run(b, fusion="fused")
    n = 64 * 128 * 2
    assert fused["act"]["bytes_read"] == n and fused["act"]["bytes_written"] == n
    # res folds into fc (single consumer), but still reads a
    assert fused["res"]["bytes_read"] == n and fused["fc"]["bytes_written"] == 0


def test_loop_scope_rereads_weights_each_iteration():
    b = GraphBuilder()
    with b.stage("s", invocations=3):
        x = b.input("x", (4, 32), "bf16")
        with b.loop("chunks", 5):
            b.linear(x, 32, bias=False, name="fc")
    per_inv = bytes_pass.run(b.graph)["s"]
    per_exec = 4 * 32 * 2 + 32 * 32 * 2 + 4 * 32 * 2
    assert per_inv["bytes"] == 5 * per_exec


def test_bad_policy_names_key():
    b = GraphBuilder()
    with b.stage("s"):
        b.input("x", (1,), "bf16")
    with pytest.raises(ValueError, match="roofline.fusion"):
        bytes_pass.run(b.graph, fusion="xla")
