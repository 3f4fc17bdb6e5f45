"""Host work that does not shrink with the shape (backends/host_stages.py: host_seconds).

Every number is derived here from the constants' files, read independently of the model
(wanir/data/host.yaml, kernels.yaml's issue.cpu_issue_us): a stage takes
max(device time, host time) + what cannot overlap, with, per invocation,

    eager:      launches · cpu_issue_us + module calls · module_call_us
    compiled:   launches · launch_us + compiled_call_us          (torch.compile: no dispatcher, no module calls)
    CUDA graph: graph_launch_us (+ compiled_call_us when compiled)
    text encoder: + tokenize_ms (one prompt per invocation)
    DiT:        + steps/invocations · scheduler_ops_per_step · cpu_issue_us;
                exposed steps/invocations · syncs_per_step · sync_us
"""
import pytest
import yaml

from wanir import hardware, kernels
from wanir.backends import roofline
from wanir.backends.host_stages import host_seconds
from wanir.builder import GraphBuilder
from wanir.passes import bytes as bytes_pass
from wanir.passes import flops

HOST = {k: v["value"] for k, v in yaml.safe_load(open(kernels.PATH.parent / "host.yaml")).items()}
ISSUE_US = yaml.safe_load(open(kernels.PATH))["issue"]["sm90"]["cpu_issue_us"]["value"]
H100 = hardware.load("h100-sxm")


def _tiny_dit(steps=4, fusion="eager"):
    """A DiT-like stage of tiny ops: 3 blocks (a repeat scope) of one 'attn' module with two
    8×8 linears. Module calls per invocation: blocks 3 + attn 3 = 6; launches 2 · 3 = 6."""
    b = GraphBuilder()
    with b.stage("diffusion_core", invocations=2 * steps):
        x = b.input("x", (1, 8, 8), "bf16")
        with b.repeat("blocks", 3):
            with b.scope("attn"):
                y = b.linear(x, 8, bias=False, name="q")
                b.linear(y, 8, bias=False, name="o")
    g = b.graph
    g.meta["workload"] = {"steps": steps, "guidance": True}
    flops.run(g)
    bytes_pass.run(g, fusion=fusion) if fusion != "eager" else bytes_pass.run(g)
    return g


def test_eager_host_time_by_hand():
    steps = 4
    g = _tiny_dit(steps)
    r = roofline.run(g, H100)
    per_step = steps / (2 * steps)                               # two DiT calls (CFG) per step
    host = (6 * ISSUE_US + 6 * HOST["module_call_us"]) * 1e-6 + \
        per_step * HOST["scheduler_ops_per_step"] * ISSUE_US * 1e-6
    exposed = per_step * HOST["syncs_per_step"] * HOST["sync_us"] * 1e-6
    assert r["issue_s"]["diffusion_core"] == pytest.approx(host)
    assert r["host_exposed_s"]["diffusion_core"] == pytest.approx(exposed)
    assert r["bound"]["diffusion_core"] == "issue"              # 8×8 GEMMs take far less than the host
    assert r["time_s"]["diffusion_core"] == pytest.approx(host + exposed)


def test_compiled_and_cuda_graphs_remove_what_they_remove():
    c = dict(HOST, cpu_issue_us=ISSUE_US)
    eager, ex = host_seconds("diffusion_core", 100, 40, 0.5, c)
    compiled, ex_c = host_seconds("diffusion_core", 60, 40, 0.5, c, fusion="compiled")
    graphs, ex_g = host_seconds("diffusion_core", 100, 40, 0.5, c, cuda_graphs=True)
    sched = 0.5 * HOST["scheduler_ops_per_step"] * ISSUE_US * 1e-6   # the scheduler stays eager
    assert eager == pytest.approx((100 * ISSUE_US + 40 * HOST["module_call_us"]) * 1e-6 + sched)
    assert compiled == pytest.approx((60 * HOST["launch_us"] + HOST["compiled_call_us"]) * 1e-6 + sched)
    assert graphs == pytest.approx(HOST["graph_launch_us"] * 1e-6 + sched)
    assert graphs < compiled < eager
    assert ex == ex_c == ex_g > 0                                # a sync per step is not removed by either


def test_text_encoder_tokenizes_one_prompt_per_invocation():
    c = dict(HOST, cpu_issue_us=ISSUE_US)
    host, exposed = host_seconds("text_encoder", 10, 5, 0.0, c)
    assert host == pytest.approx((10 * ISSUE_US + 5 * HOST["module_call_us"]) * 1e-6 + HOST["tokenize_ms"] * 1e-3)
    assert exposed == 0


def test_cuda_graphs_never_slow_a_run_and_barely_move_a_large_one():
    """runtime.cuda_graphs removes the per-op host work: never slower, and at 480p × 81 frames,
    where the DiT is bound by the device, within 1 %."""
    from wanir import estimate
    base = ["model=wan2.1-t2v-1.3b", "hardware=h100-sxm", "runtime=diffusers"]
    for wl, hi in ((["workload.height=256", "workload.width=256", "workload.frames=1"], 1.0),
                   (["workload=480p", "workload.frames=81"], 0.01)):
        eager = estimate(base + wl).time_s
        graphs = estimate(base + wl + ["runtime.cuda_graphs=true"]).time_s
        assert 0 <= 1 - graphs / eager <= hi, (wl, eager, graphs)
