"""memory: resident weight bytes per stage, peak live activation bytes of one invocation,
and the pipeline's peak GPU memory under a residency policy.

Liveness (one invocation of a stage, nodes in topological = insertion order):

- Every non-view output owns a buffer, allocated when its node runs. A view's outputs alias
  the buffer of its input (size 0). Weights (``parameter`` outputs) are resident, not
  activations. A value made by another stage is live from the stage's start.
- A buffer is freed after the last node that reads it (directly or through a view). A value
  nobody reads (the stage's result) stays live to the end of the invocation.
- While a node runs, its inputs and outputs are live together, plus its transient
  workspace: under a matmul or convolution whose weights are stored at another dtype than it
  computes in (bf16 autocast over an fp32 checkpoint), the converted copy of its weights;
  under ``attention_kernel="math"``, the score and probability matrices (2 × B·H·Lq·Lk
  elements). Flash kernels need no workspace worth counting.
- **Repeated and looped scopes** (a block drawn once ×40, a VAE chunk loop): the copies run
  one after another and each copy's intermediates die inside it, so the peak of all copies
  is the peak of one copy's walk, with one correction for what stays live *across* copies:
  a value made outside the scope and read inside it is read again by every copy, so it
  stays live until the end of the scope's walk — except the carried state (copy k's output
  is copy k+1's input), which is freed at its last use within the copy as the real input of
  each copy is. The carried state is recognized as an input of the scope that is not read
  after the scope and has the type of one of the scope's outputs (a value made inside it
  and read after it); each output type is matched once.
- **Persistent values** — ``graph.meta['persistent']``, a list of Values or (node id, output
  index) pairs — are live from the start of the outermost repeated or looped scope around
  their producer (from their producer, if there is none) to the end of the invocation. The
  VAE marks its causal-convolution feature cache this way: it is live across chunks.

Residency (pipeline peak): by default every GPU stage's weights are resident together, and
the peak is their sum plus the largest stage activation peak. ``offload_model`` keeps only
the running stage's weights on the GPU: the peak is the largest (weights + activations) of
one stage. ``t5_cpu`` runs the text encoder on the host: it holds no GPU memory.
"""
from __future__ import annotations

from math import prod

from wanir.graph import Graph
from wanir.ops import OPS
from wanir.options import DEFAULT_ATTENTION_KERNEL
from wanir.passes import allocator as alloc_model
from wanir.passes.bytes import AUTOCAST_CATEGORIES, buffer_roots, persistent_values
from wanir.passes.experts import expert_weight_bytes

HOST_STAGES_T5_CPU = ("text_encoder",)


def workspace_bytes(node, attention_kernel: str = DEFAULT_ATTENTION_KERNEL) -> int:
    """Transient bytes a node needs while it runs, besides its inputs and outputs (an int):
    converted weight copies under autocast, the materialized scores of math attention."""
    ws = 0
    cat = OPS[node.kind].category
    if node.params and cat in AUTOCAST_CATEGORIES and node.inputs:
        compute = node.inputs[0].type.dtype
        for w in node.params.values():
            if w.type.dtype != compute:
                ws += compute.nbytes(w.type.numel)
    if cat == "attention" and attention_kernel == "math":
        q, k = node.inputs[0].type, node.inputs[1].type
        ws += 2 * q.dtype.nbytes(prod(q.shape[:-1]) * k.shape[-2])
    return ws


