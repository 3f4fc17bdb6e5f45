"""`wanir calibrate --device cpu` tells the truth: it names the CPU it ran on, builds the entry
from what the OS reports and the ISA implies (not from the Xeon 8480+ template), warns when its
measurements disagree, and an estimate on a CPU device has no GPU-only lines."""
import pytest

from wanir.backends.calibrate import Row, consistency_warnings, cpu_identity, cpu_spec, isa_rates
from wanir.hardware import from_mapping

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
cpu MHz\t\t: 2400.000
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512_bf16 avx512_vnni
processor\t: 1
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512_bf16 avx512_vnni
"""
SPR = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx2 fma avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8
"""
ARM = """processor\t: 0
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm aes sve sve2 bf16 i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd4f
"""


def test_identity_names_the_cpu_and_its_isa():
    e = cpu_identity(EPYC)
    assert e["model"] == "AMD EPYC 9654 96-Core Processor" and e["logical_cpus"] == 2
    assert e["isa"] == ["avx512f", "avx512_bf16", "avx512_vnni", "avx2", "fma"]
    s = cpu_identity(SPR)
    assert "8480+" in s["model"] and {"amx_bf16", "amx_int8", "amx_tile"} <= set(s["isa"])
    a = cpu_identity(ARM)
    assert a["model"] == "Arm CPU implementer 0x41 part 0xd4f" and {"asimd", "sve", "bf16"} <= set(a["isa"])


def test_an_escape_in_the_model_name_is_shown_not_sent():
    e = cpu_identity("processor : 0\nmodel name : Evil\x1b]0;pwned\x07 CPU\nflags : avx2 fma\n")
    assert "\x1b" not in e["model"] and "\\x1b" in e["model"]


@pytest.mark.parametrize("text,inst,lanes,bf16", [
    # AMD EPYC: AVX-512 (2 pipes x 16 FP32 lanes), BF16 dot products at 2 x the FP32 rate, no AMX
    (EPYC, "avx512", 32, 4 * 32),
    # Sapphire Rapids: AMX, 1024 BF16 multiply-adds = 2048 FLOP per clock per core
    (SPR, "amx", 32, 2048),
    # Arm with SVE/ASIMD: 2 x 4 lanes, bf16 dot products
    (ARM, "simd", 8, 4 * 8),
    # AVX2 without BF16: converted to FP32, 2 x 8 lanes x 2 FLOP
    ("flags : avx2 fma\n", "simd", 16, 2 * 16),
])
def test_isa_rates(text, inst, lanes, bf16):
    r = isa_rates(cpu_identity(text)["isa"])
    assert (r["instruction"], r["fp32_lanes"], r["rates"]["bf16"]) == (inst, lanes, bf16)


def test_the_entry_is_built_from_this_cpu_not_a_template():
    ident = cpu_identity(EPYC)
    spec = cpu_spec(ident, {"sms": 4, "clock_ghz": 2.4, "l2_mib": 4.0})
    hw = from_mapping(spec, origin="test")
    assert "EPYC 9654" in hw.description and "8480" not in hw.description and "Xeon" not in hw.description
    assert "amx" not in hw.micro.rates                       # no AMX rates on a CPU without AMX flags
    assert hw.micro.sms == 4
    # peaks as the ISA implies them: 4 cores x 2.4 GHz x 2 x 32 lanes FP32; BF16 at 128 FLOP/clk
    assert hw.vector_flops == pytest.approx(4 * 2.4e9 * 2 * 32)
    assert hw.tensor_flops["bf16"] == pytest.approx(4 * 2.4e9 * 128)
    assert hw.sources["microarch.sms"] == "measured"
    assert hw.sources["microarch.fp32_lanes_per_sm"] == "assumed"


def _hw():
    return from_mapping(cpu_spec(cpu_identity(EPYC), {"sms": 2, "clock_ghz": 2.0}), origin="test")


def _row(bench, backend, dt, shape, work, seconds, unit="TFLOP/s", scale=1e12):
    return Row(bench, backend, dt, shape, work, seconds, unit, work / seconds / scale)


def test_consistent_measurements_give_no_warning():
    rows = [_row("gemm", "torch.matmul", "fp32", "256x256x256", 2 * 256**3, 2 * 256**3 / 100e9),
            _row("gemm", "torch.matmul", "fp32", "512x512x512", 2 * 512**3, 2 * 512**3 / 110e9),
            _row("memory", "add-large", "fp32", "x", 3 * 2**26, 3 * 2**26 / 20e9, "GB/s", 1e9),
            _row("memory", "add-small", "fp32", "x", 3 * 2**19, 3 * 2**19 / 80e9, "GB/s", 1e9)]
    assert consistency_warnings(rows, _hw()) == []


def test_disagreeing_measurements_warn():
    hw = _hw()
    peak = 2 * 2.0e9 * 2 * 32            # 256 GFLOP/s FP32: 2 cores x 2 GHz x 2 x 32 lanes
    rows = [_row("gemm", "torch.matmul", "fp32", "256x256x256", 2 * 256**3, 2 * 256**3 / (1.5 * peak)),
            _row("gemm", "torch.matmul", "fp32", "512x512x512", 2 * 512**3, 2 * 512**3 / (0.3 * peak)),
            _row("memory", "add-large", "fp32", "x", 3 * 2**26, 3 * 2**26 / 50e9, "GB/s", 1e9),
            _row("memory", "add-small", "fp32", "x", 3 * 2**19, 3 * 2**19 / 10e9, "GB/s", 1e9)]
    w = consistency_warnings(rows, hw)
    assert len(w) == 3, w
    assert "above the 0.256 TFLOP/s" in w[0]
    assert "faster than the one that fits the cache" in w[1]
    assert "under half" in w[2] and "512x512x512" in w[2]


@pytest.mark.slow
def test_calibrate_names_the_cpu_it_ran_on(tmp_path):
    pytest.importorskip("torch")
    import yaml

    from wanir.backends import calibrate
    res = calibrate.run(tmp_path, device="cpu", quick=True, progress=False, budget_s=120, attention=["sdpa"])
    here = cpu_identity()          # read independently of the run
    data = yaml.safe_load(res["yaml"].read_text())
    assert here["model"] in data["description"] and "8480" not in data["description"] or "8480" in here["model"]
    rates = data["microarch"]["tensor_flops_per_clk_sm"]
    assert ("amx" in rates) == ("amx_bf16" in here["isa"])
    assert res["cpu"]["isa"] == here["isa"]
    assert isinstance(res["warnings"], list)


@pytest.mark.integration
def test_a_cpu_estimate_has_no_gpu_only_lines():
    from hostile import cli
    import wanir

    small = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=480", "workload.frames=5",
             "workload.steps=1", "runtime=wan-official", "memory.offload_model=true"]
    cpu = wanir.estimate(small + ["hardware=host-cpu"])
    gpu = wanir.estimate(small + ["hardware=h100-sxm"])
    assert gpu.total["reserve_bytes"] > 0 and gpu.extra["transfer_s"] > 0       # the runtime's 1 GiB, the copies
    assert cpu.total["reserve_bytes"] == 0 and cpu.extra["transfer_s"] == 0
    # every weight is resident on a CPU device: the peak holds all stages' weights
    assert cpu.total["peak_memory_bytes"] >= sum(s.per_invocation["weight_bytes"] for s in cpu.stages)
    r = cli("estimate", *small, "hardware=host-cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    text = " ".join(r.stdout.split())
    assert "CUDA context" not in text and "host<->device" not in text
