"""The Wan2.1 pipeline: composes the stages of one generation into one graph.

Stages (top-level scopes) and their invocations per generation:

- ``text_encoder``: UMT5-XXL, 2 with classifier-free guidance (prompt, negative prompt), else 1
- ``image_encoder``: CLIP vision tower, 1 (image-to-video only)
- ``vae_encode``: Wan-VAE encoder, 1 (image-to-video, or ``workload.vae_encode=true``)
- ``diffusion_core``: the DiT, steps × 2 with guidance (conditional and unconditional calls), else steps
- ``vae_decode``: Wan-VAE decoder, 1
"""
from __future__ import annotations

from dataclasses import dataclass

from wanir.builder import GraphBuilder
from wanir.dictconfig import to_plain
from wanir.errors import ConfigError
from wanir.graph import Graph
from wanir.passes.optimize import apply as apply_optimizations
from wanir.passes.optimize_options import dit_activation_dtype
from wanir.runtime import runtime_options
from wanir.scenario import Build

from . import clip, umt5, wan22, wan_dit, wan_vae
from .vae_tiling import apply_tiling
from .wan22 import task


@dataclass(frozen=True)
class Workload:
    """A validated workload with the derived latent and token shapes (all ints)."""

    height: int
    width: int
    frames: int
    steps: int
    guidance: bool
    batch: int
    text_len: int
    vae_encode: bool
    latent_channels: int
    latent_frames: int
    latent_height: int
    latent_width: int
    tokens: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def resolve_workload(cfg) -> Workload:
    """Check ``cfg.workload`` against what the model can produce and derive latent shapes;
    unset (null) sizes and steps take the model's defaults. Raises ConfigError naming the key
    and the allowed values."""
    w = cfg.workload
    vae = cfg.vae
    dit = cfg.dit
    t_down = 2 ** sum(1 for x in vae.temperal_downsample if x)          # 4 for Wan2.1
    s_down = 2 ** (len(vae.dim_mult) - 1) * int(vae.get("patch_size") or 1)   # 8 (Wan2.1), 16 (Wan2.2-VAE)
    pt, ph, pw = dit.patch_size
    m = cfg.model
    frames = w.frames if w.frames is not None else m.default_frames
    height = w.height if w.height is not None else m.default_height
    width = w.width if w.width is not None else m.default_width
    if (frames - 1) % t_down:
        lo = (frames - 1) // t_down * t_down + 1
        raise ConfigError(f"workload.frames={frames}: the VAE produces 1 + {t_down}k frames; "
                          f"allowed nearby: {lo} or {lo + t_down}")
    latent_t = (frames - 1) // t_down + 1
    for key, v, p in (("workload.height", height, ph), ("workload.width", width, pw)):
        m = s_down * p
        if v % m:
            raise ConfigError(f"{key}={v}: must be a multiple of {m} (VAE stride {s_down} × patch {p}); "
                              f"allowed nearby: {v // m * m or m} or {(v // m + 1) * m}")
    if latent_t % pt:
        raise ConfigError(f"workload.frames={frames}: {latent_t} latent frames are not divisible by the "
                          f"temporal patch size {pt}")
    steps = w.steps if w.steps is not None else cfg.model.default_steps
    lh, lw = height // s_down, width // s_down
    tokens = (latent_t // pt) * (lh // ph) * (lw // pw)
    return Workload(int(height), int(width), int(frames), int(steps), bool(w.guidance), w.batch, w.text_len,
                    bool(w.vae_encode) or task(cfg) == "i2v", int(vae.z_dim), latent_t, lh, lw, tokens)


def trained_range_warnings(cfg, wl: Workload) -> list[str]:
    """Warnings for workloads outside what the model was trained on."""
    out = []
    m = cfg.model
    maxpix = m.get("trained_max_pixels")
    if maxpix and wl.height * wl.width > maxpix:
        out.append(f"{m.name} was trained up to {maxpix:,} pixels per frame; "
                   f"{wl.width}x{wl.height} ({wl.height * wl.width:,}) lies outside its training range")
    maxf = m.get("trained_max_frames")
    if maxf and wl.frames > maxf:
        out.append(f"{m.name} was trained on up to {maxf} frames; {wl.frames} frames lie outside its training range")
    sizes = m.get("official_sizes")
    if sizes and f"{wl.width}x{wl.height}" not in sizes:
        out.append(f"{m.name}: {wl.width}x{wl.height} is not one of its official sizes ({', '.join(sizes)}); "
                   "the estimate extrapolates")
    return out


class _Attrs(dict):
    """A component's config as a plain dict that also reads as attributes (``cfg.d_model``):
    frontends read their hyperparameters many times, and plain dicts are much faster to read
    than config nodes."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def _plain(node) -> _Attrs:
    return _Attrs(to_plain(node))


def build_pipeline(build) -> Graph:
    """Lower the configured pipeline into one graph (not yet annotated). ``build``: a
    :class:`wanir.scenario.Build` (its read-only count-relevant configuration and resolved
    workload), or a composed configuration a caller still holds. ``graph.meta`` holds the
    resolved workload, the model name and warnings."""


    if isinstance(build, Build):
        cfg, wl, variant, rt_name = build.config, build.workload, build.lowering, build.runtime_name
    else:
        cfg, wl = build, resolve_workload(build)
        rt = runtime_options(cfg)
        variant, rt_name = rt.dit_lowering, rt.name
    prec = cfg.precision
    cfg_mult = 2 if wl.guidance else 1
    opts = wan22.options(cfg, wl.steps, wl.guidance)
    i2v = opts.mode == "i2v"
    b = GraphBuilder(name=cfg.model.name)

    with b.stage("text_encoder", invocations=cfg_mult), b.weights(prec.text_encoder):
        umt5.build(b, _plain(cfg.text_encoder), seq_len=wl.text_len, batch=wl.batch, dtype=prec.text_encoder)

    image_len = None
    if i2v and cfg.get("image_encoder") is not None:

        # the image is encoded once; its embedding serves both guidance branches
        with b.stage("image_encoder", invocations=1), b.weights(prec.image_encoder):
            img = clip.build(b, _plain(cfg.image_encoder), batch=wl.batch, dtype=prec.image_encoder)
            image_len = img.shape[1]

    if wl.vae_encode or i2v:
        # image-to-video encodes the conditioning video: the image followed by zero frames
        with b.stage("vae_encode", invocations=1), b.weights(prec.vae):
            # TI2V-5B encodes the image alone, as a 1-frame video
            frames = 1 if i2v and cfg.model.get("task") == "ti2v" else wl.frames
            wan_vae.build_encoder(b, _plain(cfg.vae), video_shape=(3, frames, wl.height, wl.width),
                                  batch=wl.batch, dtype=prec.vae)

    dit_kw = {"variant": variant} if variant != "diffusers" else {}
    if opts.time_embedding_per_token:
        dit_kw["timestep_per_token"] = True
    dit_shape = (cfg.dit.in_channels, wl.latent_frames, wl.latent_height, wl.latent_width)
    if opts.experts:
        wan22.build_experts(b, _plain(cfg.dit), opts, latent_shape=dit_shape, batch=wl.batch, text_len=wl.text_len,
                            weights=prec.dit_weights, compute_dtype=dit_activation_dtype(prec.dit_compute), **dit_kw)
    else:
        with b.stage("diffusion_core", invocations=wl.steps * cfg_mult), b.weights(prec.dit_weights):
            kw = {"image_len": image_len} if image_len is not None else {}
            wan_dit.build(b, _plain(cfg.dit), latent_shape=dit_shape,
                          batch=wl.batch, text_len=wl.text_len,
                          compute_dtype=dit_activation_dtype(prec.dit_compute), **kw, **dit_kw)

    with b.stage("vae_decode", invocations=1), b.weights(prec.vae):
        wan_vae.build_decoder(b, _plain(cfg.vae), latent_shape=(wl.latent_channels, wl.latent_frames,
                                                        wl.latent_height, wl.latent_width),
                              batch=wl.batch, dtype=prec.vae)

    g = b.graph
    g.meta.update(model=cfg.model.name, workload=wl.to_dict(), warnings=trained_range_warnings(cfg, wl),
                  runtime=rt_name,
                  model_task=cfg.model.get("task"))   # the code path: image2video.py for "i2v" (passes/allocator.py)

    return apply_tiling(apply_optimizations(g, cfg, wl.steps, wl.guidance), cfg)
