"""``wanir verify``: wanir's counts next to the real modules'.

For the configured pipeline (any model, any ``model.from=`` checkpoint), every stage's real
module is built on the meta device (:mod:`wanir.reference`) and run under FlopCounterMode
(MATH SDPA backend) with the inputs the real pipeline feeds it:

- ``text_encoder``: ``UMT5EncoderModel(input_ids)`` with (batch, text_len) token ids;
- ``image_encoder``: ``CLIPVisionModel(pixel_values, output_hidden_states=True)`` on one
  image per sample (with ``image_encoder.num_layers_run`` below the layer count, only the
  first that many layers);
- ``vae_encode``: ``AutoencoderKLWan.encode(video).latent_dist.mode()`` on the
  (batch, 3, frames, height, width) video (one frame: the TI2V-5B image);
- ``diffusion_core``: one ``WanTransformer3DModel`` call: latents (batch, in_channels, T, h, w),
  the timestep ((batch,), or (batch, tokens) where the pipeline embeds it per token, as the
  TI2V-5B pipelines and the official Wan2.2 code do), the text embeddings (batch, text_len,
  text_dim) and, for Wan2.1 image-to-video, the image embeddings (batch, image tokens,
  image_dim). A two-expert stage (Wan2.2 A14B) is compared expert by expert
  (``diffusion_core/high_noise``, ``diffusion_core/low_noise``): one call of each expert
  against one call of the real module of their shared architecture;
- ``vae_decode``: ``AutoencoderKLWan.decode(latents)``.

Per stage (one invocation), wanir's tensor FLOPs and parameters are compared with the real
module's; then per module path down to ``depth`` levels (numbered copies of a repeated
module, ``blocks.0`` ... ``blocks.39``, are one row ``blocks``): the real module's FLOPs
(FlopCounterMode's per-module counts, a module including its children) and parameters,
next to the FLOPs and parameters of the nodes under the same path in wanir's graph.

Every input is given the shape of the matching input of wanir's graph, so both sides see
the same tensors; the real side then runs its own code.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from wanir import reference
from wanir.errors import ConfigError
from wanir.estimate import count
from wanir.resolve import resolve, scenario_from_config
from wanir.scenario import Scenario

#: the stages that run a model, each compared with its real module (others are listed as skipped)
STAGES = ("text_encoder", "image_encoder", "vae_encode", "diffusion_core", "vae_decode")
#: the most module levels a table shows
MAX_DEPTH = 8


@dataclass(frozen=True)
class Row:
    """One line of the comparison: a stage (``path`` empty) or a module path within it."""

    stage: str
    path: str
    wanir_flops: int
    real_flops: int
    wanir_params: int
    real_params: int

    @property
    def ok(self) -> bool:
        return self.wanir_flops == self.real_flops and self.wanir_params == self.real_params

    def to_dict(self) -> dict:
        return {"stage": self.stage, "path": self.path, "wanir_tensor_flops": self.wanir_flops,
                "real_tensor_flops": self.real_flops, "tensor_flops_diff": self.wanir_flops - self.real_flops,
                "wanir_params": self.wanir_params, "real_params": self.real_params,
                "params_diff": self.wanir_params - self.real_params, "match": self.ok}


@dataclass(frozen=True)
class Verification:
    """The rows of one ``wanir verify`` run."""

    model: str
    workload: dict
    rows: tuple
    skipped: tuple = ()        # stages that run no model (nothing to compare)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def to_dict(self) -> dict:
        return {"model": self.model, "workload": dict(self.workload), "match": self.ok,
                "rows": [r.to_dict() for r in self.rows], "skipped": list(self.skipped)}

    def render(self) -> str:
        """A fixed-width table: per stage, then its module paths indented."""
        w = self.workload
        head = (f"{self.model}: {w.get('width')}x{w.get('height')}x{w.get('frames')}, batch {w.get('batch')}; "
                f"tensor FLOPs and parameters per invocation, wanir vs the real module (FlopCounterMode, meta)")
        cols = ("stage / module", "wanir FLOPs", "real FLOPs", "diff", "wanir params", "real params", "diff", "match")
        body = []
        for r in self.rows:
            name = r.stage if not r.path else "  " * r.path.count(".") + "  " + r.path
            body.append((name, f"{r.wanir_flops:,}", f"{r.real_flops:,}", f"{r.wanir_flops - r.real_flops:+,}",
                         f"{r.wanir_params:,}", f"{r.real_params:,}", f"{r.wanir_params - r.real_params:+,}",
                         "ok" if r.ok else "MISMATCH"))
        widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
        fmt = lambda t: "  ".join(s.ljust(widths[0]) if i == 0 else s.rjust(widths[i])  # noqa: E731
                                  for i, s in enumerate(t)).rstrip()
        out = [head, "", fmt(cols), fmt(tuple("-" * n for n in widths))] + [fmt(b) for b in body]
        bad = sum(not r.ok for r in self.rows)
        if self.skipped:
            out += ["", f"not compared (no model runs in them): {', '.join(self.skipped)}"]
        out += ["", "all rows match" if not bad else f"{bad} row(s) differ"]
        return "\n".join(out) + "\n"


def verify(overrides=(), config_dir=None, stage: str | None = None, depth: int = 1) -> Verification:
    """Resolve ``overrides`` and verify the scenario (see :func:`verify_scenario`)."""
    return verify_scenario(resolve(list(overrides), config_dir), stage=stage, depth=depth)


def verify_config(cfg, stage: str | None = None, depth: int = 1) -> Verification:
    """:func:`verify_scenario` of a configuration composed elsewhere."""
    return verify_scenario(scenario_from_config(cfg), stage=stage, depth=depth)


def verify_scenario(sc: Scenario, stage: str | None = None, depth: int = 1) -> Verification:
    """Count the scenario's pipeline graph (:func:`wanir.estimate.count`) and build each
    stage's real module; return the rows of the comparison for ``stage`` (None: every stage)
    down to ``depth`` module levels (0: stages only). Raises ConfigError for a bad stage or
    depth, and :class:`wanir.reference.ReferenceUnavailable` without the reference extra or
    for a component family with no reference module."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise ConfigError(f"--depth {depth!r}: an integer in [0, {MAX_DEPTH}]")
    reference._require()
    graph = count(sc.build).graph
    spec = sc.build.spec
    stages = list(graph.stages)
    if stage is not None and stage not in stages:
        raise ConfigError(f"--stage {stage}: no such stage in this pipeline (stages: {', '.join(stages)})")
    wl = graph.meta.get("workload", {})
    experts = {s: [e["name"] for e in ex if e["steps"]] for s, ex in graph.meta.get("experts", {}).items()}
    rows, skipped = [], []
    for name in stages:
        if stage is not None and name != stage:
            continue
        if name not in STAGES:
            skipped.append(name)
            continue
        run = _runner(name, spec, graph)
        total, per, _ = reference.count(run.fn)
        real_params = reference.nparams(*run.modules.values())
        for expert in experts.get(name) or [None]:
            # a two-expert stage: each expert's scope holds one DiT of the real module's architecture
            label = name if expert is None else f"{name}/{expert}"
            nodes = _stage_nodes(graph, name, expert)
            rows.append(Row(label, "", sum(f for _, _, f in nodes), total,
                            sum({w.key: w.numel for _, n, _ in nodes for w in n.params.values()}.values()),
                            real_params))
            if depth:
                rows += _module_rows(nodes, label, per, run.modules, run.roots, depth, run.aliases)
    return Verification(str(spec.model.name), dict(wl), tuple(rows), tuple(skipped))


