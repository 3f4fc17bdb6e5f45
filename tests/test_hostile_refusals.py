"""Hostile inputs that got through a review (issue 20): a duplicate key or a climbing defaults
entry in a --config-dir file, a link loop under --config-dir, a network so slow its times
overflow, subnormal measurements, calibrate -o naming a file or a device, 5000-digit
numbers in overrides, safetensors headers and specs, a 0 in a checkpoint's patch-embedding
kernel, a .pth dict that contains itself, unbounded Wan2.2-VAE keys, an unknown
distill.name or model.task, sweep -j beyond the cores, and terminal escapes in CSV labels.
Each is refused with one line and exit 2 before any work, in bounded time and memory
(tests/hostile.py), or (sweep -j, labels) handled without harm and said so."""
import json
import math
import struct

import pytest

from hostile import REPO, assert_one_line_error, cli

SMALL = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=480", "workload.frames=5",
         "workload.steps=1"]
WORKLOAD = "height: 480\nwidth: 480\nframes: 5\nsteps: 1\nguidance: false\nbatch: 1\ntext_len: 512\nvae_encode: false\n"
DIGITS = "9" * 5000


def _safetensors(path, header: dict):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


# ----------------------------------------------------------------------------- --config-dir


@pytest.mark.integration
def test_duplicate_key_in_a_config_dir_file(tmp_path):
    (tmp_path / "workload").mkdir()
    (tmp_path / "workload" / "dup.yaml").write_text("height: 480\n" + WORKLOAD)   # height twice
    line = assert_one_line_error(cli("estimate", "--config-dir", tmp_path, *SMALL, "workload=dup"),
                                 "dup.yaml:2:1", "duplicate key 'height'", "first on line 1")
    assert "Traceback" not in line


@pytest.mark.integration
def test_duplicate_key_in_a_hardware_file(tmp_path):
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "x.yaml").write_text("name: x\nkind: gpu\nname: y\n")
    assert_one_line_error(cli("hardware", "--config-dir", tmp_path), "x.yaml:3:1", "duplicate key 'name'")


@pytest.mark.integration
@pytest.mark.parametrize("key", ["../hardware@hardware", "override ../hardware@hardware", "hardware@..x",
                                 "./hardware", "~/hardware"])
def test_defaults_entry_that_climbs_out_of_its_group(tmp_path, key):
    (tmp_path / "workload").mkdir()
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "mine.yaml").write_text("name: mine\n")
    (tmp_path / "workload" / "climb.yaml").write_text(f"defaults:\n  - {key}: mine\n  - _self_\n" + WORKLOAD)
    assert_one_line_error(cli("estimate", "--config-dir", tmp_path, *SMALL, "workload=climb"),
                          "climb.yaml", "the defaults list names the group", "no '..'")


@pytest.mark.integration
def test_defaults_entry_inside_the_folder_still_composes(tmp_path):
    """The check refuses only climbing: a plain group entry composes."""
    (tmp_path / "workload").mkdir()
    (tmp_path / "workload" / "w.yaml").write_text("defaults:\n  - _self_\n" + WORKLOAD)
    r = cli("config", "--config-dir", tmp_path, *SMALL, "workload=w")
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.integration
@pytest.mark.parametrize("make", ["file-loop", "dir-loop"])
def test_link_loop_under_config_dir_for_wanir_hardware(tmp_path, make):
    hw = tmp_path / "hardware"
    hw.mkdir()
    if make == "file-loop":   # a.yaml -> b.yaml -> a.yaml: stat() fails with ELOOP
        (hw / "a.yaml").symlink_to("b.yaml")
        (hw / "b.yaml").symlink_to("a.yaml")
        needles = ("a.yaml", "Too many levels of symbolic links")
    else:                     # a folder that links to its parent: an endless walk
        (hw / "up").symlink_to("..")
        needles = ("--config-dir", "a link loop?")
    assert_one_line_error(cli("hardware", "--config-dir", tmp_path, timeout=60), *needles)


# ----------------------------------------------------------------------------- values


