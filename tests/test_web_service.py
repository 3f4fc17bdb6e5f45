"""`wanir serve`'s computations, without a browser or a web framework: the input checks,
and the views against independent sums, the CLI's own output and invariants."""
import contextlib
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wanir
from wanir.errors import ConfigError
from wanir.web import service as W
from wanir.web.wire import culprit

SMALL = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=17",
         "workload.steps=2"]


@pytest.fixture(scope="module")
def engine():
    return W.Engine()


@pytest.fixture(scope="module")
def est(engine):
    return engine.estimate(SMALL)


# ------------------------------------------------------------------------ input checks


@pytest.mark.parametrize("bad, words", [
    ("workload.height=${oc.env:HOME}", "'$'"),                 # an interpolation would read the environment
    ("workload=../../../../tmp/evil", "plain name"),            # a group option that walks out of the config folder
    ("hardware=/etc/passwd", "plain name"),
    ("+workload.extra=1", "KEY=VALUE"),                         # adding keys
    ("~workload.height", "KEY=VALUE"),                          # deleting keys
    ("workload.height", "KEY=VALUE"),
    ("workload.height=4\\80", "'\\'"),
    ("workload.height=48\x000", "control characters"),
    ("model.from=/etc", "--allow-files"),                       # no file is read unless allowed
    ("x" * 400 + "=1", "longer than"),
])
def test_bad_overrides_refused_in_one_line(bad, words):
    with pytest.raises(ConfigError) as e:
        W.check_overrides([bad])
    msg = str(e.value)
    assert words in msg and "\n" not in msg


def test_override_count_and_type_bounded():
    with pytest.raises(ConfigError, match="too many overrides"):
        W.check_overrides(["workload.steps=2"] * (W.MAX_OVERRIDES + 1))
    with pytest.raises(ConfigError, match="list"):
        W.check_overrides("workload.steps=2")
    with pytest.raises(ConfigError, match="string"):
        W.check_overrides([3])
    assert W.check_overrides(["  workload.steps=2 ", ""]) == ["workload.steps=2"]


def test_model_from_only_inside_the_allowed_folder(tmp_path):
    root = tmp_path / "models"
    (root / "m").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    ok = W.check_overrides(["model.from=m"], allow_files=root)              # relative: inside the folder
    assert ok == [f"model.from={(root / 'm').resolve()}"]
    assert W.check_overrides([f"model.from={root / 'm'}"], allow_files=root) == ok
    for bad in ("../secret", str(outside), "link", "m/../../secret"):
        with pytest.raises(ConfigError, match="outside the folder"):
            W.check_overrides([f"model.from={bad}"], allow_files=root)


def test_engine_errors_are_the_cli_messages(engine, capsys):
    from wanir.cli import main

    for bad in (["workload.frames=80"], ["workload.heigth=480"], ["hardware=h1000"], ["workload.steps=abc"]):
        with pytest.raises(ConfigError) as e:
            engine.estimate_view(bad)
        assert main(["estimate", *bad]) == 2
        assert capsys.readouterr().err.strip() == f"wanir: error: {e.value}"


def test_culprit_names_the_override():
    ov = ["hardware=a100-80gb", "workload.height=480", "workload.frames=80"]
    assert culprit(ov, "workload.frames=80: the VAE produces 1 + 4k frames") == "workload.frames"
    assert culprit(ov, "hardware=h1000: no option 'h1000' in group 'hardware'") == "hardware"
    assert culprit(["workload.heigth=1", "workload.height=2"],
                   "unknown config key 'workload.heigth'; did you mean 'workload.height'?") == "workload.heigth"
    assert culprit(ov, "dit: a patch grid exceeds rope_max_seq_len") is None
    assert culprit(["model.from=/srv/m/x", "workload.steps=20"], "/srv/m/x: no such file or directory") == "model.from"


def test_limits_of_views(engine):
    with pytest.raises(ConfigError, match="depth"):
        engine.roofline_view(SMALL, "scope", 99)
    with pytest.raises(ConfigError, match="by="):
        engine.roofline_view(SMALL, "layer", 2)
    with pytest.raises(ConfigError, match="stage="):
        engine.diagram_view(SMALL, "no_such_stage", 2)
    with pytest.raises(ConfigError, match="devices"):
        engine.size_view(SMALL, devices=[1, 2, 4, 8, 16, 32, 64])           # more device counts than allowed
    with pytest.raises(ConfigError, match="devices"):
        engine.size_view(SMALL, devices="1,1000")
    with pytest.raises(ConfigError, match="latency"):
        engine.size_view(SMALL, latency_s="inf")
    # the messages of `wanir size` for the same values
    with pytest.raises(ConfigError, match=r"^--latency must be a finite number in \(0, 1e9\], got -1.0$"):
        engine.size_view(SMALL, latency_s="-1")
    with pytest.raises(ConfigError, match=r"^argument --throughput: invalid float value: 'fast'$"):
        engine.size_view(SMALL, throughput="fast")
    with pytest.raises(ConfigError, match="hardware"):
        engine.size_view(SMALL, hardware=["../../etc/passwd"])


