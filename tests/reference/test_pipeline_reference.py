"""Whole pipelines against the real modules: every stage of `wanir.estimate` for the
image-to-video models at 480p and 720p and the 14B text-to-video model at 720p has the
tensor FLOPs per invocation and the parameters of the module that stage runs, counted with
FlopCounterMode on the meta device, with the inputs the diffusers pipelines feed them."""
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import wanir  # noqa: E402
from wanir import reference  # noqa: E402
from wanir.config import load_config  # noqa: E402
from wanir.resolve import component  # noqa: E402

pytestmark = pytest.mark.reference


def count(fn):
    fc = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), fc:
        fn()
    return int(fc.get_total_flops())


def nparams(m):
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def real():
    """The real modules, built on meta from the hyperparameters in wanir's configs
    (wanir.reference, which `wanir verify` uses too)."""
    cfg = load_config(["model=wan2.1-i2v-14b-480p"])
    dits = {name: reference.build_dit(component("dit", load_config([f"dit={name}"]).dit))
            for name in ("wan2.1-i2v-14b", "wan2.1-t2v-14b")}
    return {"umt5": reference.build_umt5(component("text_encoder", cfg.text_encoder)),
            "clip": reference.build_clip(component("image_encoder", cfg.image_encoder)),
            "vae": reference.build_vae(component("vae", cfg.vae)), **dits}


def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, device="meta", dtype=dtype)


def check_stages(est, expected):
    got = {s.name: (s.per_invocation["tensor_flops"], s.per_invocation["params"]) for s in est.stages}
    assert got == expected


@pytest.mark.parametrize("model,height,width", [("wan2.1-i2v-14b-480p", 480, 832), ("wan2.1-i2v-14b-720p", 720, 1280)])
def test_image_to_video_pipeline(real, model, height, width):
    est = wanir.estimate([f"model={model}"])
    frames = 81
    t, h, w = 1 + (frames - 1) // 4, height // 8, width // 8
    r = real
    # the pipeline's calls: prompt (and negative prompt) padded to 512 tokens; the image at 224 px,
    # penultimate hidden states; the image followed by zero frames through the VAE encoder; the DiT on
    # noise latents + mask + image latents (36 channels) with text and image embeddings; the decoder
    image_embeds = {}

    def run_clip():
        image_embeds["x"] = r["clip"](pixel_values=meta(1, 3, 224, 224), output_hidden_states=True).hidden_states[-2]

    expected = {
        "text_encoder": (count(lambda: r["umt5"](input_ids=meta(1, 512, dtype=torch.long))), nparams(r["umt5"])),
        "image_encoder": (count(run_clip), nparams(r["clip"])),
        "vae_encode": (count(lambda: r["vae"].encode(meta(1, 3, frames, height, width)).latent_dist.mode()),
                       nparams(r["vae"].encoder) + nparams(r["vae"].quant_conv)),
        "diffusion_core": (count(lambda: r["wan2.1-i2v-14b"](
            hidden_states=meta(1, 36, t, h, w), timestep=torch.full((1,), 999.0, device="meta"),
            encoder_hidden_states=meta(1, 512, 4096), encoder_hidden_states_image=image_embeds["x"],
            return_dict=False)), nparams(r["wan2.1-i2v-14b"])),
        "vae_decode": (count(lambda: r["vae"].decode(meta(1, 16, t, h, w), return_dict=False)),
                       nparams(r["vae"].decoder) + nparams(r["vae"].post_quant_conv)),
    }
    assert tuple(image_embeds["x"].shape) == (1, 257, 1280)
    check_stages(est, expected)
    assert {s.name: s.invocations for s in est.stages} == {
        "text_encoder": 2, "image_encoder": 1, "vae_encode": 1,
        "diffusion_core": 40 * 2,          # Wan2.1 I2V's default 40 steps × 2 guidance branches
        "vae_decode": 1}


def test_text_to_video_14b_pipeline_at_720p(real):
    est = wanir.estimate([])
    r = real
    expected = {
        "text_encoder": (count(lambda: r["umt5"](input_ids=meta(1, 512, dtype=torch.long))), nparams(r["umt5"])),
        "diffusion_core": (count(lambda: r["wan2.1-t2v-14b"](
            hidden_states=meta(1, 16, 21, 90, 160), timestep=torch.full((1,), 999.0, device="meta"),
            encoder_hidden_states=meta(1, 512, 4096), return_dict=False)), nparams(r["wan2.1-t2v-14b"])),
        "vae_decode": (count(lambda: r["vae"].decode(meta(1, 16, 21, 90, 160), return_dict=False)),
                       nparams(r["vae"].decoder) + nparams(r["vae"].post_quant_conv)),
    }
    check_stages(est, expected)
