"""Parallel plans as graph transforms: a pipeline graph in, one device's graph out.

A :class:`Plan` splits ``degree`` devices into four nested dimensions (innermost first:
ranks ``0..ulysses-1`` form one Ulysses group, and so on outwards)::

    degree = ulysses × ring × cfg × dp          fsdp divides degree

and :func:`shard_graph` rewrites the graph the way the reference systems run it
(Wan2.1's ``generate.py`` with ``--ulysses_size/--ring_size/--dit_fsdp/--t5_fsdp``, and
xDiT's classifier-free-guidance parallelism):

- **Sequence parallel** (``ulysses``·``ring`` = sp > 1, DiT only): the hidden states and the
  rotary tables are cut along the token axis where they enter the transformer blocks
  (padded up to a multiple of sp first, as the reference pads); every op of the blocks
  and of the head that works token by token runs on L/sp tokens. Each self-attention gets
  - Ulysses: ``all_to_all`` of q, k and v (tokens gathered, heads scattered) before the
    ``sdpa`` and one of the output after it; needs heads % ulysses == 0;
  - ring: ``send_recv`` of the k and v blocks, ``ring − 1`` steps, overlappable with the
    attention, and the ``sdpa`` runs ``ring`` times (a ``loop`` scope) on one block each;
  - both (USP): Ulysses inside, ring across.
  Cross-attention runs the local query shard against the full text keys and values, with
  no communication (as Wan's ``usp_attn_forward`` leaves cross-attention untouched). The
  per-token output is gathered (``all_gather``) where an op needs whole tokens again (the
  unpatchify reshape).
- **CFG parallel** (``cfg`` = 2): each device runs one guidance branch, so the DiT and the
  text encoder run half as often per device; one ``all_gather`` of the prediction per step.
- **FSDP** (``fsdp`` > 1, text encoder and DiT): weights are sharded ``fsdp`` ways. Before
  each transformer block an ``all_gather`` assembles its weights (overlappable with the
  previous block); the weights outside the blocks are gathered once per call. Resident
  weight bytes per device drop by ``fsdp`` (``graph.meta['parallel']['fsdp']``).
- **Data parallel** (``dp``): whole replicas. The device graph is one replica's; latency per
  video is unchanged, throughput scales by ``dp``.
- Stages that do not shard (the VAE decode, the VAE encode) run on one device, as the
  reference decodes on rank 0 only; ``meta['parallel']['notes']`` says so.

Every inserted communication node is an ordinary node (kinds from wanir/ops/defs.py) that
the passes annotate and reports list; ``meta['parallel']['comm']`` records per node its
group (``ulysses``, ``ring``, ``sp``, ``cfg``, ``fsdp``), the group's rank stride and size
(the link tier follows from them and the hardware) and what it may overlap with.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field, replace

from wanir.errors import ConfigError, GraphError, WanirError
from wanir.graph import Graph, Node, Value
from wanir.ops import get_op
from wanir.scope import Scope
from wanir.tensor import TensorType


class PlanError(ConfigError):
    """A plan the model or the device count cannot take; the message says why and what to use."""


#: plan dimensions, innermost (rank stride 1) first
DIMS = ("ulysses", "ring", "cfg", "dp")
#: the components a plan name may join with '+'
COMPONENTS = ("single", "dp", "cfg", "ulysses", "ring", "usp", "fsdp")
#: stages sequence parallelism shards, and stages FSDP shards (as Wan's --dit_fsdp --t5_fsdp)
SP_STAGES = ("diffusion_core",)
FSDP_STAGES = ("text_encoder", "diffusion_core")
#: stages CFG parallelism splits across its two devices (one guidance branch each)
CFG_STAGES = ("text_encoder", "diffusion_core")
#: stages that run on one device whatever the plan
SINGLE_DEVICE_STAGES = ("vae_encode", "vae_decode")


@dataclass(frozen=True)
class Plan:
    """A parallel plan: ``degree`` devices = ulysses × ring × cfg × dp; weights sharded
    ``fsdp`` ways (1: replicated). ``overlap``: whether overlappable communication (ring
    exchanges, FSDP prefetch) hides behind compute. ``network``: the inter-node link
    (``bandwidth_GBps``, ``latency_us``, ``efficiency``); ``intra_node``: the GPU-GPU link's
    ``latency_us`` and ``efficiency`` (its bandwidth comes from the hardware);
    ``gpus_per_node``: devices per node."""

    name: str = "single"
    ulysses: int = 1
    ring: int = 1
    cfg: int = 1
    dp: int = 1
    fsdp: int = 1
    overlap: bool = True
    gpus_per_node: int = 8
    network: tuple = ()
    intra_node: tuple = ()

    @property
    def degree(self) -> int:
        """Devices in all (int)."""
        return self.ulysses * self.ring * self.cfg * self.dp

    @property
    def sp(self) -> int:
        """Sequence-parallel degree ulysses × ring (int)."""
        return self.ulysses * self.ring

    @property
    def replica(self) -> int:
        """Devices that work on one video: ulysses × ring × cfg (int)."""
        return self.sp * self.cfg

    def stride(self, dim: str) -> int:
        """Rank distance between neighbours of a group of dimension ``dim`` (int)."""
        s = 1
        for d in DIMS:
            if d == dim:
                return s
            s *= getattr(self, d)
        raise KeyError(dim)

    @property
    def label(self) -> str:
        """A short description such as ``fsdp8+ulysses4+ring2``."""
        parts = [f"{d}{getattr(self, d)}" for d in ("fsdp", "cfg", "ulysses", "ring", "dp") if getattr(self, d) > 1]
        return "+".join(parts) or "single"

    def to_dict(self) -> dict:
        """The plan as plain data."""
        return {"name": self.name, "label": self.label, "degree": self.degree, "ulysses": self.ulysses,
                "ring": self.ring, "cfg": self.cfg, "dp": self.dp, "fsdp": self.fsdp, "overlap": self.overlap,
                "gpus_per_node": self.gpus_per_node, "network": dict(self.network),
                "intra_node": dict(self.intra_node)}


def _posint(key, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise PlanError(f"{key} must be a positive integer or auto, got {v!r}")
    return v


def make_plan(name: str = "single", degree: int | None = None, **dims) -> Plan:
    """A Plan from a plan name (``single``, ``dp``, ``cfg``, ``ulysses``, ``ring``, ``usp``,
    ``fsdp`` or '+'-joined combinations such as ``fsdp+ulysses``), a device count and
    optional explicit keys (``ulysses=2, ring=4``, ``fsdp=8``, ``overlap=False``,
    ``network={...}``), as the ``parallel/`` config files define them: the name's main
    dimension is ``auto`` (what is left of ``degree``), ``usp`` starts from ring=2, ``cfg`` is
    2, ``fsdp`` shards over all devices. Raises PlanError naming the keys on a mismatch."""
    comps = [c for c in str(name).split("+") if c]
    bad = [c for c in comps if c not in COMPONENTS]
    if bad or not comps:
        raise PlanError(f"parallel={name}: unknown plan component(s) {', '.join(map(repr, bad)) or '(none)'}; "
                        f"allowed: {', '.join(COMPONENTS)}, joined with '+' (e.g. fsdp+ulysses)")
    spec = {"name": name, "degree": "auto" if degree is None else degree,
            "ulysses": 1, "ring": 1, "cfg": 1, "dp": 1, "fsdp": 1}
    if "cfg" in comps:
        spec["cfg"] = 2
    if "usp" in comps or ("ulysses" in comps and "ring" in comps):
        auto, spec["ring"] = "ulysses", 2
    elif "ulysses" in comps:
        auto = "ulysses"
    elif "ring" in comps:
        auto = "ring"
    elif "dp" in comps or "fsdp" in comps:
        auto = "dp"
    else:
        auto = None
    if "fsdp" in comps:
        spec["fsdp"] = "auto"
    if auto and auto not in dims:
        spec[auto] = "auto"
    spec.update(dims)
    return resolve_plan(spec)


def resolve_plan(p) -> Plan:
    """A Plan from a ``parallel`` config mapping (keys ``name``, ``degree``, ``ulysses``,
    ``ring``, ``cfg``, ``dp``, ``fsdp``, ``overlap``, ``gpus_per_node``, ``network``,
    ``intra_node``). At most one of the four dimensions may be ``auto`` (what is left of
    ``degree``); ``degree: auto`` is their product; ``fsdp: auto`` is the degree.
    Raises PlanError naming the keys when they do not multiply to the degree."""
    if p is None:
        return Plan()
    try:
        from omegaconf import DictConfig, OmegaConf
        if isinstance(p, DictConfig):
            p = OmegaConf.to_container(p, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    p = dict(p)
    known = {"name", "degree", "overlap", "gpus_per_node", "network", "intra_node", "fsdp", *DIMS}
    extra = sorted(set(p) - known)
    if extra:
        raise PlanError(f"unknown key(s) parallel.{', parallel.'.join(extra)}; keys: {', '.join(sorted(known))}")
    dims = {d: p.get(d, 1) for d in DIMS}
    autos = [d for d, v in dims.items() if v == "auto"]
    for d, v in dims.items():
        if v != "auto":
            _posint(f"parallel.{d}", v)
    degree = p.get("degree", "auto")
    fixed = math.prod(v for v in dims.values() if v != "auto")
    formula = " × ".join(f"parallel.{d}" for d in DIMS)
    if degree == "auto" or degree is None:
        if autos:
            for d in autos:
                dims[d] = 1
        degree = math.prod(dims.values())
    else:
        _posint("parallel.degree", degree)
        if len(autos) > 1:
            raise PlanError(f"parallel.{' and parallel.'.join(autos)} are both auto; set all but one "
                            f"(their product {formula} must equal parallel.degree={degree})")
        if autos:
            if degree % fixed:
                raise PlanError(f"parallel.degree={degree} is not divisible by the fixed dimensions "
                                f"({', '.join(f'parallel.{d}={v}' for d, v in dims.items() if v != 'auto')}, "
                                f"product {fixed}), so parallel.{autos[0]}=auto has no integer value")
            dims[autos[0]] = degree // fixed
        elif fixed != degree:
            raise PlanError(f"{formula} = {' × '.join(str(dims[d]) for d in DIMS)} = {fixed}, but "
                            f"parallel.degree = {degree}; make them agree (or set one dimension to auto)")
    if dims["cfg"] not in (1, 2):
        raise PlanError(f"parallel.cfg={dims['cfg']}: classifier-free guidance has two branches; allowed 1 or 2")
    fsdp = p.get("fsdp", 1)
    fsdp = degree if fsdp == "auto" else _posint("parallel.fsdp", fsdp)
    if degree % fsdp:
        raise PlanError(f"parallel.fsdp={fsdp} must divide parallel.degree={degree}")
    gpn = _posint("parallel.gpus_per_node", p.get("gpus_per_node", 8))
    overlap = p.get("overlap", True)
    if not isinstance(overlap, bool):
        raise PlanError(f"parallel.overlap must be true or false, got {overlap!r}")
    net = p.get("network") or {}
    intra = p.get("intra_node") or {}
    return Plan(str(p.get("name", "custom")), dims["ulysses"], dims["ring"], dims["cfg"], dims["dp"], fsdp,
                overlap, gpn, tuple(sorted(dict(net).items())), tuple(sorted(dict(intra).items())))


# ------------------------------------------------------------------------ validity


def check_plan(plan: Plan, *, heads: int | None = None, guidance: bool | None = None,
               tokens: int | None = None) -> None:
    """Raise PlanError when the model cannot take ``plan``: Ulysses needs the attention
    heads divisible by its degree; CFG parallel needs guidance on; a sequence-parallel
    degree above the token count is refused."""
    if plan.ulysses > 1 and heads is not None and heads % plan.ulysses:
        ok = [d for d in range(1, heads + 1) if heads % d == 0]
        raise PlanError(f"parallel.ulysses={plan.ulysses}: the DiT's attention has {heads} heads, which "
                        f"Ulysses cannot split {plan.ulysses} ways (it shards heads); use parallel=ring, "
                        f"or parallel=usp with parallel.ulysses in {{{', '.join(map(str, ok))}}} and "
                        f"parallel.ring = {plan.sp} / parallel.ulysses")
    if plan.cfg > 1 and guidance is False:
        raise PlanError("parallel.cfg=2 splits the two classifier-free-guidance branches, but "
                        "workload.guidance=false runs only one; set parallel.cfg=1")
    if tokens is not None and plan.sp > tokens:
        raise PlanError(f"parallel.ulysses × parallel.ring = {plan.sp} exceeds the {tokens} tokens to split")


# ------------------------------------------------------------------------ transform helpers

_EXPANDED = re.compile(r"^(.*)\.(\d+)$")


def _subtree_weights(graph: Graph, scope: Scope) -> dict:
    out = {}
    for n in graph:
        s = n.scope
        while s is not None and s is not scope:
            s = s.parent
        if s is scope:
            for w in n.params.values():
                out[w.key] = w
    return out


def block_units(graph: Graph, stage: str) -> list[Scope]:
    """The transformer blocks of ``stage``: the scopes that hold the most weights among
    (a) a ``repeat`` scope (blocks drawn once, ×N) and (b) sibling scopes named
    ``name.0``, ``name.1``, … (blocks drawn out). Returns the block scopes (one for a
    repeat scope), or [] when the stage has neither."""
    st = graph.stages.get(stage)
    if st is None:
        return []
    cands: list[tuple[int, list[Scope]]] = []
    for s in st.walk():
        if s is st:
            continue
        if s.kind == "repeat":
            wb = sum(w.type.nbytes * w.copies for w in _subtree_weights(graph, s).values())
            cands.append((wb, [s]))
        groups: dict[str, list[Scope]] = {}
        for c in s.children.values():
            m = _EXPANDED.match(c.name)
            if m:
                groups.setdefault(m.group(1), []).append(c)
        for g in groups.values():
            if len(g) > 1:
                wb = sum(sum(w.type.nbytes * w.copies for w in _subtree_weights(graph, c).values()) for c in g)
                cands.append((wb, sorted(g, key=lambda c: int(_EXPANDED.match(c.name).group(2)))))
    cands = [c for c in cands if c[0] > 0]
    if not cands:
        return []
    return max(cands, key=lambda c: c[0])[1]


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


class _Fail(Exception):
    pass


class _Sharder:
    def __init__(self, src: Graph, plan: Plan):
        self.src, self.plan = src, plan
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
        self.units: dict[str, list[Scope]] = {}
        self.unit_ids: dict[str, set[int]] = {}
        self.seq_len: dict[str, int] = {}
        self.unit_bytes: dict[int, int] = {}
        self.src_consumers = {n.id: [] for n in src}
        for n in src:
            for v in n.inputs:
                self.src_consumers[v.producer].append(n)

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
        used = self.names.setdefault(id(scope), set())
        cand, i = want, 1
        while cand in used:
            cand = f"{want}_{i}"
            i += 1
        used.add(cand)
        return cand

    def emit(self, kind, inputs, scope, name, attrs, params=None) -> Node:
        op = get_op(kind)
        where = f"{scope.path}/{name}"
        attrs = op.normalize_attrs(attrs, where)
        outs = op.infer(tuple(v.type for v in inputs), attrs, where)
        return self.g.add_node(kind, self.name(scope, name), scope, inputs, outs, attrs, params or {})

    def comm_node(self, kind, x: Value, scope, name, group: str, size: int, overlap=None, **attrs) -> Value:
        stride = 1 if group in ("sp", "fsdp") else self.plan.stride(group)
        from .comm import Topology, Link
        topo = Topology(self.plan.gpus_per_node, Link("intra", 1, 0), Link("inter", 1, 0))
        node = self.emit(kind, [x], scope, name, {"degree": size, "tier": topo.tier(stride, size), **attrs})
        self.comm[node.id] = {"group": group, "stride": stride, "size": size, "overlap": overlap}
        return node.output(0)

    # ---------------------------------------------------------------- stages
    def _stage_entry(self, src_stage: Scope, stage: Scope):
        name = src_stage.name
        p = self.plan
        if name in SINGLE_DEVICE_STAGES and p.replica > 1:
            self.notes.append(f"{name} runs on one device of each replica (as the reference decodes on rank 0); "
                              f"the other {p.replica - 1} wait")
        if name in FSDP_STAGES and p.fsdp > 1:
            units = self.units.get(name) or []
            total = self.src.stage_weight_bytes(name)
            unit_total = 0
            for u in units:
                per_copy = sum(w.type.nbytes for w in _subtree_weights(self.src, u).values())
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

    # ---------------------------------------------------------------- driving
    def run(self) -> Graph:
        p = self.plan
        for st in self.src.stages:
            self.units[st] = block_units(self.src, st)
            self.unit_ids[st] = {id(u) for u in self.units[st]}
            if p.sp > 1 and st in SP_STAGES:
                ls = [n.inputs[0].shape[-2] for n in self.src.stage_nodes(st)
                      if n.kind == "sdpa" and _inside(n.scope, self.unit_ids[st])]
                if ls:
                    self.seq_len[st] = max(ls)
                    heads = [n.inputs[0].shape[-3] for n in self.src.stage_nodes(st)
                             if n.kind == "sdpa" and n.inputs[0].type.rank >= 3
                             and n.inputs[0].shape[-2] == self.seq_len[st]]
                    check_plan(p, heads=min(heads) if heads else None, tokens=self.seq_len[st])
        for node in self.src:
            self.copy(node)
        # stage outputs must leave whole
        for node in self.src:
            if self.src_consumers[node.id]:
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
        self._remap_meta()
        self.g.meta["parallel"] = {"plan": p.to_dict(), "comm": self.comm, "fsdp": self.fsdp_info,
                                   "notes": self.notes, "gathers": self.fallbacks,
                                   "single_device_stages": [s for s in SINGLE_DEVICE_STAGES if s in self.src.stages],
                                   "seq_len": self.seq_len}
        return self.g

    def _remap_meta(self):
        """Values recorded in ``meta['persistent']`` refer to source node ids: point them
        at the copies."""
        pers = self.src.meta.get("persistent")
        if not pers:
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
        new = self.emit(node.kind, [self.full(v) for v in node.inputs], scope, node.name, dict(node.attrs),
                        node.params)
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
                qs, ks, vs = (self.comm_node("all_to_all", t, scope, f"ulysses_all_to_all_{n}", "ulysses", p.ulysses,
                                             scatter_dim=r - 3, gather_dim=seq)
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
            else:
                o = self.emit("sdpa", [qs, ks, vs], scope, node.name, attrs, node.params)
            out = o.output(0)
            if p.ulysses > 1:
                out = self.comm_node("all_to_all", out, scope, "ulysses_all_to_all_out", "ulysses", p.ulysses,
                                     scatter_dim=seq, gather_dim=r - 3)
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


def _token_axis(shape, L) -> int | None:
    """The axis of ``shape`` that holds the L tokens: the first one of size L past the batch
    axis and before the last (channel) axis, or None."""
    for i, s in enumerate(shape[1:-1], start=1):
        if s == L:
            return i
    return None


def _propagate(node: Node, dims: list) -> tuple[int, list]:
    """For a node whose inputs are sharded along ``dims`` (None: replicated), the output's
    sharded axis and, per input, the axis it must be sharded along (None: read whole).
    Raises _Fail when the op needs whole tokens."""
    kind, cat = node.kind, node.category
    ins = [v.type for v in node.inputs]
    out = node.outputs[0]
    R = out.rank
    if cat in ("elementwise",) or kind in ("concat",):
        aligned = {d + (R - ins[i].rank) for i, d in enumerate(dims) if d is not None}
        if len(aligned) != 1:
            raise _Fail()
        od = aligned.pop()
        if kind == "concat" and (node.attrs["dim"] % R) == od:
            raise _Fail()
        need = []
        for i, t in enumerate(ins):
            p = od - (R - t.rank)
            need.append(p if p >= 0 and t.shape[p] != 1 else None)
        return od, need
    if len(ins) != 1 and kind not in ("linear",):
        raise _Fail()
    d = dims[0]
    if d is None:
        raise _Fail()
    x = ins[0]
    if kind in ("linear",) and d != x.rank - 1:
        return d, [d]
    if cat == "norm" and kind in ("layernorm", "rmsnorm"):
        ns = node.attrs.get("normalized_shape")
        width = len(ns) if isinstance(ns, tuple) else 1
        if d < x.rank - width:
            return d, [d]
        raise _Fail()
    if kind == "softmax":
        if node.attrs["dim"] % x.rank != d:
            return d, [d]
        raise _Fail()
    if kind in ("contiguous", "cast", "dropout"):
        return d, [d]
    if kind in ("slice", "chunk"):
        if node.attrs["dim"] % x.rank != d:
            return d, [d]
        raise _Fail()
    if kind == "transpose":
        a, b = node.attrs["dim0"] % x.rank, node.attrs["dim1"] % x.rank
        return (b if d == a else a if d == b else d), [d]
    if kind == "permute":
        perm = [i % x.rank for i in node.attrs["dims"]]
        return perm.index(d), [d]
    if kind == "expand":
        od = d + (R - x.rank)
        if x.shape[d] != out.shape[od]:
            raise _Fail()
        return od, [d]
    if kind == "pad":
        pads = node.attrs["pad"]
        touched = {x.rank - 1 - i for i in range(len(pads) // 2) if pads[2 * i] or pads[2 * i + 1]}
        if d in touched:
            raise _Fail()
        return d, [d]
    if kind == "reshape":
        return _reshape_axis(x.shape, d, out.shape), [d]
    if cat == "reduction":
        red = {i % x.rank for i in node.attrs["dims"]} if isinstance(node.attrs["dims"], tuple) else {node.attrs["dims"] % x.rank}
        if d in red:
            raise _Fail()
        if node.attrs.get("keepdim"):
            return d, [d]
        return d - sum(1 for i in red if i < d), [d]
    raise _Fail()


def _reshape_axis(shape, d, out) -> int:
    """The output axis of a reshape that carries input axis ``d`` whole (same elements
    before it, same size, or ``d`` merged with the axes after it). Raises _Fail otherwise."""
    before = math.prod(shape[:d])
    acc = 1
    for e, s in enumerate(out):
        if acc == before:
            if s == shape[d]:
                return e
            # merged with following axes: (…, L, C) -> (…, L·C)
            tail = 1
            for k in range(d, len(shape)):
                tail *= shape[k]
                if tail == s and k > d:
                    return e
        if acc > before:
            break
        acc *= s
    raise _Fail()


# ------------------------------------------------------------------------ public


def shard_graph(graph: Graph, plan: Plan) -> Graph:
    """One device's graph under ``plan``: shapes divided where the plan shards them,
    communication nodes inserted, stage invocations divided by CFG parallelism.
    ``meta['parallel']`` describes the plan, each communication node's group and overlap,
    FSDP's resident weights per stage, notes, and the ops before which sharded tokens are
    gathered because the op needs whole tokens (``gathers``, e.g. the DiT's unpatchify). The input graph is not
    modified; an unannotated new graph is returned."""
    return _Sharder(graph, plan).run()


# ------------------------------------------------------------------------ costing


def _opt(cfg, key, default):
    if cfg is None:
        return default
    try:
        from omegaconf import OmegaConf
        v = OmegaConf.select(cfg, key, default=default)
    except Exception:
        v = default
    return default if v is None else v


class DeviceGraph:
    """A plan's per-device graph, annotated once with the hardware-independent passes
    (verify, flops, bytes, memory) so that :meth:`cost` can time it on any hardware."""

    def __init__(self, graph: Graph, plan: Plan, cfg=None):
        from wanir.passes import bytes as bytes_pass
        from wanir.passes import flops, memory, verify

        self.plan, self.cfg = plan, cfg
        self.graph = shard_graph(graph, plan)
        self.kernel = _opt(cfg, "roofline.attention_kernel", "flash2")
        self.fusion = _opt(cfg, "roofline.fusion", "eager")
        self.mode = _opt(cfg, "roofline.mode", "calibrated")
        self.offload = bool(_opt(cfg, "memory.offload_model", False))
        self.t5_cpu = bool(_opt(cfg, "memory.t5_cpu", False))
        g = self.graph
        verify.run(g)
        self.nodes = list(g)
        self.flops = flops.run(g)
        bytes_pass.run(g, fusion=self.fusion, attention_kernel=self.kernel, nodes=self.nodes)
        self.memory = memory.run(g, attention_kernel=self.kernel, offload_model=self.offload, t5_cpu=self.t5_cpu,
                                 nodes=self.nodes)
        self.comm = g.meta["parallel"]["comm"]
        self.count = {n.id: n.scope.count_per_invocation for n in self.nodes}

    def cost(self, hw, single_time_s: float | None = None) -> "MultiDeviceCost":
        """Time this device graph on ``hw`` (a :class:`wanir.hardware.Hardware`): the roofline
        for compute nodes, the alpha-beta model (backends/comm.py) for communication nodes.
        Writes ``time_s``, ``comm_bytes``, ``comm_s``, ``exposed_s`` and ``tier`` on every
        communication node; returns a :class:`MultiDeviceCost`."""
        from wanir import hardware as hwlib
        from wanir.passes import memory as mem_pass

        from . import comm as commlib
        from . import roofline

        p, g = self.plan, self.graph
        host_stages = mem_pass.HOST_STAGES_T5_CPU if self.t5_cpu else ()
        host = hwlib.load(_opt(self.cfg, "memory.host", "host-cpu")) if host_stages else None
        wb = self.weight_bytes()
        rf = roofline.run(g, hw, mode=self.mode, attention_kernel=self.kernel, host=host, host_stages=host_stages,
                          offload_model=self.offload, nodes=self.nodes, weight_bytes=wb,
                          allow_tf32_conv=roofline.timing_options(self.cfg)[1])
        topo = commlib.topology(hw, p.gpus_per_node, dict(p.network), dict(p.intra_node))
        # communication nodes on their link tier
        for nid, e in self.comm.items():
            n = g.node(nid)
            t, tier = commlib.collective_time(n.kind, n.inputs[0].type.nbytes, n.outputs[0].nbytes, e["size"], topo,
                                              e["stride"], n.attrs.get("steps", 1))
            c = n.costs
            c.update(comm_bytes=commlib.volume(n.kind, n.inputs[0].type.nbytes, n.outputs[0].nbytes, e["size"],
                                               n.attrs.get("steps", 1)),
                     comm_s=t, time_s=t, exposed_s=t, tier=tier, compute_s=0.0, memory_s=0.0,
                     bound="communication")
        if p.overlap:
            self._overlap()
        stages = {}
        for s, scope in g.stages.items():
            stages[s] = {"name": s, "invocations": scope.repeat, "compute_s": 0.0, "comm_s": 0.0, "exposed_comm_s": 0.0,
                         "comm_bytes": 0, "tensor_flops": self.flops[s]["tensor_flops"],
                         "vector_flops": self.flops[s]["vector_flops"], "by_class": {}}
        for n in self.nodes:
            r = stages[n.stage]
            k = self.count[n.id]
            c = n.costs
            if n.id in self.comm:
                r["comm_s"] += c["comm_s"] * k
                r["exposed_comm_s"] += c["exposed_s"] * k
                r["comm_bytes"] += c["comm_bytes"] * k
                cls = "communication"
                t = c["exposed_s"] * k
            else:
                r["compute_s"] += c["time_s"] * k
                t = c["time_s"] * k
                cls = ("attention" if n.category == "attention" else n.category) if c["bound"] == "compute" \
                    else "memory-bound ops"
            r["by_class"][cls] = r["by_class"].get(cls, 0.0) + t * g.stages[n.stage].repeat
        mem_stages = {}
        for s, r in stages.items():
            r["compute_s"] = max(r["compute_s"], rf["issue_s"][s])      # a stage is at least its CPU issue time
            r["time_per_invocation_s"] = r["compute_s"] + r["exposed_comm_s"]
            r["time_s"] = r["time_per_invocation_s"] * r["invocations"]
            ms = dict(self.memory["stages"][s])
            ms["weight_bytes"] = wb[s]
            mem_stages[s] = ms
            r["weight_bytes"] = wb[s]
            r["peak_activation_bytes"] = ms["peak_activation_bytes"]
            r["devices"] = 1 if s in SINGLE_DEVICE_STAGES else p.replica
        pipe = mem_pass.pipeline_peak(mem_stages, self.offload)
        return MultiDeviceCost(self, hw, stages, rf["transfer_s"], pipe, single_time_s)

    def weight_bytes(self) -> dict:
        """Resident weight bytes per stage on one device (FSDP stages hold 1/fsdp), ints."""
        f = self.graph.meta["parallel"]["fsdp"]
        return {s: (f[s]["resident_weight_bytes"] if s in f else r["weight_bytes"])
                for s, r in self.memory["stages"].items()}

    def _overlap(self):
        """Hide overlappable communication behind the compute it overlaps: ring exchanges
        behind their attention (all steps), an FSDP block gather behind the previous block."""
        g = self.graph
        ring: dict[int, list] = {}
        for nid, e in self.comm.items():
            ov = e.get("overlap")
            if ov and ov.startswith("sdpa:"):
                ring.setdefault(int(ov.split(":")[1]), []).append(g.node(nid))
        for sid, comms in ring.items():
            sd = g.node(sid)
            hide = sd.costs["time_s"] * sd.scope.repeat          # the attention's ring steps
            total = sum(n.costs["comm_s"] for n in comms)
            left = max(0.0, total - hide)
            for n in comms:
                n.costs["exposed_s"] = left * n.costs["comm_s"] / total if total else 0.0
        blocks = [g.node(nid) for nid, e in self.comm.items() if e.get("overlap") == "previous_block"]
        first_seen: set[str] = set()
        for n in blocks:
            unit = n.scope
            t_block = 0.0
            per_unit = unit.count_per_invocation
            for m in self.nodes:
                if m.id in self.comm or m.stage != n.stage:
                    continue
                s = m.scope
                while s is not None and s is not unit:
                    s = s.parent
                if s is unit:
                    t_block += m.costs["time_s"] * self.count[m.id] / per_unit
            t = n.costs["comm_s"]
            hidden = max(0.0, t - t_block)
            c = unit.repeat if unit.kind == "repeat" else 1
            if unit.kind == "repeat":
                n.costs["exposed_s"] = (t + (c - 1) * hidden) / c      # the first block's gather is not hidden
            elif n.stage in first_seen:
                n.costs["exposed_s"] = hidden
            else:
                first_seen.add(n.stage)
                n.costs["exposed_s"] = t


@dataclass
class MultiDeviceCost:
    """Per-device costs of one plan on one hardware. ``stages``: per stage (per device)
    ``invocations``, ``compute_s`` and ``comm_s`` / ``exposed_comm_s`` per invocation
    (seconds), ``time_s`` per generation, ``comm_bytes`` per invocation, resident
    ``weight_bytes``, ``peak_activation_bytes``, ``devices`` that run it, and ``by_class``
    (seconds per generation by op class). See :meth:`to_dict` for the totals."""

    device_graph: DeviceGraph
    hardware: object
    stages: dict
    transfer_s: float
    memory: dict
    single_time_s: float | None = None

    @property
    def plan(self) -> Plan:
        return self.device_graph.plan

    @property
    def graph(self) -> Graph:
        """The annotated per-device graph."""
        return self.device_graph.graph

    @property
    def time_s(self) -> float:
        """Seconds per video (one replica's latency)."""
        return sum(r["time_s"] for r in self.stages.values()) + self.transfer_s

    @property
    def comm_s(self) -> float:
        """Exposed communication seconds per video."""
        return sum(r["exposed_comm_s"] * r["invocations"] for r in self.stages.values())

    @property
    def peak_memory_bytes(self) -> int:
        """Peak memory of one device in bytes (int)."""
        return self.memory["peak_memory_bytes"]

    @property
    def fits(self) -> bool:
        """Whether the per-device peak fits the hardware's memory."""
        return self.peak_memory_bytes <= self.hardware.memory_bytes

    @property
    def videos_per_hour(self) -> float:
        """Throughput of all ``degree`` devices (dp replicas in parallel)."""
        return self.plan.dp * 3600.0 / self.time_s

    @property
    def speedup(self) -> float | None:
        """Throughput on ``degree`` devices over one device's (= latency speedup × dp)."""
        if self.single_time_s is None:
            return None
        return self.plan.dp * self.single_time_s / self.time_s

    @property
    def efficiency(self) -> float | None:
        """Parallel efficiency: speedup / devices."""
        s = self.speedup
        return None if s is None else s / self.plan.degree

    def bottleneck(self) -> tuple[str, float]:
        """(op class, share of the per-video time) of the largest contributor: an op class
        of compute-bound nodes (matmul, attention, conv, …), memory-bound ops, or exposed
        communication."""
        acc: dict[str, float] = {}
        for r in self.stages.values():
            for k, v in r["by_class"].items():
                acc[k] = acc.get(k, 0.0) + v
        if self.transfer_s:
            acc["host transfer"] = self.transfer_s
        k = max(acc, key=acc.get)
        return k, acc[k] / self.time_s if self.time_s else 0.0

    def to_dict(self) -> dict:
        """Plain data: plan, hardware, per-stage records and the totals (``time_s``,
        ``comm_s``, ``comm_share``, ``peak_memory_bytes``, ``fits``, ``speedup``,
        ``latency_speedup``, ``efficiency``, ``videos_per_hour``, ``bottleneck``), notes."""
        b, share = self.bottleneck()
        lat = None if self.single_time_s is None else self.single_time_s / self.time_s
        return {"plan": self.plan.to_dict(), "hardware": self.hardware.name, "devices": self.plan.degree,
                "stages": [{k: v for k, v in r.items()} for r in self.stages.values()],
                "total": {"time_s": self.time_s, "comm_s": self.comm_s,
                          "comm_share": self.comm_s / self.time_s if self.time_s else 0.0,
                          "peak_memory_bytes": self.peak_memory_bytes, "fits": self.fits,
                          "single_device_time_s": self.single_time_s, "speedup": self.speedup,
                          "latency_speedup": lat, "efficiency": self.efficiency,
                          "videos_per_hour": self.videos_per_hour, "bottleneck": b, "bottleneck_share": share},
                "notes": list(self.graph.meta["parallel"]["notes"])}


def plan_from(plan, devices: int | None = None) -> Plan:
    """A Plan from a Plan, a plan name or a ``parallel`` config mapping; with ``devices``
    given, the plan's degree must equal it (a name takes it as its degree)."""
    if isinstance(plan, Plan):
        p = plan
    elif isinstance(plan, str):
        p = make_plan(plan, devices)
    else:
        d = dict(plan) if isinstance(plan, dict) else plan
        p = resolve_plan(d if devices is None else {**_container(d), "degree": devices})
    if devices is not None and p.degree != devices:
        raise PlanError(f"the plan {p.label} uses {p.degree} devices, not {devices}")
    return p


def _container(d):
    try:
        from omegaconf import DictConfig, OmegaConf
        if isinstance(d, DictConfig):
            return OmegaConf.to_container(d, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(d)


def multi_device_cost(estimate_or_graph, hardware=None, devices: int | None = None, plan=None,
                      cfg=None) -> MultiDeviceCost:
    """Cost one generation on ``devices`` devices of ``hardware`` (a name or a Hardware;
    default: the estimate's) under ``plan`` (a Plan, a name such as ``"fsdp+ulysses"``, or a
    ``parallel`` mapping; default: the config's ``parallel``, else single). ``estimate_or_graph`` is a :class:`wanir.Estimate` or an
    unannotated/annotated pipeline Graph (``cfg`` then gives the roofline and memory options).
    Returns a :class:`MultiDeviceCost`: per-device time, memory and communication per stage
    and in total (seconds, bytes), speedup and parallel efficiency against one device of the
    same hardware."""
    from wanir import hardware as hwlib
    from wanir.estimate import Estimate

    if isinstance(estimate_or_graph, Estimate):
        graph, cfg = estimate_or_graph.graph, (cfg if cfg is not None else estimate_or_graph.config)
    else:
        graph = estimate_or_graph
    if hardware is None:
        hw = hwlib.from_config(cfg)
    elif isinstance(hardware, str):
        hw = hwlib.load(hardware)
    else:
        hw = hardware
    if plan is None:
        plan = cfg.get("parallel") if cfg is not None and cfg.get("parallel") is not None else "single"
    p = plan_from(plan, devices)
    check_plan(p, guidance=_guidance(graph))
    single = DeviceGraph(graph, Plan(), cfg).cost(hw)
    if p.degree == 1 and p.fsdp == 1:
        single.single_time_s = single.time_s
        return single
    return DeviceGraph(graph, p, cfg).cost(hw, single.time_s)


def _guidance(graph: Graph):
    wl = graph.meta.get("workload") or {}
    return wl.get("guidance")


# ------------------------------------------------------------------------ reports


def _fmt_s(v):
    from .report import fmt_time
    return fmt_time(v)


def _fmt_b(v):
    from .report import fmt_bytes
    return fmt_bytes(v)


def cost_rows(cost: MultiDeviceCost) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-device table: one row per stage plus a total row."""
    head = ["stage", "devices", "invocations/device", "compute", "comm", "comm exposed", "comm bytes", "time",
            "weights/device", "peak act."]
    body = []
    for r in cost.stages.values():
        k = r["invocations"]
        body.append([r["name"], str(r["devices"]), str(k), _fmt_s(r["compute_s"] * k), _fmt_s(r["comm_s"] * k),
                     _fmt_s(r["exposed_comm_s"] * k), _fmt_b(r["comm_bytes"] * k), _fmt_s(r["time_s"]),
                     _fmt_b(r["weight_bytes"]), _fmt_b(r["peak_activation_bytes"])])
    body.append(["total", str(cost.plan.degree), "", _fmt_s(sum(r["compute_s"] * r["invocations"] for r in cost.stages.values())),
                 _fmt_s(sum(r["comm_s"] * r["invocations"] for r in cost.stages.values())), _fmt_s(cost.comm_s),
                 _fmt_b(sum(r["comm_bytes"] * r["invocations"] for r in cost.stages.values())), _fmt_s(cost.time_s),
                 _fmt_b(sum(r["weight_bytes"] for r in cost.stages.values())), _fmt_b(cost.peak_memory_bytes)])
    return head, body


def summary_lines(cost: MultiDeviceCost) -> list[str]:
    """Plain-text lines under the table: time, communication share, speedup, memory, notes."""
    d = cost.to_dict()["total"]
    gib = 2**30
    lines = [f"per video: {_fmt_s(d['time_s'])} on {cost.plan.degree} × {cost.hardware.name} "
             f"(one device: {_fmt_s(d['single_device_time_s'])}); communication exposed {_fmt_s(d['comm_s'])} "
             f"({100 * d['comm_share']:.1f} % of the time)",
             f"speedup {d['speedup']:.2f}× on {cost.plan.degree} devices (latency {d['latency_speedup']:.2f}×), "
             f"parallel efficiency {100 * d['efficiency']:.0f} %, {d['videos_per_hour']:.1f} videos/hour",
             f"peak memory per device {d['peak_memory_bytes'] / gib:.1f} GiB of {cost.hardware.memory_bytes / gib:.0f} GiB"
             + ("" if d["fits"] else " — does not fit"),
             f"bottleneck: {d['bottleneck']} ({100 * d['bottleneck_share']:.0f} % of the time)"]
    lines += [f"note: {n}" for n in cost.graph.meta["parallel"]["notes"]]
    return lines


def render_cost(cost: MultiDeviceCost, fmt: str = "table") -> str | None:
    """Render a MultiDeviceCost as 'json', 'md' or 'csv' (a string); 'table' prints a rich
    table and returns None."""
    import json
    head, body = cost_rows(cost)
    if fmt == "json":
        return json.dumps(cost.to_dict(), indent=2, default=str)
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["stage", "devices", "invocations", "compute_s", "comm_s", "exposed_comm_s", "comm_bytes",
                    "time_s", "weight_bytes", "peak_activation_bytes"])
        for r in cost.stages.values():
            k = r["invocations"]
            w.writerow([r["name"], r["devices"], k, r["compute_s"] * k, r["comm_s"] * k, r["exposed_comm_s"] * k,
                        r["comm_bytes"] * k, r["time_s"], r["weight_bytes"], r["peak_activation_bytes"]])
        return buf.getvalue()
    if fmt == "md":
        lines = [f"**{cost.graph.meta.get('model', cost.graph.name)}** on {cost.plan.degree} × {cost.hardware.name}, "
                 f"plan {cost.plan.label}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines + [""] + summary_lines(cost)) + "\n"
    if fmt == "table":
        from rich.console import Console
        from rich.table import Table
        t = Table(title=f"{cost.graph.meta.get('model', cost.graph.name)} per device: {cost.plan.degree} × "
                        f"{cost.hardware.name}, plan {cost.plan.label}")
        for h in head:
            t.add_column(h, justify="left" if h == "stage" else "right")
        for i, r in enumerate(body):
            t.add_row(*r, end_section=(i == len(body) - 2))
        con = Console()
        con.print(t)
        for line in summary_lines(cost):
            con.print(line)
        return None
    raise ValueError(f"unknown format {fmt!r}; allowed: table, json, md, csv")


def is_multi_device(cfg) -> bool:
    """Whether the config's ``parallel`` plan uses more than one device or shards weights."""
    if cfg is None or cfg.get("parallel") is None:
        return False
    p = resolve_plan(cfg.parallel)
    return p.degree > 1 or p.fsdp > 1
