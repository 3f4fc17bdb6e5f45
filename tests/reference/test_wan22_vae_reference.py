"""Wan2.2-VAE against diffusers' AutoencoderKLWan built with the Wan2.2 configuration
(base_dim 160, decoder_base_dim 256, z_dim 48, is_residual, 2x2 patchify to 12 channels):
tensor FLOPs of decode and encode (total and every module path FlopCounterMode reports),
output shapes and parameter counts per side, with the real chunked, feature-cached loop on
the meta device; and the TI2V-5B image-to-video condition, the image encoded alone as a
1-frame video."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
from omegaconf import OmegaConf  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import wanir  # noqa: E402
from wanir.frontends import wan_vae  # noqa: E402
from vae_counting import VaeCounter, module_flops  # noqa: E402

pytestmark = pytest.mark.reference

CFG = OmegaConf.load(Path(wanir.__file__).parent / "configs" / "vae" / "wan2.2.yaml")

# latent (T, h, w): small, 1 chunk, odd sizes, TI2V-5B's 1280x704x121 and 704x1280x121
SHAPES = [(3, 4, 6), (1, 4, 4), (2, 5, 3), (31, 44, 80), (31, 80, 44)]


@pytest.fixture(scope="module")
def vae():
    """The real model from the keys wanir reads (the Wan2.2 conversion config, without its
    latents_mean/std, which change no shape)."""
    with torch.device("meta"):
        m = diffusers.AutoencoderKLWan(
            base_dim=CFG.base_dim, decoder_base_dim=CFG.decoder_base_dim, z_dim=CFG.z_dim,
            dim_mult=list(CFG.dim_mult), num_res_blocks=CFG.num_res_blocks, attn_scales=list(CFG.attn_scales),
            temperal_downsample=list(CFG.temperal_downsample), dropout=0.0, is_residual=CFG.is_residual,
            in_channels=CFG.in_channels, out_channels=CFG.out_channels, patch_size=CFG.patch_size,
            scale_factor_temporal=4, scale_factor_spatial=16)
    return m.eval()


_counter = VaeCounter(CFG)
_count = _counter.count      # (vae, kind, shape) -> (total, {module path: flops}, output shape)
_build = _counter.build      # (kind, shape) -> (graph, output value, tensor FLOPs)
_module_flops = module_flops


def _video(shape):
    """The video a latent (T, h, w) decodes to: 1 + 4(T − 1) frames, 16x the size."""
    T, h, w = shape
    return (1 + 4 * (T - 1), 16 * h, 16 * w)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_decode_flops_and_output_equal(vae, shape):
    ref, _, ref_shape = _count(vae, "decode", shape)
    _, out, got = _build("decode", shape)
    assert got == ref
    assert out.shape == ref_shape == (1, 3, *_video(shape))


@pytest.mark.parametrize("video", [_video(s) for s in SHAPES[:3]] + [(121, 704, 1280)],
                         ids=lambda s: "x".join(map(str, s)))
def test_encode_flops_and_mean_equal(vae, video):
    ref, _, ref_shape = _count(vae, "encode", video)
    _, out, got = _build("encode", video)
    assert got == ref
    assert out.shape == ref_shape
    assert wan_vae.latent_frames(video[0]) == ref_shape[2]


@pytest.mark.parametrize("size", [(704, 1280), (1280, 704), (480, 832)], ids=lambda s: "x".join(map(str, s)))
def test_ti2v_image_condition_encode(vae, size):
    """TI2V-5B image-to-video: ``vae.encode(image[:, :, None])``, one frame, one chunk."""
    H, W = size
    fc = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), fc:
        out = vae.encode(torch.empty(1, 3, H, W, device="meta")[:, :, None]).latent_dist.mode()
    g, got, total = _build("encode", (1, H, W))
    assert total == fc.get_total_flops()
    assert got.shape == tuple(out.shape) == (1, 48, 1, H // 16, W // 16)
    assert g.stage_params("encode") == sum(p.numel() for m in (vae.encoder, vae.quant_conv) for p in m.parameters())


@pytest.mark.parametrize("kind,shape", [("decode", (3, 4, 6)), ("decode", (31, 44, 80)),
                                        ("encode", (9, 64, 96)), ("encode", (121, 704, 1280))])
def test_every_module_path_equal(vae, kind, shape):
    """Every module path FlopCounterMode reports (the residual blocks, their resnets, the
    resamplers), so a wrong total points at its op."""
    _, ref, _ = _count(vae, kind, shape)
    graph, _, _ = _build(kind, shape)
    got = _module_flops(graph)
    blocks = [f"WanDecoder3d.up_blocks.{i}" for i in range(4)] if kind == "decode" else \
        [f"WanEncoder3d.down_blocks.{i}" for i in range(4)]
    for m in blocks + [f"{blocks[0].split('.')[0]}.mid_block"]:
        assert (m, got.get(m)) == (m, ref[m])
    assert got == ref


def test_params_equal_per_side(vae):
    ref_dec = sum(p.numel() for m in (vae.decoder, vae.post_quant_conv) for p in m.parameters())
    ref_enc = sum(p.numel() for m in (vae.encoder, vae.quant_conv) for p in m.parameters())
    for shape in [(3, 4, 6), (1, 4, 4)]:              # several chunks; a single chunk (time_convs unrun)
        g, _, _ = _build("decode", shape)
        assert g.stage_params("decode") == ref_dec
        g, _, _ = _build("encode", _video(shape))
        assert g.stage_params("encode") == ref_enc


def test_sizes_the_encoder_cannot_run_are_refused(vae):
    """Odd sizes: the patchify needs even H and W, and AvgDown3D pairs H and W at every level,
    so the real encoder fails unless both are multiples of 16; wanir refuses them."""
    from wanir.errors import ConfigError

    for video in [(5, 63, 64), (13, 38, 94)]:
        with pytest.raises((RuntimeError, ValueError)):
            _count(vae, "encode", video)
        with pytest.raises(ConfigError, match="multiples of"):
            _build("encode", video)
