"""Kernel reference tests: the kernel model against published kernel benchmarks.

Every row of the kernel reference (sections 1 and 3: attention kernels, GEMMs, memory
copies) that names a GPU in wanir's library is here, with its source. The model's achieved
TFLOP/s (or GB/s) for that kernel and shape must lie within ±12 % of the published figure.
These rows are the calibration of wanir/data/kernels.yaml: one set of constants per
(kernel, architecture family) serves every SKU of the family (FA2 on sm90 fits both H100 and
H20); no constant is per SKU. Rows that cannot be fitted honestly are xfail with the reason.

Attention FLOPs are 4·B·H·Lq·Lk·d (QKᵀ and PV), the convention every source uses.
"""
import pytest

from wanir import hardware, kernels
from wanir.backends.roofline import Model
from wanir.errors import ConfigError

TOL = 0.12


def _att(hw, kernel, b, h, s, d=128):
    m = Model(hardware.load(hw), kernel)
    t, _ = m.attention(b * h, s, s, d, d, "fp16")
    return 4 * b * h * s * s * d / t / 1e12


FA3_FIG5 = "FA3 paper (arXiv 2407.08608) Fig. 5 / flash-attention assets/flash3_fp16_fwd.png (16k tokens, 16 heads)"
SAGE = "thu-ml/SageAttention assets/{}_hd128.png (b4, h32, 32k)"

