"""CLIP vision tower (Wan2.1 image-to-video's ViT-H/14 image encoder): lowers
``transformers.CLIPVisionModel`` as the pipeline runs it.

The pipeline calls the model with ``output_hidden_states=True`` and keeps
``hidden_states[-2]``, the output of the penultimate layer, so that is the Value this
frontend returns. Every layer still runs, and so does ``post_layernorm`` on the class
token (the module's pooled output), so the graph holds them too: the FLOPs and
parameters are those of the whole module.

Structure (scopes mirror the module's paths):

- ``embeddings``: ``patch_embedding`` (Conv2d, kernel = stride = patch, no bias), flatten to
  patch tokens, the learned ``class_embedding`` prepended, plus ``position_embedding``
  (a lookup of the position ids).
- ``pre_layrnorm`` (LayerNorm; the spelling is the module's).
- ``encoder/layers`` (a repeat of ``num_hidden_layers - 1`` layers) and
  ``encoder/layers.{last}``: LayerNorm, q/k/v projections with bias, SDPA with scale
  head_dim^-0.5 and no mask, ``out_proj``, residual; LayerNorm, ``mlp`` (fc1, activation,
  fc2), residual. The last layer is its own scope because its output is not the value
  returned.
- ``post_layernorm`` on the class token.

``num_layers_run`` (null: all layers) is the number of layers the pipeline runs. The
official Wan image-to-video pipeline calls ``visual(..., use_31_block=True)``: it runs the
first 31 of the 32 layers and returns their output, with no post-norm and no projection.
With ``num_layers_run`` below ``num_hidden_layers`` the graph holds the embeddings, the
pre-norm and that many layers (a repeat), and returns the last one's output; the layers that
do not run are not in the graph (nor their parameters).

For an input size other than the configured ``image_size`` transformers resizes the
position table by bicubic interpolation; the graph stands it in by a lookup of one row
per token (the same output shape, zero FLOPs in both).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from wanir.dtypes import get_dtype
from wanir.errors import ConfigError
from wanir.graph import Value

from .components import check_family, check_positive, positive_int

# hidden_act -> op kind ("gelu" is the exact erf GELU; "gelu_new"/"gelu_pytorch_tanh" the tanh form)
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
               "silu": "silu"}


@dataclass(frozen=True)
class ClipArch:
    """The CLIP vision tower's hyperparameters (transformers' ``CLIPVisionConfig`` names),
    checked on construction: the ``image_encoder`` group as :func:`wanir.resolve.resolve`
    reads it once. ``num_layers_run`` None: every layer runs."""

    COMPONENT: ClassVar[str] = "image_encoder"
    FAMILY: ClassVar[str] = "clip_vision"
    MODULE: ClassVar[str] = "clip"
    WHAT: ClassVar[str] = "CLIP vision"

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    patch_size: int
    image_size: int
    num_channels: int
    family: str = "clip_vision"
    layer_norm_eps: float = 1e-5
    hidden_act: str = "gelu"
    num_layers_run: int | None = None

    def __post_init__(self):
        check_family(self)
        check_positive(self, ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                              "patch_size", "image_size", "num_channels"))
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"image_encoder.hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_attention_heads}")
        if self.num_hidden_layers < 2:
            raise ConfigError("image_encoder.num_hidden_layers must be at least 2 (the penultimate layer's "
                              "hidden states are the output)")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"image_encoder.hidden_act={self.hidden_act!r}: allowed {', '.join(ACTIVATIONS)}")
        run = self.num_layers_run
        if run is not None and (isinstance(run, bool) or not isinstance(run, int)
                                or not 1 <= run <= self.num_hidden_layers):
            raise ConfigError(f"image_encoder.num_layers_run={run!r}: an integer in [1, num_hidden_layers="
                              f"{self.num_hidden_layers}], or null for all layers")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
            raise ConfigError(f"image_encoder.layer_norm_eps={eps!r}: must be a number in (0, 1]")
        object.__setattr__(self, "layer_norm_eps", float(eps))


def _check(arch: ClipArch, batch, image_size):
    if not isinstance(arch, ClipArch):
        raise TypeError(f"clip lowers a ClipArch (wanir.resolve.component('image_encoder', ...)), "
                        f"got {type(arch).__name__}")
    for k, v in (("batch", batch), ("image_size", image_size)):
        positive_int(f"image_encoder {k}", v)
    if image_size < arch.patch_size:
        raise ConfigError(f"image_encoder image_size={image_size} is smaller than patch_size={arch.patch_size}")


def _layer(b, h: Value, *, B, T, d, H, ff, eps, act) -> Value:
    """One ``CLIPEncoderLayer`` in the current scope; returns its output Value."""
    hd = d // H
    x = b.layernorm(h, eps=eps, name="layer_norm1")
    with b.scope("self_attn"):
        heads = []
        for n in ("q_proj", "k_proj", "v_proj"):
            t = b.linear(x, d, bias=True, name=n)
            t = b.reshape(t, (B, T, H, hd), name=f"view_{n[0]}")
            heads.append(b.transpose(t, 1, 2, name=f"transpose_{n[0]}"))
        a = b.sdpa(*heads, scale=hd ** -0.5)                      # (B, H, T, hd)
        a = b.transpose(a, 1, 2, name="transpose_out")
        a = b.contiguous(a, name="contiguous_out")
        a = b.reshape(a, (B, T, d), name="reshape_out")
        a = b.linear(a, d, bias=True, name="out_proj")
    h = b.add(h, a, name="residual")
    x = b.layernorm(h, eps=eps, name="layer_norm2")
    with b.scope("mlp"):
        y = b.linear(x, ff, bias=True, name="fc1")
        y = b.op(act, y, name=act)
        y = b.linear(y, d, bias=True, name="fc2")
    return b.add(h, y, name="residual")


def build(b, arch: ClipArch, *, batch: int, dtype, image_size: int | None = None) -> Value:
    """Lower the CLIP vision tower (``arch``: its :class:`ClipArch`) into the builder's current stage for ``batch`` images of
    ``image_size`` pixels square (default: the configured size), pixels at ``dtype``
    (weights, and so activations, at the builder's weight dtype, as the module casts its
    input to its weights' dtype). Returns the penultimate layer's hidden states (or, with
    ``num_layers_run`` below the layer count, the last run layer's output), a
    (batch, (image_size // patch_size)**2 + 1, hidden_size) Value."""
    image_size = arch.image_size if image_size is None else image_size
    _check(arch, batch, image_size)
    d, ff, L, H = arch.hidden_size, arch.intermediate_size, arch.num_hidden_layers, arch.num_attention_heads
    p, C = arch.patch_size, arch.num_channels
    eps = arch.layer_norm_eps
    act = ACTIVATIONS[arch.hidden_act]
    grid = image_size // p
    N = grid * grid
    T = N + 1
    n_pos = (arch.image_size // p) ** 2 + 1                       # rows of the position table
    B = batch

    pixels = b.input("pixel_values", (B, C, image_size, image_size), get_dtype(dtype))
    with b.scope("embeddings"):
        cls = b.parameter("class_embedding", (d,))               # stored at the weight dtype
        wdt = cls.dtype
        x = pixels if pixels.dtype == wdt else b.cast(pixels, wdt, name="to_weight_dtype")
        x = b.conv2d(x, d, p, stride=p, bias=False, name="patch_embedding")   # (B, d, grid, grid)
        x = b.reshape(x, (B, d, N), name="flatten")
        x = b.transpose(x, 1, 2, name="transpose")                           # (B, N, d)
        cls = b.reshape(cls, (1, 1, d), name="view_class")
        cls = b.expand(cls, (B, 1, d), name="expand_class")
        x = b.concat([cls, x], dim=1, name="cat")                             # (B, T, d)
        pos_ids = b.input("position_ids", (1, T), "int64")
        pos = b.embedding(pos_ids, n_pos, d, name="position_embedding")       # (1, T, d)
        x = b.add(x, pos, name="add_position")
    h = b.layernorm(x, eps=eps, name="pre_layrnorm")
    kw = dict(B=B, T=T, d=d, H=H, ff=ff, eps=eps, act=act)
    run = arch.num_layers_run
    if run is not None and run < L:
        # the official pipeline's use_31_block: the first `run` layers, their output returned
        with b.scope("encoder"), b.repeat("layers", run):
            h = _layer(b, h, **kw)
        return h
    with b.scope("encoder"):
        with b.repeat("layers", L - 1):
            h = _layer(b, h, **kw)
        penultimate = h                                          # hidden_states[-2]
        with b.scope(f"layers.{L - 1}"):
            h = _layer(b, h, **kw)
    cls_out = b.slice(h, 1, 0, 1, name="class_token")            # last_hidden_state[:, 0, :]
    cls_out = b.reshape(cls_out, (B, d), name="squeeze")
    b.layernorm(cls_out, eps=eps, name="post_layernorm")         # pooler_output (not used by Wan)
    return penultimate