# ------------------------------------------------------------------------ options


def test_options_list_every_group():
    from wanir.config import GROUPS, list_options

    opts = W.options()
    assert [g["name"] for g in opts["groups"]] == list(GROUPS)
    for g in opts["groups"]:
        assert set(list_options(g["name"])) <= set(g["options"])
    by = {g["name"]: g for g in opts["groups"]}
    assert by["hardware"]["default"] == "h100-sxm" and by["model"]["default"] == "wan2.1-t2v-14b"
    assert set(opts["hardware"]) == set(by["hardware"]["options"])


# ------------------------------------------------------------------------ views


@pytest.mark.integration     # runs wanir in a subprocess
def test_estimate_view_is_the_cli_document(engine, capsys):
    from wanir.cli import main

    v = engine.estimate_view(SMALL)
    assert main(["estimate", *SMALL, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(v["document"]))
    assert main(["estimate", *SMALL, "--format", "csv"]) == 0
    assert capsys.readouterr().out.replace("\r\n", "\n") == engine.download(SMALL, "csv").replace("\r\n", "\n")
    # one table row per stage plus the total, in the CLI's column order
    assert [r[0] for r in v["table"]["rows"]] == [s["name"] for s in v["document"]["stages"]] + ["total"]
    assert v["table"]["head"][:3] == ["stage", "invocations", "FLOPs"]
    from wanir.hardware import load
    assert v["fit"]["fits"] is True and v["fit"]["capacity_bytes"] == load("h100-sxm").memory_bytes
    assert v["fit"]["peak_memory_bytes"] == v["document"]["total"]["peak_memory_bytes"]


def _range_text(t, rng):
    """'T (LO–HI)' with LO and HI in T's unit, as the CLI prints a time with its range:
    written here from the reference formatter of one number (report.fmt_time) and the unit
    it picks, not from fmt_time_range."""
    from wanir.backends.report import fmt_time, fmt_time_in, time_unit

    u = time_unit(t)
    return f"{fmt_time(t)} ({fmt_time_in(rng[0], u)}–{fmt_time_in(rng[1], u)})"


def test_time_range_and_caption_are_the_clis(engine, capsys, monkeypatch):
    """The page's total time carries the JSON's ``total.time_range_s`` wherever it is shown
    (the stage table's total row, the headline, Compare), and its caption is the line the
    CLI prints under its table: it names the attention kernel and the precisions."""
    from wanir.cli import main

    assert main(["estimate", *SMALL, "--format", "json"]) == 0
    tot = json.loads(capsys.readouterr().out)["total"]
    lo, hi = tot["time_range_s"]
    assert lo <= tot["time_s"] <= hi and lo < hi
    v = engine.estimate_view(SMALL)
    assert v["time"]["time_s"] == tot["time_s"] and v["time"]["time_range_s"] == pytest.approx([lo, hi], rel=1e-12)
    text = _range_text(tot["time_s"], (lo, hi))
    assert v["time"]["text"] == text and v["table"]["rows"][-1][6] == text
    c = engine.compare_view(SMALL, SMALL)
    total = {r["stage"]: r for r in c["rows"]}["total"]
    assert total["a"]["time_text"] == text and total["b"]["time_range_s"] == pytest.approx([lo, hi], rel=1e-12)
    # the caption: the CLI's own line (rich wraps it to the table's width: compare the words)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["estimate", *SMALL]) == 0
    words = " ".join(capsys.readouterr().out.split())
    assert " ".join(v["caption"].split()) in words
    p = v["config"]["precision"]
    assert "attention kernel " in v["caption"]
    assert f"DiT weights {p['dit_weights']}, DiT compute {p['dit_compute']}" in v["caption"]
    # what the allocator reserves, in the caption with the JSON's figures
    from wanir.backends.report import fmt_bytes
    assert f"{fmt_bytes(tot['peak_reserved_bytes'])} reserved by PyTorch's allocator" in v["caption"]
    assert f"{fmt_bytes(tot['reserve_bytes'])} CUDA context" in v["caption"]


def test_memory_chart_shows_the_allocator(engine, capsys):
    """The memory chart's peak bar carries what PyTorch's caching allocator reserves beyond
    the tensors: weights + activations + that band + the CUDA context is the JSON's peak
    (``peak_reserved_bytes`` + ``reserve_bytes``); the pipeline's figures are the JSON's."""
    from wanir.cli import main

    assert main(["estimate", *SMALL, "--format", "json"]) == 0
    tot = json.loads(capsys.readouterr().out)["total"]
    m = engine.estimate_view(SMALL)["memory"]
    assert (m["peak_allocated_bytes"], m["peak_reserved_bytes"], m["context_bytes"]) == \
        (tot["peak_allocated_bytes"], tot["peak_reserved_bytes"], tot["reserve_bytes"])
    pk = {r["stage"]: r for r in m["stages"]}[m["peak_stage"]]
    assert pk["allocator_bytes"] > 0 and tot["peak_reserved_bytes"] > tot["peak_allocated_bytes"]
    assert pk["weight_bytes"] + pk["activation_bytes"] + pk["allocator_bytes"] + pk["reserve_bytes"] == \
        tot["peak_memory_bytes"] == tot["peak_reserved_bytes"] + tot["reserve_bytes"]
    assert all(r["allocator_bytes"] == 0 for r in m["stages"] if r["stage"] != m["peak_stage"])


@pytest.mark.slow
def test_fit_against_the_device_capacity(engine):
    v = engine.estimate_view(["hardware=rtx-4090"])        # the 14B at 720p does not fit in 24 GB
    assert v["fit"]["fits"] is False
    assert v["fit"]["peak_memory_bytes"] > v["fit"]["capacity_bytes"]
    assert any("does not fit" in w for w in v["warnings"])


@pytest.mark.integration     # runs wanir in a subprocess
def test_download_errors_are_the_cli_messages(engine):
    with pytest.raises(ConfigError, match=r"^workload.frames=80: the VAE produces 1 \+ 4k frames"):
        engine.download(["workload.frames=80"], "json")
    with pytest.raises(ConfigError, match="allowed: json, csv, html"):
        engine.download([], "xml")


@pytest.mark.integration     # runs wanir in a subprocess
def test_multi_device_view_is_the_cli_table(engine, capsys):
    from wanir.backends.parallel import cost_rows, multi_device_cost
    from wanir.cli import main

    ov = ["model=wan2.1-t2v-1.3b", "workload=480p", "parallel=ulysses", "parallel.degree=4"]
    v = engine.estimate_view(ov)
    head, body = cost_rows(multi_device_cost(engine.estimate(ov)))
    assert v["multi_device"]["table"] == {"head": head, "rows": body}
    assert body[-1][0] == "total" and body[-1][1] == "4"
    assert main(["estimate", *ov, "--format", "md"]) == 0     # the CLI's table has the same rows
    md = capsys.readouterr().out
    for row in body:
        assert "| " + " | ".join(row) + " |" in md
    assert main(["estimate", *ov, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(engine.download(ov, "json"))


def test_provenance_shown_when_the_document_has_it():
    assert W._find_provenance({"stages": [{"name": "a"}]}) is None
    doc = {"provenance": "p", "stages": [{"name": "a", "provenance": {"kernel": "flash2"}}, {"name": "b"}]}
    assert W._find_provenance(doc) == {"pipeline": "p", "a": {"kernel": "flash2"}}


def test_breakdown_adds_up(est):
    b = W.breakdown(est, depth=2)
    val = dict(zip(b["ids"], b["values"]))
    kids = {}
    for i, p in zip(b["ids"], b["parents"]):
        kids.setdefault(p, []).append(i)
    for parent, ch in kids.items():
        if parent:
            assert sum(val[c] for c in ch) == pytest.approx(val[parent], rel=1e-12)
    # the roots are the stages; each stage's value is its time per generation
    roots = {i: val[i] for i in kids[""]}
    for s in est.stages:
        assert roots[s.name] == pytest.approx(s.total["time_s"], rel=1e-9)
    assert all(lbl for lbl in b["labels"]) and len(set(b["ids"])) == len(b["ids"])


@pytest.mark.parametrize("extra", [[], ["memory.offload_model=false"], ["memory.offload_model=true"],
                                   ["memory.offload_model=false", "memory.t5_cpu=true"],
                                   ["memory.offload_model=block"]])
def test_memory_timeline_peak_is_the_pipeline_peak(engine, extra):
    e = engine.estimate(SMALL + extra)
    m = W.memory_timeline(e)
    heights = {r["stage"]: r["weight_bytes"] + r["activation_bytes"] + r["reserve_bytes"] for r in m["stages"]}
    # the bars are tensors (+ the CUDA context); the peak line is what the allocator reserves + context
    tensors = e.extra["memory"]["weight_bytes"] + e.extra["memory"]["activation_bytes"] + e.total["reserve_bytes"]
    assert max(heights.values()) == tensors <= e.total["peak_memory_bytes"] == m["peak_memory_bytes"]
    assert heights[m["peak_stage"]] == tensors
    gpu = [s for s in e.stages if e.extra["stages"][s.name]["on_gpu"]]
    for r in m["stages"]:
        assert r["activation_bytes"] == (e.stage(r["stage"]).per_invocation["peak_activation_bytes"]
                                         if r["on_gpu"] else 0)
        if "memory.offload_model=true" in extra:           # only the running stage's weights
            assert r["weight_bytes"] == e.stage(r["stage"]).per_invocation["weight_bytes"]
        elif "memory.offload_model=false" in extra and r["on_gpu"]:   # every GPU stage's weights
            assert r["weight_bytes"] == sum(s.per_invocation["weight_bytes"] for s in gpu)
    from wanir.hardware import load
    assert m["capacity_bytes"] == load("h100-sxm").memory_bytes


@pytest.mark.slow
@pytest.mark.parametrize("offload", ["true", "false"])
def test_memory_timeline_of_two_experts(engine, offload):
    e = engine.estimate(["model=wan2.2-t2v-a14b", "workload=480p", "workload.frames=17", "workload.steps=4",
                         f"memory.offload_model={offload}"])
    m = W.memory_timeline(e)
    heights = {r["stage"]: r["weight_bytes"] + r["activation_bytes"] + r["reserve_bytes"] for r in m["stages"]}
    tensors = e.extra["memory"]["weight_bytes"] + e.extra["memory"]["activation_bytes"] + e.total["reserve_bytes"]
    assert max(heights.values()) == tensors <= e.total["peak_memory_bytes"]
    dit = {r["stage"]: r for r in m["stages"]}["diffusion_core"]
    both = e.stage("diffusion_core").per_invocation["weight_bytes"]
    if offload == "true":    # one expert of the two at a time
        assert dit["weight_bytes"] < both
    else:
        assert dit["weight_bytes"] >= both


@pytest.mark.parametrize("by", ["op", "scope"])
def test_roofline_points_lie_under_the_roof(engine, by):
    v = engine.roofline_view(SMALL + ["roofline.mode=ideal"], by, 2)
    roof = v["roof"]
    from wanir.hardware import load
    h100 = load("h100-sxm")
    assert roof["peak_flops"] == h100.peak("bf16") and roof["bandwidth"] == h100.memory_bandwidth
    assert v["points"]
    for p in v["points"]:
        assert p["x"] == p["flops"] / p["bytes"] and p["y"] == p["flops"] / p["time_s"]
        # ideal time = max(bytes / bandwidth, tensor FLOPs / peak, vector FLOPs / vector peak), the
        # bandwidth the L2's when the working set fits it: the attained rate of all FLOPs is at most
        # x × the faster bandwidth and at most the two pipes' peaks together
        bw = max(roof["bandwidth"], roof["l2_bandwidth"] or 0)
        assert p["y"] <= p["x"] * bw * (1 + 1e-9)
        assert p["y"] <= (roof["peak_flops"] + roof["vector_flops"]) * (1 + 1e-9)
    if by == "op":   # one point per op with FLOPs, bytes and time; the others counted
        e = engine.estimate(SMALL + ["roofline.mode=ideal"])
        ops = [n for n in e.graph if n.category != "input"]
        assert len(v["points"]) + v["left_out"] == len(ops)


def test_compare_ratios(engine):
    a = ["model=wan2.1-t2v-1.3b", "workload=480p"]
    b = a + ["hardware=a100-80gb"]
    d = engine.compare_view(a, b)
    ea, eb = engine.estimate(a), engine.estimate(b)
    tot = d["rows"][-1]
    assert tot["stage"] == "total"
    assert tot["ratio"]["time_s"] == pytest.approx(eb.total["time_s"] / ea.total["time_s"])
    assert tot["ratio"]["flops"] == 1.0                   # the same graph on another GPU: the same FLOPs
    for r in d["rows"][:-1]:
        s_a, s_b = ea.stage(r["stage"]), eb.stage(r["stage"])
        assert r["ratio"]["time_s"] == pytest.approx(s_b.total["time_s"] / s_a.total["time_s"])


def test_pareto_front_example():
    pts = [(1, 10), (2, 5), (3, 5), (4, 1), (2, 8), (5, 2)]
    # (3,5) is beaten by (2,5), (2,8) by (2,5), (5,2) by (4,1)
    assert W.pareto_front(pts) == [0, 1, 3]


@given(st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20)), min_size=1, max_size=30))
def test_pareto_front_property(pts):
    front = set(W.pareto_front(pts))

    def beats(q, p):
        return q[0] <= p[0] and q[1] <= p[1] and q != p

    for i, p in enumerate(pts):
        dominated = any(beats(q, p) for q in pts)
        if i in front:
            assert not dominated
        elif not dominated:      # an exact duplicate of a front point is left out
            assert any(pts[j] == p for j in front)


