"""Wan-VAE frontend against diffusers' AutoencoderKLWan: tensor FLOPs of decode and encode
(total and every module path FlopCounterMode reports) and parameter counts, with the real
chunked, feature-cached loop run on the meta device."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
from omegaconf import OmegaConf  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import wanir  # noqa: E402
from wanir import GraphBuilder, reference  # noqa: E402
from wanir.frontends import wan_vae  # noqa: E402
from wanir.passes import flops  # noqa: E402
from wanir.resolve import component  # noqa: E402
from vae_counting import VaeCounter, module_flops  # noqa: E402

pytestmark = pytest.mark.reference

CFG = OmegaConf.load(Path(wanir.__file__).parent / "configs" / "vae" / "wan2.1.yaml")

# latent (T, h, w): small, 1 chunk, odd sizes, 832x480x81, 1280x720x81
SHAPES = [(3, 16, 16), (1, 8, 8), (2, 5, 3), (21, 60, 104), (21, 90, 160)]
ODD_VIDEOS = [(13, 57, 93)]                 # encode only: H, W not multiples of 8


@pytest.fixture(scope="module")
def vae():
    """The real model built from the same config keys wanir reads, on meta."""
    return reference.build_vae(component("vae", CFG))


_counter = VaeCounter(CFG)
_count = _counter.count      # (vae, kind, shape) -> (total, {module path: flops}, output shape)
_build = _counter.build      # (kind, shape) -> (graph, output value, tensor FLOPs)
_module_flops = module_flops


def _video(shape):
    T, h, w = shape
    return (1 + 4 * (T - 1), 8 * h, 8 * w)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_decode_flops_and_output_equal(vae, shape):
    ref, _, ref_shape = _count(vae, "decode", shape)
    _, out, got = _build("decode", shape)
    assert got == ref
    assert out.shape == ref_shape == (1, 3, *_video(shape))
    assert wan_vae.decoded_frames(shape[0]) == ref_shape[2]


@pytest.mark.parametrize("video", [_video(s) for s in SHAPES] + ODD_VIDEOS, ids=lambda s: "x".join(map(str, s)))
def test_encode_flops_and_mean_equal(vae, video):
    ref, _, ref_shape = _count(vae, "encode", video)
    _, out, got = _build("encode", video)
    assert got == ref
    assert out.shape == ref_shape
    assert wan_vae.latent_frames(video[0]) == ref_shape[2]


@pytest.mark.parametrize("kind,shape", [("decode", (3, 16, 16)), ("decode", (21, 60, 104)),
                                        ("encode", (9, 128, 128)), ("encode", (81, 480, 832))])
def test_every_module_path_equal(vae, kind, shape):
    """Every module path FlopCounterMode reports, so a wrong total points at its op."""
    _, ref, _ = _count(vae, kind, shape)
    graph, _, _ = _build(kind, shape)
    got = _module_flops(graph)
    stages = [f"WanDecoder3d.up_blocks.{i}" for i in range(4)] + ["WanDecoder3d.mid_block"] \
        if kind == "decode" else [f"WanEncoder3d.down_blocks.{i}" for i in range(11)] + ["WanEncoder3d.mid_block"]
    for m in stages:
        assert (m, got.get(m)) == (m, ref[m])
    assert got == ref


def test_params_equal_per_side(vae):
    ref_dec = sum(p.numel() for m in (vae.decoder, vae.post_quant_conv) for p in m.parameters())
    ref_enc = sum(p.numel() for m in (vae.encoder, vae.quant_conv) for p in m.parameters())
    for shape in [(3, 16, 16), (1, 8, 8)]:              # several chunks; a single chunk (time_convs unrun)
        g, _, _ = _build("decode", shape)
        assert g.stage_params("decode") == ref_dec
        g, _, _ = _build("encode", _video(shape))
        assert g.stage_params("encode") == ref_enc


def test_other_config_decode_encode_and_params_equal():
    """The frontend follows the config: narrower, one residual block per level, time
    downsampling at the first two levels (so the decoder upsamples in time at the last two)."""
    cfg = OmegaConf.create(dict(family="wan_vae", base_dim=16, z_dim=4, dim_mult=[1, 2, 3, 3], num_res_blocks=1,
                                attn_scales=[], temperal_downsample=[True, True, False]))
    with torch.device("meta"):
        m = diffusers.AutoencoderKLWan(base_dim=16, z_dim=4, dim_mult=[1, 2, 3, 3], num_res_blocks=1,
                                       attn_scales=[], temperal_downsample=[True, True, False]).eval()
    for kind, shape in [("decode", (3, 5, 7)), ("encode", (9, 40, 56))]:
        fc = FlopCounterMode(display=False)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), fc:
            if kind == "decode":
                out = m.decode(torch.empty(1, 4, *shape, device="meta"), return_dict=False)[0]
            else:
                out = m.encode(torch.empty(1, 3, *shape, device="meta")).latent_dist.mode()
        b = GraphBuilder(weight_dtype="fp32")
        with b.stage(kind):
            if kind == "decode":
                got = wan_vae.build_decoder(b, component("vae", cfg), latent_shape=(4, *shape), batch=1, dtype="fp32")
                side = (m.decoder, m.post_quant_conv)
            else:
                got = wan_vae.build_encoder(b, component("vae", cfg), video_shape=(3, *shape), batch=1, dtype="fp32")
                side = (m.encoder, m.quant_conv)
        assert flops.run(b.graph)[kind]["tensor_flops"] == fc.get_total_flops()
        assert got.shape == tuple(out.shape)
        assert b.graph.stage_params(kind) == sum(p.numel() for mod in side for p in mod.parameters())
