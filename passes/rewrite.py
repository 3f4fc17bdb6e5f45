"""A graph copier for transforms: copies a graph node by node into a new one, with a hook
to put a node under another scope, replace it, or add nodes around it.

The new graph is unannotated and marked unchecked (``estimate`` verifies it). Values
listed in ``meta['persistent']`` are pointed at their copies; transforms add their own.
"""
from __future__ import annotations

import copy

from wanir.errors import GraphError
from wanir.graph import Graph, Node, Value
from wanir.ops import get_op
from wanir.scope import Scope


def unique_name(names: dict, scope: Scope, want: str) -> str:
    """``want``, or ``want_1``, ``want_2``, ... : the first name not yet used in ``scope``
    (``names`` maps scope ids to the names used there; the chosen one is added)."""
    used = names.setdefault(id(scope), set())
    cand, i = want, 1
    while cand in used:
        cand = f"{want}_{i}"
        i += 1
    used.add(cand)
    return cand


def emit_node(g: Graph, names: dict, kind: str, inputs, scope: Scope, name: str, attrs: dict | None = None,
              params=None, check_params: bool = False) -> Node:
    """Add a node of op ``kind`` to ``g`` under a unique name in ``scope`` (the op's attribute
    and shape rules run here) and return it. ``check_params``: also check the weights'
    shapes against the op's declaration (GraphError naming the node), so the node is
    recorded as checked — what ``passes.verify`` would check of it alone; the caller keeps
    weight keys consistent across nodes."""
    op = get_op(kind)
    where = f"{scope.path}/{name}"
    attrs = op.normalize_attrs(dict(attrs or {}), where)
    types = tuple(v.type for v in inputs)
    outs = op.infer(types, attrs, where)
    if check_params:
        want = op.param_shapes(types, attrs)
        got = {k: w.type.shape for k, w in (params or {}).items()}
        if want != got:
            raise GraphError(f"{where}: weights {got} differ from what op '{kind}' declares: {want}")
    return g.add_node(kind, unique_name(names, scope, name), scope, list(inputs), outs, attrs, dict(params or {}),
                      checked=check_params)


class Rewriter:
    """Copies ``src`` into ``self.g``. ``vals`` maps (source node id, output index) to the
    new Value; ``scopes`` maps source scope ids to new scopes (same structure unless a
    transform maps a scope elsewhere with :meth:`map_scope`)."""

    def __init__(self, src: Graph, skip_persistent=()):
        self.src = src
        self.skip_persistent = set(skip_persistent)
        g = Graph(src.name)
        g.meta = copy.deepcopy({k: v for k, v in src.meta.items() if k != "persistent"})
        g.weights = dict(src.weights)
        self.g = g
        self.vals: dict[tuple[int, int], Value] = {}
        self.scopes: dict[int, Scope] = {id(src.root): g.root}
        self.names: dict[int, set] = {}
        self.persistent: list[Value] = []

    def scope(self, s: Scope) -> Scope:
        """The new scope of source scope ``s`` (made on first use, same name, repeat and kind
        under the new scope of its parent)."""
        new = self.scopes.get(id(s))
        if new is None:
            new = self.scope(s.parent).child(s.name, s.repeat, s.kind)
            self.scopes[id(s)] = new
        return new

    def map_scope(self, s: Scope, new: Scope) -> None:
        """Put the contents of source scope ``s`` under ``new`` from now on."""
        self.scopes[id(s)] = new

    def name(self, scope: Scope, want: str) -> str:
        """A name not yet used in ``scope`` (see :func:`unique_name`)."""
        return unique_name(self.names, scope, want)

    def emit(self, kind: str, inputs, scope: Scope, name: str, attrs: dict | None = None, params=None) -> Node:
        """Add a node of op ``kind`` (its shape rule runs here) and return it."""
        return emit_node(self.g, self.names, kind, inputs, scope, name, attrs, params)

    def get(self, v: Value) -> Value:
        """The new value of source value ``v``."""
        return self.vals[(v.producer, v.index)]

    def copy(self, node: Node, scope: Scope | None = None, params=None, attrs=None) -> Node:
        """Copy ``node`` (inputs remapped) under ``scope`` (default: its mapped scope)."""
        new = self.emit(node.kind, [self.get(v) for v in node.inputs], scope or self.scope(node.scope), node.name,
                        node.attrs if attrs is None else attrs, node.params if params is None else params)
        for i in range(len(node.outputs)):
            self.vals[(node.id, i)] = new.output(i)
        return new

    def copy_with_inputs(self, node: Node, inputs, attrs=None) -> Node:
        """Copy ``node`` under its mapped scope reading the new values ``inputs``."""
        new = self.emit(node.kind, inputs, self.scope(node.scope), node.name,
                        node.attrs if attrs is None else attrs, node.params)
        for i in range(len(node.outputs)):
            self.vals[(node.id, i)] = new.output(i)
        return new

    def finish(self) -> Graph:
        """Point the source's persistent values at their copies, add the transform's own,
        and return the new graph."""
        pers = self.src.meta.get("persistent")

        def remap(vs):
            out = []
            for v in vs:
                key = (v.producer, v.index) if hasattr(v, "producer") else (int(v[0]), int(v[1]))
                nv = self.vals[key]
                out.append(nv if hasattr(v, "producer") else (nv.producer, nv.index))
            return out
        if isinstance(pers, dict):
            new = {k: remap(vs) for k, vs in pers.items() if k not in self.skip_persistent}
            for v in self.persistent:
                new.setdefault(self.g.node(v.producer).stage, []).append(v)
        else:
            new = remap(pers or []) + list(self.persistent)
        if new:
            self.g.meta["persistent"] = new
        return self.g
