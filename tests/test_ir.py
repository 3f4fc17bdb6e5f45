"""The IR: tensor types, shape rules and their errors, scopes and multiplicity."""
import pytest

from wanir import GraphBuilder, TensorType
from wanir.errors import GraphError, ShapeError, UnknownOpError, WanirError
from wanir.ops import OPS, CATEGORIES
from wanir.passes import flops, verify


def test_tensor_type_bytes_and_validation():
    t = TensorType((2, 3, 4), "bf16")
    assert t.numel == 24 and t.nbytes == 48
    assert TensorType((3,), "int4").nbytes == 2          # 12 bits round up to 2 bytes
    assert TensorType((10**6, 10**6, 10**3), "fp32").nbytes == 4 * 10**15   # Python ints, no overflow
    with pytest.raises(WanirError, match="positive"):
        TensorType((2, 0), "bf16")
    with pytest.raises(WanirError, match="unknown dtype 'bf17'"):
        TensorType((2,), "bf17")


def test_every_op_has_a_known_category_and_flop_rule():
    for kind, op in OPS.items():
        assert op.category in CATEGORIES
        assert kind in flops.RULES, kind


def _b():
    b = GraphBuilder()
    return b


def test_linear_shape_and_mismatch_names_scope_op_and_shapes():
    b = _b()
    with b.stage("s"):
        x = b.input("x", (2, 7, 64))
        with b.scope("blocks.3"), b.scope("attn"):
            y = b.linear(x, 32, name="q")
            assert y.shape == (2, 7, 32)
            with pytest.raises(ShapeError) as e:
                b.linear(y, 8, in_features=64, name="k")
    msg = str(e.value)
    assert "s/blocks.3/attn/k" in msg and "'linear'" in msg and "bf16[2,7,32]" in msg


@pytest.mark.parametrize("L,k,s,p,d,expected", [(10, 3, 1, 1, 1, 10), (10, 3, 2, 1, 1, 5), (9, 3, 2, 0, 1, 4),
                                                (16, 3, 1, 2, 2, 16), (5, 1, 1, 0, 1, 5)])
def test_conv_output_size(L, k, s, p, d, expected):
    b = _b()
    x = b.input("x", (1, 4, L, L, L))
    y = b.conv3d(x, 8, k, stride=s, padding=p, dilation=d)
    assert y.shape == (1, 8, expected, expected, expected)


def test_conv_errors():
    b = _b()
    x = b.input("x", (1, 6, 8, 8))
    with pytest.raises(ShapeError, match="groups=4 must divide"):
        b.conv2d(x, 8, 3, groups=4)
    with pytest.raises(ShapeError, match="too small"):
        b.conv2d(x, 8, 11)
    with pytest.raises(ShapeError, match="expects rank 5"):
        b.conv3d(x, 8, 3)


def test_sdpa_shapes_and_errors():
    b = _b()
    q = b.input("q", (2, 8, 100, 64))
    k = b.input("k", (2, 8, 512, 64))
    v = b.input("v", (2, 8, 512, 32))
    assert b.sdpa(q, k, v).shape == (2, 8, 100, 32)
    bad = b.input("bad", (2, 8, 100, 64))
    with pytest.raises(ShapeError, match="k and v lengths differ"):
        b.sdpa(q, k, bad)
    with pytest.raises(ShapeError, match="do not broadcast"):
        b.sdpa(q, k, v, mask=b.input("m", (1, 8, 99, 512)))


def test_broadcasting_binary_and_errors():
    b = _b()
    x = b.input("x", (4, 1, 5))
    y = b.input("y", (3, 1))
    assert b.add(x, y).shape == (4, 3, 5)
    with pytest.raises(ShapeError, match="do not broadcast"):
        b.mul(x, b.input("z", (4, 2, 4)))


def test_data_movement_shapes():
    b = _b()
    x = b.input("x", (2, 3, 4, 6))
    assert b.reshape(x, (6, -1)).shape == (6, 24)
    assert b.permute(x, (0, 2, 3, 1)).shape == (2, 4, 6, 3)
    assert b.transpose(x, 1, 3).shape == (2, 6, 4, 3)
    assert b.slice(x, 3, 1, 5).shape == (2, 3, 4, 4)
    assert b.slice(x, 3, 0, None, 2).shape == (2, 3, 4, 3)
    assert b.pad(x, (1, 1, 2, 0)).shape == (2, 3, 6, 8)
    assert b.concat([x, x], dim=1).shape == (2, 6, 4, 6)
    assert [c.shape for c in b.chunk(x, 3, dim=3)] == [(2, 3, 4, 2)] * 3
    assert b.upsample(x, 2).shape == (2, 3, 8, 12)
    assert b.upsample(b.input("v", (1, 2, 3, 4, 5)), (1, 2, 2)).shape == (1, 2, 3, 8, 10)
    with pytest.raises(ShapeError, match="step must be positive"):
        b.slice(x, 1, step=0)
    with pytest.raises(ShapeError, match="is empty"):
        b.slice(x, 1, 5, 9)
    with pytest.raises(ShapeError, match="cannot reshape"):
        b.reshape(x, (5, -1))
    with pytest.raises(ShapeError, match="not a permutation"):
        b.permute(x, (0, 0, 1, 2))
    with pytest.raises(ShapeError, match="differ outside dim"):
        b.concat([x, b.input("w", (2, 3, 5, 6))], dim=1)


