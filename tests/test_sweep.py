"""Sweeps: Hydra sweep syntax expands to the cross product; the CSV has one row per point and
its numbers equal individual estimates; plots are written."""
import csv

import pytest

import wanir
from wanir.backends import sweep as S
from wanir.config import load_config, to_dict
from wanir.errors import ConfigError


def test_parse_cross_product():
    sw = S.parse_sweep(["workload.height=480,720,1088", "workload.frames=range(17,42,8)",
                        "hardware=choice(h100-sxm,a100-80gb)", "workload.steps=10"])
    assert [a.name for a in sw.swept] == ["workload.height", "workload.frames", "hardware"]
    assert sw.axes[1].values == [17, 25, 33, 41]
    assert len(sw) == 3 * 4 * 2
    pts = list(sw.points())
    assert len(pts) == 24 and len({tuple(s for _, _, s in p) for p in pts}) == 24
    assert all(p[3][2] == "10" for p in pts)


def test_parse_errors():
    with pytest.raises(ConfigError, match="given twice"):
        S.parse_sweep(["workload.height=480", "workload.height=720"])
    with pytest.raises(ConfigError, match="cannot parse"):
        S.parse_sweep(["workload.height=[480"])


@pytest.mark.slow
def test_point_configs_equal_load_config():
    """The fast per-point composition gives exactly what load_config gives."""
    sw = S.parse_sweep(["model=wan2.1-t2v-1.3b,wan2.1-t2v-14b", "workload.height=480,720",
                        "workload.guidance=true,false", "hardware=h100-sxm,a100-80gb"])
    comp = S.PointComposer()
    for p in sw.points():
        ours = to_dict(comp.compose(p))
        ref = to_dict(load_config([f"{a.key}={s}" for a, _, s in p]))
        assert ours == ref


def test_unknown_key_is_named():
    comp = S.PointComposer()
    p = next(S.parse_sweep(["workload.heigth=480,720"]).points())
    with pytest.raises(ConfigError, match="did you mean 'workload.height'"):
        comp.compose(p)


@pytest.mark.slow
def test_csv_rows_equal_individual_estimates(tmp_path):
    ovs = ["model=wan2.1-t2v-1.3b", "workload.height=480,720", "workload.frames=17,33",
           "hardware=h100-sxm,a100-80gb", "workload.steps=4"]
    res, files = S.sweep_to_dir(ovs, tmp_path, progress=False)
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2
    seen = set()
    for r in rows:
        point = ["model=wan2.1-t2v-1.3b", f"workload.height={r['workload.height']}",
                 f"workload.frames={r['workload.frames']}", f"hardware={r['hardware']}", "workload.steps=4"]
        seen.add(tuple(point))
        est = wanir.estimate(point)
        assert int(r["total.tensor_flops"]) == est.total["tensor_flops"]
        assert int(r["total.vector_flops"]) == est.total["vector_flops"]
        assert int(r["total.bytes"]) == est.total["bytes"]
        assert float(r["total.time_s"]) == est.total["time_s"]
        assert int(r["total.peak_memory_bytes"]) == est.total["peak_memory_bytes"]
        for st in est.stages:
            assert int(r[f"{st.name}.flops"]) == st.total["tensor_flops"] + st.total["vector_flops"]
            assert float(r[f"{st.name}.time_s"]) == st.total["time_s"]
        # stage totals add up to the pipeline total (weight transfer aside, zero without offload)
        assert sum(int(r[f"{st.name}.flops"]) for st in est.stages) == int(r["total.flops"])
    assert len(seen) == 8
    names = {p.name for p in files}
    assert {"results.csv", "stage_breakdown.png", "time_vs_axis.png", "roofline.png"} <= names
    for p in files:
        if p.suffix == ".png":
            assert p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG"
    # the roofline chart got the heaviest ops of each hardware and its roof
    assert set(res.ops_by_hardware) == {"h100-sxm", "a100-80gb"}
    assert all(res.roofs[h]["peak_flops"] > 0 for h in res.roofs)


@pytest.mark.slow
def test_sweep_in_two_processes_matches_one(tmp_path):
    ovs = ["model=wan2.1-t2v-1.3b", "workload.height=480,720", "hardware=h100-sxm,a100-80gb", "workload.steps=2"]
    one = S.run_sweep(ovs, progress=False)
    two = S.run_sweep(ovs, progress=False, jobs=2)
    assert one.rows == two.rows


