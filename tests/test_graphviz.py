"""The Graphviz backend: clusters per stage, repeat counts, collapsed scopes, valid SVG."""
import shutil
import xml.etree.ElementTree as ET

import pytest

import wanir
from wanir.backends import graphviz as gv
from wanir.errors import WanirError

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' not installed")

D, L, F = 64, 256, 256        # model width, tokens, FFN width of the toy DiT


def toy_graph():
    """Three stages: a text encoder ×2, a DiT ×100 (50 steps × 2 CFG) with 40 blocks and
    all-to-all communication, a VAE decoder with a ×4 loop."""
    b = wanir.GraphBuilder("toy")
    with b.stage("text_encoder", invocations=2):
        t = b.input("ids", (1, 16, D))
        with b.repeat("blocks", 4):
            with b.scope("attn"):
                q = b.linear(t, D, name="q")
                o = b.sdpa(q, q, q)
            t = b.add(t, o)
    with b.stage("diffusion_core", invocations=100):
        x = b.input("x", (1, L, D))
        with b.scope("patch_embedding"):
            x = b.linear(x, D, name="proj")
        with b.repeat("blocks", 40):
            with b.scope("attn1"):
                q = b.linear(x, D, name="to_q")
                q = b.op("all_to_all", q, degree=4, scatter_dim=1, gather_dim=2)
                o = b.sdpa(q, q, q)
                o = b.op("all_to_all", o, degree=4, scatter_dim=2, gather_dim=1)
            x = b.add(x, o)
            with b.scope("ffn"):
                h = b.linear(x, F, name="fc1")
                h = b.gelu(h)
                h = b.linear(h, D, name="fc2")
            x = b.add(x, h)
    with b.stage("vae_decode"):
        z = b.input("z", (1, 16, 4, 8, 8))
        with b.loop("chunks", 4):
            z = b.conv3d(z, 16, 3, padding=1, name="conv")
    g = b.graph
    g.meta["workload"] = {"steps": 50, "guidance": True}
    wanir.estimate_graph(g)
    return g


def test_dot_has_stage_clusters_and_counts():
    g = toy_graph()
    dot = gv.to_dot(g, depth=2)
    for st in ("text_encoder", "diffusion_core", "vae_decode"):
        assert f"subgraph cluster_{st} " in dot
    assert "blocks × 40" in dot and "blocks × 4" in dot
    assert "chunks × 4" in dot
    assert "× 100 = 50 steps × 2 CFG branches" in dot
    assert "× 2 (prompt + negative prompt)" in dot
    assert "legend" in dot


def test_collapsed_scope_sums_flops_by_hand():
    g = toy_graph()
    lay = gv._Layout(g, ["diffusion_core"], depth=2)
    ffn = [u for u in lay.units.values() if u.kind == "scope" and u.scope.name == "ffn"]
    assert len(ffn) == 1
    # fc1: 2·L·D·F + bias L·F; gelu 5 per element; fc2: 2·L·F·D + bias L·D; ×40 blocks ×100 calls
    per_call = (2 * L * D * F + L * F) + 5 * L * F + (2 * L * F * D + L * D)
    assert ffn[0].flops == per_call * 40 * 100
    # every drawn unit together holds every op of the stage exactly once
    drawn = sorted(n.id for u in lay.units.values() for n in u.nodes)
    assert drawn == sorted(n.id for n in g.stage_nodes("diffusion_core"))


def test_depth_controls_what_is_drawn():
    g = toy_graph()
    d0 = gv.to_dot(g, stage="diffusion_core", depth=0)
    d1 = gv.to_dot(g, stage="diffusion_core", depth=1)
    d3 = gv.to_dot(g, stage="diffusion_core", depth=3)
    assert "to_q" not in d0 and "to_q" not in d1          # inside collapsed scopes
    assert "<b>to_q</b>" in d3 and "<b>fc1</b>" in d3       # a block expanded fully
    assert "cluster_text_encoder" not in d1                 # --stage draws one stage


def test_communication_ops_drawn_even_when_collapsed():
    g = toy_graph()
    dot = gv.to_dot(g, stage="diffusion_core", depth=1)
    assert dot.count("shape=hexagon") == 2
    assert "<b>all_to_all</b>" in dot and "<b>all_to_all_1</b>" in dot
    assert gv.BOUND_COLORS["communication"] in dot


def test_colors_follow_annotated_bound_and_time():
    g = toy_graph()
    for n in g:
        if n.category != "input":
            n.costs["time_s"] = 1e-3
            n.costs["bound"] = "compute" if n.category in ("matmul", "attention", "conv") else "memory"
    dot = gv.to_dot(g, stage="text_encoder", depth=3, color="bound")
    assert gv.BOUND_COLORS["compute"] in dot and gv.BOUND_COLORS["memory"] in dot
    assert gv.BOUND_COLORS["unknown"] not in dot.split("legend")[0]
    # time share: 4 text-encoder nodes (q, sdpa, add per block ×4 blocks ×2 calls) share equally
    dot_t = gv.to_dot(g, stage="text_encoder", depth=3, color="time")
    assert "33.3% time" in dot_t


def test_edges_carry_shapes():
    g = toy_graph()
    dot = gv.to_dot(g, stage="diffusion_core", depth=3)
    assert f'label="1×{L}×{F}"' in dot          # fc1 -> gelu


def test_bad_arguments():
    g = toy_graph()
    with pytest.raises(WanirError, match="stages: text_encoder"):
        gv.to_dot(g, stage="nope")
    with pytest.raises(WanirError, match="allowed"):
        gv.to_dot(g, color="rainbow")
    with pytest.raises(WanirError, match="unknown format"):
        gv.render(g, "x.jpg")


@needs_dot
def test_svg_is_valid_xml(tmp_path):
    g = toy_graph()
    p = gv.render(g, tmp_path / "toy.svg", depth=2)
    root = ET.parse(p).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "diffusion_core" in texts and "blocks × 40" in texts


@needs_dot
@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_binary_formats(tmp_path, fmt, magic):
    p = gv.render(toy_graph(), tmp_path / f"toy.{fmt}", depth=1)
    assert p.read_bytes()[:4] == magic


@needs_dot
def test_pipeline_diagram_cli(tmp_path):
    """The real 1.3B pipeline: every stage cluster, the DiT's block count from its config."""
    from wanir.cli import main
    from wanir.config import load_config

    cfg = load_config(["model=wan2.1-t2v-1.3b"])
    out = tmp_path / "p.dot"
    assert main(["render", "model=wan2.1-t2v-1.3b", "workload=480p", "-o", str(out)]) == 0
    dot = out.read_text()
    for st in ("text_encoder", "diffusion_core", "vae_decode"):
        assert f"cluster_{st} " in dot
    assert f"blocks × {cfg.dit.num_layers}" in dot
    svg = tmp_path / "dit.svg"
    assert main(["render", "model=wan2.1-t2v-1.3b", "workload=480p", "--stage", "diffusion_core",
                 "--depth", "2", "-o", str(svg)]) == 0
    ET.parse(svg)
