"""Hostile overrides and --config-dir files: a group option that is a path (Hydra would load
any YAML file it names), resolver interpolations that read the environment, and references
that grow exponentially when resolved. Each is refused with one line and exit 2, in bounded
time and memory (tests/hostile.py), and no message shows the value of an environment
variable."""
from pathlib import Path

import pytest

import wanir
from hostile import REPO, assert_one_line_error, cli
from wanir.config import load_config
from wanir.errors import ConfigError
from wanir.interpolation import MAX_INTERPOLATIONS, MAX_OPTION_CHARS, plain_option

SECRET_VAR = "WANIR_TEST_SECRET"
SECRET = "s3cr3t-value-7f2a9c"
ENV = {SECRET_VAR: SECRET}
SMALL = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=480", "workload.frames=5",
         "workload.steps=1"]


def _no_secret(r):
    assert SECRET not in r.stderr and SECRET not in r.stdout, r.stderr[-2000:]


def _evil_yaml(tmp_path):
    """A YAML file outside every config folder that Hydra would merge if a path reached it."""
    evil = tmp_path / "evil.yaml"
    evil.write_text("# @package _global_\nworkload:\n  height: 1232\n  width: 480\n  frames: 5\n  steps: 1\n"
                    "  guidance: false\n  batch: 1\n  text_len: 512\n  vae_encode: false\n")
    return evil


# ----------------------------------------------------------------------------- group options


def _up_to(path) -> str:
    """``path`` (without .yaml) relative to a group folder of the built-in configs."""
    depth = len((REPO / "wanir" / "configs" / "workload").resolve().parts) - 1
    return "../" * depth + str(path.with_suffix("")).lstrip("/")


@pytest.mark.integration
@pytest.mark.parametrize("make", [
    lambda evil: f"workload={_up_to(evil)}",
    lambda evil: f"+workload={_up_to(evil)}",
    lambda evil: f"++workload={_up_to(evil)}",
    lambda evil: f"workload='{_up_to(evil)}'",
    lambda evil: f"hardware={evil.with_suffix('')}",
    lambda evil: "workload=..",
    lambda evil: "model=a/b",
    lambda evil: "model=wan2.1-t2v-1.3b/../wan2.1-t2v-14b",
    lambda evil: "dit=..\\\\x",
    lambda evil: "workload='~root'",
    lambda evil: "workload=.hidden",
    lambda evil: "workload=" + "a" * (MAX_OPTION_CHARS + 1),
    lambda evil: "workload=[480p,720p]",
    lambda evil: "workload=null",
])
def test_group_option_must_be_a_plain_existing_name(tmp_path, make):
    evil = _evil_yaml(tmp_path)
    override = make(evil)
    group = override.lstrip("+").split("=")[0]
    line = assert_one_line_error(cli("estimate", override), f"in group '{group}'", "(options: ")
    assert "1232" not in line     # the evil file's height never reached validation


def test_group_option_errors_in_process(tmp_path):
    evil = _evil_yaml(tmp_path)
    with pytest.raises(ConfigError, match="no option .* in group 'workload'; an option is a plain name, not a path"):
        load_config([f"workload={_up_to(evil)}"])
    with pytest.raises(ConfigError, match="did you mean 'rtx-4090'"):
        load_config(["hardware=4090"])
    with pytest.raises(ConfigError, match=r"no option 'x\\x00y'"):
        load_config(["workload='x\x00y'"])


def test_plain_option_rule():
    """The rule written out: plain names pass, anything path-like does not."""
    for ok in ("480p", "wan2.1-t2v-1.3b", "cfg+usp", "h100-sxm", "a" * MAX_OPTION_CHARS):
        assert plain_option(ok), ok
    for bad in ("", "..", "../x", "a/b", "/etc/x", "a\\b", ".x", "~x", "a..b", "a\x00b", "a\nb",
                "a" * (MAX_OPTION_CHARS + 1), None, 3, ["a"]):
        assert not plain_option(bad), bad


