"""The Build carries typed, frozen components, and nothing below the resolver reads a config.

``wanir.resolve`` is the one reader of the composed configuration: it builds each component's
checked dataclass (DitArch, VaeArch, Umt5Arch, ClipArch, ModelFacts), the Wan2.2 options, the
optimizations and the tiling into ``Build.spec``; frontends and passes lower those, and the
backends and the API time and report with the typed ``Run``. The AST guard below keeps it so:
no function under frontends/ or passes/ reads a parameter named like a configuration (``cfg``,
``config``, ``*_cfg``, ``*_config``) by attribute, ``.get``, subscript or by handing it to
another function, and no module there imports the config machinery (FrozenMap, select,
OmegaConf, the config and runtime readers). The same holds for backends/ and every module of
wanir/ that is not one of the resolver's (:data:`RESOLVER_MODULES`, each with its reason),
except that those may call the seam's entry (:data:`SEAM_NAMES`: overrides or a composed
configuration handed to the resolver, frozen records made or thawed for output).
"""
import ast
import dataclasses
import re
from pathlib import Path

import pytest

from wanir.errors import ConfigError
from wanir.frontends import clip, umt5, wan_dit, wan_vae
from wanir.frontends.components import ModelFacts
from wanir.frontends.pipeline import PipelineSpec
from wanir.resolve import component, resolve

ROOT = Path(__file__).resolve().parents[1]
#: parameter names that hold a configuration mapping. A checkpoint's own ``config.json``
#: (``cfg_json``, ``config_json``: a file the checkpoint readers parse and check) is input
#: to the resolver's ``model.from``, not the resolved configuration.
CONFIG_NAME = re.compile(r"^(cfg|config|conf)$|_(cfg|config)$")
#: names whose import means reading configurations
CONFIG_MACHINERY = {"FrozenMap", "freeze", "thaw", "select", "OmegaConf", "DictConfig", "ListConfig",
                    "load_config", "compose", "to_dict", "runtime_options", "memory_options", "from_config",
                    "config_for_plan", "scenario_from_config", "resolve"}
CONFIG_MODULES = ("omegaconf", "wanir.config", "wanir.resolve", "wanir.runtime")

#: the resolver's modules: the only ones that read the composed configuration (and why)
RESOLVER_MODULES = {
    "wanir/config.py": "composes the config groups and the user's overrides (Hydra, OmegaConf)",
    "wanir/resolve.py": "the resolver: the composed tree into the frozen Scenario, once",
    "wanir/runtime.py": "the runtime profiles and the defaults the resolver fills in from them",
    "wanir/hardware.py": "reads a configuration's hardware group (and the hardware YAML files) into a Hardware",
    "wanir/options.py": "parses the option groups into the frozen RunOptions the resolver hands on",
    "wanir/interpolation.py": "checks the ${...} interpolations of config files as they are composed",
    "wanir/model_from.py": "model.from: what a checkpoint implies, applied to the tree by the resolver",
    "wanir/limits.py": "checks every value of the composed tree against its bounds, for the resolver",
    "wanir/scenario.py": "defines the frozen configuration view (FrozenMap) the resolver makes",
    "wanir/dictconfig.py": "OmegaConf for the composition: ${...} interpolations and a DictConfig a caller holds",
    "wanir/hydra_compose.py": "Hydra's override grammar and compose API, for the composition of wanir/config.py",
}
#: what the modules above the resolver may import from it and call with a configuration: the
#: seam's entry (overrides, or a configuration composed elsewhere, handed to the resolver;
#: ``wanir config`` prints its explanation) and the freezing of records (results, output)
SEAM_NAMES = {"resolve", "resolve_parsed", "scenario_from_config", "explain_lines", "freeze", "thaw"}
#: OmegaConf and Hydra, and wanir's modules that wrap them for the composition
OMEGACONF_HYDRA = ("omegaconf", "hydra", "wanir.dictconfig", "wanir.hydra_compose")
#: names of wanir.config that list the config groups' options (menus, --help), reading no configuration
CONFIG_LISTINGS = {"CONFIG_DIR", "GROUPS", "list_options"}
#: the runtime's readers of a configuration (its typed helpers, which take a Run, are allowed above)
RUNTIME_READERS = {"runtime_options", "memory_options", "config_for_plan", "attention_kernel_for",
                   "memory_options_for_plan", "runtime_defaults", "_plan_sizes"}
