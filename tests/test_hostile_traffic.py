"""Hostile traffic files for ``wanir plan``: each gets one line naming the key, exit 2, in
bounded time and memory (tests/hostile.py runs the CLI under an address-space limit)."""
import os

import pytest

from hostile import assert_one_line_error, cli

CLASS = "{name: a, overrides: [model=wan2.1-t2v-1.3b], share: 1.0}"


def _plan(tmp_path, text: str, *extra):
    f = tmp_path / "traffic.yaml"
    f.write_text(text)
    return cli("plan", str(f), "-q", *extra)


@pytest.mark.integration
@pytest.mark.parametrize("arrivals, needle", [
    ("{rate_per_hour: 1.0e+300}", "arrivals.rate_per_hour"),
    ("{rate_per_hour: 100001}", "arrivals.rate_per_hour"),
    ("{rate_per_hour: .nan}", "arrivals.rate_per_hour"),
    ("{rate_per_day: -5}", "arrivals.rate_per_day"),
    ("{rate_per_hour: 10, profile: [1, 2, 3]}", "arrivals.profile"),
    ("{rate_per_hour: 10, profile: [" + ", ".join(["1"] * 23) + ", .inf]}", "arrivals.profile[23]"),
])
def test_bad_rates_and_profiles(tmp_path, arrivals, needle):
    r = _plan(tmp_path, f"classes: [{CLASS}]\narrivals: {arrivals}\n")
    assert_one_line_error(r, needle)


@pytest.mark.integration
def test_negative_share(tmp_path):
    r = _plan(tmp_path, "classes: [{name: a, share: -0.5}, {name: b, share: 1.5}]\narrivals: {rate_per_hour: 1}\n")
    assert_one_line_error(r, "classes[0].share")


@pytest.mark.integration
def test_millions_of_classes_are_refused_by_size(tmp_path):
    # a million classes: the file is over the traffic file's size cap, refused before parsing
    f = tmp_path / "traffic.yaml"
    with open(f, "w") as fh:
        fh.write("classes:\n")
        line = "  - {name: c, share: 0.000001}\n"
        fh.write(line * 1_000_000)
        fh.write("arrivals: {rate_per_hour: 1}\n")
    assert_one_line_error(cli("plan", str(f), "-q"), "traffic file", "at most")


@pytest.mark.integration
def test_many_classes_through_aliases_are_refused(tmp_path):
    # 17 classes: under the byte cap, over the class limit
    items = "\n".join(f"  - {{name: c{i}, share: 0.01}}" for i in range(17))
    r = _plan(tmp_path, f"classes:\n{items}\narrivals: {{rate_per_hour: 1}}\n")
    assert_one_line_error(r, "classes", "1 to 16")


@pytest.mark.integration
def test_too_many_estimates_or_simulated_requests(tmp_path):
    classes = "\n".join(f"  - {{name: c{i}, share: 0.1}}" for i in range(10))
    deps = "\n".join(f"  - {{hardware: l40s, devices: {i % 8 + 1}}}" for i in range(60))
    r = _plan(tmp_path, f"classes:\n{classes}\narrivals: {{rate_per_hour: 1}}\ndeployments:\n{deps}\n")
    assert_one_line_error(r, "deployments", "at most 512")
    r = _plan(tmp_path, f"classes: [{CLASS}]\narrivals: {{rate_per_hour: 1}}\n"
                        "simulation: {replications: 50, requests: 200000}\n")
    assert_one_line_error(r, "simulation", "replications × requests")


@pytest.mark.integration
def test_largest_allowed_rate_plans_in_bounded_time(tmp_path):
    # the rate cap with the slowest GPU: about 1e5 busy servers, planned by the closed forms
    r = _plan(tmp_path, f"classes: [{CLASS}]\narrivals: {{rate_per_hour: 100000}}\n"
                        "slo: {percentile: 99, latency_s: 3600}\n"
                        "deployments: [{hardware: rtx-4090, devices: 1}]\n", "--format", "json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"replicas"' in r.stdout


@pytest.mark.integration
def test_alias_bomb_is_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    r = _plan(tmp_path, bomb + f"classes: [{CLASS}]\narrivals: {{rate_per_hour: 1}}\n")
    assert_one_line_error(r, "traffic")


@pytest.mark.integration
def test_billion_row_trace_is_refused_before_reading(tmp_path):
    t = tmp_path / "trace.csv"
    with open(t, "wb") as fh:       # a sparse file the size of a billion "1.5,a" rows
        fh.truncate(6_000_000_000)
    r = _plan(tmp_path, f"classes: [{CLASS}]\narrivals: {{trace: {t}}}\n")
    assert_one_line_error(r, "traffic trace", "at most")


@pytest.mark.integration
def test_trace_over_the_row_limit(tmp_path):
    t = tmp_path / "trace.csv"
    t.write_text("time_s,class\n" + "1,a\n" * 1_000_001)
    r = _plan(tmp_path, f"classes: [{CLASS}]\narrivals: {{trace: {t}}}\n")
    assert_one_line_error(r, "arrivals.trace", "rows")


@pytest.mark.integration
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_trace_that_is_a_fifo(tmp_path):
    t = tmp_path / "trace.csv"
    os.mkfifo(t)
    r = _plan(tmp_path, f"classes: [{CLASS}]\narrivals: {{trace: {t}}}\n")
    assert_one_line_error(r, "trace")


@pytest.mark.integration
def test_traffic_file_that_is_a_directory(tmp_path):
    assert_one_line_error(cli("plan", str(tmp_path), "-q"), str(tmp_path))


@pytest.mark.integration
def test_trace_with_nan_time_and_unknown_class(tmp_path):
    t = tmp_path / "trace.csv"
    t.write_text("time_s,class\n0,a\nnan,a\n")
    r = _plan(tmp_path, f"classes: [{CLASS}]\narrivals: {{trace: {t}}}\n")
    assert_one_line_error(r, "arrivals.trace", "line 3")
    t.write_text("time_s,class\n0,a\n5,zzz\n")
    assert_one_line_error(_plan(tmp_path, f"classes: [{CLASS}]\narrivals: {{trace: {t}}}\n"), "line 3")


@pytest.mark.integration
def test_unknown_hardware_in_deployments_and_prices(tmp_path):
    r = _plan(tmp_path, f"classes: [{CLASS}]\narrivals: {{rate_per_hour: 1}}\nprices: {{h1000: 2}}\n")
    assert_one_line_error(r, "h1000")
    r = _plan(tmp_path, f"classes: [{CLASS}]\narrivals: {{rate_per_hour: 1}}\n"
                        "deployments: [{hardware: l40s, devices: 2, plan: warp9}]\n")
    assert_one_line_error(r, "deployments[0].plan")