def stage_liveness(graph: Graph, stage: str, nodes=None, attention_kernel: str = DEFAULT_ATTENTION_KERNEL,
                   roots=None, persistent=None, events: bool = False) -> dict:
    """Peak live activation bytes of one invocation of ``stage``. Returns
    {"peak_activation_bytes": int, "peak_node": path of the node at the peak}; with
    ``events``, also "events": the invocation's allocations and frees in order, as
    ("alloc", key, bytes) and ("free", key) tuples (the allocator's input, passes/allocator.py)."""
    nodes = [n for n in graph if n.stage == stage] if nodes is None else nodes
    if not nodes:
        return {"peak_activation_bytes": 0, "peak_node": None, **({"events": []} if events else {})}
    roots = buffer_roots(graph) if roots is None else roots
    persistent = persistent_values(graph) if persistent is None else persistent
    pos: dict[int, int] = {}
    end = len(nodes) - 1

    # spans of repeated scopes
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    rep_cache: dict[int, tuple] = {}
    reps_of = []                          # per position: the node's repeated scopes (Scope.repeated)
    for i, n in enumerate(nodes):
        pos[n.id] = i
        sc = n.scope
        reps = rep_cache.get(id(sc))
        if reps is None:
            reps = rep_cache[id(sc)] = sc.repeated
        reps_of.append(reps)
        for a in reps:
            k = id(a)
            if k not in first:
                first[k] = i
            last[k] = i

    # buffers: size, allocation position, last use
    size: dict[tuple[int, int], int] = {}
    alloc: dict[tuple[int, int], int] = {}
    use: dict[tuple[int, int], int] = {}
    ext_in: dict[int, list] = {}          # scope id -> [(root, first consumer pos)] made outside it
    rtype: dict[tuple[int, int], object] = {}
    for i, n in enumerate(nodes):
        if OPS[n.kind].view:
            continue
        nid = n.id
        if n.kind != "parameter":
            for j, t in enumerate(n.outputs):
                r = (nid, j)
                size[r] = t.nbytes
                alloc[r] = i
                rtype[r] = t
        reps = reps_of[i]
        for v in n.inputs:
            r = (v.producer, v.index)
            r = roots.get(r, r)
            if r not in size:
                if r[0] in pos:         # a view of a weight, or a parameter: resident, not an activation
                    continue
                prod_node = graph.node(r[0])   # made by another stage: live from the start
                if prod_node.kind == "parameter":
                    continue
                size[r] = prod_node.outputs[r[1]].nbytes
                alloc[r] = 0
                rtype[r] = prod_node.outputs[r[1]]
            use[r] = i                  # positions only grow: the last reader so far
            if reps:
                ar = alloc[r]
                outside = ar == 0 and r[0] not in pos
                for a in reps:
                    if outside or ar < first[id(a)]:
                        lst = ext_in.setdefault(id(a), [])
                        if not lst or lst[-1] != r:
                            lst.append(r)

    # outputs of each repeated scope: made inside it, read after it
    out_types: dict[int, list] = {}
    for r, a_pos in alloc.items():
        if r[0] not in pos:
            continue
        u = use.get(r)
        if u is None:
            continue
        for a in reps_of[a_pos]:
            if u > last[id(a)]:
                out_types.setdefault(id(a), []).append(rtype[r])

    # values read inside a repeated scope stay live to its end, except the carried state
    plain_use = dict(use)
    for k, ins in ext_in.items():
        outs = list(out_types.get(k, ()))
        seen = set()
        for r in ins:
            if r in seen:
                continue
            seen.add(r)
            if plain_use[r] <= last[k] and rtype[r] in outs:
                outs.remove(rtype[r])
                continue
            if use[r] < last[k]:
                use[r] = last[k]

    # persistent values live from the outermost repeated scope around them to the end
    for r in persistent:
        if r in size and r[0] in pos:
            reps = reps_of[alloc[r]]
            if reps:
                alloc[r] = first[id(reps[-1])]
            use[r] = end

    delta_alloc = [0] * (end + 1)
    delta_free = [0] * (end + 1)
    allocs: dict[int, list] = {}          # position -> buffers allocated / freed there, in order
    frees: dict[int, list] = {}
    for r, s in size.items():
        if s == 0:
            continue
        a, u = alloc[r], use.get(r, end)
        delta_alloc[a] += s
        delta_free[u] += s
        if events:
            allocs.setdefault(a, []).append(r)
            frees.setdefault(u, []).append(r)
    live = peak = 0
    peak_i = 0
    ev = [] if events else None
    for i, n in enumerate(nodes):
        live += delta_alloc[i]
        cat = OPS[n.kind].category
        # workspace_bytes is zero unless the node owns weights it may convert, or is attention
        if (n.params and cat in AUTOCAST_CATEGORIES) or cat == "attention":
            ws = workspace_bytes(n, attention_kernel)
        else:
            ws = 0
        cur = live + ws
        if cur > peak:
            peak, peak_i = cur, i
        live -= delta_free[i]
        if events:
            a = allocs.get(i)
            if a:
                for r in a:
                    ev.append(("alloc", r, size[r]))
            if ws:
                ev += [("alloc", ("workspace", i), ws), ("free", ("workspace", i))]
            f = frees.get(i)
            if f:
                for r in f:
                    ev.append(("free", r))
    out = {"peak_activation_bytes": peak, "peak_node": nodes[peak_i].path}
    if events:
        out["events"] = ev
    return out


