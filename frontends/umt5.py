"""UMT5 text encoder (Wan2.1's UMT5-XXL): lowers ``transformers.UMT5EncoderModel``.

The graph follows the encoder's eager forward with the SDPA attention backend, op by op,
as transformers 5.24 runs it:

- ``encoder/embed_tokens``: token embedding of the int64 ids (the table is the model's
  ``shared`` embedding, counted once).
- ``encoder/block`` (a repeat, one copy per layer), each with
  ``layer.0``: RMSNorm (T5LayerNorm: no mean subtraction, no bias), ``SelfAttention``:
  q/k/v linears without bias, the relative position bias (recomputed in *every* UMT5
  layer: bucket arithmetic on a (seq, seq) int64 grid, a num_buckets × num_heads
  embedding lookup, permuted and materialized as a (1, heads, seq, seq) additive mask),
  SDPA with that mask and scale 1 (T5 does not scale by 1/sqrt(d_kv)), the output
  linear, residual add; ``layer.1``: RMSNorm, ``DenseReluDense`` (``wi_0`` → GELU-tanh,
  ``wi_1``, product, ``wo``), residual add.
- ``encoder/final_layer_norm``.

Stand-ins for tensor ops the IR has no kind for (they sit on the (seq, seq) bucket grid,
carry zero tensor FLOPs and keep the real op's shapes and dtypes):
``torch.arange`` position vectors are ``input`` nodes (``arange_context``,
``arange_memory``); the comparisons ``rel > 0`` and ``rel < max_exact`` are ``cast``
nodes to ``bool`` named ``gt`` and ``lt``; ``torch.min(x, full_like(x, nb - 1))`` is a
``clamp`` named ``min``; ``torch.where(is_small, rel, large)`` is a ``minimum`` of the two
branches named ``where`` (its bool condition is not read in the graph).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from wanir.dtypes import get_dtype
from wanir.errors import ConfigError
from wanir.graph import Value

from .components import check_family, check_positive, positive_int

# feed_forward_proj -> (gated, activation op kind) as transformers' T5-family configs map them
# ("gated-gelu" runs gelu_new, the tanh approximation).
FFN_KINDS = {
    "gated-gelu": (True, "gelu_tanh"),
    "gated-relu": (True, "relu"),
    "gelu": (False, "gelu"),
    "relu": (False, "relu"),
}


@dataclass(frozen=True)
class Umt5Arch:
    """The UMT5 encoder's hyperparameters (transformers' ``UMT5Config`` names), checked on
    construction: the ``text_encoder`` group as :func:`wanir.resolve.resolve` reads it once."""

    COMPONENT: ClassVar[str] = "text_encoder"
    FAMILY: ClassVar[str] = "umt5"
    MODULE: ClassVar[str] = "umt5"
    WHAT: ClassVar[str] = "UMT5"

    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_heads: int
    relative_attention_num_buckets: int
    relative_attention_max_distance: int
    feed_forward_proj: str
    family: str = "umt5"
    layer_norm_epsilon: float = 1e-6

    def __post_init__(self):
        check_family(self)
        check_positive(self, ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                              "relative_attention_num_buckets", "relative_attention_max_distance"))
        if self.feed_forward_proj not in FFN_KINDS:
            raise ConfigError(f"text_encoder.feed_forward_proj={self.feed_forward_proj!r}: "
                              f"allowed {', '.join(FFN_KINDS)}")
        nb = self.relative_attention_num_buckets
        if nb < 4 or nb % 4:
            raise ConfigError(f"text_encoder.relative_attention_num_buckets={nb}: must be a multiple of 4 "
                              f"(bidirectional buckets split in halves, each into exact and log-spaced halves)")
        if self.relative_attention_max_distance <= nb // 4:
            raise ConfigError("text_encoder.relative_attention_max_distance must exceed num_buckets / 4")
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
            raise ConfigError(f"text_encoder.layer_norm_epsilon={eps!r}: must be a number in (0, 1]")
        object.__setattr__(self, "layer_norm_epsilon", float(eps))


def relative_position_bias(b, seq_len: int, num_buckets: int, max_distance: int, num_heads: int) -> Value:
    """Lower ``UMT5Attention.compute_bias`` for an encoder (bidirectional) at ``seq_len``
    queries and keys, in the current scope. Returns the materialized additive attention
    bias, a (1, num_heads, seq_len, seq_len) Value at the current weight dtype."""
    S = seq_len
    ctx = b.input("arange_context", (S, 1), "int64")           # torch.arange(S)[:, None]
    mem = b.input("arange_memory", (1, S), "int64")            # torch.arange(S)[None, :]
    rel = b.sub(mem, ctx, name="relative_position")          # (S, S) int64
    half = num_buckets // 2
    max_exact = half // 2
    # direction: (rel > 0).to(long) * half
    pos = b.cast(rel, "bool", name="gt")
    pos = b.cast(pos, "int64", name="to_long")
    direction = b.scale(pos, half, name="mul_half")
    dist = b.abs(rel, name="abs")
    b.cast(dist, "bool", name="lt")                            # is_small = dist < max_exact
    # large = max_exact + long(log(dist / max_exact) / log(max_distance / max_exact) * (half - max_exact))
    f = b.cast(dist, "fp32", name="to_float")
    f = b.scale(f, 1.0 / max_exact, name="div_max_exact")
    f = b.log(f, name="log")
    f = b.scale(f, 1.0 / math.log(max_distance / max_exact), name="div_log_ratio")
    f = b.scale(f, half - max_exact, name="mul_buckets")
    large = b.cast(f, "int64", name="to_long_large")
    large = b.add_scalar(large, max_exact, name="add_max_exact")
    large = b.op("clamp", large, name="min", max=half - 1)
    # torch.where(is_small, dist, large): the stand-in reads the two branches, not is_small
    chosen = b.minimum(dist, large, name="where")
    bucket = b.add(direction, chosen, name="add_buckets")   # (S, S) int64
    bias = b.embedding(bucket, num_buckets, num_heads, name="relative_attention_bias")  # (S, S, H)
    bias = b.permute(bias, (2, 0, 1), name="permute")
    bias = b.reshape(bias, (1, num_heads, S, S), name="unsqueeze")
    return b.contiguous(bias, name="position_bias_mask")      # SDPA path: position_bias.contiguous()


def _rmsnorm(b, x, d: int, eps: float, name: str = "layer_norm") -> Value:
    return b.rmsnorm(x, eps=eps, normalized_shape=d, name=name)


def _block(b, h: Value, *, B, S, d, H, dk, dff, nb, maxd, eps, gated, act) -> Value:
    """One ``UMT5Block`` of the encoder in the current scope; returns its output Value."""
    inner = H * dk
    with b.scope("layer.0"):
        x = _rmsnorm(b, h, d, eps)
        with b.scope("SelfAttention"):
            heads = []
            for n in ("q", "k", "v"):
                t = b.linear(x, inner, bias=False, name=n)
                t = b.reshape(t, (B, S, H, dk), name=f"view_{n}")
                heads.append(b.transpose(t, 1, 2, name=f"transpose_{n}"))
            bias = relative_position_bias(b, S, nb, maxd, H)
            if bias.dtype != heads[0].dtype:
                bias = b.cast(bias, heads[0].dtype, name="bias_to_compute_dtype")
            a = b.sdpa(*heads, mask=bias, scale=1.0)             # (B, H, S, dk); T5 does not scale
            a = b.transpose(a, 1, 2, name="transpose_out")
            a = b.contiguous(a, name="contiguous_out")
            a = b.reshape(a, (B, S, inner), name="reshape_out")
            a = b.linear(a, d, bias=False, name="o")
        h = b.add(h, a, name="residual")
    with b.scope("layer.1"):
        x = _rmsnorm(b, h, d, eps)
        with b.scope("DenseReluDense"):
            if gated:
                g = b.linear(x, dff, bias=False, name="wi_0")
                g = b.op(act, g, name=act)
                u = b.linear(x, dff, bias=False, name="wi_1")
                y = b.mul(g, u, name="gate_mul")
            else:
                y = b.linear(x, dff, bias=False, name="wi")
                y = b.op(act, y, name=act)
            y = b.linear(y, d, bias=False, name="wo")
        h = b.add(h, y, name="residual")
    return h


def build(b, arch: Umt5Arch, *, seq_len: int, batch: int, dtype, expanded: bool = False) -> Value:
    """Lower the UMT5 encoder (``arch``: its :class:`Umt5Arch`) into the builder's current stage: ``batch`` prompts of
    ``seq_len`` tokens, activations at ``dtype`` (weights at the builder's weight dtype).
    The layers are one ``block`` scope repeated ``num_layers`` times, or with
    ``expanded=True`` one ``block.{i}`` scope per layer (same totals).
    Returns the final hidden states, a (batch, seq_len, d_model) Value."""
    if not isinstance(arch, Umt5Arch):
        raise TypeError(f"umt5 lowers a Umt5Arch (wanir.resolve.component('text_encoder', ...)), "
                        f"got {type(arch).__name__}")
    for k, v in (("seq_len", seq_len), ("batch", batch)):
        positive_int(f"text_encoder {k}", v)
    V, d, L = arch.vocab_size, arch.d_model, arch.num_layers
    gated, act = FFN_KINDS[arch.feed_forward_proj]
    kw = dict(B=batch, S=seq_len, d=d, H=arch.num_heads, dk=arch.d_kv, dff=arch.d_ff,
              nb=arch.relative_attention_num_buckets, maxd=arch.relative_attention_max_distance,
              eps=arch.layer_norm_epsilon, gated=gated, act=act)

    with b.scope("encoder"):
        ids = b.input("input_ids", (batch, seq_len), "int64")
        h = b.embedding(ids, V, d, name="embed_tokens")      # the tied ``shared`` table
        if h.dtype != get_dtype(dtype):
            h = b.cast(h, get_dtype(dtype), name="to_compute_dtype")
        if expanded:
            for i in range(L):
                with b.scope(f"block.{i}"):
                    h = _block(b, h, **kw)
        else:
            with b.repeat("block", L):
                h = _block(b, h, **kw)
        h = _rmsnorm(b, h, d, kw["eps"], name="final_layer_norm")
    return h
