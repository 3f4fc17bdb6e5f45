"""The shipped model configs hold the published Wan2.1 hyperparameters.

The reference tests build the real modules *from* these files, so a wrong value here would
be shared by both sides of every FLOP comparison. The expected values below are the Wan2.1
release's, written out independently of the files (umt5-xxl's config; the Wan2.1 T2V-1.3B,
T2V-14B and I2V-14B transformer configs; the Wan-VAE; the ViT-H/14 CLIP vision tower).
"""
import pytest

from wanir.config import load_config

UMT5_XXL = dict(family="umt5", vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu")
DIT_14B = dict(family="wan_dit", patch_size=[1, 2, 2], num_attention_heads=40, attention_head_dim=128, in_channels=16,
               out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None)
DIT_1_3B = dict(DIT_14B, num_attention_heads=12, ffn_dim=8960, num_layers=30)
DIT_I2V_14B = dict(DIT_14B, in_channels=36, image_dim=1280, added_kv_proj_dim=5120)
WAN_VAE = dict(family="wan_vae", base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
               temperal_downsample=[False, True, True])
CLIP_VIT_H_14 = dict(family="clip_vision", hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                     num_attention_heads=16, patch_size=14, image_size=224, num_channels=3, layer_norm_eps=1e-5,
                     hidden_act="gelu")


def _plain(node):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


@pytest.mark.parametrize("model,components", [
    ("wan2.1-t2v-14b", {"text_encoder": UMT5_XXL, "dit": DIT_14B, "vae": WAN_VAE}),
    ("wan2.1-t2v-1.3b", {"text_encoder": UMT5_XXL, "dit": DIT_1_3B, "vae": WAN_VAE}),
    ("wan2.1-i2v-14b-480p", {"text_encoder": UMT5_XXL, "dit": DIT_I2V_14B, "vae": WAN_VAE,
                             "image_encoder": CLIP_VIT_H_14}),
    ("wan2.1-i2v-14b-720p", {"text_encoder": UMT5_XXL, "dit": DIT_I2V_14B, "vae": WAN_VAE,
                             "image_encoder": CLIP_VIT_H_14}),
])
def test_model_components_hold_the_published_hyperparameters(model, components):
    cfg = load_config([f"model={model}"])
    for name, expected in components.items():
        got = _plain(cfg[name])
        assert {k: got.get(k) for k in expected} == expected, name


def test_vae_built_in_default_is_the_shipped_config():
    from wanir.frontends import wan_vae

    from wanir.resolve import component

    assert component("vae", load_config().vae) == wan_vae.VaeArch() == wan_vae.WAN21
