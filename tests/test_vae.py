"""Wan-VAE frontend: hand-derived FLOPs, parameters and feature-cache sizes, and invariants
(monotone in T, h, w; frame counts; errors; compact graphs independent of the frame count)."""

import pytest

from wanir import GraphBuilder
from wanir.errors import ConfigError
from wanir.frontends import wan_vae
from wanir.resolve import component
from wanir.passes import flops, verify


def build(kind, shape, batch=1, dtype="fp32", cfg=None):
    b = GraphBuilder(weight_dtype="fp32")
    with b.stage(f"vae_{kind}"):
        if kind == "decode":
            out = wan_vae.build_decoder(b, component("vae", cfg), latent_shape=(16, *shape), batch=batch, dtype=dtype)
        else:
            out = wan_vae.build_encoder(b, component("vae", cfg), video_shape=(3, *shape), batch=batch, dtype=dtype)
    return b.graph, out


def tflops(kind, shape, batch=1):
    g, _ = build(kind, shape, batch)
    return flops.run(g)[f"vae_{kind}"]["tensor_flops"]


def conv(cin, cout, k, positions):
    """FlopCounterMode's convolution count: 2 · Cin · Cout · kernel volume · output positions."""
    return 2 * cin * cout * k * positions


# ----------------------------------------------------------------------------- hand derivations


def decode_flops_by_hand(T, h, w):
    """Decoder: conv_in, mid (4 convs + attention) and up_blocks.0 run at h×w on 1 frame per
    chunk; up_blocks.0's time_conv doubles frames (later chunks only), so up_blocks.1 runs at
    2h×2w on 1 + 2(T-1) frames; after up_blocks.1's time_conv everything at 4h, 8h runs on
    1 + 4(T-1) frames. The upsamplers' Conv2d runs after the ×2 nearest upsample."""
    A = h * w
    Ta, Tb, Tc = T, 1 + 2 * (T - 1), 1 + 4 * (T - 1)
    f = conv(16, 16, 1, T * A)                                          # post_quant_conv, whole latent
    f += Ta * (conv(16, 384, 27, A) + 10 * conv(384, 384, 27, A)        # conv_in; mid 4 + up0 6 convs
               + conv(384, 1152, 1, A) + conv(384, 384, 1, A)           # to_qkv, proj
               + 2 * 2 * A * A * 384)                                   # q k^T and p v, one head of 384
    f += (T - 1) * conv(384, 768, 3, A)                                 # up0 time_conv: 1 frame per later chunk
    f += Tb * (conv(384, 192, 9, 4 * A)                                 # up0 Conv2d at 2h
               + conv(192, 384, 1, 4 * A) + conv(192, 384, 27, 4 * A) + 5 * conv(384, 384, 27, 4 * A))
    f += 2 * (T - 1) * conv(384, 768, 3, 4 * A)                         # up1 time_conv: 2 frames per later chunk
    f += Tc * (conv(384, 192, 9, 16 * A) + 6 * conv(192, 192, 27, 16 * A)      # up1 Conv2d, up2 resnets
               + conv(192, 96, 9, 64 * A) + 6 * conv(96, 96, 27, 64 * A)     # up2 Conv2d, up3 resnets
               + conv(96, 3, 27, 64 * A))                                      # conv_out
    return f


def encode_flops_by_hand(F, H, W):
    """Encoder: n = 1 + (F-1)/4 chunks of 1 then 4 frames; level 0 at H×W and level 1 after a
    stride-2 Conv2d (ZeroPad2d(0,1,0,1): out = ⌊n/2⌋) see 4n-3 frames; the stride-2
    time_conv of down_blocks.5 turns 4 frames into 2 (level 2: 2n-1 frames), that of
    down_blocks.8 2 into 1 (level 3, mid and head: n frames)."""
    n = 1 + (F - 1) // 4
    H2, W2 = H // 2, W // 2
    H3, W3 = H2 // 2, W2 // 2
    H4, W4 = H3 // 2, W3 // 2
    A1, A2, A3, A4 = H * W, H2 * W2, H3 * W3, H4 * W4
    Tp, Tq, Tr = 4 * n - 3, 2 * n - 1, n
    f = Tp * (conv(3, 96, 27, A1) + 4 * conv(96, 96, 27, A1) + conv(96, 96, 9, A2)
              + conv(96, 192, 1, A2) + conv(96, 192, 27, A2) + 3 * conv(192, 192, 27, A2) + conv(192, 192, 9, A3))
    f += 2 * (n - 1) * conv(192, 192, 3, A3)                            # down_blocks.5 time_conv
    f += Tq * (conv(192, 384, 1, A3) + conv(192, 384, 27, A3) + 3 * conv(384, 384, 27, A3) + conv(384, 384, 9, A4))
    f += (n - 1) * conv(384, 384, 3, A4)                                # down_blocks.8 time_conv
    f += Tr * (8 * conv(384, 384, 27, A4) + conv(384, 1152, 1, A4) + conv(384, 384, 1, A4)
               + 2 * 2 * A4 * A4 * 384 + conv(384, 32, 27, A4))
    f += conv(32, 32, 1, n * A4)                                        # quant_conv, whole latent
    return f


