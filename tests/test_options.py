"""Typed run options (wanir/options.py), the hardware cache, immutable estimates."""
import dataclasses

import pytest

import wanir
from wanir import options
from wanir.config import load_config

SMALL = ("model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=5", "workload.steps=2")


def test_defaults_are_the_shipped_group_files():
    cfg = load_config([])
    parsed = options.from_config(cfg)
    d = options.RunOptions()
    assert parsed.roofline == d.roofline and parsed.runtime.allow_tf32 == d.runtime.allow_tf32
    # the link tables default to backends/comm.py's (empty here); the shipped file spells them out
    from wanir.backends.comm import DEFAULT_INTRA, DEFAULT_NETWORK
    assert dict(parsed.parallel.intra_node) == DEFAULT_INTRA and dict(parsed.parallel.network) == DEFAULT_NETWORK
    assert dataclasses.replace(parsed.parallel, intra_node=(), network=()) == d.parallel
    # keys the memory and precision files leave null are filled by the runtime when the config is
    # composed (wanir/runtime.py); memory options are parsed once, checked: null offload reads as off
    assert d.memory.offload == "none" and parsed.memory.t5_cpu == d.memory.t5_cpu
    # one default runtime for "no configuration": the options' and the runtime module's agree;
    # a composed configuration names its runtime (config.yaml)
    from wanir.config import default_choices
    from wanir.runtime import runtime_options
    assert d.runtime.name == runtime_options(None).name == options.DEFAULT_RUNTIME
    assert parsed.runtime.name == runtime_options(cfg).name == default_choices()["runtime"]
    assert dataclasses.asdict(parsed.precision) == {k: (tuple(v) if not isinstance(v, (str, int, float)) else v)
                                                     for k, v in cfg.precision.items()}
    assert options.of(None) == d


def test_overrides_reach_the_options():
    cfg = load_config(["roofline.fusion=fused", "memory.t5_cpu=true", "parallel=fsdp+ulysses",
                       "precision.vae=bf16", "roofline=ideal"])
    o = options.from_config(cfg)
    assert (o.roofline.fusion, o.roofline.mode, o.memory.t5_cpu, o.precision.vae) == ("fused", "ideal", True, "bf16")
    assert o.parallel.name == "fsdp+ulysses" and o.parallel.fsdp == "auto"
    hash(o)  # usable as a cache key
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.roofline.mode = "calibrated"


def test_timing_keys_derived_from_field_marks():
    marked = {f"{g}.{f.name}" for g, cls in options.GROUPS.items() for f in dataclasses.fields(cls)
              if f.metadata.get("timing")}
    whole = {g for g, cls in options.GROUPS.items() if all(f.metadata.get("timing") for f in dataclasses.fields(cls))}
    assert set(options.TIMING_KEYS) == marked | {"hardware"} | whole and "parallel" in whole
    # counts depend on these, so they must never be timing keys
    for k in ("roofline.fusion", "roofline.attention_kernel", "memory.offload_model", "memory.t5_cpu"):
        assert k not in options.TIMING_KEYS


def test_timing_keys_do_not_change_counts():
    # invariant behind TIMING_KEYS: changing only timing keys leaves every count equal
    a = wanir.estimate(list(SMALL))
    b = wanir.estimate([*SMALL, "hardware=a100-80gb", "roofline.mode=ideal", "parallel=ring"])
    for sa, sb in zip(a.stages, b.stages):
        for k in ("tensor_flops", "vector_flops", "params", "bytes", "peak_activation_bytes"):
            assert sa.total[k] == sb.total[k], (sa.name, k)
    assert a.total["time_s"] != b.total["time_s"]


def test_estimate_is_immutable_and_sweep_does_not_retime_it():
    from wanir.backends.sweep import PointComposer, parse_sweep
    from wanir.estimate import count, evaluate

    sw = parse_sweep([*SMALL, "hardware=h100-sxm,a100-80gb"])
    comp = PointComposer()
    pts = list(sw.points())
    sa, sb = comp.scenario(pts[0]), comp.scenario(pts[1])
    assert sa.build == sb.build and count(sa.build) is count(sb.build)   # one counted graph, two runs
    first = evaluate(sa)
    t0 = first.total["time_s"]
    node_times = [n.costs.get("time_s") for n in first.graph]
    second = evaluate(sb)      # same counted graph, other hardware
    assert second.hardware == "a100-80gb" and first.hardware == "h100-sxm"
    assert second.total["time_s"] != t0
    assert first.total["time_s"] == t0
    assert [n.costs.get("time_s") for n in first.graph] == node_times
    with pytest.raises(TypeError):
        first.total["time_s"] = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.warnings = ("x",)


def test_hardware_cache_is_by_content():
    from wanir import hardware

    a = load_config(["hardware=h100-sxm"])
    b = load_config(["hardware=h100-sxm", "hardware.memory.capacity_gib.value=40"])
    ha, hb = hardware.from_config(a), hardware.from_config(b)
    # capacity_gib is binary (the YAML says so): 80 and 40 GiB
    assert (ha.memory_bytes, hb.memory_bytes) == (80 * 2**30, 40 * 2**30)
    # equal content gives the same object, whatever config object holds it
    assert hardware.from_config(load_config(["hardware=h100-sxm"])) is ha


def test_multi_device_cost_of_a_sweep_estimate_uses_its_options():
    # a sweep point goes through the same seam as wanir.estimate
    from wanir.backends.sweep import PointComposer, parse_sweep
    from wanir.estimate import evaluate

    sw = parse_sweep([*SMALL, "hardware=a100-80gb", "parallel=ring", "parallel.degree=2"])
    pt = next(iter(sw.points()))
    est = evaluate(PointComposer().scenario(pt))
    assert est.parallel is not None
    direct = wanir.estimate([*SMALL, "hardware=a100-80gb", "parallel=ring", "parallel.degree=2"])
    c = wanir.multi_device_cost(est)
    assert c.hardware.name == "a100-80gb" and c.plan.ring == 2
    assert c.time_s == est.time_s == direct.time_s