def test_user_options_and_plain_names_still_work(tmp_path):
    """A --config-dir option and the built-in ones compose as before."""
    (tmp_path / "workload").mkdir()
    (tmp_path / "workload" / "tiny.yaml").write_text(
        "height: 480\nwidth: 480\nframes: 5\nsteps: 1\nguidance: false\nbatch: 1\ntext_len: 512\nvae_encode: false\n")
    cfg = load_config(["model=wan2.1-t2v-1.3b", "workload=tiny", "hardware=h200"], config_dir=tmp_path)
    assert (cfg.workload.height, cfg.hardware.name) == (480, "h200")
    assert load_config(["workload=480p"]).workload.height == 480


@pytest.mark.integration
def test_a_long_option_list_is_cut(tmp_path):
    (tmp_path / "workload").mkdir()
    for i in range(400):
        (tmp_path / "workload" / f"w{i:03d}-some-long-option-name.yaml").write_text("{}\n")
    line = assert_one_line_error(cli("estimate", "--config-dir", tmp_path, "workload=nope"), "(options: ",
                                 "options)")
    assert len(line) < 1000


# ----------------------------------------------------------------------------- resolvers


@pytest.mark.integration
@pytest.mark.parametrize("value", [
    f"${{oc.env:{SECRET_VAR}}}",
    f"${{oc.env:{SECRET_VAR},480}}",
    f"${{ oc.env : {SECRET_VAR} }}",
    f"x${{oc.env:{SECRET_VAR}}}",
    f"'${{oc.env:{SECRET_VAR}}}'",
    f"${{oc.decode:${{oc.env:{SECRET_VAR}}}}}",
    f"${{oc.create:${{oc.env:{SECRET_VAR}}}}}",
    f"[${{oc.env:{SECRET_VAR}}}]",
    f"{{a:${{oc.env:{SECRET_VAR}}}}}",
    "${oc.select:workload.width}",
    "${my_resolver:1}",
])
@pytest.mark.parametrize("key", ["workload.height", "+hardware.note"])
def test_resolver_interpolation_is_refused_without_echo(key, value):
    r = cli("estimate", f"{key}={value}", env=ENV)
    _no_secret(r)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr[-2000:]
    if "oc.decode" not in value:   # Hydra's own override grammar refuses nested quotes first
        assert key.lstrip("+") in r.stderr


def test_resolver_refused_in_process():
    with pytest.raises(ConfigError, match=r"workload.height: a resolver interpolation .* is not accepted"):
        load_config(["workload.height=${oc.env:HOME}"])


def _hardware_yaml(tmp_path, **replace) -> Path:
    text = (REPO / "wanir" / "configs" / "hardware" / "h200.yaml").read_text()
    lines = text.splitlines()
    for key, value in replace.items():
        lines = [f"{key}: {value}" if ln.startswith(f"{key}:") else ln for ln in lines]
    d = tmp_path / "hardware"
    d.mkdir(exist_ok=True)
    p = d / "leak.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.integration
@pytest.mark.parametrize("args", [("hardware", "--config-dir", "{d}"),
                                  ("hardware", "--config-dir", "{d}", "--format", "json"),
                                  ("estimate", "--config-dir", "{d}", "hardware=leak"),
                                  ("size", "--config-dir", "{d}", "--latency", "600")])
def test_resolver_in_a_config_dir_hardware_file(tmp_path, args):
    _hardware_yaml(tmp_path, description=f"${{oc.env:{SECRET_VAR}}}")
    r = cli(*[a.format(d=tmp_path) for a in args], env=ENV)
    _no_secret(r)
    assert_one_line_error(r, "leak.yaml", "description", "resolver interpolation")


@pytest.mark.integration
@pytest.mark.parametrize("body,needle", [
    # a value of a config group file
    (f"workload:\n  height: ${{oc.env:{SECRET_VAR}}}\n", "workload.height"),
    (f"workload:\n  height: ${{oc.decode:'${{oc.env:{SECRET_VAR}}}'}}\n", "workload.height"),
    # a defaults-list option: Hydra resolves these itself while composing
    (f"defaults:\n  - /image_encoder: ${{oc.env:{SECRET_VAR}}}\n", "defaults[0]./image_encoder"),
])
def test_resolver_in_a_config_dir_group_file(tmp_path, body, needle):
    (tmp_path / "workload").mkdir()
    (tmp_path / "workload" / "x.yaml").write_text("# @package _global_\n" + body)
    r = cli("estimate", "--config-dir", tmp_path, "workload=x", env=ENV)
    _no_secret(r)
    assert_one_line_error(r, "x.yaml", needle, "resolver interpolation")


