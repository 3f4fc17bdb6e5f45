"""Resolve once: overrides and config files → a frozen :class:`wanir.scenario.Scenario`.

:func:`resolve` is the one reader of the composed configuration. It composes the groups
(:func:`wanir.config.compose`: value overrides, runtime defaults, value checks), reads the
components a checkpoint describes (``model.from``), resolves the workload against the
model, the hardware spec, the run options and the parallel plan, checks the plan against
the model, and records where every value came from. Everything below it — frontends,
passes, backends — takes the Scenario's typed, read-only parts.
"""
from __future__ import annotations

import functools
import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import MISSING, fields, replace
from pathlib import Path
from threading import Lock
from types import MappingProxyType
from typing import Iterable

from . import hardware as hwlib
from . import options as _options
from .backends.parallel import check_plan, resolve_plan
from .config import Composed, check_overrides, compose, compose_parsed, to_dict
from .frontends.pipeline import COMPONENTS, make_spec
from .passes.optimize_options import optimization_options
from .backends.parallel.cost import PLAN_KEYS
from .runtime import _plan_sizes, config_for_plan, memory_options, runtime_options
from .errors import ConfigError
from .scenario import Build, FrozenMap, Run, Scenario, Source, flat_items, freeze, register_plan_mover, thaw

__all__ = ["resolve", "resolve_parsed", "scenario_from_config", "component", "BUILD_DROP", "explain_lines"]

#: run-only keys of the count-relevant groups: they change time or memory fit, never counts
#: (the whole ``hardware`` and ``parallel`` groups are run-only too, except ``parallel.cfg``,
#: which decides whether one device holds both guidance branches' step caches)
BUILD_DROP = {"roofline": ("mode",), "memory": ("host",)}
#: the runtime keys that change counts: its name and DiT lowering (its precision, kernel and
#: offload defaults are already filled into precision.*, roofline.*, memory.*)
BUILD_RUNTIME_KEYS = ("name", "dit_lowering")
#: top-level groups that only the run reads
RUN_ONLY = ("hardware",)

_CACHE: "OrderedDict[tuple, Scenario]" = OrderedDict()
_CACHE_LOCK = Lock()
#: scenarios kept by :func:`resolve` (least recently used dropped first)
CACHE_SIZE = 512


def _dir_signature(config_dir) -> tuple:
    """What a user config directory holds, by file, modification time and size: a scenario
    cached for it is reused only while its files are unchanged."""
    if not config_dir:
        return ()
    root = Path(config_dir)
    out = []
    try:
        for p in sorted(root.rglob("*.yaml")):
            st = p.stat()
            out.append((str(p), st.st_mtime_ns, st.st_size))
    except OSError:
        return (object(),)   # unreadable: never a cache hit; compose reports it
    return tuple(out)


def resolve(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None) -> Scenario:
    """The frozen :class:`Scenario` of Hydra-style ``overrides`` (a list or tuple of strings)
    and an optional user config directory: every default filled once, every check run once,
    every value's source recorded. Cached (bounded LRU) on the overrides and the directory's
    files. Raises ConfigError (one line naming the key and what is allowed)."""
    ovs = tuple(check_overrides(overrides))
    cd = str(config_dir) if config_dir else None
    key = ("raw", ovs, cd, _dir_signature(cd))
    return _cached(key, lambda: compose(list(ovs), cd))


def resolve_parsed(parsed: Iterable, config_dir: str | os.PathLike | None = None) -> Scenario:
    """:func:`resolve` of overrides already parsed (:class:`wanir.config.Override` records,
    e.g. one point of a sweep)."""
    parsed = tuple(parsed)
    cd = str(config_dir) if config_dir else None
    key = ("parsed", tuple((o.key, type(o.value).__name__, freeze(o.value), o.add, o.delete, o.sweep, o.raw)
                           for o in parsed), cd, _dir_signature(cd))
    return _cached(key, lambda: compose_parsed(parsed, cd))


def _cached(key, make) -> Scenario:
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    sc = _from_composed(make())
    with _CACHE_LOCK:
        _CACHE[key] = sc
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return sc


