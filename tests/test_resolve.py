"""Resolve once, evaluate through one seam (docs/architecture.md): the plain composer and
override parser against Hydra's (the reference), provenance, the build/run split as a type,
and immutability of everything handed out."""
import dataclasses

import pytest
import yaml

import wanir
from wanir import config as C
from wanir import options
from wanir.backends.parallel import make_plan
from wanir.estimate import count, evaluate, time
from wanir.paths import CONFIG_DIR
from wanir.resolve import resolve
from wanir.scenario import FrozenMap, Source

SMALL = ("model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=5",
         "workload.steps=2")


def _hydra(choices: dict) -> dict:
    return C._compose_hydra(tuple(f"{k}={v}" for k, v in choices.items()), None)


@pytest.mark.slow
@pytest.mark.parametrize("group", [g for g in C.GROUPS if g not in ("text_encoder", "image_encoder", "dit", "vae")])
def test_plain_composer_equals_hydra_for_every_option(group):
    # Hydra's compose API is the reference: same values, same key order
    for option in C.list_options(group):
        mine, _ = C._compose_plain({group: option})
        ref = _hydra({group: option})
        assert mine == ref and list(mine) == list(ref), (group, option)


@pytest.mark.slow
def test_plain_composer_equals_hydra_for_nested_choices():
    for model in C.list_options("model"):
        for dit in ("wan2.1-t2v-1.3b", "wan2.2-ti2v-5b"):
            ch = {"model": model, "dit": dit, "distill": "4step", "workload": "480p", "parallel": "fsdp+usp"}
            mine, _ = C._compose_plain(ch)
            assert mine == _hydra(ch), ch


def test_a_group_no_defaults_list_names_is_refused_as_hydra_refuses_it():
    with pytest.raises(C._NeedHydra):
        C._compose_plain({"image_encoder": "clip-vit-h-14"})      # a T2V model has no image encoder
    with pytest.raises(wanir.ConfigError):
        wanir.resolve(["image_encoder=clip-vit-h-14"])


SAMPLES = ["workload.height=480", "workload.height=-3", "workload.height=0", "roofline.mode=ideal",
           "memory.offload_model=block", "memory.t5_cpu=true", "memory.t5_cpu=false", "workload.steps=null",
           "memory.reserve_gib=1.5", "model=wan2.1-t2v-1.3b", "hardware=h100-sxm", "precision.vae=fp8_e4m3",
           "runtime=wan-official", "cache.threshold=0.05", "a.b-c.d_e=x.y-z"]


