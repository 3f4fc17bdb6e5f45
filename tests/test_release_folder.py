"""Official Wan release folders (frontends/ckpt_release.py) and the official file namings:
the UMT5 encoder ``models_t5_umt5-xxl-enc-bf16.pth``, the CLIP file
``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``, the DiT with its ``WanModel``
config.json, ``Wan2.1_VAE.pth``, and the two expert folders of Wan2.2 A14B.

The files are built here: state dicts of small real modules renamed to the official names
(the maps are written out below from the official module layout), and full-size state dicts
on the meta device (no storage) whose parameter counts are the published ones."""
from __future__ import annotations

import json
import shutil

import pytest

from wanir.cli import main
from wanir.errors import ConfigError
from wanir.frontends.checkpoint import inspect
from wanir.model_from import apply_model_from

torch = pytest.importorskip("torch")

# official Wan T5 (wan/modules/t5.py) name of each transformers UMT5 encoder tensor, per block
T5_BLOCK = {"layer.0.layer_norm.weight": "norm1.weight", "layer.0.SelfAttention.q.weight": "attn.q.weight",
            "layer.0.SelfAttention.k.weight": "attn.k.weight", "layer.0.SelfAttention.v.weight": "attn.v.weight",
            "layer.0.SelfAttention.o.weight": "attn.o.weight",
            "layer.0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
            "layer.1.layer_norm.weight": "norm2.weight", "layer.1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
            "layer.1.DenseReluDense.wi_1.weight": "ffn.fc1.weight", "layer.1.DenseReluDense.wo.weight": "ffn.fc2.weight"}


def official_t5(sd: dict) -> dict:
    """A transformers UMT5EncoderModel state dict in the official naming (the embedding once)."""
    out = {}
    for k, v in sd.items():
        if k == "shared.weight":
            out["token_embedding.weight"] = v
        elif k == "encoder.final_layer_norm.weight":
            out["norm.weight"] = v
        elif k.startswith("encoder.block."):
            i, rest = k[len("encoder.block."):].split(".", 1)
            out[f"blocks.{i}.{T5_BLOCK[rest]}"] = v
    return out


def meta_t5(V, d, inner, ff, L, buckets, heads, dtype=torch.bfloat16) -> dict:
    """The official T5 encoder's tensors (official-checkpoints.md) on meta."""
    e = lambda *s: torch.empty(*s, dtype=dtype, device="meta")  # noqa: E731
    sd = {"token_embedding.weight": e(V, d)}
    for i in range(L):
        b = f"blocks.{i}."
        sd[b + "norm1.weight"] = e(d)
        for p in "qkv":
            sd[f"{b}attn.{p}.weight"] = e(inner, d)
        sd[b + "attn.o.weight"] = e(d, inner)
        sd[b + "norm2.weight"] = e(d)
        sd[b + "ffn.gate.0.weight"] = e(ff, d)
        sd[b + "ffn.fc1.weight"] = e(ff, d)
        sd[b + "ffn.fc2.weight"] = e(d, ff)
        sd[b + "pos_embedding.embedding.weight"] = e(buckets, heads)
    sd["norm.weight"] = e(d)
    return sd