def clear_cache() -> None:
    """Forget every cached scenario (and count, see :func:`wanir.estimate.count`)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _provenance(c: Composed) -> dict:
    """dotted key → Source for every leaf of ``c.tree``: the composition's (cached per
    composition), then what the user's values, the runtime's defaults and the options
    classes' field defaults (``c.defaults``) set."""
    prov = dict(_composed_provenance(c.origin, (c.tree.get("model") or {}).get("name", "")))
    for u in c.user:
        v = _options.select(c.tree, u, None, keep_null=True)
        keys = [k for k, _ in flat_items(v, u + ".")] if isinstance(v, dict) and v else [u]
        for k in keys:
            prov[k] = Source("user", f"{u}=...")
    rt_name = (c.tree.get("runtime") or {}).get("name", "")
    for key in c.runtime:
        prov[key] = Source("runtime", f"runtime={rt_name}" + _why(key, c.tree))
    if "defaults_applied" in (c.tree.get("runtime") or {}):
        prov["runtime.defaults_applied"] = Source("runtime", f"runtime={rt_name}")
    for key in c.defaults:
        prov[key] = Source("default", _options.default_home(key))
    return prov


@functools.lru_cache(maxsize=64)
def _composed_provenance(origin: FrozenMap, model: str) -> dict:
    """The Source of every leaf of one composition, from the file it came from."""
    prov = {}
    for key, (g, opt, by_user) in origin.items():
        if by_user:
            prov[key] = Source("user", f"{g}={opt}")
        elif g in ("text_encoder", "image_encoder", "dit", "vae") or (g == "model" and key.startswith("model.")):
            prov[key] = Source("model", f"model={model}")
        else:
            prov[key] = Source("default", f"{g}/{opt}.yaml" if g and opt else "config.yaml")
    return prov


def _why(key: str, tree) -> str:
    """What a runtime default of ``key`` followed: the plan's devices or FSDP, the model and
    hardware families."""
    devices, fsdp = _plan_sizes(tree)
    if key == "memory.offload_model":
        return f"; {devices} device{'s' if devices > 1 else ''}"
    if key == "precision.dit_weights" and fsdp > 1:
        return "; FSDP shards the DiT"
    if key == "roofline.attention_kernel":
        return (f"; model family {(tree.get('model') or {}).get('family')} on "
                f"{(tree.get('hardware') or {}).get('family')}")
    return ""


def _model_from(tree: FrozenMap, prov: dict) -> tuple[FrozenMap, FrozenMap | None]:
    """Apply ``model.from`` (components read from a checkpoint; docs/from-files.md): the new
    tree and the lines saying what was inferred (None when ``model.from`` is null)."""
    src = (tree.get("model") or {}).get("from")
    if src is None or src == "":
        return tree, None
    from .model_from import apply_model_from  # late import: checkpoint inference (model.from) only

    new, lines = apply_model_from(tree)
    old = dict(flat_items(tree))
    for key, v in flat_items(new):
        if key not in old or old[key] != v:
            prov[key] = Source("file", f"model.from={src}")
    return new, freeze(list(lines))


def _project(tree: FrozenMap) -> FrozenMap:
    """The count-relevant part of a resolved tree (see :data:`BUILD_DROP`)."""
    out = {}
    for g, v in tree.items():
        if g in RUN_ONLY:
            continue
        if g == "parallel":
            out[g] = {"cfg": v.get("cfg", 1)} if isinstance(v, dict) else v
        elif g == "runtime":
            out[g] = {k: v[k] for k in BUILD_RUNTIME_KEYS if isinstance(v, dict) and k in v}
        elif g in BUILD_DROP and isinstance(v, dict):
            out[g] = {k: x for k, x in v.items() if k not in BUILD_DROP[g]}
        else:
            out[g] = v
    return freeze(out)


def _from_composed(c: Composed) -> Scenario:
    return _scenario(c.tree, _provenance(c))


def scenario_from_config(cfg) -> Scenario:
    """The Scenario of a configuration composed elsewhere (a mapping or DictConfig as
    :func:`wanir.config.load_config` returns: defaults already filled); provenance is
    ``default`` throughout, as the composition is not known."""
    tree = cfg if isinstance(cfg, FrozenMap) else freeze(to_dict(cfg))
    return _scenario_cached(tree)


@functools.lru_cache(maxsize=64)
def _scenario_cached(tree: FrozenMap) -> Scenario:
    return _scenario(tree, {k: Source("default") for k, _ in flat_items(tree)})


