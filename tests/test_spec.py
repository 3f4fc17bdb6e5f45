"""YAML graph specs: the shipped examples against independent counts (PyTorch modules under
FlopCounterMode, and hand derivations), repeat/loop semantics, value scoping, a table of
malformed specs whose errors must start with the YAML path, generated malformed specs that
must raise SpecError (never another exception), and the ``wanir spec`` command."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wanir.errors import SpecError
from wanir.estimate import estimate_graph
from wanir.frontends.spec import load_spec, load_spec_text, parse_spec_text
from wanir.ops import OPS
from wanir.passes import verify

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "examples" / "specs"
EXAMPLES = sorted(p.name for p in SPECS.glob("*.yaml"))


def totals(graph):
    """(tensor FLOPs, vector FLOPs, params) of a whole graph, invocations included."""
    t = estimate_graph(graph).total
    return t["tensor_flops"], t["vector_flops"], t["params"]


def stage_totals(graph):
    return {s.name: s for s in estimate_graph(graph).stages}


def test_examples_are_shipped():
    assert {"tiny_umt5.yaml", "conv3d_net.yaml", "two_stage.yaml"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_loads_and_verifies(name):
    g = load_spec(SPECS / name)
    assert verify.run(g) == len(g) > 0
    assert g.meta["model"] == Path(name).stem
    assert totals(g)[0] > 0


# ----------------------------------------------------------------------------- hand derivations

def test_tiny_umt5_by_hand():
    # vocab 256, d 64, 4 heads x 16, ff 128, 32 buckets, 2 blocks, 16 tokens
    V, D, H, DK, FF, NB, L, T = 256, 64, 4, 16, 128, 32, 2, 16
    per_block_params = 4 * D * H * DK + NB * H + D + 2 * FF * D + D * FF + D
    params = V * D + L * per_block_params + D
    proj = 2 * T * D * (H * DK) * 4                      # q, k, v, o
    attn = 2 * H * T * T * DK + 2 * H * T * T * DK       # q k^T and p v
    ffn = 2 * T * D * FF * 2 + 2 * T * FF * D            # wi_0, wi_1, wo
    tensor, _, p = totals(load_spec(SPECS / "tiny_umt5.yaml"))
    assert p == params
    assert tensor == L * (proj + attn + ffn)


def test_two_stage_by_hand():
    g = load_spec(SPECS / "two_stage.yaml")
    s = stage_totals(g)
    # encoder: 2 blocks of LN + 32->128->32 MLP over 8 tokens, run twice
    enc = 2 * (2 * 8 * 32 * 128 * 2)
    assert s["encoder"].invocations == 2
    assert s["encoder"].total["tensor_flops"] == 2 * enc
    assert s["encoder"].per_invocation["params"] == 2 * (2 * 32 + 32 * 128 + 128 + 128 * 32 + 32)
    # denoiser: 3 blocks over 64 latent tokens (4 heads x 8) with 8 context tokens, + head 32->16
    self_attn = 4 * 2 * 64 * 32 * 32 + 2 * 2 * 4 * 64 * 64 * 8
    cross = 2 * 2 * 64 * 32 * 32 + 2 * 2 * 8 * 32 * 32 + 2 * 2 * 4 * 64 * 8 * 8
    mlp = 2 * 2 * 64 * 32 * 128
    den = 3 * (self_attn + cross + mlp) + 2 * 64 * 32 * 16
    assert s["denoiser"].total["tensor_flops"] == 10 * den
    assert totals(g)[0] == 2 * enc + 10 * den


# ----------------------------------------------------------------------------- PyTorch references

def _torch_count(module, *args):
    """(tensor FLOPs of one forward under FlopCounterMode on meta, sum of parameter numel)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    module.eval()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc, torch.no_grad():
        module(*args)
    return fc.get_total_flops(), sum(p.numel() for p in module.parameters())


