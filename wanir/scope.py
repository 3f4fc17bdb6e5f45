"""Scopes: the hierarchical path of a node, with a repeat count per level.

Kinds of level:
- ``stage``: a top-level pipeline stage; its ``repeat`` is the number of invocations per
  generation (e.g. steps × 2 for the DiT with guidance). Weights are shared across
  invocations.
- ``repeat``: identical structure with *distinct* weights each time (40 transformer blocks
  drawn once, ×40), as an ``nn.ModuleList`` holds them.
- ``loop``: the *same* module run several times (the VAE's chunks over frames): weights are
  shared across iterations and the loop level is left out of weight keys.
- ``scope``: a plain named level (repeat 1).
"""
from __future__ import annotations

from .errors import WanirError

KINDS = ("root", "stage", "scope", "repeat", "loop")


class Scope:
    """One level of the scope tree. ``path`` is '/'-joined names below the root;
    ``multiplicity`` the product of repeats from the root down to this level (int)."""

    __slots__ = ("name", "parent", "repeat", "kind", "children", "path", "depth")

    def __init__(self, name: str, parent: "Scope | None", repeat: int = 1, kind: str = "scope"):
        if kind not in KINDS:
            raise WanirError(f"unknown scope kind {kind!r}; allowed: {', '.join(KINDS)}")
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            where = f"{parent.path}/{name}" if parent is not None and parent.path else name
            raise WanirError(f"scope '{where}': repeat must be a positive int, got {repeat!r}")
        if parent is not None and (not name or "/" in name):
            raise WanirError(f"scope name {name!r} must be non-empty and contain no '/'")
        self.name = name
        self.parent = parent
        self.repeat = repeat
        self.kind = kind
        self.children: dict[str, Scope] = {}
        self.path = name if parent is None or parent.parent is None else f"{parent.path}/{name}"
        if parent is None:
            self.path = ""
        self.depth = 0 if parent is None else parent.depth + 1

    def child(self, name: str, repeat: int = 1, kind: str = "scope") -> "Scope":
        """The child scope ``name``, created on first use; reopening with another repeat
        or kind is an error."""
        c = self.children.get(name)
        if c is None:
            if self.kind == "root" and kind != "stage":
                raise WanirError(f"top-level scope '{name}' must be a stage (open it with builder.stage(...))")
            c = Scope(name, self, repeat, kind)
            self.children[name] = c
        elif c.repeat != repeat or c.kind != kind:
            raise WanirError(f"scope '{c.path}' reopened as {kind} ×{repeat}, it is {c.kind} ×{c.repeat}")
        return c

    def ancestors(self):
        """This scope and its ancestors up to (excluding) the root, innermost first."""
        s = self
        while s is not None and s.kind != "root":
            yield s
            s = s.parent

    @property
    def stage(self) -> "Scope | None":
        """The stage this scope belongs to (None for the root)."""
        st = None
        for s in self.ancestors():
            st = s
        return st

    @property
    def multiplicity(self) -> int:
        """Times this scope's contents run per generation (product of all repeats, stage included)."""
        m = 1
        for s in self.ancestors():
            m *= s.repeat
        return m

    @property
    def count_per_invocation(self) -> int:
        """Times this scope's contents run per invocation of its stage (stage repeat excluded)."""
        m = 1
        for s in self.ancestors():
            if s.kind != "stage":
                m *= s.repeat
        return m

    @property
    def weight_count(self) -> int:
        """Distinct copies of a weight owned here: the product of ``repeat`` levels only."""
        m = 1
        for s in self.ancestors():
            if s.kind == "repeat":
                m *= s.repeat
        return m

    @property
    def weight_path(self) -> str:
        """Path used for weight keys: loop levels are left out (their iterations share weights)."""
        return "/".join(s.name for s in reversed(list(self.ancestors())) if s.kind != "loop")

    def walk(self):
        """This scope and all descendants, depth first."""
        yield self
        for c in self.children.values():
            yield from c.walk()

    def __repr__(self) -> str:
        return f"Scope({self.path or '<root>'}, {self.kind} ×{self.repeat})"
