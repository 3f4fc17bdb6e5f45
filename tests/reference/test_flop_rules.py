"""Every tensor-FLOP rule against torch.utils.flop_counter.FlopCounterMode on the matching
torch op or module, counted on the meta device at several shapes."""
import pytest

torch = pytest.importorskip("torch")
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from wanir import GraphBuilder  # noqa: E402
from wanir.passes import flops  # noqa: E402

pytestmark = pytest.mark.reference
F = torch.nn.functional


def torch_flops(fn, *args):
    with torch.device("meta"), sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as fc:
            fn(*args)
    return fc.get_total_flops()


def wanir_flops(build):
    b = GraphBuilder()
    build(b)
    return flops.run(b.graph)["model"]["tensor_flops"]


def meta(*shape):
    return torch.empty(*shape, device="meta")


@pytest.mark.parametrize("shape,out,bias", [((7, 64), 32, True), ((2, 75, 96), 40, False), ((3, 5, 9, 16), 8, True)])
def test_linear(shape, out, bias):
    with torch.device("meta"):
        m = torch.nn.Linear(shape[-1], out, bias=bias)
    ref = torch_flops(m, meta(*shape))
    assert wanir_flops(lambda b: b.linear(b.input("x", shape), out, bias=bias)) == ref


@pytest.mark.parametrize("a,b_", [((5, 7), (7, 3)), ((4, 6, 10), (4, 10, 2)), ((2, 3, 8, 16), (1, 3, 16, 5)),
                                  ((2, 1, 8, 16), (4, 16, 5))])
def test_matmul(a, b_):
    ref = torch_flops(torch.matmul, meta(*a), meta(*b_))
    assert wanir_flops(lambda b: b.matmul(b.input("a", a), b.input("b", b_))) == ref


def test_bmm():
    ref = torch_flops(torch.bmm, meta(6, 9, 11), meta(6, 11, 13))
    assert wanir_flops(lambda b: b.bmm(b.input("a", (6, 9, 11)), b.input("b", (6, 11, 13)))) == ref


@pytest.mark.parametrize("cin,cout,k,s,p,d,g,bias", [
    (3, 8, 3, 1, 1, 1, 1, True), (16, 32, 3, 2, 1, 1, 1, False), (16, 16, 3, 1, 1, 1, 16, True),
    (12, 24, (1, 5), (1, 2), (0, 2), 1, 3, True), (8, 4, 3, 1, 2, 2, 2, False)])
def test_conv2d(cin, cout, k, s, p, d, g, bias):
    with torch.device("meta"):
        m = torch.nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    ref = torch_flops(m, meta(2, cin, 20, 18))
    got = wanir_flops(lambda b: b.conv2d(b.input("x", (2, cin, 20, 18)), cout, k, stride=s, padding=p, dilation=d,
                                         groups=g, bias=bias))
    assert got == ref


@pytest.mark.parametrize("cin,cout,k,s,p,g,bias", [(4, 8, 3, 1, 1, 1, True), (12, 6, 5, 2, 0, 3, False)])
def test_conv1d(cin, cout, k, s, p, g, bias):
    with torch.device("meta"):
        m = torch.nn.Conv1d(cin, cout, k, stride=s, padding=p, groups=g, bias=bias)
    ref = torch_flops(m, meta(2, cin, 40))
    assert wanir_flops(lambda b: b.conv1d(b.input("x", (2, cin, 40)), cout, k, stride=s, padding=p, groups=g,
                                          bias=bias)) == ref


@pytest.mark.parametrize("cin,cout,k,s,p,g", [
    (16, 5120, (1, 2, 2), (1, 2, 2), 0, 1), (96, 96, 3, 1, 1, 1), (384, 384, (3, 1, 1), (2, 1, 1), 0, 1),
    (8, 16, 3, 2, (0, 1, 1), 4)])
def test_conv3d(cin, cout, k, s, p, g):
    shape = (1, cin, 5, 12, 14)
    with torch.device("meta"):
        m = torch.nn.Conv3d(cin, cout, k, stride=s, padding=p, groups=g)
    ref = torch_flops(m, meta(*shape))
    assert wanir_flops(lambda b: b.conv3d(b.input("x", shape), cout, k, stride=s, padding=p, groups=g)) == ref


@pytest.mark.parametrize("q,k,v", [((1, 40, 300, 128), (1, 40, 512, 128), (1, 40, 512, 128)),
                                   ((2, 12, 77, 64), (2, 12, 77, 64), (2, 12, 77, 32)),
                                   ((3, 1, 64, 384), (3, 1, 64, 384), (3, 1, 64, 384))])
def test_sdpa_with_different_key_length(q, k, v):
    ref = torch_flops(F.scaled_dot_product_attention, meta(*q), meta(*k), meta(*v))
    assert wanir_flops(lambda b: b.sdpa(b.input("q", q), b.input("k", k), b.input("v", v))) == ref


def test_sdpa_with_additive_bias():
    q = (1, 8, 50, 64)
    ref = torch_flops(lambda a, b_, c, m: F.scaled_dot_product_attention(a, b_, c, attn_mask=m),
                      meta(*q), meta(*q), meta(*q), meta(1, 8, 50, 50))
    assert wanir_flops(lambda b: b.sdpa(b.input("q", q), b.input("k", q), b.input("v", q),
                                        mask=b.input("m", (1, 8, 50, 50)))) == ref


def test_non_tensor_ops_count_zero_tensor_flops():
    """Norms, activations, softmax and elementwise ops are not counted by FlopCounterMode."""
    x = (2, 16, 64)

    def run(t):
        y = F.layer_norm(t, (64,))
        y = F.gelu(y, approximate="tanh") + y * y
        y = torch.softmax(y, -1)
        return F.group_norm(y.reshape(2, 16, 8, 8), 4).sum()

    assert torch_flops(run, meta(*x)) == 0

    def build(b):
        t = b.input("x", x)
        y = b.layernorm(t, affine=False)
        y = b.add(b.gelu_tanh(y), b.mul(y, y))
        y = b.softmax(y, -1)
        b.reduce("sum", b.groupnorm(b.reshape(y, (2, 16, 8, 8)), 4, affine=False), dims=(0, 1, 2, 3))

    assert wanir_flops(build) == 0
