"""Wan2.2 pipelines against the real modules, stage by stage: every stage of `wanir.estimate`
for T2V-A14B, I2V-A14B and TI2V-5B (text-to-video and image-to-video) has the tensor FLOPs per
invocation and the parameters of the modules that stage runs, counted with FlopCounterMode on
the meta device with the inputs the pipelines feed them; the DiT stage holds both experts and
runs as many calls as the schedule gives each."""
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import wanir  # noqa: E402
from wanir.config import load_config  # noqa: E402

pytestmark = pytest.mark.reference


_memo = {}


def count(fn, key=None):
    """Tensor FLOPs of ``fn()`` under FlopCounterMode (memoized under ``key`` when given)."""
    if key is not None:
        if key not in _memo:
            _memo[key] = count(fn)
        return _memo[key]
    fc = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), fc:
        fn()
    return int(fc.get_total_flops())


def nparams(*ms):
    return sum(p.numel() for m in ms for p in m.parameters())


def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, device="meta", dtype=dtype)


def make_dit(d):
    return diffusers.WanTransformer3DModel(
        patch_size=tuple(d.patch_size), num_attention_heads=d.num_attention_heads,
        attention_head_dim=d.attention_head_dim, in_channels=d.in_channels, out_channels=d.out_channels,
        text_dim=d.text_dim, freq_dim=d.freq_dim, ffn_dim=d.ffn_dim, num_layers=d.num_layers,
        cross_attn_norm=d.cross_attn_norm, qk_norm=d.qk_norm, eps=d.eps, image_dim=d.image_dim,
        added_kv_proj_dim=d.added_kv_proj_dim).eval()


def make_vae(v):
    kw = dict(base_dim=v.base_dim, z_dim=v.z_dim, dim_mult=list(v.dim_mult), num_res_blocks=v.num_res_blocks,
              attn_scales=list(v.attn_scales), temperal_downsample=list(v.temperal_downsample), dropout=0.0)
    if v.get("is_residual"):
        kw.update(decoder_base_dim=v.decoder_base_dim, is_residual=True, in_channels=v.in_channels,
                  out_channels=v.out_channels, patch_size=v.patch_size, scale_factor_temporal=4,
                  scale_factor_spatial=16)
    return diffusers.AutoencoderKLWan(**kw).eval()


@pytest.fixture(scope="module")
def real():
    """The real modules, built on meta from the hyperparameters in wanir's configs; each A14B
    model holds two experts of one architecture (two modules)."""
    out = {}
    te = load_config(["model=wan2.2-t2v-a14b"]).text_encoder
    with torch.device("meta"):
        out["umt5"] = transformers.UMT5EncoderModel(transformers.UMT5Config(
            vocab_size=te.vocab_size, d_model=te.d_model, d_kv=te.d_kv, d_ff=te.d_ff, num_layers=te.num_layers,
            num_heads=te.num_heads, relative_attention_num_buckets=te.relative_attention_num_buckets,
            relative_attention_max_distance=te.relative_attention_max_distance,
            feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, tie_word_embeddings=False)).eval()
        for m in ("wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"):
            cfg = load_config([f"model={m}"])
            out[m] = {"dit": make_dit(cfg.dit), "vae": make_vae(cfg.vae)}
            if cfg.model.get("experts"):
                out[m]["dit_low"] = make_dit(cfg.dit)
    return out


def stages(est):
    return {s.name: (s.per_invocation["tensor_flops"], s.per_invocation["params"]) for s in est.stages}


def text(r):
    return count(lambda: r["umt5"](input_ids=meta(1, 512, dtype=torch.long)), "umt5"), nparams(r["umt5"])


@pytest.mark.parametrize("model,high,low", [("wan2.2-t2v-a14b", 26, 14), ("wan2.2-i2v-a14b", 15, 25)])
def test_a14b_pipelines(real, model, high, low):
    r, m = real, real[model]
    # diffusers' A14B pipelines feed one timestep per sample (the official code: one per token)
    est = wanir.estimate([f"model={model}", "dit.time_embedding_per_token=false"])
    i2v = model == "wan2.2-i2v-a14b"
    frames, t, h, w = 81, 21, 90, 160
    c_in = 36 if i2v else 16
    dit_call = count(lambda: m["dit"](hidden_states=meta(1, c_in, t, h, w), timestep=torch.full((1,), 999.0,
                                      device="meta"), encoder_hidden_states=meta(1, 512, 4096), return_dict=False))
    expected = {
        "text_encoder": text(r),
        # one call of either expert; the stage holds both
        "diffusion_core": (dit_call, nparams(m["dit"], m["dit_low"])),
        "vae_decode": (count(lambda: m["vae"].decode(meta(1, 16, t, h, w), return_dict=False)),
                       nparams(m["vae"].decoder, m["vae"].post_quant_conv)),
    }
    if i2v:
        # the condition video (the image, then 80 zero frames) through the Wan2.1 VAE encoder
        expected["vae_encode"] = (count(lambda: m["vae"].encode(meta(1, 3, frames, 720, 1280)).latent_dist.mode()),
                                  nparams(m["vae"].encoder, m["vae"].quant_conv))
    assert stages(est) == expected
    st = est.stage("diffusion_core")
    # the official schedule's split, 2 calls per step (guidance scales > 1)
    assert st.invocations == 2 * (high + low)
    assert [(e["steps"], e["calls"], e["params"]) for e in st.experts] == \
        [(high, 2 * high, nparams(m["dit"])), (low, 2 * low, nparams(m["dit_low"]))]
    assert st.total["tensor_flops"] == 2 * (high + low) * dit_call


@pytest.mark.parametrize("mode", ["t2v", "i2v"])
def test_ti2v_5b_pipeline(real, mode):
    r, m = real, real["wan2.2-ti2v-5b"]
    est = wanir.estimate(["model=wan2.2-ti2v-5b", f"workload.mode={mode}"])
    t, h, w = 31, 44, 80                                   # 1280x704x121 through the 4x16x16 VAE
    L = t * (h // 2) * (w // 2)
    assert L == 27_280
    expected = {
        "text_encoder": text(r),
        # the TI2V pipelines feed a per-token (1, L) timestep
        "diffusion_core": (count(lambda: m["dit"](hidden_states=meta(1, 48, t, h, w),
                                                  timestep=torch.full((1, L), 999.0, device="meta"),
                                                  encoder_hidden_states=meta(1, 512, 4096), return_dict=False),
                                 "ti2v-dit"), nparams(m["dit"])),
        "vae_decode": (count(lambda: m["vae"].decode(meta(1, 48, t, h, w), return_dict=False), "ti2v-decode"),
                       nparams(m["vae"].decoder, m["vae"].post_quant_conv)),
    }
    if mode == "i2v":
        # the image alone, as a 1-frame video
        expected["vae_encode"] = (count(lambda: m["vae"].encode(meta(1, 3, 704, 1280)[:, :, None]).latent_dist.mode()),
                                  nparams(m["vae"].encoder, m["vae"].quant_conv))
    assert stages(est) == expected
    assert est.stage("diffusion_core").invocations == 50 * 2
