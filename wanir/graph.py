"""The graph: nodes (op instances) in insertion (topological) order, with a consumer map;
a networkx DiGraph view whose edges carry values is made on demand."""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterator, Mapping

from .errors import GraphError
from .ops import OpDef, get_op
from .scenario import freeze as _deep_freeze
from .scope import Scope
from .tensor import TensorType

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class Value:
    """An SSA value: output ``index`` of node ``producer``, of type ``type``."""

    producer: int
    index: int
    type: TensorType

    def __init__(self, producer: int, index: int, type: TensorType):  # noqa: A002 - the field's name
        # the fields written straight into the instance: a frozen dataclass's generated
        # __init__ goes through object.__setattr__, and the builder makes one Value per node
        d = self.__dict__
        d["producer"] = producer
        d["index"] = index
        d["type"] = type

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype


@dataclass(frozen=True)
class Weight:
    """A weight tensor. ``key`` identifies it in the graph (nodes that share a key share the
    weight); ``copies`` is how many distinct tensors the key stands for (a ×40 repeat scope
    holds 40)."""

    key: str
    type: TensorType
    copies: int = 1

    def __init__(self, key: str, type: TensorType, copies: int = 1):  # noqa: A002 - the field's name
        d = self.__dict__       # as Value.__init__
        d["key"] = key
        d["type"] = type
        d["copies"] = copies

    @property
    def numel(self) -> int:
        """Parameters behind this key (all copies), an int."""
        return self.type.numel * self.copies


@dataclass(eq=False, slots=True)
class Node:
    """One op instance. ``costs`` holds the annotations passes write (ints for counts,
    floats for times). Slotted: a graph holds hundreds of nodes, made and freed per build."""

    id: int
    kind: str
    name: str
    scope: Scope
    inputs: tuple[Value, ...]
    outputs: tuple[TensorType, ...]
    attrs: Mapping            # read-only once the builder checked it or the graph is frozen
    params: Mapping[str, Weight] = field(default_factory=dict)
    costs: dict = field(default_factory=dict)

    @property
    def op(self) -> OpDef:
        return get_op(self.kind)

    @property
    def category(self) -> str:
        return self.op.category

    @property
    def path(self) -> str:
        """Scope path plus the node's name, e.g. ``diffusion_core/blocks/attn1/to_q``."""
        return f"{self.scope.path}/{self.name}" if self.scope.path else self.name

    @property
    def stage(self) -> str:
        return self.scope.stage_name

    @property
    def multiplicity(self) -> int:
        """Executions per generation (product of all repeats along the scope, stage included)."""
        return self.scope.multiplicity

    @property
    def count(self) -> int:
        """Executions per invocation of the node's stage."""
        return self.scope.count_per_invocation

    def output(self, i: int = 0) -> Value:
        """Output ``i`` of this node as a Value."""
        return Value(self.id, i, self.outputs[i])

    def __repr__(self) -> str:
        return f"Node({self.id} {self.kind} {self.path} -> {', '.join(map(str, self.outputs))})"


