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