@pytest.mark.integration
@pytest.mark.parametrize("key,value", [("parallel.network.bandwidth_GBps", "1e-300"),
                                       ("parallel.network.bandwidth_GBps", "0.009"),
                                       ("parallel.network.efficiency", "1e-300"),
                                       ("parallel.intra_node.efficiency", "5e-324")])
def test_a_network_too_slow_to_time_is_refused(key, value):
    assert_one_line_error(cli("size", *SMALL, f"{key}={value}", "--hardware", "h100-sxm", "--devices", "2",
                              "--latency", "600"), key, "[0.01, ")


@pytest.mark.integration
def test_the_slowest_network_allowed_gives_finite_times():
    """At the lower bound (0.01 GB/s per GPU, slower than 100 Mb/s Ethernet) a two-node plan's
    time is finite: a ring all-gather of the 1.3B model's weights over it takes minutes, not inf."""
    r = cli("size", *SMALL, "parallel.network.bandwidth_GBps=0.01", "parallel.network.efficiency=0.01",
            "parallel.gpus_per_node=1", "--hardware", "h100-sxm", "--devices", "2", "--latency", "1e9", "--all",
            "--format", "json", timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(r.stdout)        # strict JSON: an inf or nan would be Infinity/NaN here
    text = r.stdout.lower()
    assert "infinity" not in text and "nan" not in text
    times = {row["plan"]: row["time_s"] for row in data["candidates"]}
    assert times and all(math.isfinite(t) for t in times.values()), times
    # the collectives really cross the slow link: ring attention over two nodes is far slower
    # than data parallelism, which sends nothing
    assert times["ring2"] > 100 * times["dp2"], times


@pytest.mark.integration
@pytest.mark.parametrize("column,value", [("measured_s", "4.9e-324"), ("measured_s", "1e-310"),
                                          ("measured_s", "0.0000001"), ("measured_peak_gb", "5e-324")])
def test_validate_refuses_a_subnormal_measurement(tmp_path, column, value):
    f = tmp_path / "runs.csv"
    peak = value if column == "measured_peak_gb" else "10"
    secs = value if column == "measured_s" else "12"
    f.write_text(f"label,overrides,measured_s,measured_peak_gb\nrow,{' '.join(SMALL)},{secs},{peak}\n")
    line = assert_one_line_error(cli("validate", f), "runs.csv line 2", column, "[0.001, 1e9]")
    assert "inf" not in line


@pytest.mark.integration
@pytest.mark.parametrize("args", [
    ("estimate", *SMALL, f"workload.batch={DIGITS}"),
    ("estimate", *SMALL, f"workload.height=1{'0' * 1000}"),
    ("estimate", *SMALL, f"hardware.memory.bandwidth_tbps.value={DIGITS}.5"),
    ("size", *SMALL, f"workload.steps={DIGITS}", "--latency", "60"),
])
def test_5000_digit_integers_in_overrides(args):
    assert_one_line_error(cli(*args), "digits; at most 1000 characters")


@pytest.mark.integration
def test_5000_digit_integer_in_a_safetensors_header(tmp_path):
    f = tmp_path / "big.safetensors"
    raw = ('{"a": {"dtype": "BF16", "shape": [' + DIGITS + '], "data_offsets": [0, 2]}}').encode()
    f.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0\0")
    assert_one_line_error(cli("inspect", f), "big.safetensors", "a number of 5000 characters")


@pytest.mark.integration
def test_5000_digit_integer_in_a_config_json(tmp_path):
    f = tmp_path / "config.json"
    f.write_text('{"_class_name": "WanTransformer3DModel", "num_layers": ' + DIGITS + "}")
    assert_one_line_error(cli("inspect", f), "config.json", "a number of 5000 characters")


@pytest.mark.integration
@pytest.mark.parametrize("where", ["attrs", "shape"])
def test_5000_digit_integers_in_spec_attributes(tmp_path, where):
    f = tmp_path / "spec.yaml"
    if where == "attrs":
        body = (f"name: s\ninputs:\n  x: {{shape: [1, 8], dtype: bf16}}\n"
                f"ops:\n  - {{op: linear, input: x, attrs: {{out_features: {DIGITS}}}}}\n")
    else:
        body = f"name: s\ninputs:\n  x: {{shape: [1, {DIGITS}], dtype: bf16}}\nops:\n  - {{op: silu, input: x}}\n"
    f.write_text(body)
    assert_one_line_error(cli("spec", f), "spec.yaml:", "a number of 5000 characters")


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.integration
def test_zero_in_the_patch_embedding_kernel(tmp_path):
    d = 1536
    shapes = {"patch_embedding.weight": [d, 16, 0, 2, 2],     # a 0 in the kernel's T dim
              "condition_embedder.time_embedder.linear_1.weight": [d, 256],
              "condition_embedder.text_embedder.linear_1.weight": [d, 4096],
              "proj_out.weight": [64, d], "blocks.0.ffn.net.0.proj.weight": [8960, d]}
    f = tmp_path / "dit.safetensors"
    _safetensors(f, {k: {"dtype": "BF16", "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()})
    assert_one_line_error(cli("inspect", f), "patch_embedding.weight", "dit.patch_size", "[1, 64]", "got 0")


@pytest.mark.integration
@pytest.mark.parametrize("shape", ["self", "nested"])
def test_pth_dict_that_contains_itself(tmp_path, shape):
    torch = pytest.importorskip("torch")
    d = {"step": 1}
    if shape == "self":
        d["model"] = d
    else:
        d["state_dict"] = {"model": d}
    f = tmp_path / "loop.pth"
    torch.save(d, f)
    assert_one_line_error(cli("inspect", f), "loop.pth", "not a state dict")


VAE22 = {"_class_name": "AutoencoderKLWan", "base_dim": 160, "decoder_base_dim": 256, "z_dim": 48,
         "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [], "temperal_downsample": [False, True, True],
         "is_residual": True, "in_channels": 12, "out_channels": 12, "patch_size": 2}


@pytest.mark.integration
@pytest.mark.parametrize("key,value,needle", [
    ("decoder_base_dim", -3, "vae.decoder_base_dim must be an integer in [1, 4096]"),
    ("decoder_base_dim", 10**8, "vae.decoder_base_dim must be an integer in [1, 4096]"),   # 10**22 parameters
    ("patch_size", 0, "vae.patch_size must be an integer in [1, 8]"),
    ("patch_size", 4096, "vae.patch_size must be an integer in [1, 8]"),
    ("is_residual", 3, "vae.is_residual must be true or false"),
    ("in_channels", -12, "vae.in_channels must be an integer in [1, 4096]"),
    ("out_channels", 10**9, "vae.out_channels must be an integer in [1, 4096]"),
])
def test_wan22_vae_config_keys_are_bounded(tmp_path, key, value, needle):
    f = tmp_path / "config.json"
    f.write_text(json.dumps(dict(VAE22, **{key: value})))
    assert_one_line_error(cli("inspect", f), "config.json", needle)


@pytest.mark.integration
def test_wan22_vae_valid_config_gives_the_published_size(tmp_path):
    """The bounds do not refuse the real Wan2.2-VAE config (diffusers' Wan2.2-TI2V-5B vae/config.json)."""
    f = tmp_path / "config.json"
    f.write_text(json.dumps(VAE22))
    r = cli("inspect", f)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.integration
@pytest.mark.parametrize("override,needle", [
    ("vae.decoder_base_dim=-1", "vae.decoder_base_dim must be an integer in [1, 4096]"),
    ("vae.decoder_base_dim=100000000", "vae.decoder_base_dim must be an integer in [1, 4096]"),
    ("vae.out_channels=100000000", "vae.out_channels must be an integer in [1, 4096]"),
    ("vae.is_residual=5", "vae.is_residual must be true or false"),
])
def test_wan22_vae_overrides_are_bounded(override, needle):
    assert_one_line_error(cli("estimate", "model=wan2.2-ti2v-5b", override), needle)


# ----------------------------------------------------------------------------- names


@pytest.mark.integration
@pytest.mark.parametrize("override,needle", [
    ("distill.name=nosuch", "distill.name must be one of none, cfg, 3step, 4step"),
    ("model.task=v2v", "model.task must be one of t2v, i2v, ti2v"),
])
def test_unknown_distill_name_and_task(override, needle):
    assert_one_line_error(cli("estimate", *SMALL, override), needle)


# ----------------------------------------------------------------------------- outputs


@pytest.mark.integration
@pytest.mark.parametrize("target,needle", [("file", "is a regular file"), ("/dev/null", "is not a regular file"),
                                           ("under-a-file", "is not a directory")])
def test_calibrate_output_is_checked_before_measuring(tmp_path, target, needle):
    """Refused before torch is even imported: the run takes no measuring time (a 1 s budget
    would not matter; the time limit of tests/hostile.py bounds it)."""
    f = tmp_path / "afile"
    f.write_text("x")
    out = {"file": f, "/dev/null": "/dev/null", "under-a-file": f / "sub"}[target]
    r = cli("calibrate", "--device", "cpu", "--quick", "-q", "-o", out, timeout=60)
    assert_one_line_error(r, "-o ", needle)


@pytest.mark.integration
def test_calibrate_output_link_is_refused(tmp_path):
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "mine.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    pytest.importorskip("torch")
    r = cli("calibrate", "--device", "cpu", "--quick", "-q", "--name", "mine", "-o", tmp_path, timeout=60)
    assert_one_line_error(r, "mine.yaml", "symbolic link")


@pytest.mark.integration
def test_sweep_jobs_are_capped_at_the_usable_cores(tmp_path):
    """-j 64 on a machine with fewer cores runs at most one process per usable core, and
    says so on stderr (the cores of this process: sched_getaffinity)."""
    import os
    cores = len(os.sched_getaffinity(0))
    r = cli("sweep", "-q", "-j", "64", "-o", tmp_path / "out", *SMALL[:-1], "workload.steps=1,2,3")
    assert r.returncode == 0, r.stderr[-2000:]
    used = min(64, cores, 3)   # never more processes than points either
    assert f"({used} process(es)" in r.stderr, r.stderr
    if cores < 64:
        assert f"-j 64 capped at {cores} processes" in r.stderr


# ----------------------------------------------------------------------------- terminal escapes


ESC_LABEL = "\x1b[31mRED\x1b]0;pwned\x07\x9b2J"


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["table", "md", "json"])
def test_csv_label_escape_codes_never_reach_the_terminal(tmp_path, fmt):
    f = tmp_path / "runs.csv"
    f.write_text(f'label,overrides,measured_s\n"{ESC_LABEL}",{" ".join(SMALL)},12\n', encoding="utf-8")
    r = cli("validate", f, "--format", fmt)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    for c in ("\x1b", "\x07", "\x9b"):
        assert c not in out, repr(out[:400])
    shown = json.loads(r.stdout)["rows"][0]["label"] if fmt == "json" else out
    assert "\\x1b[31mRED" in shown and "\\x07" in shown


def test_printable_escapes_every_control_character():
    from wanir.safeio import printable

    every = "".join(map(chr, range(0, 160)))
    out = printable(every)
    assert all(c.isprintable() for c in out)
    assert printable("plain ü text") == "plain ü text"
    assert printable("a\x1bb") == "a\\x1bb"


@pytest.mark.integration
def test_hardware_description_escape_codes_never_reach_the_terminal(tmp_path):
    import re

    text = (REPO / "wanir" / "configs" / "hardware" / "h100-sxm.yaml").read_text()
    text = re.sub(r"(?m)^name: .*$", "name: evil", text, count=1)
    # YAML double quotes turn \e and \a into ESC and BEL
    text = re.sub(r"(?m)^description: .*$", lambda m: 'description: "\\e[2J\\e]0;pwned\\a H100"', text, count=1)
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "evil.yaml").write_text(text)
    r = cli("hardware", "--config-dir", tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "\\x1b[2J" in r.stdout
