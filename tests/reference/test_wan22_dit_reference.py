"""The Wan2.2 DiTs against diffusers' WanTransformer3DModel: each A14B expert (T2V: the 14B
architecture; I2V: 36 input channels, no image embedder) and TI2V-5B, built on the meta
device from wanir's shipped configs and counted under FlopCounterMode (MATH SDPA).

The timestep is fed as each pipeline feeds it: diffusers passes a ``(B,)`` timestep to the
A14B experts and a ``(B, L)`` one to TI2V-5B (``expand_timesteps``); the official Wan2.2 code
expands every timestep to ``(B, L)``, which diffusers reproduces when given
``torch.full((1, L), t)``. wanir's ``timestep_per_token`` must match both, and the two
settings must differ by exactly the time embedding and ``time_proj`` run on L rows instead of 1
(derived below).

Full-depth models are built once per module (a few seconds each on meta); other shapes are
checked on 1- and 2-layer models (every block is the same module, so the forward is
``rest + num_layers · block``: see tests/reference/test_dit_reference.py)."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
from omegaconf import OmegaConf  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from wanir import GraphBuilder  # noqa: E402
from wanir.frontends import wan_dit  # noqa: E402
from wanir.passes import flops, verify  # noqa: E402
from wanir.resolve import component  # noqa: E402

pytestmark = pytest.mark.reference

CONFIG_DIR = Path(wan_dit.__file__).resolve().parents[1] / "wanir" / "configs" / "dit"
DIFFUSERS_KEYS = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
                  "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps",
                  "image_dim", "added_kv_proj_dim")
STAGE = "diffusion_core"
# model -> (video frames, height, width) of its default, VAE (temporal, spatial) stride
DEFAULTS = {"t2v-a14b": ((81, 720, 1280), 8), "i2v-a14b": ((81, 480, 832), 8), "ti2v-5b": ((121, 704, 1280), 16)}


def load_cfg(name: str) -> dict:
    c = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"wan2.2-{name}.yaml"))
    return {k: c[k] for k in DIFFUSERS_KEYS}


def latent_of(name, frames, height, width):
    cfg = load_cfg(name)
    s = DEFAULTS[name][1]
    return (cfg["in_channels"], 1 + (frames - 1) // 4, height // s, width // s)


def make_model(cfg, num_layers=None):
    kw = dict(cfg, patch_size=tuple(cfg["patch_size"]))
    if num_layers is not None:
        kw["num_layers"] = num_layers
    with torch.device("meta"):
        return diffusers.WanTransformer3DModel(**kw).eval()


def tokens(cfg, latent):
    pt, ph, pw = cfg["patch_size"]
    return (latent[1] // pt) * (latent[2] // ph) * (latent[3] // pw)


@torch.no_grad()
def count(model, cfg, latent, per_token, batch=1, text_len=512):
    """FlopCounterMode of one forward: (total, {module path: flops}, output shape)."""
    L = tokens(cfg, latent)
    with torch.device("meta"):
        ts = torch.full((batch, L), 999.0) if per_token else torch.full((batch,), 999.0)
        args = dict(hidden_states=torch.empty(batch, *latent), timestep=ts,
                    encoder_hidden_states=torch.empty(batch, text_len, cfg["text_dim"]))
    fc = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), fc:
        out = model(**args, return_dict=False)[0]
    per = {k.split(".", 1)[1]: sum(v.values()) for k, v in fc.get_flop_counts().items() if "." in k}
    return fc.get_total_flops(), per, tuple(out.shape)


def build_wanir(cfg, latent, per_token, batch=1, text_len=512, num_layers=None):
    cfg = dict(cfg) if num_layers is None else dict(cfg, num_layers=num_layers)
    b = GraphBuilder(weight_dtype="bf16")
    with b.stage(STAGE):
        out = wan_dit.build(b, component("dit", cfg), latent_shape=latent, batch=batch, text_len=text_len, compute_dtype="bf16",
                            timestep_per_token=per_token)
    verify.run(b.graph)
    return b.graph, flops.run(b.graph)[STAGE]["tensor_flops"], out


def scope_flops(graph, path):
    p = f"{STAGE}/{path}"
    return sum(n.costs["tensor_flops"] for n in graph if n.path == p or n.path.startswith(p + "/"))


def scope_params(graph, path):
    p = f"{STAGE}/{path}"
    ws = {w.key: w for n in graph if n.path == p or n.path.startswith(p + "/") for w in n.params.values()}
    return sum(w.type.numel for w in ws.values())


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

# (model, timestep per token): as diffusers' pipelines call them, and A14B as the official code runs it
FULL = [("t2v-a14b", False), ("t2v-a14b", True), ("i2v-a14b", False), ("ti2v-5b", True)]


@pytest.fixture(scope="module")
def models():
    return {}


def full_model(models, name):
    if name not in models:
        models[name] = make_model(load_cfg(name))
    return models[name]


@pytest.mark.parametrize("name,per_token", FULL, ids=[f"{n}-{'per_token' if p else 'per_sample'}" for n, p in FULL])
def test_full_depth_default_shape(models, name, per_token):
    cfg = load_cfg(name)
    model = full_model(models, name)
    latent = latent_of(name, *DEFAULTS[name][0])
    ref_total, ref, ref_shape = count(model, cfg, latent, per_token)
    graph, total, out = build_wanir(cfg, latent, per_token)
    assert total == ref_total
    assert out.shape == ref_shape == (1, cfg["out_channels"], *latent[1:])
    assert {m: scope_flops(graph, s) for m, s in MODULES.items()} == {m: ref[m] for m in MODULES}
    assert graph.stage_params(STAGE) == sum(p.numel() for p in model.parameters())
    for m, s in MODULES.items():
        assert scope_params(graph, s) == sum(p.numel() for p in model.get_submodule(m).parameters()), m


def test_published_parameter_counts(models):
    """Each A14B expert has the Wan2.1 14B count; TI2V-5B is the "5B"."""
    counts = {n: sum(p.numel() for p in full_model(models, n).parameters()) for n in ("t2v-a14b", "ti2v-5b")}
    assert counts["t2v-a14b"] == 14_288_491_584
    assert 4.9e9 < counts["ti2v-5b"] < 5.1e9
    for n, c in counts.items():
        g, _, _ = build_wanir(load_cfg(n), latent_of(n, 5, 64, 64), False)
        assert g.stage_params(STAGE) == c


@pytest.mark.parametrize("name", ["t2v-a14b", "i2v-a14b", "ti2v-5b"])
@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("latent_thw,batch,text_len", [
    ((1, 7, 9), 1, 512),        # one latent frame, odd H and W: the patch grid floors
    ((3, 13, 11), 2, 77),       # batch 2, short prompt
    ((5, 9, 15), 1, 600),
])
def test_small_and_odd_shapes(name, per_token, latent_thw, batch, text_len):
    cfg = load_cfg(name)
    latent = (cfg["in_channels"], *latent_thw)
    model = make_model(cfg, num_layers=2)
    ref_total, ref, ref_shape = count(model, cfg, latent, per_token, batch=batch, text_len=text_len)
    graph, total, out = build_wanir(cfg, latent, per_token, batch=batch, text_len=text_len, num_layers=2)
    assert total == ref_total
    assert out.shape == ref_shape
    assert scope_flops(graph, "blocks") == ref["blocks.0"] == ref["blocks.1"]
    assert scope_flops(graph, "condition_embedder") == ref["condition_embedder"]


@pytest.mark.parametrize("name,latent_thw,batch", [("t2v-a14b", (21, 90, 160), 1), ("ti2v-5b", (31, 44, 80), 1),
                                                   ("t2v-a14b", (3, 13, 11), 2)])
def test_per_token_differs_by_the_time_embedding_term(name, latent_thw, batch):
    """Per-token minus per-sample = the time embedder (256 -> D -> D) and time_proj (D -> 6D)
    on B·L rows instead of B: B·(L − 1)·(2·256·D + 2·D² + 2·6·D²) tensor FLOPs. Everything else
    (the modulation adds, the norms) is elementwise and counts zero."""
    cfg = load_cfg(name)
    latent = (cfg["in_channels"], *latent_thw)
    D = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    L = tokens(cfg, latent)
    term = batch * (L - 1) * (2 * cfg["freq_dim"] * D + 2 * D * D + 2 * D * 6 * D)
    _, off, _ = build_wanir(cfg, latent, False, batch=batch, num_layers=1)
    _, on, _ = build_wanir(cfg, latent, True, batch=batch, num_layers=1)
    assert on - off == term
    model = make_model(cfg, num_layers=1)
    assert count(model, cfg, latent, True, batch=batch)[0] - count(model, cfg, latent, False, batch=batch)[0] == term
