"""Configuration: Hydra config groups under ``wanir/configs`` composed with hydra-core's
compose API (no ``@hydra.main``, no working-directory change, no output folders).

Overrides are written as Hydra writes them: ``model=wan2.1-t2v-1.3b`` selects an option of
a group, ``workload.height=480`` sets one value. A user's own config directory
(``config_dir``) is searched before the built-in one, so it can add options to any group
(``hardware/my-gpu.yaml``) or replace built-in ones.

Composition of group choices is cached; value overrides are applied with OmegaConf and
checked here, so a mistyped key names the closest valid key and a bad value names the key
and what is allowed.
"""
from __future__ import annotations

import difflib
import functools
import os
import threading
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError

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
    from .safeio import short
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
    from .kernels import attention_kernels
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
        if isinstance(v, (dict, DictConfig)):
            out.extend(_flat_keys(v, key + "."))
    return out


def _available_options(config_dir: str | None) -> dict[str, list[str]]:
    roots = [CONFIG_DIR] + ([Path(config_dir)] if config_dir else [])
    opts: dict[str, set[str]] = {g: set() for g in GROUPS}
    for root in roots:
        for g in GROUPS:
            d = root / g
            if d.is_dir():
                opts[g].update(p.stem for p in d.glob("*.yaml"))
    return {g: sorted(v) for g, v in opts.items()}


def list_options(group: str, config_dir: str | None = None) -> list[str]:
    """Names of the options of config group ``group`` (built-in and the user's)."""
    if group not in GROUPS:
        raise ConfigError(f"unknown config group '{group}'; groups: {', '.join(GROUPS)}")
    return _available_options(config_dir)[group]


