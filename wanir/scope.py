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

import weakref

from .errors import WanirError

KINDS = ("root", "stage", "scope", "repeat", "loop")


class Scope:
    """One level of the scope tree. ``path`` is '/'-joined names below the root;
    ``multiplicity`` the product of repeats from the root down to this level (int).

    A scope never changes after it is made, so everything derived from its ancestors
    (path, stage, multiplicities, weight path) is computed once, here.

    The tree holds no reference cycle, so a dropped graph's scopes are freed by reference
    counting alone (no garbage collection): links go up (``parent``, ``stage``: strong up to
    the stage, the root reached through a weak reference) and the only links down are the
    root's table of every scope's children (``children`` reads it). A scope kept after its
    tree's root is gone (a node held after its graph was dropped) keeps its path, stage and
    counts; its ``parent`` at the top is then None and ``children`` empty."""

    __slots__ = ("name", "_parent", "repeat", "kind", "_tree", "_root", "path", "depth", "_stage", "stage_name",
                 "multiplicity", "count_per_invocation", "weight_count", "weight_path", "_repeated_above", "__weakref__")

    def __init__(self, name: str, parent: "Scope | None", repeat: int = 1, kind: str = "scope"):
        if kind not in KINDS:
            raise WanirError(f"unknown scope kind {kind!r}; allowed: {', '.join(KINDS)}")
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            where = f"{parent.path}/{name}" if parent is not None and parent.path else name
            raise WanirError(f"scope '{where}': repeat must be a positive int, got {repeat!r}")
        if parent is not None and (not name or "/" in name):
            raise WanirError(f"scope name {name!r} must be non-empty and contain no '/'")
        self.name = name
        self.repeat = repeat
        self.kind = kind
        if parent is None:
            #: the root: no path, no stage, every count 1; it owns the table of children
            #: (scope id -> {name: scope}) of its whole tree
            self._tree = {id(self): {}}
            self._root = weakref.ref(self)
            self._parent = self._stage = self.stage_name = None
            self.path, self.depth = "", 0
            self.multiplicity = self.count_per_invocation = self.weight_count = 1
            self.weight_path = ""
            self._repeated_above = ()
            return
        self._tree = None
        self._root = parent._root
        #: the parent, held strongly unless it is the tree's root (reached through ``_root``)
        self._parent = None if parent._tree is not None else parent
        self.path = f"{parent.path}/{name}" if parent.path else name
        self.depth = parent.depth + 1
        #: the stage this scope belongs to (held here unless it is this scope: ``stage``)
        self._stage = None if kind == "stage" else parent.stage
        self.stage_name = name if kind == "stage" else parent.stage_name
        #: times this scope's contents run per generation (all repeats, stage included)
        self.multiplicity = parent.multiplicity * repeat
        #: times this scope's contents run per invocation of its stage (stage repeat excluded)
        self.count_per_invocation = parent.count_per_invocation * (1 if kind == "stage" else repeat)
        #: distinct copies of a weight owned here: the product of ``repeat`` levels only
        self.weight_count = parent.weight_count * (repeat if kind == "repeat" else 1)
        #: the ancestors below the stage that run more than once (``repeated`` without this
        #: scope: a scope holding itself would be a reference cycle)
        self._repeated_above = () if kind == "stage" else parent.repeated
        #: path used for weight keys: loop levels are left out (their iterations share weights)
        if kind == "loop":
            self.weight_path = parent.weight_path
        else:
            self.weight_path = f"{parent.weight_path}/{name}" if parent.weight_path else name

    @property
    def parent(self) -> "Scope | None":
        """The enclosing scope (None for the root)."""
        p = self._parent
        if p is None and self._tree is None:
            return self._root()
        return p

    @property
    def stage(self) -> "Scope | None":
        """The stage scope this scope belongs to (itself for a stage; None for the root)."""
        s = self._stage
        if s is None and self.kind == "stage":
            return self
        return s

    @property
    def repeated(self) -> tuple:
        """This scope and its ancestors below the stage that run more than once (``repeat``
        and ``loop`` levels with repeat > 1), innermost first."""
        if self.repeat > 1 and self.kind in ("repeat", "loop"):
            return (self,) + self._repeated_above
        return self._repeated_above

    @property
    def children(self) -> dict[str, "Scope"]:
        """The child scopes by name, in creation order (read-only by convention; empty when
        the tree's root is gone)."""
        root = self._root()
        if root is None:
            return {}
        kids = root._tree.get(id(self))
        return {} if kids is None else kids

    def child(self, name: str, repeat: int = 1, kind: str = "scope") -> "Scope":
        """The child scope ``name``, created on first use; reopening with another repeat
        or kind is an error."""
        root = self._root()
        if root is None:
            raise WanirError(f"scope '{self.path}': its graph is gone; no scope can be added under it")
        kids = root._tree.get(id(self))
        if kids is None:
            kids = root._tree[id(self)] = {}
        c = kids.get(name)
        if c is None:
            if self.kind == "root" and kind != "stage":
                raise WanirError(f"top-level scope '{name}' must be a stage (open it with builder.stage(...))")
            c = Scope(name, self, repeat, kind)
            kids[name] = c
        elif c.repeat != repeat or c.kind != kind:
            raise WanirError(f"scope '{c.path}' reopened as {kind} ×{repeat}, it is {c.kind} ×{c.repeat}")
        return c

    def ancestors(self):
        """This scope and its ancestors up to (excluding) the root, innermost first."""
        s = self
        while s is not None and s.kind != "root":
            yield s
            s = s.parent

    def walk(self):
        """This scope and all descendants, depth first."""
        yield self
        for c in self.children.values():
            yield from c.walk()

    def __repr__(self) -> str:
        return f"Scope({self.path or '<root>'}, {self.kind} ×{self.repeat})"
