"""Configuration: the config groups under ``wanir/configs`` composed as Hydra composes them —
by wanir itself from the YAML files for the built-in groups, by hydra-core's compose API
(:mod:`wanir.hydra_compose`, no ``@hydra.main``, no working-directory change, no output
folders) for a user's config directory or a Hydra feature the plain composer does not read.

Overrides are written as Hydra writes them: ``model=wan2.1-t2v-1.3b`` selects an option of
a group, ``workload.height=480`` sets one value. A user's own config directory
(``config_dir``) is searched before the built-in one, so it can add options to any group
(``hardware/my-gpu.yaml``) or replace built-in ones.

Composition of group choices is cached; value overrides are applied to a plain tree and
checked here, so a mistyped key names the closest valid key and a bad value names the key
and what is allowed. Hydra and OmegaConf are imported only for what needs them (overrides
the plain parser does not read, sweeps, ``--config-dir``, ``${...}`` interpolations).
"""
from __future__ import annotations

import difflib
import functools
import os
import re
import threading
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

from . import dictconfig
from .errors import ConfigError
from .hardware import compose_hook, plugin_names
from .interpolation import MAX_OPTION_CHARS, plain_option
from .kernels import attention_kernels
from .limits import LIMITS
from .limits import check_config as check_limits
from .options import option_defaults, select
from .runtime import runtime_defaults
from .safeio import check_config_dir, check_number_runs, load_yaml, read_text_file, short
from .scenario import FrozenMap, freeze

from .paths import CONFIG_DIR  # noqa: E402  (re-exported)

# The groups a user selects with `group=option`.
GROUPS = ("model", "text_encoder", "image_encoder", "dit", "vae", "workload", "precision", "memory",
          "roofline", "hardware", "parallel", "runtime", "cache", "attention", "distill")