@pytest.mark.slow
def test_size_view_bounded_and_marked(engine):
    d = engine.size_view(["model=wan2.1-t2v-1.3b", "workload=480p"], latency_s=60, hardware=["h100-sxm", "a100-80gb"],
                         devices="1,2", prices=["h100-sxm=2.5", "a100-80gb=1.5"])
    assert 0 < d["shown"] and d["priced"]
    assert [r["rank"] for r in d["rows"]] == sorted(r["rank"] for r in d["rows"])
    rows = d["rows"]
    front = [r for r in rows if r["pareto"]]
    assert front
    for r in rows:    # every row's cost is devices × price × hours per video / replicas
        price = {"h100-sxm": 2.5, "a100-80gb": 1.5}[r["hardware"]]
        assert r["cost_per_video_usd"] == pytest.approx(r["gpu_hours_per_video"] * price)
        if not r["pareto"]:
            assert any(f["time_s"] <= r["time_s"] and f["cost_per_video_usd"] <= r["cost_per_video_usd"]
                       for f in front)


def test_size_payload_keeps_the_whole_front():
    from types import SimpleNamespace

    def cand(t, cost):
        return SimpleNamespace(meets=True, to_dict=lambda: {"time_s": t, "cost_per_video_usd": cost, "priced": True,
                                                            "gpu_hours_per_video": cost, "hardware": "x"})
    # ranked by cost: the fastest candidate is last, beyond the rows shown, yet on the front
    cands = [cand(100.0, 1.0 + i / 1000) for i in range(W.MAX_SIZE_ROWS + 50)] + [cand(1.0, 9.0)]
    d = W.size_payload({"candidates": cands, "priced": True, "evaluated": len(cands), "dropped": 0,
                        "target": {}, "model": "m", "workload": {}, "prices": {}})
    assert d["shown"] == W.MAX_SIZE_ROWS + 1
    assert [r["rank"] for r in d["rows"] if r["pareto"]] == [1, len(cands)]


