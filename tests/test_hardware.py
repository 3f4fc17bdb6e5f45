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


MICRO_KEYS = ("microarch.sms", "microarch.boost_clock_ghz", "microarch.tensor_clock_ghz",
              "microarch.sfu_exp_per_clk_sm", "microarch.fp32_lanes_per_sm", "microarch.l2_mib",
              "microarch.l2_bandwidth_tbps")


def test_every_value_has_a_source():
    for hw in hardware.list_hardware():
        assert set(hw.sources.values()) <= set(hardware.SOURCES)
        assert hw.family in hardware.FAMILIES
        for key in MICRO_KEYS + ("memory.capacity_gib", "memory.bandwidth_tbps", "host_link.bandwidth_gbps",
                                 "gpu_link.bandwidth_gbps", "launch_overhead_us"):
            assert key in hw.sources, (hw.name, key)
        inst = hw.micro.native
        assert f"microarch.tensor_flops_per_clk_sm.{inst}.bf16" in hw.sources, hw.name


# Dense datasheet peaks (TFLOP/s) from the hardware reference table: BF16, FP8, TF32, FP32
# (non-tensor). H20 and L20 have no public datasheet: their figures are as reported.
DATASHEET = {
    "h100-sxm": (989.4, 1979, 494.7, 67), "h100-pcie": (756, 1513, 378, 51), "h200": (989.4, 1979, 494.7, 67),
    "h800": (989, 1979, 494.7, 67), "h20": (148, 296, 74, 44), "a100-40gb": (312, None, 156, 19.5),
    "a100-80gb": (312, None, 156, 19.5), "a800": (312, None, 156, 19.5), "l40s": (362, 733, 183, 91.6),
    "l20": (119.5, 239, 59.8, 59.8), "rtx-4090": (165.2, 330, 82.6, 82.6), "b200": (2250, 4500, 1100, 75),
    "gb200": (2500, 5000, 1250, 80), "mi300x": (1307.4, 2614.9, 653.7, 163.4), "mi325x": (1307.4, 2614.9, 653.7, 163.4),
}


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_derived_peaks_match_the_datasheet(name):
    """Peaks derived from SMs x clock x FLOP/clock/SM (and 2 x FP32 lanes for the vector
    peak) agree with the datasheet headline: within 3 % (B200 TF32 is quoted as ~1100),
    within 12 % for H20's reported FP32 figure (no public datasheet)."""
    hw = hardware.load(name)
    bf16, fp8, tf32, fp32 = DATASHEET[name]
    assert hw.peak("bf16") / 1e12 == pytest.approx(bf16, rel=0.03)
    if fp8:
        assert hw.peak("fp8_e4m3") / 1e12 == pytest.approx(fp8, rel=0.03)
    assert hw.peak("tf32") / 1e12 == pytest.approx(tf32, rel=0.03)
    assert hw.vector_flops / 1e12 == pytest.approx(fp32, rel=0.12 if name == "h20" else 0.03)


def test_h100_derivation_by_hand():
    """132 SMs x 1.83 GHz x 4096 dense BF16 FLOP/clock/SM (wgmma) = 989.4 TFLOP/s;
    132 x 1.98 GHz x 2 x 128 FP32 lanes = 66.9 TFLOP/s."""
    hw = hardware.load("h100-sxm")
    assert hw.peak("bf16") == pytest.approx(132 * 1.83e9 * 4096)
    assert hw.vector_flops == pytest.approx(132 * 1.98e9 * 2 * 128)
    assert hw.family == "sm90" and hw.micro.native == "wgmma"


def test_host_workstation_is_a_cpu():
    hw = hardware.load("host-workstation")
    assert hw.kind == "cpu" and hw.family == "cpu"
    assert hw.peak("bf16") == pytest.approx(16 * 4.5e9 * 64)       # 16 cores x 4.5 GHz x 64 FLOP/clock
    assert hw.memory_bandwidth == pytest.approx(2 * 41.6e9)          # two channels of DDR5-5200


def test_h100_units_from_datasheet():
    hw = hardware.load("h100-sxm")
    assert hw.peak("bf16") == pytest.approx(989.4e12, rel=1e-4)
    assert hw.memory_bandwidth == pytest.approx(3.35e12)
    assert hw.memory_bytes == 80 * 2**30
    assert hw.ridge_point("bf16") == pytest.approx(989.4 / 3.35, rel=1e-4)
    assert hw.peak("tf32") == pytest.approx(494.7e12, rel=1e-4)


