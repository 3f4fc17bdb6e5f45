"""The Wan2.1 pipeline: composes the stages of one generation into one graph.

Stages (top-level scopes) and their invocations per generation:

- ``text_encoder``: UMT5-XXL, 2 with classifier-free guidance (prompt, negative prompt), else 1
- ``image_encoder``: CLIP vision tower, 1 (image-to-video only)
- ``vae_encode``: Wan-VAE encoder, 1 (image-to-video, or ``workload.vae_encode=true``)
- ``diffusion_core``: the DiT, steps × 2 with guidance (conditional and unconditional calls), else steps
- ``vae_decode``: Wan-VAE decoder, 1

:func:`build_pipeline` lowers a :class:`wanir.scenario.Build`: it reads only the Build's
typed parts (:class:`PipelineSpec`: the model's facts, each component's checked
hyperparameters, the Wan2.2 options, the optimizations and the VAE tiling; the precision,
roofline and parallel option groups; the resolved :class:`Workload`), never a config.
"""
from __future__ import annotations

from dataclasses import dataclass

from wanir.builder import GraphBuilder
from wanir.errors import ConfigError
from wanir.graph import Graph
from wanir.passes.optimize import apply as apply_optimizations
from wanir.passes.optimize_options import Optimizations, dit_activation_dtype
from wanir.scenario import Build, build_of_config

from . import clip, umt5, wan22, wan_dit, wan_vae
from .components import ModelFacts
from .vae_tiling import apply_tiling, tile_options


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


@dataclass(frozen=True)
class PipelineSpec:
    """Everything the pipeline's lowering reads besides the workload and the option groups,
    typed and checked once by the resolver: the model's facts, each component's
    hyperparameters (``image_encoder`` None when the model has no CLIP), the Wan2.2 options
    (task, experts, per-token timestep), the optimizations and the VAE tiling (``(tile,
    stride)`` pixels, or None)."""

    model: ModelFacts
    text_encoder: umt5.Umt5Arch
    image_encoder: clip.ClipArch | None
    dit: wan_dit.DitArch
    vae: wan_vae.VaeArch
    wan22: wan22.Wan22Options
    optimizations: Optimizations
    tiling: tuple | None = None


