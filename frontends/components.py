"""What every model frontend does with its component config (``cfg.dit``, ``cfg.vae``, ...):
read keys from a config node or a plain mapping, and check that the config is complete, of
the right family, and holds positive sizes — with errors that name the key."""
from __future__ import annotations

from wanir.errors import ConfigError


def cfg_get(cfg, key: str, default=None):
    """``cfg[key]`` for a mapping or config node (``default`` when absent or null)."""
    if cfg is None:
        return default
    v = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if v is None else v


def check_component(cfg, component: str, family: str, module: str, required, what: str,
                    positive=()) -> None:
    """Raise ConfigError unless ``cfg`` (the config of ``component``, e.g. 'vae') has every
    ``required`` key, is of ``family`` (a missing family is taken as that family), and holds
    a positive int under every key of ``positive``."""
    fam = cfg_get(cfg, "family", family)
    if fam != family:
        raise ConfigError(f"{component}.family={fam!r}: frontends.{module} builds family '{family}' only")
    missing = [k for k in required if cfg_get(cfg, k) is None]
    if missing:
        raise ConfigError(f"{component}: missing key(s) {', '.join(component + '.' + k for k in missing)} "
                          f"(a {what} config needs {', '.join(required)})")
    for k in positive:
        positive_int(f"{component}.{k}", cfg_get(cfg, k))


def positive_int(key: str, v) -> int:
    """``v`` if it is a positive int; else ConfigError naming ``key``."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{key} must be a positive integer, got {v!r}")
    return v
