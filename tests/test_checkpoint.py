"""Models from files (frontends/checkpoint.py): configs inferred from config.json, safetensors
headers and PyTorch state dicts of small real diffusers/transformers models must equal the
configs the models were built with, and parameter counts must equal sum(p.numel()) of the
real modules."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from wanir.cli import main
from wanir.errors import ConfigError
from wanir.frontends.checkpoint import inspect
from wanir.model_from import apply_model_from

ROOT = Path(__file__).resolve().parents[1]


def write_safetensors_header(path: Path, shapes: dict, dtype: str = "BF16") -> None:
    """A safetensors file as the format defines it: u64 little-endian header length, the JSON
    header, then the data (zeros; 2 bytes per BF16 element)."""
    header, off = {}, 0
    for name, shape in shapes.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(off))


# ------------------------------------------------------------------------------------------------
# without torch: hand-written headers


def test_hand_written_umt5_header(tmp_path):
    # one UMT5 layer: d_model 8, 2 heads x d_kv 3, d_ff 5, vocab 11, 4 buckets
    d, h, kv, ff, V, nb = 8, 2, 3, 5, 11, 4
    p = "encoder.block.0.layer."
    shapes = {"shared.weight": (V, d), "encoder.final_layer_norm.weight": (d,),
              p + "0.SelfAttention.q.weight": (h * kv, d), p + "0.SelfAttention.k.weight": (h * kv, d),
              p + "0.SelfAttention.v.weight": (h * kv, d), p + "0.SelfAttention.o.weight": (d, h * kv),
              p + "0.SelfAttention.relative_attention_bias.weight": (nb, h), p + "0.layer_norm.weight": (d,),
              p + "1.DenseReluDense.wi_0.weight": (ff, d), p + "1.DenseReluDense.wi_1.weight": (ff, d),
              p + "1.DenseReluDense.wo.weight": (d, ff), p + "1.layer_norm.weight": (d,)}
    f = tmp_path / "te.safetensors"
    write_safetensors_header(f, shapes)
    ins = inspect(f)
    assert ins.family == "umt5"
    assert ins.config == {"family": "umt5", "vocab_size": V, "d_model": d, "d_kv": kv, "d_ff": ff, "num_layers": 1,
                          "num_heads": h, "relative_attention_num_buckets": nb,
                          "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu"}
    # V*d + d + 4*(h*kv*d) + nb*h + d + 3*ff*d + d
    assert ins.total_params == V * d + d + 4 * h * kv * d + nb * h + d + 3 * ff * d + d
    assert ins.components[0].dtypes == {"bf16": ins.total_params}
    assert any("relative_attention_max_distance=128" in a for a in ins.components[0].assumed)


@pytest.mark.parametrize("content, fragment", [
    (b"\x01\x02", "shorter than its 8-byte header length"),
    (struct.pack("<Q", 10**9) + b"{}", "does not fit"),
    (struct.pack("<Q", 4) + b"\xff\xfe{}", "not JSON"),
])
def test_corrupt_safetensors(tmp_path, capsys, content, fragment):
    f = tmp_path / "broken.safetensors"
    f.write_bytes(content)
    with pytest.raises(ConfigError, match=fragment):
        inspect(f)
    assert main(["inspect", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wanir: error: ") and str(f) in err


def test_not_wan_header(tmp_path):
    f = tmp_path / "bert.safetensors"
    write_safetensors_header(f, {"embeddings.word_embeddings.weight": (10, 4), "pooler.dense.weight": (4, 4)})
    with pytest.raises(ConfigError, match=r"not a Wan DiT, UMT5 encoder, Wan-VAE or Wan CLIP.*embeddings.word_embeddings.weight"):
        inspect(f)


def test_missing_path_and_unknown_suffix(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        inspect(tmp_path / "nope.safetensors")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ConfigError, match="unknown file type"):
        inspect(tmp_path / "w.npz")


def test_torch_missing_gives_clear_error(tmp_path, monkeypatch):
    f = tmp_path / "w.pth"
    f.write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ConfigError, match=r"needs torch, which is not installed"):
        inspect(f)


def test_model_from_null_leaves_config_alone():
    from wanir.config import load_config
    cfg = load_config(["model=wan2.1-t2v-1.3b"])
    assert cfg.model["from"] is None
    out, lines = apply_model_from(cfg)
    assert out is cfg and lines == []


# ------------------------------------------------------------------------------------------------
# real tiny models (torch, diffusers, transformers)

DIT_T2V = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=128, in_channels=16, out_channels=16,
               text_dim=64, freq_dim=32, ffn_dim=96, num_layers=2)
DIT_I2V = dict(patch_size=(1, 2, 2), num_attention_heads=3, attention_head_dim=128, in_channels=36, out_channels=16,
               text_dim=64, freq_dim=32, ffn_dim=80, num_layers=3, image_dim=48, added_kv_proj_dim=384)
UMT5 = dict(vocab_size=100, d_model=64, d_kv=8, d_ff=48, num_layers=2, num_heads=4)
VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True])
VAE_ATTN = dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[0.5],
                temperal_downsample=[True, False])


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters())


#: the hyperparameters each family's config holds (as in wanir/configs/{dit,text_encoder,vae}/*.yaml),
#: written out here so that a key the inference forgets is a failure, not a silent omission
FAMILY_KEYS = {
    "wan_dit": ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
                "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps",
                "image_dim", "added_kv_proj_dim"),
    "umt5": ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "relative_attention_num_buckets",
             "relative_attention_max_distance", "feed_forward_proj"),
    "wan_vae": ("base_dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales", "temperal_downsample",
                "decoder_base_dim", "is_residual", "in_channels", "out_channels", "patch_size"),
}


def _expected(family: str, model) -> dict:
    """The wanir config of a real module, read from the module's own config."""
    c = dict(model.config.to_dict() if hasattr(model.config, "to_dict") else model.config)
    out = {"family": family}
    for k in FAMILY_KEYS[family]:
        v = c[k]
        out[k] = list(v) if isinstance(v, (list, tuple)) else v
    if family == "wan_vae":
        out["attn_scales"] = [float(s) for s in out["attn_scales"]]
    return out