#: reads above the resolver that parse input, not the configuration: ``file: what`` → reason
INPUT_PARSING = {
    "backends/parallel/plan.py: wanir.dictconfig": "a `parallel` mapping a caller hands plan_from or "
                                                   "multi_device_cost (maybe a DictConfig) made plain: an argument",
    "backends/sizing.py: wanir.dictconfig": "a hardware YAML file's price with ${...} interpolations, resolved as "
                                            "the hardware file itself is (the file, not the resolved configuration)",
    "backends/sweep.py: wanir.hydra_compose": "a sweep's own value syntax (a,b,c and range(...)) parsed from "
                                              "the command line: input, not the configuration",
    "wanir/estimate.py: run.config to summarize()": "the Estimate keeps the resolver's frozen Scenario.config "
                                                    "as data for the configuration view of its reports (stored, not read)",
}


def config_reads(source: str, filename: str = "<src>", above: bool = False) -> list[str]:
    """Each place in ``source`` that reads a configuration: ``file:line: what``. ``above``: the
    rule for modules above the resolver (backends/, the API): the seam's entry
    (:data:`SEAM_NAMES`), the group listings (:data:`CONFIG_LISTINGS`) and the runtime's typed
    helpers are allowed; frontends and passes may use none of them."""
    tree = ast.parse(source, filename)
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        a = fn.args
        params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [v for v in (a.vararg, a.kwarg) if v]]
        cfg = {p for p in params if CONFIG_NAME.search(p)}
        for n in ast.walk(fn) if cfg else ():
            if isinstance(n, (ast.Attribute, ast.Subscript)) and isinstance(n.value, ast.Name) and n.value.id in cfg:
                out.append(f"{filename}:{n.lineno}: reads parameter {n.value.id} ({ast.unparse(n)})")
            elif isinstance(n, ast.Call):
                passed = [x.id for x in [*n.args, *(k.value for k in n.keywords)]
                          if isinstance(x, ast.Name) and x.id in cfg]
                fname = ast.unparse(n.func)
                if passed and fname not in ("isinstance", "type") and not (above and fname in SEAM_NAMES):
                    out.append(f"{filename}:{n.lineno}: hands parameter {passed[0]} to {fname}()")
    if above:
        out += _resolved_config_reads(tree, filename)
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            mod = n.module or ""
            if n.level and filename.startswith("wanir/"):      # a relative import inside the package
                mod = "wanir." + mod if mod else "wanir"
            names = {al.name for al in n.names}
            if above:
                bad = (names - SEAM_NAMES) & (CONFIG_MACHINERY | RUNTIME_READERS)
                if mod.startswith(OMEGACONF_HYDRA) or (mod == "wanir.config" and names - CONFIG_LISTINGS):
                    bad = bad or names
            else:
                bad = names & CONFIG_MACHINERY if not mod.startswith(CONFIG_MODULES) else names
            if bad:
                out.append(f"{filename}:{n.lineno}: imports {mod}: {', '.join(sorted(bad))}")
        elif isinstance(n, ast.Import):
            for al in n.names:
                if al.name.startswith(OMEGACONF_HYDRA if above else CONFIG_MODULES):
                    out.append(f"{filename}:{n.lineno}: imports {al.name}")
        elif isinstance(n, ast.Name) and n.id in ("FrozenMap", "OmegaConf", "DictConfig"):
            out.append(f"{filename}:{n.lineno}: uses {n.id}")
    return out


def test_no_config_reads_below_the_resolver():
    """Frontends and passes take typed values only (docs/architecture.md, "where defaults live")."""
    bad = []
    for d in ("frontends", "passes"):
        for f in sorted((ROOT / d).rglob("*.py")):
            bad += config_reads(f.read_text(), str(f.relative_to(ROOT)))
    assert not bad, "config read below the resolver (take a typed field of Build.spec instead):\n" + "\n".join(bad)


def _resolved_config_reads(tree: ast.AST, filename: str) -> list[str]:
    """Reads of a resolved configuration held as data (``est.config``, ``sc.config``,
    ``run.config``): an attribute or item of it, or handing it to a function other than the
    seam's (:data:`SEAM_NAMES`: thawing it for output, resolving it). Testing it for None is
    no read."""
    parent = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    out = []
    for n in ast.walk(tree):
        if not (isinstance(n, ast.Attribute) and n.attr == "config"):
            continue
        p = parent.get(n)
        if isinstance(p, (ast.Attribute, ast.Subscript)) and p.value is n:
            out.append(f"{filename}:{n.lineno}: reads {ast.unparse(p)}")
        elif isinstance(p, ast.Call) and n in [*p.args, *(k.value for k in p.keywords)]:
            fname = ast.unparse(p.func)
            if fname.rsplit(".", 1)[-1] not in SEAM_NAMES | {"isinstance", "type"}:
                out.append(f"{filename}:{n.lineno}: hands {ast.unparse(n)} to {fname}()")
    return out


