"""The UMT5-XXL frontend against transformers.UMT5EncoderModel: tensor FLOPs (total, per
block, per attention and feed-forward module) counted by FlopCounterMode on the meta device,
and parameters counted from the real module."""
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from wanir import GraphBuilder  # noqa: E402
from wanir.config import load_config  # noqa: E402
from wanir.frontends import umt5  # noqa: E402
from wanir.passes import flops, verify  # noqa: E402
from wanir.resolve import component  # noqa: E402

pytestmark = pytest.mark.reference

# UMT5-XXL as Wan2.1 ships it (google/umt5-xxl's config).
HPARAMS = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
               relative_attention_num_buckets=32, relative_attention_max_distance=128,
               feed_forward_proj="gated-gelu")
ROOT = "UMT5EncoderModel"


@pytest.fixture(scope="module")
def model():
    cfg = transformers.UMT5Config(**HPARAMS, layer_norm_epsilon=1e-6, tie_word_embeddings=False)
    with torch.device("meta"):
        m = transformers.UMT5EncoderModel(cfg).to(torch.bfloat16)
    return m.eval()


@pytest.fixture(scope="module")
def te_cfg():
    return load_config().text_encoder


def count(model, seq_len, batch):
    """FlopCounterMode's per-module counts {path: flops} of one forward on meta ids."""
    ids = torch.zeros(batch, seq_len, dtype=torch.long, device="meta")
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(input_ids=ids)
    return {k: sum(v.values()) for k, v in fc.get_flop_counts().items()}, fc.get_total_flops()


def lower(te_cfg, seq_len, batch):
    b = GraphBuilder(weight_dtype="bf16")
    with b.stage("text_encoder"):
        out = umt5.build(b, component("text_encoder", te_cfg), seq_len=seq_len, batch=batch, dtype="bf16")
    verify.run(b.graph)
    summary = flops.run(b.graph)["text_encoder"]
    return b.graph, out, summary


def scope_flops(graph, prefix):
    """Tensor FLOPs of one execution of the scope at ``prefix`` (nodes summed once each)."""
    return sum(n.costs["tensor_flops"] for n in graph if n.path.startswith(prefix + "/"))


def node_at(graph, path):
    (node,) = [n for n in graph if n.path == path]
    return node


def test_config_is_the_released_model(te_cfg):
    for k, v in HPARAMS.items():
        assert te_cfg[k] == v, k


def test_attention_runs_through_sdpa_by_default(model):
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("seq_len,batch", [(512, 1), (77, 2)])
def test_total_tensor_flops_equal(model, te_cfg, seq_len, batch):
    _, ref = count(model, seq_len, batch)
    _, out, summary = lower(te_cfg, seq_len, batch)
    assert summary["tensor_flops"] == ref
    assert out.shape == (batch, seq_len, HPARAMS["d_model"])


def test_per_module_flops_equal(model, te_cfg):
    per, _ = count(model, 512, 1)
    g, _, _ = lower(te_cfg, 512, 1)
    blk = "text_encoder/encoder/block"
    ref_blk = f"{ROOT}.encoder.block.0"
    assert scope_flops(g, blk) == per[ref_blk]
    assert scope_flops(g, f"{blk}/layer.0/SelfAttention") == per[f"{ref_blk}.layer.0.SelfAttention"]
    assert scope_flops(g, f"{blk}/layer.1/DenseReluDense") == per[f"{ref_blk}.layer.1.DenseReluDense"]
    for name in ("q", "k", "v", "o"):
        node = node_at(g, f"{blk}/layer.0/SelfAttention/{name}")
        assert node.costs["tensor_flops"] == per[f"{ref_blk}.layer.0.SelfAttention.{name}"]
    for name in ("wi_0", "wi_1", "wo"):
        node = node_at(g, f"{blk}/layer.1/DenseReluDense/{name}")
        assert node.costs["tensor_flops"] == per[f"{ref_blk}.layer.1.DenseReluDense.{name}"]
    # all 24 blocks are the same in the real module, which is what the collapsed repeat assumes
    assert len({per[f"{ROOT}.encoder.block.{i}"] for i in range(HPARAMS["num_layers"])}) == 1


def test_params_equal(model, te_cfg):
    g, _, _ = lower(te_cfg, 512, 1)
    # parameters() yields the tied shared/embed_tokens table once
    assert g.stage_params("text_encoder") == sum(p.numel() for p in model.parameters())
    block = sum(w.type.numel for k, w in g.weights.items() if "/block/" in k)
    assert block == sum(p.numel() for p in model.encoder.block[0].parameters())
    rel = [w for k, w in g.weights.items() if "relative_attention_bias" in k]
    assert len(rel) == 1 and rel[0].copies == HPARAMS["num_layers"]
    ref_rel = model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    assert rel[0].type.shape == tuple(ref_rel.shape)


def test_weight_bytes_at_bf16(model, te_cfg):
    g, _, _ = lower(te_cfg, 77, 1)
    assert g.stage_weight_bytes("text_encoder") == sum(p.numel() * p.element_size() for p in model.parameters())