DTYPE_CHOICES = ("fp32", "tf32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "int8", "int4")


def _int(lo=1, hi=None):
    def check(key, v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{key} must be an integer{_range(lo, hi)}, got {_short(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(f"{key} must be an integer{_range(lo, hi)}, got {_short(v)}")
    return check


def _short(v):
    return short(v)


def _range(lo, hi):
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    return ""


def _bool(key, v):
    if not isinstance(v, bool):
        raise ConfigError(f"{key} must be true or false, got {_short(v)}")


def _choice(*choices):
    def check(key, v):
        if v not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}; got {_short(v)}")
    return check


def _attention_kernel(key, v):
    """An attention kernel of wanir/data/kernels.yaml, or sdpa (null: the runtime's default).
    Whether it exists on the chosen hardware's family is checked when timing."""
    if v is not None:
        _choice(*attention_kernels())(key, v)


def _int_or_auto(lo=1):
    ints = _int(lo)

    def check(key, v):
        if v != "auto":
            try:
                ints(key, v)
            except ConfigError:
                raise ConfigError(f"{key} must be an integer >= {lo} or auto, got {_short(v)}") from None
    return check


def _optional(check):
    def f(key, v):
        if v is not None:
            check(key, v)
    return f


# Value checks for the keys the core owns; groups owned by a backend are checked there.
SCHEMA: dict[str, Any] = {
    "workload.height": _optional(_int(16)),
    "workload.width": _optional(_int(16)),
    "workload.frames": _optional(_int(1)),
    "workload.steps": _optional(_int(1)),
    "workload.guidance": _bool,
    "workload.batch": _int(1),
    "workload.text_len": _int(1),
    "workload.vae_encode": _bool,
    "model.task": _optional(_choice("t2v", "i2v", "ti2v")),   # what frontends/pipeline.py builds
    "precision.text_encoder": _choice(*DTYPE_CHOICES),
    "precision.image_encoder": _choice(*DTYPE_CHOICES),
    "precision.dit_weights": _choice(*DTYPE_CHOICES, "fp8"),
    "precision.dit_compute": _choice(*DTYPE_CHOICES, "fp8"),
    "precision.vae": _choice(*DTYPE_CHOICES),
    "memory.offload_model": _choice(True, False, "block"),
    "memory.t5_cpu": _bool,
    "memory.expandable_segments": _bool,
    "roofline.mode": _choice("calibrated", "ideal"),
    "roofline.fusion": _choice("eager", "fused", "compiled"),
    "roofline.attention_kernel": _attention_kernel,     # null: the runtime's default; (kernel, family) checked when timing
    "parallel.degree": _int_or_auto(),
    "parallel.ulysses": _int_or_auto(),
    "parallel.ring": _int_or_auto(),
    "parallel.cfg": _int_or_auto(),
    "parallel.dp": _int_or_auto(),
    "parallel.fsdp": _int_or_auto(),
    "parallel.overlap": _bool,
    "parallel.gpus_per_node": _int(1),
}


def _flat_keys(cfg, prefix="") -> list[str]:
    out = []
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        out.append(key)
        if hasattr(v, "items"):
            out.extend(_flat_keys(v, key + "."))
    return out


#: the option names found per (config dir, its group folders' modification times): a folder's
#: listing changes only with its modification time (a file added, removed or renamed)
_OPTIONS_SEEN: dict = {}
_OPTIONS_SEEN_MAX = 64


def _group_dirs_signature(root: Path) -> tuple:
    """Each group folder under ``root``: its file type and mode, and its modification time
    in ns; None when it is missing or unreadable."""
    out = []
    for g in GROUPS:
        try:
            st = (root / g).stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_mode, st.st_mtime_ns))
    return tuple(out)


def _available_options(config_dir: str | None) -> dict[str, list[str]]:
    """The option names of every group (built-in and ``config_dir``'s), sorted: listed again
    only when a group folder changed (:func:`_group_dirs_signature`)."""
    roots = [CONFIG_DIR] + ([Path(config_dir)] if config_dir else [])
    key = tuple((str(root), _group_dirs_signature(root)) for root in roots)
    hit = _OPTIONS_SEEN.get(key)
    if hit is None:
        opts: dict[str, set[str]] = {g: set() for g in GROUPS}
        for root in roots:
            for g in GROUPS:
                d = root / g
                if d.is_dir():
                    opts[g].update(p.stem for p in d.glob("*.yaml"))
        hit = {g: tuple(sorted(v)) for g, v in opts.items()}
        if len(_OPTIONS_SEEN) >= _OPTIONS_SEEN_MAX:
            _OPTIONS_SEEN.clear()
        _OPTIONS_SEEN[key] = hit
    return {g: list(v) for g, v in hit.items()}


def list_options(group: str, config_dir: str | None = None) -> list[str]:
    """Names of the options of config group ``group`` (built-in and the user's)."""
    if group not in GROUPS:
        raise ConfigError(f"unknown config group '{group}'; groups: {', '.join(GROUPS)}")
    return _available_options(config_dir)[group]


class Override(NamedTuple):
    """One parsed override: ``key`` (dotted key or group), ``value`` (a Python value as Hydra's
    grammar reads it), ``add`` (``+key=``), ``delete`` (``~key``) and ``sweep`` (a comma list
    or range)."""

    raw: str
    key: str
    value: Any
    add: bool = False
    delete: bool = False
    sweep: bool = False


_KEY_RE = re.compile(r"[A-Za-z_][\w-]*(?:\.[A-Za-z0-9_][\w-]*)*\Z")
_INT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_FLOAT_RE = re.compile(r"-?[0-9]+\.[0-9]+\Z")
_WORD_RE = re.compile(r"[A-Za-z_][\w.-]*\Z")
_WORDS = {"true": True, "false": False, "null": None}
_SPECIAL = ("true", "false", "null", "inf", "nan")


def _fast_override(o: str) -> Override | None:
    """``o`` parsed without Hydra when it is a plain ``key=value`` whose value is an integer,
    a decimal number, true/false/null or a plain word (what Hydra's grammar reads the same
    way); None for anything else (quotes, lists, interpolations, +/~, sweeps), which
    Hydra's parser reads."""
    key, eq, text = o.partition("=")
    if not eq or not _KEY_RE.match(key):
        return None
    if text in _WORDS:
        return Override(o, key, _WORDS[text])
    if _INT_RE.match(text):
        return Override(o, key, int(text))
    if _FLOAT_RE.match(text):
        return Override(o, key, float(text))
    if _WORD_RE.match(text) and text.lower() not in _SPECIAL:
        return Override(o, key, text)
    return None


def parse_overrides(overrides: Iterable[str]) -> list[Override]:
    """Parse Hydra-style override strings (Hydra's grammar; the plain ``key=value`` forms
    without loading Hydra). Returns :class:`Override` records. Errors name the override."""
    out = []
    for o in overrides:
        fast = _fast_override(o)
        if fast is not None:
            out.append(fast)
            continue
        for ov in _hydra().parse_overrides([o]):
            sweep = ov.is_sweep_override()
            out.append(Override(o, ov.key_or_group, None if sweep else ov.value(), ov.is_add(), ov.is_delete(),
                                sweep))
    return out


def parse_hydra_overrides(overrides: Iterable[str]) -> list:
    """Parse override strings with Hydra's parser; returns Hydra's Override objects (what a
    sweep needs: its comma lists, choice() and range()). Errors name the override."""
    return _hydra().parse_overrides(overrides)


def _hydra():
    """:mod:`wanir.hydra_compose` (Hydra's grammar and compose API), imported on first use."""
    from . import hydra_compose  # late import: Hydra loads in ~60 ms; only overrides the plain parser does not read, sweeps and --config-dir need it
    return hydra_compose


#: Hydra's compose API keeps global state (GlobalHydra); one composition at a time
_COMPOSE_LOCK = threading.RLock()


class _NeedHydra(Exception):
    """The composition uses a Hydra feature the plain composer does not implement."""


@functools.lru_cache(maxsize=256)
def _option_file(group: str, option: str) -> tuple:
    """(content, package, defaults) of the built-in option ``group/option.yaml``, frozen:
    ``package`` is ``_global_`` or the group; ``defaults`` its (group, option) entries."""
    path = CONFIG_DIR / group / f"{option}.yaml" if group else CONFIG_DIR / f"{option}.yaml"
    text = read_text_file(path, "config YAML")
    package = group
    for line in text.splitlines():
        t = line.strip()
        if t.startswith("#") and "@package" in t:
            package = t.split("@package", 1)[1].strip()
            if package != "_global_":
                raise _NeedHydra(f"{path}: package {package}")
    data = load_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise _NeedHydra(f"{path}: not a mapping")
    defaults = []
    for d in data.pop("defaults", None) or ():
        if d == "_self_":
            defaults.append(("_self_", None))
        elif isinstance(d, dict) and len(d) == 1:
            (k, v), = d.items()
            if not isinstance(k, str) or not isinstance(v, str) or k.startswith(("+", "~", "override")) or "@" in k:
                raise _NeedHydra(f"{path}: default {d}")
            defaults.append((k.lstrip("/"), v))
        else:
            raise _NeedHydra(f"{path}: default {d}")
    return freeze(data), package, tuple(defaults)


def _merge(dst: dict, src, origin: dict, tag, prefix: str = "") -> None:
    """Merge ``src`` into ``dst`` as OmegaConf merges configs (mappings recursively, every other
    value replaced); record each leaf's ``tag`` in ``origin`` by dotted key."""
    for k, v in src.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            cur = dst.get(k)
            if not isinstance(cur, dict):
                cur = dst[k] = {}
            if not v:
                origin[key] = tag
            _merge(cur, v, origin, tag, key + ".")
        else:
            dst[k] = _thaw(v)
            origin[key] = tag


def _thaw(v):
    if isinstance(v, dict):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_thaw(x) for x in v]
    return v


