"""wanir size names the stack it assumes and searches the attention kernels: the kernel is
what the runtime runs on each GPU's family (docs/runtimes.md), `--allow` takes every kernel of
wanir/data/kernels.yaml, and each row, the JSON and the caption say which."""
import yaml

import pytest

import wanir
from wanir import kernels
from wanir.backends import sizing
from wanir.config import load_config
from wanir.hardware import load
from wanir.runtime import attention_kernel_for
from wanir import size_optimizations as so

SMALL = ["workload.height=480", "workload.width=832", "workload.frames=9", "workload.steps=4"]
RUNTIME_DIR = kernels.PATH.parent.parent / "configs" / "runtime"


def _runtime_yaml(name):
    return yaml.safe_load((RUNTIME_DIR / f"{name}.yaml").read_text())


def test_default_kernel_follows_the_gpu_family():
    # the official runtime: FlashAttention-2 everywhere, FlashAttention-3 for Wan2.2 on sm90 (its YAML)
    off = _runtime_yaml("wan-official")
    cfg = load_config(["model=wan2.2-t2v-a14b"])          # composed for the default h100-sxm
    assert attention_kernel_for(cfg, load("h100-sxm")) == off["attention_kernel_wan22_sm90"] == "flash3"
    assert attention_kernel_for(cfg, load("a100-80gb")) == off["attention_kernel"] == "flash2"
    assert attention_kernel_for(cfg, load("b200")) == "flash2"
    # a kernel the user sets is kept on every GPU
    cfg = load_config(["model=wan2.2-t2v-a14b", "roofline.attention_kernel=flash2"])
    assert attention_kernel_for(cfg, load("h100-sxm")) == "flash2"


@pytest.mark.slow
def test_size_times_each_gpu_with_its_own_kernel_and_names_it():
    # Wan2.2 on an A100 and an H100 in one run: FA3 does not exist on sm80, so before each GPU took
    # the kernel of the configured H100 this raised
    res = sizing.size(["model=wan2.2-t2v-a14b", *SMALL], latency_s=1e6, hardware=["a100-80gb", "h100-sxm"],
                      devices=(1,))
    by_hw = {c.hardware: c for c in res["candidates"] + res["unfit"]}
    assert by_hw["a100-80gb"].stack["attention_kernel"] == "flash2"
    assert by_hw["h100-sxm"].stack["attention_kernel"] == "flash3"
    d = by_hw["h100-sxm"].to_dict()
    assert d["runtime"] == "wan-official" and d["attention_kernel"] == "flash3"
    assert d["precision"]["dit_weights"] == "fp32" and d["precision"]["dit_compute"] == "bf16"
    # each row's time is the estimate of that GPU with the runtime's kernel there
    for hw in ("a100-80gb", "h100-sxm"):
        est = wanir.estimate(["model=wan2.2-t2v-a14b", *SMALL, f"hardware={hw}"], hints=False)
        assert by_hw[hw].time_s == pytest.approx(est.total["time_s"], rel=1e-9)
    line = sizing.stack_line(res)
    assert "runtime wan-official" in line and "flash2 on a100-80gb" in line and "flash3 on h100-sxm" in line


def test_sdpa_rows_name_the_kernel_it_picks():
    res = sizing.size(["model=wan2.1-t2v-1.3b", *SMALL, "runtime=diffusers"], latency_s=1e6, hardware=["b200"],
                      devices=(1,))
    c = res["candidates"][0]
    picked = kernels.table()["sdpa"]["sm100"]["value"]
    assert c.stack["attention_kernel_config"] == "sdpa" and c.stack["attention_kernel"] == picked
    assert sizing._kernel_label(c.stack) == f"sdpa→{picked}"


def test_allow_accepts_every_kernel_of_the_table():
    for k in kernels.table()["attention"]:
        assert so.parse_allow(k) == (k,)
    assert {"cudnn", "flash3", "flash4", "sage2"} <= set(so.OPTIMIZATIONS)


def test_allow_searches_a_kernel_only_where_it_exists():
    res = so.size_with_optimizations(["model=wan2.1-t2v-1.3b", *SMALL], allow=("cudnn", "flash4"),
                                     latency_s=1e6, hardware=["b200", "a100-80gb"], devices=(1,))
    rows = res["candidates"] + res["unfit"]
    fam = {"b200": "sm100", "a100-80gb": "sm80"}
    for c in rows:
        if c.optimizations in ("cudnn", "flash4"):
            assert c.stack["attention_kernel"] == c.optimizations
            assert fam[c.hardware] in kernels.table()["attention"][c.optimizations]
    assert any(c.hardware == "b200" and c.optimizations == "cudnn" for c in rows)
    assert not any(c.hardware == "a100-80gb" and c.optimizations in ("cudnn", "flash4") for c in rows)
    assert any("a100-80gb: cudnn (no cudnn kernel for sm80)" == s for s in res["skipped"])
    # the faster kernel is what makes B200 fast: same plan, less time
    base = [c for c in rows if c.hardware == "b200" and c.plan.label == "single" and not c.optimizations][0]
    cud = [c for c in rows if c.hardware == "b200" and c.plan.label == "single" and c.optimizations == "cudnn"][0]
    assert cud.time_s < base.time_s


