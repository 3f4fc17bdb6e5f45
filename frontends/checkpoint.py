"""Models from files: infer a component's hyperparameters from its config and checkpoint files.

``wanir estimate model.from=PATH`` and ``wanir inspect PATH`` read:

- a diffusers or transformers ``config.json`` (``WanTransformer3DModel``, the original
  ``WanModel`` config, ``AutoencoderKLWan``, a ``umt5`` model config);
- a ``.safetensors`` file: only its header is read (an 8-byte little-endian length, then a
  JSON table of tensor names, dtypes, shapes and offsets); no weight is loaded;
- a sharded checkpoint's ``*.safetensors.index.json`` (every shard's header is read);
- a PyTorch state dict (``.pth``, ``.pt``, ``.bin``, ``.ckpt``): loaded with
  ``torch.load(path, map_location="meta", weights_only=True)``, which with torch 2.13
  restores every tensor on the meta device (shape and dtype, no storage), so no weight
  is materialized and no pickled code runs. torch is imported only for these files;
- a directory holding one component (``config.json`` beside its weights) or a whole
  diffusers pipeline (``model_index.json`` with ``transformer/``, ``text_encoder/`` and
  ``vae/`` folders).

Families and the tensors they are recognized by:

- ``wan_dit`` (``cfg.dit``): diffusers ``WanTransformer3DModel`` naming
  (``blocks.N.attn1.to_q.weight``, ``condition_embedder.*``, ``proj_out``) or the original
  Wan naming (``blocks.N.self_attn.q.weight``, ``text_embedding.0.weight``,
  ``time_embedding.0.weight``, ``head.head.weight``, ``img_emb.proj.*``), optionally under a
  ``model.diffusion_model.`` prefix.
- ``umt5`` (``cfg.text_encoder``): transformers ``UMT5EncoderModel`` naming
  (``shared.weight``, ``encoder.block.N.layer.0.SelfAttention.q.weight``, a
  ``relative_attention_bias`` in every layer). Decoder tensors of a full UMT5 model are
  ignored (Wan runs the encoder only).
- ``wan_vae`` (``cfg.vae``): diffusers ``AutoencoderKLWan`` naming (``encoder.conv_in``,
  ``encoder.down_blocks.N.*``, ``decoder.up_blocks.N.*``) or the original Wan-VAE naming
  (``encoder.conv1``, ``encoder.downsamples.N.residual.*``, ``decoder.upsamples.N.*``).

What the shapes cannot tell, and what is assumed then (a ``config.json`` beside the
weights, or a bare one, overrides each assumption):

- DiT attention head dim: 128 (every Wan2.1 DiT), so heads = dim / 128; eps 1e-6.
- UMT5 ``relative_attention_max_distance``: 128; a gated FFN (``wi_0``/``wi_1``) is
  ``gated-gelu``, an ungated one (``wi``) ``relu``.

After inference every tensor of the file is checked against the shapes the inferred config
implies; a tensor that is missing, unexpected or of another shape raises
:class:`wanir.errors.ConfigError` naming the file and the tensor.
"""
from __future__ import annotations

# The implementation lives in the ckpt_* modules: ckpt_read (file readers), ckpt_family (the
# per-family record and registry), ckpt_dit / ckpt_umt5 / ckpt_vae (one record per family),
# ckpt_infer (inference and model.from), ckpt_render (results and their rendering).
from wanir.frontends.ckpt_family import FAMILIES, Family
from wanir.frontends.ckpt_infer import infer, inspect  # noqa: F401
from wanir.frontends.ckpt_read import (TORCH_SUFFIXES, Tensor, read_safetensors_header,  # noqa: F401
                                       read_tensors, read_torch_state_dict)
from wanir.frontends.ckpt_render import Component, Inspection  # noqa: F401
from wanir.frontends.ckpt_dit import DIT_HEAD_DIM  # noqa: F401

#: component (config group) of each family
COMPONENT = {name: f.component for name, f in FAMILIES.items()}
#: the config keys each family produces, in the order of wanir/configs/<group>/*.yaml
KEYS = {name: f.keys for name, f in FAMILIES.items()}
