"""One answer everywhere: one set of overrides, including a multi-device parallel plan,
run through every command and the Python API gives the same numbers, and a command that
cannot show the plan refuses it in one line with exit status 2."""
import csv
import json
import subprocess
import sys

import pytest

import wanir

# The overrides every command gets. Each group of the run options is set away from its default.
OVERRIDES = [
    "model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=9", "workload.steps=3",
    "hardware=a100-80gb", "roofline.fusion=fused", "memory.t5_cpu=true",
    "parallel=fsdp+ring", "parallel.degree=4",
    "runtime=diffusers",
    "cache.method=teacache", "cache.skip=0.4",
]


def wanir_cli(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "wanir.cli", *args], capture_output=True, text=True, timeout=300,
                       cwd=cwd)
    return r


@pytest.fixture(scope="module")
def api():
    return wanir.estimate(OVERRIDES)


def test_api_honours_the_plan(api):
    assert api.parallel is not None
    assert api.parallel["devices"] == 4 and api.parallel["plan"]["fsdp"] == 4 and api.parallel["plan"]["ring"] == 4
    # the plan's per-video time is what the API reports as the run's time, and differs from one device's
    assert api.time_s == api.parallel["total"]["time_s"] != api.total["time_s"]
    assert api.parallel["total"]["single_device_time_s"] == pytest.approx(api.total["time_s"])
    assert api.fits is api.parallel["total"]["fits"]
    # the same through wanir.multi_device_cost
    assert wanir.multi_device_cost(api).time_s == pytest.approx(api.time_s)


def test_the_optimization_is_applied(api):
    # step caching skips 40 % of the DiT calls' blocks: the run is faster than without it, on the plan too
    plain = wanir.estimate([o for o in OVERRIDES if not o.startswith("cache.")])
    assert api.total["tensor_flops"] < plain.total["tensor_flops"] and api.time_s < plain.time_s
    assert api.to_dict()["optimizations"] and not plain.to_dict()["optimizations"]


