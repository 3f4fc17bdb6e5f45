"""wanir validate: the shipped Wan2.1 README set, user CSVs, summary figures, --fail-above,
hostile files."""
import json
import statistics

import pytest

from wanir.backends import validate as val
from wanir.cli import main

SMALL = "model=wan2.1-t2v-1.3b workload.height=240 workload.width=416 workload.frames=17 workload.steps=2"


def _csv(tmp_path, text, name="runs.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_set_maps_all_28_published_runs():
    rows = val.read_rows(val.shipped_path())
    assert len(rows) == 28
    by = {r.label: r for r in rows}
    # published figures (Wan2.1 README, "Computational Efficiency on Different GPUs")
    assert by["RTX 4090 T2V-1.3B 480P x1"].measured_s == 261.4 and by["RTX 4090 T2V-1.3B 480P x1"].measured_peak_gib == 8.19
    assert by["H800/H100 T2V-14B 720P x8"].measured_s == 287.9
    assert by["A800/A100 I2V-14B 720P x1"].measured_peak_gib == 76.7
    r = by["RTX 4090 T2V-1.3B 480P x1"]
    assert {"memory.offload_model=true", "memory.t5_cpu=true", "hardware=rtx-4090"} <= set(r.overrides)
    assert {"parallel=ring", "parallel.degree=8"} <= set(by["RTX 4090 T2V-1.3B 480P x8"].overrides)
    assert {"parallel=fsdp+ulysses", "parallel.degree=4", "hardware=h20"} <= set(by["H20 I2V-14B 720P x4"].overrides)
    assert "hardware=h800" in by["H800/H100 I2V-14B 720P x2"].overrides
    assert "hardware=a800" in by["A800/A100 T2V-14B 720P x2"].overrides


@pytest.mark.slow
def test_cli_validates_the_shipped_set(capsys):
    assert main(["validate", "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["rows"]) == 28
    errs = [abs(r["time_error"]) for r in res["rows"]]
    assert res["summary"]["time"]["median_abs_error"] == pytest.approx(statistics.median(errs))
    assert res["summary"]["time"]["worst_abs_error"] == pytest.approx(max(errs))
    for r in res["rows"]:
        assert r["time_error"] == pytest.approx((r["estimated_s"] - r["measured_s"]) / r["measured_s"])
        assert r["estimated_s"] > 0 and r["estimated_peak_gib"] > 0


@pytest.mark.slow
def test_user_csv_formats_runtime_and_fail_above(tmp_path, capsys):
    p = _csv(tmp_path, "# my runs\nlabel,overrides,measured_s,measured_peak_gb\n"
                       f"a | b,{SMALL},10,5\n"
                       f"two gpus,{SMALL} parallel=ulysses parallel.degree=2,6,\n")
    res = val.validate(p)
    assert [r["label"] for r in res["rows"]] == ["a | b", "two gpus"]
    assert res["rows"][1]["devices"] == 2 and res["rows"][1]["peak_error"] is None
    assert res["summary"]["peak"]["rows"] == 1
    dif = val.validate(p, runtime="diffusers")
    assert dif["rows"][0]["estimated_s"] < res["rows"][0]["estimated_s"]     # fewer bytes than the official code
    assert main(["validate", str(p), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "a \\| b" in md and "median |error|" in md
    worst = 100 * val.worst_time_error(res)
    assert main(["validate", str(p), "--format", "md", "--fail-above", str(worst + 1)]) == 0
    capsys.readouterr()
    assert main(["validate", str(p), "--format", "md", "--fail-above", str(worst / 2)]) == 1
    assert "exceeds --fail-above" in capsys.readouterr().err


@pytest.mark.parametrize("text, msg", [
    ("label,measured_s\nx,3\n", "missing column(s) overrides"),
    ("overrides,measured_s,color\nmodel=wan2.1-t2v-1.3b,3,red\n", "unknown column"),
    (f"overrides,measured_s\n{SMALL},fast\n", "is not a number"),
    (f"overrides,measured_s\n{SMALL},inf\n", "finite number"),
    (f"overrides,measured_s\n{SMALL},-4\n", "finite number"),
    (f"overrides,measured_s,measured_peak_gb\n{SMALL},4,nan\n", "measured_peak_gb"),
    ("overrides,measured_s\n,4\n", "'overrides' is empty"),
    ("overrides,measured_s\nmodel=nope,4\n", "line 2"),
    ("overrides,measured_s\nworkload.height=-3,4\n", "workload.height"),
    ('overrides,measured_s\n"model=a \'b",4\n', "cannot be split"),
    ("", "no header row"),
    (f"overrides,measured_s,interconnect\n{SMALL},4,infiniband\n", "column 'interconnect'"),
    (f"overrides,measured_s,interconnect\n{SMALL} hardware=rtx-4090,4,nvlink\n", "modelled with pcie"),
    (f"overrides,measured_s,cards_per_node\n{SMALL},4,0\n", "cards_per_node"),
    (f"overrides,measured_s,cards_per_node\n{SMALL},4,1e9\n", "cards_per_node"),
    (f"overrides,measured_s,measured_reserved_gb\n{SMALL},4,-1\n", "measured_reserved_gb"),
    (f"overrides,measured_s,measured_allocated_gb\n{SMALL},4,inf\n", "measured_allocated_gb"),
])
def test_hostile_csv_is_a_one_line_error(tmp_path, capsys, text, msg):
    p = _csv(tmp_path, text)
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err and "Traceback" not in err


def test_size_and_row_limits(tmp_path, capsys):
    big = _csv(tmp_path, "overrides,measured_s\n" + "x" * (val.MAX_FILE_BYTES + 1), "big.csv")
    assert main(["validate", str(big)]) == 2
    assert "at most" in capsys.readouterr().err
    many = _csv(tmp_path, "overrides,measured_s\n" + f"{SMALL},1\n" * (val.MAX_ROWS + 1), "many.csv")
    assert main(["validate", str(many)]) == 2
    assert "rows; at most" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "missing.csv")]) == 2
    assert main(["validate", "--fail-above", "-3"]) == 2


def test_memory_and_topology_columns(tmp_path):
    p = _csv(tmp_path, "label,overrides,measured_s,measured_peak_gb,measured_reserved_gb,measured_allocated_gb,"
                       "interconnect,cards_per_node\n"
                       f"one,{SMALL} hardware=h100-sxm,10,5,4,3,,\n"
                       f"two,{SMALL} hardware=h100-sxm parallel=ulysses parallel.degree=2,6,,,,nvlink,4\n")
    rows = val.read_rows(p)
    assert "parallel.gpus_per_node=4" in rows[1].overrides and rows[1].interconnect == "nvlink"
    res = val.validate(p)
    one, two = res["rows"]
    assert one["reserved_error"] == pytest.approx((one["estimated_reserved_gib"] - 4) / 4)
    assert one["allocated_error"] == pytest.approx((one["estimated_allocated_gib"] - 3) / 3)
    assert one["estimated_allocated_gib"] <= one["estimated_reserved_gib"] < one["estimated_peak_gib"]
    assert two["reserved_error"] is None and two["class"].split("/")[1] == "nvlink"
    assert res["summary"]["reserved"]["rows"] == 1 and res["summary"]["allocated"]["rows"] == 1