def resolve_workload(model: ModelFacts, vae: wan_vae.VaeArch, dit: wan_dit.DitArch, task: str, *, height, width,
                     frames, steps, guidance: bool, batch: int, text_len: int, vae_encode: bool) -> Workload:
    """The checked :class:`Workload` of the ``workload.*`` settings (values checked for type
    by the configuration's schema) for ``model`` with these VAE and DiT, running ``task``
    (t2v or i2v, :func:`wan22.task`); unset (None) sizes and steps take the model's
    defaults. Raises ConfigError naming the key and the allowed values."""
    t_down = vae.temporal_factor                 # 4 for Wan2.1
    s_down = vae.spatial_factor                  # 8 (Wan2.1), 16 (Wan2.2-VAE)
    pt, ph, pw = dit.patch_size
    frames, height, width, steps = (v if v is not None else _model_default(model, k) for k, v in (
        ("frames", frames), ("height", height), ("width", width), ("steps", steps)))
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
    lh, lw = height // s_down, width // s_down
    tokens = (latent_t // pt) * (lh // ph) * (lw // pw)
    return Workload(int(height), int(width), int(frames), int(steps), bool(guidance), batch, text_len,
                    bool(vae_encode) or task == "i2v", vae.z_dim, latent_t, lh, lw, tokens)


def _model_default(model: ModelFacts, key: str) -> int:
    v = getattr(model, f"default_{key}")
    if v is None:
        raise ConfigError(f"workload.{key} is null and {model.name} names no model.default_{key}; "
                          f"set workload.{key}=<a positive integer>")
    return v


def trained_range_warnings(model: ModelFacts, wl: Workload) -> list[str]:
    """Warnings for workloads outside what ``model`` was trained on."""
    out = []
    maxpix = model.trained_max_pixels
    if maxpix and wl.height * wl.width > maxpix:
        out.append(f"{model.name} was trained up to {maxpix:,} pixels per frame; "
                   f"{wl.width}x{wl.height} ({wl.height * wl.width:,}) lies outside its training range")
    maxf = model.trained_max_frames
    if maxf and wl.frames > maxf:
        out.append(f"{model.name} was trained on up to {maxf} frames; {wl.frames} frames lie outside its "
                   "training range")
    sizes = model.official_sizes
    if sizes and f"{wl.width}x{wl.height}" not in sizes:
        out.append(f"{model.name}: {wl.width}x{wl.height} is not one of its official sizes ({', '.join(sizes)}); "
                   "the estimate extrapolates")
    return out


#: config group → the typed description its frontend lowers (the resolver, wanir/resolve.py,
#: builds each from the group's values: :func:`wanir.resolve.component`)
COMPONENTS = {"model": ModelFacts, "text_encoder": umt5.Umt5Arch, "image_encoder": clip.ClipArch,
              "dit": wan_dit.DitArch, "vae": wan_vae.VaeArch}


def make_spec(model: ModelFacts, text_encoder, image_encoder, dit, vae, optimizations: Optimizations, *,
              mode, height, width, frames, steps, guidance, batch, text_len, vae_encode, shift=None,
              boundary=None, guidance_scale_high=None, guidance_scale_low=None, time_embedding=None,
              runtime_name=None, tile=None, tile_stride=None) -> tuple[PipelineSpec, Workload]:
    """(:class:`PipelineSpec`, :class:`Workload`) of the typed components and the settings the
    resolver read (the ``workload.*`` values, ``dit.time_embedding_per_token``, the runtime's
    name, ``vae.tile`` / ``vae.tile_stride``): the task, the workload resolved against the
    model, the Wan2.2 options and the tiling, each checked once. Raises ConfigError naming
    the key."""
    task = wan22.task(model, mode)
    wl = resolve_workload(model, vae, dit, task, height=height, width=width, frames=frames, steps=steps,
                          guidance=guidance, batch=batch, text_len=text_len, vae_encode=vae_encode)
    w22 = wan22.options(model, wl.steps, wl.guidance, mode=mode, shift=shift, boundary=boundary,
                        guidance_scale_high=guidance_scale_high, guidance_scale_low=guidance_scale_low,
                        time_embedding=time_embedding, runtime_name=runtime_name)
    tiling = tile_options(tile, tile_stride)
    return PipelineSpec(model, text_encoder, image_encoder, dit, vae, w22, optimizations, tiling), wl


def _cfg_split(cfg_degree) -> bool:
    """Whether the configured plan runs the two guidance branches on different devices."""
    return isinstance(cfg_degree, int) and not isinstance(cfg_degree, bool) and cfg_degree > 1


def build_pipeline(build: Build) -> Graph:
    """Lower the configured pipeline into one graph (not yet annotated). ``build``: a
    :class:`wanir.scenario.Build` (a composed configuration a caller still holds is resolved
    into one first, :func:`wanir.scenario.build_of_config`). ``graph.meta`` holds the
    resolved workload, the model name and warnings."""
    if not isinstance(build, Build):
        build = build_of_config(build)
    spec: PipelineSpec = build.spec
    wl, variant = build.workload, build.lowering
    prec = build.options.precision
    cfg_mult = 2 if wl.guidance else 1
    opts = spec.wan22
    i2v = opts.mode == "i2v"
    b = GraphBuilder(name=spec.model.name)

    with b.stage("text_encoder", invocations=cfg_mult), b.weights(prec.text_encoder):
        umt5.build(b, spec.text_encoder, seq_len=wl.text_len, batch=wl.batch, dtype=prec.text_encoder)

    image_len = None
    if i2v and spec.image_encoder is not None:
        # the image is encoded once; its embedding serves both guidance branches
        with b.stage("image_encoder", invocations=1), b.weights(prec.image_encoder):
            img = clip.build(b, spec.image_encoder, batch=wl.batch, dtype=prec.image_encoder)
            image_len = img.shape[1]

    if wl.vae_encode or i2v:
        # image-to-video encodes the conditioning video: the image followed by zero frames
        with b.stage("vae_encode", invocations=1), b.weights(prec.vae):
            # TI2V-5B encodes the image alone, as a 1-frame video
            frames = 1 if i2v and spec.model.task == "ti2v" else wl.frames
            wan_vae.build_encoder(b, spec.vae, video_shape=(3, frames, wl.height, wl.width),
                                  batch=wl.batch, dtype=prec.vae)

    dit_kw = {"variant": variant} if variant != "diffusers" else {}
    if opts.time_embedding_per_token:
        dit_kw["timestep_per_token"] = True
    dit_shape = (spec.dit.in_channels, wl.latent_frames, wl.latent_height, wl.latent_width)
    if opts.experts:
        wan22.build_experts(b, spec.dit, opts, latent_shape=dit_shape, batch=wl.batch, text_len=wl.text_len,
                            weights=prec.dit_weights, compute_dtype=dit_activation_dtype(prec.dit_compute), **dit_kw)
    else:
        with b.stage("diffusion_core", invocations=wl.steps * cfg_mult), b.weights(prec.dit_weights):
            kw = {"image_len": image_len} if image_len is not None else {}
            wan_dit.build(b, spec.dit, latent_shape=dit_shape,
                          batch=wl.batch, text_len=wl.text_len,
                          compute_dtype=dit_activation_dtype(prec.dit_compute), **kw, **dit_kw)

    with b.stage("vae_decode", invocations=1), b.weights(prec.vae):
        wan_vae.build_decoder(b, spec.vae, latent_shape=(wl.latent_channels, wl.latent_frames,
                                                         wl.latent_height, wl.latent_width),
                              batch=wl.batch, dtype=prec.vae)

    g = b.graph
    g.meta.update(model=spec.model.name, workload=wl.to_dict(), warnings=trained_range_warnings(spec.model, wl),
                  runtime=build.runtime_name,
                  model_task=spec.model.task)   # the code path: image2video.py for "i2v" (passes/memory.py)

    g = apply_optimizations(g, spec.optimizations, wl.steps, wl.guidance,
                            attention_kernel=build.options.roofline.attention_kernel,
                            cfg_split=_cfg_split(build.options.parallel.cfg))
    return apply_tiling(g, spec.vae, spec.tiling, prec.vae)