class Graph:
    """An operator graph: nodes by id in insertion order, with a consumer map; ``nx`` is a
    networkx DiGraph view keyed by node id, with the Node under attribute ``node`` and, on
    every edge, the list of (output index, input slot) pairs it carries. ``root`` is the scope tree; ``meta`` free-form facts about what was built.

    Nodes are kept in insertion order (a topological order: a node's inputs exist before
    it); the networkx view is made on first use and kept until the graph changes, so
    building a graph costs no networkx bookkeeping."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self._nx: nx.DiGraph | None = None
        self._consumers: dict[int, list[int]] | None = None    # made on first use (consumers())
        self.root = Scope("", None, 1, "root")
        self.weights: dict[str, Weight] = {}
        self.meta: dict = {}
        self._nodes: dict[int, Node] = {}       # id -> Node, in insertion order
        #: nodes added without the builder's checks (shape and weight rules run on creation);
        #: ``passes.verify`` is needed only when this is non-zero or the graph was edited
        self.unchecked = 0
        self._next = 0
        self._frozen = False

    def __setattr__(self, key, value):
        if self.__dict__.get("_frozen"):
            raise TypeError(f"graph '{self.name}' is frozen (held by a result or a cache); "
                            f"change a copy: graph.timing_copy()")
        object.__setattr__(self, key, value)

    def freeze(self) -> "Graph":
        """Make this graph read-only, in place, and return it: ``meta`` (deeply), the weights
        and every node's ``costs``, ``attrs`` and ``params`` become read-only mappings and no node can be added, so a
        graph a result or a cache hands out cannot change under its holders
        (:meth:`timing_copy` gives a writable copy)."""
        if self._frozen:
            return self
        for n in self._nodes.values():
            n.costs = MappingProxyType(n.costs)
            if n.attrs.__class__ is not MappingProxyType:      # (builder-made nodes' already are)
                n.attrs = MappingProxyType(n.attrs)
            if n.params.__class__ is not MappingProxyType:
                n.params = MappingProxyType(n.params)
        self.meta = _deep_freeze(self.meta)
        self.weights = MappingProxyType(self.weights)
        self._frozen = True
        return self

    @property
    def frozen(self) -> bool:
        """Whether :meth:`freeze` made this graph read-only."""
        return self._frozen

    # -- construction (used by the builder)
    def add_node(self, kind, name, scope, inputs, outputs, attrs, params, checked: bool = False) -> Node:
        """Add a node; ``checked`` says the caller already ran the op's shape and weight rules
        on exactly these inputs, outputs and attributes (the builder does)."""
        d = self.__dict__
        if d.get("_frozen"):
            raise TypeError(f"graph '{self.name}' is frozen (held by a result or a cache); "
                            f"change a copy: graph.timing_copy()")
        node = Node(d["_next"], kind, name, scope, tuple(inputs), tuple(outputs), attrs, params)
        nodes = d["_nodes"]
        for slot, v in enumerate(node.inputs):
            if v.producer not in nodes:
                raise GraphError(f"{node.path}: input {slot} refers to undefined node {v.producer}")
        nid = node.id           # plain attribute writes below (the frozen check ran above)
        d["_next"] = nid + 1
        nodes[nid] = node
        if not checked:
            d["unchecked"] += 1
        d["_consumers"] = None  # views made again on first use
        d["_nx"] = None
        return node

    def timing_copy(self) -> "Graph":
        """A copy to annotate again (e.g. re-time on other hardware) without touching this
        graph: new Node objects with their own ``costs`` and a copy of ``meta``; scopes,
        weights, values and attributes (never written by passes) are shared."""
        g = Graph.__new__(Graph)
        g.__dict__.update(self.__dict__)
        g.__dict__["_frozen"] = False
        g._nx = None
        g.weights = dict(self.weights)
        g.meta = dict(self.meta)
        g._consumers = None
        g._nodes = {i: Node(n.id, n.kind, n.name, n.scope, n.inputs, n.outputs, n.attrs, n.params, dict(n.costs))
                    for i, n in self._nodes.items()}
        return g

    @property
    def nx(self) -> nx.DiGraph:
        """The graph as a networkx DiGraph (node attribute ``node``, edge attribute ``values``:
        the (output index, input slot) pairs the edge carries)."""
        if self._nx is None:
            import networkx as nx  # late import: networkx loads in ~0.2 s; building and counting never need it
            g = nx.DiGraph()
            for node in self._nodes.values():
                g.add_node(node.id, node=node)
            for node in self._nodes.values():
                for slot, v in enumerate(node.inputs):
                    data = g.get_edge_data(v.producer, node.id)
                    if data is None:
                        g.add_edge(v.producer, node.id, values=[(v.index, slot)])
                    else:
                        data["values"].append((v.index, slot))
            self.__dict__["_nx"] = g     # a cached view: allowed on a frozen graph
        return self._nx

    # -- queries
    def node(self, nid: int) -> Node:
        """The node with id ``nid``."""
        return self._nodes[nid]

    def __iter__(self) -> Iterator[Node]:
        """Nodes in insertion order (a topological order for builder-made graphs)."""
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def topo(self) -> list[Node]:
        """Nodes in a topological order, the lowest node id first among those ready (as
        networkx's ``lexicographical_topological_sort``). Raises GraphError on a cycle."""
        indeg = {nid: 0 for nid in self._nodes}
        users: dict[int, list[int]] = {nid: [] for nid in self._nodes}
        for node in self._nodes.values():
            for p in {v.producer for v in node.inputs}:
                indeg[node.id] += 1
                users[p].append(node.id)
        ready = [nid for nid, d in indeg.items() if d == 0]
        heapq.heapify(ready)
        out = []
        while ready:
            nid = heapq.heappop(ready)
            out.append(self._nodes[nid])
            for u in users[nid]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(ready, u)
        if len(out) != len(self._nodes):
            stuck = [self._nodes[n].path for n, d in indeg.items() if d > 0]
            raise GraphError(f"graph {self.name!r} has a cycle through {stuck[:5]}")
        return out

    def consumers(self, nid: int) -> list[Node]:
        """The nodes that read an output of node ``nid`` (each once, in insertion order)."""
        cons = self._consumers
        if cons is None:        # each reader once, in insertion order
            cons = {i: [] for i in self._nodes}
            for node in self._nodes.values():
                for p in dict.fromkeys(v.producer for v in node.inputs):
                    cons[p].append(node.id)
            self.__dict__["_consumers"] = cons     # a cached view: allowed on a frozen graph
        return [self._nodes[s] for s in cons[nid]]

    @property
    def stages(self) -> dict[str, Scope]:
        """Top-level stage scopes by name, in creation order."""
        return dict(self.root.children)

    def stage_nodes(self, stage: str) -> list[Node]:
        """The nodes of one stage, in insertion order."""
        return [n for n in self if n.scope.stage_name == stage]

    def stage_weights(self, stage: str) -> dict[str, Weight]:
        """Distinct weights (by key) used by the nodes of one stage."""
        out: dict[str, Weight] = {}
        for n in self:
            if n.params and n.scope.stage_name == stage:
                for w in n.params.values():
                    out[w.key] = w
        return out

    def stage_params(self, stage: str) -> int:
        """Parameters of one stage (each distinct weight once, times its copies), an int."""
        return sum(w.numel for w in self.stage_weights(stage).values())

    def stage_weight_bytes(self, stage: str) -> int:
        """Bytes of one stage's weights at their stored dtypes, an int."""
        return sum(w.type.dtype.nbytes(w.numel) for w in self.stage_weights(stage).values())

    def find(self, pattern: str) -> list[Node]:
        """Nodes whose path contains ``pattern``."""
        return [n for n in self if pattern in n.path]

    def __repr__(self) -> str:
        return f"Graph({self.name}: {len(self)} nodes, stages {list(self.stages)})"
