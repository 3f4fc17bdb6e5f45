"""Hostile files: FIFOs, devices, directories, oversized files, YAML alias bombs, lying
safetensors headers, huge block indices, compressed-pickle bombs, index files that point
outside their folder. Each is refused with one line and exit 2, in bounded time and memory
(tests/hostile.py runs every case under an address-space limit and a timeout)."""
import json
import os
import struct
import zipfile

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hostile import assert_one_line_error, cli
from wanir.errors import ConfigError, SpecError
from wanir.frontends.ckpt_read import check_torch_zip
from wanir.safeio import CAPS, YAML_MAX_NODES, check_yaml_text, load_yaml, read_regular_file

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi"))   # 10**9 strings once expanded


def _safetensors(path, header: dict, pad: int = 64):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(pad))


# ----------------------------------------------------------------------------- not regular files


@pytest.mark.integration
@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "spec.yaml", "w.pth"])
def test_fifo_is_refused_without_blocking(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    cmd = ("spec", fifo) if name.endswith(".yaml") else ("inspect", fifo)
    assert_one_line_error(cli(*cmd, timeout=60), "is a FIFO", "must be a regular file")


@pytest.mark.integration
@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "spec.yaml", "w.pth"])
def test_dev_zero_behind_a_link_is_refused(tmp_path, name):
    link = tmp_path / name
    link.symlink_to("/dev/zero")
    cmd = ("spec", link) if name.endswith(".yaml") else ("inspect", link)
    assert_one_line_error(cli(*cmd), "is a device")


@pytest.mark.integration
def test_directory_as_spec(tmp_path):
    assert_one_line_error(cli("spec", tmp_path), "is a directory")


def test_nul_byte_in_a_path_is_a_spec_error():
    with pytest.raises(SpecError, match="NUL"):
        from wanir.frontends.spec import load_spec
        load_spec("\x00")


# ----------------------------------------------------------------------------- size caps


@pytest.mark.integration
@pytest.mark.parametrize("name,cmd,kind", [
    ("big.yaml", "spec", "spec"),
    ("config.json", "inspect", "config.json"),
])
def test_size_cap_per_kind(tmp_path, name, cmd, kind):
    p = tmp_path / name
    with open(p, "wb") as f:           # sparse: no disk or memory spent making it
        f.truncate(CAPS[kind] + 1)
    assert_one_line_error(cli(cmd, p, mem=2**31), f"the {kind} is", "at most")


def test_read_regular_file_refuses_growth_past_the_cap(tmp_path):
    p = tmp_path / "x.json"
    p.write_bytes(b"x" * 101)
    with pytest.raises(ConfigError, match="at most 100 bytes"):
        read_regular_file(p, "config.json", cap=100)


@pytest.mark.integration
def test_safetensors_header_length_beyond_the_cap(tmp_path):
    p = tmp_path / "m.safetensors"
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", CAPS["safetensors header"] + 1))
        f.truncate(CAPS["safetensors header"] + 64)   # large enough that the length "fits" the file
    assert_one_line_error(cli("inspect", p), "safetensors header would be", "at most")


@pytest.mark.integration
def test_safetensors_header_nesting_bomb(tmp_path):
    p = tmp_path / "m.safetensors"
    raw = b"[" * 200_000 + b"]" * 200_000
    p.write_bytes(struct.pack("<Q", len(raw)) + raw)
    assert_one_line_error(cli("inspect", p), "not a safetensors file")


@pytest.mark.integration
def test_block_index_of_1e20_is_refused_before_any_range(tmp_path):
    h = {"patch_embedding.weight": {"dtype": "BF16", "shape": [128, 16, 1, 2, 2], "data_offsets": [0, 0]},
         "condition_embedder.time_embedder.linear_1.weight": {"dtype": "BF16", "shape": [128, 256],
                                                               "data_offsets": [0, 0]},
         "condition_embedder.text_embedder.linear_1.weight": {"dtype": "BF16", "shape": [128, 64],
                                                               "data_offsets": [0, 0]},
         "proj_out.weight": {"dtype": "BF16", "shape": [64, 128], "data_offsets": [0, 0]},
         "blocks.0.ffn.net.0.proj.weight": {"dtype": "BF16", "shape": [256, 128], "data_offsets": [0, 0]},
         f"blocks.{10**20}.attn1.to_q.weight": {"dtype": "BF16", "shape": [128, 128], "data_offsets": [0, 0]}}
    p = tmp_path / "dit.safetensors"
    _safetensors(p, h)
    assert_one_line_error(cli("inspect", p, timeout=60), "at most 1024 blocks")


