"""Human durations from one formatter, one unit per column, and provenance lines that say
what would replace the assumed values."""
import pytest

import wanir
from wanir.backends import report
from wanir.backends.report import column_time_unit, fmt_time, fmt_time_in


@pytest.mark.parametrize("seconds, text", [
    (0.0326, "32.6 ms"), (1.5, "1.5 s"), (93.7, "93.7 s"), (119, "119 s"), (120, "2 min"),
    (1833.6, "30.6 min"), (7199, "120 min"), (7200, "2 h"),
    (2380 * 60, "39.7 h"),                 # the "2.38e+03 min"
    (3 * 86400, "3 d"), (5e-5, "50 µs"),
])
def test_fmt_time_is_a_human_duration(seconds, text):
    assert fmt_time(seconds) == text


def test_fmt_time_never_uses_exponent_notation():
    v = 1e-6
    while v < 1e12:
        assert "e" not in fmt_time(v).split()[0], fmt_time(v)
        v *= 3.7


def test_a_column_has_one_unit():
    vals = [93.7, 181.0, 250.0]                   # 93.7 s would print as seconds on its own
    unit = column_time_unit(vals)
    assert unit == ("min", 60.0)                  # the median (181 s) reads as minutes
    assert [fmt_time_in(v, unit) for v in vals] == ["1.56", "3.02", "4.17"]


@pytest.mark.slow
def test_size_latency_column_has_one_unit(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")          # one table line per row
    from wanir.backends.sizing import render, size
    res = size(["model=wan2.1-t2v-1.3b", "workload=480p"], latency_s=300, hardware=["h100-sxm", "l40s"],
               devices=(1, 2))
    render(res, "table")
    out = capsys.readouterr().out
    assert "latency (" in out and "time/video" not in out
    body = [line for line in out.splitlines() if line.startswith("│")]
    assert body
    head = [line for line in out.splitlines() if line.startswith("┃")][0]
    names = [c.strip() for c in head.strip("┃").split("┃")]
    col = next(i for i, name in enumerate(names) if name.startswith("latency"))
    for line in body:
        cell = [c.strip() for c in line.strip("│").split("│")][col]
        float(cell.split(" (")[0].replace(",", ""))   # a bare number (its range after it): the unit is in the header


@pytest.mark.slow
def test_nothing_meets_the_target_shows_the_nearest_misses(capsys):
    from wanir.backends.sizing import render, size
    res = size(["model=wan2.1-t2v-1.3b", "workload=480p"], latency_s=1.0, hardware=["h100-sxm"], devices=(1, 2))
    assert not any(c.meets for c in res["candidates"])
    render(res, "table")
    out = " ".join(capsys.readouterr().out.split())
    assert "showing the best 0" not in out
    assert "nearest misses" in out
    fastest = min(c.time_s for c in res["candidates"])
    assert f"the fastest fitting row takes {fmt_time(fastest)}" in out


def test_provenance_says_which_calibrate_command_replaces_the_assumptions():
    est = wanir.estimate(["model=wan2.1-t2v-1.3b", "workload=480p", "hardware=a100-80gb"])
    lines = report.provenance_lines(est)
    assert any("rests on assumed values" in line for line in lines)
    hint = lines[-1]
    assert "`wanir calibrate --base a100-80gb -o cal` on the a100-80gb" in hint
    assert "--config-dir cal hardware=a100-80gb-calibrated" in hint
    assumed = {k for s in est.stages for k in s.provenance["inputs"].get("assumed", ())}
    for k in assumed:                               # every assumed input is accounted for
        assert k.removeprefix("kernels.") in hint


def test_provenance_on_a_cpu_entry_measures_the_cpu():
    est = wanir.estimate(["model=wan2.1-t2v-1.3b", "workload=480p", "workload.frames=5", "workload.steps=1",
                          "hardware=host-cpu"])
    hint = report.provenance_lines(est)[-1]
    assert "`wanir calibrate --device cpu --base host-cpu -o cal`" in hint