@pytest.mark.reference
def test_tiny_umt5_matches_transformers_umt5():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(vocab_size=256, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", dropout_rate=0.0)
    with torch.device("meta"):
        model = UMT5EncoderModel(cfg)
    ids = torch.zeros(1, 16, dtype=torch.long, device="meta")
    ref_flops, ref_params = _torch_count(model, ids)
    tensor, _, params = totals(load_spec(SPECS / "tiny_umt5.yaml"))
    assert tensor == ref_flops
    assert params == ref_params


def _conv_net():
    import torch
    from torch import nn
    F = nn.functional

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.norm = nn.GroupNorm(8, c)
            self.conv = nn.Conv3d(c, c, 3, padding=1)

        def forward(self, x):
            return x + self.conv(F.silu(self.norm(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_in = nn.Conv3d(3, 32, 3, padding=1)
            self.res = nn.ModuleList([Res(32) for _ in range(2)])
            self.down = nn.Conv3d(32, 64, 3, stride=2)
            self.mid_norm, self.mid = nn.GroupNorm(8, 64), nn.Conv3d(64, 64, 3, padding=1)
            self.up = nn.Conv3d(64, 32, 3, padding=1)
            self.head_norm, self.head = nn.GroupNorm(8, 32), nn.Conv3d(32, 3, 3, padding=1)

        def forward(self, x):
            x = self.conv_in(x)
            for r in self.res:
                x = r(x)
            x = self.down(F.pad(x, (0, 1, 0, 1, 0, 1)))
            x = self.mid(F.silu(self.mid_norm(x)))
            x = self.up(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))
            return self.head(F.silu(self.head_norm(x)))

    with torch.device("meta"):
        net = Net()
    return net, torch.empty(1, 3, 8, 32, 32, device="meta")


@pytest.mark.reference
def test_conv3d_net_matches_torch_module():
    pytest.importorskip("torch")
    net, x = _conv_net()
    ref_flops, ref_params = _torch_count(net, x)
    tensor, _, params = totals(load_spec(SPECS / "conv3d_net.yaml"))
    assert tensor == ref_flops
    assert params == ref_params


def _two_stage():
    import torch
    from torch import nn
    F = nn.functional

    class EncLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.fc1, self.fc2 = nn.LayerNorm(32), nn.Linear(32, 128), nn.Linear(128, 32)

        def forward(self, x):
            return x + self.fc2(F.gelu(self.fc1(self.norm(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([EncLayer() for _ in range(2)])

        def forward(self, x):
            for m in self.layers:
                x = m(x)
            return x

    class Attn(nn.Module):
        def __init__(self, d=32, heads=4):
            super().__init__()
            self.h = heads
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

        def forward(self, x, ctx):
            b, n, d = x.shape
            m = ctx.shape[1]
            q = self.q(x).view(b, n, self.h, -1).transpose(1, 2)
            k = self.k(ctx).view(b, m, self.h, -1).transpose(1, 2)
            v = self.v(ctx).view(b, m, self.h, -1).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
            return self.o(a)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.sa = nn.LayerNorm(32), Attn()
            self.n2, self.ca = nn.LayerNorm(32), Attn()
            self.n3, self.fc1, self.fc2 = nn.LayerNorm(32), nn.Linear(32, 128), nn.Linear(128, 32)

        def forward(self, x, ctx):
            h = self.n1(x)
            x = x + self.sa(h, h)
            x = x + self.ca(self.n2(x), ctx)
            return x + self.fc2(F.gelu(self.fc1(self.n3(x)), approximate="tanh"))

    class Denoiser(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([Block() for _ in range(3)])
            self.norm, self.out = nn.LayerNorm(32, elementwise_affine=False), nn.Linear(32, 16)

        def forward(self, x, ctx):
            for blk in self.blocks:
                x = blk(x, ctx)
            return self.out(self.norm(x))

    with torch.device("meta"):
        enc, den = Encoder(), Denoiser()
    meta = dict(device="meta")
    return (enc, (torch.empty(1, 8, 32, **meta),)), (den, (torch.empty(1, 64, 32, **meta), torch.empty(1, 8, 32, **meta)))


@pytest.mark.reference
def test_two_stage_matches_torch_modules():
    pytest.importorskip("torch")
    (enc, enc_in), (den, den_in) = _two_stage()
    enc_flops, enc_params = _torch_count(enc, *enc_in)
    den_flops, den_params = _torch_count(den, *den_in)
    g = load_spec(SPECS / "two_stage.yaml")
    s = stage_totals(g)
    assert s["encoder"].per_invocation["tensor_flops"] == enc_flops
    assert s["denoiser"].per_invocation["tensor_flops"] == den_flops
    assert s["encoder"].per_invocation["params"] == enc_params
    assert s["denoiser"].per_invocation["params"] == den_params
    inv = parse_spec_text((SPECS / "two_stage.yaml").read_text())["stages"]
    assert totals(g)[0] == enc_flops * inv[0]["invocations"] + den_flops * inv[1]["invocations"]
    assert totals(g)[2] == enc_params + den_params


# ----------------------------------------------------------------------------- repeat / loop semantics

def _block(name, kind=None, n=None):
    b = {"name": name, "output": "x",
         "ops": [{"op": "layernorm", "name": "h", "input": "x"},
                 {"op": "linear", "name": "up", "attrs": {"out_features": 48}},
                 {"op": "silu"},
                 {"op": "linear", "name": "down", "attrs": {"out_features": 16}},
                 {"op": "add", "name": "x", "inputs": ["x", "down"]}]}
    if kind:
        b[kind] = n
    return b


def _spec(blocks):
    return {"name": "m", "inputs": {"x": {"shape": [2, 5, 16]}},
         "ops": [{"op": "linear", "name": "x", "input": "x", "attrs": {"out_features": 16, "bias": False}}],
         "blocks": blocks}


# hand derivation of one block: (tensor FLOPs, params) on (2, 5, 16)
BLOCK_TENSOR = 2 * 10 * 16 * 48 + 2 * 10 * 48 * 16
BLOCK_PARAMS = 2 * 16 + 16 * 48 + 48 + 48 * 16 + 16
STEM = (2 * 10 * 16 * 16, 16 * 16)


def test_repeat_equals_expanded_blocks():
    rep = totals(load_spec(_spec([_block("layers", "repeat", 3)])))
    exp = totals(load_spec(_spec([_block(f"layers{i}") for i in range(3)])))
    assert rep == exp
    assert rep[0] == STEM[0] + 3 * BLOCK_TENSOR
    assert rep[2] == STEM[1] + 3 * BLOCK_PARAMS


def test_loop_shares_weights():
    loop = totals(load_spec(_spec([_block("chunks", "loop", 3)])))
    rep = totals(load_spec(_spec([_block("layers", "repeat", 3)])))
    assert loop[:2] == rep[:2]                               # same work
    assert loop[2] == STEM[1] + BLOCK_PARAMS                 # weights counted once
    one = totals(load_spec(_spec([_block("one")])))
    assert loop[0] - STEM[0] == 3 * (one[0] - STEM[0])


def test_nested_repeat_of_loop_and_stage_invocations():
    outer = {"name": "outer", "repeat": 2, "output": "x", "blocks": [_block("inner", "loop", 3)]}
    t, _, p = totals(load_spec(_spec([outer])))
    assert t == STEM[0] + 6 * BLOCK_TENSOR
    assert p == STEM[1] + 2 * BLOCK_PARAMS
    staged = {"name": "m", "stages": [{"name": "s", "invocations": 7, "inputs": {"x": [2, 5, 16]},
                                       "blocks": [_block("layers", "repeat", 3)]}]}
    g = load_spec(staged)
    s = stage_totals(g)["s"]
    assert s.invocations == 7
    assert s.total["tensor_flops"] == 7 * 3 * BLOCK_TENSOR
    assert s.total["params"] == 3 * BLOCK_PARAMS              # invocations share weights


def test_top_level_inputs_reach_the_stages_that_use_them():
    spec = {"name": "m", "inputs": {"x": [2, 5, 16], "unused": [3]},
            "stages": [{"name": "a", "ops": [{"op": "gelu", "input": "x"}]},
                       {"name": "b", "invocations": 2, "ops": [{"op": "silu", "input": "x"}]}]}
    g = load_spec(spec)
    inputs = [(n.stage, n.name) for n in g if n.kind == "input"]
    assert inputs == [("a", "x"), ("b", "x")]


def test_values_scoping_implicit_input_and_multi_output():
    spec = {"name": "m", "inputs": {"x": [2, 6, 12]},
            "ops": [{"op": "chunk", "name": ["a", "b", "c"], "input": "x", "attrs": {"chunks": 3}},
                    {"op": "chunk", "name": "p", "input": "x", "attrs": {"chunks": 2, "dim": 1}},
                    {"op": "add", "name": "s", "inputs": ["a", "b"]},
                    {"op": "gelu", "name": "g", "input": "p.1"}],
            "blocks": [{"name": "blk", "output": "y", "ops": [{"op": "gelu", "name": "t", "input": "b"},
                                                               {"op": "mul", "name": "y", "inputs": ["t", "c"]}]},
                       {"name": "after", "ops": [{"op": "silu"}]}]}
    g = load_spec(spec)
    silu = [n for n in g if n.kind == "silu"][0]
    mul = [n for n in g if n.kind == "mul"][0]
    assert silu.inputs[0].producer == mul.id          # implicit input: the previous block's output
    assert silu.scope.path == "m/after"
    assert [n for n in g if n.kind == "gelu" and n.scope.path == "m"][0].inputs[0].shape == (2, 3, 12)
    with pytest.raises(SpecError, match=r"^blocks\[1\]\.ops\[0\]\.input: undefined value 't'"):
        spec["blocks"][1]["ops"][0]["input"] = "t"       # t is local to blk
        load_spec(spec)


def test_yaml_floats_and_weight_dtypes():
    g = load_spec_text("name: m\nweight_dtype: fp32\ninputs: {x: {shape: [4, 8]}}\n"
                       "ops:\n  - {op: rmsnorm, attrs: {eps: 1e-6}}\n"
                       "  - {op: linear, weight_dtype: bf16, attrs: {out_features: 8}}\n")
    norm, lin = [n for n in g if n.kind in ("rmsnorm", "linear")]
    assert norm.attrs["eps"] == 1e-6
    assert norm.params["weight"].type.dtype.name == "fp32"
    assert lin.params["weight"].type.dtype.name == "bf16"


# ----------------------------------------------------------------------------- malformed specs

def base():
    return {"name": "m", "inputs": {"x": {"shape": [2, 8, 16], "dtype": "bf16"}},
            "ops": [{"op": "rmsnorm", "name": "h1", "input": "x"},
                    {"op": "linear", "name": "h", "input": "h1", "attrs": {"out_features": 16}}],
            "blocks": [{"name": "layers", "repeat": 2, "output": "x",
                        "ops": [{"op": "linear", "name": "a", "input": "x", "attrs": {"out_features": 32}},
                                {"op": "gelu"},
                                {"op": "linear", "name": "b", "attrs": {"out_features": 16}},
                                {"op": "add", "name": "x", "inputs": ["x", "b"]}]}]}


def _set(path, value):
    def f(s):
        *head, last = path
        for k in head:
            s = s[k]
        if value is KeyError:
            del s[last]
        else:
            s[last] = value
    return f


def _multi(*fs):
    def f(s):
        for g in fs:
            g(s)
    return f


DEL = KeyError
CONV = {"op": "conv3d", "input": "v", "attrs": {"out_channels": 4, "kernel": "three"}}
CASES = [
    (lambda s: s.clear() or s.update({"x": 1}), "x: unknown key"),
    (_set(["opps"], []), "opps: unknown key; did you mean 'ops'?"),
    (_set(["name"], DEL), "name: missing"),
    (_set(["name"], 3), "name: "),
    (_set(["weight_dtype"], "bf17"), "weight_dtype: unknown dtype 'bf17'"),
    (_set(["inputs"], ["x"]), "inputs: "),
    (_set(["inputs", "x", "shape"], "2,8,16"), "inputs.x.shape: must be a non-empty list"),
    (_set(["inputs", "x", "shape"], [2, -8, 16]), "inputs.x.shape[1]: dimensions must be positive"),
    (_set(["inputs", "x", "shape"], [2, 0, 16]), "inputs.x.shape[1]: "),
    (_set(["inputs", "x", "shape"], [2, 8.5, 16]), "inputs.x.shape[1]: "),
    (_set(["inputs", "x", "shape"], DEL), "inputs.x.shape: missing"),
    (_set(["inputs", "x", "dtype"], 5), "inputs.x.dtype: "),
    (_set(["inputs", "x", "dtyp"], "bf16"), "inputs.x.dtyp: unknown key; did you mean 'dtype'?"),
    (_set(["ops"], {"op": "gelu"}), "ops: ops must be a list"),
    (_set(["ops", 0], "rmsnorm"), "ops[0]: an op must be a mapping"),
    (_set(["ops", 1, "op"], "linaer"), "ops[1].op: unknown op 'linaer'; did you mean 'linear'?"),
    (_set(["ops", 1, "op"], DEL), "ops[1].op: missing"),
    (_set(["ops", 1, "op"], ["linear"]), "ops[1].op: must be an op kind"),
    (_set(["ops", 1, "input"], "h2"), "ops[1].input: undefined value 'h2' (defined so far: x, h1)"),
    (_multi(_set(["ops", 1], {"op": "add", "inputs": ["h1", "h2"]})),
     "ops[1].inputs[1]: undefined value 'h2' (defined so far: x, h1)"),
    (_set(["ops", 1, "inputs"], ["h1"]), "ops[1].input: give either"),
    (_set(["ops", 1, "input"], 7), "ops[1].input: must be a value name"),
    (_set(["ops", 1, "attrs", "out_feature"], 4), "ops[1].attrs.out_feature: op 'linear' has no attribute "
                                                  "'out_feature'; did you mean 'out_features'?"),
    (_set(["ops", 1, "attrs", "out_features"], "16"), "ops[1].attrs.out_features: "),
    (_set(["ops", 1, "attrs", "bias"], "yes"), "ops[1].attrs.bias: "),
    (_set(["ops", 1, "attrs"], DEL), "ops[1].attrs.out_features: missing"),
    (_set(["ops", 1, "attrs"], [16]), "ops[1].attrs: must be a mapping"),
    (_set(["ops", 1, "attrs", "in_features"], 8), "ops[1]: m/h: op 'linear' rejects inputs"),
    (_set(["ops", 1, "attrs", "out_features"], -3), "ops[1]: m/h: op 'linear' rejects inputs"),
    (_set(["ops", 1, "name"], "a/b"), "ops[1].name: "),
    (_set(["ops", 0], {"op": "input", "attrs": {"shape": [1], "dtype": "bf16"}}), "ops[0].op: declare graph inputs"),
    (_multi(_set(["inputs"], DEL), _set(["ops", 0, "input"], DEL)), "ops[0].inputs: missing"),
    (_set(["ops", 1], {"op": "chunk", "name": ["p", "q"], "attrs": {"chunks": 4}}), "ops[1].name: op 'chunk' gives 4"),
    (_set(["blocks", 0, "repeat"], 0), "blocks[0].repeat: repeat must be a positive int"),
    (_set(["blocks", 0, "repeat"], "two"), "blocks[0].repeat: "),
    (_set(["blocks", 0, "loop"], 2), "blocks[0].loop: a block has either"),
    (_set(["blocks", 0, "name"], DEL), "blocks[0].name: missing"),
    (_set(["blocks", 0, "output"], "zz"), "blocks[0].output: value 'zz' is not defined inside block 'layers'"),
    (_set(["blocks", 0, "ops", 3, "inputs"], ["x", "c"]),
     "blocks[0].ops[3].inputs[1]: undefined value 'c' (defined so far: x, h1, h, a, b)"),
    (_set(["blocks", 0, "ops", 3, "inputs"], ["a", "b"]), "blocks[0].ops[3]: m/layers/x: op 'add' rejects inputs"),
    (_set(["blocks", 0, "ops", 3], {"op": "linear", "name": "x", "input": "b", "attrs": {"out_features": 8}}),
     "blocks[0].output: block 'layers' runs ×2 and carries 'x'"),
    (_set(["blocks", 0, "ops", 1], CONV), "blocks[0].ops[1].input: undefined value 'v'"),
    (_multi(_set(["inputs", "v"], {"shape": [1, 2, 4, 8, 8]}), _set(["blocks", 0, "ops", 1], CONV)),
     "blocks[0].ops[1].attrs.kernel: op 'conv3d' attribute 'kernel' must be an int or a list of ints"),
    (lambda s: s["blocks"].append({"name": "final", "ops": [{"op": "rmsnorm", "input": "a"}]}),
     "blocks[1].ops[0].input: undefined value 'a'"),
    (lambda s: s["blocks"].append(copy.deepcopy(s["blocks"][0])), "blocks[1].name: block 'layers' is defined twice"),
    (lambda s: s["blocks"].append({"name": "empty"}), "blocks[1]: block 'empty' needs 'ops' or 'blocks'"),
    (_set(["blocks", 0, "blocks"], "nope"), "blocks[0].blocks: blocks must be a list"),
    (_set(["stages"], [{"name": "s", "ops": []}]), "ops: not allowed next to 'stages'"),
    (_multi(_set(["ops"], DEL), _set(["blocks"], DEL), _set(["stages"], [{"name": "s", "invocations": -1, "ops": []}])),
     "stages[0].invocations: invocations must be a positive int"),
    (_multi(_set(["ops"], DEL), _set(["blocks"], DEL), _set(["stages"], [{"name": "s", "invocation": 2}])),
     "stages[0].invocation: unknown key; did you mean 'invocations'?"),
    (_multi(_set(["ops"], DEL), _set(["blocks"], DEL), _set(["stages"], [{"name": "s", "ops": []}] * 2)),
     "stages[1].name: stage 's' is defined twice"),
    (_multi(_set(["ops"], DEL), _set(["blocks"], DEL)), "ops: missing"),
]


@pytest.mark.parametrize("mutate,prefix", CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_malformed_spec_errors_start_with_yaml_path(mutate, prefix):
    s = base()
    mutate(s)
    with pytest.raises(SpecError) as e:
        load_spec(s)
    assert str(e.value).startswith(prefix), str(e.value)


def test_base_spec_is_valid():
    assert totals(load_spec(base()))[0] > 0


def test_top_level_not_a_mapping():
    for v in ([1, 2], None, 3, True):
        with pytest.raises(SpecError, match=r"^spec: a spec must be a mapping"):
            load_spec(v)


def test_nesting_limit_and_recursive_aliases():
    deep = inner = {"name": "b0", "ops": [{"op": "gelu", "input": "x"}]}
    for i in range(1, 40):
        inner["blocks"] = [{"name": f"b{i}", "ops": [{"op": "gelu", "input": "x"}]}]
        inner = inner["blocks"][0]
    with pytest.raises(SpecError, match=r"^blocks\[0\](\.blocks\[0\])+: blocks nest deeper than"):
        load_spec({"name": "m", "inputs": {"x": [4]}, "blocks": [deep]})
    with pytest.raises(SpecError, match="nest deeper|contains itself"):
        load_spec_text("name: m\ninputs: {x: [4]}\nblocks: &b [{name: a, ops: [{op: gelu, input: x}], blocks: *b}]\n")


def test_yaml_syntax_errors_name_the_line(tmp_path):
    with pytest.raises(SpecError, match=r"^<string>:3:\d+: YAML syntax error"):
        load_spec_text("name: m\nops:\n  - {op: gelu]\n  - {op: silu}\n")
    with pytest.raises(SpecError, match=r"^<string>:2:\d+: YAML syntax error: .*duplicate key 'name'"):
        load_spec_text("name: m\nname: n\nops: []\n")
    p = tmp_path / "bad.yaml"
    p.write_text("name: m\ninputs:\n  x: {shape: [1, 2]\n")
    with pytest.raises(SpecError, match=r"bad\.yaml:\d+:\d+: YAML syntax error"):
        load_spec(p)
    with pytest.raises(SpecError, match=r"cannot read the spec"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match=r"^spec: a spec must be a mapping"):
        load_spec_text("")


def test_structural_errors_from_files_carry_the_line(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: m\ninputs: {x: [2, 4]}\nops:\n  - {op: gelu}\n  - {op: convv3d}\n")
    with pytest.raises(SpecError, match=r"^ops\[1\]\.op: unknown op 'convv3d'; did you mean 'conv3d'.*\(line 5\)$"):
        load_spec(p)


# ----------------------------------------------------------------------------- generated malformed specs

def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True), st.text(max_size=8),
                    st.sampled_from(sorted(OPS) + ["convv3d", "x", "h", "a", "b", "bf16", "int64", "fp32"]))
VALUES = st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=4),
                                                   st.dictionaries(st.text(max_size=6) | st.sampled_from(
                                                       ["op", "name", "inputs", "attrs", "shape", "repeat"]), c,
                                                       max_size=3)),
                      max_leaves=8)
SHAPES = st.lists(st.integers(-3, 40), min_size=0, max_size=5)


def _mutate(spec, data):
    paths = list(_paths(spec))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(spec))
        path = data.draw(st.sampled_from(paths))
        how = data.draw(st.sampled_from(["delete", "replace", "add_key", "op_name", "shape"]))
        if not path:
            if how == "replace":
                return data.draw(VALUES)
            continue
        parent = spec
        for k in path[:-1]:
            parent = parent[k]
        last = path[-1]
        if how == "delete":
            del parent[last]
        elif how == "replace":
            parent[last] = data.draw(VALUES)
        elif how == "op_name":
            parent[last] = data.draw(st.sampled_from(sorted(OPS)) | st.text(max_size=10))
        elif how == "shape":
            parent[last] = data.draw(SHAPES)
        elif isinstance(parent[last], dict):
            parent[last][data.draw(st.text(max_size=8))] = data.draw(VALUES)
    return spec


def _load_or_spec_error(spec):
    try:
        g = load_spec(spec)
    except SpecError as e:
        assert str(e) and "\n" not in str(e).strip()
        return
    verify.run(g)
    estimate_graph(g)


GEN = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@GEN
@given(st.data())
def test_mutated_base_spec_raises_spec_error_or_loads(data):
    _load_or_spec_error(_mutate(base(), data))


@pytest.mark.slow
@GEN
@given(st.data(), st.sampled_from(EXAMPLES))
def test_mutated_examples_raise_spec_error_or_load(data, name):
    spec = parse_spec_text((SPECS / name).read_text(), name)
    _load_or_spec_error(_mutate(spec, data))


@pytest.mark.parametrize("path", ["\x00", "a\x00b.yaml", ""])
def test_unusable_paths_are_a_one_line_spec_error(path):
    # a generated spec once reached load_spec as the string '\x00': open() raises ValueError
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert "\n" not in str(e.value)


@GEN
@given(st.text(max_size=200) | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_garbage_yaml_loads_or_raises_a_one_line_spec_error(text):
    """Random text either is a (trivial) valid spec or gets a SpecError; never another exception."""
    try:
        load_spec_text(text)
    except SpecError as e:
        assert "\n" not in str(e)


@pytest.mark.slow
@GEN
@given(SHAPES, st.sampled_from(sorted(OPS)), st.dictionaries(st.sampled_from(
    ["kernel", "out_channels", "out_features", "dim", "dims", "shape", "chunks", "pad", "scale", "num_groups",
     "stride", "padding", "step", "start", "end", "num_embeddings", "embedding_dim", "degree", "dtype"]),
    st.integers(-3, 9) | st.lists(st.integers(-2, 6), max_size=4), max_size=4))
def test_random_op_on_random_shape(shape, kind, attrs):
    spec = {"name": "m", "inputs": {"x": {"shape": shape}}, "ops": [{"op": kind, "input": "x", "attrs": attrs}]}
    _load_or_spec_error(spec)


# ----------------------------------------------------------------------------- command line

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "wanir.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.integration
def test_cli_spec_json_for_every_example():
    for name in EXAMPLES:
        r = _cli("spec", str(SPECS / name), "--format", "json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert {"model", "hardware", "workload", "stages", "total"} <= set(doc)
        assert doc["model"] == Path(name).stem
        assert doc["total"]["tensor_flops"] == sum(s["total"]["tensor_flops"] for s in doc["stages"]) > 0


@pytest.mark.integration
def test_cli_spec_malformed_exits_2_with_one_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: m\ninputs: {x: [2, 4]}\nops:\n  - {op: linear, attrs: {out_features: 0}}\n"
                 "  - {op: gelu, input: nope}\n")
    r = _cli("spec", str(p))
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wanir: error: ops[0]: "), r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("spec", str(tmp_path / "garbage.yaml"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_docs_complete_example_loads():
    text = (ROOT / "docs" / "specs.md").read_text()
    yaml_text = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    g = load_spec_text(yaml_text, "docs/specs.md")
    verify.run(g)
    t, _, p = totals(g)
    # hand derivation over (1, 16, 64): 4 MLP layers (64->256->64), a 3x loop of 64->64
    assert t == 4 * (2 * 16 * 64 * 256 * 2) + 3 * 2 * 16 * 64 * 64
    assert p == 100 * 64 + 4 * (2 * 64 + 64 * 256 + 256 + 256 * 64) + (64 * 64 + 64) + 64