@dataclass
class _Run:
    fn: object                 # the call, under FlopCounterMode
    modules: dict              # path prefix -> real module whose parameters the stage holds
    roots: dict                # FlopCounterMode root (class name) -> path prefix
    aliases: tuple = ()        # module paths that are another path's module under a second name


def _input(graph, stage: str, name: str) -> tuple:
    """The shape of the first input ``name`` of ``stage`` in wanir's graph: the real module is
    fed tensors of the shapes wanir's pipeline feeds its own graph."""
    for n in graph:
        if n.stage == stage and n.kind == "input" and n.name == name:
            return tuple(int(d) for d in n.outputs[0].shape)
    raise ConfigError(f"stage {stage}: no input '{name}' in the graph")


def _runner(name: str, spec, graph) -> _Run:
    """The real module of stage ``name`` (built from the typed components of ``spec``, a
    :class:`wanir.frontends.pipeline.PipelineSpec`) and the call that runs it on the shapes
    of ``graph``."""
    import torch  # late import: torch is the optional 'reference' extra

    if name == "text_encoder":
        m = reference.build_umt5(spec.text_encoder)
        # transformers registers the token embedding twice: `shared` is `encoder.embed_tokens`
        ids = reference.meta(*_input(graph, name, "input_ids"), dtype=torch.long)
        return _Run(lambda: m(input_ids=ids), {"": m}, {type(m).__name__: ""},
                    aliases=(("shared",),))
    if name == "image_encoder":
        ie = spec.image_encoder
        m = reference.build_clip(ie)
        run = ie.num_layers_run
        mods = {"": m}
        if run is not None and run < ie.num_hidden_layers:
            m.encoder.layers = m.encoder.layers[:run]      # the official pipeline's use_31_block
            mods = {"embeddings": m.embeddings, "pre_layrnorm": m.pre_layrnorm, "encoder": m.encoder}
        px = reference.meta(*_input(graph, name, "pixel_values"))
        return _Run(lambda: m(pixel_values=px, output_hidden_states=True), mods, {type(m).__name__: ""})
    if name == "vae_encode":
        v = reference.build_vae(spec.vae)
        video = reference.meta(*_input(graph, name, "video"))     # TI2V image-to-video: one frame
        return _Run(lambda: v.encode(video).latent_dist.mode(), {"encoder": v.encoder, "quant_conv": v.quant_conv},
                    {type(v.encoder).__name__: "encoder", type(v.quant_conv).__name__: "quant_conv"})
    if name == "vae_decode":
        v = reference.build_vae(spec.vae)
        z = reference.meta(*_input(graph, name, "z"))
        return _Run(lambda: v.decode(z, return_dict=False)[0],
                    {"decoder": v.decoder, "post_quant_conv": v.post_quant_conv},
                    {type(v.decoder).__name__: "decoder", type(v.post_quant_conv).__name__: "post_quant_conv"})
    if name == "diffusion_core":
        d = spec.dit
        m = reference.build_dit(d)
        # the timestep: (batch,), or (batch, tokens) where the pipeline embeds it per token
        kw = dict(hidden_states=reference.meta(*_input(graph, name, "latents")),
                  timestep=torch.full(_input(graph, name, "timestep"), 999.0, device="meta"),
                  encoder_hidden_states=reference.meta(*_input(graph, name, "text_embeds")), return_dict=False)
        if d.image_dim is not None:
            kw["encoder_hidden_states_image"] = reference.meta(*_input(graph, name, "image_embeds"))
        return _Run(lambda: m(**kw), {"": m}, {type(m).__name__: ""})
    raise reference.ReferenceUnavailable(f"stage {name} has no reference module")