def _scenario(tree: FrozenMap, prov: dict) -> Scenario:
    tree, inferred = _model_from(tree, prov)
    opts = _options.from_config(tree)
    proj = _project(tree)
    _, _, workload = _typed(proj)
    for k in ("height", "width", "frames", "steps"):
        if (tree.get("workload") or {}).get(k) is None:
            prov[f"workload.{k}"] = Source("model", f"model.default_{k}")
    hw = hwlib.from_config(tree)
    plan = _plan(opts, tree, workload)
    # under a plan the estimate's stages and total are the pipeline on one device as the
    # runtime runs it there; the plan's per-device graph is made from the configuration itself
    one = tree if plan is None else config_for_plan(tree, dict.fromkeys(PLAN_KEYS, 1))
    one_opts = opts if plan is None else _options.from_config(one)
    rt = runtime_options(one)
    mem = memory_options(one)
    applied = ((one.get("runtime") or {}).get("defaults_applied")) or ()
    build = _make_build(proj if plan is None else _project(one), rt, mem, workload)
    hw_key = hwlib._content_key(tree.get("hardware")) or hw.name
    plan_build = plan_run = None
    if plan is not None:    # the configuration as given: the plan's per-device graph is made from it
        pmem = memory_options(tree)
        plan_build = _make_build(proj, rt, pmem, workload)
        plan_run = _run(tree, hw, hw_key, opts, rt, pmem, None, opts)
    run = _run(tree, hw, hw_key, one_opts, rt, mem, plan, opts, plan_build, plan_run,
               offload_applied="memory.offload_model" in applied)
    return Scenario(tree, build, run, MappingProxyType(prov), inferred)


def _run(tree: FrozenMap, hw, hw_key: str, opts, rt, mem, plan, configured, plan_build=None, plan_run=None, *,
         offload_applied: bool | None = None) -> Run:
    """The :class:`Run` of the resolved ``tree`` with its typed parts; ``offload_applied``
    (None: read from ``tree``): whether the runtime filled ``memory.offload_model``. The
    attention kernel's provenance (the runtime's default, or the user's) and the model family
    it follows are read here, once."""
    applied = ((tree.get("runtime") or {}).get("defaults_applied")) or ()
    if offload_applied is None:
        offload_applied = "memory.offload_model" in applied
    kern = (tree.get("roofline") or {}).get("attention_kernel")
    return Run(hw, hw_key, opts, rt, mem, plan, offload_applied, tree, configured, plan_build, plan_run,
               kernel_from_runtime=kern is None or "roofline.attention_kernel" in applied,
               model_family=(tree.get("model") or {}).get("family"))


def _plan(opts, tree, workload):
    """The resolved multi-device Plan (None on one device), checked against the model."""
    p = resolve_plan(opts.parallel.as_mapping())
    if p.degree > 1 or p.fsdp > 1:
        check_plan(p, guidance=workload.guidance)
        return p
    return None


def explain_lines(sc: Scenario) -> list[str]:
    """``wanir config --explain``: one line per resolved value, ``key = value  [source]``."""
    rows = sc.explain()
    width = min(48, max((len(k) for k, _, _ in rows), default=0))
    out = []
    for key, v, src in rows:
        shown = json.dumps(thaw(v), default=str) if not isinstance(v, str) else v
        if len(shown) > 70:
            shown = shown[:67] + "..."
        out.append(f"{key:<{width}} = {shown:<24} [{src}]")
    if sc.inferred:
        out.append("model.from:")
        out.extend(f"  {line}" for line in sc.inferred)
    return out


# ----------------------------------------------------------------------------- typed parts
def component(group: str, data):
    """The typed, checked description of config group ``group`` (text_encoder,
    image_encoder, dit, vae or model; see :data:`COMPONENTS`) from ``data``, its mapping as
    composed (None: None). Keys the description has no field for are left to their own
    readers (``vae.tile``, ``dit.time_embedding_per_token``, ``model.from``); a null value
    takes the field's default. Raises ConfigError naming the key: a family the frontend does
    not build, a missing key, a value out of range."""
    if data is None:
        return None
    cls = COMPONENTS.get(group)
    if cls is None:
        raise ConfigError(f"{group}: not a component group (allowed: {', '.join(COMPONENTS)})")
    if not isinstance(data, dict):
        if not isinstance(data, Mapping):
            raise ConfigError(f"{group} must be a mapping of its keys, got {type(data).__name__}")
        data = to_dict(data)      # a DictConfig a caller still holds
    family = getattr(cls, "FAMILY", None)
    if family is not None:
        fam = data.get("family")
        fam = family if fam is None else fam
        if fam != family:
            raise ConfigError(f"{group}.family={fam!r}: frontends.{cls.MODULE} builds family '{family}' only")
    names, required = _fields_of(cls)
    missing = [k for k in required if data.get(k) is None]
    if missing:
        raise ConfigError(f"{group}: missing key(s) {', '.join(group + '.' + k for k in missing)} "
                          f"(a {cls.WHAT} config needs {', '.join(required)})")
    kw = {}
    for k in names:
        v = data.get(k)
        if v is not None:
            kw[k] = freeze(v)
    return cls(**kw)