def test_diagram_is_svg(engine):
    import shutil
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Graphviz's dot")
        pytest.skip("needs Graphviz's dot")
    svg = engine.diagram_view(SMALL, "diffusion_core", 1)
    assert svg.startswith("<svg") and "diffusion_core" in svg


def test_estimate_cache_is_bounded():
    e = W.Engine(cache_size=2)
    for steps in (1, 2, 3):
        e.estimate(["model=wan2.1-t2v-1.3b", f"workload.steps={steps}", "workload.frames=5"])
    assert len(e.cache) == 2
    assert isinstance(e.estimate(["model=wan2.1-t2v-1.3b", "workload.steps=3", "workload.frames=5"]), wanir.Estimate)


def test_sizing_target_messages_are_the_cli_ones(capsys):
    from wanir.cli import main
    from wanir.web.service import _pos_float

    for name, bad in (("latency", "-1"), ("throughput", "0"), ("latency", "fast"), ("latency", "inf")):
        with pytest.raises(SystemExit) if bad == "fast" else contextlib.nullcontext():   # argparse exits
            assert main(["size", f"--{name}", bad]) == 2
        cli_msg = capsys.readouterr().err.strip().splitlines()[-1]
        with pytest.raises(ConfigError) as e:
            _pos_float(name, bad)
        assert cli_msg.endswith(str(e.value))