def _save_both(model, d: Path, name: str) -> None:
    import torch
    model.save_pretrained(d / name)
    torch.save(model.state_dict(), d / f"{name}.pth")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ckpt")
    models = {
        "dit": WanTransformer3DModel(**DIT_T2V),
        "i2v": WanTransformer3DModel(**DIT_I2V),
        "te": UMT5EncoderModel(UMT5Config(**UMT5)),
        "vae": AutoencoderKLWan(**VAE),
        "vae_attn": AutoencoderKLWan(**VAE_ATTN),
    }
    for name, m in models.items():
        _save_both(m, d, name)
    return d, models


FAMILY = {"dit": "wan_dit", "i2v": "wan_dit", "te": "umt5", "vae": "wan_vae", "vae_attn": "wan_vae"}
WEIGHTS = {"dit": "diffusion_pytorch_model.safetensors", "i2v": "diffusion_pytorch_model.safetensors",
           "te": "model.safetensors", "vae": "diffusion_pytorch_model.safetensors",
           "vae_attn": "diffusion_pytorch_model.safetensors"}


@pytest.mark.reference
@pytest.mark.parametrize("name", list(FAMILY))
@pytest.mark.parametrize("form", ["pth", "safetensors", "config.json", "directory"])
def test_inferred_config_and_params_equal_real_model(ckpts, name, form):
    d, models = ckpts
    m = models[name]
    path = {"pth": d / f"{name}.pth", "safetensors": d / name / WEIGHTS[name],
            "config.json": d / name / "config.json", "directory": d / name}[form]
    ins = inspect(path)
    assert ins.family == FAMILY[name]
    assert ins.config == _expected(FAMILY[name], m)
    assert ins.total_params == _n(m)
    # parameter count by module equals the real modules' (top level; two levels under encoder/decoder)
    want: dict = {}
    for pname, p in m.named_parameters():
        parts = pname.split(".")
        key = ".".join(parts[:2]) if parts[0] in ("encoder", "decoder") and len(parts) > 2 else parts[0]
        want[key] = want.get(key, 0) + p.numel()
    assert ins.params == want
    if form in ("pth", "safetensors"):
        assert ins.components[0].dtypes == {"fp32": _n(m)}


