"""Hostile values: every number a user or a file supplies is checked for type, finiteness and
range before any arithmetic (docs/limits.md), with the key and the allowed range in one
line. CLI cases run under a memory limit and a timeout (tests/hostile.py)."""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wanir
from hostile import assert_one_line_error, cli
from wanir.backends.sizing import size
from wanir.config import load_config
from wanir.errors import ConfigError
from wanir.limits import LIMITS, Rule, check_value

# ----------------------------------------------------------------------------- the CLI


@pytest.mark.integration
@pytest.mark.parametrize("override,needle", [
    ("dit.num_layers=1.5", "dit.num_layers must be an integer in [1, 1024], got 1.5"),
    ("dit.num_layers=100000000", "dit.num_layers must be an integer in [1, 1024]"),
    ("dit.num_layers=true", "dit.num_layers"),
    ("dit.patch_size=[0,2,2]", "dit.patch_size"),
    ("dit.patch_size=[1,2]", "dit.patch_size"),
    ("dit.eps=nan", "dit.eps must be a finite number"),
    ("dit.eps=inf", "dit.eps"),
    ("workload.batch=1e300", "workload.batch"),
    ("workload.height=-720", "workload.height"),
    ("vae.z_dim=-16", "vae.z_dim"),
    ("text_encoder.vocab_size=0", "text_encoder.vocab_size"),
    ("+workload.hieght=480", "did you mean 'workload.height'"),
    ("hardware.memory.bandwidth_tbps.value=1e-320", "memory.bandwidth_tbps.value"),
    ("hardware.tensor_tflops.bf16.value=1e300", "tensor_tflops.bf16.value"),
    ("parallel.degree=100000", "parallel.degree"),
    ("parallel.network.efficiency=0", "parallel.network.efficiency"),
    ("workload.height=${workload.height}", "interpolation"),
])
def test_bad_value_is_one_line(override, needle):
    assert_one_line_error(cli("estimate", override), needle)


@pytest.mark.integration
def test_400_digit_integer_is_shown_truncated():
    line = assert_one_line_error(cli("estimate", "workload.frames=" + "9" * 400), "workload.frames",
                                 "400 digits")
    assert "9" * 50 not in line


def test_interpolation_to_another_key_still_works():
    a = wanir.estimate(["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=${workload.height}",
                        "workload.frames=5", "workload.steps=1"])
    b = wanir.estimate(["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=480",
                        "workload.frames=5", "workload.steps=1"])
    assert a.total["tensor_flops"] == b.total["tensor_flops"]


def test_plus_key_that_wanir_reads_is_accepted():
    cfg = load_config(["+dit.rope_max_seq_len=2048"])
    assert cfg.dit.rope_max_seq_len == 2048
    with pytest.raises(ConfigError, match="did you mean 'dit.num_layers'"):
        load_config(["+dit.num_layayers=3"])


@pytest.mark.integration
@pytest.mark.parametrize("args,needle", [
    (("estimate", "--depth", "100000"), "--depth must be an integer in [0, 64]"),
    (("size", "--latency", "nan"), "--latency"),
    (("size", "--throughput", "-5"), "--throughput"),
    (("size", "--latency", "60", "--devices", "1,99999999999999"), "--devices"),
    (("size", "--latency", "60", "--price", "h100-sxm=inf"), "--price"),
    (("sweep", "workload.steps=1,2", "-o", "/tmp/never-written", "-j", "3000"), "-j/--jobs must be an integer in [1, 64]"),
    (("size", "--latency", "60", "-j", "0"), "-j/--jobs must be an integer in [1, 64]"),
    (("size", "--latency", "60", "-j", "99999999999999999999"), "-j/--jobs must be an integer in [1, 64]"),
    (("size", "--latency", "60", "-j", "nan"), "-j/--jobs"),
    (("no-such-command",), "invalid choice"),
])
def test_bad_option_is_one_line(args, needle):
    assert_one_line_error(cli(*args), needle)


@pytest.mark.integration
def test_an_option_argparse_refuses_is_one_line_cut_and_without_control_characters():
    line = assert_one_line_error(cli("estimate", "--depth", "x" * 5000 + "\x1b[31m"), "estimate: argument --depth",
                                 "invalid int value")
    assert "\x1b" not in line and len(line) < 400


# ----------------------------------------------------------------------------- the Python API (h)


@pytest.mark.parametrize("bad", ["workload.height=480", b"x", 480, None, {"workload.height": 480},
                                 [480], ["ok=1"] * 1001, ["x" * 20_000]])
