"""The DiT frontend against diffusers' WanTransformer3DModel itself.

The real module is built on the meta device from the same configs wanir ships
(wanir/configs/dit/*.yaml; image-to-video = the 14B config with 36 input channels, a
1280-wide image embedder and 5120-wide added K/V projections) and counted under
FlopCounterMode inside sdpa_kernel(SDPBackend.MATH). wanir's per-invocation tensor_flops
must EQUAL the counted total, parameter counts must equal sum(numel), and per-module
counts (one block, its attentions and FFN, the condition embedder and its parts, the patch
embedding, proj_out) must equal FlopCounterMode's per-module counts.

Cost: a full-depth 14B forward on meta takes a few seconds, so each full-depth model is
built once (module-scoped fixtures) and counted at 832x480x81 and 1280x720x81, where the
per-module checks run as well. Every shape (those two, a small one, odd ones) is also counted
on a shallow model and compared with wanir built at the same depth. That is sufficient because every block is the same module with the same
input shapes, so a forward's FLOPs are ``rest + num_layers · block``: the full-depth tests
pin ``rest`` and ``block`` at two shapes, the shallow tests pin them at every other shape.
"""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
from omegaconf import OmegaConf  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from wanir import GraphBuilder, reference  # noqa: E402
from wanir.frontends import wan_dit  # noqa: E402
from wanir.passes import flops, verify  # noqa: E402
from wanir.resolve import component  # noqa: E402

pytestmark = pytest.mark.reference

CONFIG_DIR = Path(wan_dit.__file__).resolve().parents[1] / "wanir" / "configs" / "dit"
DIFFUSERS_KEYS = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
                  "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps",
                  "image_dim", "added_kv_proj_dim")
STAGE = "diffusion_core"


def load_cfg(name: str) -> dict:
    if name == "i2v-14b":
        cfg = load_cfg("t2v-14b")
        cfg.update(in_channels=36, image_dim=1280, added_kv_proj_dim=5120)
        return cfg
    c = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"wan2.1-{name}.yaml"))
    return {k: c[k] for k in DIFFUSERS_KEYS}


def video_latent(cfg, frames, height, width):
    """Latent (C, T, H, W) of a frames x height x width video (VAE: 4x time, 8x space)."""
    return (cfg["in_channels"], (frames - 1) // 4 + 1, height // 8, width // 8)


def make_model(cfg, num_layers=None):
    return reference.build_dit(component("dit", dict(cfg, family="wan_dit")), num_layers=num_layers)


@torch.no_grad()
def count(model, cfg, latent, batch=1, text_len=512, image_len=257):
    """FlopCounterMode of one forward: (total, {module path without the class prefix: flops})."""
    with torch.device("meta"):
        kw = {}
        if cfg["image_dim"] is not None:
            kw["encoder_hidden_states_image"] = torch.empty(batch, image_len, cfg["image_dim"])
        args = dict(hidden_states=torch.empty(batch, *latent), timestep=torch.full((batch,), 999.0),
                    encoder_hidden_states=torch.empty(batch, text_len, cfg["text_dim"]))
    fc = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), fc:
        model(**args, **kw, return_dict=False)
    per = {k.split(".", 1)[1]: sum(v.values()) for k, v in fc.get_flop_counts().items() if "." in k}
    return fc.get_total_flops(), per


def build_wanir(cfg, latent, batch=1, text_len=512, image_len=257, num_layers=None):
    cfg = dict(cfg) if num_layers is None else dict(cfg, num_layers=num_layers)
    b = GraphBuilder(weight_dtype="bf16")
    with b.stage(STAGE):
        wan_dit.build(b, component("dit", cfg), latent_shape=latent, batch=batch, text_len=text_len, compute_dtype="bf16",
                      image_len=image_len if cfg["image_dim"] is not None else None)
    verify.run(b.graph)
    total = flops.run(b.graph)[STAGE]["tensor_flops"]
    return b.graph, total


def scope_flops(graph, path):
    """tensor FLOPs of one execution of everything under ``diffusion_core/<path>`` (one copy of
    a repeated scope)."""
    p = f"{STAGE}/{path}"
    return sum(n.costs["tensor_flops"] for n in graph if n.path == p or n.path.startswith(p + "/"))


def scope_params(graph, path):
    """Parameters of one copy of ``diffusion_core/<path>``."""
    p = f"{STAGE}/{path}"
    ws = {w.key: w for n in graph if n.path == p or n.path.startswith(p + "/") for w in n.params.values()}
    return sum(w.type.numel for w in ws.values())


# module path in diffusers -> scope path in wanir
MODULES = {
    "patch_embedding": "patch_embedding",
    "condition_embedder": "condition_embedder",
    "condition_embedder.time_embedder": "condition_embedder/time_embedder",
    "condition_embedder.time_proj": "condition_embedder/time_proj",
    "condition_embedder.text_embedder": "condition_embedder/text_embedder",
    "blocks.0": "blocks",
    "blocks.0.attn1": "blocks/attn1",
    "blocks.0.attn2": "blocks/attn2",
    "blocks.0.ffn": "blocks/ffn",
    "proj_out": "proj_out",
}
I2V_MODULES = {"condition_embedder.image_embedder": "condition_embedder/image_embedder"}


