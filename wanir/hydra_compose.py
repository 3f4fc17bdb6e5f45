"""Hydra, where wanir still needs it: its override grammar for what
:func:`wanir.config.parse_overrides` does not read itself (quotes, lists, ``+``/``~``, sweeps),
and its compose API for a user's config directory (or a Hydra feature the plain composer does
not read). Imports Hydra (~60 ms) and OmegaConf when it is imported, which
:mod:`wanir.config` does on first use: a default estimate needs neither.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, RangeSweep  # noqa: F401 - re-exported for sweeps
from hydra.errors import HydraException

from .dictconfig import resolve
from .errors import ConfigError
from .paths import CONFIG_DIR


def parse_overrides(overrides: Iterable[str]) -> list:
    """Parse override strings with Hydra's grammar; returns Hydra's Override objects (their
    comma lists, choice() and range() included). Errors name the override."""
    parser = OverridesParser.create()
    out = []
    for o in overrides:
        try:
            out.extend(parser.parse_overrides([o]))
        except HydraException as e:
            raise ConfigError(f"cannot parse override '{o}': {str(e).splitlines()[0]}") from None
    return out


def compose(group_overrides: tuple[str, ...], config_dir: str | None, explain: Callable[[str], str]) -> dict:
    """The composed config of these group choices by Hydra's compose API, as plain data
    (interpolations checked and resolved). A Hydra error is a ConfigError worded by
    ``explain`` (its first line in, the message out). Not thread-safe: Hydra keeps global
    state (the caller holds a lock)."""
    extra = []
    if config_dir:
        extra.append(f"hydra.searchpath=[file://{Path(config_dir).resolve()}]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base=None, config_dir=str(CONFIG_DIR), job_name="wanir"):
            cfg = hydra_compose("config", overrides=list(group_overrides) + extra)
    except HydraException as e:
        raise ConfigError(explain(str(e).splitlines()[0])) from None
    finally:
        GlobalHydra.instance().clear()
    return resolve(cfg)
