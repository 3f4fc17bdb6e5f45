"""The Wan2.1 diffusion transformer (diffusers ``WanTransformer3DModel``) lowered into the IR.

One call of :func:`build` is one forward of the transformer (one denoising call: the
pipeline runs it steps × 2 times with classifier-free guidance). The graph follows the
module as it runs in eager PyTorch, op by op:

- ``rope``: the rotary tables (cos and sin, ``(1, L, 1, head_dim)`` fp32) cut from the
  ``(rope_max_seq_len, head_dim)`` buffers and concatenated per axis (t/h/w split 44/42/42
  for head_dim 128);
- ``patch_embedding``: Conv3d with kernel = stride = patch size, then flatten, transpose
  and a contiguous copy to ``(B, L, D)``;
- ``condition_embedder``: the sinusoidal timestep projection as elementwise ops (fp32),
  ``time_embedder`` (Linear, SiLU, Linear; fp32 as diffusers keeps it), a cast to the
  compute dtype, SiLU and ``time_proj`` to 6·D, the text MLP (Linear, GELU-tanh, Linear)
  and, for image-to-video, the image MLP (fp32 LayerNorm, Linear, exact GELU, Linear,
  fp32 LayerNorm) whose tokens are concatenated in front of the text tokens;
- ``blocks`` (one copy, ``repeat`` ×num_layers): modulation from ``scale_shift_table``,
  fp32 LayerNorms with the casts diffusers makes, self-attention (q/k/v, RMSNorm across
  heads, rotary embedding on q and k, SDPA, out projection), gated fp32 residual,
  cross-attention behind an affine fp32 LayerNorm (plus the image branch for I2V), a plain
  residual, the GELU-tanh FFN and a gated fp32 residual;
- ``norm_out`` + output modulation + ``proj_out`` + unpatchify (reshape, permute, copy).

Scope names follow the diffusers module paths (``condition_embedder/time_embedder``,
``blocks/attn1/to_q``, ``blocks/ffn/net.0/proj``), so per-module counts compare directly
with ``FlopCounterMode``'s (``blocks.0.attn1`` ↔ ``blocks/attn1``).

**Variants.** ``variant="diffusers"`` (above) or ``variant="official"``: the same module as
the official Wan code (``wan/modules/model.py``) executes it under bf16 autocast — the
residual stream and the modulation stay fp32 (no ``type_as`` back), every linear whose input
is fp32 gets its autocast input cast (``*_autocast``), the q/k RMSNorms are unfused
(``float``, ``pow``, ``mean``, ``add_eps``, ``rsqrt``, ``mul``, ``type_as``, ``mul_weight``;
the weight multiply promotes to the weight's dtype), RoPE runs in complex128 (the
``rope_apply`` of each of q and k: ``to_float64``, a per-call frequency table concatenated
from three expanded tables, the complex multiply as a ``rope`` op on the real view,
``cat_pad`` and ``stack`` copies, ``float``), and each attention call goes through the
``flash_attention`` wrapper (``q_half``; for self-attention ``k_cat``, ``k_half``,
``v_cat``; ``out_type`` back to the query's dtype). The output head runs in fp32. Scope and
weight names stay the diffusers ones, so the two variants compare node for node; tensor
FLOPs, vector FLOPs and parameters are the same, bytes are not (docs/runtimes.md).

Activations run at ``compute_dtype`` except where diffusers computes in fp32 (the norms,
modulation, gated residuals, rotary products and the time embedder). Every weight is
stored at the builder's current weight dtype; diffusers keeps ``time_embedder``, the
``scale_shift_table``\\ s and the ``norm1/norm2/norm3`` affine weights in fp32 when it loads
a bf16 checkpoint (see docs/lowering.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from wanir.builder import GraphBuilder
from wanir.dtypes import get_dtype
from wanir.errors import ConfigError
from wanir.graph import Value

from .components import check_family, check_positive, positive_int

#: text tokens diffusers' attention processor assumes when it splits image from text tokens
I2V_TEXT_CONTEXT = 512
#: image tokens of the CLIP image encoder (ViT-H/14 at 224: 256 patches + 1 class token)
DEFAULT_IMAGE_LEN = 257
#: image-embedder LayerNorm epsilon (diffusers' FP32LayerNorm default)
IMAGE_NORM_EPS = 1e-5
TIMESTEP_MAX_PERIOD = 10000
#: lowering variants: what the diffusers module and the official Wan code execute
VARIANTS = ("diffusers", "official")


@dataclass(frozen=True)
class DitArch:
    """The Wan DiT hyperparameters that shape the graph (diffusers' argument names), checked
    on construction: the ``dit`` group as :func:`wanir.resolve.resolve` reads it once."""

    COMPONENT: ClassVar[str] = "dit"
    FAMILY: ClassVar[str] = "wan_dit"
    MODULE: ClassVar[str] = "wan_dit"
    WHAT: ClassVar[str] = "Wan DiT"

    patch_size: tuple
    num_attention_heads: int
    attention_head_dim: int
    in_channels: int
    out_channels: int
    text_dim: int
    freq_dim: int
    ffn_dim: int
    num_layers: int
    family: str = "wan_dit"
    cross_attn_norm: bool = True
    qk_norm: str = "rms_norm_across_heads"
    eps: float = 1e-6
    image_dim: int | None = None
    added_kv_proj_dim: int | None = None
    rope_max_seq_len: int = 1024

    def __post_init__(self):
        check_family(self)
        p = self.patch_size
        if not isinstance(p, (tuple, list)) or len(p) != 3 or any(
                isinstance(x, bool) or not isinstance(x, int) or x <= 0 for x in p):
            raise ConfigError(f"dit.patch_size={p!r}: must be three positive ints (t, h, w)")
        object.__setattr__(self, "patch_size", tuple(p))
        check_positive(self, ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
                              "text_dim", "freq_dim", "ffn_dim", "num_layers", "rope_max_seq_len"))
        if not isinstance(self.cross_attn_norm, bool):
            raise ConfigError(f"dit.cross_attn_norm={self.cross_attn_norm!r}: allowed true, false")
        if self.qk_norm != "rms_norm_across_heads":
            raise ConfigError(f"dit.qk_norm={self.qk_norm!r}: only 'rms_norm_across_heads' is modeled "
                              "(the only value WanTransformer3DModel implements)")
        if (self.image_dim is None) != (self.added_kv_proj_dim is None):
            raise ConfigError("dit.image_dim and dit.added_kv_proj_dim must be set together (image-to-video) "
                              f"or both null; got {self.image_dim!r} and {self.added_kv_proj_dim!r}")
        for k in ("image_dim", "added_kv_proj_dim"):
            if getattr(self, k) is not None:
                positive_int(f"dit.{k}", getattr(self, k))
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
            raise ConfigError(f"dit.eps={eps!r}: must be a number in (0, 1]")
        object.__setattr__(self, "eps", float(eps))

    @property
    def i2v(self) -> bool:
        """Whether the DiT has the image-to-video cross-attention branch (image_dim set)."""
        return self.added_kv_proj_dim is not None


def _arch(arch) -> DitArch:
    if not isinstance(arch, DitArch):
        raise TypeError(f"wan_dit lowers a DitArch (wanir.resolve.component('dit', ...)), got {type(arch).__name__}")
    return arch


def dit_tokens(arch: DitArch, latent_shape) -> int:
    """Number of patch tokens L the DiT attends over for a latent ``(C, T, H, W)`` (an int):
    ``(T // pt) · (H // ph) · (W // pw)``, floored like the strided Conv3d."""
    pt, ph, pw = _arch(arch).patch_size
    _, t, h, w = (int(x) for x in latent_shape)
    return (t // pt) * (h // ph) * (w // pw)


def _to(b: GraphBuilder, x: Value, dtype, name="cast") -> Value:
    """``x.to(dtype)`` / ``x.float()`` / ``type_as``: a copy only when the dtype changes."""
    dtype = get_dtype(dtype)
    return x if x.dtype == dtype else b.cast(x, dtype, name=name)


def _rope_tables(b, arch, grid, head_dim) -> tuple[Value, Value]:
    """WanRotaryPosEmbed.forward: (cos, sin), each (1, L, 1, head_dim) fp32."""
    ppf, pph, ppw = grid
    max_len = arch.rope_max_seq_len
    if max(grid) > max_len:
        raise ConfigError(f"dit: a patch grid of {ppf}×{pph}×{ppw} exceeds rope_max_seq_len={max_len} "
                          "positions along one axis (diffusers' rotary tables hold that many)")
    h_dim = w_dim = 2 * (head_dim // 6)
    t_dim = head_dim - h_dim - w_dim
    bounds = ((0, t_dim), (t_dim, t_dim + h_dim), (t_dim + h_dim, head_dim))
    views = ((ppf, 1, 1), (1, pph, 1), (1, 1, ppw))
    out = []
    with b.scope("rope"):
        for table in ("freqs_cos", "freqs_sin"):
            buf = b.input(table, (max_len, head_dim), "fp32")      # non-persistent buffer, built at init
            parts = []
            for (lo, hi), n, view in zip(bounds, grid, views):
                x = b.slice(b.slice(buf, 1, lo, hi, name=f"{table}_split"), 0, 0, n, name=f"{table}_rows")
                x = b.reshape(x, (*view, hi - lo), name=f"{table}_view")
                parts.append(b.expand(x, (ppf, pph, ppw, hi - lo), name=f"{table}_expand"))
            x = b.concat(parts, dim=-1, name=f"{table}_cat")
            out.append(b.reshape(x, (1, ppf * pph * ppw, 1, head_dim), name=table))
    return out[0], out[1]


def _apply_rope(b, x, cos, sin, dtype, tag):
    """apply_rotary_emb of WanAttnProcessor on x (B, L, heads, hd): fp32 products of the
    even/odd halves with cos[..., 0::2] / sin[..., 1::2], written back at the input dtype.
    The two strided ``copy_`` into one buffer are the two casts plus the interleave."""
    bsz, L, h, hd = x.shape
    pairs = b.reshape(x, (bsz, L, h, hd // 2, 2), name=f"{tag}_pairs")
    x1 = b.reshape(b.slice(pairs, -1, 0, 1, name=f"{tag}_x1"), (bsz, L, h, hd // 2), name=f"{tag}_x1_view")
    x2 = b.reshape(b.slice(pairs, -1, 1, 2, name=f"{tag}_x2"), (bsz, L, h, hd // 2), name=f"{tag}_x2_view")
    c = b.slice(cos, -1, 0, None, 2, name=f"{tag}_cos")
    s = b.slice(sin, -1, 1, None, 2, name=f"{tag}_sin")
    even = b.sub(b.mul(x1, c, name=f"{tag}_x1cos"), b.mul(x2, s, name=f"{tag}_x2sin"), name=f"{tag}_even")
    odd = b.add(b.mul(x1, s, name=f"{tag}_x1sin"), b.mul(x2, c, name=f"{tag}_x2cos"), name=f"{tag}_odd")
    even = b.reshape(_to(b, even, dtype, name=f"{tag}_even_copy"), (bsz, L, h, hd // 2, 1), name=f"{tag}_even_view")
    odd = b.reshape(_to(b, odd, dtype, name=f"{tag}_odd_copy"), (bsz, L, h, hd // 2, 1), name=f"{tag}_odd_view")
    out = b.concat([even, odd], dim=-1, name=f"{tag}_interleave")
    return b.reshape(out, (bsz, L, h, hd), name=f"{tag}_rotated")


def _lin(b, x, out, off, compute, name, **kw):
    """A linear; in the official variant an fp32 input is first cast by autocast (one cast
    per linear call: autocast caches only leaf weights)."""
    if off and x.dtype != compute:
        x = b.cast(x, compute, name=f"{name}_autocast")
    return b.linear(x, out, name=name, **kw)


def _rms(b, x, eps, off, name):
    """A q/k RMSNorm: diffusers' fused module, or WanRMSNorm unfused
    (``self._norm(x.float()).type_as(x) * self.weight``)."""
    if not off:
        return b.rmsnorm(x, eps=eps, name=name)
    with b.scope(name):
        h = _to(b, x, "fp32", name="float")
        r = b.reduce("mean", b.square(h, name="pow"), -1, keepdim=True, name="mean")
        r = b.rsqrt(b.add_scalar(r, eps, name="add_eps"), name="rsqrt")
        h = _to(b, b.mul(h, r, name="mul"), x.dtype, name="type_as")
        return b.mul(h, b.parameter("weight", (x.shape[-1],)), name="mul_weight")


def _rope_table_official(b, freqs, grid, head_dim, tag):
    """The per-call complex128 table of ``rope_apply``: three expanded slices of the
    (1024, head_dim/2) complex128 ``freqs`` (held as its fp64 real view, last dim head_dim)
    concatenated to (1, L, 1, head_dim)."""
    f, h, w = grid
    c = head_dim // 2
    split = (c - 2 * (c // 3), c // 3, c // 3)
    views = ((f, 1, 1), (1, h, 1), (1, 1, w))
    parts, lo = [], 0
    for n, (sz, view) in enumerate(zip(split, views)):
        x = b.slice(b.slice(freqs, 1, 2 * lo, 2 * (lo + sz), name=f"{tag}_split"), 0, 0, grid[n], name=f"{tag}_rows")
        x = b.reshape(x, (*view, 2 * sz), name=f"{tag}_view")
        parts.append(b.expand(x, (f, h, w, 2 * sz), name=f"{tag}_expand"))
        lo += sz
    x = b.concat(parts, dim=-1, name=f"{tag}_cat")
    return b.reshape(x, (1, f * h * w, 1, head_dim), name=f"{tag}_table")


def _apply_rope_official(b, x, freqs, grid, tag):
    """rope_apply on x (B, L, heads, hd): complex128 arithmetic on every call."""
    with b.scope(tag):
        table = _rope_table_official(b, freqs, grid, x.shape[-1], "freqs")
        h = b.cast(x, "fp64", name="to_float64")                 # view_as_complex is a view
        h = b.rope(h, table, name="complex_mul")                  # x_i * freqs_i; view_as_real, flatten: views
        h = b.contiguous(h, name="cat_pad")                       # torch.cat([x_i, x[i, seq_len:]])
        h = b.contiguous(h, name="stack")                         # torch.stack(output)
        return b.cast(h, "fp32", name="float")


def _flash_official(b, q, k, v, compute, name, k_lens: bool):
    """wan/modules/attention.py::flash_attention on (B, S, heads, hd): q (and k, v) cast to
    the half dtype, k and v copied by ``torch.cat`` over ``k_lens`` when given, the kernel,
    and the output cast back to q's dtype; returns (B, Lq, D)."""
    bsz, lq, h, hd = q.shape
    out_dtype = q.dtype
    with b.scope(f"{name}_wrapper"):
        qh = _to(b, q, compute, name="q_half")
        if k_lens:
            k = b.contiguous(k, name="k_cat")
            v = b.contiguous(v, name="v_cat")
        kh = _to(b, k, compute, name="k_half")
        vh = _to(b, v, compute, name="v_half")
    o = b.sdpa(b.transpose(qh, 1, 2, name=f"{name}_q_t"), b.transpose(kh, 1, 2, name=f"{name}_k_t"),
               b.transpose(vh, 1, 2, name=f"{name}_v_t"), name=name, scale=1.0 / math.sqrt(hd))
    o = b.transpose(o, 1, 2, name=f"{name}_out_t")
    with b.scope(f"{name}_wrapper"):
        o = _to(b, o, out_dtype, name="out_type")
    return b.reshape(o, (bsz, lq, h * hd), name=f"{name}_out")


def _heads(b, x, heads, name):
    """``x.unflatten(2, (heads, -1))``: (B, S, D) -> (B, S, heads, hd), a view."""
    bsz, s, d = x.shape
    return b.reshape(x, (bsz, s, heads, d // heads), name=name)


def _attention(b, q, k, v, name):
    """dispatch_attention_fn (native SDPA) on (B, S, heads, hd) operands, then flatten back to
    (B, Lq, D): the permutes are views, the flatten of the permuted result is a copy."""
    bsz, lq, h, hd = q.shape
    o = b.sdpa(b.transpose(q, 1, 2, name=f"{name}_q_t"), b.transpose(k, 1, 2, name=f"{name}_k_t"),
               b.transpose(v, 1, 2, name=f"{name}_v_t"), name=name, scale=1.0 / math.sqrt(hd))
    o = b.contiguous(b.transpose(o, 1, 2, name=f"{name}_out_t"), name=f"{name}_flatten")
    return b.reshape(o, (bsz, lq, h * hd), name=f"{name}_out")


def _modulated_norm(b, x, shift, scale, eps, dtype, name):
    """(norm(x.float()) * (1 + scale) + shift).type_as(x) with a non-affine fp32 LayerNorm;
    ``dtype`` the result's dtype (the official code keeps it fp32)."""
    with b.scope(name):
        n = b.layernorm(_to(b, x, "fp32", name="float"), affine=False, eps=eps, name="layer_norm")
    n = b.mul(n, b.add_scalar(scale, 1.0, name=f"{name}_one_plus_scale"), name=f"{name}_scale")
    n = b.add(n, shift, name=f"{name}_shift")
    return _to(b, n, dtype, name=f"{name}_type_as")


def _block(b, arch, x, ctx, tproj, rope, dtype, dims, off=False):
    """One WanTransformerBlock (built inside the ``blocks`` repeat scope). ``rope`` is
    (cos, sin) for diffusers, (freqs, grid) for the official variant (``off``)."""
    D, heads, F, eps = dims
    i2v = arch.i2v
    res = get_dtype("fp32") if off else dtype           # residual stream dtype
    table = b.parameter("scale_shift_table", (1, 6, D))
    if len(tproj.shape) == 4:
        # per-token timestep: (1, 1, 6, D) + (B, L, 6, D), chunked on dim 2 and squeezed to (B, L, D)
        mod = b.add(b.reshape(table, (1, 1, 6, D), name="table_unsqueeze"),
                    _to(b, tproj, "fp32", name="temb_float"), name="modulation")
        bsz, L = tproj.shape[:2]
        mods = [b.reshape(m, (bsz, L, D), name=f"modulation_squeeze{i}")
                for i, m in enumerate(b.chunk(mod, 6, dim=2, name="modulation_chunk"))]
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = mods
    else:
        mod = b.add(table, _to(b, tproj, "fp32", name="temb_float"), name="modulation")
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = b.chunk(mod, 6, dim=1, name="modulation_chunk")

    # 1. self-attention
    h = _modulated_norm(b, x, shift_msa, scale_msa, eps, res, "norm1")
    with b.scope("attn1"):
        q = _lin(b, h, D, off, dtype, "to_q")
        k = _lin(b, h, D, off, dtype, "to_k")
        v = _lin(b, h, D, off, dtype, "to_v")
        q = _rms(b, q, eps, off, "norm_q")
        k = _rms(b, k, eps, off, "norm_k")
        q, k, v = (_heads(b, t, heads, f"{n}_heads") for t, n in ((q, "q"), (k, "k"), (v, "v")))
        if off:
            q = _apply_rope_official(b, q, rope[0], rope[1], "rope_q")
            k = _apply_rope_official(b, k, rope[0], rope[1], "rope_k")
            a = _flash_official(b, q, k, v, dtype, "sdpa", k_lens=True)
        else:
            q = _apply_rope(b, q, rope[0], rope[1], dtype, "rope_q")
            k = _apply_rope(b, k, rope[0], rope[1], dtype, "rope_k")
            a = _attention(b, q, k, v, "sdpa")
        a = _lin(b, a, D, off, dtype, "to_out.0")
    gated = b.mul(a, gate_msa, name="gate_msa")
    x = _to(b, b.add(_to(b, x, "fp32", name="residual1_float"), gated, name="residual1"), res,
            name="residual1_type_as")

    # 2. cross-attention
    with b.scope("norm2"):
        h = _to(b, x, "fp32", name="float")
        if arch.cross_attn_norm:
            h = b.layernorm(h, affine=True, eps=eps, name="layer_norm")
    h = _to(b, h, res, name="norm2_type_as")
    with b.scope("attn2"):
        txt = ctx
        if i2v:
            s = ctx.shape[1]
            cut = s - I2V_TEXT_CONTEXT      # diffusers hard-codes 512 text tokens here
            img = b.slice(ctx, 1, 0, cut, name="image_context")
            txt = b.slice(ctx, 1, cut, None, name="text_context")
        q = _lin(b, h, D, off, dtype, "to_q")
        k = _lin(b, txt, D, off, dtype, "to_k")
        v = _lin(b, txt, D, off, dtype, "to_v")
        q = _rms(b, q, eps, off, "norm_q")
        k = _rms(b, k, eps, off, "norm_k")
        q, k, v = (_heads(b, t, heads, f"{n}_heads") for t, n in ((q, "q"), (k, "k"), (v, "v")))
        a_img = None
        if i2v:
            kd = arch.added_kv_proj_dim
            ki = _lin(b, img, D, off, dtype, "add_k_proj", in_features=kd)
            vi = _lin(b, img, D, off, dtype, "add_v_proj", in_features=kd)
            ki = _rms(b, ki, eps, off, "norm_added_k")
            ki, vi = _heads(b, ki, heads, "k_img_heads"), _heads(b, vi, heads, "v_img_heads")
            a_img = (_flash_official(b, q, ki, vi, dtype, "sdpa_img", k_lens=False) if off
                     else _attention(b, q, ki, vi, "sdpa_img"))
        a = _flash_official(b, q, k, v, dtype, "sdpa", k_lens=True) if off else _attention(b, q, k, v, "sdpa")
        if a_img is not None:
            a = b.add(a, a_img, name="add_image_attention")
        a = _lin(b, a, D, off, dtype, "to_out.0")
    x = b.add(x, a, name="residual2")

    # 3. feed-forward
    h = _modulated_norm(b, x, c_shift, c_scale, eps, res, "norm3")
    with b.scope("ffn"):
        with b.scope("net.0"):
            h = b.gelu_tanh(_lin(b, h, F, off, dtype, "proj"), name="gelu_tanh")
        f = _lin(b, h, D, off, dtype, "net.2")
    # diffusers: ff_output.float() * c_gate_msa; official: y * e[5] promotes in the multiply
    f = b.mul(f if off else _to(b, f, "fp32", name="ffn_float"), c_gate, name="c_gate_msa")
    return _to(b, b.add(_to(b, x, "fp32", name="residual3_float"), f, name="residual3"), res,
               name="residual3_type_as")


def build(b: GraphBuilder, arch: DitArch, *, latent_shape, batch: int, text_len: int, compute_dtype,
          image_len: int | None = None, collapse_blocks: bool = True, variant: str = "diffusers",
          timestep_per_token: bool = False) -> Value:
    """Lower one forward of ``WanTransformer3DModel`` into ``b`` (inside the stage the caller
    opened) and return the predicted-velocity Value ``(batch, out_channels, T', H', W')``.

    ``arch``: the DiT's :class:`DitArch`. ``latent_shape`` is ``(C, T, H, W)`` of the latents
    (C = in_channels: 16 for T2V, 36 for I2V); ``text_len`` the text tokens (512 in the
    pipelines); ``compute_dtype`` the activation dtype. When ``arch.image_dim`` is set (image-to-video) the graph also takes
    ``image_embeds`` of shape ``(batch, image_len, image_dim)`` (``image_len`` default 257).
    Inputs made here: ``latents``, ``timestep`` (fp32), ``text_embeds``, [``image_embeds``].

    The transformer blocks are one ``blocks`` scope repeated ×num_layers; with
    ``collapse_blocks=False`` they are drawn out as ``blocks.0`` … ``blocks.{n-1}`` (same
    totals, n times the nodes). ``variant``: ``diffusers`` or ``official`` (see the module
    docstring).

    ``timestep_per_token=True`` feeds a ``(batch, L)`` timestep, as diffusers' TI2V pipelines
    do and the official Wan2.2 code does for every model: the sinusoidal projection, the time
    embedder and ``time_proj`` run once per token (B·L rows instead of B), and the modulation
    vectors are per token."""
    if variant not in VARIANTS:
        raise ConfigError(f"runtime.dit_lowering={variant!r}: allowed: {', '.join(VARIANTS)}")
    off = variant == "official"
    arch = _arch(arch)
    dtype = get_dtype(compute_dtype)
    pt, ph, pw = arch.patch_size
    heads, hd = arch.num_attention_heads, arch.attention_head_dim
    D, F = heads * hd, arch.ffn_dim
    c_in, c_out = arch.in_channels, arch.out_channels
    eps = arch.eps
    freq_dim, text_dim = arch.freq_dim, arch.text_dim
    layers = arch.num_layers
    image_dim = arch.image_dim
    if len(tuple(latent_shape)) != 4:
        raise ConfigError(f"dit latent_shape={tuple(latent_shape)!r}: must be (C, T, H, W)")
    C, T, H, W = (int(v) for v in latent_shape)
    if C != c_in:
        raise ConfigError(f"dit latent_shape has {C} channels; dit.in_channels is {c_in}")
    grid = (T // pt, H // ph, W // pw)
    if min(grid) < 1:
        raise ConfigError(f"dit latent_shape {tuple(latent_shape)}: T, H, W must be at least the patch size "
                          f"{(pt, ph, pw)}")
    if batch < 1 or text_len < 1:
        raise ConfigError(f"dit: batch={batch} and text_len={text_len} must be positive")
    L = grid[0] * grid[1] * grid[2]
    if image_dim is not None:
        image_len = DEFAULT_IMAGE_LEN if image_len is None else int(image_len)
        s = image_len + text_len
        if image_len < 1 or len(range(s)[:s - I2V_TEXT_CONTEXT]) == 0:
            raise ConfigError(f"dit: image_len={image_len} with text_len={text_len}: diffusers takes the first "
                              f"(image_len + text_len - {I2V_TEXT_CONTEXT}) context tokens as image tokens, "
                              "which must be at least one")

    latents = b.input("latents", (batch, C, T, H, W), "fp32" if off else dtype)
    rows = batch * L if timestep_per_token else batch       # rows the time embedding runs on
    if timestep_per_token:
        timestep = b.reshape(b.input("timestep", (batch, L), "fp32"), (rows,), name="timestep_flatten")
    else:
        timestep = b.input("timestep", (batch,), "fp32")
    text = b.input("text_embeds", (batch, text_len, text_dim), dtype)
    image = b.input("image_embeds", (batch, image_len, int(image_dim)), dtype) if image_dim is not None else None

    if off:      # complex128 (1024, hd/2) table, held as its fp64 real view
        rope = (b.input("freqs", (arch.rope_max_seq_len, hd), "fp64"), grid)
        if max(grid) > rope[0].shape[0]:
            raise ConfigError(f"dit: a patch grid of {grid[0]}×{grid[1]}×{grid[2]} exceeds the "
                              f"{rope[0].shape[0]} rotary positions per axis")
    else:
        rope = _rope_tables(b, arch, grid, hd)

    with b.scope("patch_embedding"):
        if off:
            latents = b.cast(latents, dtype, name="conv3d_autocast")
        x = b.conv3d(latents, D, (pt, ph, pw), stride=(pt, ph, pw), name="conv3d")
    x = b.transpose(b.reshape(x, (batch, D, L), name="flatten"), 1, 2, name="transpose")
    x = b.contiguous(x, name="contiguous")

    with b.scope("condition_embedder"):
        half = freq_dim // 2
        with b.scope("timesteps_proj"):
            e = b.input("arange", (half,), "fp32")      # torch.arange made inside the forward
            e = b.scale(e, -math.log(TIMESTEP_MAX_PERIOD), name="exponent")
            e = b.scale(e, 1.0 / half, name="exponent_div")
            e = b.exp(e, name="exp")
            e = b.mul(b.reshape(timestep, (rows, 1), name="t_col"), b.reshape(e, (1, half), name="freq_row"),
                      name="t_freqs")
            e = b.scale(e, 1.0, name="scale")
            e = b.concat([b.sin(e, name="sin"), b.cos(e, name="cos")], dim=-1, name="sin_cos")
            e = b.concat([b.slice(e, 1, half, None, name="cos_half"), b.slice(e, 1, 0, half, name="sin_half")],
                         dim=-1, name="flip_sin_to_cos")
        if timestep_per_token:
            e = b.reshape(e, (batch, L, 2 * half), name="timestep_unflatten")
        with b.scope("time_embedder"):        # fp32 in diffusers (_keep_in_fp32_modules)
            t = b.linear(e, D, name="linear_1")
            t = b.silu(t, name="act")
            t = b.linear(t, D, name="linear_2")
        temb = t if off else _to(b, t, dtype, name="temb_type_as")    # official: time_projection in fp32
        tproj = b.linear(b.silu(temb, name="act_fn"), 6 * D, name="time_proj")
        with b.scope("text_embedder"):
            c = b.linear(text, D, name="linear_1")
            c = b.gelu_tanh(c, name="act_1")
            c = b.linear(c, D, name="linear_2")
        if image is not None:
            with b.scope("image_embedder"):
                with b.scope("norm1"):
                    i = b.layernorm(_to(b, image, "fp32", name="float"), eps=IMAGE_NORM_EPS, name="layer_norm")
                    i = _to(b, i, dtype, name="to_dtype")
                with b.scope("ff"):
                    with b.scope("net.0"):
                        i = b.gelu(b.linear(i, int(image_dim), name="proj"), name="gelu")
                    i = b.linear(i, D, name="net.2")
                with b.scope("norm2"):
                    i = b.layernorm(_to(b, i, "fp32", name="float"), eps=IMAGE_NORM_EPS, name="layer_norm")
                    i = _to(b, i, dtype, name="to_dtype")
    tproj = b.reshape(tproj, (batch, L, 6, D) if timestep_per_token else (batch, 6, D),
                      name="timestep_proj_unflatten")
    if image is not None:
        c = b.concat([i, c], dim=1, name="context_concat")

    if off:      # the fp32 residual stream (the first block's x + y * e promotes it)
        x = b.cast(x, "fp32", name="residual_float")
    if collapse_blocks:
        with b.repeat("blocks", layers):
            x = _block(b, arch, x, c, tproj, rope, dtype, (D, heads, F, eps), off)
    else:
        for i in range(layers):
            with b.scope(f"blocks.{i}"):
                x = _block(b, arch, x, c, tproj, rope, dtype, (D, heads, F, eps), off)

    table = b.parameter("scale_shift_table", (1, 2, D))
    if timestep_per_token:
        mod = b.add(b.reshape(table, (1, 1, 2, D), name="table_unsqueeze"),
                    b.reshape(temb, (batch, L, 1, D), name="temb_unsqueeze"), name="output_modulation")
        shift, scale = (b.reshape(m, (batch, L, D), name=f"output_modulation_squeeze{i}")
                        for i, m in enumerate(b.chunk(mod, 2, dim=2, name="output_modulation_chunk")))
    else:
        mod = b.add(table, b.reshape(temb, (batch, 1, D), name="temb_unsqueeze"), name="output_modulation")
        shift, scale = b.chunk(mod, 2, dim=1, name="output_modulation_chunk")
    x = _modulated_norm(b, x, shift, scale, eps, "fp32" if off else dtype, "norm_out")
    x = b.linear(x, c_out * pt * ph * pw, name="proj_out")      # official: Head under autocast(fp32)
    x = b.reshape(x, (batch, *grid, pt, ph, pw, c_out), name="unpatchify_view")
    x = b.contiguous(b.permute(x, (0, 7, 1, 4, 2, 5, 3, 6), name="unpatchify_permute"), name="unpatchify_flatten")
    return b.reshape(x, (batch, c_out, grid[0] * pt, grid[1] * ph, grid[2] * pw), name="output")
