"""Wan-VAE (Wan2.1): lowers diffusers' ``AutoencoderKLWan`` as ``decode`` and
``encode(...).latent_dist.mode()`` run it (tiling and slicing off).

The VAE never sees the whole video at once. Both directions loop over chunks of frames
and carry a *feature cache* from chunk to chunk: every causal 3x3x3 convolution keeps the
last ``CACHE_T`` = 2 frames of its input, and the next chunk prepends them instead of
zero padding. The graph models this loop as two loop scopes of the same weights:

- ``chunk0`` (×1): the first chunk. Causal convolutions zero-pad 2 frames in front; the
  temporal up/down-sampling convolutions (``time_conv``) are skipped, so every level runs
  one frame.
- ``chunks`` (×(chunks − 1)): one body standing for every later chunk, in its steady
  state: each causal convolution concatenates its 2 cached frames in front of the chunk
  and pads only spatially; the ``time_conv`` of ``upsample3d`` doubles the frames (decoder:
  1 → 2 → 4 frames per chunk) and the stride-2 ``time_conv`` of ``downsample3d`` halves them
  (encoder: 4 → 2 → 1).

Decoder (``build_decoder``): ``post_quant_conv`` (1x1x1) once over the whole latent, then
one latent frame per chunk through ``conv_in``, ``mid_block`` (residual block, single-head
spatial attention per frame, residual block), four ``up_blocks`` (3 residual blocks each,
then ``upsample3d``, ``upsample3d``, ``upsample2d``: time_conv at low resolution,
nearest-exact ×2, per-frame Conv2d halving the channels), ``norm_out``, SiLU and
``conv_out``; the chunk outputs (1, then 4 frames each) form the video, clamped to [-1, 1].

Encoder (``build_encoder``): chunks of 1 then 4 frames through ``conv_in``, ``down_blocks``
(residual blocks; ``downsample2d`` / ``downsample3d``: zero pad right and bottom, per-frame
Conv2d stride 2, then the stride-2 ``time_conv`` over the cached last frame plus the
chunk), ``mid_block``, ``norm_out``, SiLU, ``conv_out`` (2·z_dim channels); ``quant_conv``
(1x1x1) once after the loop; the posterior's ``mode()`` is its mean, the first z_dim
channels (the clamp and the two ``exp`` that build std and var run as well).

Scopes mirror the diffusers module tree (``decoder/up_blocks.1/resnets.0/conv1``), so a
node's scope path with the stage and loop levels dropped is its module path.

The feature cache is listed for the memory pass in
``graph.meta["persistent"][stage]``: the cache tensors written by the last chunk scope
(2 frames per causal conv slot, the cached frame of each ``downsample3d``) and the
accumulated output, each a Value that stays live for the whole invocation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from wanir import lowerings
from wanir.dtypes import get_dtype
from wanir.errors import ConfigError
from wanir.graph import Value

from .components import check_family
from .components import positive_int as _posint

CACHE_T = 2                       # frames each causal conv keeps for the next chunk
PERSISTENT_KEY = "persistent"     # graph.meta key of the values live for a whole invocation


@dataclass(frozen=True)
class VaeArch:
    """The Wan-VAE hyperparameters that shape the graph (diffusers' argument names), checked
    on construction; ``VaeArch()`` is the Wan2.1 VAE. ``decoder_base_dim`` None: ``base_dim``."""

    COMPONENT: ClassVar[str] = "vae"
    FAMILY: ClassVar[str] = "wan_vae"
    MODULE: ClassVar[str] = "wan_vae"
    WHAT: ClassVar[str] = "Wan-VAE"

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple = ()
    temperal_downsample: tuple = (False, True, True)
    decoder_base_dim: int | None = None
    in_channels: int = 3
    out_channels: int = 3
    is_residual: bool = False     # Wan2.2-VAE: residual down/up blocks with average / duplicate shortcuts
    patch_size: int = 1           # Wan2.2-VAE: 2x2 pixel (un)shuffle around the encoder and decoder
    family: str = "wan_vae"

    #: the keys a ``vae`` config must hold (the rest default as above)
    REQUIRED: ClassVar[tuple] = ("base_dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales",
                                 "temperal_downsample")

    def __post_init__(self):
        check_family(self)
        if not isinstance(self.is_residual, bool):
            raise ConfigError(f"vae.is_residual={self.is_residual!r}: allowed true, false")
        patch = _posint("vae.patch_size", self.patch_size)
        if patch > 8:
            raise ConfigError(f"vae.patch_size={patch}: allowed null or 1 to 8")
        base = _posint("vae.base_dim", self.base_dim)
        dim_mult = tuple(self.dim_mult)
        for m in dim_mult:
            _posint("vae.dim_mult[...]", m)
        if len(dim_mult) < 2:
            raise ConfigError(f"vae.dim_mult={list(dim_mult)}: needs at least 2 levels")
        td = tuple(self.temperal_downsample)
        if len(td) != len(dim_mult) - 1 or not all(isinstance(t, bool) for t in td):
            raise ConfigError(f"vae.temperal_downsample={list(td)}: needs {len(dim_mult) - 1} booleans "
                              f"(one per downsampling level of dim_mult={list(dim_mult)})")
        if list(self.attn_scales):
            raise ConfigError(f"vae.attn_scales={list(self.attn_scales)}: only [] is modeled (diffusers' "
                              f"chunked encoder cannot call an attention block inside down_blocks)")
        if sum(td) != 2:
            raise ConfigError(f"vae.temperal_downsample={list(td)}: the chunked loop reads 4 frames per chunk, "
                              f"so exactly two levels must downsample in time")
        object.__setattr__(self, "dim_mult", dim_mult)
        object.__setattr__(self, "temperal_downsample", td)
        object.__setattr__(self, "attn_scales", ())
        object.__setattr__(self, "decoder_base_dim", _posint("vae.decoder_base_dim", self.decoder_base_dim or base))
        for k in ("z_dim", "num_res_blocks", "in_channels", "out_channels"):
            _posint(f"vae.{k}", getattr(self, k))
        for key, c in (("vae.in_channels", self.in_channels), ("vae.out_channels", self.out_channels)):
            if c % (patch * patch):
                raise ConfigError(f"vae: {key}={c} is not divisible by patch_size² = {patch * patch} "
                                  "(the channels of the pixel-shuffled video)")

    @property
    def temporal_factor(self) -> int:
        """Frames per latent frame after the first (4 for Wan2.1)."""
        return 2 ** sum(1 for t in self.temperal_downsample if t)

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent pixel along height and width (8 for Wan2.1, 16 for Wan2.2)."""
        return 2 ** (len(self.dim_mult) - 1) * self.patch_size

    @property
    def video_channels(self) -> int:
        """Channels of the video before patchify (3)."""
        return self.in_channels // (self.patch_size * self.patch_size)


#: the Wan2.1 VAE (what the builders lower when given no arch)
WAN21 = VaeArch()


def _arch(arch) -> VaeArch:
    if arch is None:
        return WAN21
    if not isinstance(arch, VaeArch):
        raise TypeError(f"wan_vae lowers a VaeArch (wanir.resolve.component('vae', ...)), got {type(arch).__name__}")
    return arch


def decoded_frames(T: int, arch: VaeArch | None = None) -> int:
    """Video frames the decoder produces from ``T`` latent frames: 1 + 4·(T − 1) for
    Wan2.1 (the first chunk yields 1 frame, every later one 4). Raises ConfigError for T < 1."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ConfigError(f"latent frames T={T!r}: must be a positive integer")
    return 1 + _arch(arch).temporal_factor * (T - 1)


def latent_frames(F: int, arch: VaeArch | None = None) -> int:
    """Latent frames the encoder produces from ``F`` video frames: 1 + (F − 1)/4 for Wan2.1.
    F must be 1 + 4k (the encoder reads 1 frame, then chunks of 4; diffusers silently drops
    a ragged tail, wanir refuses it): any other F raises ConfigError naming the nearby
    allowed counts."""
    t = _arch(arch).temporal_factor
    if isinstance(F, bool) or not isinstance(F, int) or F < 1:
        raise ConfigError(f"video frames F={F!r}: must be a positive integer of the form 1 + {t}k")
    if (F - 1) % t:
        lo = (F - 1) // t * t + 1
        raise ConfigError(f"video frames F={F}: the Wan-VAE encodes 1 + {t}k frames (one frame, then chunks "
                          f"of {t}); allowed nearby: {lo} or {lo + t}")
    return 1 + (F - 1) // t


# ----------------------------------------------------------------------------- chunk state


class _Chunk:
    """Build state of one chunk scope: whether it is the first chunk, the cache tensors
    it writes (by slot = weight path of the conv owning the slot) and, for the later-chunk
    body, the slots the first chunk wrote."""

    def __init__(self, first: bool, first_slots: dict | None = None, alone: bool = False):
        self.first = first
        self.alone = alone          # the first chunk is the only one: skipped modules never run
        self.first_slots = first_slots or {}
        self.slots: dict[str, Value] = {}

    def write(self, b, v: Value) -> None:
        self.slots[b.current_scope.weight_path] = v


def _slot_key(b) -> str:
    return b.current_scope.weight_path


def _unrun_conv_weights(b, ch: _Chunk, cin: int, cout: int, kernel: tuple) -> None:
    """A time_conv that no chunk runs (a single-chunk input) still holds its weights: declare
    them as ``parameter`` nodes under the key the conv would use, so the parameter count is
    the module's."""
    if ch.first and ch.alone:
        b.parameter("conv", (cout, cin, *kernel))        # key <scope>/conv.weight, as the conv's
        b.parameter("conv_bias", (cout,))


# ----------------------------------------------------------------------------- building blocks


def _rms(b, x, name):
    """WanRMS_norm (channel first, gamma, no bias): F.normalize over C · sqrt(C) · gamma."""
    return b.op("channel_rmsnorm", x, name=name, affine=True, bias=False)


def _causal_conv(b, ch: _Chunk, x, out: int, name: str):
    """A WanCausalConv3d(k=3, padding=1) call site with its feature-cache slot, in scope
    ``name``: snapshot the last 2 input frames, prepend the cached frames (later chunks) or
    2 zero frames (first chunk), pad H and W by 1, conv3d with no padding. N frames in,
    N frames out."""
    with b.scope(name):
        n = x.shape[2]
        snap = b.contiguous(b.slice(x, 2, start=-CACHE_T, name="cache_slice"), name="cache_clone")
        if ch.first:
            cache = snap
            xin = b.pad(x, (1, 1, 1, 1, 2, 0), name="pad")
        else:
            if n < CACHE_T:
                # one-frame chunk: keep the last cached frame in front of the new one
                prev = ch.first_slots[_slot_key(b)]
                cache = b.concat([b.slice(prev, 2, start=-1, name="prev_frame"), snap], dim=2, name="cache")
            else:
                cache = snap
            # the IR has no loop-carried edges: the slot's value written in this body stands
            # in for the one the previous chunk wrote (same shape, same bytes)
            xin = b.pad(b.concat([cache, x], dim=2, name="cat_cache"), (1, 1, 1, 1, 0, 0), name="pad")
        ch.write(b, cache)
        return b.conv3d(xin, out, 3, name="conv")


def _conv1x1x1(b, x, out: int, name: str):
    """A WanCausalConv3d with kernel 1 (shortcut, quant_conv, post_quant_conv): F.pad with
    zero padding still copies its input; no cache slot."""
    with b.scope(name):
        return b.conv3d(b.pad(x, (0,) * 6, name="pad"), out, 1, name="conv")


def _resblock(b, ch: _Chunk, x, out: int, name: str):
    """WanResidualBlock(in, out): [1x1x1 shortcut if in != out] + conv2(SiLU(norm2(
    conv1(SiLU(norm1(x)))))); dropout 0 runs no op."""
    with b.scope(name):
        h = _conv1x1x1(b, x, out, "conv_shortcut") if x.shape[1] != out else x
        y = b.silu(_rms(b, x, "norm1"), name="silu1")
        y = _causal_conv(b, ch, y, out, "conv1")
        y = b.silu(_rms(b, y, "norm2"), name="silu2")
        y = _causal_conv(b, ch, y, out, "conv2")
        return b.add(y, h, name="residual")


def _frames_to_batch(b, x):
    """(B, C, t, h, w) → (B·t, C, h, w) as ``permute(0,2,1,3,4).reshape`` runs it (a copy)."""
    B, C, t, h, w = x.shape
    y = b.contiguous(b.permute(x, (0, 2, 1, 3, 4), name="to_frames"), name="frames_copy")
    return b.reshape(y, (B * t, C, h, w), name="frames")


def _batch_to_frames(b, x, B: int):
    """(B·t, C, h, w) → (B, C, t, h, w) as ``view(...).permute(0,2,1,3,4)`` runs it (views)."""
    bt, C, h, w = x.shape
    y = b.reshape(x, (B, bt // B, C, h, w), name="unframes")
    return b.permute(y, (0, 2, 1, 3, 4), name="from_frames")


def _attention(b, x, name: str):
    """WanAttentionBlock: per frame, RMS norm, 1x1 to_qkv, single-head SDPA over the h·w
    positions (head dim C), 1x1 proj, residual add."""
    with b.scope(name):
        B, C, t, h, w = x.shape
        L = h * w
        y = _rms(b, _frames_to_batch(b, x), "norm")
        with b.scope("to_qkv"):
            qkv = b.conv2d(y, 3 * C, 1, name="conv")
        qkv = b.reshape(qkv, (B * t, 1, 3 * C, L), name="qkv_heads")
        qkv = b.contiguous(b.permute(qkv, (0, 1, 3, 2), name="qkv_t"), name="qkv")
        q, k, v = b.chunk(qkv, 3, dim=-1, name="split")
        o = b.sdpa(q, k, v, name="sdpa")
        o = b.permute(b.reshape(o, (B * t, L, C), name="squeeze"), (0, 2, 1), name="o_t")
        o = b.reshape(b.contiguous(o, name="o_copy"), (B * t, C, h, w), name="o")
        with b.scope("proj"):
            o = b.conv2d(o, C, 1, name="conv")
        return b.add(_batch_to_frames(b, o, B), x, name="residual")


def _mid_block(b, ch: _Chunk, x):
    """WanMidBlock(dim, num_layers=1): residual block, attention, residual block."""
    C = x.shape[1]
    with b.scope("mid_block"):
        x = _resblock(b, ch, x, C, "resnets.0")
        x = _attention(b, x, "attentions.0")
        return _resblock(b, ch, x, C, "resnets.1")


def _upsample(b, ch: _Chunk, x, mode: str, dtype, name: str, out: int | None = None):
    """WanResample in ``upsample3d`` / ``upsample2d`` mode: [time_conv 3x1x1 C→2C on the
    later chunks, frames interleaved ×2] then per frame nearest-exact ×2 and Conv2d 3x3
    C→C/2 (``out``: C for the Wan2.2-VAE)."""
    B, C = x.shape[:2]
    with b.scope(name):
        if mode == "upsample3d" and ch.first:
            with b.scope("time_conv"):
                _unrun_conv_weights(b, ch, C, 2 * C, (3, 1, 1))
        elif mode == "upsample3d":
            with b.scope("time_conv"):
                n = x.shape[2]
                snap = b.contiguous(b.slice(x, 2, start=-CACHE_T, name="cache_slice"), name="cache_clone")
                # fewer than 2 frames: the slot is topped up to 2 frames (zeros in the
                # second chunk, the previous frame later)
                cache = snap if n >= CACHE_T else b.pad(snap, (0, 0, 0, 0, CACHE_T - n, 0), name="cache")
                xin = b.pad(b.concat([cache, x], dim=2, name="cat_cache"), (0,) * 6, name="pad")
                ch.write(b, cache)
                y = b.conv3d(xin, 2 * C, (3, 1, 1), name="conv")
            _, _, n, h, w = y.shape
            y = b.reshape(y, (B, 2, C, n, h, w), name="split_time")
            y = b.contiguous(b.permute(y, (0, 2, 3, 1, 4, 5), name="interleave_t"), name="interleave")
            x = b.reshape(y, (B, C, 2 * n, h, w), name="time_x2")
        y = _frames_to_batch(b, x)
        with b.scope("resample"):
            with b.scope("0"):
                fp32 = get_dtype("fp32")
                if y.dtype != fp32:
                    y = b.upsample(b.cast(y, fp32, name="to_fp32"), 2, name="upsample")
                    y = b.cast(y, x.dtype, name="to_dtype")
                else:
                    y = b.upsample(y, 2, name="upsample")
            with b.scope("1"):
                y = b.conv2d(y, C // 2 if out is None else out, 3, padding=1, name="conv")
        return _batch_to_frames(b, y, B)


def _downsample(b, ch: _Chunk, x, mode: str, name: str):
    """WanResample in ``downsample2d`` / ``downsample3d`` mode: per frame ZeroPad2d(0,1,0,1)
    and Conv2d 3x3 stride 2; ``downsample3d`` then caches the last frame and, on the later
    chunks, runs time_conv 3x1x1 stride 2 over the cached frame plus the chunk."""
    B, C = x.shape[:2]
    with b.scope(name):
        y = _frames_to_batch(b, x)
        with b.scope("resample"):
            with b.scope("0"):
                y = b.pad(y, (0, 1, 0, 1), name="zero_pad")
            with b.scope("1"):
                y = b.conv2d(y, C, 3, stride=2, name="conv")
        x = _batch_to_frames(b, y, B)
        if mode == "downsample3d":
            with b.scope("time_conv"):
                if ch.first:
                    ch.write(b, b.contiguous(x, name="cache_clone"))
                    _unrun_conv_weights(b, ch, C, C, (3, 1, 1))
                else:
                    cache = b.contiguous(b.slice(x, 2, start=-1, name="cache_slice"), name="cache_clone")
                    xin = b.pad(b.concat([cache, x], dim=2, name="cat_cache"), (0,) * 6, name="pad")
                    ch.write(b, cache)
                    x = b.conv3d(xin, C, (3, 1, 1), stride=(2, 1, 1), name="conv")
        return x


def _head(b, ch: _Chunk, x, out: int):
    """norm_out, SiLU, conv_out (cached causal 3x3x3)."""
    y = b.silu(_rms(b, x, "norm_out"), name="silu_out")
    return _causal_conv(b, ch, y, out, "conv_out")


def _dup_up(b, ch: _Chunk, x, out: int, ft: int, fs: int):
    """DupUp3D (scope ``avg_shortcut``): repeat_interleave the channels, then move the
    factors into time and space (view, permute, copy, view); the first chunk keeps the last
    of the ``ft`` frames it makes from its one input frame. No tensor FLOPs."""
    with b.scope("avg_shortcut"):
        B, C, t, h, w = x.shape
        r = out * ft * fs * fs // C
        y = b.expand(b.reshape(x, (B, C, 1, t, h, w), name="channels"), (B, C, r, t, h, w), name="repeat")
        y = b.reshape(b.contiguous(y, name="repeat_interleave"), (B, out, ft, fs, fs, t, h, w), name="factors")
        y = b.contiguous(b.permute(y, (0, 1, 5, 2, 6, 3, 7, 4), name="permute"), name="copy")
        y = b.reshape(y, (B, out, t * ft, h * fs, w * fs), name="view")
        if ch.first and ft > 1:
            y = b.slice(y, 2, ft - 1, None, name="first_chunk")
        return y


def _avg_down(b, x, out: int, ft: int, fs: int):
    """AvgDown3D (scope ``avg_shortcut``): zero-pad time to a multiple of ``ft`` in front,
    move the factors into channels (view, permute, copy, view) and average groups of channels
    down to ``out``. No tensor FLOPs."""
    with b.scope("avg_shortcut"):
        B, C, t, h, w = x.shape
        pad_t = (ft - t % ft) % ft
        y = b.pad(x, (0, 0, 0, 0, pad_t, 0), name="pad")
        t += pad_t
        y = b.reshape(y, (B, C, t // ft, ft, h // fs, fs, w // fs, fs), name="factors")
        y = b.contiguous(b.permute(y, (0, 1, 3, 5, 7, 2, 4, 6), name="permute"), name="copy")
        g = C * ft * fs * fs // out
        y = b.reshape(y, (B, out, g, t // ft, h // fs, w // fs), name="groups")
        return b.reduce("mean", y, (2,), name="mean")


def _decoder_chunk(b, arch: VaeArch, ch: _Chunk, x, dtype):
    """WanDecoder3d on one chunk (scope ``decoder``)."""
    base, mult = arch.decoder_base_dim, arch.dim_mult
    dims = [base * u for u in (mult[-1],) + tuple(mult[::-1])]
    t_up = arch.temperal_downsample[::-1]
    with b.scope("decoder"):
        x = _causal_conv(b, ch, x, dims[0], "conv_in")
        x = _mid_block(b, ch, x)
        for i, out in enumerate(dims[1:]):
            up = i != len(mult) - 1
            with b.scope(f"up_blocks.{i}"):
                if arch.is_residual:
                    # WanResidualUpBlock: x.clone() feeds the DupUp3D shortcut
                    x_copy = b.contiguous(x, name="clone")
                for r in range(arch.num_res_blocks + 1):
                    x = _resblock(b, ch, x, out, f"resnets.{r}")
                if up and arch.is_residual:
                    x = _upsample(b, ch, x, "upsample3d" if t_up[i] else "upsample2d", dtype, "upsampler", out=out)
                    short = _dup_up(b, ch, x_copy, out, 2 if t_up[i] else 1, 2)
                    x = b.add(x, short, name="shortcut_add")
                elif up:
                    x = _upsample(b, ch, x, "upsample3d" if t_up[i] else "upsample2d", dtype, "upsamplers.0")
        return _head(b, ch, x, arch.out_channels)


def _encoder_chunk(b, arch: VaeArch, ch: _Chunk, x):
    """WanEncoder3d on one chunk (scope ``encoder``); ``down_blocks`` is the flat module
    list diffusers builds (residual blocks, then a resampler per level but the last)."""
    dims = [arch.base_dim * u for u in (1,) + tuple(arch.dim_mult)]
    with b.scope("encoder"):
        x = _causal_conv(b, ch, x, dims[0], "conv_in")
        idx = 0
        for i, out in enumerate(dims[1:]):
            if arch.is_residual:
                # WanResidualDownBlock: resnets, downsampler, + AvgDown3D of the block's input
                down = i != len(arch.dim_mult) - 1
                temporal = down and arch.temperal_downsample[i]
                with b.scope(f"down_blocks.{i}"):
                    x_copy = b.contiguous(x, name="clone")
                    for r in range(arch.num_res_blocks):
                        x = _resblock(b, ch, x, out, f"resnets.{r}")
                    if down:
                        x = _downsample(b, ch, x, "downsample3d" if temporal else "downsample2d", "downsampler")
                    x = b.add(x, _avg_down(b, x_copy, out, 2 if temporal else 1, 2 if down else 1),
                              name="shortcut_add")
                continue
            for _ in range(arch.num_res_blocks):
                x = _resblock(b, ch, x, out, f"down_blocks.{idx}")
                idx += 1
            if i != len(arch.dim_mult) - 1:
                mode = "downsample3d" if arch.temperal_downsample[i] else "downsample2d"
                x = _downsample(b, ch, x, mode, f"down_blocks.{idx}")
                idx += 1
        x = _mid_block(b, ch, x)
        return _head(b, ch, x, 2 * arch.z_dim)


def _stack_chunks(b, first, later, copies: int, name: str):
    """Concatenate the first chunk's output with ``copies`` outputs of the later-chunk body
    along time (the body's output stands for each later chunk; views, then one concat)."""
    B, C, n, h, w = later.shape
    rep = b.reshape(later, (B, C, 1, n, h, w), name=f"{name}_chunk")
    rep = b.expand(rep, (B, C, copies, n, h, w), name=f"{name}_chunks")
    rep = b.reshape(rep, (B, C, copies * n, h, w), name=f"{name}_later")
    return b.concat([first, rep], dim=2, name=name)


def _persist(b, stage: str, values) -> None:
    b.graph.meta.setdefault(PERSISTENT_KEY, {}).setdefault(stage, []).extend(values)


def _check_shape(what, shape, n):
    shape = tuple(shape)
    if len(shape) != n:
        raise ConfigError(f"vae {what}={shape}: needs {n} sizes")
    for s in shape:
        _posint(f"vae {what}", s)
    return shape


# ----------------------------------------------------------------------------- public builders


def build_decoder(b, arch: VaeArch | None, *, latent_shape, batch: int = 1, dtype="fp32") -> Value:
    """Lower the Wan-VAE decode (``arch``: its :class:`VaeArch`, None: Wan2.1) of a latent
    ``latent_shape`` = (z_dim, T, h, w) for ``batch`` videos at activation ``dtype`` into the
    current stage. Returns the clamped video Value, shape (batch, 3, 1 + 4(T − 1), 8h, 8w)."""
    arch = _arch(arch)
    z, T, h, w = _check_shape("latent_shape", latent_shape, 4)
    _posint("vae batch", batch)
    if z != arch.z_dim:
        raise ConfigError(f"vae latent_shape={tuple(latent_shape)}: {z} channels, the decoder takes z_dim={arch.z_dim}")
    zin = b.input("z", (batch, z, T, h, w), dtype)
    stage = b.graph.node(zin.producer).stage
    x = _conv1x1x1(b, zin, z, "post_quant_conv")
    with b.loop("chunk0", 1):
        first = _Chunk(first=True, alone=T == 1)
        out = _decoder_chunk(b, arch, first, b.slice(x, 2, 0, 1, name="latent_frame"), dtype)
    last = first
    if T > 1:
        with b.loop("chunks", T - 1):
            last = _Chunk(first=False, first_slots=first.slots)
            later = _decoder_chunk(b, arch, last, b.slice(x, 2, 1, 2, name="latent_frame"), dtype)
        out = _stack_chunks(b, out, later, T - 1, "video")
    _persist(b, stage, list(last.slots.values()) + [out])
    p = arch.patch_size
    if p > 1:
        # unpatchify: view (B, C, p, p, F, H, W), permute (0, 1, 4, 5, 3, 6, 2), copy, view
        B, Cp, F, H, W = out.shape
        y = b.reshape(out, (B, Cp // (p * p), p, p, F, H, W), name="unpatchify_view")
        y = b.contiguous(b.permute(y, (0, 1, 4, 5, 3, 6, 2), name="unpatchify_permute"), name="unpatchify_copy")
        out = b.reshape(y, (B, Cp // (p * p), F, H * p, W * p), name="unpatchify")
    return b.op("clamp", out, name="clamp", min=-1.0, max=1.0)


def build_encoder(b, arch: VaeArch | None, *, video_shape, batch: int = 1, dtype="fp32") -> Value:
    """Lower the Wan-VAE encode (``arch``: its :class:`VaeArch`, None: Wan2.1) of a video ``video_shape`` = (3, F, H, W) (F = 1 + 4k) for
    ``batch`` videos at activation ``dtype`` into the current stage. Returns the latent
    mean Value (what ``latent_dist.mode()`` returns), shape (batch, z_dim, 1 + (F − 1)/4,
    ⌊H/8⌋, ⌊W/8⌋)."""
    arch = _arch(arch)
    c, F, H, W = _check_shape("video_shape", video_shape, 4)
    _posint("vae batch", batch)
    if c != arch.video_channels:
        raise ConfigError(f"vae video_shape={tuple(video_shape)}: {c} channels, the encoder takes "
                          f"{arch.video_channels}")
    n = latent_frames(F, arch)
    t = arch.temporal_factor
    p = arch.patch_size
    if H % p or W % p:
        raise ConfigError(f"vae video_shape={tuple(video_shape)}: height and width must be multiples of "
                          f"vae.patch_size={p}")
    sf = arch.spatial_factor
    if arch.is_residual and (H % sf or W % sf):
        # AvgDown3D views each level's H and W in pairs: an odd size fails in the real module
        raise ConfigError(f"vae video_shape={tuple(video_shape)}: the residual Wan2.2-VAE encoder needs height and "
                          f"width multiples of {sf}; allowed nearby: {H // sf * sf or sf} or {(H // sf + 1) * sf} "
                          f"(height), {W // sf * sf or sf} or {(W // sf + 1) * sf} (width)")
    xin = b.input("video", (batch, c, F, H, W), dtype)
    stage = b.graph.node(xin.producer).stage
    if p > 1:
        # patchify: view (B, C, F, H/p, p, W/p, p), permute (0, 1, 6, 4, 2, 3, 5), copy, view
        y = b.reshape(xin, (batch, c, F, H // p, p, W // p, p), name="patchify_view")
        y = b.contiguous(b.permute(y, (0, 1, 6, 4, 2, 3, 5), name="patchify_permute"), name="patchify_copy")
        xin = b.reshape(y, (batch, c * p * p, F, H // p, W // p), name="patchify")
    with b.loop("chunk0", 1):
        first = _Chunk(first=True, alone=n == 1)
        out = _encoder_chunk(b, arch, first, b.slice(xin, 2, 0, 1, name="frames"))
    last = first
    if n > 1:
        with b.loop("chunks", n - 1):
            last = _Chunk(first=False, first_slots=first.slots)
            later = _encoder_chunk(b, arch, last, b.slice(xin, 2, 1, 1 + t, name="frames"))
        out = _stack_chunks(b, out, later, n - 1, "latent")
    _persist(b, stage, list(last.slots.values()) + [out])
    enc = _conv1x1x1(b, out, 2 * arch.z_dim, "quant_conv")
    with b.scope("latent_dist"):
        mean, logvar = b.chunk(enc, 2, dim=1, name="mean_logvar")
        logvar = b.op("clamp", logvar, name="clamp_logvar", min=-30.0, max=20.0)
        b.exp(b.scale(logvar, 0.5, name="half_logvar"), name="std")
        b.exp(logvar, name="var")
    return mean


#: the decode a transform lowers again per tile or per device band (wanir/lowerings.py)
DECODER = lowerings.register("wan_vae.decoder", build_decoder)