def test_norm_embedding_and_params():
    b = _b()
    x = b.input("x", (2, 10, 64))
    b.layernorm(x, name="ln")
    b.layernorm(x, affine=False, name="ln0")
    b.rmsnorm(x, name="rms")
    b.groupnorm(b.input("c", (1, 32, 4, 4)), 8, name="gn")
    ids = b.input("ids", (2, 10), "int64")
    e = b.embedding(ids, 1000, 64, name="emb")
    assert e.shape == (2, 10, 64)
    g = b.graph
    assert g.stage_params("model") == 128 + 0 + 64 + 64 + 1000 * 64
    with pytest.raises(ShapeError, match="integer dtype"):
        b.embedding(x, 10, 4)
    with pytest.raises(ShapeError, match="num_groups 5 must divide"):
        b.groupnorm(b.input("c2", (1, 32, 4)), 5)


def test_unknown_op_and_attr_errors():
    b = _b()
    x = b.input("x", (2, 4))
    with pytest.raises(UnknownOpError, match="did you mean 'linear'"):
        b.op("lienar", x)
    with pytest.raises(WanirError, match="no attribute 'kernal'"):
        b.op("conv2d", b.input("y", (1, 2, 4, 4)), out_channels=2, kernel=3, kernal=3)
    with pytest.raises(WanirError, match="needs attribute 'out_features'"):
        b.op("linear", x)
    with pytest.raises(WanirError, match="must be an int"):
        b.op("linear", x, out_features="8")


def test_multiplicity_stage_repeat_loop():
    b = _b()
    with b.stage("dit", invocations=100):
        x = b.input("x", (1, 16, 32))
        with b.repeat("blocks", 40):
            with b.loop("chunks", 3):
                y = b.linear(x, 32, name="fc")
    node = b.graph.node(y.producer)
    assert node.count == 40 * 3
    assert node.multiplicity == 100 * 40 * 3
    # 40 distinct copies of the weight; the loop re-runs the same weight
    assert b.graph.stage_params("dit") == 40 * (32 * 32 + 32)
    assert node.params["weight"].key == "dit/blocks/fc.weight"


def test_shared_weight_key_mismatch_is_an_error():
    b = _b()
    x = b.input("x", (2, 8))
    b.linear(x, 4, weight_key="shared")
    with pytest.raises(GraphError, match="shared"):
        b.linear(x, 5, weight_key="shared")


def _mlp_stack(expanded: bool, n=6, dim=48):
    b = GraphBuilder()
    with b.stage("s", invocations=7):
        x = b.input("x", (3, 20, dim))
        if expanded:
            for i in range(n):
                with b.scope(f"blocks.{i}"):
                    h = b.gelu(b.linear(x, 4 * dim, name="fc1"))
                    x2 = b.linear(h, dim, name="fc2")
                    b.add(x, x2)
        else:
            with b.repeat("blocks", n):
                h = b.gelu(b.linear(x, 4 * dim, name="fc1"))
                x2 = b.linear(h, dim, name="fc2")
                b.add(x, x2)
    return b.graph


def test_expanded_and_collapsed_give_identical_totals():
    ge, gc = _mlp_stack(True), _mlp_stack(False)
    assert verify.run(ge) and verify.run(gc)
    assert flops.run(ge) == flops.run(gc)
    assert ge.stage_params("s") == gc.stage_params("s") == 6 * (48 * 192 + 192 + 192 * 48 + 48)
    # hand derivation: per block 2·60·192·48 (fc1) + 2·60·48·192 (fc2)
    assert flops.run(gc)["s"]["tensor_flops"] == 6 * 2 * (2 * 60 * 192 * 48)


def test_verify_catches_tampering():
    b = _b()
    x = b.input("x", (2, 8))
    y = b.linear(x, 4)
    node = b.graph.node(y.producer)
    node.outputs = (TensorType((2, 5), "bf16"),)
    with pytest.raises(GraphError, match="differ from the shape rule"):
        verify.run(b.graph)


def test_flops_pass_rejects_unknown_kind(monkeypatch):
    b = _b()
    x = b.input("x", (2, 8))
    b.linear(x, 4)
    monkeypatch.delitem(flops.RULES, "linear")
    with pytest.raises(UnknownOpError, match="no rule for op 'linear'"):
        flops.run(b.graph)


def test_estimate_verifies_graphs_the_builder_did_not_check():
    import wanir

    b = _b()
    x = b.input("x", (2, 8))
    y = b.linear(x, 4)
    g = b.graph
    assert g.unchecked == 0
    prod = g.node(y.producer)
    # a node added directly (as a graph transform would) whose recorded output is wrong
    g.add_node("gelu", "bad", prod.scope, (y,), (TensorType((2, 5), "bf16"),), {}, {})
    assert g.unchecked == 1
    with pytest.raises(GraphError, match="differ from the shape rule"):
        wanir.estimate_graph(g)


