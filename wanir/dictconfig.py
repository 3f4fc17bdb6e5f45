"""OmegaConf, where wanir still meets it: ``${...}`` interpolations checked and resolved (in
value overrides and in ``--config-dir`` YAML files), and the DictConfig a caller may still hold
(:func:`wanir.config.load_config` makes one for callers that take one).

Importing this module does not import OmegaConf (~35 ms, more than wanir's own modules take to
answer a default estimate, which uses none of it): :func:`omegaconf` imports it on first use,
the one place that does. A DictConfig exists only once OmegaConf is loaded, so the functions
that take one cost no import.
"""
from __future__ import annotations

from .errors import ConfigError
from .interpolation import MAX_INTERPOLATIONS, NOT_WHOLE, check_text

#: the type names of OmegaConf's containers
_CONTAINERS = ("DictConfig", "ListConfig")


def omegaconf():
    """The ``omegaconf`` module, imported on first use."""
    import omegaconf  # late import: OmegaConf loads in ~35 ms; only interpolations and DictConfig callers need it
    return omegaconf


def is_container(x) -> bool:
    """``x`` is an OmegaConf DictConfig or ListConfig (no import: such an object exists only once
    OmegaConf is loaded)."""
    return type(x).__name__ in _CONTAINERS and type(x).__module__.startswith("omegaconf")


def to_plain(x):
    """``x`` as plain dicts and lists (interpolations resolved) when it is a DictConfig or
    ListConfig; anything else as it is."""
    if is_container(x):
        return omegaconf().OmegaConf.to_container(x, resolve=True)
    return x


def create(tree):
    """A DictConfig of the plain mapping ``tree`` (or of YAML text)."""
    return omegaconf().OmegaConf.create(tree)


def select(cfg, key: str, default):
    """``cfg``'s value at dotted ``key`` (OmegaConf.select), ``default`` when it has none."""
    return omegaconf().OmegaConf.select(cfg, key, default=default)


def check_config(cfg) -> None:
    """Check every interpolation of ``cfg`` (an unresolved OmegaConf config) before it is
    resolved: each is a whole-value reference, at most :data:`MAX_INTERPOLATIONS` of them,
    and each resolves to one value (not a group of keys). Raises ConfigError."""
    oc = omegaconf()
    DictConfig, ListConfig = oc.DictConfig, oc.ListConfig
    refs = []
    stack = [("", cfg)]
    while stack:
        prefix, node = stack.pop()
        keys = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
        for k in keys:
            if isinstance(node, DictConfig):
                where = f"{prefix}.{k}" if prefix else str(k)
            else:
                where = f"{prefix}[{k}]"
            if isinstance(node, DictConfig) and isinstance(k, str) and "${" in k:
                check_text(f"{where} (a key)", k, whole=False)
            child = node._get_node(k)
            if isinstance(child, (DictConfig, ListConfig)) and not child._is_interpolation():
                stack.append((where, child))
                continue
            raw = child._value()
            if isinstance(raw, str) and check_text(where, raw, whole=isinstance(node, DictConfig)):
                refs.append((where, node, k))
                if len(refs) > MAX_INTERPOLATIONS:
                    raise ConfigError(f"more than {MAX_INTERPOLATIONS} ${{...}} interpolations; refused")
    for where, node, k in refs:
        try:
            value = node[k]
        except (oc.errors.OmegaConfBaseException, RecursionError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"{where}: cannot resolve an interpolation (${{...}}): {first[:200]}") from None
        if isinstance(value, (DictConfig, ListConfig)):
            raise ConfigError(f"{where}: {NOT_WHOLE} (it names a group of keys)")


def resolve(cfg) -> dict:
    """``cfg`` (a DictConfig or a plain mapping) as plain containers with its interpolations
    checked (:func:`check_config`) and resolved; one that fails (refers to itself, or to a
    missing key) is a one-line ConfigError."""
    oc = omegaconf()
    if not isinstance(cfg, oc.DictConfig):
        cfg = oc.OmegaConf.create(cfg)
    check_config(cfg)   # only whole-value ${key} references to one value; no resolver calls
    try:
        return oc.OmegaConf.to_container(cfg, resolve=True)
    except (oc.errors.OmegaConfBaseException, RecursionError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"cannot resolve an interpolation (${{...}}): {first[:200]}") from None