@pytest.mark.slow
def test_cli_sweep(tmp_path):
    from wanir.cli import main

    assert main(["sweep", "model=wan2.1-t2v-1.3b", "workload.height=480,720", "workload.steps=1",
                 "workload.frames=17", "-q", "-o", str(tmp_path), "--plot-format", "svg"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [r["workload.height"] for r in rows] == ["480", "720"]
    for name in ("stage_breakdown.svg", "time_vs_axis.svg", "roofline.svg"):
        assert (tmp_path / name).read_text().rstrip().endswith("</svg>")


def test_run_order_puts_axes_that_change_no_count_innermost():
    """hardware changes only time: its points run back to back, each build counted once. For
    ``hardware=a,b`` × ``height=h0,h1`` the cross product is (a,h0) (a,h1) (b,h0) (b,h1)
    (indices 0-3); height-major order is (a,h0) (b,h0) (a,h1) (b,h1) = 0, 2, 1, 3, and each
    build is shared by the 2 hardware values."""
    sw = S.parse_sweep(["model=wan2.1-t2v-1.3b", "hardware=h100-sxm,a100-80gb", "workload.height=480,720"])
    order, group = S.run_order(sw, list(sw.points()))
    assert (order, group) == ([0, 2, 1, 3], 2)
    # every axis changes counts: the cross-product order, one point per build
    sw = S.parse_sweep(["model=wan2.1-t2v-1.3b", "workload.height=480,720", "workload.frames=17,33"])
    assert S.run_order(sw, list(sw.points())) == ([0, 1, 2, 3], 1)
    # already innermost: unchanged
    sw = S.parse_sweep(["model=wan2.1-t2v-1.3b", "workload.height=480,720", "hardware=h100-sxm,a100-80gb"])
    assert S.run_order(sw, list(sw.points())) == ([0, 1, 2, 3], 2)


def test_run_order_keeps_the_cross_product_when_a_point_does_not_resolve():
    """a tested point that does not resolve fails in its turn, as in cross-product order"""
    sw = S.parse_sweep(["model=wan2.1-t2v-1.3b", "hardware=h100-sxm,a100-80gb", "workload.frames=17,80"])
    assert S.run_order(sw, list(sw.points())) == ([0, 1, 2, 3], 1)


def test_reordered_sweep_rows_in_cross_product_order():
    """run in height-major order, the rows still come back in cross-product order, each equal to
    its point's own estimate, and the roofline chart keeps the hardware in first-seen order;
    the garbage collector is left as it was found"""
    import gc

    ovs = ["model=wan2.1-t2v-1.3b", "hardware=a100-80gb,h100-sxm", "workload.height=480,720",
           "workload.frames=17", "workload.steps=1"]
    seen = []
    res = S.run_sweep(ovs, progress=False, jobs=1, on_row=seen.append)
    assert gc.isenabled()
    expect = [(hw, h) for hw in ("a100-80gb", "h100-sxm") for h in ("480", "720")]
    assert [(r["hardware"], r["workload.height"]) for r in res.rows] == expect
    # on_row saw them as they ran: the two hardware of one height back to back
    assert [(r["hardware"], r["workload.height"]) for r in seen] == [expect[i] for i in (0, 2, 1, 3)]
    for r, (hw, h) in zip(res.rows, expect):
        est = wanir.estimate(["model=wan2.1-t2v-1.3b", f"hardware={hw}", f"workload.height={h}",
                              "workload.frames=17", "workload.steps=1"], hints=False)
        assert r["total.time_s"] == est.total["time_s"] and r["total.flops"] == (
            est.total["tensor_flops"] + est.total["vector_flops"])
    assert list(res.ops_by_hardware) == ["a100-80gb", "h100-sxm"]
    assert list(res.roofs) == ["a100-80gb", "h100-sxm"]


def test_chart_ops_estimated_again_when_no_process_sent_them(monkeypatch):
    """the roofline chart's ops of each hardware's first point do not depend on which process
    sent them: with none sent, the sweep estimates them again and gets the same records"""
    ovs = ["model=wan2.1-t2v-1.3b", "workload.height=480,720", "hardware=h100-sxm,a100-80gb",
           "workload.frames=17", "workload.steps=1"]
    sent = S.run_sweep(ovs, progress=False, jobs=1)
    real = S._estimate_point

    def without_ops(point):
        row, hw, _, _, dt = real(point)
        return row, hw, None, None, dt

    monkeypatch.setattr(S, "_estimate_point", without_ops)
    again = S.run_sweep(ovs, progress=False, jobs=1)
    assert again.rows == sent.rows
    assert list(again.ops_by_hardware.items()) == list(sent.ops_by_hardware.items())
    assert list(again.roofs.items()) == list(sent.roofs.items())
    assert len(sent.ops_by_hardware["h100-sxm"]) == S.TOP_OPS
