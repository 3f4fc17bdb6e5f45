"""The time range printed next to every time where one table cell, CSV row or summary line
shows it: `wanir size`'s latency column (in the column's one unit), the estimate CSV's
time_low_s / time_high_s, and the per-device summary of a plan. Each printed figure is
checked against the range the code carries (``time_range_s``, seconds) converted by hand."""
import csv
import io
import re

import pytest

import wanir
from wanir.backends.report import fmt_time_range_in, to_csv
from wanir.cli import main

#: seconds per unit, written out here rather than read from the formatter under test
SECONDS = {"µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
CELL = re.compile(r"^([\d.,]+) \(([\d.,]+)–([\d.,]+)\)$")
SMALL = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=5",
         "workload.steps=2"]


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _close(printed: str, seconds: float, scale: float) -> None:
    """``printed`` (three significant digits) is ``seconds`` in units of ``scale`` seconds."""
    assert _num(printed) == pytest.approx(seconds / scale, rel=5e-3, abs=5e-3), (printed, seconds, scale)


def test_a_column_cell_holds_the_time_and_its_range_in_the_column_unit():
    # 1836 s = 30.6 min, 1698 s = 28.3 min, 1944 s = 32.4 min
    assert fmt_time_range_in(1836.0, (1698.0, 1944.0), ("min", 60.0)) == "30.6 (28.3–32.4)"
    assert fmt_time_range_in(1836.0, None, ("min", 60.0)) == "30.6"


@pytest.mark.slow
def test_size_table_prints_each_rows_range(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")          # one table line per row, no cell cut short
    from wanir.backends.sizing import render, size
    res = size(["model=wan2.1-t2v-1.3b", "workload=480p"], latency_s=1e9, hardware=["h100-sxm", "l40s"],
               devices=(1, 2))
    render(res, "table")
    out = capsys.readouterr().out
    head = [line for line in out.splitlines() if line.startswith("┃")][0]
    names = [c.strip() for c in head.strip("┃").split("┃")]
    col = next(i for i, name in enumerate(names) if name.startswith("latency ("))
    unit = re.match(r"latency \((.+)\)", names[col]).group(1)
    scale = SECONDS[unit]
    by_row = {(c.hardware, c.plan.label): c for c in res["candidates"]}
    body = [[c.strip() for c in line.strip("│").split("│")] for line in out.splitlines() if line.startswith("│")]
    assert body
    for cells in body:
        c = by_row[(cells[names.index("hardware")], cells[names.index("plan")])]
        lo, hi = c.time_range_s
        assert lo <= c.time_s <= hi
        m = CELL.match(cells[col])
        assert m, cells[col]
        t, l, h = m.groups()
        _close(t, c.time_s, scale)
        _close(l, lo, scale)
        _close(h, hi, scale)
        assert _num(l) <= _num(t) <= _num(h)


def test_estimate_csv_carries_the_total_range():
    est = wanir.estimate(SMALL + ["hardware=h100-sxm"])
    rows = {r["stage"]: r for r in csv.DictReader(io.StringIO(to_csv(est)))}
    lo, hi = est.total["time_range_s"]
    t = est.total["time_s"]
    assert float(rows["total"]["time_low_s"]) == pytest.approx(lo)
    assert float(rows["total"]["time_high_s"]) == pytest.approx(hi)
    assert float(rows["total"]["time_low_s"]) <= float(rows["total"]["time_s"]) <= float(rows["total"]["time_high_s"])
    assert lo <= t <= hi
    for s in est.stages:                          # a stage has no range of its own: left empty
        assert rows[s.name]["time_low_s"] == rows[s.name]["time_high_s"] == ""


@pytest.mark.slow
def test_plan_summary_line_prints_the_plans_range(capsys):
    ov = SMALL + ["hardware=h100-sxm", "parallel=ulysses", "parallel.degree=2"]
    assert main(["estimate", *ov, "--format", "md"]) == 0
    out = capsys.readouterr().out
    est = wanir.estimate(ov)
    lo, hi = est.parallel["total"]["time_range_s"]
    t = est.parallel["total"]["time_s"]
    assert lo <= t <= hi
    line = next(x for x in out.splitlines() if x.startswith("per video: "))
    m = re.match(r"per video: ([\d.,]+) (\S+) \(([\d.,]+)–([\d.,]+)\) on 2 × h100-sxm", line)
    assert m, line
    scale = SECONDS[m.group(2)]
    _close(m.group(1), t, scale)
    _close(m.group(3), lo, scale)
    _close(m.group(4), hi, scale)
