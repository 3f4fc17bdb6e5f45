"""VAE tiling as a graph transform (``vae.tile=<pixels>``, ``vae.tile_stride=<pixels>``).

diffusers' ``AutoencoderKLWan.tiled_decode`` cuts the latent into tiles of
``tile/8`` latent pixels every ``tile_stride/8`` (default stride: 3/4 of the tile, as
diffusers' 256/192), decodes each tile on its own (the whole chunked, causal decode, its
feature cache cleared between tiles) and blends the overlaps. Tiles start at 0, s, 2s, …
below the latent height (width) and are cut at the border, so edge tiles are smaller.

The ``vae_decode`` stage is rebuilt from the decoder frontend (frontends/wan_vae.py) at
each distinct tile shape, inside a ``tile_<h>x<w>`` loop scope run once per tile of that
shape; the overlap is decoded twice, which is the tiling's extra ("halo") FLOPs and bytes.
Loop levels share weights, so the decoder's weights are counted once. Memory: tiles run one
after another, so the feature cache that stays live is one tile's (the largest tile shape's,
whose group runs last), plus the assembled video (a ``tiled_video`` buffer).

Not modeled: the blending of overlaps and the copies assembling the rows (elementwise work
on the overlap strips and one write of the video); tiling of the encoder; frame slicing.
"""
from __future__ import annotations

from collections import Counter

from wanir.builder import GraphBuilder
from wanir.errors import ConfigError
from wanir.graph import Graph
from wanir.passes.rewrite import Rewriter

from . import wan_vae

STAGE = "vae_decode"


def tiles(n: int, tile: int, stride: int) -> list[int]:
    """Sizes of the tiles along one latent axis of ``n``: starts 0, stride, … < n, each
    min(tile, n − start)."""
    return [min(tile, n - s) for s in range(0, n, stride)]


def tile_vae_decode(graph: Graph, vae: wan_vae.VaeArch, *, latent_shape, batch: int, dtype, tile_px: int, stride_px: int,
                    downsample: int = 8) -> Graph:
    """The graph with its ``vae_decode`` stage decoded in tiles (module docstring); the
    graph itself when one tile covers the latent (diffusers decodes it whole then)."""
    st = graph.stages.get(STAGE)
    if st is None:
        return graph
    z, T, h, w = latent_shape
    tl, sl = tile_px // downsample, stride_px // downsample
    if h <= tl and w <= tl:
        return graph
    groups = Counter((th, tw) for th in tiles(h, tl, sl) for tw in tiles(w, tl, sl))
    order = sorted(groups, key=lambda k: k[0] * k[1])          # the largest tile shape last
    rw = Rewriter(graph, skip_persistent={STAGE})
    stage = None
    for s in graph.root.children.values():
        if s is st:
            stage = rw.g.root.child(STAGE, st.repeat, "stage")
            rw.map_scope(st, stage)
        else:
            rw.scope(s)
    for node in graph:
        if node.stage != STAGE:
            rw.copy(node)
    last_persistent = []
    for i, (th, tw) in enumerate(order):
        b = GraphBuilder(graph.name, weight_dtype=dtype)
        with b.stage(STAGE, st.repeat), b.loop(f"tile_{th}x{tw}", groups[(th, tw)]):
            out = wan_vae.build_decoder(b, vae, latent_shape=(z, T, th, tw), batch=batch, dtype=dtype)
        tg = b.graph
        scopes = {id(tg.root): rw.g.root, id(tg.stages[STAGE]): stage}
        vals = {}

        def scope_of(s):
            new = scopes.get(id(s))
            if new is None:
                new = scopes[id(s)] = scope_of(s.parent).child(s.name, s.repeat, s.kind)
            return new
        for n in tg:
            new = rw.emit(n.kind, [vals[(v.producer, v.index)] for v in n.inputs], scope_of(n.scope), n.name,
                          n.attrs, n.params)
            for k in range(len(n.outputs)):
                vals[(n.id, k)] = new.output(k)
            for key, wt in n.params.items():
                rw.g.weights[wt.key] = wt
        if i == len(order) - 1:
            pers = tg.meta.get("persistent", {}).get(STAGE, [])
            last_persistent = [vals[(v.producer, v.index)] for v in pers]
            video = out.type
    full = (batch, video.shape[1], video.shape[2], h * downsample, w * downsample)
    v = rw.emit("input", [], stage, "tiled_video", {"shape": full, "dtype": video.dtype.name}).output(0)
    rw.persistent.extend(last_persistent + [v])
    g = rw.finish()
    g.meta.setdefault("optimizations", {})["vae_tiles"] = {f"{th}x{tw}": c for (th, tw), c in groups.items()}
    return g


def tile_options(tile, stride) -> tuple[int, int] | None:
    """(tile, stride) in pixels from the ``vae.tile`` / ``vae.tile_stride`` settings (stride
    None: 3/4 of the tile, as diffusers' 256/192), or None (no tiling). Raises ConfigError
    naming the key on a bad value."""
    if tile is None:
        if stride is not None:
            raise ConfigError("vae.tile_stride needs vae.tile")
        return None
    if isinstance(tile, bool) or not isinstance(tile, int) or not 16 <= tile <= 16384 or tile % 8:
        raise ConfigError(f"vae.tile must be a multiple of 8 pixels in [16, 16384], got {tile!r}")
    if stride is None:
        stride = max(8, tile * 3 // 4 // 8 * 8)
    if isinstance(stride, bool) or not isinstance(stride, int) or not 8 <= stride <= tile or stride % 8:
        raise ConfigError(f"vae.tile_stride must be a multiple of 8 pixels in [8, vae.tile={tile}], got {stride!r}")
    return tile, stride


def apply_tiling(graph: Graph, vae: wan_vae.VaeArch, tiling: tuple[int, int] | None, dtype: str) -> Graph:
    """``graph`` with its VAE decode (``vae``, lowered at ``dtype``) tiled when ``tiling``
    (``(tile, stride)`` pixels, :func:`tile_options`) is set (else ``graph``). Records what the
    decode was lowered from in ``graph.meta['vae_decode_source']`` (the VaeArch, dtype, latent
    shape, batch), which the patch-parallel VAE (backends/parallel/vae_patch.py) lowers again
    per band."""
    wl = graph.meta.get("workload", {})
    plain = not vae.is_residual and vae.patch_size == 1
    if "vae_decode" in graph.stages and plain and wl:
        graph.meta["vae_decode_source"] = {
            "lowering": "wan_vae.decoder", "config": vae, "dtype": str(dtype), "batch": wl["batch"],
            "latent_shape": (wl["latent_channels"], wl["latent_frames"], wl["latent_height"], wl["latent_width"])}
    if tiling is None:
        return graph
    if not plain:
        raise ConfigError("vae.tile: tiling is modeled for the Wan2.1 VAE only (this VAE patchifies its input)")
    graph = tile_vae_decode(graph, vae, latent_shape=(wl["latent_channels"], wl["latent_frames"],
                                                      wl["latent_height"], wl["latent_width"]),
                            batch=wl["batch"], dtype=dtype, tile_px=tiling[0], stride_px=tiling[1],
                            downsample=wl["height"] // wl["latent_height"])
    graph.meta.setdefault("optimizations", {}).setdefault("applied", []).append(
        f"VAE tiles {tiling[0]} px every {tiling[1]} px")
    return graph