def _compose_plain(choices: dict[str, str]) -> tuple[dict, dict]:
    """Compose the built-in config with the user's group ``choices`` as Hydra's defaults lists
    do (a config's own values after its defaults; a group choice replaces the option named
    in any defaults list). Returns (tree, origin): origin maps each leaf's dotted key to
    (group, option, chosen by the user). Raises _NeedHydra for what it does not implement."""
    tree: dict = {}
    origin: dict = {}
    used: set = set()

    def visit(group, option, by_user):
        content, package, defaults = _option_file(group, option)
        tag = (group, option, by_user)
        body = content if package == "_global_" or not group else {group: content}
        self_done = False
        for g, opt in defaults:
            if g == "_self_":
                _merge(tree, body, origin, tag)
                self_done = True
                continue
            if g in used:
                raise _NeedHydra(f"group {g} twice")
            used.add(g)
            user = g in choices
            visit(g, choices[g] if user else opt, user)
        if not self_done:
            _merge(tree, body, origin, tag)

    visit("", "config", False)
    if set(choices) - used:
        raise _NeedHydra("a group choice that no defaults list names")
    return tree, origin


@functools.lru_cache(maxsize=64)
def _compose_cached(group_overrides: tuple[str, ...], config_dir: str | None) -> tuple:
    """(tree, origin) of these group choices, frozen (cached; thread-safe): the plain composer
    for the built-in groups, Hydra's compose API for a user config directory or a Hydra
    feature the plain composer does not read."""
    choices = {}
    plain = config_dir is None
    for o in group_overrides:
        g, _, v = o.partition("=")
        if g.startswith(("+", "~")) or not _KEY_RE.match(g):
            plain = False
        choices[g] = v
    if plain:
        try:
            tree, origin = _compose_plain(choices)
            return freeze(tree), freeze(origin)
        except _NeedHydra:
            pass
    with _COMPOSE_LOCK:
        tree = _compose_hydra(group_overrides, config_dir)
    origin = {}
    for key, _ in _flat_leaves(tree):
        g = key.split(".")[0]
        origin[key] = (g, choices.get(g, ""), g in choices)
    return freeze(tree), freeze(origin)


