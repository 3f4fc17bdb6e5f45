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

from wanir.dtypes import get_dtype
from wanir.errors import ConfigError
from wanir.graph import Value

from .components import cfg_get as _get
from .components import check_component, positive_int

REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size",
            "image_size", "num_channels")

# hidden_act -> op kind ("gelu" is the exact erf GELU; "gelu_new"/"gelu_pytorch_tanh" the tanh form)
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
               "silu": "silu"}


def _check(cfg, batch, image_size):
    check_component(cfg, "image_encoder", "clip_vision", "clip", REQUIRED, "CLIP vision", positive=REQUIRED)
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ConfigError(f"image_encoder.hidden_size={cfg.hidden_size} is not divisible by "
                          f"num_attention_heads={cfg.num_attention_heads}")
    if cfg.num_hidden_layers < 2:
        raise ConfigError("image_encoder.num_hidden_layers must be at least 2 (the penultimate layer's "
                          "hidden states are the output)")
    act = _get(cfg, "hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise ConfigError(f"image_encoder.hidden_act={act!r}: allowed {', '.join(ACTIVATIONS)}")
    run = _get(cfg, "num_layers_run", None)
    if run is not None and (isinstance(run, bool) or not isinstance(run, int) or not 1 <= run <= cfg.num_hidden_layers):
        raise ConfigError(f"image_encoder.num_layers_run={run!r}: an integer in [1, num_hidden_layers="
                          f"{cfg.num_hidden_layers}], or null for all layers")
    for k, v in (("batch", batch), ("image_size", image_size)):
        positive_int(f"image_encoder {k}", v)
    if image_size < cfg.patch_size:
        raise ConfigError(f"image_encoder image_size={image_size} is smaller than patch_size={cfg.patch_size}")


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


def build(b, cfg, *, batch: int, dtype, image_size: int | None = None) -> Value:
    """Lower the CLIP vision tower into the builder's current stage for ``batch`` images of
    ``image_size`` pixels square (default: the configured size), pixels at ``dtype``
    (weights, and so activations, at the builder's weight dtype, as the module casts its
    input to its weights' dtype). Returns the penultimate layer's hidden states (or, with
    ``num_layers_run`` below the layer count, the last run layer's output), a
    (batch, (image_size // patch_size)**2 + 1, hidden_size) Value."""
    image_size = cfg.image_size if image_size is None else image_size
    _check(cfg, batch, image_size)
    d, ff, L, H = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.num_attention_heads
    p, C = cfg.patch_size, cfg.num_channels
    eps = float(_get(cfg, "layer_norm_eps", 1e-5))
    act = ACTIVATIONS[_get(cfg, "hidden_act", "gelu")]
    grid = image_size // p
    N = grid * grid
    T = N + 1
    n_pos = (cfg.image_size // p) ** 2 + 1                       # rows of the position table
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
    run = _get(cfg, "num_layers_run", None)
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