@functools.lru_cache(maxsize=None)
def _fields_of(cls) -> tuple:
    """(field names, required keys) of a component class: the keys its config may hold, and
    those it must (``cls.REQUIRED``, else the fields without a default)."""
    fs = [f for f in fields(cls) if f.init]
    required = getattr(cls, "REQUIRED", None) or tuple(
        f.name for f in fs if f.default is MISSING and f.default_factory is MISSING)
    return tuple(f.name for f in fs), tuple(required)


def _spec(tree, opts) -> tuple:
    """(PipelineSpec, Workload) of a resolved tree (``opts``: its typed option groups): every
    component typed and checked, the workload resolved against them, the Wan2.2 options, the
    optimizations and the tiling."""
    workload_group = tree.get("workload")
    rt_name = (tree.get("runtime") or {}).get("name")
    model = component("model", tree.get("model"))
    te = component("text_encoder", tree.get("text_encoder"))
    ie = component("image_encoder", tree.get("image_encoder"))
    dit = component("dit", tree.get("dit"))
    vae = component("vae", tree.get("vae"))
    for g, c in (("model", model), ("text_encoder", te), ("dit", dit), ("vae", vae)):
        if c is None:
            raise ConfigError(f"{g}: missing (the model's {g} group; choose a model with model=NAME)")
    cache = tree.get("cache") or {}
    att = tree.get("attention") or {}
    optim = optimization_options(
        cache_method=cache.get("method"), cache_skip=cache.get("skip"), cache_threshold=cache.get("threshold"),
        cache_per_branch=cache.get("per_branch"), cache_retention=cache.get("retention"),
        attention_density=att.get("density"), attention_pattern=att.get("pattern"),
        attention_dense_steps=att.get("dense_steps"), distill=(tree.get("distill") or {}).get("name"),
        model=model.name, precision=opts.precision)
    w = workload_group or {}
    v = tree.get("vae") or {}
    return make_spec(model, te, ie, dit, vae, optim, mode=w.get("mode"), height=w.get("height"),
                     width=w.get("width"), frames=w.get("frames"), steps=w.get("steps"),
                     guidance=w.get("guidance"), batch=w.get("batch"), text_len=w.get("text_len"),
                     vae_encode=w.get("vae_encode"), shift=w.get("shift"), boundary=w.get("boundary"),
                     guidance_scale_high=w.get("guidance_scale_high"),
                     guidance_scale_low=w.get("guidance_scale_low"),
                     time_embedding=(tree.get("dit") or {}).get("time_embedding_per_token"),
                     runtime_name=rt_name, tile=v.get("tile"), tile_stride=v.get("tile_stride"))


@functools.lru_cache(maxsize=256)
def _typed(bcfg: FrozenMap) -> tuple:
    """(RunOptions, PipelineSpec, Workload) of a count-relevant projection (:func:`_project`),
    cached on it: scenarios that differ only in what changes time share their typed parts."""
    bopts = _options.from_config(bcfg)
    spec, wl = _spec(bcfg, bopts)
    return bopts, spec, wl


def _make_build(bcfg: FrozenMap, rt, mem, workload=None) -> Build:
    """The Build of a count-relevant projection ``bcfg`` (typed, :func:`_typed`) under runtime
    ``rt`` and residency ``mem``; ``workload`` None: the one resolved from ``bcfg``."""
    bopts, spec, wl = _typed(bcfg)
    return Build(bcfg, wl if workload is None else workload, bopts, replace(mem, host="auto"), rt.dit_lowering,
                 rt.name, spec)


@functools.lru_cache(maxsize=64)
def _moved(tree: FrozenMap, dims: tuple) -> tuple:
    """(Build, Run) of the resolved ``tree`` moved to the plan of ``dims`` (:data:`PLAN_KEYS`
    order) by :func:`wanir.runtime.config_for_plan`: the keys the runtime filled are filled
    again for that plan, those the user set stay. Cached on (tree, dims)."""
    cp = config_for_plan(tree, dict(zip(PLAN_KEYS, dims)))
    opts = _options.from_config(cp)
    rt = runtime_options(cp)
    mem = memory_options(cp)
    hw = hwlib.from_config(cp)
    hw_key = hwlib._content_key(cp.get("hardware")) or hw.name
    run = _run(cp, hw, hw_key, opts, rt, mem, None, opts)
    return _make_build(_project(cp), rt, mem), run


def _for_plan(run: Run, dims: tuple):
    """:meth:`wanir.scenario.Run.for_plan`: the (Build, Run) of ``run``'s resolved
    configuration moved to the plan ``dims``; None when that configuration has no runtime
    group (nothing to re-apply)."""
    tree = run.config
    if not isinstance(tree, FrozenMap) or tree.get("runtime") is None:
        return None
    return _moved(tree, tuple(dims))


register_plan_mover(_for_plan)
