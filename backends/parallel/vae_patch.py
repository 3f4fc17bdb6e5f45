"""Patch-parallel VAE decode (``parallel.vae=patch``), as xDiT's DistVAE runs it: the
latent is split into ``n`` row bands over the devices of a replica (n = ulysses × ring ×
cfg); each device decodes its band, and every convolution whose kernel spans several rows
first exchanges the (k − 1) halo rows its band borders need with its neighbours (one
``send_recv`` of those rows of its input, ``halo_exchange``), so no row is decoded twice.
The mid-block attention (one head over every position of a frame) gathers the keys and
values of all bands (``all_gather``), and the decoded bands are gathered into the video at
the end (``video_all_gather``).

The band's decode is lowered by the decoder frontend at ⌈h/n⌉ latent rows (from
``graph.meta['vae_decode_source']``, which the pipeline records; the lowering is found by
its registered name in wanir/lowerings.py), so its FLOPs, bytes and memory are one band's. Not modeled: the edge devices' smaller halo (every device is
counted with two neighbours), the zero padding of the last band when n does not divide
the rows, and the causal time padding (unchanged: it is along frames).
"""
from __future__ import annotations

import math

from wanir import lowerings
from wanir.builder import GraphBuilder

from .plan import PlanError

STAGE = "vae_decode"


def patch_vae_decode(sh, src_stage) -> list:
    """Emit one device's band of the VAE decode into sharder ``sh``'s graph under the copy of
    ``src_stage``; returns the band graph's persistent values (new Values)."""
    if sh.src.meta.get("optimizations", {}).get("vae_tiles"):
        raise PlanError("parallel.vae=patch with vae.tile: a tiled decode split into bands is not modeled; "
                        "use one of them")
    meta = sh.src.meta["vae_decode_source"]
    n = sh.plan.replica
    z, T, h, w = meta["latent_shape"]
    band = -(-h // n)
    b = GraphBuilder(sh.src.name, weight_dtype=meta["dtype"])
    with b.stage(STAGE, src_stage.repeat):
        decoder = lowerings.get(meta["lowering"])
        out = decoder(b, meta["config"], latent_shape=(z, T, band, w), batch=meta["batch"], dtype=meta["dtype"])
    tg = b.graph
    stage = sh.scope(src_stage)
    scopes = {id(tg.root): sh.g.root, id(tg.stages[STAGE]): stage}

    def scope_of(s):
        new = scopes.get(id(s))
        if new is None:
            new = scopes[id(s)] = scope_of(s.parent).child(s.name, s.repeat, s.kind)
            sh.names.setdefault(id(new), set())
        return new
    vals = {}
    for node in tg:
        scope = scope_of(node.scope)
        ins = [vals[(v.producer, v.index)] for v in node.inputs]
        if node.category == "conv" and node.params["weight"].type.rank >= 4:
            kh = node.params["weight"].type.shape[-2]
            x = ins[0]
            if kh > 1:
                rows = sh.emit("slice", [x], scope, "halo_rows", {"dim": x.type.rank - 2, "start": 0,
                                                                  "end": min(kh - 1, x.shape[-2])}).output(0)
                sh.comm_node("send_recv", rows, scope, "halo_exchange", "sp", n, steps=1)
        if node.kind == "sdpa":
            q, k, v = ins[:3]
            d = k.type.rank - 2
            k = sh.comm_node("all_gather", k, scope, "kv_all_gather_k", "sp", n, dim=d)
            v = sh.comm_node("all_gather", v, scope, "kv_all_gather_v", "sp", n, dim=d)
            ins = [q, k, v, *ins[3:]]
        new = sh.emit(node.kind, ins, scope, node.name, dict(node.attrs), node.params)
        for i in range(len(node.outputs)):
            vals[(node.id, i)] = new.output(i)
    res = vals[(out.producer, out.index)]
    sh.comm_node("all_gather", res, stage, "video_all_gather", "sp", n, dim=res.type.rank - 2)
    sh.notes.append(f"{STAGE} split into {n} row bands of {band} latent rows (patch parallel), with halo exchange")
    return [vals[(v.producer, v.index)] for v in tg.meta.get("persistent", {}).get(STAGE, [])]


def patched(sh) -> bool:
    """Whether sharder ``sh`` decodes the VAE in row bands."""
    return (getattr(sh.plan, "vae", "single") == "patch" and sh.plan.replica > 1
            and STAGE in sh.src.stages and "vae_decode_source" in sh.src.meta)


def band_rows(h: int, n: int) -> int:
    """Latent rows of one band: ⌈h / n⌉."""
    return math.ceil(h / n)