def test_serve_without_the_extra_is_one_line(monkeypatch, capsys):
    from wanir.cli import main
    from wanir.web import command

    monkeypatch.setattr(command, "NEEDS", ("json", "no_such_module_for_wanir"))   # json: always there, never named
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == ("wanir: error: wanir serve needs the 'web' extra (missing: no_such_module_for_wanir); "
                   "install it with: pip install 'wanir[web]'\n")


def test_serve_port_bounded(capsys):
    from wanir.cli import main

    if not all(__import__("importlib").util.find_spec(m) for m in ("starlette", "uvicorn", "plotly")):
        pytest.skip("needs the 'web' extra")
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be in [0, 65535]" in capsys.readouterr().err


@pytest.mark.slow
def test_sizing_ignores_the_gpu_and_plan_of_the_controls(engine):
    from wanir.backends import sizing

    ov = ["model=wan2.1-t2v-1.3b", "workload=480p"]
    d = engine.size_view(ov + ["hardware=b200", "parallel=ulysses", "parallel.degree=2"], devices="1,2",
                         hardware=["h100-sxm", "l40s"])
    ref = sizing.size(ov, hardware=["h100-sxm", "l40s"], devices=(1, 2))
    assert [(r["hardware"], r["plan"], r["time_s"]) for r in d["rows"]] == \
        [(c.hardware, c.plan.label, c.time_s) for c in ref["candidates"]]
    assert {r["hardware"] for r in d["rows"]} == {"h100-sxm", "l40s"}