def conv_params(cin, cout, k):
    return cin * cout * k + cout


def res_params(cin, cout):
    """norm1 gamma, conv1, norm2 gamma, conv2, 1x1x1 shortcut when channels change."""
    return cin + conv_params(cin, cout, 27) + cout + conv_params(cout, cout, 27) + \
        (conv_params(cin, cout, 1) if cin != cout else 0)


MID = 2 * res_params(384, 384) + 384 + conv_params(384, 1152, 1) + conv_params(384, 384, 1)
DECODER_PARAMS = (conv_params(16, 16, 1) + conv_params(16, 384, 27) + MID
                  + 3 * res_params(384, 384) + conv_params(384, 768, 3) + conv_params(384, 192, 9)
                  + res_params(192, 384) + 2 * res_params(384, 384) + conv_params(384, 768, 3)
                  + conv_params(384, 192, 9)
                  + 3 * res_params(192, 192) + conv_params(192, 96, 9)
                  + 3 * res_params(96, 96) + 96 + conv_params(96, 3, 27))
ENCODER_PARAMS = (conv_params(3, 96, 27) + 2 * res_params(96, 96) + conv_params(96, 96, 9)
                  + res_params(96, 192) + res_params(192, 192) + conv_params(192, 192, 9) + conv_params(192, 192, 3)
                  + res_params(192, 384) + res_params(384, 384) + conv_params(384, 384, 9) + conv_params(384, 384, 3)
                  + 2 * res_params(384, 384) + MID + 384 + conv_params(384, 32, 27) + conv_params(32, 32, 1))


@pytest.mark.parametrize("T,h,w", [(1, 8, 8), (2, 1, 1), (3, 16, 16), (7, 13, 17), (21, 60, 104)])
def test_decode_flops_match_hand_derivation(T, h, w):
    assert tflops("decode", (T, h, w)) == decode_flops_by_hand(T, h, w)


@pytest.mark.slow
@pytest.mark.parametrize("F,H,W", [(1, 64, 64), (9, 128, 128), (13, 57, 93), (81, 480, 832)])
def test_encode_flops_match_hand_derivation(F, H, W):
    assert tflops("encode", (F, H, W)) == encode_flops_by_hand(F, H, W)


@pytest.mark.parametrize("shape", [(1, 8, 8), (5, 30, 52)])
def test_params_match_hand_count_and_do_not_depend_on_frames(shape):
    g, _ = build("decode", shape)
    assert g.stage_params("vae_decode") == DECODER_PARAMS
    T, h, w = shape
    g, _ = build("encode", (1 + 4 * (T - 1), 8 * h, 8 * w))
    assert g.stage_params("vae_encode") == ENCODER_PARAMS


@pytest.mark.slow
def test_flops_grow_strictly_with_frames_height_and_width():
    base = tflops("decode", (3, 10, 12))
    for bigger in [(4, 10, 12), (3, 11, 12), (3, 10, 13)]:
        assert tflops("decode", bigger) > base
    base = tflops("encode", (9, 80, 96))
    for bigger in [(13, 80, 96), (9, 88, 96), (9, 80, 104)]:
        assert tflops("encode", bigger) > base


def test_batch_scales_flops_linearly():
    assert tflops("decode", (3, 6, 5), batch=3) == 3 * tflops("decode", (3, 6, 5))
    assert tflops("encode", (5, 48, 40), batch=2) == 2 * tflops("encode", (5, 48, 40))


@pytest.mark.parametrize("T", [1, 2, 5, 21])
def test_decoder_output_frames(T):
    _, out = build("decode", (T, 4, 6))
    assert out.shape == (1, 3, 1 + 4 * (T - 1), 32, 48)
    assert wan_vae.decoded_frames(T) == 1 + 4 * (T - 1)


