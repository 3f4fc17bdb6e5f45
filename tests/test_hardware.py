"""Hardware library: the built-in specs, user YAML, entry-point hardware, malformed files."""
import importlib.metadata
import textwrap

import pytest

from wanir import hardware
from wanir.cli import main
from wanir.config import load_config
from wanir.errors import ConfigError

GPUS = ("h100-sxm", "h100-pcie", "h200", "h800", "h20", "a100-40gb", "a100-80gb", "a800", "l40s", "l20",
        "rtx-4090", "b200", "gb200", "mi300x", "mi325x")


def test_builtin_library_has_all_gpus_and_a_host():
    names = {h.name for h in hardware.list_hardware()}
    assert set(GPUS) <= names
    assert hardware.load("host-cpu").kind == "cpu"


def test_every_value_has_a_source():
    for name in GPUS:
        hw = hardware.load(name)
        assert set(hw.sources.values()) <= set(hardware.SOURCES)
        for key in ("tensor_tflops.bf16", "vector_tflops", "memory.capacity_gib", "memory.bandwidth_tbps",
                    "host_link.bandwidth_gbps", "gpu_link.bandwidth_gbps", "launch_overhead_us",
                    "efficiency.matmul", "efficiency.memory", "efficiency.attention.flash2"):
            assert key in hw.sources, (name, key)


def test_h100_units_from_datasheet():
    hw = hardware.load("h100-sxm")
    assert hw.peak("bf16") == pytest.approx(989.4e12)
    assert hw.memory_bandwidth == pytest.approx(3.35e12)
    assert hw.memory_bytes == 80 * 2**30
    assert hw.ridge_point("bf16") == pytest.approx(989.4 / 3.35)
    assert hw.peak("tf32") == pytest.approx(494.7e12)


def test_step_table_lookup():
    t = hardware.StepTable("flops", (0.0, 10.0, 100.0), (0.1, 0.5, 0.9), "assumed")
    assert (t(0), t(9.9), t(10), t(99), t(1e9)) == (0.1, 0.1, 0.5, 0.5, 0.9)


SPEC = textwrap.dedent("""\
    name: my-gpu
    description: a test accelerator
    kind: gpu
    tensor_tflops:
      bf16: {value: 100, source: measured}
      fp32: {value: 10, source: datasheet}
    vector_tflops: {value: 10, source: datasheet}
    memory:
      capacity_gib: {value: 16, source: datasheet}
      bandwidth_tbps: {value: 1, source: datasheet}
    host_link:
      bandwidth_gbps: {value: 32, source: datasheet}
      efficiency: {value: 0.8, source: reported}
    gpu_link:
      bandwidth_gbps: {value: null, source: datasheet}
    launch_overhead_us: {value: 5, source: measured}
    efficiency:
      matmul: {source: measured, by: flops, steps: [[0, 0.5]]}
      conv: {source: measured, by: flops, steps: [[0, 0.5]]}
      attention:
        flash2: {source: measured, by: flops, steps: [[0, 0.5]]}
      vector: {source: measured, by: flops, steps: [[0, 0.5]]}
      memory: {source: measured, by: bytes, steps: [[0, 0.5]]}
    """)


def _user_dir(tmp_path, text=SPEC, name="my-gpu"):
    d = tmp_path / "conf" / "hardware"
    d.mkdir(parents=True)
    (d / f"{name}.yaml").write_text(text)
    return tmp_path / "conf"


def test_user_yaml_in_config_dir_is_picked_up(tmp_path, capsys):
    conf = _user_dir(tmp_path)
    cfg = load_config(["hardware=my-gpu"], conf)
    hw = hardware.from_config(cfg)
    assert hw.name == "my-gpu" and hw.memory_bytes == 16 * 2**30 and hw.gpu_link_bandwidth is None
    assert "my-gpu" in {h.name for h in hardware.list_hardware(conf)}
    assert main(["hardware", "--config-dir", str(conf), "--format", "json"]) == 0
    assert '"my-gpu"' in capsys.readouterr().out


def test_malformed_file_names_file_and_key(tmp_path):
    bad = SPEC.replace("bandwidth_tbps: {value: 1, source: datasheet}", "bandwidth_tbps: {value: fast, source: datasheet}")
    conf = _user_dir(tmp_path, bad, "bad-gpu")
    with pytest.raises(ConfigError) as e:
        load_config(["hardware=bad-gpu"], conf)
    assert "bad-gpu.yaml" in str(e.value) and "memory.bandwidth_tbps" in str(e.value)
    nosrc = SPEC.replace("capacity_gib: {value: 16, source: datasheet}", "capacity_gib: {value: 16, source: guess}")
    with pytest.raises(ConfigError, match=r"memory.capacity_gib.source"):
        hardware.from_mapping(__import__("yaml").safe_load(nosrc), origin="x.yaml")
    steps = SPEC.replace("memory: {source: measured, by: bytes, steps: [[0, 0.5]]}",
                         "memory: {source: measured, by: bytes, steps: [[0, 1.5]]}")
    with pytest.raises(ConfigError, match=r"x.yaml: key 'efficiency.memory.steps\[0\]'"):
        hardware.from_mapping(__import__("yaml").safe_load(steps), origin="x.yaml")


def test_entry_point_hardware_is_picked_up(tmp_path, monkeypatch):
    mod = tmp_path / "wanir_test_hw_plugin.py"
    mod.write_text("import yaml\nSPEC = yaml.safe_load('''" + SPEC.replace("my-gpu", "ep-gpu") + "''')\n"
                   "class EpGpu:\n    @staticmethod\n    def spec():\n        return SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(name="ep-gpu", value="wanir_test_hw_plugin:EpGpu", group="wanir.hardware")
    real = importlib.metadata.entry_points

    def fake(**kw):
        if kw.get("group") == "wanir.hardware":
            return [ep]
        return real(**kw)
    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    assert "ep-gpu" in hardware.plugin_names()
    assert hardware.load("ep-gpu").peak("bf16") == pytest.approx(100e12)
    cfg = load_config(["hardware=ep-gpu"])
    assert hardware.from_config(cfg).name == "ep-gpu"


def test_unknown_hardware_lists_known():
    with pytest.raises(ConfigError, match="h100-sxm"):
        hardware.load("h100-sxn")