def run(graph: Graph, attention_kernel: str = DEFAULT_ATTENTION_KERNEL, offload_model: bool = False,
        t5_cpu: bool = False, nodes: list | None = None, reserve_bytes: int = 0,
        resident_weight_bytes: dict | None = None, expandable_segments: bool = False,
        empty_cache: str = "never") -> dict:
    """Annotate the graph's stages; return {"stages": {stage: {"weight_bytes",
    "peak_activation_bytes", "peak_node", "on_gpu"}}, plus the pipeline record of
    :func:`pipeline_peak` under "pipeline"}. Bytes are ints; weight bytes are resident
    bytes at the storage dtype (all copies of repeated weights). ``reserve_bytes``: the CUDA
    context, added to the peak as its own term; ``resident_weight_bytes``: per stage, the
    weight bytes that are on the GPU at once when that is less than all of them (block-level
    weight streaming). The generation's allocations are replayed through PyTorch's caching
    allocator (passes/allocator.py) with ``expandable_segments`` and the runtime's
    ``empty_cache`` rule; the replay's input is returned under "allocator"
    (:func:`pipeline_peak` takes it)."""
    by_stage: dict[str, list] = {s: [] for s in graph.stages}
    weights: dict[str, dict[str, int]] = {s: {} for s in graph.stages}
    nodes = list(graph) if nodes is None else nodes
    tensors: dict[str, list[int]] = {s: [] for s in graph.stages}
    for n in nodes:
        stage = n.scope.stage_name
        by_stage[stage].append(n)
        if n.params:
            wd = weights[stage]
            for w in n.params.values():
                if w.key not in wd:
                    nb = w.type.nbytes
                    wd[w.key] = nb * w.copies
                    tensors[stage] += [nb] * w.copies
    roots = buffer_roots(nodes)
    persistent = persistent_values(graph)
    stages = {}
    events = {}
    for s, nodes in by_stage.items():
        rec = stage_liveness(graph, s, nodes, attention_kernel, roots, persistent, events=True)
        events[s] = alloc_model.Program(rec.pop("events"))
        rec["weight_bytes"] = sum(weights[s].values())
        if resident_weight_bytes and s in resident_weight_bytes:
            rec["weight_bytes"] = min(rec["weight_bytes"], int(resident_weight_bytes[s]))
        rec["on_gpu"] = not (t5_cpu and s in HOST_STAGES_T5_CPU)
        experts = expert_weight_bytes(graph, s)
        if experts:
            # two experts (Wan2.2 A14B): offloading keeps only the running expert on the GPU
            one = sum(weights[s].values()) - sum(experts.values()) + max(experts.values())
            rec["offload_weight_bytes"] = min(rec["weight_bytes"], one)
            if offload_model:
                rec["resident_weight_bytes"] = rec["offload_weight_bytes"]
        stages[s] = rec
    i2v = graph.meta.get("model_task") == "i2v"
    replay = {"events": events, "weights": tensors, "order": tuple(graph.stages),
              "invocations": {s: sc.repeat for s, sc in graph.stages.items()},
              "expandable_segments": bool(expandable_segments),
              "empty_cache": frozenset(alloc_model.empty_cache_points(empty_cache, offload_model, i2v))}
    return {"stages": stages, "pipeline": pipeline_peak(stages, offload_model, reserve_bytes, replay),
            "allocator": replay}


def _resident_tensors(tensors: list[int], budget: int) -> list[int]:
    """The weight tensors on the GPU when only ``budget`` bytes of ``tensors`` are: whole
    tensors in order while they fit, then the rest of the budget as one tensor (a shard)."""
    if sum(tensors) <= budget:
        return list(tensors)
    out, left = [], int(budget)
    for t in tensors:
        if t > left:
            break
        out.append(t)
        left -= t
    if left > 0:
        out.append(left)
    return out


