"""``wanir verify``: wanir's tensor FLOPs and parameters next to the real modules' (built on
meta, counted with FlopCounterMode), per stage and module path; exit 0 when all match, 1 on
a mismatch, 2 with one line without the reference extra or a reference module."""
import json
import sys

import pytest

from wanir.cli import main

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

pytestmark = pytest.mark.reference

SMALL = ["workload.height=64", "workload.width=64", "workload.frames=5", "workload.steps=2"]


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_default_model_matches(capsys):
    assert main(["verify", *SMALL, "--depth", "2", "--format", "json"]) == 0
    doc = _json(capsys)
    assert doc["match"] is True and doc["model"] == "wan2.1-t2v-14b"
    stages = {r["stage"]: r for r in doc["rows"] if r["path"] == ""}
    assert list(stages) == ["text_encoder", "diffusion_core", "vae_decode"]
    paths = {(r["stage"], r["path"]) for r in doc["rows"]}
    for p in [("diffusion_core", "blocks"), ("diffusion_core", "blocks.attn1"), ("diffusion_core", "blocks.ffn"),
              ("text_encoder", "encoder.block"), ("vae_decode", "decoder.up_blocks")]:
        assert p in paths
    for r in doc["rows"]:
        assert r["wanir_tensor_flops"] == r["real_tensor_flops"] and r["wanir_params"] == r["real_params"], r
        assert r["tensor_flops_diff"] == 0 and r["params_diff"] == 0
    # the DiT's parameters as the real 14B module holds them; tensor FLOPs are counted, not zero
    assert stages["diffusion_core"]["real_params"] == 14_288_491_584
    assert all(s["real_tensor_flops"] > 0 for s in stages.values())
    # the table: every stage, a closing line
    assert main(["verify", *SMALL, "--stage", "vae_decode"]) == 0
    out = capsys.readouterr().out
    assert "vae_decode" in out and "all rows match" in out and "MISMATCH" not in out


def test_image_to_video_and_official_31_layers(capsys):
    for extra in ([], ["image_encoder.num_layers_run=31"]):
        assert main(["verify", "model=wan2.1-i2v-14b-480p", *SMALL, *extra, "--format", "json"]) == 0
        doc = _json(capsys)
        stages = [r["stage"] for r in doc["rows"] if r["path"] == ""]
        assert stages == ["text_encoder", "image_encoder", "vae_encode", "diffusion_core", "vae_decode"]
        assert doc["match"]


def test_checkpoint_from_files(tmp_path, capsys):
    from diffusers import WanTransformer3DModel

    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=128, in_channels=16,
                              out_channels=16, text_dim=4096, freq_dim=32, ffn_dim=96, num_layers=2)
    m.save_pretrained(tmp_path / "dit")
    assert main(["verify", "model=wan2.1-t2v-1.3b", f"model.from={tmp_path / 'dit'}", *SMALL,
                 "--stage", "diffusion_core", "--format", "json"]) == 0
    doc = _json(capsys)
    assert doc["rows"][0]["real_params"] == sum(p.numel() for p in m.parameters())


def test_tampered_count_exits_1(monkeypatch, capsys):
    from wanir.passes import flops

    linear = flops.RULES["linear"]
    monkeypatch.setitem(flops.RULES, "linear", lambda node: (linear(node)[0] + 2, linear(node)[1]))
    assert main(["verify", "model=wan2.1-t2v-1.3b", *SMALL, "--stage", "diffusion_core"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "row(s) differ" in out
    bad = [line.split()[0] for line in out.splitlines() if line.endswith("MISMATCH")]
    assert "diffusion_core" in bad and "blocks" in bad and "patch_embedding" not in bad   # a conv, not a linear


def test_missing_extra_exits_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "diffusers", None)        # import diffusers raises ImportError
    assert main(["verify", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reference" in err and "diffusers" in err


def test_family_without_reference_module_exits_2(monkeypatch, capsys):
    from wanir import reference

    monkeypatch.delitem(reference.FAMILIES, "wan_vae")
    assert main(["verify", *SMALL, "--stage", "vae_decode"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vae.family='wan_vae' has no reference module" in err


@pytest.mark.parametrize("args, fragment", [(["--stage", "vae_encode"], "no such stage"),
                                            (["--depth", "99"], "--depth")])
def test_bad_options_exit_2(args, fragment, capsys):
    assert main(["verify", *SMALL, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


@pytest.mark.parametrize("model, extra, stages", [
    # the Wan2.2-VAE (encode of the 1-frame image, decode) and the per-token timestep of TI2V-5B
    ("wan2.2-ti2v-5b", ["workload.mode=i2v"], ["text_encoder", "vae_encode", "diffusion_core", "vae_decode"]),
    # the two experts of an A14B model, each against the real module
    ("wan2.2-t2v-a14b", ["workload.steps=4", "--stage", "diffusion_core"],   # 3 high-noise steps, 1 low
     ["diffusion_core/high_noise", "diffusion_core/low_noise"]),
])
def test_wan22_models_match(model, extra, stages, capsys):
    assert main(["verify", f"model={model}", *SMALL, *extra, "--format", "json"]) == 0
    doc = _json(capsys)
    assert [r["stage"] for r in doc["rows"] if r["path"] == ""] == stages and doc["match"]
    if model == "wan2.2-t2v-a14b":
        high, low = [r for r in doc["rows"] if r["path"] == ""]
        assert high["real_params"] == low["real_params"] == 14_288_491_584   # one 14B expert each


def test_stage_without_a_model_is_listed_not_compared(monkeypatch, capsys):
    from wanir import verify

    monkeypatch.setattr(verify, "STAGES", ("diffusion_core",))   # as if the others ran no model
    assert main(["verify", "model=wan2.1-t2v-1.3b", *SMALL, "--depth", "0", "--format", "json"]) == 0
    doc = _json(capsys)
    assert [r["stage"] for r in doc["rows"]] == ["diffusion_core"]
    assert doc["skipped"] == ["text_encoder", "vae_decode"]
