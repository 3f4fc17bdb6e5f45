"""What every model frontend shares: the typed description of a component and of the model.

A frontend lowers a frozen, checked dataclass of its component's hyperparameters (``DitArch``,
``VaeArch``, ``Umt5Arch``, ``ClipArch``), never a config mapping: :func:`wanir.resolve.resolve`
reads the configuration once and builds them (:func:`wanir.resolve.component`). Each
dataclass names its config group, family and required keys in class attributes and checks
its values in ``__post_init__``, with errors that name the key. :class:`ModelFacts` is the
``model`` group: the model's name, task, defaults and trained range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from wanir.errors import ConfigError


def positive_int(key: str, v) -> int:
    """``v`` if it is a positive int; else ConfigError naming ``key``."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{key} must be a positive integer, got {v!r}")
    return v


def check_family(arch) -> None:
    """Raise ConfigError unless ``arch.family`` is the family its frontend builds."""
    if arch.family != arch.FAMILY:
        raise ConfigError(f"{arch.COMPONENT}.family={arch.family!r}: frontends.{arch.MODULE} builds "
                          f"family '{arch.FAMILY}' only")


def check_positive(arch, keys) -> None:
    """Raise ConfigError unless every field of ``keys`` of ``arch`` is a positive int."""
    for k in keys:
        positive_int(f"{arch.COMPONENT}.{k}", getattr(arch, k))


@dataclass(frozen=True)
class ModelFacts:
    """The ``model`` group, checked: ``name``, ``family`` (wan2.1, wan2.2), ``task`` (t2v,
    i2v or ti2v: what the pipeline builds), the defaults a workload's null sizes and steps
    take (None: the workload must set that key), the trained range (warnings only) and the Wan2.2 schedule facts (``experts``,
    ``shift``, ``boundary``, guidance scales per expert, ``expand_timesteps``)."""

    COMPONENT: ClassVar[str] = "model"
    WHAT: ClassVar[str] = "model"

    name: str
    default_steps: int | None = None
    default_height: int | None = None
    default_width: int | None = None
    default_frames: int | None = None
    family: str | None = None
    task: str = "t2v"
    trained_max_pixels: int | None = None
    trained_max_frames: int | None = None
    official_sizes: tuple = ()
    expand_timesteps: bool = False
    experts: tuple = ()
    shift: float | None = None
    boundary: float | None = None
    guide_scale: float | None = None
    guide_scale_high: float | None = None
    guide_scale_low: float | None = None

    def __post_init__(self):
        for k in ("official_sizes", "experts"):
            if isinstance(getattr(self, k), list):
                object.__setattr__(self, k, tuple(getattr(self, k)))
        if self.task not in ("t2v", "i2v", "ti2v"):
            raise ConfigError(f"model.task={self.task!r}: allowed t2v, i2v, ti2v")
        for k in ("default_steps", "default_height", "default_width", "default_frames"):
            if getattr(self, k) is not None:
                positive_int(f"model.{k}", getattr(self, k))
