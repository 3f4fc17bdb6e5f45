"""family: generic — an accelerator of none of the known families, described from its
datasheet alone (examples/hardware/my-npu.yaml, docs/adding-hardware.md): it loads, its
peaks are the datasheet's, it is timed with the assumed constants of kernels.yaml's
``families.generic`` block, and every second of its time is marked as resting on them."""
import math

import pytest

import wanir
from hostile import REPO, cli
from wanir import hardware
from wanir.kernels import table

EXAMPLES = REPO / "examples"
SMALL = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=9",
         "workload.steps=2"]


def test_the_example_loads_with_its_datasheet_peaks():
    hw = hardware.load("my-npu", EXAMPLES)
    assert hw.family == "generic"
    # the datasheet's arithmetic, written out: 80 cores x 1.6 GHz x 4096 FLOP/clk = 524.288 TFLOP/s
    assert hw.tensor_flops["bf16"] == pytest.approx(80 * 1.6e9 * 4096)
    assert hw.tensor_flops["bf16"] == pytest.approx(524.3e12, rel=1e-3)       # the headline it quotes
    assert hw.vector_flops == pytest.approx(80 * 1.6e9 * 2 * 128)             # 32.77 TFLOP/s FP32
    assert hw.memory_bytes == 96 * 2**30


def test_every_generic_constant_is_assumed_and_says_why():
    t = table()
    blocks = [("sdpa", {"sdpa": t["sdpa"]["generic"]})]
    blocks += [(f"attention.{k}", b["generic"]) for k, b in t["attention"].items() if "generic" in b]
    blocks += [(s, t[s]["generic"]) for s in ("gemm", "conv", "memory", "issue")]
    leaves = [(f"{w}.{k}", v) for w, b in blocks for k, v in b.items()]
    assert len(leaves) >= 14
    for where, leaf in leaves:
        assert leaf["source"] == "assumed", where
        assert leaf.get("note") or where.endswith(("tile_n",)), where
    # the family has the kernels a plain estimate needs: SDPA resolves to one that exists on it
    assert t["sdpa"]["generic"]["value"] in t["attention"] and "generic" in t["attention"][t["sdpa"]["generic"]["value"]]


@pytest.mark.slow
def test_an_estimate_rests_entirely_on_the_assumed_constants():
    est = wanir.estimate(SMALL + ["hardware=my-npu"], EXAMPLES)
    hw = hardware.load("my-npu", EXAMPLES)
    for s in est.stages:
        assert s.provenance["assumed_share"] == pytest.approx(1.0), s.name
        t = s.total["time_s"]
        assert math.isfinite(t) and t > 0
    # no kernel beats the datasheet peak: the DiT's time is at least its tensor FLOPs at peak
    dit = est.stage("diffusion_core")
    assert dit.total["time_s"] >= dit.total["tensor_flops"] / hw.tensor_flops["bf16"]


@pytest.mark.integration
def test_the_cli_says_the_constants_are_assumed():
    r = cli("estimate", "--config-dir", EXAMPLES, "hardware=my-npu", *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    text = " ".join(r.stdout.split())
    assert "is of family generic: every kernel constant it is timed with is assumed" in text
    assert "100 % of it rests on assumed values" in text


@pytest.mark.integration
def test_wanir_hardware_lists_it():
    r = cli("hardware", "--config-dir", EXAMPLES)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "my-npu" in r.stdout and "generic" in r.stdout