@pytest.mark.reference
def test_sharded_checkpoint(ckpts, tmp_path):
    d, models = ckpts
    m = models["dit"]
    m.save_pretrained(tmp_path / "sharded", max_shard_size="2MB")
    index = tmp_path / "sharded" / "diffusion_pytorch_model.safetensors.index.json"
    assert index.is_file() and len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    for path in (index, tmp_path / "sharded"):
        ins = inspect(path)
        assert ins.config == _expected("wan_dit", m) and ins.total_params == _n(m)


# original Wan names of diffusers' WanTransformer3DModel tensors (checked below against
# diffusers' own converter from the original naming)
_TO_ORIGINAL_DIT = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("proj_out", "head.head"), ("attn1", "self_attn"), ("attn2", "cross_attn"),
    (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."), (".to_v.", ".v."),
    (".add_k_proj.", ".k_img."), (".add_v_proj.", ".v_img."), (".norm_added_k.", ".norm_k_img."),
    (".norm2.", ".norm3."), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
]


def _original_dit_names(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        new = "." + k + "."
        for a, b in _TO_ORIGINAL_DIT:
            new = new.replace(a, b)
        new = new[1:-1]
        new = "head.modulation" if new == "scale_shift_table" else new.replace(".scale_shift_table", ".modulation")
        out[new] = v
    return out


@pytest.mark.reference
@pytest.mark.parametrize("name", ["dit", "i2v"])
def test_original_wan_dit_naming(ckpts, tmp_path, name):
    import torch
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors.torch import save_file

    _, models = ckpts
    m = models[name]
    sd = m.state_dict()
    orig = _original_dit_names(sd)
    assert "text_embedding.0.weight" in orig and "blocks.0.self_attn.q.weight" in orig
    # diffusers' converter maps these names back onto the model's own names
    assert set(convert_wan_transformer_to_diffusers(dict(orig))) == set(sd)
    torch.save(orig, tmp_path / "wan.pth")
    save_file({k: v.contiguous() for k, v in orig.items()}, str(tmp_path / "wan.safetensors"))
    prefixed = {"model.diffusion_model." + k: v for k, v in orig.items()}
    torch.save(prefixed, tmp_path / "comfy.pth")
    for f in ("wan.pth", "wan.safetensors", "comfy.pth"):
        ins = inspect(tmp_path / f)
        assert ins.components[0].naming == "original Wan"
        assert ins.config == _expected("wan_dit", m)
        assert ins.total_params == _n(m)


def _original_vae_names(sd: dict, n_res: int) -> dict:
    res = {"norm1.gamma": "residual.0.gamma", "conv1.weight": "residual.2.weight", "conv1.bias": "residual.2.bias",
           "norm2.gamma": "residual.3.gamma", "conv2.weight": "residual.6.weight", "conv2.bias": "residual.6.bias",
           "conv_shortcut.weight": "shortcut.weight", "conv_shortcut.bias": "shortcut.bias"}
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if k.startswith(("quant_conv.", "post_quant_conv.")):
            new = ("conv1." if p[0] == "quant_conv" else "conv2.") + p[1]
        elif p[1] == "conv_in":
            new = f"{p[0]}.conv1.{p[2]}"
        elif p[1] == "norm_out":
            new = f"{p[0]}.head.0.gamma"
        elif p[1] == "conv_out":
            new = f"{p[0]}.head.2.{p[2]}"
        elif p[1] == "mid_block":
            i = 1 if p[2] == "attentions" else 2 * int(p[3])
            rest = ".".join(p[4:])
            new = f"{p[0]}.middle.{i}.{res.get(rest, rest)}"
        elif p[1] == "down_blocks":
            rest = ".".join(p[3:])
            new = f"encoder.downsamples.{p[2]}.{res.get(rest, rest)}"
        else:  # decoder.up_blocks.i.(resnets.r | upsamplers.0).rest
            i, r = int(p[2]), (int(p[4]) if p[3] == "resnets" else n_res + 1)
            rest = ".".join(p[5:])
            new = f"decoder.upsamples.{i * (n_res + 2) + r}.{res.get(rest, rest)}"
        out[new] = v
    return out


@pytest.mark.reference
def test_original_wan_vae_naming(ckpts, tmp_path):
    import torch
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    _, models = ckpts
    m = models["vae"]
    sd = m.state_dict()
    orig = _original_vae_names(sd, VAE["num_res_blocks"])
    assert set(convert_wan_vae_to_diffusers(dict(orig))) == set(sd)
    torch.save(orig, tmp_path / "Wan2.1_VAE.pth")
    ins = inspect(tmp_path / "Wan2.1_VAE.pth")
    assert ins.components[0].naming == "original Wan-VAE"
    assert ins.config == _expected("wan_vae", m)
    assert ins.total_params == _n(m)


@pytest.mark.reference
def test_pipeline_directory_and_estimate(ckpts, tmp_path):
    """A diffusers pipeline directory: all three components are replaced, and the estimate's
    per-stage parameter counts equal the real modules'."""
    import shutil

    from wanir.estimate import estimate
    d, models = ckpts
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    for sub, name in (("transformer", "dit"), ("text_encoder", "te"), ("vae", "vae")):
        shutil.copytree(d / name, tmp_path / sub)
    ins = inspect(tmp_path)
    assert [c.component for c in ins.components] == ["dit", "text_encoder", "vae"]
    est = estimate(["model=wan2.1-t2v-1.3b", f"model.from={tmp_path}", "workload=480p"])
    assert est.model.startswith("from:") or est.config.model.name == f"from:{tmp_path.name}"
    assert est.stage("diffusion_core").per_invocation["params"] == _n(models["dit"])
    assert est.stage("text_encoder").per_invocation["params"] == _n(models["te"])
    vae = models["vae"]
    assert est.stage("vae_decode").per_invocation["params"] == _n(vae.decoder) + _n(vae.post_quant_conv)
    assert len(est.extra["inferred"]) >= 3
    assert not any(line.startswith("note:") for line in est.extra["inferred"])  # components agree


@pytest.mark.reference
@pytest.mark.integration
def test_cli_estimate_and_inspect(ckpts, capsys):
    d, models = ckpts
    n = _n(models["dit"])
    # the console entry point in a fresh process, on the safetensors header
    r = subprocess.run([sys.executable, "-m", "wanir.cli", "estimate", "model=wan2.1-t2v-1.3b",
                        f"model.from={d / 'dit' / WEIGHTS['dit']}", "workload=480p", "--format", "json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    core = [s for s in json.loads(r.stdout)["stages"] if s["name"] == "diffusion_core"][0]
    assert core["per_invocation"]["params"] == n
    assert "attention_head_dim=128" in r.stderr and "num_layers=2" in r.stderr
    # the tiny DiT's text_dim differs from the built-in UMT5-XXL width: said, not hidden
    assert f"dit.text_dim={DIT_T2V['text_dim']} but text_encoder.d_model=4096" in r.stderr
    # the same in-process on the PyTorch state dict
    assert main(["estimate", "model=wan2.1-t2v-1.3b", f"model.from={d / 'dit.pth'}", "workload=480p",
                 "--format", "json"]) == 0
    out = capsys.readouterr()
    core = [s for s in json.loads(out.out)["stages"] if s["name"] == "diffusion_core"][0]
    assert core["per_invocation"]["params"] == n and "num_layers=2" in out.err
    for path in (d / "te.pth", d / "te" / WEIGHTS["te"]):
        assert main(["inspect", str(path)]) == 0
        text = capsys.readouterr().out
        assert f"{_n(models['te']):,}" in text and "encoder.block" in text


@pytest.mark.reference
@pytest.mark.parametrize("name", ["i2v", "vae_attn"])
def test_cli_inspect_json(ckpts, capsys, name):
    d, models = ckpts
    for path in (d / f"{name}.pth", d / name / WEIGHTS[name]):
        assert main(["inspect", str(path), "--format", "json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["total_params"] == _n(models[name])
        assert doc["components"][0]["config"] == _expected(FAMILY[name], models[name])


@pytest.mark.reference
def test_i2v_dit_needs_i2v_model(ckpts):
    from wanir.config import load_config
    d, _ = ckpts
    with pytest.raises(ConfigError, match="image-to-video DiT.*model=wan2.1-i2v-14b-480p"):
        apply_model_from(load_config(["model=wan2.1-t2v-14b", f"model.from={d / 'i2v.pth'}"]))
    cfg, lines = apply_model_from(load_config(["model=wan2.1-i2v-14b-480p", f"model.from={d / 'i2v.pth'}"]))
    assert cfg.dit.in_channels == 36 and cfg.dit.image_dim == 48 and cfg.model.name == "from:i2v.pth"


@pytest.mark.reference
def test_corrupt_pth_and_non_wan_checkpoints(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    T5Config, T5EncoderModel = transformers.T5Config, transformers.T5EncoderModel

    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    t5 = T5EncoderModel(T5Config(vocab_size=50, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4))
    torch.save(t5.state_dict(), tmp_path / "t5.pth")
    torch.save(torch.nn.Sequential(torch.nn.Linear(3, 4)).state_dict(), tmp_path / "mlp.pth")
    torch.save({"step": 3}, tmp_path / "meta.pth")
    cases = [(bad, "cannot read as a PyTorch checkpoint"),
             (tmp_path / "t5.pth", "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"),
             (tmp_path / "mlp.pth", "tensor '0.bias' fits none of them"),
             (tmp_path / "meta.pth", "not a state dict")]
    for path, fragment in cases:
        assert main(["inspect", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and fragment in err, err
        assert main(["estimate", f"model.from={path}"]) == 2
        assert fragment in capsys.readouterr().err


@pytest.mark.reference
def test_non_uniform_blocks_name_the_tensor(tmp_path):
    """A pruned DiT whose block 1 has a smaller FFN does not fit the uniform-block model."""
    torch = pytest.importorskip("torch")
    WanTransformer3DModel = pytest.importorskip("diffusers").WanTransformer3DModel

    m = WanTransformer3DModel(**DIT_T2V)
    dim = DIT_T2V["num_attention_heads"] * DIT_T2V["attention_head_dim"]
    m.blocks[1].ffn.net[0].proj = torch.nn.Linear(dim, 40)
    m.blocks[1].ffn.net[2] = torch.nn.Linear(40, dim)
    torch.save(m.state_dict(), tmp_path / "pruned.pth")
    with pytest.raises(ConfigError, match=r"'blocks\.1\.ffn\.net\.0\.proj\.weight' has shape \[40, 256\]"):
        inspect(tmp_path / "pruned.pth")


@pytest.mark.reference
def test_head_dim_from_config_json(tmp_path):
    """A head dim other than 128: a bare weights file cannot tell the heads (error naming the
    tensor); with config.json beside it the config supplies the head dim; a config.json that
    contradicts the tensors is an error."""
    pytest.importorskip("torch")
    WanTransformer3DModel = pytest.importorskip("diffusers").WanTransformer3DModel

    m = WanTransformer3DModel(**dict(DIT_T2V, num_attention_heads=2, attention_head_dim=48))
    m.save_pretrained(tmp_path / "m")
    with pytest.raises(ConfigError, match=r"patch_embedding.weight.*dim 96, not a multiple of the assumed head dim 128"):
        inspect(tmp_path / "m" / "diffusion_pytorch_model.safetensors")
    ins = inspect(tmp_path / "m")
    assert ins.config["num_attention_heads"] == 2 and ins.config["attention_head_dim"] == 48
    assert ins.components[0].assumed == []
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["num_layers"] = 3
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="config.json has num_layers=3 but the tensors imply num_layers=2"):
        inspect(tmp_path / "m")