def test_config_dir_options_appear(tmp_path):
    from wanir.config import CONFIG_DIR

    hw = tmp_path / "hardware"
    hw.mkdir()
    text = (CONFIG_DIR / "hardware" / "h100-sxm.yaml").read_text()
    (hw / "my-gpu.yaml").write_text(text.replace("name: h100-sxm", "name: my-gpu"))
    opts = W.options(str(tmp_path))
    by = {g["name"]: g for g in opts["groups"]}
    assert "my-gpu" in by["hardware"]["options"] and "my-gpu" in opts["hardware"]
    e = W.Engine(config_dir=tmp_path)
    v = e.estimate_view(["model=wan2.1-t2v-1.3b", "workload.frames=5", "workload.steps=1", "hardware=my-gpu"])
    assert v["document"]["hardware"] == "my-gpu"
    with pytest.raises(ConfigError, match="my-gpu"):        # the options named in the message include it
        e.estimate_view(["hardware=../x"])


# ------------------------------------------------------------------------ under a parallel plan

PLAN = SMALL + ["parallel=fsdp+ulysses", "parallel.degree=4"]


@pytest.fixture(scope="module")
def plan_doc():
    """What `wanir estimate PLAN --format json` prints (the CLI in a child process)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "wanir", "estimate", *PLAN, "--format", "json"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.integration
def test_every_view_is_one_device_of_the_plan(engine, plan_doc):
    """Under a plan the breakdown, the memory chart, the compare rows and the fit are the
    CLI's per-device figures (its JSON's ``parallel``), not the one-GPU pipeline's."""
    par = plan_doc["parallel"]
    v = engine.estimate_view(PLAN)
    assert v["plan"]["devices"] == 4 and "one device of 4 × h100-sxm" in v["plan"]["caption"]
    # fit: the per-device peak
    assert v["fit"]["peak_memory_bytes"] == par["total"]["peak_memory_bytes"]
    assert v["fit"]["fits"] is par["total"]["fits"]
    # breakdown: the stages' seconds add up to the per-device time per video
    b = v["breakdown"]
    roots = [val for val, parent in zip(b["values"], b["parents"]) if parent == ""]
    assert sum(roots) == pytest.approx(par["total"]["time_s"], rel=1e-6)
    assert b["plan"]["label"] == v["plan"]["label"]
    # memory: the tallest stage is the per-device tensors' peak (+ the CUDA context); the allocator's
    # blocks round it up by at most 1 % here, and its segments hold at least that (passes/allocator.py)
    m = v["memory"]
    heights = [r["weight_bytes"] + r["activation_bytes"] + r["reserve_bytes"] for r in m["stages"]]
    t = par["total"]
    assert max(heights) == pytest.approx(t["peak_allocated_bytes"] + t["reserve_bytes"], rel=0.01)
    assert max(heights) <= t["peak_allocated_bytes"] + t["reserve_bytes"] <= t["peak_memory_bytes"]
    weights = {r["name"]: r["weight_bytes"] for r in par["stages"]}
    assert {r["stage"]: r["activation_bytes"] for r in m["stages"]} == \
        {r["name"]: r["peak_activation_bytes"] for r in par["stages"]}
    assert max(r["weight_bytes"] for r in m["stages"]) <= sum(weights.values())
    # compare: B's times are the per-device ones, A's the one-device pipeline's
    c = engine.compare_view(SMALL, PLAN)
    rows = {r["stage"]: r for r in c["rows"]}
    assert rows["total"]["b"]["time_s"] == pytest.approx(par["total"]["time_s"], rel=1e-9)
    for s in par["stages"]:
        assert rows[s["name"]]["b"]["time_s"] == pytest.approx(s["time_s"], rel=1e-9)
    assert rows["total"]["b"]["peak_memory_bytes"] == par["total"]["peak_memory_bytes"]
    assert c["b"]["per_device"] and "4 × h100-sxm" in c["b"]["title"] and not c["a"]["per_device"]
    one = engine.estimate(SMALL)
    assert rows["total"]["a"]["time_s"] == pytest.approx(one.total["time_s"], rel=1e-9)
    # the time range: the JSON's parallel.total.time_range_s, in the headline, the plan's
    # caption, Compare's total and the summary line under the per-device table
    rng = par["total"]["time_range_s"]
    assert rng[0] <= par["total"]["time_s"] <= rng[1]
    text = _range_text(par["total"]["time_s"], rng)
    assert v["time"]["per_device"] and v["time"]["time_range_s"] == pytest.approx(rng, rel=1e-12)
    assert v["time"]["text"] == text == v["plan"]["time_text"]
    assert rows["total"]["b"]["time_text"] == text
    assert v["multi_device"]["summary"][0].startswith(f"per video: {text} on 4 × h100-sxm")
    # memory: the allocator band and the CUDA context top the peak stage's bar at the per-device peak
    pk = {r["stage"]: r for r in m["stages"]}[m["peak_stage"]]
    assert m["peak_reserved_bytes"] == t["peak_reserved_bytes"] and m["context_bytes"] == t["reserve_bytes"]
    if t["peak_reserved_bytes"] >= pk["weight_bytes"] + pk["activation_bytes"]:
        assert pk["weight_bytes"] + pk["activation_bytes"] + pk["allocator_bytes"] + pk["reserve_bytes"] == \
            t["peak_memory_bytes"]
    # Ulysses over 4 devices: each does about a quarter of the DiT's FLOPs (tokens padded up)
    dit = rows["diffusion_core"]
    assert 0.25 <= dit["b"]["flops"] / dit["a"]["flops"] <= 0.26