@pytest.mark.integration
def test_validate_row(api, tmp_path):
    # a measured-runs file whose row carries the overrides: validate estimates what the API does
    f = tmp_path / "runs.csv"
    f.write_text("label,overrides,measured_s,measured_peak_gb,notes\n"
                 f"all,{' '.join(OVERRIDES)},100,40,\n")
    r = wanir_cli("validate", str(f), "--format", "json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)["rows"][0]
    assert row["devices"] == 4 and row["estimated_s"] == pytest.approx(api.time_s)
    assert row["estimated_peak_gib"] * 2**30 == pytest.approx(api.peak_memory_bytes)


@pytest.mark.integration
def test_estimate_json(api):
    r = wanir_cli("estimate", *OVERRIDES, "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["optimizations"] == api.to_dict()["optimizations"]
    assert d["parallel"]["total"]["time_s"] == pytest.approx(api.time_s)
    assert d["parallel"]["total"]["peak_memory_bytes"] == api.peak_memory_bytes
    assert d["total"]["tensor_flops"] == api.total["tensor_flops"]
    assert d["fits"] is api.fits and d["warnings"] == list(api.warnings)
    assert d["hardware"] == "a100-80gb"


@pytest.mark.integration
def test_estimate_csv_per_device(api):
    r = wanir_cli("estimate", *OVERRIDES, "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(r.stdout.splitlines()))
    # the per-device table: its stage times plus the host transfer are the per-video time
    per_stage = sum(float(x["time_s"]) for x in rows)
    transfer = api.time_s - sum(s["time_s"] for s in api.parallel["stages"])
    assert per_stage + transfer == pytest.approx(api.time_s)


@pytest.mark.integration
def test_sweep_rows(api, tmp_path):
    r = wanir_cli("sweep", *[o for o in OVERRIDES if not o.startswith("hardware=")],
                  "hardware=a100-80gb,h100-sxm", "-o", str(tmp_path / "sw"), "-q")
    assert r.returncode == 0, r.stderr
    rows = {x["hardware"]: x for x in csv.DictReader(open(tmp_path / "sw" / "results.csv"))}
    row = rows["a100-80gb"]
    assert float(row["time_s"]) == pytest.approx(api.time_s)
    assert int(row["peak_memory_bytes"]) == api.peak_memory_bytes
    assert (row["plan"], int(row["devices"]), row["fits"], int(row["warnings"])) == \
        ("fsdp+ring", 4, str(api.fits).lower(), len(api.warnings))
    assert int(row["total.tensor_flops"]) == api.total["tensor_flops"]
    assert row["runtime"] == "diffusers"
    other = wanir.estimate([o for o in OVERRIDES if not o.startswith("hardware=")] + ["hardware=h100-sxm"])
    assert float(rows["h100-sxm"]["time_s"]) == pytest.approx(other.time_s)


@pytest.mark.integration
def test_size_on_the_plan(api):
    r = wanir_cli("size", *OVERRIDES, "--latency", "1e9", "--format", "json")   # hardware= selects the device
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert len(d["candidates"]) == 1
    c = d["candidates"][0]
    assert (c["hardware"], c["devices"], c["time_s"], c["peak_memory_bytes"]) == \
        ("a100-80gb", 4, pytest.approx(api.time_s), api.peak_memory_bytes)


@pytest.mark.integration
def test_size_optimizations_on_the_plan(api):
    # `size --optimizations` sizes the configured device too; its baseline row is the run itself
    r = wanir_cli("size", *OVERRIDES, "--latency", "1e9", "--optimizations", "--allow", "fp8", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [(c["hardware"], c["devices"], c["optimizations"]) for c in d["candidates"]] == [("a100-80gb", 4, "")]
    c = d["candidates"][0]
    assert (c["time_s"], c["peak_memory_bytes"]) == (pytest.approx(api.time_s), api.peak_memory_bytes)
    assert d["skipped"] == ["a100-80gb: fp8 (no fp8_e4m3 tensor peak)"]      # the A100 has no FP8 tensor peak


@pytest.mark.integration
@pytest.mark.parametrize("cmd", [["estimate", "--by", "scope"], ["estimate", "--by", "kind"],
                                 ["report", "-o", "{tmp}/r.html"]])
def test_commands_that_cannot_show_the_plan_refuse(cmd, tmp_path):
    r = wanir_cli(*[c.replace("{tmp}", str(tmp_path)) for c in cmd], *OVERRIDES)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "parallel" in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.iterdir())     # nothing written


@pytest.mark.integration
def test_render_draws_one_device_of_the_plan(api, tmp_path):
    r = wanir_cli("render", *OVERRIDES, "--stage", "diffusion_core", "--depth", "3", "-o", str(tmp_path / "g.dot"))
    assert r.returncode == 0, r.stderr
    dot = (tmp_path / "g.dot").read_text()
    # the ring plan's key/value exchange and FSDP's weight gathers are drawn
    assert "send_recv" in dot and "all_gather" in dot
    one = [o for o in OVERRIDES if not o.startswith("parallel")]
    r = wanir_cli("render", *one, "--stage", "diffusion_core", "--depth", "3", "-o", str(tmp_path / "g1.dot"))
    assert r.returncode == 0 and "send_recv" not in (tmp_path / "g1.dot").read_text()


@pytest.mark.integration
def test_single_device_commands_agree(tmp_path):
    # the same overrides on one device: estimate JSON, --by scope, sweep and the API agree
    one = [o for o in OVERRIDES if not o.startswith("parallel")]
    est = wanir.estimate(one)
    assert est.parallel is None and est.time_s == est.total["time_s"]
    d = json.loads(wanir_cli("estimate", *one, "--format", "json").stdout)
    assert d["total"]["time_s"] == pytest.approx(est.time_s) and d["parallel"] is None
    for by in ("scope", "kind"):
        r = wanir_cli("estimate", *one, "--by", by, "--depth", "1", "--format", "json")
        assert r.returncode == 0, r.stderr
        recs = json.loads(r.stdout)
        # the rows partition the graph: their FLOPs and times add up to the estimate's
        assert sum(x["flops"] for x in recs) == est.total["tensor_flops"] + est.total["vector_flops"]
        assert sum(x["time_s"] for x in recs) == pytest.approx(est.total["time_s"] - est.extra["transfer_s"])
    r = wanir_cli("sweep", *one, "-o", str(tmp_path / "sw"), "-q")
    row = next(csv.DictReader(open(tmp_path / "sw" / "results.csv")))
    assert float(row["time_s"]) == pytest.approx(est.time_s) == pytest.approx(float(row["total.time_s"]))
    assert (row["plan"], row["devices"]) == ("single", "1")


@pytest.mark.slow
def test_every_size_row_is_what_estimate_says():
    # size enumerates plans itself; each row must equal wanir.estimate with that plan's keys, also
    # where the runtime's defaults follow the plan (weights in bf16 under FSDP, offload on one device)
    from wanir.backends.sizing import size

    base = [o for o in OVERRIDES if not o.startswith("parallel")]
    res = size(base, latency_s=1e9, devices=(1, 4))
    rows = res["candidates"] + res["unfit"]
    assert {r.plan.fsdp > 1 for r in rows} == {True, False} and {r.devices for r in rows} == {1, 4}
    for r in rows[:: max(1, len(rows) // 8)] + [r for r in rows if r.devices == 1]:
        p = r.plan
        est = wanir.estimate(base + [f"parallel.degree={p.degree}", f"parallel.ulysses={p.ulysses}",
                                     f"parallel.ring={p.ring}", f"parallel.cfg={p.cfg}", f"parallel.dp={p.dp}",
                                     f"parallel.fsdp={p.fsdp}"])
        assert (r.time_s, r.peak_memory_bytes) == (pytest.approx(est.time_s), est.peak_memory_bytes), p.label


# --- one number per question across the paths that cost a plan ------------------------------
# The official runtime's defaults follow the plan (fp32 DiT and offload on one device, bf16
# gathers under FSDP), so a path that timed a plan on the one-device config (or the one device
# on the plan's config) gave another number for the same question.
PLAN_BASE = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=9",
             "workload.steps=3", "hardware=h100-sxm"]


@pytest.fixture(scope="module")
def one_device():
    return wanir.estimate(PLAN_BASE)


@pytest.fixture(scope="module")
def planned():
    return wanir.estimate(PLAN_BASE + ["parallel=fsdp+ulysses", "parallel.degree=4"])


@pytest.mark.slow
def test_the_two_python_paths_give_one_plan_time(one_device, planned):
    # README: wanir.estimate([... parallel ...]) and wanir.multi_device_cost(wanir.estimate(), hw, n, plan)
    md = wanir.multi_device_cost(one_device, "h100-sxm", 4, "fsdp+ulysses")
    assert md.time_s == pytest.approx(planned.parallel["total"]["time_s"], rel=1e-12)
    assert md.peak_memory_bytes == planned.parallel["total"]["peak_memory_bytes"]


@pytest.mark.slow
def test_one_device_time_and_memory_are_the_one_device_estimate(one_device, planned):
    # under a plan, `total` and the speedup's baseline are the pipeline on one device as `wanir estimate`
    # without the plan gives them (docs/cli.md), not the one device under the plan's defaults
    assert one_device.config.runtime.name == "wan-official"
    assert planned.total["time_s"] == pytest.approx(one_device.total["time_s"], rel=1e-12)
    assert planned.total["peak_memory_bytes"] == one_device.total["peak_memory_bytes"]
    assert planned.parallel["total"]["single_device_time_s"] == pytest.approx(one_device.total["time_s"], rel=1e-12)
    md = wanir.multi_device_cost(one_device, "h100-sxm", 4, "fsdp+ulysses")
    assert md.single_time_s == pytest.approx(one_device.total["time_s"], rel=1e-12)
    # invariant of the definition: speedup = one device's time / the plan's time
    assert planned.parallel["total"]["speedup"] == pytest.approx(
        one_device.total["time_s"] / planned.parallel["total"]["time_s"], rel=1e-12)


@pytest.mark.slow
def test_size_rows_are_the_estimates_of_their_plans(one_device, planned):
    from wanir.backends.sizing import size
    res = size(PLAN_BASE, latency_s=1e6, devices=(1, 4))
    rows = {c.plan.label: c for c in res["candidates"] + res["unfit"]}
    plan = rows[planned.parallel["plan"]["label"]]
    assert plan.time_s == pytest.approx(planned.parallel["total"]["time_s"], rel=1e-12)
    assert plan.peak_memory_bytes == planned.parallel["total"]["peak_memory_bytes"]
    single = rows["single"]
    assert single.time_s == pytest.approx(one_device.total["time_s"], rel=1e-12)
    assert single.peak_memory_bytes == one_device.total["peak_memory_bytes"]


@pytest.mark.slow
def test_per_device_table_total_row_holds_what_its_columns_say(planned):
    from wanir.backends.parallel import multi_device_cost
    from wanir.backends.parallel.render import cost_rows
    from wanir.backends.report import fmt_bytes
    cost = multi_device_cost(planned)
    head, body = cost_rows(cost)
    assert "peak act." not in head
    total = dict(zip(head, body[-1]))
    stages = list(cost.stages.values())
    assert total["peak activations"] == fmt_bytes(max(r["peak_activation_bytes"] for r in stages))
    assert total["peak memory/device"] == fmt_bytes(cost.peak_memory_bytes)
    assert total["weights/device"] == fmt_bytes(sum(r["weight_bytes"] for r in stages))


def test_a_sweep_point_under_a_plan_is_the_estimate(one_device, planned):
    # a sweep over plans: each point's run columns are the plan's, its total.* the one-device run's
    from wanir.backends.sweep import run_sweep
    res = run_sweep(PLAN_BASE + ["parallel=fsdp+ulysses", "parallel.degree=2,4"], progress=False)
    rows = {(r["plan"], r["devices"]): r for r in res.rows}
    row = rows[("fsdp+ulysses", 4)]        # the plan column holds the name as given
    assert row["time_s"] == pytest.approx(planned.parallel["total"]["time_s"], rel=1e-12)
    assert row["peak_memory_bytes"] == planned.parallel["total"]["peak_memory_bytes"]
    assert row["total.time_s"] == pytest.approx(one_device.total["time_s"], rel=1e-12)
    assert row["total.peak_memory_bytes"] == one_device.total["peak_memory_bytes"]