def meta_clip(d, ff, L, p, n_pos, proj, dtype=torch.float16, textual=True) -> dict:
    """The official CLIP file's tensors (official-checkpoints.md) on meta: ``visual.*`` as the
    table lists them, plus a few ``textual.*`` tensors and ``log_scale`` that Wan does not run."""
    e = lambda *s: torch.empty(*s, dtype=dtype, device="meta")  # noqa: E731
    sd = {"log_scale": e(())} if textual else {}
    sd.update({"visual.patch_embedding.weight": e(d, 3, p, p), "visual.cls_embedding": e(1, 1, d),
               "visual.pos_embedding": e(1, n_pos, d), "visual.pre_norm.weight": e(d), "visual.pre_norm.bias": e(d)})
    for i in range(L):
        b = f"visual.transformer.{i}."
        for n in ("norm1", "norm2"):
            sd[f"{b}{n}.weight"], sd[f"{b}{n}.bias"] = e(d), e(d)
        sd[b + "attn.to_qkv.weight"], sd[b + "attn.to_qkv.bias"] = e(3 * d, d), e(3 * d)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = e(d, d), e(d)
        sd[b + "mlp.0.weight"], sd[b + "mlp.0.bias"] = e(ff, d), e(ff)
        sd[b + "mlp.2.weight"], sd[b + "mlp.2.bias"] = e(d, ff), e(d)
    sd["visual.post_norm.weight"], sd["visual.post_norm.bias"] = e(d), e(d)
    sd["visual.head"] = e(d, proj)
    if textual:
        sd["textual.token_embedding.weight"] = e(50, 8)
        sd["textual.head.0.weight"] = e(8, 8)
    return sd


def numel(sd: dict, prefix: str = "") -> int:
    return sum(v.numel() for k, v in sd.items() if k.startswith(prefix))


# ------------------------------------------------------------------------------------------------
# the official files at full size (meta state dicts: shapes only)


def test_official_t5_full_size(tmp_path):
    sd = meta_t5(256384, 4096, 4096, 10240, 24, 32, 64)
    assert len(sd) == 242                                   # the official file's tensor count
    f = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save(sd, f)
    ins = inspect(f)
    c = ins.components[0]
    assert (c.component, c.family, c.naming) == ("text_encoder", "umt5", "official Wan T5")
    assert ins.config == {"family": "umt5", "vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240,
                          "num_layers": 24, "num_heads": 64, "relative_attention_num_buckets": 32,
                          "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu"}
    assert ins.total_params == 5_680_910_336                # official-checkpoints.md
    assert c.dtypes == {"bf16": 5_680_910_336}


def test_official_clip_full_size(tmp_path):
    sd = meta_clip(1280, 5120, 32, 14, 257, 1024)
    f = tmp_path / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    torch.save(sd, f)
    ins = inspect(f)
    c = ins.components[0]
    assert (c.component, c.family) == ("image_encoder", "clip_vision")
    assert ins.config == {"family": "clip_vision", "hidden_size": 1280, "intermediate_size": 5120,
                          "num_hidden_layers": 32, "num_attention_heads": 16, "patch_size": 14, "image_size": 224,
                          "num_channels": 3, "layer_norm_eps": 1e-5, "hidden_act": "gelu", "projection_dim": 1024}
    assert ins.total_params == 632_076_800                  # visual.*, official-checkpoints.md
    assert any("textual.*" in n for n in c.notes)
    assert c.dtypes == {"fp16": 632_076_800}


@pytest.mark.slow
def test_clip_vision_params_equal_transformers_tower(tmp_path):
    """visual.* without the projection head has the parameters of transformers'
    CLIPVisionModel with the inferred config (the module wanir's CLIP frontend lowers)."""
    transformers = pytest.importorskip("transformers")
    d, ff, L, p, n_pos, proj = 64, 96, 3, 4, 17, 24            # 16x16 image: 4x4 patches + class token
    sd = meta_clip(d, ff, L, p, n_pos, proj, textual=False)
    f = tmp_path / "clip.pth"
    torch.save(sd, f)
    ins = inspect(f)
    cfg = ins.config
    with torch.device("meta"):
        tower = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
            hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=1, patch_size=cfg["patch_size"],
            image_size=cfg["image_size"], num_channels=cfg["num_channels"]))
    assert cfg["image_size"] == 16
    assert ins.total_params - d * proj == sum(q.numel() for q in tower.parameters())