@pytest.mark.parametrize("text", SAMPLES)
def test_plain_override_parser_reads_values_as_hydra_does(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    mine = C._fast_override(text)
    assert mine is not None, text
    ref = OverridesParser.create().parse_overrides([text])[0]
    assert (mine.key, mine.value, type(mine.value)) == (ref.key_or_group, ref.value(), type(ref.value()))


@pytest.mark.parametrize("text", ["a=1,2", "a='x y'", "+a=1", "~a", "a=[1,2]", "a=${b}", "a=inf", "a=NaN",
                                  "a=True", "a=1e3", "a=0480", "a= 1"])
def test_everything_else_goes_to_hydras_parser(text):
    assert C._fast_override(text) is None


def test_provenance_names_every_source():
    sc = resolve(["model=wan2.1-t2v-1.3b", "workload.height=480", "parallel=fsdp+ulysses", "parallel.degree=4"])
    p = sc.provenance
    assert p["workload.height"] == Source("user", "workload.height=...")
    assert p["parallel.name"] == Source("user", "parallel=fsdp+ulysses")          # a group the user chose
    assert p["workload.width"].kind == "model"                                     # the model's default size
    assert p["dit.num_layers"].kind == "model"                                     # a component of the model
    assert p["precision.dit_weights"].kind == "runtime"                            # filled by wan-official
    assert p["roofline.fusion"] == Source("default", "roofline/calibrated.yaml")
    # the runtime's default follows the plan: FSDP keeps bf16 weights, several devices do not offload
    assert sc.config.precision.dit_weights == "bf16" and sc.config.memory.offload_model is False
    keys = {k for k, _, _ in sc.explain()}
    assert "workload.height" in keys and all(k in p for k in keys if k != "runtime.defaults_applied")


def test_explain_command_prints_each_value_with_its_source(capsys):
    from wanir.cli import main

    assert main(["config", "--explain", "workload.height=480"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("workload.height "))
    assert "480" in line and "[user" in line
    width = next(x for x in out.splitlines() if x.startswith("workload.width "))
    assert "1280" in width and "[model" in width       # wan2.1-t2v-14b's default width
    for key in ("precision.keep_fp32 ", "precision.act_scales "):   # filled from the options class
        line = next(x for x in out.splitlines() if x.startswith(key))
        assert "[default (wanir/options.py PrecisionOptions)]" in line, line


def test_resolve_changes_nothing_in_place_and_is_frozen():
    sc = resolve(list(SMALL))
    assert resolve(list(SMALL)) is sc                      # cached on the overrides
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.build = None
    with pytest.raises(TypeError):
        sc.config["workload"] = {}
    with pytest.raises(TypeError):
        sc.config.workload["height"] = 64
    with pytest.raises(TypeError):
        sc.provenance["workload.height"] = Source("user")
    assert isinstance(sc.build.config, FrozenMap) and "hardware" not in sc.build.config
    hash(sc.build), hash(sc.run)


def test_run_only_changes_share_one_count():
    # hardware, timing mode, host and TF32 change time only: one Build, one counted graph
    base = resolve(list(SMALL))
    for extra in (["hardware=a100-80gb"], ["roofline=ideal"], ["runtime.allow_tf32=false"], ["memory.host=host-cpu"]):
        other = resolve([*SMALL, *extra])
        assert other.build == base.build and other.run != base.run, extra
        assert count(other.build) is count(base.build)
    # shape, precision and fusion change counts: another Build
    for extra in (["workload.height=320"], ["precision.vae=bf16"], ["roofline.fusion=fused"]):
        assert resolve([*SMALL, *extra]).build != base.build, extra


def test_time_of_a_shared_count_equals_a_fresh_estimate():
    a, b = resolve([*SMALL, "hardware=h100-sxm"]), resolve([*SMALL, "hardware=a100-80gb"])
    counted = count(a.build)
    tb = time(counted, b.run)
    wanir.estimate  # the public API goes through the same seam; compare with a fresh pipeline
    from wanir.estimate import clear_caches
    clear_caches()
    fresh = evaluate(resolve([*SMALL, "hardware=a100-80gb"]))
    assert tb.to_dict() == fresh.to_dict() and tb.hardware == "a100-80gb"


def test_estimate_is_immutable_all_the_way_down():
    est = wanir.estimate([*SMALL, "parallel=ring", "parallel.degree=2"])
    with pytest.raises(TypeError):
        est.graph.meta["hardware"] = "b200"                  # est.hardware reads it
    with pytest.raises(TypeError):
        est.graph.meta["workload"]["height"] = 1
    with pytest.raises(TypeError):
        next(iter(est.graph)).costs["time_s"] = 0.0
    conv = next(n for n in est.graph if n.kind == "conv3d")
    with pytest.raises(TypeError):
        conv.attrs["kernel"] = (1, 1, 1)          # builder-made nodes of one signature share these
    with pytest.raises(TypeError):
        conv.params["weight"] = None
    with pytest.raises(TypeError):
        est.graph.name = "x"
    with pytest.raises(TypeError):
        est.extra["stages"]["diffusion_core"]["bound"] = "memory"
    with pytest.raises(TypeError):
        est.parallel["total"]["time_s"] = 0.0
    with pytest.raises(TypeError):
        est.stages[0].per_invocation["time_s"] = 0.0
    with pytest.raises(TypeError):
        est.config.hardware["name"] = "b200"
    assert est.hardware == "h100-sxm"
    # a copy for changing is a plain, mutable one
    g = est.graph.timing_copy()
    g.meta["hardware"] = "b200"
    assert est.hardware == "h100-sxm"


def test_hardware_and_kernel_tables_are_read_only():
    from wanir import kernels

    with pytest.raises(TypeError):
        kernels.table()["attention"]["flash2"] = {}
    hw = resolve(list(SMALL)).run.hardware
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.memory_bytes = 1
    with pytest.raises(TypeError):
        hw.tensor_flops["bf16"] = 1.0


def test_one_default_for_each_option():
    from wanir.runtime import runtime_options

    assert options.RunOptions().runtime.name == runtime_options(None).name == options.DEFAULT_RUNTIME
    assert options.RooflineOptions().attention_kernel == options.DEFAULT_ATTENTION_KERNEL
    assert runtime_options(None).attention_kernel == options.DEFAULT_ATTENTION_KERNEL
    from wanir import runtime
    assert runtime.MemoryOptions is options.MemoryOptions          # one memory-options class


def _field_default(cls, name):
    """The dataclass field default of ``cls.name``, read through dataclasses.fields."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def test_null_is_default_keys_have_their_one_home_in_the_options_class():
    """precision.keep_fp32 and precision.act_scales: no config file states the value (null),
    the composed configuration holds the options class's field default, and its provenance
    names the class, not a YAML file."""
    assert {"precision.keep_fp32", "precision.act_scales"} <= set(options.NULL_IS_DEFAULT)
    for key in options.NULL_IS_DEFAULT:
        group, name = key.split(".")
        files = sorted((CONFIG_DIR / group).glob("*.yaml"))
        assert files, group
        for f in files:
            data = yaml.safe_load(f.read_text()) or {}
            assert data.get(name) is None, f"{f.name} states {key}; null means the options class's default"
    for ovs in ([], ["precision=fp32-checkpoint"], ["precision.act_scales=null", "precision.keep_fp32=null"]):
        sc = resolve([*SMALL, *ovs])
        cls = options.GROUPS["precision"]
        keep, scales = _field_default(cls, "keep_fp32"), _field_default(cls, "act_scales")
        assert sc.config.precision.keep_fp32 == tuple(keep) and sc.config.precision.act_scales == scales, ovs
        built = sc.build.options.precision                   # the Build sees the field defaults too
        assert (built.keep_fp32, built.act_scales) == (tuple(keep), scales), ovs
        for key in ("precision.keep_fp32", "precision.act_scales"):
            src = sc.provenance[key]
            assert src.kind == "default" and cls.__name__ in src.detail and "wanir/options.py" in src.detail, (ovs, src)


def test_a_users_precision_keys_are_kept_with_user_provenance():
    sc = resolve([*SMALL, "precision.keep_fp32=[blocks]", "precision.act_scales=per-tensor"])
    assert sc.config.precision.keep_fp32 == ("blocks",) and sc.config.precision.act_scales == "per-tensor"
    assert sc.provenance["precision.keep_fp32"] == Source("user", "precision.keep_fp32=...")
    assert sc.provenance["precision.act_scales"] == Source("user", "precision.act_scales=...")
    assert sc.build.options.precision.keep_fp32 == ("blocks",)


def test_options_class_defaults_survive_a_move_to_another_plan():
    """Run.for_plan re-applies the runtime's defaults for the plan (config_for_plan); the
    options classes' defaults are not plan dependent and stay filled, a user's value stays."""
    cls = options.GROUPS["precision"]
    keep, scales = _field_default(cls, "keep_fp32"), _field_default(cls, "act_scales")
    build, run = resolve([*SMALL, "precision.dit_compute=fp8"]).run.for_plan(make_plan("fsdp", 4))
    assert run.config.precision.keep_fp32 == tuple(keep) and run.config.precision.act_scales == scales
    assert build.options.precision.keep_fp32 == tuple(keep) and build.options.precision.act_scales == scales
    build, run = resolve([*SMALL, "precision.dit_compute=fp8", "precision.act_scales=per-tensor"]).run.for_plan(
        make_plan("fsdp", 4))
    assert run.config.precision.act_scales == build.options.precision.act_scales == "per-tensor"
    assert run.config.precision.keep_fp32 == tuple(keep)
    # the estimate under a plan (its one-device configuration is moved by config_for_plan) alike
    sc = resolve([*SMALL, "parallel=fsdp+ulysses", "parallel.degree=2", "precision.dit_compute=fp8"])
    assert sc.build.options.precision.keep_fp32 == tuple(keep) and sc.build.options.precision.act_scales == scales


def test_count_restores_the_collector_and_leaves_a_callers_freeze_alone():
    """count() pauses the cyclic collector and gives it back as it found it; a caller's own
    gc.freeze stays in place (its frozen objects are not moved back)."""
    import gc

    from wanir.estimate import clear_caches

    was = gc.isenabled()
    try:
        for enabled in (True, False):
            clear_caches()
            (gc.enable if enabled else gc.disable)()
            count(resolve(["model=wan2.1-t2v-1.3b", "workload.height=336"]).build)
            assert gc.isenabled() is enabled
        gc.enable()
        clear_caches()
        gc.freeze()
        count(resolve(["model=wan2.1-t2v-1.3b", "workload.height=352"]).build)
        # unfreezing (as count does when nothing is frozen) would have emptied it
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()
