"""Two-expert stages (the Wan2.2 A14B models): the per-expert view of an annotated graph.

A frontend that lowers a stage as several experts of one architecture (frontends/wan22.py)
records them as data on the graph, ``graph.meta["experts"][stage]``: one record per expert
(``name``, ``steps``, ``guidance_scale``, ``calls``), each expert's nodes under the scope
``stage/<name>/``, its DiT calls counted by the loop scope ``stage/<name>/calls``. The passes,
the results and the parallel backend read experts from that data through this module, so none
of them imports a model frontend.
"""
from __future__ import annotations


def _expert_nodes(graph, stage: str, name: str):
    prefix = f"{stage}/{name}/"
    return [n for n in graph if n.path.startswith(prefix)]


def expert_weight_bytes(graph, stage: str) -> dict[str, int]:
    """Resident weight bytes of each expert of ``stage`` ({} when it has no experts)."""
    out = {}
    for e in graph.meta.get("experts", {}).get(stage, ()):
        ws = {w.key: w for n in _expert_nodes(graph, stage, e["name"]) for w in n.params.values()}
        out[e["name"]] = sum(w.type.nbytes * w.copies for w in ws.values())
    return out


def expert_breakdown(graph, stage: str) -> list[dict] | None:
    """Per-expert records of ``stage`` of an annotated graph, or None without experts: name,
    steps, guidance_scale, calls (DiT calls per generation), params, weight_bytes, and per
    generation tensor_flops, vector_flops, bytes and time_s (None before the roofline ran)."""
    experts = graph.meta.get("experts", {}).get(stage)
    if not experts:
        return None
    rep = graph.stages[stage].repeat
    out = []
    for e in experts:
        nodes = _expert_nodes(graph, stage, e["name"])
        ws = {w.key: w for n in nodes for w in n.params.values()}
        rec = dict(e, params=sum(w.numel for w in ws.values()),
                   weight_bytes=sum(w.type.nbytes * w.copies for w in ws.values()))
        for key in ("tensor_flops", "vector_flops"):
            rec[key] = sum(n.costs.get(key, 0) * n.count for n in nodes) * rep
        have_bytes = all("bytes_read" in n.costs for n in nodes)
        rec["bytes"] = sum((n.costs["bytes_read"] + n.costs["bytes_written"]) * n.count for n in nodes) * rep \
            if have_bytes else None
        have_time = all("time_s" in n.costs for n in nodes)
        rec["time_s"] = sum(n.costs["time_s"] * n.count for n in nodes) * rep if have_time else None
        out.append(rec)
    return out


def apply_to_stage(graph, result, additive=("tensor_flops", "vector_flops", "bytes", "time_s")) -> None:
    """Make a StageResult of a two-expert stage read as the model runs: ``invocations`` = the
    total DiT calls of both experts, ``per_invocation`` additive counts = the stage total per
    call (every call of either expert costs the same: one architecture, one input shape), and
    ``experts`` = :func:`expert_breakdown`. No-op for a stage without experts."""
    experts = expert_breakdown(graph, result.name)
    if experts is None:
        return
    calls = sum(e["calls"] for e in experts)
    result.invocations = calls
    for k in additive:
        v = result.total.get(k)
        if v is None:
            continue
        result.per_invocation[k] = v // calls if isinstance(v, int) and v % calls == 0 else v / calls
    total_t = result.total.get("time_s")
    if total_t is not None and all(e["time_s"] is not None for e in experts):
        extra = total_t - sum(e["time_s"] for e in experts)
        if extra > 0:   # host work and synchronizations beyond the nodes' time: the same per DiT call
            for e in experts:
                e["time_s"] += extra * e["calls"] / calls
    result.experts = experts


def calls_per_invocation(graph, stage: str) -> int:
    """DiT calls one invocation of ``stage`` runs: the sum of its experts' ``calls`` loops
    (1 for a stage without experts). A stage invocation is one guidance branch of every step
    when both experts use guidance."""
    experts = graph.meta.get("experts", {}).get(stage)
    st = graph.stages.get(stage)
    if not experts or st is None:
        return 1
    return sum(st.children[e["name"]].children["calls"].repeat for e in experts if e["name"] in st.children) or 1
