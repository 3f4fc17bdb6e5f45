"""The sharding transform: a pipeline graph in, one device's graph out (see the package
docstring for what each plan dimension does to the graph)."""
from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass

from wanir.errors import GraphError, WanirError
from wanir.graph import Graph, Node, Value
from wanir.passes.blocks import block_units
from wanir.passes.blocks import subtree_weights as _subtree_weights
from wanir.passes.rewrite import emit_node, unique_name
from wanir.scope import Scope

from ..comm import Link, Topology
from .plan import CFG_STAGES, FSDP_STAGES, SINGLE_DEVICE_STAGES, SP_STAGES, Plan, PlanError, check_plan
from .rules import Unshardable as _Fail
from .rules import propagate as _propagate
from .rules import token_axis as _token_axis
from .vae_patch import patch_vae_decode, patched


#: facts of a frozen source graph that every plan sharding it reads (its blocks, their
#: weights, its stages' weight bytes), made once per graph: {graph: {key: value}}
_SOURCE_FACTS: "weakref.WeakKeyDictionary[Graph, dict]" = weakref.WeakKeyDictionary()


def _source_fact(src: Graph, key: tuple, make):
    """``make()``, remembered per frozen ``src`` under ``key`` (a graph that can still change
    is asked every time)."""
    if not src.frozen:
        return make()
    facts = _SOURCE_FACTS.get(src)
    if facts is None:
        facts = _SOURCE_FACTS[src] = {}
    hit = facts.get(key, facts)
    if hit is facts:
        hit = facts[key] = make()
    return hit


def _inside(scope: Scope, units: set[int]) -> bool:
    for s in scope.ancestors():
        if id(s) in units:
            return True
    return False


@dataclass
class _V:
    """A value of the new graph: ``value``; ``dim`` the axis sharded sp ways (None:
    replicated); ``full`` that axis's size on one device."""

    value: Value
    dim: int | None = None
    full: int = 0