def _above_the_resolver() -> list[Path]:
    """backends/ and every module of wanir/ except the resolver's (:data:`RESOLVER_MODULES`)."""
    files = sorted((ROOT / "backends").rglob("*.py")) + sorted((ROOT / "wanir").rglob("*.py"))
    return [f for f in files if str(f.relative_to(ROOT)) not in RESOLVER_MODULES]


def test_no_config_reads_above_the_resolver():
    """Backends, drivers, reports and the API take the resolved Build and Run (or the
    Estimate that holds them), never the raw configuration."""
    bad = []
    for f in _above_the_resolver():
        rel = str(f.relative_to(ROOT))
        for r in config_reads(f.read_text(), rel, above=True):
            if not any(r.startswith(k.split(": ")[0] + ":") and k.split(": ", 1)[1] in r for k in INPUT_PARSING):
                bad.append(r)
    assert not bad, "config read above the resolver (take the Scenario's Build or Run instead):\n" + "\n".join(bad)


def test_the_resolver_modules_exist_and_the_allow_lists_are_used():
    """Every allow-listed module exists; every input-parsing exception still matches a read
    (a stale entry would hide a new one)."""
    for rel in RESOLVER_MODULES:
        assert (ROOT / rel).is_file(), rel
    for k in INPUT_PARSING:
        rel, what = k.split(": ", 1)
        assert any(what in r for r in config_reads((ROOT / rel).read_text(), rel, above=True)), k


@pytest.mark.parametrize("src", [
    "def f(cfg):\n    return cfg.get('hardware')\n",
    "from wanir.runtime import runtime_options\n",
    "from wanir.config import load_config\n",
    "from .config import to_dict\n",
    "import omegaconf\n",
    "def f(est, cfg):\n    return select(cfg, 'precision.dit_compute')\n",
    "def f(est):\n    return est.config.get('hardware')\n",
    "def f(sc):\n    return memory_options(sc.config)\n",
    "def f(est):\n    return est.config['runtime']\n",
])
def test_the_guard_above_the_resolver_finds_a_config_read(src):
    assert config_reads(src, "wanir/x.py", above=True)


def test_the_guard_above_the_resolver_allows_the_seam():
    src = ("from wanir.resolve import resolve, scenario_from_config\nfrom wanir.runtime import run_attention_kernel\n"
           "from wanir.config import GROUPS, list_options\nfrom wanir.scenario import freeze, thaw\n"
           "def f(cfg):\n    return scenario_from_config(cfg)\n"
           "def g(run, hw):\n    return run_attention_kernel(run, hw)\n"
           "def h(est):\n    return thaw(est.config) if est.config is not None else None\n")
    assert not config_reads(src, "wanir/x.py", above=True)


@pytest.mark.parametrize("src", [
    "def f(cfg):\n    return cfg.dit.dim\n",
    "def f(cfg):\n    return cfg.get('image_encoder')\n",
    "def f(vae_cfg):\n    return vae_cfg['z_dim']\n",
    "def f(config):\n    return _get(config, 'patch_size', 1)\n",
    "def f(cfg):\n    return arch_from_cfg(cfg)\n",
    "from wanir.options import select\n",
    "from wanir.scenario import FrozenMap\n",
    "import omegaconf\n",
])
def test_the_guard_finds_a_config_read(src):
    assert config_reads(src)


def test_the_guard_allows_typed_reads_and_checkpoint_json():
    assert not config_reads("def f(arch, cfg_json):\n    return arch.num_layers + cfg_json['eps']\n")


def test_build_spec_is_typed_and_frozen():
    b = resolve(["model=wan2.1-i2v-14b-480p"]).build
    spec = b.spec
    assert isinstance(spec, PipelineSpec)
    assert isinstance(spec.dit, wan_dit.DitArch) and isinstance(spec.vae, wan_vae.VaeArch)
    assert isinstance(spec.text_encoder, umt5.Umt5Arch) and isinstance(spec.image_encoder, clip.ClipArch)
    assert isinstance(spec.model, ModelFacts) and spec.model.task == "i2v" and spec.wan22.mode == "i2v"
    # the released Wan2.1 I2V-14B DiT: 40 layers of 40 heads x 128, FFN 13824, 36 input channels
    d = spec.dit
    assert (d.num_layers, d.num_attention_heads, d.attention_head_dim, d.ffn_dim, d.in_channels) == \
        (40, 40, 128, 13824, 36)
    # CLIP ViT-H/14: 32 layers of width 1280; UMT5-XXL: 24 layers of width 4096
    assert (spec.image_encoder.num_hidden_layers, spec.image_encoder.hidden_size) == (32, 1280)
    assert (spec.text_encoder.num_layers, spec.text_encoder.d_model) == (24, 4096)
    for obj, key in ((spec, "dit"), (d, "num_layers"), (spec.vae, "z_dim"), (spec.model, "name"),
                     (spec.optimizations, "cache_method"), (b, "spec")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, key, None)