@pytest.mark.slow
def test_official_t5_names_of_a_real_umt5(tmp_path):
    transformers = pytest.importorskip("transformers")
    hp = dict(vocab_size=100, d_model=64, d_kv=8, d_ff=48, num_layers=2, num_heads=4)
    m = transformers.UMT5EncoderModel(transformers.UMT5Config(**hp))
    f = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save(official_t5(m.state_dict()), f)
    ins = inspect(f)
    assert {k: ins.config[k] for k in hp} == hp
    assert ins.total_params == sum(q.numel() for q in m.parameters())


def test_official_t5_wrong_shape_names_the_tensor(tmp_path):
    sd = meta_t5(50, 16, 16, 24, 2, 8, 4)
    sd["blocks.1.ffn.fc2.weight"] = torch.empty(16, 20, device="meta")
    torch.save(sd, tmp_path / "t5.pth")
    with pytest.raises(ConfigError, match=r"'blocks\.1\.ffn\.fc2\.weight' has shape \[16, 20\]"):
        inspect(tmp_path / "t5.pth")


# ------------------------------------------------------------------------------------------------
# whole folders (small real modules in the official naming)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """The files of a small Wan2.1 image-to-video release, official naming, and the modules."""
    pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from safetensors.torch import save_file
    from test_checkpoint import DIT_I2V, UMT5, VAE, _original_dit_names, _original_vae_names

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("parts")
    # the DiT: WanModel config.json + official-naming shards with their index
    dit = WanTransformer3DModel(**DIT_I2V)
    orig = {k: v.contiguous() for k, v in _original_dit_names(dit.state_dict()).items()}
    names = sorted(orig)
    half = len(names) // 2
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": names[:half],
              "diffusion_pytorch_model-00002-of-00002.safetensors": names[half:]}
    (d / "dit").mkdir()
    for fname, keys in shards.items():
        save_file({k: orig[k] for k in keys}, str(d / "dit" / fname))
    (d / "dit" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, ks in shards.items() for k in ks}}))
    D = DIT_I2V["num_attention_heads"] * DIT_I2V["attention_head_dim"]
    (d / "dit" / "config.json").write_text(json.dumps({
        "_class_name": "WanModel", "model_type": "i2v", "patch_size": [1, 2, 2], "text_len": 512,
        "in_dim": DIT_I2V["in_channels"], "dim": D, "ffn_dim": DIT_I2V["ffn_dim"], "freq_dim": DIT_I2V["freq_dim"],
        "text_dim": DIT_I2V["text_dim"], "out_dim": DIT_I2V["out_channels"],
        "num_heads": DIT_I2V["num_attention_heads"], "num_layers": DIT_I2V["num_layers"],
        "window_size": [-1, -1], "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6}))
    te = transformers.UMT5EncoderModel(transformers.UMT5Config(**UMT5)).to(torch.bfloat16)
    torch.save(official_t5(te.state_dict()), d / "models_t5_umt5-xxl-enc-bf16.pth")
    vae = AutoencoderKLWan(**VAE)
    torch.save(_original_vae_names(vae.state_dict(), VAE["num_res_blocks"]), d / "Wan2.1_VAE.pth")
    clip = meta_clip(DIT_I2V["image_dim"], 96, 3, 14, 257, 24)
    torch.save(clip, d / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")
    return d, {"dit": dit, "te": te, "vae": vae, "clip": clip}


def _n(m) -> int:
    return sum(q.numel() for q in m.parameters())


def _release(parts, tmp_path, experts=False):
    d, _ = parts
    r = tmp_path / "Wan-Release"
    r.mkdir()
    for f in ("models_t5_umt5-xxl-enc-bf16.pth", "Wan2.1_VAE.pth",
              "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"):
        shutil.copy(d / f, r / f)
    for sub in (("high_noise_model", "low_noise_model") if experts else ("",)):
        shutil.copytree(d / "dit", r / sub, dirs_exist_ok=True)
    (r / "google" / "umt5-xxl").mkdir(parents=True)
    (r / "google" / "umt5-xxl" / "tokenizer.json").write_text("{}")   # the tokenizer: ignored
    return r


@pytest.mark.reference
def test_wan21_i2v_release_folder(parts, tmp_path, capsys):
    _, m = parts
    r = _release(parts, tmp_path)
    ins = inspect(r)
    assert ins.format == "official Wan release folder"
    assert [c.component for c in ins.components] == ["text_encoder", "image_encoder", "dit", "vae"]
    clip_visual = numel(m["clip"], "visual.")
    assert [c.total_params for c in ins.components] == [_n(m["te"]), clip_visual, _n(m["dit"]), _n(m["vae"])]
    assert ins.component("dit").config["image_dim"] == m["dit"].config.image_dim
    assert ins.component("dit").source.startswith("config.json + diffusion_pytorch_model.safetensors.index.json")
    # the whole folder as model.from: every stage's parameters are the real modules'
    from wanir.estimate import estimate

    est = estimate(["model=wan2.1-i2v-14b-480p", f"model.from={r}", "workload.height=64", "workload.width=64",
                    "workload.frames=5", "workload.steps=2"])
    per = {s.name: s.per_invocation["params"] for s in est.stages}
    vae = m["vae"]
    d = m["clip"]["visual.transformer.0.norm1.weight"].shape[0]
    # the CLIP tower as the pipeline runs it: visual.* without the projection head
    assert per["image_encoder"] == clip_visual - d * m["clip"]["visual.head"].shape[1]
    assert per == {"text_encoder": _n(m["te"]), "image_encoder": per["image_encoder"], "vae_encode":
                   _n(vae.encoder) + _n(vae.quant_conv), "diffusion_core": _n(m["dit"]),
                   "vae_decode": _n(vae.decoder) + _n(vae.post_quant_conv)}
    # storage dtypes read from the files set the storage precision where the runtime's default differs
    # (diffusers loads the DiT in bf16 and CLIP in fp32; these files store fp32 and fp16)
    est = estimate(["model=wan2.1-i2v-14b-480p", f"model.from={r}", "workload.height=64", "workload.width=64",
                    "workload.frames=5", "workload.steps=2", "runtime=diffusers"])
    lines = est.extra["inferred"]
    assert any("precision.dit_weights=fp32" in line for line in lines)
    assert any("precision.image_encoder=fp16" in line for line in lines)
    assert est.stage("diffusion_core").per_invocation["weight_bytes"] == 4 * _n(m["dit"])
    # ... unless the user chose a precision
    est2 = estimate(["model=wan2.1-i2v-14b-480p", f"model.from={r}", "workload.height=64", "workload.width=64",
                     "workload.frames=5", "workload.steps=2", "precision.dit_weights=fp8_e4m3", "runtime=diffusers"])
    assert est2.stage("diffusion_core").per_invocation["weight_bytes"] == _n(m["dit"])
    # the CLI prints every component
    assert main(["inspect", str(r)]) == 0
    out = capsys.readouterr().out
    assert "official Wan release folder" in out and "image_encoder: clip_vision" in out


@pytest.mark.reference
def test_two_expert_release_folder(parts, tmp_path):
    _, m = parts
    r = _release(parts, tmp_path, experts=True)
    ins = inspect(r)
    dits = [c for c in ins.components if c.component == "dit"]
    assert [c.expert for c in dits] == ["high_noise", "low_noise"]
    assert all(c.total_params == _n(m["dit"]) for c in dits)
    assert ins.total_params == _n(m["te"]) + numel(m["clip"], "visual.") + 2 * _n(m["dit"]) + _n(m["vae"])
    assert main(["inspect", str(r), "--format", "json"]) == 0
    # experts of different architectures are refused, naming the key
    cfg = json.loads((r / "low_noise_model" / "config.json").read_text())
    shutil.rmtree(r / "low_noise_model")
    (r / "low_noise_model").mkdir()
    (r / "low_noise_model" / "config.json").write_text(json.dumps(dict(cfg, num_layers=cfg["num_layers"] + 1)))
    from wanir.config import load_config

    with pytest.raises(ConfigError, match="experts differ in num_layers"):
        apply_model_from(load_config(["model=wan2.1-i2v-14b-480p", f"model.from={r}"]))
    shutil.rmtree(r / "low_noise_model")
    with pytest.raises(ConfigError, match="high_noise_model/ without low_noise_model/"):
        inspect(r)


# ------------------------------------------------------------------------------------------------
# Wan2.2: the 48-channel residual VAE, and the TI2V-5B DiT


@pytest.mark.reference
def test_wan22_vae_small_real_module(tmp_path):
    """A small Wan2.2-VAE (is_residual, 2x2 patchify, its own decoder base dim) saved by
    diffusers: config.json, safetensors header and state dict all give the module's config
    and parameters."""
    pytest.importorskip("diffusers")
    from diffusers import AutoencoderKLWan

    hp = dict(base_dim=8, decoder_base_dim=12, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
              temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
              patch_size=2)
    m = AutoencoderKLWan(**hp)
    m.save_pretrained(tmp_path / "vae")
    torch.save(m.state_dict(), tmp_path / "vae.pth")
    for path in (tmp_path / "vae", tmp_path / "vae" / "diffusion_pytorch_model.safetensors", tmp_path / "vae.pth",
                 tmp_path / "vae" / "config.json"):
        ins = inspect(path)
        assert ins.family == "wan_vae"
        assert ins.config == dict(hp, family="wan_vae", attn_scales=[]), path
        assert ins.total_params == _n(m), path


@pytest.mark.reference
def test_wan22_ti2v_5b_full_size(tmp_path):
    """TI2V-5B's DiT and Wan2.2-VAE at full size, as meta state dicts (diffusers naming) of the
    real modules built from wanir's shipped configs: inspection gives back those configs and
    the real parameter counts."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from wanir import reference
    from wanir.config import load_config

    cfg = load_config(["model=wan2.2-ti2v-5b"])
    from wanir.resolve import component

    dit, vae = reference.build_dit(component("dit", cfg.dit)), reference.build_vae(component("vae", cfg.vae))
    torch.save(dit.state_dict(), tmp_path / "dit.pth")
    torch.save(vae.state_dict(), tmp_path / "vae.pth")
    ins = inspect(tmp_path / "vae.pth")
    want = {k: (list(v) if not isinstance(v, (int, float, str, bool, type(None))) else v)
            for k, v in cfg.vae.items()}
    assert {k: ins.config[k] for k in want} == want
    assert ins.total_params == sum(p.numel() for p in vae.parameters()) == 704_688_668
    d = inspect(tmp_path / "dit.pth")
    assert {k: d.config[k] for k in ("in_channels", "out_channels", "ffn_dim", "num_layers", "num_attention_heads")} \
        == {"in_channels": 48, "out_channels": 48, "ffn_dim": 14336, "num_layers": 30, "num_attention_heads": 24}
    assert d.total_params == sum(p.numel() for p in dit.parameters())



@pytest.mark.reference
def test_wan22_i2v_a14b_release(tmp_path):
    """Wan2.2 I2V-A14B: two expert folders of an image-to-video DiT without an image embedder
    (36 input channels), no CLIP file; model.from= runs both experts, each with the real
    module's parameters, and the stage holds both."""
    pytest.importorskip("diffusers")
    pytest.importorskip("safetensors")
    import diffusers
    from safetensors.torch import save_file
    from test_checkpoint import _original_dit_names

    from wanir.estimate import estimate

    hp = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=128, in_channels=36, out_channels=16,
              text_dim=4096, freq_dim=32, ffn_dim=96, num_layers=2)
    m = diffusers.WanTransformer3DModel(**hp)
    r = tmp_path / "Wan2.2-I2V-A14B"
    for sub in ("high_noise_model", "low_noise_model"):
        (r / sub).mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in _original_dit_names(m.state_dict()).items()},
                  str(r / sub / "diffusion_pytorch_model.safetensors"))
        # the WanModel config of an image-to-video model: it cannot say that there is no image embedder
        (r / sub / "config.json").write_text(json.dumps({
            "_class_name": "WanModel", "model_type": "i2v", "in_dim": 36, "dim": 256, "ffn_dim": 96, "freq_dim": 32,
            "text_dim": 4096, "out_dim": 16, "num_heads": 2, "num_layers": 2, "eps": 1e-6}))
    torch.save(meta_t5(256384, 4096, 4096, 10240, 24, 32, 64), r / "models_t5_umt5-xxl-enc-bf16.pth")
    ins = inspect(r)
    assert [(c.component, c.expert) for c in ins.components] == \
        [("text_encoder", None), ("dit", "high_noise"), ("dit", "low_noise")]
    assert [c.config["image_dim"] for c in ins.components[1:]] == [None, None]
    est = estimate(["model=wan2.2-i2v-a14b", f"model.from={r}", "workload.height=64", "workload.width=64",
                    "workload.frames=5", "workload.steps=4"])
    st = est.stage("diffusion_core")
    n = sum(p.numel() for p in m.parameters())
    assert st.per_invocation["params"] == 2 * n
    assert [e["params"] for e in st.experts] == [n, n]
    assert not any(line.startswith("note:") for line in est.extra["inferred"])   # 36 = 2 x 16 + 4 channels


def test_ambiguous_release_files_are_named(tmp_path):
    r = tmp_path / "Wan-Release"
    r.mkdir()
    torch.save(meta_t5(50, 16, 16, 24, 2, 8, 4), r / "models_t5_umt5-xxl-enc-bf16.pth")
    for i in (1, 2):
        (r / f"diffusion_pytorch_model-{i}.safetensors.index.json").write_text("{}")
    with pytest.raises(ConfigError, match="2 shard indexes"):
        inspect(r)
    shutil.copy(r / "models_t5_umt5-xxl-enc-bf16.pth", r / "models_t5_other.pth")
    with pytest.raises(ConfigError, match="2 files match models_t5_"):
        inspect(r)


def official_vae22(sd: dict) -> dict:
    """A diffusers Wan2.2-VAE state dict in the order of the official Wan2.2_VAE.pth: one to one,
    except that the official middle blocks hold resnet, attention, resnet (diffusers registers
    the attention first; real-modules.md). The official top-level names are kept (encoder.*,
    conv1 = quant_conv, conv2 = post_quant_conv, decoder.*); the names below them are
    illustrative, as wanir reads the file by position."""
    names = list(sd)
    out = []
    for side in ("encoder", "decoder"):
        mid = [n for n in names if n.startswith(f"{side}.mid_block.")]
        first = names.index(mid[0])
        reordered = [n for n in mid if ".resnets.0." in n] + [n for n in mid if ".attentions." in n] + \
            [n for n in mid if ".resnets.1." in n]
        names[first:first + len(mid)] = reordered
    for i, n in enumerate(names):
        top = {"quant_conv": "conv1", "post_quant_conv": "conv2"}.get(n.split(".")[0])
        new = f"{top}.{n.split('.', 1)[1]}" if top else f"{n.split('.')[0]}.t{i}.{n.rsplit('.', 1)[1]}"
        out.append((new, sd[n]))
    return dict(out)


@pytest.mark.reference
@pytest.mark.parametrize("size", ["small", "released"])
def test_official_wan22_vae_by_position(tmp_path, size):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from wanir import reference
    from wanir.config import load_config

    if size == "small":
        hp = dict(family="wan_vae", base_dim=8, decoder_base_dim=12, z_dim=4, dim_mult=[1, 2, 4, 4],
                  num_res_blocks=2, attn_scales=[], temperal_downsample=[False, True, True], is_residual=True,
                  in_channels=12, out_channels=12, patch_size=2)
    else:
        hp = {k: (list(v) if type(v).__name__ == "ListConfig" else v)
              for k, v in load_config(["model=wan2.2-ti2v-5b"]).vae.items()}
    from wanir.resolve import component

    vae = reference.build_vae(component("vae", hp))
    f = tmp_path / "Wan2.2_VAE.pth"
    torch.save(official_vae22(vae.state_dict()), f)
    ins = inspect(f)
    c = ins.components[0]
    assert c.naming == "official Wan2.2-VAE" and any("released Wan2.2-VAE" in a for a in c.assumed)
    assert ins.config == dict(hp, attn_scales=[])
    assert ins.total_params == sum(p.numel() for p in vae.parameters())
    # a tensor out of place is named
    sd = official_vae22(vae.state_dict())
    keys = list(sd)
    sd = {k: sd[k] for k in keys[:5] + [keys[6], keys[5]] + keys[7:]}
    torch.save(sd, f)
    with pytest.raises(ConfigError, match=f"tensor '{keys[6]}' has shape"):
        inspect(f)


@pytest.mark.reference
def test_wan22_ti2v_release_folder_estimate_and_verify(tmp_path, capsys):
    """A small TI2V-5B-like release (WanModel config.json + DiT safetensors, the official
    Wan2.2_VAE.pth, the official T5): model.from= replaces the DiT, the VAE and the text
    encoder, and `wanir verify` finds every stage equal to the real modules."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    import diffusers
    import transformers
    from safetensors.torch import save_file
    from test_checkpoint import _original_dit_names

    from wanir import reference
    from wanir.estimate import estimate

    z = 4
    dit = diffusers.WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=128,
                                          in_channels=z, out_channels=z, text_dim=64, freq_dim=32, ffn_dim=96,
                                          num_layers=2)
    from wanir.resolve import component

    vae = reference.build_vae(component("vae", dict(
        family="wan_vae", base_dim=8, decoder_base_dim=12, z_dim=z, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
        attn_scales=[], temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
        out_channels=12, patch_size=2)))
    te = transformers.UMT5EncoderModel(transformers.UMT5Config(vocab_size=100, d_model=64, d_kv=8, d_ff=48,
                                                               num_layers=2, num_heads=4))
    r = tmp_path / "Wan2.2-TI2V-5B"
    r.mkdir()
    save_file({k: v.contiguous() for k, v in _original_dit_names(dit.state_dict()).items()},
              str(r / "diffusion_pytorch_model.safetensors"))
    (r / "config.json").write_text(json.dumps({"_class_name": "WanModel", "model_type": "ti2v", "in_dim": z,
                                               "dim": 256, "ffn_dim": 96, "freq_dim": 32, "text_dim": 64, "out_dim": z,
                                               "num_heads": 2, "num_layers": 2, "eps": 1e-6}))
    torch.save(official_vae22(vae.state_dict()), r / "Wan2.2_VAE.pth")
    torch.save(official_t5(te.state_dict()), r / "models_t5_umt5-xxl-enc-bf16.pth")
    small = ["workload.height=64", "workload.width=64", "workload.frames=5", "workload.steps=2"]
    for mode in ("t2v", "i2v"):
        est = estimate(["model=wan2.2-ti2v-5b", f"model.from={r}", f"workload.mode={mode}", *small])
        per = {s.name: s.per_invocation["params"] for s in est.stages}
        want = {"text_encoder": _n(te), "diffusion_core": _n(dit),
                "vae_decode": _n(vae.decoder) + _n(vae.post_quant_conv)}
        if mode == "i2v":
            want["vae_encode"] = _n(vae.encoder) + _n(vae.quant_conv)
        assert per == want
        assert main(["verify", "model=wan2.2-ti2v-5b", f"model.from={r}", f"workload.mode={mode}", *small,
                     "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["match"]