@pytest.fixture(scope="module", params=["t2v-1.3b", "t2v-14b", "i2v-14b"])
def full(request):
    """(name, cfg, full-depth diffusers model)."""
    cfg = load_cfg(request.param)
    return request.param, cfg, make_model(cfg)


@pytest.mark.parametrize("video,latent_thw", [((81, 480, 832), (21, 60, 104)), ((81, 720, 1280), (21, 90, 160))],
                         ids=["832x480x81", "1280x720x81"])
def test_full_depth_total_modules_and_params(full, video, latent_thw):
    name, cfg, model = full
    latent = video_latent(cfg, *video)
    assert latent[1:] == latent_thw
    ref_total, ref = count(model, cfg, latent)
    graph, total = build_wanir(cfg, latent)
    assert total == ref_total, name
    mods = dict(MODULES, **(I2V_MODULES if cfg["image_dim"] else {}))
    got = {m: scope_flops(graph, s) for m, s in mods.items()}
    assert got == {m: ref[m] for m in mods}
    # the blocks are identical: every block counts what blocks.0 counts
    assert all(ref[f"blocks.{i}"] == ref["blocks.0"] for i in range(cfg["num_layers"]))
    # parameters: total and per module
    assert graph.stage_params(STAGE) == sum(p.numel() for p in model.parameters())
    for m, s in mods.items():
        assert scope_params(graph, s) == sum(p.numel() for p in model.get_submodule(m).parameters()), m
    assert scope_params(graph, "scale_shift_table") == model.scale_shift_table.numel()


SHAPES = {   # (frames, height, width) of the video, or a latent (C, T, H, W) given directly
    "832x480x81": (81, 480, 832),
    "1280x720x81": (81, 720, 1280),
    "64x64x5": (5, 64, 64),
}


@pytest.mark.parametrize("name", ["t2v-1.3b", "t2v-14b", "i2v-14b"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_total_per_shape(name, shape):
    cfg = load_cfg(name)
    latent = video_latent(cfg, *SHAPES[shape])
    model = make_model(cfg, num_layers=2)
    ref_total, ref = count(model, cfg, latent)
    graph, total = build_wanir(cfg, latent, num_layers=2)
    assert total == ref_total
    assert scope_flops(graph, "blocks") == ref["blocks.0"] == ref["blocks.1"]


@pytest.mark.parametrize("name,latent,batch,text_len,image_len", [
    ("t2v-1.3b", (16, 1, 7, 9), 1, 512, 257),       # odd H, W: the patch grid floors
    ("t2v-1.3b", (16, 3, 13, 11), 2, 77, 257),      # batch 2, short prompt
    ("t2v-14b", (16, 5, 9, 15), 3, 100, 257),
    ("i2v-14b", (36, 3, 11, 7), 2, 512, 100),       # fewer image tokens
    # the 512-token split moves text into the image branch; with added_kv_proj_dim == D an image
    # and a text token cost the same, so FLOPs cannot see where the split falls (the split
    # itself is checked structurally in tests/test_dit.py)
    ("i2v-14b", (36, 2, 8, 8), 1, 600, 257),
    ("i2v-14b", (36, 2, 4, 6), 1, 200, 257),        # image + text < 512: the split index is negative
])
def test_odd_shapes_batch_and_lengths(name, latent, batch, text_len, image_len):
    cfg = load_cfg(name)
    model = make_model(cfg, num_layers=1)
    ref_total, ref = count(model, cfg, latent, batch=batch, text_len=text_len, image_len=image_len)
    graph, total = build_wanir(cfg, latent, batch=batch, text_len=text_len, image_len=image_len, num_layers=1)
    assert total == ref_total
    assert scope_flops(graph, "blocks/attn2") == ref["blocks.0.attn2"]


@pytest.mark.parametrize("name", ["t2v-1.3b", "i2v-14b"])
def test_output_shape_matches(name):
    cfg = load_cfg(name)
    latent = (cfg["in_channels"], 3, 13, 11)
    model = make_model(cfg, num_layers=1)
    with torch.device("meta"), torch.no_grad():
        kw = {"encoder_hidden_states_image": torch.empty(1, 257, 1280)} if cfg["image_dim"] else {}
        out = model(hidden_states=torch.empty(1, *latent), timestep=torch.full((1,), 999.0),
                    encoder_hidden_states=torch.empty(1, 512, 4096), return_dict=False, **kw)[0]
    b = GraphBuilder()
    with b.stage(STAGE):
        y = wan_dit.build(b, component("dit", dict(cfg, num_layers=1)), latent_shape=latent, batch=1, text_len=512,
                          compute_dtype="bf16")
    assert y.shape == tuple(out.shape)
    with torch.device("meta"):
        real_patches = model.patch_embedding(torch.empty(1, *latent)).numel()
    assert wan_dit.dit_tokens(component("dit", cfg), latent) * cfg["attention_head_dim"] * cfg["num_attention_heads"] == \
        real_patches == b.graph.find("patch_embedding/conv3d")[0].outputs[0].numel