def _norm(parts) -> tuple:
    """A module path as a tuple of names, numbered copies merged (``blocks.3.attn1`` ->
    ``('blocks', 'attn1')``; wanir's ``layer.0`` -> ``('layer',)``)."""
    out = []
    for p in parts:
        out += [q for q in p.split(".") if q and not q.isdigit()]
    return tuple(out)


def _stage_nodes(graph, stage: str, expert: str | None) -> list:
    """``(merged path, node, tensor FLOPs per invocation)`` of every node of ``stage`` (of one
    call of ``expert``'s DiT when given: its scope is dropped from the path, and the loop
    over its calls divided out)."""
    out = []
    for n in graph:
        if n.stage != stage:
            continue
        scopes = [s for s in reversed(list(n.scope.ancestors())) if s.kind != "stage"]
        if expert is not None:
            if not scopes or scopes[0].name != expert:
                continue
            calls = scopes[1].repeat if len(scopes) > 1 and scopes[1].kind == "loop" else 1   # the expert's calls
            f = n.costs["tensor_flops"] * n.count // calls
            scopes = scopes[1:]
        else:
            f = n.costs["tensor_flops"] * n.count
        out.append((_norm([s.name for s in scopes if s.kind != "loop"] + [n.name]), n, f))
    return out


def _module_rows(nodes: list, stage: str, per: dict, mods: dict, roots: dict, depth: int, aliases=()) -> list:
    # the real side: FlopCounterMode's per-module FLOPs, by merged path
    real_flops: dict = {}
    for key, f in per.items():
        head, _, rest = key.partition(".")
        if key == "Global" or head not in roots:
            continue
        path = _norm([roots[head], rest])
        if 1 <= len(path) <= depth:
            real_flops[path] = real_flops.get(path, 0) + f
    real_mods: dict = {}
    for prefix, m in mods.items():
        for name, sub in m.named_modules():
            path = _norm([prefix, name])
            if 1 <= len(path) <= depth:
                real_mods.setdefault(path, []).append(sub)
    keys = sorted((set(real_flops) | set(real_mods)) - set(aliases))
    rows = []
    for k in keys:
        under = [(n, f) for p, n, f in nodes if p[:len(k)] == k]
        wf = sum(f for _, f in under)
        ws = {w.key: w.numel for n, _ in under for w in n.params.values()}
        row = Row(stage, ".".join(k), wf, real_flops.get(k, 0), sum(ws.values()),
                  reference.nparams(*real_mods.get(k, [])))
        if row.wanir_flops or row.real_flops or row.wanir_params or row.real_params:   # modules with no work: left out
            rows.append(row)
    return rows


def add_parser(sub, add_common) -> None:
    """Register ``wanir verify`` on the CLI's subparsers."""
    v = sub.add_parser("verify", help="compare wanir's tensor FLOPs and parameters with the real modules "
                                      "(built on meta, FlopCounterMode; needs the 'reference' extra)")
    add_common(v)
    v.add_argument("--stage", default=None, help="one stage only (default: every stage)")
    v.add_argument("--depth", type=int, default=1, help=f"module levels below each stage (0-{MAX_DEPTH}, default 1)")
    v.add_argument("--format", choices=("table", "json"), default="table")
    v.set_defaults(func=cmd_verify)


def cmd_verify(args) -> int:
    """``wanir verify``: print the comparison; exit status 0 when every row matches, else 1."""
    res = verify(args.overrides, args.config_dir, stage=args.stage, depth=args.depth)
    sys.stdout.write(json.dumps(res.to_dict(), indent=2) + "\n" if args.format == "json" else res.render())
    return 0 if res.ok else 1