def pipeline_peak(stages: dict, offload_model: bool = False, reserve_bytes: int = 0,
                  replay: dict | None = None) -> dict:
    """Peak GPU memory of one generation under the residency policy. ``stages`` maps stage
    name to {"weight_bytes", "peak_activation_bytes", "on_gpu"}. Returns
    {"peak_memory_bytes", "peak_stage", "weight_bytes", "activation_bytes", "reserve_bytes",
    "peak_allocated_bytes", "peak_reserved_bytes"}: the peak the process holds
    (``peak_reserved_bytes`` + ``reserve_bytes``), the stage running at the tensors' peak,
    the resident weights and live activations at that moment, the CUDA context
    (``reserve_bytes``), and the peaks of what tensors occupy and of what PyTorch's caching
    allocator reserves for them (bytes, ints). ``replay``: the allocator input of
    :func:`run` (its "allocator" record); without it both peaks are weights + activations."""
    gpu = {s: r for s, r in stages.items() if r.get("on_gpu", True)}
    if not gpu:
        return {"peak_memory_bytes": 0, "peak_stage": None,
                "weight_bytes": 0, "activation_bytes": 0, "reserve_bytes": 0, "peak_allocated_bytes": 0,
                "peak_reserved_bytes": 0}
    if offload_model:
        # a stage of two experts holds one expert at a time ("offload_weight_bytes")
        wb = {k: r.get("offload_weight_bytes", r["weight_bytes"]) for k, r in gpu.items()}
        s = max(gpu, key=lambda k: wb[k] + gpu[k]["peak_activation_bytes"])
        w, a = wb[s], gpu[s]["peak_activation_bytes"]
    else:
        s = max(gpu, key=lambda k: gpu[k]["peak_activation_bytes"])
        w, a = sum(r["weight_bytes"] for r in gpu.values()), gpu[s]["peak_activation_bytes"]
    allocated = reserved = w + a
    if replay is not None:
        prog = {}
        for k, r in gpu.items():
            budget = r.get("offload_weight_bytes", r["weight_bytes"]) if offload_model else r["weight_bytes"]
            prog[k] = {"events": replay["events"].get(k, ()), "invocations": replay["invocations"].get(k, 1),
                       "weights": _resident_tensors(replay["weights"].get(k, []), budget)}
        peaks = alloc_model.replay_pipeline(prog, replay["order"], offload_model, replay["empty_cache"],
                                            replay["expandable_segments"])
        allocated, reserved = peaks["peak_allocated_bytes"], peaks["peak_reserved_bytes"]
    return {"peak_memory_bytes": reserved + reserve_bytes, "peak_stage": s, "weight_bytes": w, "activation_bytes": a,
            "reserve_bytes": reserve_bytes, "peak_allocated_bytes": allocated, "peak_reserved_bytes": reserved}


def fit_message(pipeline: dict, capacity_bytes: int, hardware: str, offload_model: bool = False,
                t5_cpu: bool = False) -> str | None:
    """None if the pipeline's peak fits ``capacity_bytes``; else a message saying by how
    much it does not fit and at which stage. What would help is not guessed here: the
    estimate's driver re-estimates candidate changes and names those that fit
    (wanir/fit_hints.py). ``offload_model`` and ``t5_cpu`` are accepted for callers and unused."""
    need = pipeline["peak_memory_bytes"]
    if need <= capacity_bytes:
        return None
    gib = 2**30
    res = pipeline.get("reserve_bytes", 0)
    tensors = pipeline["weight_bytes"] + pipeline["activation_bytes"]
    cached = max(0, pipeline.get("peak_reserved_bytes", tensors) - tensors)
    return (f"does not fit: {pipeline['peak_stage']} needs {need / gib:.1f} GiB of GPU memory at its peak "
            f"({pipeline['weight_bytes'] / gib:.1f} GiB weights + {pipeline['activation_bytes'] / gib:.1f} GiB "
            f"activations" + (f" + {cached / gib:.1f} GiB held by PyTorch's caching allocator" if cached else "") +
            (f" + {res / gib:.1f} GiB CUDA context" if res else "") +
            f"), {hardware} has {capacity_bytes / gib:.1f} GiB: {(need - capacity_bytes) / gib:.1f} GiB too much")


#: a workload whose peak lies within this fraction of the GPU's capacity gets a "tight" warning
TIGHT_FRACTION = 0.05


def tight_message(pipeline: dict, capacity_bytes: int, hardware: str) -> str | None:
    """A warning when the peak fits but lies within TIGHT_FRACTION (5 %) of
    ``capacity_bytes``: fragmentation or a slightly different stack can tip it over. None
    otherwise."""
    need = pipeline["peak_memory_bytes"]
    if need > capacity_bytes or need < (1 - TIGHT_FRACTION) * capacity_bytes:
        return None
    gib = 2**30
    return (f"tight: the peak of {need / gib:.1f} GiB ({pipeline['peak_stage']}) is within "
            f"{100 * TIGHT_FRACTION:.0f} % of {hardware}'s {capacity_bytes / gib:.1f} GiB "
            f"({(capacity_bytes - need) / gib:.2f} GiB left); allocator fragmentation may not leave that much")
