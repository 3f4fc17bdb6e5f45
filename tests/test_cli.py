"""CLI smoke tests through a subprocess."""
import json
import subprocess
import sys

import pytest

import wanir as wanir_api

SCHEMA_STAGE = {"tensor_flops", "vector_flops", "params", "weight_bytes", "bytes", "peak_activation_bytes", "time_s"}
SCHEMA_TOTAL = {"tensor_flops", "vector_flops", "params", "bytes", "time_s", "peak_memory_bytes", "reserve_bytes",
                "peak_allocated_bytes", "peak_reserved_bytes", "time_range_s", "time_range_class"}


def wanir(*args):
    return subprocess.run([sys.executable, "-m", "wanir.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_estimate_json_schema():
    r = wanir("estimate", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # keys are only ever added (docs/cli.md): these must be there
    assert {"model", "hardware", "workload", "stages", "total", "warnings", "fits", "parallel", "optimizations"} <= set(d)
    assert set(d["total"]) == SCHEMA_TOTAL
    # the default (14B on one H100) fits in 80 GB with no warning; no parallel plan
    assert d["fits"] is True and d["warnings"] == [] and d["parallel"] is None
    for s in d["stages"]:
        assert set(s) == {"name", "invocations", "per_invocation", "total", "provenance"}
        assert set(s["provenance"]) == {"inputs", "assumed_share"}
        assert set(s["per_invocation"]) == SCHEMA_STAGE == set(s["total"])


@pytest.mark.integration
def test_estimate_small_model_and_formats():
    for fmt in ("table", "md", "csv"):
        r = wanir("estimate", "model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "--format", fmt)
        assert r.returncode == 0, r.stderr
        assert "diffusion_core" in r.stdout


@pytest.mark.integration
def test_csv_numbers_equal_the_python_api():
    import csv
    import io

    ov = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832"]
    r = wanir(*(["estimate", *ov, "--format", "csv"]))
    assert r.returncode == 0, r.stderr
    rows = {row["stage"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    est = wanir_api.estimate(ov)
    for st in est.stages:
        assert int(rows[st.name]["tensor_flops"]) == st.total["tensor_flops"]
        assert float(rows[st.name]["time_s"]) == pytest.approx(st.total["time_s"])
    assert int(rows["total"]["tensor_flops"]) == est.total["tensor_flops"]


@pytest.mark.integration
def test_bad_frame_count_is_one_line_error():
    r = wanir("estimate", "workload.frames=80")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "workload.frames=80" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.integration
def test_typo_is_one_line_error():
    r = wanir("estimate", "workload.heigth=480")
    assert r.returncode == 2 and "did you mean 'workload.height'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.integration
def test_config_and_ops():
    r = wanir("config", "workload.height=480")
    assert r.returncode == 0 and "height: 480" in r.stdout
    r = wanir("ops", "--format", "json")
    ops = json.loads(r.stdout)
    assert ops["conv3d"]["category"] == "conv" and ops["sdpa"]["category"] == "attention"


def test_each_command_takes_the_modules_its_table_entry_loads():
    """The lazy command table (wanir/cli.py NEEDS, MODULE_COMMANDS): every command's handler
    takes ``args`` and then one parameter per module the table loads for it, and every module
    named there exists; the command names its parser declares are the table's."""
    import argparse
    import importlib.util
    import inspect

    from wanir import cli

    assert set(cli.NEEDS) <= set(cli.PARSERS) and set(cli.MODULE_COMMANDS) <= set(cli.PARSERS)
    for name in cli.PARSERS:
        parser = cli.build_parser(name)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert list(sub.choices) == list(cli.PARSERS)
        func = sub.choices[name].get_default("func")
        needs = cli.NEEDS.get(name, ())
        assert len(inspect.signature(func).parameters) == 1 + len(needs), name
        for module in (*needs, *([cli.MODULE_COMMANDS[name]] if name in cli.MODULE_COMMANDS else [])):
            assert importlib.util.find_spec(module) is not None, module