def test_error_messages_are_one_line():
    from wanir.errors import SpecError

    e = SpecError("ops[0].op: unknown op 'a\nb\tc\x01'")
    assert "\n" not in str(e) and "\t" not in str(e) and "\x01" not in str(e)
    assert str(e) == "ops[0].op: unknown op 'a\\nb\\tc\\x01'"


def test_topo_order_is_networkx_lexicographical_order_and_finds_cycles():
    """Graph.topo() works without networkx; its order is networkx's lexicographical topological
    sort (the reference), on a builder graph and on one whose inputs were rewired backwards."""
    nx = pytest.importorskip("networkx")
    g = _mlp_stack(True)
    assert [n.id for n in g.topo()] == list(nx.lexicographical_topological_sort(g.nx))
    b = _b()
    x = b.input("x", (2, 8))
    y = b.linear(x, 8)
    z = b.linear(y, 8)
    w = b.input("w", (2, 8))
    g = b.graph
    g._nx = None
    g.node(y.producer).inputs = (w,)                  # y now reads a node added after it
    want = list(nx.lexicographical_topological_sort(g.nx))
    assert [n.id for n in g.topo()] == want and want.index(w.producer) < want.index(y.producer)
    g.node(y.producer).inputs = (z,)                  # y reads z, which reads y: a cycle
    with pytest.raises(GraphError, match="cycle"):
        g.topo()


def _node_facts(g):
    return [(n.kind, n.name, n.scope.path, dict(n.attrs), n.outputs,
             {k: (w.key, w.type, w.type.dtype.name, w.copies) for k, w in n.params.items()}) for n in g]


def test_a_remembered_signature_builds_the_node_a_fresh_check_builds():
    """An invariant: a graph built with every op signature already remembered (builder
    _SIGNATURES) has the nodes, attributes, types and weights of one built with none."""
    from wanir import builder

    builder._SIGNATURES.clear()
    fresh = _node_facts(_mlp_stack(True))
    assert builder._SIGNATURES                    # filled by that build
    again = _node_facts(_mlp_stack(True))
    assert again == fresh


def test_a_remembered_signature_checks_values_of_another_type_again():
    """True equals 1 and -0.0 equals 0.0 as dictionary keys: neither may pass as the other."""
    b = _b()
    x = b.input("x", (2, 4))
    b.linear(x, 1)
    with pytest.raises(WanirError, match="must be an int"):
        b.linear(x, True)
    b.pad(x, (1, 1), value=0.0)
    y = b.pad(x, (1, 1), value=-0.0)
    assert str(b.graph.node(y.producer).attrs["value"]) == "-0.0"
    b.scale(x, 2.0)
    z = b.scale(x, 2)                             # an int value is stored as the float it means
    assert type(b.graph.node(z.producer).attrs["value"]) is float
    with b.weights("fp32"):                       # same signature, another storage dtype
        w = b.linear(x, 1, name="fp32_linear")
    assert b.graph.node(w.producer).params["weight"].type.dtype.name == "fp32"


def test_a_frozen_graph_takes_no_node():
    b = _b()
    x = b.input("x", (2, 4))
    g = b.graph.freeze()
    with pytest.raises(TypeError, match="frozen"):
        b.relu(x)
    assert len(g) == 1


def test_a_dropped_graph_leaves_no_garbage_cycle():
    """The scope tree links up strongly and down only through its root's table, so a dropped
    graph is freed by reference counting: a collection afterwards finds none of its objects."""
    import gc
    import weakref

    b = GraphBuilder()
    with b.stage("s", invocations=3), b.repeat("blocks", 2), b.loop("chunks", 4), b.scope("inner"):
        b.relu(b.input("x", (2, 3)))
    g = b.graph
    inner = g.node(1).scope
    assert [s.name for s in inner.ancestors()] == ["inner", "chunks", "blocks", "s"]
    assert inner.stage is g.stages["s"] and g.stages["s"].stage is g.stages["s"] and g.root.stage is None
    assert g.stages["s"].parent is g.root and g.root.parent is None
    assert list(g.root.walk()) == [g.root, *reversed(list(inner.ancestors()))]
    assert inner.stage_name == "s" and inner.multiplicity == 3 * 2 * 4 and inner.count_per_invocation == 8
    refs = [weakref.ref(s) for s in g.root.walk()]
    del b, g, inner
    was = gc.isenabled()
    gc.disable()          # nothing but reference counting may free them
    try:
        assert all(r() is None for r in refs)
    finally:
        if was:
            gc.enable()


def test_a_scope_kept_after_its_graph_keeps_its_counts():
    b = GraphBuilder()
    with b.stage("s", invocations=2), b.repeat("blocks", 5):
        b.relu(b.input("x", (2, 3)))
    node = b.graph.node(1)
    del b
    sc = node.scope
    assert (sc.path, sc.stage.name, sc.multiplicity, sc.weight_count) == ("s/blocks", "s", 10, 5)
    assert sc.stage.parent is None and sc.children == {}
    with pytest.raises(WanirError, match="graph is gone"):
        sc.child("more")