@pytest.mark.slow
@pytest.mark.parametrize("by", ["op", "scope"])
def test_roofline_under_a_plan_is_one_device_graph(engine, by):
    from wanir.backends.parallel import multi_device_cost

    v = engine.roofline_view(PLAN, by, 2)
    assert v["plan"]["devices"] == 4
    g = multi_device_cost(engine.estimate(PLAN)).graph
    if by == "op":
        ops = [n for n in g if n.category != "input"]
        assert len(v["points"]) + v["left_out"] == len(ops)
        assert any(n.category == "communication" for n in ops)     # the plan's graph, comm nodes included
        assert not any(p["category"] == "communication" for p in v["points"])
    names = {n.path for n in g} | {n.scope.path for n in g}
    assert all(p["name"] in names or by == "scope" for p in v["points"])


def test_allow_files_never_follows_a_link_out(tmp_path):
    root = tmp_path / "models"
    m = root / "m"
    m.mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "config.json").write_text("{}")
    (m / "ok").symlink_to(root)                                 # a link that stays inside: accepted
    assert W.check_overrides(["model.from=m"], allow_files=root) == [f"model.from={m.resolve()}"]
    (m / "config.json").symlink_to(secret / "config.json")      # a file inside linking out: refused
    with pytest.raises(ConfigError, match="config.json links outside the folder"):
        W.check_overrides(["model.from=m"], allow_files=root)
    (m / "config.json").unlink()
    (m / "loop").symlink_to(m / "loop")                         # a loop: refused, in bounded time
    with pytest.raises(ConfigError, match="broken or looping link"):
        W.check_overrides(["model.from=m"], allow_files=root)


def _dominated(r, rows):
    return any(q["time_s"] <= r["time_s"] and q["cost"] <= r["cost"] and
               (q["time_s"], q["cost"]) != (r["time_s"], r["cost"]) for q in rows)


