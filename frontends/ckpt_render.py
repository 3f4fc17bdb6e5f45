"""What checkpoint inference returns (:class:`Component`, :class:`Inspection`) and how
``wanir inspect`` renders it."""
from __future__ import annotations

from dataclasses import dataclass, field

from wanir.frontends.ckpt_family import FAMILIES, _fmt


@dataclass
class Component:
    """One inferred model component.

    ``config`` has the keys of the matching ``wanir/configs/<component>/*.yaml``;
    ``params`` maps module name (top-level, or two levels under ``encoder``/``decoder``) to
    its parameter count; ``dtypes`` maps storage dtype to parameter count (empty when only
    a config was read); ``assumed`` lists the values no file stated; ``expert`` names the
    expert (``high_noise``, ``low_noise``) of a two-expert DiT, else None."""

    component: str
    family: str
    naming: str
    source: str
    config: dict
    params: dict
    dtypes: dict = field(default_factory=dict)
    assumed: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    expert: str | None = None

    @property
    def total_params(self) -> int:
        """Parameters of the component (tied tensors counted once)."""
        return sum(self.params.values())

    @property
    def storage_dtype(self) -> str | None:
        """The dtype most parameters are stored in (None when only a config was read)."""
        return max(self.dtypes, key=lambda d: (self.dtypes[d], d)) if self.dtypes else None

    def summary(self) -> str:
        """One line: component, family, source and the inferred hyperparameters."""
        keys = [k for k in FAMILIES[self.family].keys if k != "family"]
        hp = ", ".join(f"{k}={_fmt(self.config[k])}" for k in keys)
        how = "" if self.naming == "config.json" else f" ({self.naming} naming)"
        who = self.component + (f" [{self.expert} expert]" if self.expert else "")
        return f"{who}: {self.family} from {self.source}{how}: {hp}"

    def lines(self) -> list:
        """The lines ``wanir estimate`` prints about this component (summary, assumptions, notes)."""
        out = [self.summary() + f"; {self.total_params:,} params"]
        out += [f"  assumed: {a}" for a in self.assumed]
        out += [f"  note: {n}" for n in self.notes]
        return out

    def to_dict(self) -> dict:
        """Plain containers (for JSON)."""
        return {"component": self.component, "family": self.family, "naming": self.naming,
                "source": self.source, "config": dict(self.config), "params": dict(self.params),
                "total_params": self.total_params, "dtypes": dict(self.dtypes),
                "assumed": list(self.assumed), "notes": list(self.notes), "expert": self.expert}


@dataclass
class Inspection:
    """What :func:`inspect` found at ``path``: its format and one :class:`Component` per
    model it holds (one for a file, up to three for a pipeline directory)."""

    path: str
    format: str
    components: list

    def component(self, name: str) -> Component:
        """The component named ``dit``, ``text_encoder`` or ``vae``."""
        for c in self.components:
            if c.component == name:
                return c
        raise KeyError(f"{self.path}: no {name} component (found: {', '.join(c.component for c in self.components)})")

    @property
    def family(self) -> str:
        """The family of the only component (``wan_dit``, ``umt5``, ``wan_vae``), or
        ``pipeline`` for several."""
        return self.components[0].family if len(self.components) == 1 else "pipeline"

    @property
    def config(self) -> dict:
        """The inferred config of the only component."""
        return self._only().config

    @property
    def params(self) -> dict:
        """Parameter count by module of the only component."""
        return self._only().params

    @property
    def total_params(self) -> int:
        """Parameters of all components together."""
        return sum(c.total_params for c in self.components)

    def _only(self) -> Component:
        if len(self.components) != 1:
            raise ValueError(f"{self.path} holds {len(self.components)} components; use .component(name)")
        return self.components[0]

    def render(self) -> str:
        """The text ``wanir inspect`` prints: per component, the inferred hyperparameters,
        what was assumed, and the parameter count by module with its share."""
        out = [f"{self.path} ({self.format})"]
        for c in self.components:
            out.append("")
            how = "" if c.naming == "config.json" else f"{c.naming} naming, "
            who = c.component + (f" [{c.expert} expert]" if c.expert else "")
            out.append(f"{who}: {c.family} ({how}from {c.source})")
            for k in FAMILIES[c.family].keys:
                if k != "family":
                    out.append(f"  {k:<32} {_fmt(c.config[k])}")
            out += [f"  assumed: {a}" for a in c.assumed]
            out += [f"  note: {n}" for n in c.notes]
            total = c.total_params
            out.append("  parameters by module:")
            w = max([len(m) for m in c.params] + [5])
            for m, n in c.params.items():
                out.append(f"    {m:<{w}} {n:>16,}  {100 * n / total if total else 0:5.1f}%")
            out.append(f"    {'total':<{w}} {total:>16,}")
            if c.dtypes:
                out.append("  stored as: " + ", ".join(f"{d} {n:,}" for d, n in sorted(c.dtypes.items())))
        if len(self.components) > 1:
            out += ["", f"total: {self.total_params:,} params"]
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict:
        """Plain containers (the JSON of ``wanir inspect --format json``)."""
        return {"path": self.path, "format": self.format, "total_params": self.total_params,
                "components": [c.to_dict() for c in self.components]}