@pytest.mark.integration
def test_safetensors_shapes_bounded(tmp_path):
    p = tmp_path / "m.safetensors"
    _safetensors(p, {"w": {"dtype": "BF16", "shape": [10**400], "data_offsets": [0, 0]}})
    assert_one_line_error(cli("inspect", p), "malformed safetensors header entry")


@pytest.mark.integration
@pytest.mark.parametrize("cfg,needle", [
    ({"_class_name": "WanTransformer3DModel", "num_layers": 100_000_000}, "dit.num_layers must be an integer in [1, 1024]"),
    ({"_class_name": "WanTransformer3DModel", "in_channels": -16}, "dit.in_channels"),
    ({"_class_name": "WanTransformer3DModel", "num_layers": 1.5}, "dit.num_layers"),
    ({"_class_name": "WanTransformer3DModel", "num_layers": True}, "dit.num_layers"),
    ({"_class_name": "WanTransformer3DModel", "patch_size": [0, 2, 2]}, "dit.patch_size"),
    ({"_class_name": "WanTransformer3DModel", "patch_size": 5}, "wrong type"),
    ({"_class_name": "WanModel", "num_heads": 0}, "num_heads"),
    ({"model_type": "umt5", "num_layers": 10**6}, "text_encoder.num_layers"),
    ({"architectures": [1, {"a": 2}]}, "wanir reads"),
    ({"_class_name": "AutoencoderKLWan", "base_dim": -96}, "vae.base_dim"),
])
def test_config_json_values_checked_before_arithmetic(tmp_path, cfg, needle):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    assert_one_line_error(cli("inspect", p), needle)