@pytest.mark.integration
def test_sizing_with_prices_for_some_gpus_agrees_with_wanir_size(engine):
    """Prices for one GPU of two: the rows come in `wanir size`'s order, the cost column is
    dollars on the priced GPU and GPU-hours on the other (each row's own), and the Pareto
    stars are the undominated rows of each kind, checked by brute force."""
    import subprocess
    import sys

    ov = ["model=wan2.1-t2v-1.3b", "workload=480p", "workload.frames=17", "workload.steps=4"]
    d = engine.size_view(ov, throughput="100", hardware=["h100-sxm", "a100-80gb"], devices="1,2",
                         prices=["h100-sxm=2.5"])
    r = subprocess.run([sys.executable, "-m", "wanir", "size", *ov, "--throughput", "100", "--hardware",
                        "h100-sxm,a100-80gb", "--devices", "1,2", "--price", "h100-sxm=2.5", "--format", "json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    cli = [c for c in json.loads(r.stdout)["candidates"] if c["fits"]]
    key = ("hardware", "devices", "plan", "batch")
    assert [tuple(x[k] for k in key) for x in d["rows"]] == [tuple(x[k] for k in key) for x in cli]
    assert d["batched"] and {x["batch"] for x in d["rows"]} > {1}      # a throughput target tries batches
    assert not d["priced"] and d["priced_any"] and d["unpriced"] == ["a100-80gb"]
    for x in d["rows"]:
        gh = x["devices"] * x["time_s"] / 3600 / x["batch"]   # GPU-hours per video of one replica ...
        assert x["gpu_hours_per_video"] <= gh * (1 + 1e-9)     # ... at most (dp replicas share the devices)
        if x["hardware"] == "h100-sxm":
            assert x["cost"] == pytest.approx(2.5 * x["gpu_hours_per_video"]) and x["cost_unit"] == "$/video"
        else:
            assert x["cost"] == x["gpu_hours_per_video"] and x["cost_unit"] == "GPU-h/video"
    for priced in (True, False):
        group = [x for x in d["rows"] if x["priced"] is priced]
        for x in group:
            assert x["pareto"] == (not _dominated(x, group)) or \
                any(q is not x and q["pareto"] and (q["time_s"], q["cost"]) == (x["time_s"], x["cost"]) for q in group)
    # each row names the stack `wanir size` assumed for it and its latency's range, the CLI's
    for x, y in zip(d["rows"], cli):
        assert (x["runtime"], x["attention_kernel"], x["precision"]) == \
            (y["runtime"], y["attention_kernel"], y["precision"])
        assert x["precision_text"] == f"{y['precision']['dit_weights']}/{y['precision']['dit_compute']}"
        assert x["time_s"] == pytest.approx(y["time_s"], rel=1e-9)
        assert x["time_range_s"] == pytest.approx(y["time_range_s"], rel=1e-9)
        assert y["time_range_s"][0] <= y["time_s"] <= y["time_range_s"][1]
        assert x["latency_text"] == _range_text(y["time_s"], y["time_range_s"])
    # the priced rows meeting the target come first, by dollars
    meets = [x for x in d["rows"] if x["meets_target"]]
    firsts = [x["priced"] for x in meets]
    assert firsts == sorted(firsts, reverse=True)


def test_size_request_refuses_before_any_work(engine):
    for kw, words in [({"prices": ["h100-sxm=abc"]}, "--price"), ({"prices": ["nosuch=1"]}, "no hardware named"),
                      ({"hardware": [["x"]]}, "not in the library"), ({"latency": "inf"}, "--latency"),
                      ({"devices": "1,2,4,8,16,32,64"}, "at most")]:
        with pytest.raises(ConfigError, match=words) as e:
            engine.size_request(SMALL, **kw)
        assert "\n" not in str(e.value)


@pytest.mark.slow
def test_sizing_reports_its_progress(engine):
    """The fraction done comes before each plan: never decreasing, in [0, 1), one per plan
    tried (each plan is timed on every hardware)."""
    fr = []
    d = engine.size_view(["model=wan2.1-t2v-1.3b", "workload=480p", "workload.frames=17", "workload.steps=2"],
                         hardware=["h100-sxm", "l40s"], devices="1,2,4", progress=fr.append)
    assert fr == sorted(fr) and 0 <= fr[0] and fr[-1] < 1
    assert len(fr) * 2 == d["evaluated"]