@pytest.mark.parametrize("F", [1, 5, 9, 81])
def test_encoder_returns_the_latent_mean(F):
    _, out = build("encode", (F, 40, 56))
    assert out.shape == (1, 16, 1 + (F - 1) // 4, 5, 7)
    assert wan_vae.latent_frames(F) == 1 + (F - 1) // 4


@pytest.mark.parametrize("F", [0, 2, 8, 10, 80])
def test_bad_frame_count_raises_config_error(F):
    with pytest.raises(ConfigError, match=f"F={F}"):
        wan_vae.latent_frames(F)
    with pytest.raises(ConfigError):
        build("encode", (F, 64, 64))


def test_frame_count_error_names_allowed_neighbours():
    with pytest.raises(ConfigError, match="allowed nearby: 77 or 81"):
        wan_vae.latent_frames(80)
    with pytest.raises(ConfigError, match="positive"):
        wan_vae.decoded_frames(0)


def test_bad_config_and_shapes_raise_config_error():
    with pytest.raises(ConfigError, match="vae.family"):
        component("vae", {"family": "other"})
    with pytest.raises(ConfigError, match="channels"):
        wan_vae.build_decoder(GraphBuilder(), None, latent_shape=(4, 2, 4, 4), batch=1, dtype="fp32")
    with pytest.raises(ConfigError, match="attn_scales"):
        component("vae", {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
                               "attn_scales": [1.0], "temperal_downsample": [False, True, True]})
    with pytest.raises(ConfigError, match="temperal_downsample"):
        component("vae", {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
                               "attn_scales": [], "temperal_downsample": [False, True]})


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_graphs_verify(dtype):
    for kind, shape in [("decode", (3, 6, 8)), ("encode", (9, 48, 64))]:
        g, out = build(kind, shape, dtype=dtype)
        assert verify.run(g) == len(g)
        assert out.dtype.name == dtype


def test_node_count_does_not_depend_on_frames_and_4k_builds_quickly():
    counts = {}
    for T in (2, 3, 21, 61):
        g, _ = build("decode", (T, 9, 11))
        counts[T] = len(g)
    assert len(set(counts.values())) == 1
    # the conv nodes: 2 chunk scopes × (30 causal 3x3x3 convs, 1 shortcut (up_blocks.1.resnets.0),
    # to_qkv, proj, 3 upsampler Conv2d) + post_quant_conv, and the later-chunk body alone has the
    # 2 time_convs
    g, _ = build("decode", (3, 9, 11))
    assert sum(n.category == "conv" for n in g) == 2 * (30 + 1 + 2 + 3) + 1 + 2
    g, out = build("decode", (61, 270, 480))           # 3840x2160, 241 frames
    flops.run(g)
    assert out.shape == (1, 3, 241, 2160, 3840)
    assert len(g) == counts[2]


def test_weights_shared_between_chunk_scopes():
    g, _ = build("decode", (3, 4, 4))
    keys = {w.key for n in g.find("/chunk0/") for w in n.params.values()}
    later = {w.key for n in g.find("/chunks/") for w in n.params.values()}
    assert keys and keys < later                       # chunk 0 skips only the time_convs
    assert {k.split("/time_conv/")[0] for k in later - keys} == \
        {"vae_decode/decoder/up_blocks.0/upsamplers.0", "vae_decode/decoder/up_blocks.1/upsamplers.0"}


# ----------------------------------------------------------------------------- feature cache


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def test_decoder_feature_cache_is_listed_with_its_sizes():
    T, h, w = 4, 6, 10
    g, _ = build("decode", (T, h, w))
    vals = g.meta["persistent"]["vae_decode"]
    A = h * w
    # after a later chunk every causal conv slot holds its input's last 2 frames; the two
    # upsample3d time_conv slots too; plus the accumulated video
    cache = 2 * (A * (16 + 11 * 384) + 4 * A * (192 + 6 * 384) + 16 * A * 6 * 192 + 64 * A * 7 * 96)
    video = 3 * (1 + 4 * (T - 1)) * 64 * A
    assert len(vals) == 30 + 2 + 1                   # 30 causal 3x3x3 convs, 2 time_convs, the video
    assert sum(_numel(v.shape) for v in vals) == cache + video
    assert all(g.node(v.producer).scope.path.startswith("vae_decode/chunks/") for v in vals[:-1])


def test_encoder_feature_cache_is_listed_with_its_sizes():
    F, H, W = 9, 64, 80
    g, _ = build("encode", (F, H, W))
    vals = g.meta["persistent"]["vae_encode"]
    A1, A2, A3, A4 = H * W, H * W // 4, H * W // 16, H * W // 64
    cache = 2 * (A1 * (3 + 4 * 96) + A2 * (96 + 3 * 192) + A3 * (192 + 3 * 384) + A4 * 9 * 384) \
        + A3 * 192 + A4 * 384                       # downsample3d slots: the last frame only
    latent = 32 * 3 * A4
    assert len(vals) == 24 + 1
    assert sum(_numel(v.shape) for v in vals) == cache + latent


def test_single_chunk_lists_the_first_chunk_cache():
    g, _ = build("decode", (1, 4, 4))
    vals = g.meta["persistent"]["vae_decode"]
    assert len(vals) == 30 + 1                      # no time_conv slot holds a tensor after chunk 0
    assert all(v.shape[2] == 1 for v in vals)