def test_api_refuses_anything_but_a_list_of_strings(bad):
    with pytest.raises(ConfigError):
        wanir.estimate(bad)


@pytest.mark.parametrize("bad", [0, -1, 65, 10**30, True, 1.5, float("nan"), "2", [2]])
def test_size_api_refuses_a_bad_jobs_count(bad):
    with pytest.raises(ConfigError, match="jobs must be an integer in"):
        size(["model=wan2.1-t2v-1.3b"], latency_s=60.0, hardware=["h100-sxm"], devices=(1,), jobs=bad)


# ----------------------------------------------------------------------------- every limit


_HOSTILE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.text(max_size=5),
    st.lists(st.integers(min_value=-(10**30), max_value=10**30), max_size=12),
    st.none(),
)


def _accepts(rule: Rule, v) -> bool:
    """The rule written out independently of wanir.limits."""
    if v is None:
        return rule.optional
    if rule.kind in ("ints", "bools"):
        if not isinstance(v, list) or (rule.length and not rule.length[0] <= len(v) <= rule.length[1]):
            return False
        if rule.kind == "bools":
            return all(isinstance(x, bool) for x in v)
        return all(type(x) is int and rule.lo <= x <= rule.hi for x in v)
    if rule.kind == "bool":
        return type(v) is bool
    if rule.kind == "int":
        return type(v) is int and rule.lo <= v <= rule.hi
    if type(v) not in (int, float):
        return False
    try:
        f = float(v)
    except OverflowError:
        return False
    lo_ok = f > rule.lo if rule.lo_open else f >= rule.lo
    return math.isfinite(f) and lo_ok and f <= rule.hi


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(sorted(LIMITS)), v=_HOSTILE)
def test_every_limit_accepts_exactly_its_range(key, v):
    rule = LIMITS[key]
    if _accepts(rule, v):
        check_value(key, v, rule)
    else:
        with pytest.raises(ConfigError) as e:
            check_value(key, v, rule)
        msg = str(e.value)
        assert msg.startswith(key) and "\n" not in msg and len(msg) < 400


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from([k for k in sorted(LIMITS) if LIMITS[k].kind in ("int", "float")
                            and not k.startswith("image_encoder.")]),
       v=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**400), max_value=10**400)))
def test_overrides_out_of_range_never_reach_arithmetic(key, v):
    """Through load_config (what every command composes): an out-of-range value is a
    ConfigError naming the key; an in-range one composes."""
    rule = LIMITS[key]
    text = "nan" if isinstance(v, float) and math.isnan(v) else ("inf" if v == math.inf else
                                                                   "-inf" if v == -math.inf else repr(v))
    if _accepts(rule, v):
        return
    with pytest.raises(ConfigError) as e:
        load_config([f"{key}={text}"])
    assert key in str(e.value) and "\n" not in str(e.value)


def test_docs_list_every_limit():
    """docs/limits.md states every limit as the code applies it."""
    from hostile import REPO
    from wanir.limits import DEGREE_KEYS, MAX_DEVICES
    from wanir.safeio import CAPS, _size

    doc = (REPO / "docs" / "limits.md").read_text()
    for key, rule in LIMITS.items():
        assert f"| `{key}` | {rule.allowed()} |" in doc, key
    for key in DEGREE_KEYS:
        assert f"| `{key}` | an integer in [1, {MAX_DEVICES}] or `auto` |" in doc, key
    for kind, cap in CAPS.items():
        assert f"| {kind} | {_size(cap)} |" in doc, kind


@pytest.mark.integration     # runs wanir in a subprocess
def test_extreme_but_allowed_values_give_finite_numbers():
    """The largest sizes the limits allow still give finite times and strict JSON (no
    Infinity/NaN), within the memory and time limits."""
    from hostile import python

    code = (
        "import json, wanir\n"
        "est = wanir.estimate(['workload.height=16384', 'workload.width=16384', 'workload.frames=4001',\n"
        "    'workload.batch=4096', 'workload.steps=10000', 'workload.text_len=65536', 'dit.num_layers=1024',\n"
        "    'text_encoder.num_layers=1024', '+dit.rope_max_seq_len=16777216',\n"
        "    'hardware.memory.bandwidth_tbps.value=1e-4'])\n"
        "print(json.dumps(est.to_dict(), allow_nan=False)[:40])\n"
        "print(est.total['time_s'] > 0)\n")
    r = python(code)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("True")