def test_build_hash_ignores_the_derived_spec():
    """The spec is a function of the config and the workload, which the Build hashes: equal
    configurations give equal, equally hashed Builds (the count cache key)."""
    a = resolve(["workload.height=480", "workload.width=832"]).build
    b = resolve(["workload.width=832", "workload.height=480"]).build
    assert a == b and hash(a) == hash(b) and a.spec == b.spec
    assert resolve(["workload.height=480", "workload.width=832", "model=wan2.1-t2v-1.3b"]).build != a


def test_typed_spec_follows_overrides():
    sc = resolve(["model=wan2.2-t2v-a14b", "workload.steps=10", "cache=teacache", "cache.skip=0.25",
                  "vae.tile=256"])
    spec = sc.build.spec
    # A14B: the high-noise expert runs while t >= 0.875 * 1000 on the shift-12 schedule
    assert [e.name for e in spec.wan22.experts] == ["high_noise", "low_noise"]
    assert sum(e.steps for e in spec.wan22.experts) == 10
    assert spec.optimizations.cache_method == "teacache" and float(spec.optimizations.cache_skip) == 0.25
    assert spec.tiling == (256, 192)          # diffusers' default stride: 3/4 of the tile


def test_component_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"dit: missing key\(s\) dit.ffn_dim"):
        component("dit", {"patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 8,
                          "in_channels": 4, "out_channels": 4, "text_dim": 8, "freq_dim": 8, "num_layers": 1})
    with pytest.raises(ConfigError, match="dit.qk_norm"):
        component("dit", dict(resolve([]).config.dit, qk_norm="layer_norm"))
    with pytest.raises(ConfigError, match="dit.cross_attn_norm='maybe': allowed true, false"):
        component("dit", dict(resolve([]).config.dit, cross_attn_norm="maybe"))
    with pytest.raises(ConfigError, match=r"dit.eps=0: must be a number in \(0, 1\]"):
        component("dit", dict(resolve([]).config.dit, eps=0))
    with pytest.raises(ConfigError, match="dit must be a mapping"):
        component("dit", 5)
    with pytest.raises(ConfigError, match="text_encoder.family='t5'"):
        component("text_encoder", dict(resolve([]).config.text_encoder, family="t5"))
    with pytest.raises(ConfigError, match="image_encoder.hidden_act"):
        component("image_encoder", dict(resolve(["model=wan2.1-i2v-14b-480p"]).config.image_encoder,
                                        hidden_act="swish"))


def test_frontends_refuse_a_raw_mapping():
    """A frontend lowers its typed description, never a config mapping."""
    from wanir.builder import GraphBuilder

    raw = dict(resolve([]).config.dit)
    with pytest.raises(TypeError, match="DitArch"):
        wan_dit.build(GraphBuilder(), raw, latent_shape=(16, 1, 4, 4), batch=1, text_len=8, compute_dtype="bf16")
    with pytest.raises(TypeError, match="VaeArch"):
        wan_vae.build_decoder(GraphBuilder(), dict(resolve([]).config.vae), latent_shape=(16, 1, 4, 4))


def test_workload_defaults_come_from_the_model_facts():
    """A model that names no default size needs the workload to set it; one that does gives
    its own (Wan2.1 T2V-14B: 1280x720, 81 frames, 50 steps, the official defaults)."""
    from wanir.frontends.pipeline import resolve_workload

    dit = resolve([]).build.spec.dit
    kw = dict(guidance=True, batch=1, text_len=512, vae_encode=False)
    bare = ModelFacts(name="bare")
    with pytest.raises(ConfigError, match=r"workload.frames is null and bare names no model.default_frames"):
        resolve_workload(bare, wan_vae.VaeArch(), dit, "t2v", height=480, width=832, frames=None, steps=4, **kw)
    wl = resolve_workload(bare, wan_vae.VaeArch(), dit, "t2v", height=480, width=832, frames=17, steps=4, **kw)
    # 17 frames -> 1 + 16/4 = 5 latent frames; 480x832 / 8 -> 60x104; patches 1x2x2
    assert (wl.latent_frames, wl.latent_height, wl.latent_width, wl.tokens) == (5, 60, 104, 5 * 30 * 52)
    wl = resolve([]).build.workload
    assert (wl.width, wl.height, wl.frames, wl.steps) == (1280, 720, 81, 50)