@functools.lru_cache(maxsize=64)
def _valid_keys(tree0: FrozenMap) -> frozenset:
    """Every dotted key (groups included) of a composed tree (cached per composition)."""
    return frozenset(_flat_keys(tree0))


def default_choices() -> dict[str, str]:
    """The built-in config's default option of each group it names (config.yaml)."""
    return {g: o for g, o in _option_file("", "config")[2] if g != "_self_"}


def _flat_leaves(tree, prefix=""):
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            yield from _flat_leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _compose_hydra(group_overrides: tuple[str, ...], config_dir: str | None) -> dict:
    """The composed config of these group choices by Hydra's compose API, as plain data."""
    return _hydra().compose(group_overrides, config_dir,
                            lambda first: _explain_hydra(first, group_overrides, config_dir))


def _compose(group_overrides: tuple[str, ...], config_dir: str | None):
    """A DictConfig of the composed config of these group choices (a fresh copy)."""
    tree, _ = _compose_cached(tuple(group_overrides), config_dir)
    return dictconfig.create(_thaw(tree))


_compose.cache_clear = _compose_cached.cache_clear


def resolve_interpolations(tree: dict, overrides) -> dict:
    """``tree`` with the ``${...}`` interpolations set by value overrides resolved (once), so a
    value that refers to itself is an error here and never reaches arithmetic."""
    if any("${" in str(o) for o in overrides):
        return dictconfig.resolve(_thaw(tree))
    return tree


def _set(tree: dict, key: str, value) -> None:
    """Set dotted ``key`` of a plain tree (creating mappings on the way), as OmegaConf.update
    with merge=False does."""
    parts = key.split(".")
    d = tree
    for p in parts[:-1]:
        nxt = d.get(p)
        if isinstance(nxt, FrozenMap):      # a composed group shared with the cache: copied on first write
            nxt = d[p] = _thaw(nxt)
        elif not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[parts[-1]] = _thaw(value)


#: most overrides, and longest override, accepted
MAX_OVERRIDES, MAX_OVERRIDE_CHARS = 1000, 10_000


