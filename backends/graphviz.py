"""Architecture diagrams of an annotated graph with Graphviz.

Layout rules:

- every stage is a cluster labeled with its invocations per generation (``× 100 = 50 steps
  × 2 CFG branches`` for the DiT with guidance);
- scopes down to ``depth`` levels below the stage are clusters; a ``repeat`` or ``loop``
  scope is drawn once and labeled with its count (``× 40``);
- a scope exactly ``depth`` levels below its stage is collapsed into one box holding the
  summed costs of everything inside it (ops, op count, FLOPs, time share);
- ops that sit directly in a drawn cluster are drawn one by one (op kind, output shape, FLOPs,
  time share); communication ops (category ``communication``, inserted by the parallel
  variants) are always drawn on their own, also inside collapsed scopes;
- edges carry the shape of the tensor they pass;
- colors show the bound of each box (compute / memory / communication, from
  ``node.costs["bound"]``) or its share of time, and a legend explains them.

Times come from ``node.costs["time_s"]`` (seconds per execution); where no node has a time
the share shown is the share of FLOPs and ``--color bound`` paints boxes grey ("no time
estimate"), except communication ops.

The entry points are :func:`to_digraph` (a ``graphviz.Digraph``), :func:`to_dot` (DOT
source text) and :func:`render` (writes .svg, .png, .pdf or .dot).
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import graphviz

from wanir.errors import WanirError
from wanir.graph import Graph, Node
from wanir.safeout import check_output_path, write_output
from wanir.scope import Scope

from .display import fmt_count, fmt_shape, node_bytes, node_flops, node_time  # noqa: F401 - re-exported

COLOR_MODES = ("bound", "time", "none")
FORMATS = ("svg", "png", "pdf", "dot")

#: fill colors by bound
BOUND_COLORS = {
    "compute": "#f6b26b",        # orange
    "memory": "#7fb3e0",         # blue
    "communication": "#c39bd3",  # purple
    "unknown": "#e6e6e6",        # grey: no time annotation
}
#: scopes the optimization transforms add (passes/step_cache.py, passes/sparse_attention.py):
#: their ops are drawn as dashed octagons
TRANSFORM_SCOPES = {"cache_check", "cache_store", "reused_calls", "dense_steps", "sparse_sliding_tile",
                    "sparse_radial", "sparse_svg", "quantize_qkv"}
_SKIP_KINDS = {"parameter"}      # weights used as tensors: drawn as part of their consumer


def node_bound(n: Node) -> str:
    """``communication`` for a communication op, else the annotated bound of ``n``
    (``compute`` or ``memory``), or ``unknown`` when there is none."""
    if n.category == "communication":
        return "communication"
    b = n.costs.get("bound")
    return b if b in BOUND_COLORS else "unknown"


@dataclass
class Unit:
    """One drawn box: a single op or a collapsed scope. Costs are per generation."""

    id: str
    kind: str                      # 'op', 'scope' or 'input'
    label_name: str
    parent: Scope                  # the cluster it is drawn in
    nodes: list[Node] = field(default_factory=list)
    flops: int = 0
    time_s: float = 0.0
    bound_time: dict = field(default_factory=dict)
    scope: Scope | None = None

    @property
    def bound(self) -> str:
        """The bound that accounts for most of this unit's time (or its first node's bound)."""
        if self.bound_time and any(v > 0 for v in self.bound_time.values()):
            return max(self.bound_time.items(), key=lambda kv: kv[1])[0]
        if self.bound_time:
            return next(iter(self.bound_time))
        return "unknown"


class _Layout:
    """Assigns each graph node to the unit it is drawn in."""

    def __init__(self, graph: Graph, stages: list[str], depth: int, max_ops: int | None = None):
        self.graph = graph
        self.depth = depth
        self.units: dict[str, Unit] = {}
        self.unit_of: dict[int, str] = {}
        self.have_time = any(n.costs.get("time_s") is not None for n in graph)
        nodes = [n for n in graph if n.stage in stages and n.kind not in _SKIP_KINDS]
        # collapsed scopes holding communication ops stay clusters: box + the comm ops
        self.open_collapsed = {id(self._collapse_scope(n)) for n in nodes
                               if n.category == "communication" and self._collapse_scope(n) is not None}
        for n in nodes:
            self._place(n)
        if max_ops is not None:
            self._merge_crowded(max_ops)

    def _merge_crowded(self, max_ops: int) -> None:
        """In a cluster drawing more than ``max_ops`` single ops, fold those ops into one box
        (communication ops and inputs stay on their own)."""
        by_parent: dict[int, list[Unit]] = {}
        for u in self.units.values():
            if u.kind == "op" and u.nodes[0].category != "communication":
                by_parent.setdefault(id(u.parent), []).append(u)
        for group in by_parent.values():
            if len(group) <= max_ops:
                continue
            parent = group[0].parent
            uid = "m" + str(abs(hash(parent.path)) % 10**12)
            m = self.units[uid] = Unit(uid, "scope", parent.name, parent, scope=parent)
            for u in group:
                del self.units[u.id]
                m.nodes += u.nodes
                m.flops += u.flops
                m.time_s += u.time_s
                for k, v in u.bound_time.items():
                    m.bound_time[k] = m.bound_time.get(k, 0.0) + v
                for n in u.nodes:
                    self.unit_of[n.id] = uid

    def _collapse_scope(self, n: Node) -> Scope | None:
        """The ancestor scope of ``n`` exactly ``depth`` levels below its stage (the stage
        itself for depth 0), or None when ``n`` sits higher up."""
        chain = list(reversed(list(n.scope.ancestors())))      # stage first
        if len(chain) - 1 >= self.depth:
            return chain[self.depth]
        return None

    def _place(self, n: Node) -> None:
        col = self._collapse_scope(n)
        opened = col is not None and id(col) in self.open_collapsed
        if col is not None and n.category not in ("communication", "input"):
            uid = "s" + str(abs(hash(col.path)) % 10**12)
            u = self.units.get(uid)
            if u is None:
                parent = col if (opened or col.kind == "stage") else col.parent
                u = self.units[uid] = Unit(uid, "scope", col.name, parent, scope=col)
        else:
            uid = f"n{n.id}"
            if col is None:
                parent = n.scope
            else:
                parent = col if (opened or col.kind == "stage") else col.parent
            u = self.units[uid] = Unit(uid, "input" if n.category == "input" else "op", n.name, parent)
        u.nodes.append(n)
        m = n.multiplicity
        u.flops += node_flops(n) * m
        t = node_time(n)
        b = node_bound(n)
        if t is not None:
            u.time_s += t * m
            u.bound_time[b] = u.bound_time.get(b, 0.0) + t * m
        elif n.category != "input":
            u.bound_time.setdefault(b, 0.0)
        self.unit_of[n.id] = uid


def _stage_label(graph: Graph, st: Scope) -> str:
    wl = graph.meta.get("workload") or {}
    base = f"{st.name}"
    experts = graph.meta.get("experts", {}).get(st.name)
    if experts:         # Wan2.2 A14B: each expert's scope loops over its calls per branch
        parts = ", ".join(f"{e['name']} {e['steps']} steps" for e in experts)
        calls = sum(e["calls"] for e in experts)
        return f"{base}: {calls} DiT calls ({parts})" + (" × 2 CFG branches" if st.repeat == 2 else "")
    if st.repeat == 1:
        return base + " × 1"
    steps, guidance = wl.get("steps"), wl.get("guidance")
    if st.name == "diffusion_core" and steps and guidance and st.repeat == steps * 2:
        return f"{base} × {st.repeat} = {steps} steps × 2 CFG branches"
    if st.name == "diffusion_core" and steps and st.repeat == steps:
        return f"{base} × {st.repeat} steps"
    if guidance and st.repeat == 2:
        return f"{base} × 2 (prompt + negative prompt)"
    return f"{base} × {st.repeat} invocations"


def _scope_label(s: Scope) -> str:
    if s.kind == "repeat":
        return f"{s.name} × {s.repeat}"
    if s.kind == "loop":
        return f"{s.name} × {s.repeat} (loop, shared weights)"
    return s.name


def _share_color(share: float) -> str:
    """White (0 %) to red (100 %) on a square-root scale so small shares stay visible."""
    x = max(0.0, min(1.0, share)) ** 0.5
    r, g, b = 255, int(255 - 180 * x), int(255 - 200 * x)
    return f"#{r:02x}{g:02x}{b:02x}"


def _esc(s: str) -> str:
    return html.escape(str(s), quote=False)


def to_digraph(graph: Graph, stage: str | None = None, depth: int = 2, color: str = "bound",
               title: str | None = None, max_ops: int | None = 12):
    """A ``graphviz.Digraph`` of ``graph`` (all stages, or ``stage``) drawn down to ``depth``
    scope levels below each stage; ``color`` is one of COLOR_MODES. A cluster that would draw
    more than ``max_ops`` single ops draws them as one "(N other ops)" box (None: never)."""
    if color not in COLOR_MODES:
        raise WanirError(f"--color {color!r}: allowed {', '.join(COLOR_MODES)}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise WanirError(f"--depth must be an integer >= 0, got {depth!r}")
    all_stages = list(graph.stages)
    if stage is not None:
        if stage not in graph.stages:
            raise WanirError(f"--stage {stage!r}: no such stage; stages: {', '.join(all_stages)}")
        stages = [stage]
    else:
        stages = all_stages
    lay = _Layout(graph, stages, depth, max_ops)
    total_time = sum(u.time_s for u in lay.units.values())
    total_flops = sum(u.flops for u in lay.units.values())
    use_time = lay.have_time and total_time > 0
    share_of = (lambda u: u.time_s / total_time) if use_time else \
        ((lambda u: u.flops / total_flops) if total_flops else (lambda u: 0.0))
    share_word = "time" if use_time else "FLOPs"

    g = graphviz.Digraph(name=graph.name, format="svg")
    g.attr(rankdir="TB", compound="true", newrank="true", nodesep="0.25", ranksep="0.35",
           fontname="Helvetica", fontsize="12")
    g.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10",
           fillcolor="white", margin="0.08,0.04")
    g.attr("edge", fontname="Helvetica", fontsize="8", color="#555555", arrowsize="0.6")
    head = title or f"{graph.meta.get('model', graph.name)}" + (f" on {graph.meta['hardware']}"
                                                                if graph.meta.get("hardware") else "")
    g.attr(label=f"{head} — depth {depth}, shares of {share_word} per generation", labelloc="t")

    # cluster tree: scope path -> list of units drawn directly in it
    by_parent: dict[str, list[Unit]] = {}
    for u in lay.units.values():
        by_parent.setdefault(u.parent.path, []).append(u)
    needed: set[str] = set()
    for p in by_parent:
        parts = p.split("/")
        for i in range(1, len(parts) + 1):
            needed.add("/".join(parts[:i]))

    def fill(u: Unit) -> str:
        if color == "none" or u.kind == "input":
            return "white"
        if color == "time":
            return _share_color(share_of(u))
        return BOUND_COLORS.get(u.bound, BOUND_COLORS["unknown"])

    def label(u: Unit) -> str:
        if u.kind == "input":
            n = u.nodes[0]
            return f"<<b>{_esc(n.name)}</b><br/>{_esc(fmt_shape(n.outputs[0].shape))} {_esc(n.outputs[0].dtype)}>"
        share = share_of(u)
        if u.kind == "scope":
            ops = len(u.nodes)
            title_ = _esc(_scope_label(u.scope)) if u.parent is not u.scope else f"({len(u.nodes)} other ops)"
            kinds = {}
            for n in u.nodes:
                kinds[n.category] = kinds.get(n.category, 0) + 1
            top = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:3])
            out = u.nodes[-1].outputs[0] if u.nodes[-1].outputs else None
            lines = [f"<b>{title_}</b>", f"{ops} op{'' if ops == 1 else 's'}: {_esc(top)}"]
            if out is not None:
                lines.append(f"→ {_esc(fmt_shape(out.shape))}")
        else:
            n = u.nodes[0]
            lines = [f"<b>{_esc(n.name)}</b> <i>{_esc(n.kind)}</i>"]
            if n.outputs:
                lines.append(f"{_esc(fmt_shape(n.outputs[0].shape))} {_esc(n.outputs[0].dtype)}")
            if n.category == "communication":
                lines.append(f"degree {n.attrs.get('degree')} · {_esc(n.attrs.get('tier', ''))}")
            if n.attrs.get("density"):          # an optimization transform's block-sparse attention
                num, den = n.attrs["density"]
                lines.append(f"sparse {num}/{den} · {_esc(n.attrs.get('pattern') or '')}")
        fl = fmt_count(u.flops)
        lines.append(f"{fl}{'' if fl[-1].isalpha() else ' '}FLOP · {share * 100:.1f}% {share_word}")
        return "<" + "<br/>".join(lines) + ">"

    def emit_unit(sub, u: Unit):
        attrs = {"label": label(u), "fillcolor": fill(u), "tooltip": u.nodes[0].path if u.kind != "scope"
                 else u.scope.path}
        if u.kind == "input":
            attrs.update(shape="ellipse", style="filled", fillcolor="#f7f7f7")
        elif u.kind == "scope":
            attrs.update(style="filled,bold", penwidth="1.5")
        elif u.bound == "communication" or u.nodes[0].category == "communication":
            attrs.update(shape="hexagon", style="filled")
        elif _transformed(u.nodes[0]):
            attrs.update(shape="octagon", style="filled,dashed", penwidth="2")
        sub.node(u.id, **attrs)

    def _transformed(n) -> bool:
        """A node an optimization transform made or changed (docs/optimizations.md)."""
        if n.attrs.get("density"):
            return True
        return any(a.name in TRANSFORM_SCOPES for a in n.scope.ancestors())

    def emit_cluster(parent_g, s: Scope):
        with parent_g.subgraph(name="cluster_" + s.path.replace("/", "__").replace(".", "_")) as c:
            if s.kind == "stage":
                c.attr(label=_stage_label(graph, s), style="rounded,filled", fillcolor="#fbfbf4",
                       color="#888888", fontsize="13", penwidth="1.5")
            else:
                rep = s.kind in ("repeat", "loop")
                c.attr(label=_scope_label(s), style="rounded,dashed,bold" if rep else "rounded",
                       color="#666666" if rep else "#999999", fontsize="11", fillcolor="white")
            for u in by_parent.get(s.path, []):
                emit_unit(c, u)
            for ch in s.children.values():
                if ch.path in needed:
                    emit_cluster(c, ch)

    for st in stages:
        emit_cluster(g, graph.stages[st])

    # edges between units, labeled with the shape they carry (one edge per unit pair)
    seen: set[tuple[str, str]] = set()
    for u_id, v_id, data in graph.nx.edges(data=True):
        a, b = lay.unit_of.get(u_id), lay.unit_of.get(v_id)
        if a is None or b is None or a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        prod = graph.node(u_id)
        idx = data["values"][0][0]
        g.edge(a, b, label=fmt_shape(prod.outputs[idx].shape))

    _legend(g, color, share_word)
    return g


def _legend(g, color: str, share_word: str) -> None:
    rows = []
    if color == "bound":
        for k in ("compute", "memory", "communication", "unknown"):
            name = {"unknown": "no time estimate"}.get(k, f"{k}-bound")
            rows.append(f'<tr><td bgcolor="{BOUND_COLORS[k]}" width="18"> </td><td align="left">{name}</td></tr>')
    elif color == "time":
        for s in (0.0, 0.01, 0.1, 0.5, 1.0):
            rows.append(f'<tr><td bgcolor="{_share_color(s)}" width="18"> </td>'
                        f'<td align="left">{s * 100:g}% of {share_word}</td></tr>')
    rows.append('<tr><td>▭</td><td align="left">op: name kind, output shape, FLOPs, share</td></tr>')
    rows.append('<tr><td><b>▭</b></td><td align="left">collapsed scope: summed costs</td></tr>')
    rows.append('<tr><td>⬡</td><td align="left">communication op</td></tr>')
    rows.append('<tr><td>× N</td><td align="left">drawn once, runs N times</td></tr>')
    tab = ('<<table border="0" cellborder="1" cellspacing="0" cellpadding="3">'
           '<tr><td colspan="2"><b>legend</b></td></tr>' + "".join(rows) + "</table>>")
    with g.subgraph(name="cluster_legend") as c:
        c.attr(label="", color="white")
        c.node("legend", label=tab, shape="plaintext", style="", fillcolor="white")


def to_dot(graph: Graph, **kw) -> str:
    """DOT source text of the diagram (see :func:`to_digraph` for the keywords)."""
    return to_digraph(graph, **kw).source


def _pipe(g, fmt: str) -> bytes:
    """Run Graphviz ``dot`` on ``g``; a missing or failing ``dot`` is a one-line WanirError."""
    try:
        return g.pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise WanirError("Graphviz's `dot` was not found on PATH; install Graphviz (e.g. apt-get install "
                         "graphviz), or write the diagram's source with -o FILE.dot") from None
    except graphviz.CalledProcessError as e:
        err = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else str(e.stderr or "")
        first = next((ln.strip() for ln in err.splitlines() if ln.strip()), f"exit status {e.returncode}")
        raise WanirError(f"Graphviz `dot` failed ({fmt}): {first[:200]}") from None
    except OSError as e:
        raise WanirError(f"Graphviz `dot` could not run: {e.strerror or e}") from None


def to_svg(graph: Graph, **kw) -> str:
    """The diagram as SVG text (runs Graphviz ``dot``)."""
    return _pipe(to_digraph(graph, **kw), "svg").decode("utf-8")


def render(graph: Graph, path: str | os.PathLike, **kw) -> Path:
    """Write the diagram to ``path``; the suffix picks the format (.svg, .png, .pdf or .dot).
    Returns the path written."""
    check_output_path(path)                     # a trailing '/' names a directory
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise WanirError(f"-o {path}: unknown format '{path.suffix}'; allowed: {', '.join('.' + f for f in FORMATS)}")

    suffixes = tuple("." + f for f in FORMATS)
    check_output_path(path, suffixes)           # before any work: no directory, no link
    g = to_digraph(graph, **kw)
    data = g.source if fmt == "dot" else _pipe(g, fmt)
    return write_output(path, data, suffixes)   # a temporary file renamed into place
