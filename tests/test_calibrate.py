"""wanir calibrate on the CPU (--quick): a loadable, measured hardware YAML that estimate uses."""
import csv
import statistics
import sys

import pytest
import yaml

from wanir import hardware
from wanir.errors import WanirError

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def cal(tmp_path_factory):
    from wanir.backends import calibrate
    out = tmp_path_factory.mktemp("cal")
    res = calibrate.run(out, device="cpu", quick=True, progress=False, budget_s=120)
    return out, res


@pytest.mark.slow
def test_writes_a_loadable_measured_yaml(cal):
    out, res = cal
    assert res["name"] == "host-cpu-calibrated"
    hw = hardware.load("host-cpu-calibrated", out)
    assert hw.kind == "cpu" and hw.family == "cpu"
    data = yaml.safe_load(res["yaml"].read_text())
    leaves = [v for sec in data["kernels"].values() for v in sec.values()]
    leaves = [x for v in leaves for x in (v.values() if "value" not in v else [v])]
    assert leaves and all(x["source"] == "measured" for x in leaves)
    assert hw.sources["microarch.sms"] == "measured"
    assert res["plot"].stat().st_size > 0


@pytest.mark.slow
def test_csv_holds_every_measurement(cal):
    out, res = cal
    rows = list(csv.DictReader(res["csv"].open()))
    benches = {r["bench"] for r in rows}
    assert {"gemm", "attention", "conv3d", "memory", "issue"} <= benches
    assert all(float(r["seconds"]) > 0 for r in rows if not r["note"])


@pytest.mark.slow
def test_fp32_gemm_ceiling_derived_by_hand(cal):
    """fp32 GEMMs run on the FP32 lanes: peak = cores × clock × 2 × lanes; an n×n×n GEMM with
    n a multiple of the 32×32 CPU tile wastes no tile; the (n/32)² tiles run in waves over the
    cores; the K ramp is n / (n + k_ramp). The fitted ceiling is the median over the grid of
    achieved / (peak × wave × ramp)."""
    out, res = cal
    data = yaml.safe_load(res["yaml"].read_text())
    m = data["microarch"]
    cores, clk, lanes = m["sms"]["value"], m["boost_clock_ghz"]["value"] * 1e9, m["fp32_lanes_per_sm"]["value"]
    peak = cores * clk * 2 * lanes
    k_ramp = yaml.safe_load(open(__import__("wanir.kernels", fromlist=["PATH"]).PATH))["gemm"]["cpu"]["k_ramp"]["value"]
    ratios = []
    for r in csv.DictReader(res["csv"].open()):
        if r["bench"] == "gemm" and r["dtype"] == "fp32":
            n = int(r["shape"].split("x")[0])
            tiles = (n // 32) ** 2
            wave = tiles / (-(-tiles // cores) * cores)
            ratios.append(2 * n ** 3 / float(r["seconds"]) / (peak * wave * n / (n + k_ramp)))
    want = min(max(statistics.median(ratios), 1e-4), 1.0)
    assert data["kernels"]["gemm"]["fp32_ceiling"]["value"] == pytest.approx(want, rel=1e-3)


@pytest.mark.slow
def test_estimate_uses_the_calibrated_device(cal):
    from wanir.estimate import estimate
    out, res = cal
    small = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=17",
             "workload.steps=2"]
    est = estimate(small + ["hardware=host-cpu-calibrated"], out)
    assert est.hardware == "host-cpu-calibrated"
    d = est.to_dict()
    dit = next(s for s in d["stages"] if s["name"] == "diffusion_core")
    assert "measured" in dit["provenance"]["inputs"]
    assert "kernels.gemm.ceiling" in dit["provenance"]["inputs"]["measured"] or \
        "kernels.gemm.fp32_ceiling" in dit["provenance"]["inputs"]["measured"] or \
        "kernels.attention.flash2.mma_ceiling" in dit["provenance"]["inputs"]["measured"]


@pytest.mark.slow
def test_cli_round_trip(tmp_path, capsys):
    from wanir.cli import main
    assert main(["calibrate", "--quick", "--device", "cpu", "-o", str(tmp_path), "--name", "ci-cpu", "-q",
                 "--attention", "sdpa"]) == 0
    assert "hardware=ci-cpu" in capsys.readouterr().out
    assert main(["estimate", "--config-dir", str(tmp_path), "hardware=ci-cpu", "model=wan2.1-t2v-1.3b",
                 "workload.frames=17", "workload.steps=1", "--format", "json"]) == 0
    assert '"hardware": "ci-cpu"' in capsys.readouterr().out


def test_missing_backend_and_bad_options_are_one_line_errors(tmp_path, capsys):
    from wanir.cli import main
    assert main(["calibrate", "--quick", "--device", "cpu", "-o", str(tmp_path), "--attention", "flash_attn"]) == 2
    err = capsys.readouterr().err
    assert "flash_attn" in err and "available" in err and len(err.strip().splitlines()) == 1
    assert main(["calibrate", "--device", "cpu", "-o", str(tmp_path), "--budget-s", "nan"]) == 2
    assert "--budget-s" in capsys.readouterr().err
    import torch
    if not torch.cuda.is_available():
        assert main(["calibrate", "--device", "cuda", "-o", str(tmp_path)]) == 2
        assert "no GPU" in capsys.readouterr().err


def test_without_torch_says_what_to_install(tmp_path, monkeypatch):
    from wanir.backends import calibrate
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(WanirError, match="reference"):
        calibrate.run(tmp_path, device="cpu", quick=True, progress=False)


def test_fit_recovers_known_constants_on_a_gpu_family():
    """Measurements made up from known constants on an H100 (sm90) — GEMM ceiling 0.7, FA3
    MMA ceiling 0.8, memory fraction 0.6 — are fitted back to those constants (the fit
    inverts the model; this exercises the GPU path without a GPU)."""
    from dataclasses import replace

    from wanir.backends import calibrate
    from wanir.backends.roofline import Model
    hw = hardware.load("h100-sxm")
    truth = {"gemm": {"ceiling": {"value": 0.7, "source": "measured"}},
             "attention": {"flash3": {"mma_ceiling": {"value": 0.8, "source": "measured"}}}}
    t_hw = replace(hw, kernels=truth)
    rows = []
    for n in (1024, 4096, 8192):
        s, _ = Model(t_hw, "math").gemm(1, n, n, n, "bf16")
        rows.append(calibrate.Row("gemm", "torch.matmul", "bf16", f"{n}x{n}x{n}", 2 * n ** 3, s, "TFLOP/s", 0))
    for sq in (2048, 8192):
        s, _ = Model(t_hw, "flash3").attention(40, sq, sq, 128, 128, "bf16")
        rows.append(calibrate.Row("attention", "flash_attn_interface", "bf16", f"b1h40s{sq}d128",
                                  4 * 40 * sq * sq * 128, s, "TFLOP/s", 0))
    big = 4 * 2**30                                     # beyond the 50 MiB L2
    rows.append(calibrate.Row("memory", "add-large", "fp32", "x", big, big / (3.35e12 * 0.6), "GB/s", 0))
    fitted, over, _ = calibrate.fit(hw, rows)
    assert over["gemm"]["ceiling"]["value"] == pytest.approx(0.7, rel=1e-6)
    assert over["attention"]["flash3"]["mma_ceiling"]["value"] == pytest.approx(0.8, abs=0.005)
    assert over["memory"]["fraction"]["value"] == pytest.approx(0.6, rel=1e-6)
    assert all(r.model == pytest.approx(r.work / r.seconds / (1e9 if r.unit == "GB/s" else 1e12), rel=0.02)
               for r in rows)