def check_overrides(overrides) -> list:
    """``overrides`` as a list of strings: a list or tuple of at most MAX_OVERRIDES strings of at
    most MAX_OVERRIDE_CHARS characters each (a bare string is refused: it is not a list of
    one-character overrides)."""
    if isinstance(overrides, (str, bytes)) or not isinstance(overrides, (list, tuple)):
        raise ConfigError(f"overrides must be a list or tuple of strings such as ['workload.height=480'], "
                          f"got {type(overrides).__name__} {short(overrides, 60)}")
    if len(overrides) > MAX_OVERRIDES:
        raise ConfigError(f"{len(overrides)} overrides; at most {MAX_OVERRIDES} are accepted")
    for o in overrides:
        if not isinstance(o, str):
            raise ConfigError(f"overrides must be strings, got {type(o).__name__} {short(o, 60)}")
        if len(o) > MAX_OVERRIDE_CHARS:
            raise ConfigError(f"override {short(o, 60)} is {len(o)} characters; at most {MAX_OVERRIDE_CHARS}")
        check_number_runs(o, f"override {short(o, 40)}")   # no 5000-digit integer reaches Hydra
    return list(overrides)


def check_key(key: str, is_add: bool, valid) -> None:
    """A value override's key must exist in the composed config; ``+key`` may add only a key
    wanir reads (one with a documented limit, or a hardware spec key) - a typo is refused with
    the closest valid key."""
    if key in valid:
        return
    if is_add:
        if key in LIMITS or key in SCHEMA or key.startswith("hardware."):
            return
    raise ConfigError(_unknown_key(key, valid))


def _explain_hydra(msg: str, group_overrides, config_dir) -> str:
    """Hydra's error ``msg`` (its first line) about these group choices, reworded as the
    missing option with the closest names when one is missing."""
    opts = _available_options(config_dir)
    for o in group_overrides:
        g, _, v = o.partition("=")
        g = g.lstrip("+~")
        if g in opts and v not in opts[g] and v != "null":
            return _no_option(g, v, opts[g])
    return msg


def _no_option(g: str, v, options) -> str:
    shown = v if isinstance(v, str) and v.isprintable() else repr(v)[1:-1] if isinstance(v, str) else str(v)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    close = difflib.get_close_matches(v, options, n=3) if isinstance(v, str) and len(v) <= MAX_OPTION_CHARS else []
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if not plain_option(v):
        hint += "; an option is a plain name, not a path"
    listed = ", ".join(options)
    listed = listed if len(listed) <= 600 else listed[:600].rsplit(", ", 1)[0] + f", ... ({len(options)} options)"
    return f"{g}={shown}: no option '{shown}' in group '{g}'{hint} (options: {listed})"


def check_group_option(group: str, value, config_dir: str | None) -> None:
    """``group=value`` must select an option that exists - a built-in one, one of the user's
    ``config_dir``, or (for hardware) an entry point - by a plain name (no path: Hydra would
    load whatever YAML file a path names)."""
    options = _available_options(config_dir)[group]
    if plain_option(value):
        if value in options:
            return
        if group == "hardware":
            if value in plugin_names():
                return
    if group == "hardware":
        options = sorted(set(options) | set(plugin_names()))
    raise ConfigError(_no_option(group, value, options))


@dataclass(frozen=True)
class Composed:
    """A composed, checked configuration as plain data: ``tree`` (every value, runtime
    defaults filled, read-only), ``origin`` (dotted leaf key → (group, option, chosen by the
    user) of the file it came from), ``user`` (keys the user's value overrides set, in
    order), ``runtime`` (keys the runtime profile filled), ``choices`` (group → option
    the user chose) and ``defaults`` (keys left null that took their options class's field
    default, :func:`wanir.options.option_defaults`)."""

    tree: Any
    origin: Any
    user: tuple
    runtime: tuple
    choices: Any
    defaults: tuple = ()


def compose(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None,
            validate: bool = True) -> Composed:
    """Compose the configuration from the built-in groups (and ``config_dir``), apply
    ``overrides``, fill the runtime's defaults and the keys whose null means the options
    class's default (:data:`wanir.options.NULL_IS_DEFAULT`; a new tree: nothing is changed
    in place) and check the result. Returns a :class:`Composed`. Used by :func:`wanir.resolve.resolve`,
    the one reader of its result."""
    overrides = check_overrides(overrides)
    return compose_parsed(parse_overrides(overrides), config_dir, validate)