@pytest.mark.integration
@pytest.mark.parametrize("entry", ["/image_encoder: {evil}", "override /hardware: {evil}", "{evil}",
                                   "/image_encoder: [clip-vit-h-14, {evil}]"])
def test_config_dir_defaults_list_cannot_name_a_path(tmp_path, entry):
    evil = _evil_yaml(tmp_path)
    (tmp_path / "workload").mkdir()
    option = "../" * 12 + str(evil.with_suffix("")).lstrip("/")
    (tmp_path / "workload" / "x.yaml").write_text(f"defaults:\n  - {entry.format(evil=option)}\n")
    assert_one_line_error(cli("estimate", "--config-dir", tmp_path, "workload=x"),
                          "x.yaml", "the defaults list selects", "an option is a plain name")


# ----------------------------------------------------------------------------- references stay bounded


@pytest.mark.slow
def test_plain_references_still_work():
    """A whole-value reference to one value is kept: a chain of 50 of them gives the
    value at its end (here 480, set once)."""
    chain = ["+hardware.r0=${workload.height}"] + [f"+hardware.r{i}=${{hardware.r{i - 1}}}" for i in range(1, 50)]
    cfg = load_config(SMALL + chain + ["workload.width=${hardware.r49}"], validate=False)
    assert cfg.workload.width == 480


@pytest.mark.integration
@pytest.mark.parametrize("overrides,needle", [
    # string doubling: 2**60 characters if resolved
    ([f"+hardware.k{i}=${{hardware.k{i + 1}}}${{hardware.k{i + 1}}}" for i in range(60)] + ["+hardware.k60=x"],
     "must be the whole value"),
    # list doubling: 2**60 list items if resolved
    ([f"+hardware.k{i}=[${{hardware.k{i + 1}}},${{hardware.k{i + 1}}}]" for i in range(60)] + ["+hardware.k60=1"],
     "must be the whole value"),
    # mapping doubling through whole-value references to groups of keys
    ([o for i in range(60) for o in (f"+hardware.g{i}.a=${{hardware.g{i + 1}}}",
                                      f"+hardware.g{i}.b=${{hardware.g{i + 1}}}")] + ["+hardware.g60.a=1"],
     "names a group of keys"),
    # too many references
    ([f"+hardware.r{i}=${{workload.height}}" for i in range(MAX_INTERPOLATIONS + 1)],
     f"more than {MAX_INTERPOLATIONS}"),
    # a cycle
    (["+hardware.a=${hardware.b}", "+hardware.b=${hardware.a}"], "cannot resolve an interpolation"),
])
def test_exponential_references_are_refused(overrides, needle):
    assert_one_line_error(cli("estimate", *SMALL, *overrides), needle)


@pytest.mark.integration
def test_exponential_references_in_a_config_dir_file(tmp_path):
    """The same doubling written in a --config-dir file (under its size cap) is refused."""
    (tmp_path / "workload").mkdir()
    lines = [f"  k{i}: ${{workload.k{i + 1}}}${{workload.k{i + 1}}}" for i in range(60)] + ["  k60: x"]
    (tmp_path / "workload" / "x.yaml").write_text("# @package _global_\nworkload:\n" + "\n".join(lines) + "\n")
    assert_one_line_error(cli("estimate", "--config-dir", tmp_path, "workload=x"), "workload.k", "must be the whole value")
    _hardware_yaml(tmp_path, description="${name}${name}")
    assert_one_line_error(cli("hardware", "--config-dir", tmp_path), "leak.yaml", "must be the whole value")


def test_api_refuses_the_same():
    with pytest.raises(ConfigError, match="resolver interpolation"):
        wanir.estimate(SMALL + ["workload.steps=${oc.env:HOME}"])
    with pytest.raises(ConfigError, match="no option"):
        wanir.estimate(SMALL + ["hardware=/etc/passwd"])


def test_docs_state_these_limits():
    doc = (REPO / "docs" / "limits.md").read_text()
    assert f"more than {MAX_INTERPOLATIONS} references" in doc
    assert f"a plain name of at most {MAX_OPTION_CHARS}\n  characters" in doc