# (gpu, kernel, batch, heads, seq, head dim, published TFLOP/s, source)
ATTENTION = [
    *[("h100-sxm", "flash3", 16384 // s, 16, s, 128, v, FA3_FIG5)
      for s, v in zip((512, 1024, 2048, 4096, 8192, 16384), (467, 565, 625, 638, 646, 648))],
    *[("h100-sxm", "flash2", 16384 // s, 16, s, 128, v, FA3_FIG5)
      for s, v in zip((512, 1024, 2048, 4096, 8192, 16384), (309, 350, 362, 368, 370, 370))],
    ("h100-sxm", "cudnn", 32, 16, 512, 128, 497, FA3_FIG5),
    ("h100-sxm", "cudnn", 1, 16, 16384, 128, 595, FA3_FIG5),
    ("h100-sxm", "flash3", 4, 16, 8448, 128, 661, "FA3 paper Table 2 (full FA3, b4 s8448 h16)"),
    ("h100-sxm", "flash2", 4, 16, 8192, 128, 335, "FA2 paper (arXiv 2307.08691) sec. 4.1: up to 335 on H100"),
    ("h100-sxm", "sdpa", 4, 32, 32768, 128, 339, SAGE.format("H100") + ": torch SDPA flash"),
    ("h100-sxm", "sage2", 4, 32, 32768, 128, 882, SAGE.format("H100") + ": SageAttention2 8-bit"),
    ("h20", "sdpa", 4, 32, 32768, 128, 90, SAGE.format("H20") + ": torch SDPA flash"),
    ("h20", "flash3", 4, 32, 32768, 128, 141, SAGE.format("H20") + ": FA3 FP16"),
    ("h20", "sage2", 4, 32, 32768, 128, 279, SAGE.format("H20") + ": Sage2 8-bit"),
    ("h20", "flash2", 2, 16, 2048, 128, 83.7, "Dao-AILab/flash-attention issue #1310 (b2, s2048)"),
    ("h20", "cudnn", 2, 16, 2048, 128, 129.1, "Dao-AILab/flash-attention issue #1310 (b2, s2048)"),
    ("h20", "flash3", 2, 16, 2048, 128, 126.2, "Dao-AILab/flash-attention issue #1310 (b2, s2048)"),
    ("a100-80gb", "flash2", 4, 16, 16384, 128, 230, "FA2 paper sec. 4: up to 230 on A100 80GB"),
    ("a100-80gb", "sdpa", 4, 32, 32768, 128, 204, SAGE.format("A100") + ": torch SDPA flash"),
    ("a100-80gb", "sage2", 4, 32, 32768, 128, 278, SAGE.format("A100") + ": Sage 8+16"),
    ("a800", "sdpa", 4, 32, 32768, 128, 188, SAGE.format("A800") + ": torch SDPA flash"),
    ("a800", "sage2", 4, 32, 32768, 128, 266, SAGE.format("A800") + ": Sage 8+16"),
    ("l20", "flash2", 4, 32, 32768, 128, 111, SAGE.format("L20") + ": FA2"),
    ("l20", "sage2", 4, 32, 32768, 128, 217, SAGE.format("L20") + ": Sage 8+8"),
    ("rtx-4090", "flash2", 4, 32, 32768, 128, 164, SAGE.format("4090") + ": FA2"),
    ("rtx-4090", "sage2", 4, 32, 32768, 128, 419, SAGE.format("4090") + ": Sage 8+8"),
    ("rtx-4090", "sage2-fp16acc", 4, 32, 32768, 128, 493, "SageAttention:assets/4090_sageattn2++.png: Sage2++ (8+8)"),
    ("h100-sxm", "flash3-fp8", 1, 16, 16384, 128, 1200, "FA3 paper (arXiv 2407.08608) abstract: FP8 close to 1.2 PFLOP/s"),
    ("b200", "flash4", 4, 32, 32768, 128, 1605, "together.ai FlashAttention-4 blog: up to 1605 BF16 on B200"),
    ("b200", "flash2", 4, 32, 32768, 128, 356, "pytorch tritonbench issue #171: FA2 ~352-361 on B200"),
    ("gb200", "cudnn", 4, 16, 16384, 64, 1157, "Dao-AILab/flash-attention PR #2605 (2.5 PF Blackwell, hd64, s16384)"),
    ("gb200", "flash4", 4, 16, 16384, 64, 1225, "Dao-AILab/flash-attention PR #2605 (2.5 PF Blackwell, hd64, s16384)"),
]

# rows that cannot be fitted without per-SKU constants or a second runtime's stack
ATTENTION_XFAIL = [
    ("h100-sxm", "flash3", 4, 32, 32768, 128, 470, SAGE.format("H100") + ": FA3 FP16",
     "sources disagree: the FA3 paper measures 648 on H100 with the flash-attn package; the SageAttention chart's "
     "stack is unstated. wanir's flash3 follows the FA3 paper (kernels.yaml note)"),
    ("h800", "sdpa", 4, 32, 32768, 128, 234, SAGE.format("H800") + ": torch SDPA flash",
     "the H800 has the H100's SMs and clocks, yet the same chart shows 69 % of the H100's 339: a per-SKU (clock or "
     "power) effect one sm90 constant cannot fit without tuning to this SKU"),
    ("h800", "flash3", 4, 32, 32768, 128, 318, SAGE.format("H800") + ": FA3 FP16",
     "as the H800 SDPA row, and the H100 row of the same chart (470) already disagrees with the FA3 paper"),
    ("h800", "sage2", 4, 32, 32768, 128, 609, SAGE.format("H800") + ": Sage2 8-bit",
     "as the H800 SDPA row: 69 % of the H100 on identical compute"),
    ("h100-sxm", "cudnn", 1, 16, 16384, 256, 581, FA3_FIG5 + ", head dim 256",
     "head dim 256 changes the kernels' tiling and register use; the model has one set of constants per "
     "(kernel, family), fitted at head dim 128 (FA3 at head dim 256 happens to fit)"),
    ("h100-sxm", "flash2", 1, 16, 16384, 256, 326, FA3_FIG5 + ", head dim 256", "head dim 256: as the cuDNN row"),
]
ATTENTION.append(("h100-sxm", "flash3", 1, 16, 16384, 256, 756, FA3_FIG5 + ", head dim 256"))


@pytest.mark.parametrize("gpu,kernel,b,h,s,d,ref,source", ATTENTION,
                         ids=[f"{r[0]}-{r[1]}-b{r[2]}h{r[3]}s{r[4]}d{r[5]}" for r in ATTENTION])
def test_attention_kernel_matches_published(gpu, kernel, b, h, s, d, ref, source):
    got = _att(gpu, kernel, b, h, s, d)
    assert abs(got / ref - 1) <= TOL, f"{gpu} {kernel} s{s}: model {got:.1f} TFLOP/s vs {ref} ({source})"


@pytest.mark.parametrize("gpu,kernel,b,h,s,d,ref,source", [
    pytest.param(*r[:8], marks=pytest.mark.xfail(strict=True, reason=r[8]), id=f"{r[0]}-{r[1]}-s{r[4]}d{r[5]}")
    for r in ATTENTION_XFAIL])
def test_attention_rows_not_fitted(gpu, kernel, b, h, s, d, ref, source):
    """Published rows the model does not fit (strict: a row that starts fitting must move up)."""
    assert abs(_att(gpu, kernel, b, h, s, d) / ref - 1) <= TOL


def _gemm(gpu, n, dtype="fp16"):
    t, _ = Model(hardware.load(gpu)).gemm(1, n, n, n, dtype)
    return 2 * n ** 3 / t / 1e12


GEMM = [
    ("rtx-4090", 2048, "fp16", 167.1, "mli/transformers-benchmarks issue #4: torch FP16 matmul n=2048"),
    ("rtx-4090", 8192, "fp16", 158.6, "mli/transformers-benchmarks issue #4: torch FP16 matmul n=8192"),
    ("rtx-4090", 8192, "fp16", 165.0, "tinygrad PRs #13623/#11390: FP16 GEMM with FP32 accumulate '165+'"),
    ("rtx-4090", 2048, "fp32", 82.8, "mli/transformers-benchmarks issue #4: torch FP32 matmul n=2048"),
    ("rtx-4090", 8192, "fp32", 86.7, "mli/transformers-benchmarks issue #4: torch FP32 matmul n=8192"),
    ("h100-sxm", 8192, "bf16", 795, "hardware reference: BF16 GEMM ~795 at the best shapes on H100 SXM"),
    ("a100-80gb", 8192, "bf16", 271, "hardware reference: BF16 GEMM 271 on A100 SXM"),
    ("b200", 8192, "bf16", 1745, "hardware reference: BF16 GEMM 1745 on B200"),
    ("mi300x", 8192, "bf16", 668, "hardware reference: BF16 GEMM 668 on MI300X"),
]


@pytest.mark.parametrize("gpu,n,dtype,ref,source", GEMM, ids=[f"{r[0]}-{r[2]}-n{r[1]}" for r in GEMM])
def test_gemm_matches_published(gpu, n, dtype, ref, source):
    got = _gemm(gpu, n, dtype)
    assert abs(got / ref - 1) <= TOL, f"{gpu} n={n} {dtype}: model {got:.1f} vs {ref} ({source})"


@pytest.mark.xfail(reason="sources disagree: one user's CUDA 12.4 build measured 518.6 (pranjalssh/fast.cu #13), "
                          "below the ~700-800 the same report calls usual; sm90's GEMM ceiling follows ~795",
                   strict=True)
def test_h100_hgemm_one_user_row():
    assert abs(_gemm("h100-sxm", 8192) / 518.6 - 1) <= TOL


def _copy(gpu, nbytes):
    """GB/s of a device copy of ``nbytes`` (it reads and writes them)."""
    t, _ = Model(hardware.load(gpu)).memory_time(2 * nbytes)
    return 2 * nbytes / t / 1e9


def test_h100_memcpy():
    """Device-local memcpy 2569-2578 GB/s on H100 SXM (NVIDIA/nccl issue #1264)."""
    assert abs(_copy("h100-sxm", 2**30) / 2573 - 1) <= TOL


def test_mi300x_memcpy():
    """HBM memcpy above ~10 MB: ~2000-3000 GB/s on MI300X (ScalarLM blog)."""
    assert 2000 * (1 - TOL) <= _copy("mi300x", 2**30) <= 3000 * (1 + TOL)


def test_4090_l2_trap():
    """A 16 MB 'bandwidth' test on RTX 4090 measured 3868 GB/s, above the 1008 GB/s of GDDR6X,
    because the buffer fits the 72 MB L2 (mli/transformers-benchmarks issue #4). The model's
    L2 path reproduces the trap: above DRAM peak; a 1 GiB copy stays below it."""
    assert _copy("rtx-4090", 16 * 2**20) > 1008
    assert _copy("rtx-4090", 2**30) < 1008


@pytest.mark.skip(reason="A800 80GB PCIe (1727 GB/s copy, 215.3 TFLOP/s n=8192 matmul) is not in the library; its "
                         "89 % copy fraction is the sm80 memory constant (kernels.yaml note)")
def test_a800_pcie_rows():
    pass


# ---------------------------------------------------------------------------------- invariants


def test_one_constant_pair_per_family():
    """No per-SKU constants: every shipped GPU's kernel constants come from its family block
    (hardware YAMLs carry no ``kernels:`` overrides)."""
    for hw in hardware.list_hardware():
        assert hw.kernels == {}, hw.name


def test_softmax_sensitivity_explains_the_gap():
    """kernels.md sec. 2: with ρ = exp time / MMA time per SM, FA2 on sm90 reaches a larger
    fraction of peak on H20 (ρ = 0.125) than on H100 (ρ = 0.5) with the same constants."""
    h100 = _att("h100-sxm", "flash2", 4, 32, 32768) / 989.4
    h20 = _att("h20", "flash2", 4, 32, 32768) / 148
    assert h20 > 1.4 * h100


def test_missing_kernel_family_pair_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"no flash3 kernel for sm80.*available: .*flash2"):
        Model(hardware.load("a100-80gb"), "flash3")
    with pytest.raises(ConfigError, match="no flash4 kernel for sm90"):
        Model(hardware.load("h100-sxm"), "flash4")
    with pytest.raises(ConfigError, match="allowed"):
        Model(hardware.load("h100-sxm"), "flash9")


def test_sdpa_resolves_per_family():
    """PyTorch's SDPA is its own kernel (torch-sdpa), not the flash-attn package's flash2."""
    assert kernels.resolve_attention("sdpa", hardware.load("h100-sxm")) == "torch-sdpa"
    assert kernels.resolve_attention("sdpa", hardware.load("host-cpu")) == "torch-sdpa"


# torch SDPA (flash backend) vs the flash-attn package's FA2 on the same GPU, each against its own published row:
# the SageAttention charts measured PyTorch's SDPA; the FA3 paper's Fig. 5 and the FA2 paper measured flash-attn.
SDPA_VS_FA2 = [
    ("h100-sxm", 339, SAGE.format("H100") + ": torch SDPA flash", 1, 370, FA3_FIG5 + " FA2 at 16k"),
    ("a100-80gb", 204, SAGE.format("A100") + ": torch SDPA flash", 4, 230, "FA2 paper sec. 4: up to 230 on A100 80GB"),
]


@pytest.mark.parametrize("gpu,sdpa_ref,sdpa_src,fa2_batch,fa2_ref,fa2_src", SDPA_VS_FA2, ids=[r[0] for r in SDPA_VS_FA2])
def test_sdpa_and_flash2_follow_their_own_rows(gpu, sdpa_ref, sdpa_src, fa2_batch, fa2_ref, fa2_src):
    """Each kernel matches the rows that measured it, and PyTorch's SDPA is timed slower than the
    flash-attn package's FA2 on the same GPU, as the published figures are (339 < 370 on H100,
    204 < 230 on A100)."""
    sdpa = _att(gpu, "sdpa", 4, 32, 32768)
    fa2 = _att(gpu, "flash2", fa2_batch, 16, 16384)
    assert abs(sdpa / sdpa_ref - 1) <= TOL, f"{gpu} sdpa {sdpa:.0f} vs {sdpa_ref} ({sdpa_src})"
    assert abs(fa2 / fa2_ref - 1) <= TOL, f"{gpu} flash2 {fa2:.0f} vs {fa2_ref} ({fa2_src})"
    assert sdpa < _att(gpu, "flash2", 4, 32, 32768), "torch SDPA must be slower than flash-attn's FA2 at one shape"


def test_wave_quantization_with_few_heads():
    """After Ulysses head sharding few heads remain: 5 heads × ⌈1024/128⌉ = 40 CTAs on 132
    SMs use 40/132 of the GPU; the model's time equals that of 132 CTAs (one wave)."""
    m = Model(hardware.load("h100-sxm"), "flash3")
    t40, _ = m.attention(5, 1024, 1024, 128, 128, "bf16")
    t132, _ = m.attention(132 // 8 + 1, 1024, 1024, 128, 128, "bf16")   # 17 × 8 = 136 CTAs: two waves
    t_one_wave, _ = m.attention(16, 1024, 1024, 128, 128, "bf16")         # 128 CTAs: one wave
    assert t40 == pytest.approx(t_one_wave)
    assert t132 == pytest.approx(2 * t_one_wave)


def test_tile_quantization():
    """A GEMM with M one row past a tile costs a whole extra tile row."""
    m = Model(hardware.load("h100-sxm"))
    t128, _ = m.gemm(1, 128, 256 * 132, 4096, "bf16")
    t129, _ = m.gemm(1, 129, 256 * 132, 4096, "bf16")
    assert t129 == pytest.approx(2 * t128)


def test_conv_tf32_switch():
    """fp32 convolutions run as TF32 when allowed (8x the FP32 lanes on H100), else on the FP32 pipe."""
    from wanir.builder import GraphBuilder
    from wanir.passes import flops
    b = GraphBuilder()
    with b.stage("s"):
        b.conv3d(b.input("x", (1, 96, 8, 64, 64), "fp32"), 96, 3, padding=1, name="c")
    flops.run(b.graph)
    n = b.graph.find("c")[0]
    hw = hardware.load("h100-sxm")
    t_tf32, _ = Model(hw, allow_tf32_conv=True).node_model(n, 0)
    t_fp32, _ = Model(hw, allow_tf32_conv=False).node_model(n, 0)
    assert t_fp32 > 3 * t_tf32


@pytest.mark.skip(reason="RTX 4090 Sage2++ 8+8 / 4+8 (493 / 640 TFLOP/s, SageAttention assets/4090_sageattn2++.png): "
                         "FP16-accumulate PV and INT4 QK are kernels outside this table (sage2 here is INT8 QK + FP8 PV "
                         "with FP32 accumulate); RTX 5090 rows (FA2 214, Sage2++ 643, Sage3 1027): no RTX 5090 in the "
                         "library")
def test_rows_for_kernels_or_gpus_not_in_the_library():
    pass


# PyTorch docs, "CUDA semantics", TensorFloat-32 section: an fp32 matmul of 10240³ on an A100 takes 0.11 s
# with TF32 off and 0.016 s with it on (2·10240³ FLOP / t ≈ 19.5 and ≈ 134 TFLOP/s).
TF32_DOC = "PyTorch docs, CUDA semantics, TensorFloat-32: A100 fp32 matmul 10240^3, 0.11 s (TF32 off) / 0.016 s (on)"


@pytest.mark.parametrize("matmul_tf32,seconds", [(False, 0.11), (True, 0.016)])
def test_fp32_matmul_on_fp32_pipe_or_as_tf32(matmul_tf32, seconds):
    """runtime.matmul_tf32 (torch.backends.cuda.matmul.allow_tf32): an fp32 linear runs on the FP32
    lanes when False (PyTorch's default) and at the TF32 tensor rate when True (TF32_DOC)."""
    from wanir.builder import GraphBuilder
    from wanir.passes import flops
    n = 10240
    b = GraphBuilder()
    with b.stage("s"):
        b.linear(b.input("x", (n, n), "fp32"), n, bias=False, name="mm")
    flops.run(b.graph)
    node = b.graph.find("mm")[0]
    t, _ = Model(hardware.load("a100-80gb"), matmul_tf32=matmul_tf32).node_model(node, 0)
    assert abs(t / seconds - 1) <= TOL, f"A100 fp32 matmul {n}^3 tf32={matmul_tf32}: model {t:.4f} s vs {seconds} ({TF32_DOC})"