def compose_parsed(parsed: Iterable[Override], config_dir: str | os.PathLike | None = None,
                   validate: bool = True) -> Composed:
    """:func:`compose` of overrides already parsed (:class:`Override` records: a sweep point's)."""
    parsed = list(parsed)
    overrides = [ov.raw for ov in parsed]
    config_dir = str(config_dir) if config_dir else None
    if config_dir and not Path(config_dir).is_dir():
        raise ConfigError(f"--config-dir {config_dir}: no such directory")
    if config_dir:
        check_config_dir(config_dir)   # regular files under the size cap, no YAML alias bombs
    group_ovs, value_ovs, choices = [], [], {}
    for ov in parsed:
        raw, key = ov.raw, ov.key
        if ov.sweep:
            raise ConfigError(f"'{raw}' is a sweep; use `wanir sweep` for comma lists")
        if key in GROUPS and not ov.delete:
            value = ov.value
            if not isinstance(value, str):   # null, a list, or a name Hydra reads as a number
                text, options = raw.partition("=")[2].strip(), list_options(key, config_dir)
                quote = f"; quote a name that reads as a number: {key}='{text}'" if text in options else ""
                raise ConfigError(_no_option(key, text, options) + quote)
            check_group_option(key, value, config_dir)
            group_ovs.append(raw)
            choices[key] = value
        else:
            value_ovs.append(ov)
    group_ovs, hardware_post = compose_hook(group_ovs, config_dir)
    tree0, origin = _compose_cached(tuple(group_ovs), config_dir)
    tree = dict(tree0)     # copy on write: groups no override or default touches stay shared (read-only)
    valid = _valid_keys(tree0)
    user = []
    for ov in value_ovs:
        if ov.delete:
            raise ConfigError(f"'{ov.raw}': deleting keys is not supported")
        check_key(ov.key, ov.add, valid)
        _set(tree, ov.key, ov.value)
        user.append(ov.key)
    tree = resolve_interpolations(tree, overrides)
    hardware_post(tree)
    filled = runtime_defaults(tree)
    for key, value in filled.items():
        _set(tree, key, value)
    if isinstance(tree.get("runtime"), dict):
        _set(tree, "runtime.defaults_applied", list(filled))
    library = option_defaults(tree)    # not plan dependent: config_for_plan leaves them as they are
    for key, value in library.items():
        _set(tree, key, value)
    if validate:
        validate_config(tree)
    return Composed(freeze(tree), origin, tuple(user), tuple(filled), freeze(choices), tuple(library))


def load_config(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None,
                validate: bool = True):
    """The composed, checked configuration (:func:`compose`) as an OmegaConf DictConfig, for
    callers that still take one; new code takes a :class:`wanir.scenario.Scenario` from
    :func:`wanir.resolve.resolve`."""
    return dictconfig.create(_thaw(compose(overrides, config_dir, validate).tree))


def _unknown_key(key: str, valid: set[str]) -> str:
    head = key.split(".")[0]
    if head not in {k.split(".")[0] for k in valid}:
        cands = sorted({k.split(".")[0] for k in valid} | set(GROUPS))
        close = difflib.get_close_matches(head, cands, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown config key '{key}'{hint} (top-level keys: {', '.join(cands)})"
    siblings = sorted(k for k in valid if k.startswith(head + ".") and k.count(".") == key.count("."))
    close = difflib.get_close_matches(key, siblings or sorted(valid), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    allowed = ", ".join(s.split(".")[-1] for s in siblings)
    return f"unknown config key '{key}'{hint} (keys of '{'.'.join(key.split('.')[:-1])}': {allowed})"


def validate_config(cfg) -> None:
    """Check the values of the keys in SCHEMA; raise ConfigError naming key and allowed values."""
    for key, check in SCHEMA.items():
        node = select(cfg, key, "__missing__", keep_null=True)
        if node == "__missing__":
            continue
        check(key, node)
    check_limits(cfg)   # types, finiteness and ranges of every numeric key (docs/limits.md)


def to_dict(cfg) -> dict:
    """The config as plain Python containers."""
    if isinstance(cfg, dict):
        return _thaw(cfg)
    return dictconfig.to_plain(cfg)