def parse_overrides(overrides: Iterable[str]):
    """Parse Hydra override strings; returns hydra Override objects. Errors name the override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    out = []
    for o in overrides:
        try:
            out.extend(parser.parse_overrides([o]))
        except HydraException as e:
            raise ConfigError(f"cannot parse override '{o}': {str(e).splitlines()[0]}") from None
    return out


#: Hydra's compose API keeps global state (GlobalHydra); one composition at a time
_COMPOSE_LOCK = threading.RLock()


def _compose(group_overrides: tuple[str, ...], config_dir: str | None) -> DictConfig:
    """A copy of the composed config of these group choices (cached; thread-safe)."""
    with _COMPOSE_LOCK:
        return _compose_cached(group_overrides, config_dir).copy()


@functools.lru_cache(maxsize=64)
def _compose_cached(group_overrides: tuple[str, ...], config_dir: str | None) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    extra = []
    if config_dir:
        extra.append(f"hydra.searchpath=[file://{Path(config_dir).resolve()}]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base=None, config_dir=str(CONFIG_DIR), job_name="wanir"):
            cfg = compose("config", overrides=list(group_overrides) + extra)
    except HydraException as e:
        raise ConfigError(_explain_hydra(e, group_overrides, config_dir)) from None
    finally:
        GlobalHydra.instance().clear()
    cfg = OmegaConf.create(_to_container(cfg))
    return cfg


_compose.cache_clear = _compose_cached.cache_clear


def _to_container(cfg) -> dict:
    """The resolved config as containers; an interpolation that fails (refers to itself, or to
    a missing key) is a one-line ConfigError."""
    from omegaconf.errors import OmegaConfBaseException

    from .interpolation import check_config
    check_config(cfg)   # only whole-value ${key} references to one value; no resolver calls
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except (OmegaConfBaseException, RecursionError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"cannot resolve an interpolation (${{...}}): {first[:200]}") from None


def resolve_interpolations(cfg, overrides) -> None:
    """Resolve ``${...}`` interpolations set by value overrides in place (once), so a value that
    refers to itself is an error here and never reaches arithmetic."""
    if any("${" in str(o) for o in overrides):
        resolved = _to_container(cfg)
        for k in list(cfg.keys()):
            cfg[k] = resolved[k]


#: most overrides, and longest override, accepted
MAX_OVERRIDES, MAX_OVERRIDE_CHARS = 1000, 10_000


def check_overrides(overrides) -> list:
    """``overrides`` as a list of strings: a list or tuple of at most MAX_OVERRIDES strings of at
    most MAX_OVERRIDE_CHARS characters each (a bare string is refused: it is not a list of
    one-character overrides)."""
    from .safeio import check_number_runs, short
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
        from .limits import LIMITS
        if key in LIMITS or key in SCHEMA or key.startswith("hardware."):
            return
    raise ConfigError(_unknown_key(key, valid))


def _explain_hydra(e, group_overrides, config_dir) -> str:
    msg = str(e).splitlines()[0]
    opts = _available_options(config_dir)
    for o in group_overrides:
        g, _, v = o.partition("=")
        g = g.lstrip("+~")
        if g in opts and v not in opts[g] and v != "null":
            return _no_option(g, v, opts[g])
    return msg


def _no_option(g: str, v, options) -> str:
    from .interpolation import MAX_OPTION_CHARS, plain_option
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
    from .interpolation import plain_option
    options = _available_options(config_dir)[group]
    if plain_option(value):
        if value in options:
            return
        if group == "hardware":
            from .hardware import plugin_names
            if value in plugin_names():
                return
    if group == "hardware":
        from .hardware import plugin_names
        options = sorted(set(options) | set(plugin_names()))
    raise ConfigError(_no_option(group, value, options))


def load_config(overrides: Iterable[str] = (), config_dir: str | os.PathLike | None = None,
                validate: bool = True) -> DictConfig:
    """Compose the configuration from the built-in groups (and ``config_dir``), apply
    ``overrides`` and check the result. Returns a plain (resolved) DictConfig."""
    overrides = check_overrides(overrides)
    config_dir = str(config_dir) if config_dir else None
    if config_dir and not Path(config_dir).is_dir():
        raise ConfigError(f"--config-dir {config_dir}: no such directory")
    if config_dir:
        from .safeio import check_config_dir
        check_config_dir(config_dir)   # regular files under the size cap, no YAML alias bombs
    parsed = parse_overrides(overrides)
    group_ovs, value_ovs = [], []
    for raw, ov in zip(overrides, parsed):
        key = ov.key_or_group
        if ov.is_sweep_override():
            raise ConfigError(f"'{raw}' is a sweep; use `wanir sweep` for comma lists")
        if key in GROUPS and not ov.is_delete():
            value = ov.value()
            if not isinstance(value, str):   # null, a list, or a name Hydra reads as a number
                text, options = raw.partition("=")[2].strip(), list_options(key, config_dir)
                quote = f"; quote a name that reads as a number: {key}='{text}'" if text in options else ""
                raise ConfigError(_no_option(key, text, options) + quote)
            check_group_option(key, value, config_dir)
            group_ovs.append(raw)
        else:
            value_ovs.append((raw, ov))
    from .hardware import compose_hook
    group_ovs, hardware_post = compose_hook(group_ovs, config_dir)
    cfg = _compose(tuple(group_ovs), config_dir)
    valid = set(_flat_keys(cfg))
    OmegaConf.set_struct(cfg, False)
    for raw, ov in value_ovs:
        key = ov.key_or_group
        if ov.is_delete():
            raise ConfigError(f"'{raw}': deleting keys is not supported")
        check_key(key, ov.is_add(), valid)
        value = ov.value()
        OmegaConf.update(cfg, key, value, merge=False)
    resolve_interpolations(cfg, overrides)
    hardware_post(cfg)
    from .runtime import apply_runtime
    apply_runtime(cfg)
    if validate:
        validate_config(cfg)
    return cfg


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


def validate_config(cfg: DictConfig) -> None:
    """Check the values of the keys in SCHEMA; raise ConfigError naming key and allowed values."""
    for key, check in SCHEMA.items():
        node = OmegaConf.select(cfg, key, default="__missing__")
        if node == "__missing__":
            continue
        check(key, node)
    from .limits import check_config
    check_config(cfg)   # types, finiteness and ranges of every numeric key (docs/limits.md)


def to_dict(cfg: DictConfig) -> dict:
    """The config as plain Python containers."""
    return OmegaConf.to_container(cfg, resolve=True)
