"""verify: check that a graph is well formed.

Acyclic; every input refers to an existing output; every node's recorded output types
equal what its shape rule gives for its recorded inputs (so dtypes are consistent along
edges); every node's weights have the shapes its op declares; shared weight keys agree.
"""
from __future__ import annotations

from wanir.errors import GraphError
from wanir.graph import Graph
from wanir.ops import get_op


def run(graph: Graph) -> int:
    """Verify ``graph``; return the number of nodes checked. Raises GraphError (or
    ShapeError) naming the node's scope path on the first problem."""
    nodes = graph._nodes
    # insertion order is topological when every input comes from an earlier node; only a graph
    # that breaks that (made by hand) needs networkx to look for a cycle
    if any(v.producer >= n.id for n in graph for v in n.inputs):
        import networkx as nx  # late import: networkx loads in ~0.2 s; only a hand-made graph needs it
        if not nx.is_directed_acyclic_graph(graph.nx):
            cycle = nx.find_cycle(graph.nx)
            raise GraphError(f"graph has a cycle through {[graph.node(u).path for u, _ in cycle]}")
    seen_weights = {}
    for node in graph:
        where = node.path
        op = get_op(node.kind, where)
        if node.scope.stage is None:
            raise GraphError(f"{where}: node is outside every stage")
        types = []
        for slot, v in enumerate(node.inputs):
            prod = nodes.get(v.producer)
            if prod is None:
                raise GraphError(f"{where}: input {slot} refers to undefined node {v.producer}")
            if v.index >= len(prod.outputs):
                raise GraphError(f"{where}: input {slot} refers to output {v.index} of {prod.path}, "
                                 f"which has {len(prod.outputs)}")
            if prod.outputs[v.index] != v.type:
                raise GraphError(f"{where}: input {slot} has type {v.type}, but {prod.path} produces "
                                 f"{prod.outputs[v.index]}")
            types.append(v.type)
        attrs = node.attrs
        if attrs.keys() != op.attr_map.keys():
            attrs = op.normalize_attrs(attrs, where)
        types = tuple(types)
        outs = op.infer(types, attrs, where)
        if tuple(outs) != tuple(node.outputs):
            raise GraphError(f"{where}: recorded outputs {[str(t) for t in node.outputs]} differ from the "
                             f"shape rule's {[str(t) for t in outs]}")
        if node.params or op.params is not None:
            want = op.param_shapes(types, attrs)
            got = {k: w.type.shape for k, w in node.params.items()}
            if want != got:
                raise GraphError(f"{where}: weights {got} differ from what op '{node.kind}' declares: {want}")
            for w in node.params.values():
                old = seen_weights.setdefault(w.key, w)
                if old != w:
                    raise GraphError(f"{where}: weight '{w.key}' is {w.type} ×{w.copies} here, "
                                     f"{old.type} ×{old.copies} elsewhere")
    return len(graph)
