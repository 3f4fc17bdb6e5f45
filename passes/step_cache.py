"""Step caching and per-step schedules of the DiT stage as a graph transform.

Without a per-step schedule the ``diffusion_core`` stage runs ``steps × branches`` times
and every call is the same graph. Step caching (``cache.method``) and dense warm-up steps
of sparse attention (``attention.dense_steps``) make calls differ, so the transform
rewrites the stage into one invocation per guidance branch (``branches`` = 2 with
classifier-free guidance, else 1) holding loop scopes that say how often each part runs:

- ``calls`` (×steps): everything outside the transformer blocks (embeddings, rotary
  tables, the output head) and the method's per-call check (``cache_check``);
- ``full_calls`` (×F): the transformer blocks, in the calls that run in full, and the
  store of the residual ``blocks_out − blocks_in`` they leave for reuse;
- ``reused_calls`` (×R = steps − F): the reuse ``blocks_in + cached_residual``;
- ``dense_steps`` (×N, sparse attention only): the score tiles a sparse attention skips,
  in the first N calls that run dense.

Per branch F = steps − R with R = ⌊skip × steps⌋, at most steps − 1 (the first call
always runs in full; with ``cache.retention=true``, TeaCache's retention steps, at most
steps − 5). Loop levels share weights, so weight keys, resident bytes and
parameters are the model's; a loop node re-reads its weights every iteration.

Per-call checks (their inputs are the previous call's tensor, kept as a persistent buffer):

- ``teacache`` (TeaCache4Wan2.1): relative L1 distance of the timestep-modulation input
  (``time_proj``'s output) to the previous call's: sub, abs, mean, abs, mean, div;
- ``magcache``: none on tensors (the accumulated error comes from a pre-calibrated table
  of magnitude ratios);
- ``easycache``: relative L1 change of the blocks' input per call, and of their output in
  the full calls (the transformation rate);
- ``fbcache`` (First-Block Cache): the first block runs in every call; the check is the
  relative L1 distance of its residual to the previous call's; the remaining blocks run
  in the full calls only.

A two-expert stage (``<expert>/calls`` loops, Wan2.2 A14B) keeps its stage and each
expert's calls loop; the loops above go inside each expert's scope, with F and R per
expert, and the dense steps go to the experts in order.

Memory: the cached residual (blocks_in's type) is persistent; with ``cache.per_branch``
and both guidance branches on one device the other branch's residual is resident too.
"""
from __future__ import annotations

from fractions import Fraction

from wanir.errors import ConfigError
from wanir.graph import Graph, Value, Weight
from wanir.scope import Scope
from wanir.tensor import TensorType

from . import sparse_attention
from .optimize_options import RETENTION_STEPS
from .rewrite import Rewriter

STAGE = "diffusion_core"


def block_scope(graph: Graph, stage: str) -> Scope | None:
    """The stage's transformer blocks: the ``repeat`` scope holding the most weights."""
    st = graph.stages.get(stage)
    if st is None:
        return None
    weights: dict[int, int] = {}
    for n in graph.stage_nodes(stage):
        for s in n.scope.ancestors():
            if s.kind == "repeat":
                weights[id(s)] = weights.get(id(s), 0) + sum(w.type.nbytes for w in n.params.values())
    best = None
    for s in st.walk():
        if s.kind == "repeat" and weights.get(id(s), 0) > 0:
            if best is None or weights[id(s)] > weights[id(best)]:
                best = s
    return best


def _inside(scope: Scope, target: Scope) -> bool:
    return any(s is target for s in scope.ancestors())