def test_plain_size_prints_the_stack_and_the_kernels_it_could_search(capsys):
    res = sizing.size(["model=wan2.1-t2v-1.3b", *SMALL], latency_s=1e6, hardware=["b200"], devices=(1,))
    sizing.render(res, "table")
    out = " ".join(capsys.readouterr().out.split())     # the terminal wraps long lines
    assert "stack: runtime wan-official; attention kernel flash2 on b200" in out
    other = [k for k in kernels.available_attention("sm100") if k not in ("math", "sdpa", "flash2")]
    assert f"--allow {','.join(other)}" in out


def test_the_resolved_run_names_the_kernel_per_gpu_family():
    """The Run records whether the runtime chose the kernel and the model family, so re-timing
    on another GPU needs no configuration (the same answers as the configuration's reader)."""
    from wanir.runtime import run_attention_kernel

    off = _runtime_yaml("wan-official")
    run = wanir.resolve(["model=wan2.2-t2v-a14b"]).run
    assert run.kernel_from_runtime and run.model_family == "wan2.2"
    assert run_attention_kernel(run, load("h100-sxm")) == off["attention_kernel_wan22_sm90"] == "flash3"
    assert run_attention_kernel(run, load("a100-80gb")) == off["attention_kernel"] == "flash2"
    # Wan2.1 is not Wan2.2: FlashAttention-2 on Hopper too
    assert run_attention_kernel(wanir.resolve([]).run, load("h100-sxm")) == off["attention_kernel"]
    run = wanir.resolve(["model=wan2.2-t2v-a14b", "roofline.attention_kernel=flash2"]).run
    assert not run.kernel_from_runtime
    assert run_attention_kernel(run, load("h100-sxm")) == "flash2"
    st = sizing.stack_of(run, load("h100-sxm"))
    assert st["kernel_default"] is False and st["runtime"] == "wan-official"
    assert st["precision"]["dit_weights"] == off["precision"]["dit_weights"]


def test_run_for_plan_reapplies_the_runtime_defaults():
    """A Run moved to a plan takes the runtime's defaults there (wan-official's YAML:
    ``offload_model: single-device``, FSDP gathers ``dit_weights_fsdp``); values the user set stay."""
    from wanir.backends.parallel import make_plan
    from wanir.runtime import bare_run

    off = _runtime_yaml("wan-official")
    sc = wanir.resolve([])
    assert sc.run.memory.offload == "model" and sc.build.options.precision.dit_weights == off["precision"]["dit_weights"]
    build, run = sc.run.for_plan(make_plan("fsdp", 4))
    assert run.memory.offload == "none" and run.plan is None
    assert build.options.precision.dit_weights == off["dit_weights_fsdp"] == "bf16"
    _, run = wanir.resolve(["memory.offload_model=true"]).run.for_plan(make_plan("fsdp", 4))
    assert run.memory.offload == "model"
    assert bare_run().for_plan(make_plan("fsdp", 4)) is None


def test_build_pipeline_takes_a_build_only():
    from wanir.frontends.pipeline import build_pipeline

    with pytest.raises(TypeError, match="Build"):
        build_pipeline(dict(wanir.resolve([]).config))


def test_a_set_kernel_and_the_default_do_not_share_per_device_graphs():
    """Wan2.2 on an H100: the runtime's default there is FlashAttention-3, so setting flash3
    gives the same Build; on an A100 the default falls back to FlashAttention-2 while the set
    kernel stays flash3 — each run must be timed with its own per-device graph."""
    from wanir.estimate import count

    a = wanir.resolve(["model=wan2.2-t2v-a14b", *SMALL, "parallel=ulysses", "parallel.degree=2"])
    b = wanir.resolve(["model=wan2.2-t2v-a14b", *SMALL, "parallel=ulysses", "parallel.degree=2",
                       "roofline.attention_kernel=flash3"])
    assert a.run.plan_build == b.run.plan_build and a.run.kernel_from_runtime and not b.run.kernel_from_runtime
    counted = count(a.run.plan_build)
    assert counted.device_graph_cache(a.run) is not counted.device_graph_cache(b.run)
