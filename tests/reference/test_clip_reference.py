"""The CLIP ViT-H/14 frontend against transformers.CLIPVisionModel run as Wan2.1's
image-to-video pipeline runs it (output_hidden_states=True, penultimate layer kept):
tensor FLOPs from FlopCounterMode on the meta device and parameters of the real module."""
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from omegaconf import OmegaConf  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from wanir import GraphBuilder  # noqa: E402
from wanir.config import CONFIG_DIR  # noqa: E402
from wanir.frontends import clip  # noqa: E402
from wanir.passes import flops, verify  # noqa: E402
from wanir.resolve import component  # noqa: E402

pytestmark = pytest.mark.reference

# open-clip ViT-H/14's vision tower, as Wan2.1 I2V uses it
HPARAMS = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
               patch_size=14, image_size=224, num_channels=3, hidden_act="gelu")
ROOT = "CLIPVisionModel"


@pytest.fixture(scope="module")
def model():
    cfg = transformers.CLIPVisionConfig(**HPARAMS, layer_norm_eps=1e-5)
    with torch.device("meta"):
        m = transformers.CLIPVisionModel(cfg)
    return m.eval()


@pytest.fixture(scope="module")
def ie_cfg():
    return OmegaConf.load(CONFIG_DIR / "image_encoder" / "clip-vit-h-14.yaml")


def run_real(model, image_size, batch=1):
    px = torch.zeros(batch, 3, image_size, image_size, device="meta")
    kw = {"interpolate_pos_encoding": True} if image_size != HPARAMS["image_size"] else {}
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        out = model(pixel_values=px, output_hidden_states=True, **kw)
    per = {k: sum(v.values()) for k, v in fc.get_flop_counts().items()}
    return fc.get_total_flops(), per, out


def lower(ie_cfg, image_size=None, batch=1):
    b = GraphBuilder(weight_dtype="fp32")
    with b.stage("image_encoder"):
        out = clip.build(b, component("image_encoder", ie_cfg), batch=batch, dtype="fp32", image_size=image_size)
    verify.run(b.graph)
    return b.graph, out, flops.run(b.graph)["image_encoder"]


def scope_flops(graph, prefix):
    return sum(n.costs["tensor_flops"] for n in graph if n.path.startswith(prefix + "/"))


def test_config_is_the_released_model(ie_cfg):
    for k, v in HPARAMS.items():
        assert ie_cfg[k] == v, k
    assert ie_cfg.layer_norm_eps == 1e-5


@pytest.mark.parametrize("image_size,batch", [(224, 1), (336, 2)])
def test_total_tensor_flops_and_output_shape(model, ie_cfg, image_size, batch):
    ref, _, out = run_real(model, image_size, batch)
    g, val, summary = lower(ie_cfg, image_size if image_size != 224 else None, batch)
    assert summary["tensor_flops"] == ref
    assert val.shape == tuple(out.hidden_states[-2].shape)


def test_per_layer_flops_equal(model, ie_cfg):
    _, per, _ = run_real(model, 224)
    g, _, _ = lower(ie_cfg)
    L = HPARAMS["num_hidden_layers"]
    for prefix in ("image_encoder/encoder/layers", f"image_encoder/encoder/layers.{L - 1}"):
        assert scope_flops(g, prefix) == per[f"{ROOT}.encoder.layers.0"]
        assert scope_flops(g, prefix + "/self_attn") == per[f"{ROOT}.encoder.layers.0.self_attn"]
        assert scope_flops(g, prefix + "/mlp") == per[f"{ROOT}.encoder.layers.0.mlp"]
    assert scope_flops(g, "image_encoder/embeddings") == per[f"{ROOT}.embeddings"]
    assert len({per[f"{ROOT}.encoder.layers.{i}"] for i in range(L)}) == 1


def test_params_equal(model, ie_cfg):
    g, _, _ = lower(ie_cfg)
    assert g.stage_params("image_encoder") == sum(p.numel() for p in model.parameters())
    layer = sum(w.type.numel for k, w in g.weights.items() if "/encoder/layers/" in k)
    assert layer == sum(p.numel() for p in model.encoder.layers[0].parameters())
    emb = sum(w.numel for k, w in g.weights.items() if "/embeddings/" in k)
    assert emb == sum(p.numel() for p in model.embeddings.parameters())


def test_params_do_not_depend_on_image_size(ie_cfg):
    assert lower(ie_cfg, 448)[0].stage_params("image_encoder") == lower(ie_cfg)[0].stage_params("image_encoder")


def test_official_pipeline_runs_31_of_32_layers(model, ie_cfg):
    """num_layers_run=31 (the official pipeline's use_31_block): embeddings, pre-norm and the
    first 31 layers of the real tower, run one by one, and nothing after them."""
    px = torch.zeros(1, 3, 224, 224, device="meta")
    vm = model  # transformers 5: the tower is the model itself
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        h = vm.pre_layrnorm(vm.embeddings(px))
        for layer in vm.encoder.layers[:31]:
            h = layer(h, None)
            h = h[0] if isinstance(h, tuple) else h
    cfg = OmegaConf.merge(ie_cfg, {"num_layers_run": 31})
    g, out, summary = lower(cfg)
    assert summary["tensor_flops"] == fc.get_total_flops()
    assert out.shape == tuple(h.shape)
    # the 31 layers that run hold all but one layer's parameters
    layer = sum(p.numel() for p in model.encoder.layers[0].parameters())
    post = sum(p.numel() for p in model.post_layernorm.parameters())
    assert g.stage_params("image_encoder") == sum(p.numel() for p in model.parameters()) - layer - post


@pytest.mark.parametrize("bad", [0, 33, True, "31"])
def test_num_layers_run_is_checked(ie_cfg, bad):
    from wanir.errors import ConfigError

    with pytest.raises(ConfigError, match="image_encoder.num_layers_run"):
        lower(OmegaConf.merge(ie_cfg, {"num_layers_run": bad}))