def reused_calls(steps: int, skip: Fraction, always: int = 1) -> int:
    """Calls per branch that reuse the cached residual: ⌊skip × steps⌋, at most
    steps − ``always`` (the first call always runs; with TeaCache's retention steps the
    first :data:`~wanir.passes.optimize_options.RETENTION_STEPS`), never negative."""
    return max(0, min(steps - always, (skip.numerator * steps) // skip.denominator))


def _rel_l1(rw, x: Value, prev: Value, scope, tag: str) -> None:
    """mean|x − prev| / mean|prev| over all elements (five vector ops)."""
    dims = tuple(range(x.type.rank))
    d = rw.emit("sub", [x, prev], scope, f"{tag}_diff").output(0)
    d = rw.emit("abs", [d], scope, f"{tag}_abs").output(0)
    num = rw.emit("mean", [d], scope, f"{tag}_mean", {"dims": dims}).output(0)
    p = rw.emit("abs", [prev], scope, f"{tag}_prev_abs").output(0)
    den = rw.emit("mean", [p], scope, f"{tag}_prev_mean", {"dims": dims}).output(0)
    rw.emit("div", [num, den], scope, f"{tag}_rel_l1")


def _state(rw, t: TensorType, scope, name: str) -> Value:
    """A buffer carried from the previous call (persistent for the whole invocation)."""
    v = rw.emit("input", [], scope, name, {"shape": t.shape, "dtype": t.dtype.name}).output(0)
    rw.persistent.append(v)
    return v


class _Plan:
    def __init__(self, opts, steps: int, branches: int, both_branches_here: bool, dense: int | None = None):
        self.opts = opts
        self.steps, self.branches = steps, branches
        self.caching = opts.caching
        always = RETENTION_STEPS if getattr(opts, "cache_retention", False) else 1
        self.reused = reused_calls(steps, opts.cache_skip, always) if opts.caching else 0
        self.full = steps - self.reused
        self.dense = opts.attention_dense_steps if dense is None else dense
        self.other_branch = opts.caching and opts.cache_per_branch and branches > 1 and both_branches_here
        if self.dense > steps:
            raise ConfigError(f"attention.dense_steps={self.dense} exceeds the {steps} denoising steps")
        if self.caching and self.dense > self.full:
            raise ConfigError(f"attention.dense_steps={self.dense} with cache.skip={float(opts.cache_skip):g}: "
                              f"only {self.full} of {steps} calls per branch run in full; dense steps must be "
                              "among them")


def transform(graph: Graph, opts, steps: int, branches: int, both_branches_here: bool = True) -> Graph:
    """The graph with ``opts`` (an :class:`~wanir.passes.optimize_options.Optimizations`)
    applied to the DiT stage: sparse self-attention and, when a per-step schedule is
    needed (caching or dense steps), the stage rewritten per branch (module docstring).
    ``steps`` and ``branches`` are the workload's steps and guidance branches;
    ``both_branches_here``: whether one device runs both branches (not CFG parallel)."""
    st = graph.stages.get(STAGE)
    if st is None:
        raise ConfigError(f"the optimizations need a '{STAGE}' stage; this graph has {', '.join(graph.stages)}")
    blocks = block_scope(graph, STAGE)
    if blocks is None:
        raise ConfigError(f"the optimizations need the transformer blocks of '{STAGE}' (a repeat scope with weights)")
    per_step = opts.caching or opts.attention_dense_steps > 0
    experts = expert_units(graph)
    if per_step and experts:
        if st.repeat != branches or sum(c.repeat for _, c, _ in experts) != steps:
            raise ConfigError(f"{STAGE}: its experts run {'+'.join(str(c.repeat) for _, c, _ in experts)} calls per "
                              f"invocation ×{st.repeat}, not the {steps} steps × {branches} branches step caching "
                              "and attention.dense_steps schedule")
    elif per_step and st.repeat != steps * branches:
        raise ConfigError(f"{STAGE} runs {st.repeat} times per generation, not steps × branches = "
                          f"{steps} × {branches} (e.g. a two-expert stage): step caching and "
                          "attention.dense_steps cannot schedule it")
    if opts.cache_method == "fbcache" and blocks.repeat < 2:
        raise ConfigError("cache.method=fbcache needs at least two transformer blocks (the first always runs)")
    nodes = graph.stage_nodes(STAGE)
    seq = max((n.inputs[0].shape[-2] for n in nodes if n.kind == "sdpa" and _inside(n.scope, blocks)
               and n.inputs[0].type.rank >= 3), default=0)
    if not experts:
        plan = _Plan(opts, steps, branches, both_branches_here)
    if not per_step:            # sparse attention only: every self-attention of the stage, wherever it is
        return _sparse_only(graph, opts, seq, steps, branches)
    if experts:
        return _experts(graph, opts, experts, seq, steps, branches, both_branches_here)
    rw = Rewriter(graph)
    new_stage = calls = full = None
    for s in graph.root.children.values():      # keep the stages in their order
        if s is st:
            new_stage = rw.g.root.child(STAGE, branches, "stage")
            rw.map_scope(st, new_stage)
        else:
            rw.scope(s)
    calls = new_stage.child("calls", steps, "loop")
    if plan.caching:
        full = new_stage.child("full_calls", plan.full, "loop")
    # the stage's own child scopes go under `calls`, the blocks under `full_calls`
    for c in st.children.values():
        if c is not blocks and not _inside(blocks, c):
            rw.map_scope(c, calls.child(c.name, c.repeat, c.kind))
    pre = calls
    for s in reversed(list(blocks.parent.ancestors())):
        if s is st:
            continue
        pre = pre.child(s.name, s.repeat, s.kind)
        rw.map_scope(s, pre)
    if full is None:
        rw.map_scope(blocks, pre.child(blocks.name, blocks.repeat, blocks.kind))
    elif blocks.parent is not st:
        raise ConfigError("step caching needs the transformer blocks directly under the DiT stage")
    block_nodes = [n for n in nodes if _inside(n.scope, blocks)]
    block_ids = {n.id for n in block_nodes}
    done = False
    for node in graph:
        if node.id in block_ids:
            if not done:
                _blocks(rw, graph, node.scope.stage, blocks, block_nodes, block_ids, plan, seq, new_stage, calls,
                        full)
                done = True
            continue
        if node.scope is st:
            rw.copy(node, calls)
        else:
            rw.copy(node)
    g = rw.finish()
    g.meta.setdefault("optimizations", {}).update(
        {"steps": steps, "branches": branches, "full_calls_per_branch": plan.full,
         "reused_calls_per_branch": plan.reused, "dense_steps": plan.dense,
         "self_attention_tokens": seq})
    return g


def expert_units(graph: Graph) -> list:
    """The DiT forwards of a two-expert stage (Wan2.2 A14B: ``<expert>/calls`` loops, each
    holding one DiT): [(expert scope, calls loop, blocks)], or [] for a single DiT."""
    st = graph.stages.get(STAGE)
    out = []
    for e in (st.children.values() if st is not None else ()):
        c = e.children.get("calls")
        if c is None or c.kind != "loop":
            continue
        blocks = None
        weights: dict[int, int] = {}
        for n in graph.stage_nodes(STAGE):
            if _inside(n.scope, c):
                for s in n.scope.ancestors():
                    if s.kind == "repeat":
                        weights[id(s)] = weights.get(id(s), 0) + sum(w.type.nbytes for w in n.params.values())
        for s in c.walk():
            if s.kind == "repeat" and weights.get(id(s), 0) > 0 and (blocks is None or weights[id(s)] >
                                                                      weights[id(blocks)]):
                blocks = s
        if blocks is not None:
            out.append((e, c, blocks))
    return out


def _experts(graph, opts, experts, seq, steps, branches, both_branches_here) -> Graph:
    """Per-expert schedule: each expert's ``calls`` loop keeps its calls; its blocks move to
    ``<expert>/full_calls``, the reuse to ``<expert>/reused_calls``; the dense steps are the
    first ones, so they go to the experts in order."""
    rw = Rewriter(graph)
    st = graph.stages[STAGE]
    for s in graph.root.children.values():
        rw.scope(s)
    left = opts.attention_dense_steps
    todo = {}
    for e, c, blocks in experts:
        dense = min(left, c.repeat)
        left -= dense
        plan = _Plan(opts, c.repeat, branches, both_branches_here, dense)
        if opts.cache_method == "fbcache" and blocks.repeat < 2:
            raise ConfigError("cache.method=fbcache needs at least two transformer blocks (the first always runs)")
        if blocks.parent is not c:
            raise ConfigError("step caching needs the transformer blocks directly under each expert's calls")
        nodes = [n for n in graph.stage_nodes(STAGE) if _inside(n.scope, blocks)]
        todo[id(blocks)] = (e, c, blocks, nodes, {n.id for n in nodes}, plan)
    done = set()
    by_node = {nid: key for key, t in todo.items() for nid in t[4]}
    for node in graph:
        key = by_node.get(node.id)
        if key is None:
            rw.copy(node)
            continue
        if key in done:
            continue
        done.add(key)
        e, c, blocks, nodes, ids, plan = todo[key]
        container = rw.scope(e)
        calls = rw.scope(c)
        full = container.child("full_calls", plan.full, "loop") if plan.caching else None
        if full is None:
            rw.map_scope(blocks, calls.child(blocks.name, blocks.repeat, blocks.kind))
        _blocks(rw, graph, st, blocks, nodes, ids, plan, seq, container, calls, full, container=e)
    g = rw.finish()
    g.meta.setdefault("optimizations", {}).update(
        {"steps": steps, "branches": branches, "self_attention_tokens": seq,
         "experts": {e.name: {"calls": todo[id(b)][5].steps, "full_calls": todo[id(b)][5].full,
                              "reused_calls": todo[id(b)][5].reused, "dense_steps": todo[id(b)][5].dense}
                     for e, _, b in experts}})
    return g


def _sparse_only(graph, opts, seq, steps, branches) -> Graph:
    rw = Rewriter(graph)
    for node in graph:
        if node.stage == STAGE and opts.sparse and sparse_attention.is_self_attention(node, seq):
            sparse_attention.emit_sparse(rw, node, rw.scope(node.scope), opts.attention_density,
                                         opts.attention_pattern)
        else:
            rw.copy(node)
    g = rw.finish()
    g.meta.setdefault("optimizations", {}).update(
        {"steps": steps, "branches": branches, "self_attention_tokens": seq})
    return g


def _blocks(rw, graph, st, blocks, block_nodes, block_ids, plan, seq, new_stage, calls, full, container=None):
    """Copy the transformer blocks under the schedule: [first block], check, blocks,
    residual store and reuse, dense-step complements. ``new_stage`` is the new scope the
    schedule's loops go in (the stage, or one expert's scope); ``container`` the source
    scope holding the DiT (default: the stage)."""
    opts = plan.opts
    container = st if container is None else container
    outside_reads: dict[tuple[int, int], TensorType] = {}
    for n in block_nodes:
        for v in n.inputs:
            if v.producer not in block_ids:
                outside_reads[(v.producer, v.index)] = v.type
    outs = []
    for n in graph:
        if n.id in block_ids:
            continue
        for v in n.inputs:
            if v.producer in block_ids and (v.producer, v.index) not in outs:
                outs.append((v.producer, v.index))
    if len(outs) != 1:
        raise ConfigError(f"the transformer blocks of '{st.name}' have {len(outs)} outputs; the transforms "
                          "need exactly one (the hidden states)")
    out_key = outs[0]
    out_type = graph.node(out_key[0]).outputs[out_key[1]]
    carried = [k for k, t in outside_reads.items() if t == out_type]
    if plan.caching and len(carried) != 1:
        raise ConfigError(f"cannot tell the hidden states entering the blocks of '{st.name}' "
                          f"({len(carried)} candidates)")
    x_key = carried[0] if carried else None

    inner = [s for s in blocks.walk() if s is not blocks]

    dense_scopes: dict[str, Scope] = {}

    def copy_body(scope_map: Scope, weight_fix=None, sparse=True):
        """Copy the block body under ``scope_map``; a sparse self-attention's dense-step
        complement is emitted right after it (so the block's q, k, v live no longer than
        in the block), under ``dense_steps/<block scope>``."""
        rw.map_scope(blocks, scope_map)
        for s in inner:                 # nested scopes are made afresh under each copy
            rw.scopes.pop(id(s), None)
        for n in block_nodes:
            params = None
            if weight_fix and n.params:
                params = {k: weight_fix(w) for k, w in n.params.items()}
            if sparse and opts.sparse and sparse_attention.is_self_attention(n, seq):
                sparse_attention.emit_sparse(rw, n, rw.scope(n.scope), opts.attention_density,
                                             opts.attention_pattern)
                if plan.dense:
                    sparse_attention.emit_complement(rw, n, _dense_scope(n.scope, scope_map),
                                                     opts.attention_density)
            else:
                rw.copy(n, params=params)

    def _dense_scope(src_scope: Scope, body: Scope) -> Scope:
        top = dense_scopes.get(body.name)
        if top is None:
            loop = new_stage.child("dense_steps", plan.dense, "loop")
            top = dense_scopes[body.name] = loop.child(body.name, body.repeat, body.kind)
        scope = top
        for s in reversed(list(src_scope.ancestors())):
            if _inside(s, blocks) and s is not blocks:
                scope = scope.child(s.name, s.repeat, s.kind)
        return scope

    if not plan.caching:
        copy_body(rw.scope(blocks))
        return

    check = calls.child("cache_check")
    x_in = rw.get(_value(graph, x_key))
    layers = blocks.repeat
    if opts.cache_method == "fbcache":
        first = calls.child(f"{blocks.name}.0")
        base = blocks.weight_path

        def first_w(w: Weight) -> Weight:
            key = w.key.replace(base + "/", f"{base}.0/", 1)
            nw = Weight(key, w.type, w.copies // layers)
            rw.g.weights[key] = nw
            return nw
        copy_body(first, first_w, sparse=True)
        x1 = rw.vals[out_key]
        r1 = rw.emit("sub", [x1, x_in], check, "first_block_residual").output(0)
        prev = _state(rw, r1.type, check, "previous_first_block_residual")
        _rel_l1(rw, r1, prev, check, "fbcache")
        rest_blocks = full.child(blocks.name, layers - 1, "repeat")

        def rest_w(w: Weight) -> Weight:
            nw = Weight(w.key, w.type, w.copies // layers * (layers - 1))
            rw.g.weights[w.key] = nw
            return nw
        rw.vals[x_key] = x1
        x_in = x1
        copy_body(rest_blocks, rest_w)
    else:
        if opts.cache_method == "teacache":
            mod = _teacache_input(graph, container)
            m = rw.get(mod)
            prev = _state(rw, m.type, check, "previous_modulated_input")
            _rel_l1(rw, m, prev, check, "teacache")
        elif opts.cache_method == "easycache":
            prev = _state(rw, x_in.type, check, "previous_blocks_input")
            _rel_l1(rw, x_in, prev, check, "easycache_input")
        copy_body(full.child(blocks.name, layers, blocks.kind))
    x_out = rw.vals[out_key]
    store = full.child("cache_store")
    if opts.cache_method == "easycache":
        prev_out = _state(rw, x_out.type, store, "previous_blocks_output")
        _rel_l1(rw, x_out, prev_out, store, "easycache_output")
    res = rw.emit("sub", [x_out, x_in], store, "store_residual").output(0)
    rw.persistent.append(res)
    if plan.other_branch:
        _state(rw, res.type, check, "cached_residual_other_branch")
    if plan.reused:
        reuse = new_stage.child("reused_calls", plan.reused, "loop")
        y = rw.emit("add", [x_in, res], reuse, "reuse_residual").output(0)
        rw.vals[out_key] = y


def _value(graph: Graph, key) -> Value:
    n = graph.node(key[0])
    return n.output(key[1])


def _teacache_input(graph: Graph, container) -> Value:
    """TeaCache's modulated input on Wan: the timestep projection (``time_proj``'s output)
    of the DiT inside ``container`` (the stage, or one expert's scope)."""
    for n in graph.stage_nodes(STAGE):
        if n.name == "time_proj" and n.kind == "linear" and _inside(n.scope, container):
            return n.output(0)
    raise ConfigError("cache.method=teacache: the DiT has no 'time_proj' timestep projection to measure")