@pytest.mark.integration
def test_config_json_400_digit_integer_and_infinity(tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{"_class_name": "WanTransformer3DModel", "num_layers": ' + "9" * 400 + "}")
    line = assert_one_line_error(cli("inspect", p), "at most 2**40", "400 digits")
    assert "9" * 100 not in line
    p.write_text('{"_class_name": "WanTransformer3DModel", "eps": Infinity}')
    assert_one_line_error(cli("inspect", p), "finite")


@pytest.mark.integration
def test_index_json_shard_outside_its_folder(tmp_path):
    p = tmp_path / "model.safetensors.index.json"
    p.write_text(json.dumps({"weight_map": {"a": "../../etc/passwd.safetensors"}}))
    assert_one_line_error(cli("inspect", p), "not a file name in the index's folder")


# ----------------------------------------------------------------------------- PyTorch zip bombs


def _zip(path, members: dict, compress=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        for name, data in members.items():
            z.writestr(name, data)


@pytest.mark.integration
def test_compressed_pickle_bomb(tmp_path):
    p = tmp_path / "bomb.pth"
    _zip(p, {"archive/data.pkl": b"\0" * (64 * 2**20), "archive/version": b"3\n"})   # ~64 KiB on disk
    assert os.path.getsize(p) < 2**20
    assert_one_line_error(cli("inspect", p, mem=4 * 2**30), "expands", "times")


def test_stored_member_over_the_cap(tmp_path, monkeypatch):
    p = tmp_path / "big.pth"
    _zip(p, {"archive/data.pkl": b"\x80\x02}q\x00.", "archive/data/0": b"\0" * 4096}, zipfile.ZIP_STORED)
    monkeypatch.setitem(CAPS, "checkpoint member", 1024)
    with pytest.raises(ConfigError, match=r"member 'archive/data/0' is 4 KiB uncompressed"):
        check_torch_zip(p)


@pytest.mark.integration
def test_legacy_checkpoint_over_the_cap(tmp_path):
    p = tmp_path / "legacy.pth"
    with open(p, "wb") as f:
        f.write(b"\x80\x02")
        f.truncate(CAPS["legacy checkpoint"] + 1)
    assert_one_line_error(cli("inspect", p), "legacy (non-zip) format")


# ----------------------------------------------------------------------------- YAML


@pytest.mark.integration
def test_alias_bomb_in_a_spec(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(BOMB)
    assert_one_line_error(cli("spec", p, mem=2**31, timeout=60), "aliases", "refused")


@pytest.mark.integration
def test_alias_bomb_in_a_hardware_yaml(tmp_path):
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "bomb.yaml").write_text(BOMB)
    assert_one_line_error(cli("hardware", "--config-dir", tmp_path, mem=2**31, timeout=60), "bomb.yaml", "aliases")
    assert_one_line_error(cli("estimate", "--config-dir", tmp_path, "hardware=bomb", mem=2**31, timeout=60),
                          "bomb.yaml", "aliases")


@pytest.mark.integration
def test_alias_bomb_in_another_config_group(tmp_path):
    (tmp_path / "workload").mkdir()
    (tmp_path / "workload" / "bomb.yaml").write_text(BOMB)
    assert_one_line_error(cli("estimate", "--config-dir", tmp_path, "workload=bomb", mem=2**31, timeout=60),
                          "aliases")


@pytest.mark.integration
def test_fifo_in_config_dir(tmp_path):
    (tmp_path / "hardware").mkdir()
    os.mkfifo(tmp_path / "hardware" / "pipe.yaml")
    assert_one_line_error(cli("estimate", "--config-dir", tmp_path, timeout=60), "is a FIFO")


@pytest.mark.integration
def test_self_referencing_interpolation_in_config_dir(tmp_path):
    (tmp_path / "workload").mkdir()
    (tmp_path / "workload" / "loop.yaml").write_text("height: ${workload.height}\nwidth: 832\nframes: 81\n"
                                                      "steps: 1\nguidance: true\nbatch: 1\ntext_len: 512\n"
                                                      "vae_encode: false\n")
    assert_one_line_error(cli("estimate", "--config-dir", tmp_path, "workload=loop"), "interpolation")


def test_load_yaml_counts_shared_nodes_once_per_use():
    # shared but small: fine; the same sharing one level deeper than the cap allows: refused
    ok = load_yaml("a: &a [1, 2]\nb: [*a, *a]\n")
    assert ok == {"a": [1, 2], "b": [[1, 2], [1, 2]]}
    n = 1
    text, prev = "l0: &l0 [0, 0, 0, 0]\n", "l0"
    for i in range(1, 12):
        text += f"l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}]\n"
        prev = f"l{i}"
        n *= 4
    assert n * 4 > YAML_MAX_NODES
    with pytest.raises(ConfigError, match="aliases"):
        load_yaml(text)


def test_recursive_alias():
    with pytest.raises(ConfigError, match="contains itself"):
        load_yaml("a: &a [*a]\n")


def test_deep_nesting():
    with pytest.raises(ConfigError, match="nest"):
        load_yaml("[" * 5000 + "]" * 5000)


def test_checked_yaml_text_words_refusals_as_pyyaml_finds_them():
    # check_yaml_text composes with libyaml first; whatever it refuses is worded by PyYAML's
    # own parser: the line, column and problem PyYAML reports
    bad = "a: 1\nb: [1, 2\nc: 3\n"
    with pytest.raises(yaml.YAMLError) as pe:
        yaml.load(bad, Loader=yaml.SafeLoader)
    m = pe.value.problem_mark
    with pytest.raises(ConfigError) as e:
        check_yaml_text(bad, "f.yaml")
    assert str(e.value) == f"f.yaml:{m.line + 1}:{m.column + 1}: YAML syntax error: {pe.value.problem}"
    with pytest.raises(ConfigError, match="nest"):
        check_yaml_text("[" * 5000 + "]" * 5000, "f.yaml")
    with pytest.raises(ConfigError, match="contains itself"):
        check_yaml_text("a: &a [*a]\n", "f.yaml")
    check_yaml_text("a: 1\n---\nb: [1, 2]\n", "f.yaml")       # several documents: each checked, accepted


@pytest.mark.integration
def test_link_loop_in_config_dir(tmp_path):
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "loop").symlink_to(tmp_path / "hardware")
    assert_one_line_error(cli("estimate", "--config-dir", tmp_path, timeout=60), "link loop")


_DATA = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
                     max_leaves=30)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(_DATA)
def test_load_yaml_reads_what_safe_load_reads(data):
    text = yaml.safe_dump({"a": data, "b": data})
    assert load_yaml(text) == yaml.safe_load(text)