class _Sharder:
    def __init__(self, src: Graph, plan: Plan, path: str = "plain"):
        self.src, self.plan = src, plan
        self.official = path == "official"
        g = Graph(f"{src.name}[{plan.label}]")
        g.meta = copy.deepcopy(src.meta)
        g.weights = dict(src.weights)
        self.g = g
        self.scopes: dict[int, Scope] = {id(src.root): g.root}
        self.names: dict[int, set] = {}
        self.vals: dict[tuple[int, int], _V] = {}
        self.full_cache: dict[tuple[int, int], Value] = {}
        self.slice_cache: dict[tuple[int, int, int], _V] = {}
        self.comm: dict[int, dict] = {}
        self.notes: list[str] = []
        self.fallbacks: list[str] = []
        self.fsdp_info: dict[str, dict] = {}
        #: ids of nodes of a sequence-sharded stage that run unsharded on every device
        self.replicated: set[int] = set()
        #: every node added is checked as it is added (shape rule, weight shapes, one weight
        #: per key), so the new graph needs no verify pass — when the source needed none
        #: either (its copies keep the source's checked outputs)
        self.src_checked = src.unchecked == 0
        self.weights_seen: dict[str, object] = {}
        self.units: dict[str, list[Scope]] = {}
        self.unit_ids: dict[str, set[int]] = {}
        self.seq_len: dict[str, int] = {}
        self.unit_bytes: dict[int, int] = {}
        self.src_consumers = {n.id: [] for n in src}
        for n in src:
            for v in n.inputs:
                self.src_consumers[v.producer].append(n)
        self.vae_patch = patched(self)

    # ---------------------------------------------------------------- scopes and nodes
    def scope(self, s: Scope) -> Scope:
        new = self.scopes.get(id(s))
        if new is not None:
            return new
        parent = self.scope(s.parent)
        rep = s.repeat
        if s.kind == "stage" and self.plan.cfg > 1 and s.name in CFG_STAGES:
            if rep % self.plan.cfg:
                raise PlanError(f"parallel.cfg={self.plan.cfg}: stage '{s.name}' runs {rep} times per "
                                "generation, which the guidance branches cannot split evenly")
            rep //= self.plan.cfg
        new = parent.child(s.name, rep, s.kind)
        self.scopes[id(s)] = new
        self.names.setdefault(id(new), set())
        if s.kind == "stage":
            self._stage_entry(s, new)
        if id(s) in self.unit_bytes:
            self._fsdp_gather(new, self.unit_bytes[id(s)], "block", s)
        return new

    def name(self, scope: Scope, want: str) -> str:
        return unique_name(self.names, scope, want)

    def emit(self, kind, inputs, scope, name, attrs, params=None) -> Node:
        self._one_weight_per_key(scope, name, params)
        return emit_node(self.g, self.names, kind, inputs, scope, name, attrs, params, check_params=True)

    def _one_weight_per_key(self, scope, name, params) -> None:
        """Raise GraphError when a weight of ``params`` has a key another node of the new
        graph holds with another type or copy count (what ``passes.verify`` checks)."""
        for w in (params or {}).values():
            old = self.weights_seen.setdefault(w.key, w)
            if old != w:
                raise GraphError(f"{scope.path}/{name}: weight '{w.key}' is {w.type} ×{w.copies} here, "
                                 f"{old.type} ×{old.copies} elsewhere")

    def comm_node(self, kind, x: Value, scope, name, group: str, size: int, overlap=None, **attrs) -> Value:
        stride = 1 if group in ("sp", "fsdp") else self.plan.stride(group)
        topo = Topology(self.plan.gpus_per_node, Link("intra", 1, 0), Link("inter", 1, 0))
        node = self.emit(kind, [x], scope, name, {"degree": size, "tier": topo.tier(stride, size), **attrs})
        self.comm[node.id] = {"group": group, "stride": stride, "size": size, "overlap": overlap}
        return node.output(0)

    # ---------------------------------------------------------------- stages
    def _stage_entry(self, src_stage: Scope, stage: Scope):
        name = src_stage.name
        p = self.plan
        if name in SINGLE_DEVICE_STAGES and p.replica > 1 and not (name == "vae_decode" and self.vae_patch):
            self.notes.append(f"{name} runs on one device of each replica (as the reference decodes on rank 0); "
                              f"the other {p.replica - 1} wait")
        if name in FSDP_STAGES and p.fsdp > 1:
            units = self.units.get(name) or []
            total = _source_fact(self.src, ("stage_weight_bytes", name), lambda: self.src.stage_weight_bytes(name))
            unit_total = 0
            for u in units:
                per_copy = _source_fact(self.src, ("unit_bytes", id(u)), lambda: sum(
                    w.type.nbytes for w in _subtree_weights(self.src, u).values()))
                self.unit_bytes[id(u)] = per_copy
                unit_total += per_copy * u.weight_count
            rest = total - unit_total
            per = self.unit_bytes[id(units[0])] if units else 0
            self.fsdp_info[name] = {"degree": p.fsdp, "weight_bytes": total,
                                    "resident_weight_bytes": -(-total // p.fsdp),
                                    "block_gather_bytes": per, "root_gather_bytes": rest,
                                    "blocks": [u.path for u in units][:1] if units and units[0].kind == "repeat"
                                    else [u.path for u in units]}
            if rest > 0:
                self._fsdp_gather(stage, rest, "root", None)

    def _fsdp_gather(self, scope: Scope, nbytes: int, what: str, src_scope):
        f = self.plan.fsdp
        shard = self.emit("input", [], scope, "fsdp_shard", {"shape": (-(-nbytes // f),), "dtype": "int8"})
        self.comm_node("all_gather", shard.output(0), scope, "fsdp_all_gather", "fsdp", f,
                       overlap=("previous_block" if what == "block" else None), dim=0)

    # ---------------------------------------------------------------- values
    def get(self, v: Value) -> _V:
        return self.vals[(v.producer, v.index)]

    def full(self, v: Value) -> Value:
        """The whole (unsharded) value of src value ``v`` on this device."""
        nv = self.get(v)
        if nv.dim is None:
            return nv.value
        key = (v.producer, v.index)
        if key in self.full_cache:
            return self.full_cache[key]
        scope = self.g.node(nv.value.producer).scope
        while scope.kind == "loop" and scope.name == "ring":
            scope = scope.parent
        out = self.comm_node("all_gather", nv.value, scope, "sp_all_gather", "sp", self.plan.sp, dim=nv.dim)
        if out.shape[nv.dim] != nv.full:
            out = self.emit("slice", [out], scope, "sp_unpad", {"dim": nv.dim, "start": 0, "end": nv.full}).output(0)
        self.full_cache[key] = out
        return out

    def sharded(self, v: Value, dim: int, scope: Scope) -> _V:
        """src value ``v`` (replicated) cut to this device's shard along ``dim``."""
        nv = self.get(v)
        if nv.dim == dim:
            return nv
        if nv.dim is not None:
            raise _Fail()
        key = (v.producer, v.index, dim)
        if key in self.slice_cache:
            return self.slice_cache[key]
        sp = self.plan.sp
        x = nv.value
        size = x.shape[dim]
        local = -(-size // sp)
        pscope = self.g.node(x.producer).scope
        if pscope.kind == "root":
            pscope = scope
        if local * sp != size:
            pad = [0, 0] * (x.type.rank - dim)
            pad[-1] = local * sp - size
            x = self.emit("pad", [x], pscope, "sp_pad", {"pad": tuple(pad)}).output(0)
        out = self.emit("slice", [x], pscope, "sp_shard", {"dim": dim, "start": 0, "end": local}).output(0)
        r = _V(out, dim, size)
        self.slice_cache[key] = r
        return r

    def _all_to_all(self, x: Value, scope: Scope, name: str, scatter: int, gather: int) -> Value:
        """A Ulysses all-to-all; on the official path (xDiT/yunchang ``SeqAllToAll4D``) with
        the permute + contiguous copy before it and after it."""
        if self.official:
            x = self.emit("contiguous", [x], scope, f"{name}_permute_in", {}).output(0)
        y = self.comm_node("all_to_all", x, scope, name, "ulysses", self.plan.ulysses,
                           scatter_dim=scatter, gather_dim=gather)
        if self.official:
            y = self.emit("contiguous", [y], scope, f"{name}_permute_out", {}).output(0)
        return y

    def _ring_merge(self, o: Value, scope: Scope) -> Value:
        """Ring attention's merge of each step's partial output into the running one, in
        fp32 (yunchang ``update_out_and_lse``): the step's output cast to fp32, then
        ``out - sigmoid(block_lse - lse) * (out - block_out)`` and the log-sum-exp update;
        ``ring - 1`` merges, then the running output cast back to the compute dtype."""
        steps = self.plan.ring - 1
        merge = scope.child("ring_merge", steps, "loop")
        self.names.setdefault(id(merge), set())
        rows = (*o.shape[:-1], 1)
        lse = self.emit("input", [], merge, "lse", {"shape": rows, "dtype": "fp32"}).output(0)
        blk = self.emit("cast", [o], merge, "block_out_float", {"dtype": "fp32"}).output(0)
        run_out = self.emit("input", [], merge, "out", {"shape": o.shape, "dtype": "fp32"}).output(0)
        d = self.emit("sub", [run_out, blk], merge, "out_minus_block", {}).output(0)
        w = self.emit("sigmoid", [lse], merge, "lse_weight", {}).output(0)
        d = self.emit("mul", [d, w], merge, "rescale", {}).output(0)
        new = self.emit("sub", [run_out, d], merge, "merged", {}).output(0)
        # the log-sum-exp update (lse - logsigmoid(lse - block_lse)) works per row: negligible
        return self.emit("cast", [new], scope, "ring_out_cast", {"dtype": o.dtype.name}).output(0)

    # ---------------------------------------------------------------- driving
    def run(self) -> Graph:
        p = self.plan
        for st in self.src.stages:
            self.units[st] = list(_source_fact(self.src, ("block_units", st), lambda: block_units(self.src, st)))
            self.unit_ids[st] = {id(u) for u in self.units[st]}
            if p.sp > 1 and st in SP_STAGES:
                seq, heads = _source_fact(self.src, ("attention", st), lambda: self._attention_shape(st))
                if seq is not None:
                    self.seq_len[st] = seq
                    check_plan(p, heads=heads, tokens=seq)
        patch_pers = None
        for node in self.src:
            if self.vae_patch and node.stage == "vae_decode":     # decoded in row bands instead (vae_patch.py)
                if patch_pers is None:
                    patch_pers = patch_vae_decode(self, node.scope.stage)
                continue
            self.copy(node)
        # stage outputs must leave whole
        for node in self.src:
            if self.src_consumers[node.id] or (self.vae_patch and node.stage == "vae_decode"):
                continue
            for i in range(len(node.outputs)):
                nv = self.vals[(node.id, i)]
                val = self.full(node.output(i)) if nv.dim is not None else nv.value
                if node.stage == "diffusion_core" and p.cfg > 1 and node.kind != "input":
                    self.comm_node("all_gather", val, self.scopes[id(node.scope.stage)], "cfg_all_gather",
                                   "cfg", p.cfg, dim=0)
        if p.dp > 1:
            self.notes.append(f"{p.dp} replicas (data parallel): latency per video unchanged, "
                              f"throughput × {p.dp}")
        for st in self.src.stages:
            if p.sp > 1 and st not in SP_STAGES and st not in SINGLE_DEVICE_STAGES:
                self.notes.append(f"{st} is not sequence-sharded: every device of a replica runs it whole")
        self._remap_meta(patch_pers)
        self.g.meta["parallel"] = {"plan": p.to_dict(), "comm": self.comm, "fsdp": self.fsdp_info,
                                   "notes": self.notes, "gathers": self.fallbacks,
                                   "single_device_stages": [s for s in SINGLE_DEVICE_STAGES if s in self.src.stages],
                                   "seq_len": self.seq_len, "replicated": sorted(self.replicated)}
        return self.g

    def _attention_shape(self, st: str) -> tuple:
        """(tokens, heads) of stage ``st``'s block self-attention: the longest query length of
        an ``sdpa`` inside its blocks and the fewest heads among those of that length
        ((None, None) without one; heads None when no such ``sdpa`` has a head axis)."""
        ls = [n.inputs[0].shape[-2] for n in self.src.stage_nodes(st)
              if n.kind == "sdpa" and _inside(n.scope, self.unit_ids[st])]
        if not ls:
            return None, None
        seq = max(ls)
        heads = [n.inputs[0].shape[-3] for n in self.src.stage_nodes(st)
                 if n.kind == "sdpa" and n.inputs[0].type.rank >= 3 and n.inputs[0].shape[-2] == seq]
        return seq, (min(heads) if heads else None)

    def _remap_meta(self, patch_pers=None):
        """Values recorded in ``meta['persistent']`` refer to source node ids: point them
        at the copies (a VAE decoded in bands keeps its band's)."""
        pers = self.src.meta.get("persistent")
        if patch_pers is not None and isinstance(pers, dict):
            pers = {k: v for k, v in pers.items() if k != "vae_decode"}
        if not pers:
            if patch_pers:
                self.g.meta["persistent"] = {"vae_decode": patch_pers}
            return

        def remap(vs):
            out = []
            for v in vs:
                key = (v.producer, v.index) if hasattr(v, "producer") else (int(v[0]), int(v[1]))
                nv = self.vals[key].value
                out.append(nv if hasattr(v, "producer") else (nv.producer, nv.index))
            return out
        self.g.meta["persistent"] = ({k: remap(vs) for k, vs in pers.items()} if isinstance(pers, dict)
                                     else remap(pers))
        if patch_pers is not None and isinstance(self.g.meta["persistent"], dict):
            self.g.meta["persistent"]["vae_decode"] = patch_pers

    def copy(self, node: Node):
        scope = self.scope(node.scope)
        st = node.stage
        sp_on = self.plan.sp > 1 and st in self.seq_len
        ins = [self.get(v) for v in node.inputs]
        if sp_on and (any(x.dim is not None for x in ins) or _inside(node.scope, self.unit_ids[st])):
            try:
                return self.copy_sharded(node, scope)
            except _Fail:
                if any(x.dim is not None for x in ins):
                    self.fallbacks.append(node.path)
        ins = [self.full(v) for v in node.inputs]
        if all(a.type == v.type for a, v in zip(ins, node.inputs)):
            # the node as the source holds it: its attributes are normalized and its outputs are
            # what its shape rule gives for these input types (the count's verify checks again)
            self._one_weight_per_key(scope, node.name, node.params)
            new = self.g.add_node(node.kind, self.name(scope, node.name), scope, ins, node.outputs,
                                  dict(node.attrs), dict(node.params), checked=self.src_checked)
        else:
            new = self.emit(node.kind, ins, scope, node.name, dict(node.attrs), node.params)
        if sp_on:       # a node of a sequence-sharded stage that every device runs whole (e.g. the embeddings)
            self.replicated.add(new.id)
        for i in range(len(node.outputs)):
            self.vals[(node.id, i)] = _V(new.output(i))

    # ---------------------------------------------------------------- sharding rules
    def copy_sharded(self, node: Node, scope: Scope):
        st = node.stage
        L = self.seq_len[st]
        inside = _inside(node.scope, self.unit_ids[st])
        dims = [self.get(v).dim for v in node.inputs]
        # seeds: a replicated value made outside the blocks that carries the token axis
        if inside:
            for i, v in enumerate(node.inputs):
                if dims[i] is None and not _inside(self.src.node(v.producer).scope, self.unit_ids[st]):
                    d = _token_axis(v.type.shape, L)
                    if d is not None:
                        dims[i] = d
        if all(d is None for d in dims):
            raise _Fail()
        if node.kind == "sdpa":
            return self.sdpa(node, scope, dims)
        out_dim, need = _propagate(node, dims)
        inputs = []
        for i, v in enumerate(node.inputs):
            d = need[i]
            inputs.append(self.sharded(v, d, scope).value if d is not None else self.get(v).value)
        attrs = dict(node.attrs)
        full_out = node.outputs[0].shape
        k = next(i for i, d in enumerate(need) if d is not None)
        local = inputs[k].shape[need[k]] * full_out[out_dim] // node.inputs[k].shape[need[k]]
        if node.kind in ("reshape", "expand"):
            shp = list(full_out)
            shp[out_dim] = local
            attrs["shape"] = tuple(shp)
        try:
            new = self.emit(node.kind, inputs, scope, node.name, attrs, node.params)
        except WanirError:
            raise _Fail() from None
        for i, t in enumerate(node.outputs):
            want = list(t.shape)
            want[out_dim] = local
            if new.outputs[i].shape != tuple(want):
                raise GraphError(f"{node.path}: sharded output {new.outputs[i]} is not the expected {want}")
            self.vals[(node.id, i)] = _V(new.output(i), out_dim, t.shape[out_dim])

    def sdpa(self, node: Node, scope: Scope, dims):
        q, k, v = node.inputs[:3]
        r = q.type.rank
        seq = r - 2
        if r < 3 or dims[0] != seq:
            raise _Fail()
        p = self.plan
        mask = node.inputs[3] if len(node.inputs) > 3 else None
        if dims[1] == seq and dims[2] == seq:            # self-attention over the sharded tokens
            if mask is not None:
                raise _Fail()
            qs, ks, vs = (self.sharded(t, seq, scope).value for t in (q, k, v))
            if p.ulysses > 1:
                heads = q.shape[r - 3]
                if heads % p.ulysses:
                    check_plan(p, heads=heads)
                qs, ks, vs = (self._all_to_all(t, scope, f"ulysses_all_to_all_{n}", r - 3, seq)
                              for t, n in ((qs, "q"), (ks, "k"), (vs, "v")))
            attrs = dict(node.attrs)
            if p.ring > 1:
                kr = self.comm_node("send_recv", ks, scope, "ring_send_recv_k", "ring", p.ring, steps=p.ring - 1)
                vr = self.comm_node("send_recv", vs, scope, "ring_send_recv_v", "ring", p.ring, steps=p.ring - 1)
                loop = scope.child("ring", p.ring, "loop")
                self.names.setdefault(id(loop), set())
                o = self.emit("sdpa", [qs, kr, vr], loop, node.name, attrs, node.params)
                for nid in (kr.producer, vr.producer):
                    self.comm[nid]["overlap"] = f"sdpa:{o.id}"
                out = self._ring_merge(o.output(0), scope)
            else:
                o = self.emit("sdpa", [qs, ks, vs], scope, node.name, attrs, node.params)
                out = o.output(0)
            if p.ulysses > 1:
                out = self._all_to_all(out, scope, "ulysses_all_to_all_out", seq, r - 3)
        elif dims[1] is None and dims[2] is None:        # cross-attention: local queries, whole context
            qs = self.sharded(q, seq, scope).value
            ins = [qs, self.get(k).value, self.get(v).value]
            if mask is not None:
                if mask.shape[-2] == 1:
                    ins.append(self.full(mask))
                elif self.get(mask).dim is None and mask.shape[-2] == q.shape[-2]:
                    ins.append(self.sharded(mask, mask.type.rank - 2, scope).value)
                else:
                    raise _Fail()
            out = self.emit("sdpa", ins, scope, node.name, dict(node.attrs), node.params).output(0)
        else:
            raise _Fail()
        full = node.outputs[0].shape[seq]
        if out.shape[seq] != -(-full // p.sp):
            raise GraphError(f"{node.path}: sharded attention output {out.type} does not hold "
                             f"{full}/{p.sp} tokens")
        self.vals[(node.id, 0)] = _V(out, seq, full)



def shard_graph(graph: Graph, plan: Plan, path: str = "plain") -> Graph:
    """One device's graph under ``plan``: shapes divided where the plan shards them,
    communication nodes inserted, stage invocations divided by CFG parallelism.
    ``meta['parallel']`` describes the plan, each communication node's group and overlap,
    FSDP's resident weights per stage, notes, and the ops before which sharded tokens are
    gathered because the op needs whole tokens (``gathers``, e.g. the DiT's unpatchify). The input graph is not
    modified; an unannotated new graph is returned. ``path``: the runtime's multi-GPU path
    (``official``: permute copies around each Ulysses all-to-all, as xDiT/yunchang run it).
    Ring attention always merges its partial outputs in fp32 (``ring_merge``)."""
    return _Sharder(graph, plan, path).run()