SPEC = textwrap.dedent("""\
    name: my-gpu
    description: a test accelerator
    kind: gpu
    family: sm90
    microarch:
      sms: {value: 100, source: measured}
      boost_clock_ghz: {value: 1.0, source: datasheet}
      tensor_clock_ghz: {value: 1.0, source: datasheet}
      tensor_flops_per_clk_sm:
        wgmma:
          bf16: {value: 1000, source: measured}
      sfu_exp_per_clk_sm: {value: 16, source: reported}
      fp32_lanes_per_sm: {value: 50, source: datasheet}
      l2_mib: {value: 1, source: datasheet}
      l2_bandwidth_tbps: {value: 2, source: assumed}
    memory:
      capacity_gib: {value: 16, source: datasheet}
      bandwidth_tbps: {value: 1, source: datasheet}
    host_link:
      bandwidth_gbps: {value: 32, source: datasheet}
      efficiency: {value: 0.8, source: reported}
    gpu_link:
      bandwidth_gbps: {value: null, source: datasheet}
    launch_overhead_us: {value: 5, source: measured}
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
    y = __import__("yaml")
    old = SPEC + "efficiency:\n  matmul: {source: measured, by: flops, steps: [[0, 0.5]]}\n"
    with pytest.raises(ConfigError, match=r"x.yaml: key 'efficiency': .*kernel model"):
        hardware.from_mapping(y.safe_load(old), origin="x.yaml")
    fam = SPEC.replace("family: sm90", "family: sm95")
    with pytest.raises(ConfigError, match=r"x.yaml: key 'family': must be one of sm80"):
        hardware.from_mapping(y.safe_load(fam), origin="x.yaml")
    inst = SPEC.replace("    wgmma:", "    warp9:")
    with pytest.raises(ConfigError, match=r"tensor_flops_per_clk_sm.warp9'.*allowed: mma_sync"):
        hardware.from_mapping(y.safe_load(inst), origin="x.yaml")
    sms = SPEC.replace("sms: {value: 100, source: measured}", "sms: {value: 1.0e+9, source: measured}")
    with pytest.raises(ConfigError, match=r"microarch.sms.value': must lie in"):
        hardware.from_mapping(y.safe_load(sms), origin="x.yaml")
    over = SPEC + "kernels:\n  gemm:\n    ceiling: {value: 1.5, source: measured}\n"
    with pytest.raises(ConfigError, match=r"kernels.gemm'.ceiling.value: must lie in"):
        hardware.from_mapping(y.safe_load(over), origin="x.yaml")


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
    assert hardware.load("ep-gpu").peak("bf16") == pytest.approx(100 * 1e9 * 1000)   # SMs x clock x FLOP/clock
    cfg = load_config(["hardware=ep-gpu"])
    assert hardware.from_config(cfg).name == "ep-gpu"


def test_unknown_hardware_lists_known():
    with pytest.raises(ConfigError, match="h100-sxm"):
        hardware.load("h100-sxn")


def test_hardware_listing_counts_sources_per_device(capsys):
    """`wanir hardware --format json` gives each device's family and how many of its values
    are datasheet/reported/measured/assumed: counted here from the YAML file itself."""
    import json

    import yaml
    assert main(["hardware", "--format", "json"]) == 0
    recs = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    path = hardware.yaml_files()["h20"]

    def leaves(node):
        if isinstance(node, dict):
            if "source" in node and "value" in node:
                yield node["source"]
            else:
                for v in node.values():
                    yield from leaves(v)
    counts = {}
    for s in leaves(yaml.safe_load(path.read_text())):
        counts[s] = counts.get(s, 0) + 1
    assert recs["h20"]["family"] == "sm90"
    assert {k: v for k, v in recs["h20"]["sources"].items() if v} == counts


TOPO = """host_topology:
  p2p: {value: P2P, source: reported}
  cards_per_root_complex: {value: CARDS, source: assumed}
  host_memory_bandwidth_gbps: {value: MEM, source: assumed}
"""


@pytest.mark.parametrize("p2p,cards,mem,match", [
    ("1", "4", "614.4", r"host_topology\.p2p'.*true\|false"),
    ("false", "0", "614.4", r"host_topology\.cards_per_root_complex\.value'.*positive"),
    ("false", "65", "614.4", r"host_topology\.cards_per_root_complex\.value'.*\[1, 64\]"),
    ("false", "2.5", "614.4", r"cards_per_root_complex\.value'.*whole number"),
    ("false", "4", "-1", r"host_topology\.host_memory_bandwidth_gbps\.value'.*positive"),
    ("false", "4", ".nan", r"host_memory_bandwidth_gbps\.value'.*number"),
])
def test_host_topology_is_checked(p2p, cards, mem, match):
    import yaml as y
    text = SPEC + TOPO.replace("P2P", p2p).replace("CARDS", cards).replace("MEM", mem)
    with pytest.raises(hardware.HardwareError, match=match):
        hardware.from_mapping(y.safe_load(text), origin="x.yaml")


def test_host_topology_parsed_in_si_units():
    import yaml as y
    text = SPEC + TOPO.replace("P2P", "false").replace("CARDS", "4").replace("MEM", "614.4")
    hw = hardware.from_mapping(y.safe_load(text), origin="x.yaml")
    assert hw.host_topology == hardware.HostTopology(False, 4, 614.4e9)
    assert hardware.from_mapping(y.safe_load(SPEC), origin="x.yaml").host_topology is None
