"""Wan2.2: the options of the Wan2.2 pipelines and the two-expert split of the A14B models.

The A14B models run two DiTs of the same architecture, one per denoising phase: the
high-noise expert while the scheduler's timestep ``t >= boundary · 1000``, the low-noise
expert after. How many steps each expert runs follows from the flow-matching schedule with
the model's shift (:func:`flow_timesteps`), so it is computed for any step count and shift,
never assumed. Each expert runs two calls per step with classifier-free guidance (conditional
and unconditional), one when its guidance scale is 1 or below (as diffusers skips the
unconditional call then).

Every Wan2.2 option is checked once, by :func:`options`, which the resolver calls with the
model's facts and the workload's settings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from wanir.errors import ConfigError
# the per-expert view of a graph is generic (it reads graph.meta['experts']); re-exported here
from wanir.passes.experts import (apply_to_stage, calls_per_invocation, expert_breakdown,  # noqa: F401
                                  expert_weight_bytes)

from . import wan_dit
from .components import ModelFacts

#: the scheduler's training timesteps (num_train_timesteps)
NUM_TRAIN_TIMESTEPS = 1000
#: scope names of the two experts inside the diffusion_core stage, in the order they run
EXPERTS = ("high_noise", "low_noise")
MAX_STEPS = 100_000


def _linspace(start: float, stop: float, num: int) -> list[float]:
    """numpy.linspace(start, stop, num) in float64, computed as numpy computes it."""
    if num == 1:
        return [start]
    step = (stop - start) / (num - 1)
    out = [start + i * step for i in range(num)]
    out[-1] = stop
    return out


def flow_timesteps(steps: int, shift: float) -> list[int]:
    """The timesteps the official Wan2.2 sampler (``FlowUniPCMultistepScheduler``, built with
    num_train_timesteps 1000 and shift 1, then ``set_timesteps(steps, shift=shift)``) runs:
    sigmas = linspace(σ_max, σ_min, steps + 1)[:-1] with σ_max = 1 − 1/1000 and σ_min = 0
    (the ends of its training sigmas), shifted to ``shift·σ / (1 + (shift − 1)·σ)``, times
    1000, cast to int64. Returns ``steps`` ints, decreasing."""
    alphas_first = 1.0 / NUM_TRAIN_TIMESTEPS          # linspace(1, 1/1000, 1000)[::-1][0]
    sigma_max, sigma_min = 1.0 - alphas_first, 0.0
    sigmas = _linspace(sigma_max, sigma_min, steps + 1)[:-1]
    return [int(shift * s / (1 + (shift - 1) * s) * NUM_TRAIN_TIMESTEPS) for s in sigmas]


def expert_steps(steps: int, shift: float, boundary: float) -> tuple[int, int]:
    """(high-noise steps, low-noise steps) of a ``steps``-step run: the high-noise expert runs
    the steps whose timestep t satisfies ``t >= boundary · 1000``."""
    b = boundary * NUM_TRAIN_TIMESTEPS
    high = sum(1 for t in flow_timesteps(steps, shift) if t >= b)
    return high, steps - high


@dataclass(frozen=True)
class Expert:
    """One expert of a two-expert DiT: its scope name, steps, guidance scale and DiT calls
    per generation (steps × 2 with guidance, else steps)."""

    name: str
    steps: int
    guidance_scale: float | None
    calls_per_step: int

    @property
    def calls(self) -> int:
        return self.steps * self.calls_per_step


@dataclass(frozen=True)
class Wan22Options:
    """The Wan2.2 options of one configuration, checked: ``mode`` (t2v or i2v), ``shift``,
    ``boundary`` (None without experts), ``experts`` (empty for one DiT) and whether the DiT
    embeds the timestep per token."""

    mode: str
    shift: float | None
    boundary: float | None
    experts: tuple[Expert, ...]
    time_embedding_per_token: bool


def _number(key: str, v, lo: float, hi: float, lo_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{key}={v!r}: must be a finite number")
    if v > hi or v < lo or (lo_open and v == lo):
        raise ConfigError(f"{key}={v!r}: must lie in {'(' if lo_open else '['}{lo}, {hi}]")
    return float(v)


def task(model: ModelFacts, mode=None) -> str:
    """The task the pipeline runs: ``t2v`` or ``i2v`` (``mode``, the ``workload.mode``
    setting, for a model whose task is ``ti2v``; a model with one task refuses another mode)."""
    t = model.task
    if t == "ti2v":
        if mode is None:
            return "t2v"
        if mode not in ("t2v", "i2v"):
            raise ConfigError(f"workload.mode={mode!r}: allowed t2v, i2v")
        return mode
    if mode is not None and mode != t:
        raise ConfigError(f"workload.mode={mode!r}: {model.name} runs {t} only; allowed: null or {t}")
    return t


def time_embedding_per_token(setting, model: ModelFacts, runtime_name: str | None) -> bool:
    """Whether the DiT embeds the timestep once per token (``setting``: the
    ``dit.time_embedding_per_token`` value, true, false, auto or null). auto (and null): per
    token when the pipeline feeds a (batch, tokens) timestep (``model.expand_timesteps``: the
    TI2V-5B pipelines), or under ``runtime.name=wan-official`` for a Wan2.2 model (the
    official Wan2.2 ``WanModel`` expands every timestep to the tokens); per sample otherwise
    (diffusers' A14B and Wan2.1 pipelines)."""
    if setting is None or setting == "auto":
        if model.expand_timesteps:
            return True
        return runtime_name == "wan-official" and model.family == "wan2.2"
    if isinstance(setting, bool):
        return setting
    raise ConfigError(f"dit.time_embedding_per_token={setting!r}: allowed auto, true, false")


def options(model: ModelFacts, steps: int, guidance: bool, *, mode=None, shift=None, boundary=None,
            guidance_scale_high=None, guidance_scale_low=None, time_embedding=None,
            runtime_name: str | None = None) -> Wan22Options:
    """The checked Wan2.2 options of a run of ``steps`` steps (``guidance``: classifier-free
    guidance on) of ``model``; ``mode``, ``shift``, ``boundary`` and the guidance scales are
    the ``workload.*`` settings (null: the model's), ``time_embedding`` the
    ``dit.time_embedding_per_token`` setting and ``runtime_name`` the runtime's. Raises
    ConfigError naming the key."""
    mode = task(model, mode)
    given = (("workload.shift", shift), ("workload.boundary", boundary),
             ("workload.guidance_scale_high", guidance_scale_high), ("workload.guidance_scale_low", guidance_scale_low))
    if not model.experts:
        for k, v in given:
            if v is not None:
                raise ConfigError(f"{k}={v!r}: {model.name} runs one DiT; "
                                  f"{k} applies to the two-expert Wan2.2 A14B models only (allowed: null)")
        return Wan22Options(mode, None, None, (), time_embedding_per_token(time_embedding, model, runtime_name))
    if list(model.experts) != list(EXPERTS):
        raise ConfigError(f"model.experts={list(model.experts)!r}: allowed {list(EXPERTS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"workload.steps={steps!r}: must be an integer in [1, {MAX_STEPS}]")

    def pick(wkey, v, mkey):
        return (wkey, v) if v is not None else (f"model.{mkey}", getattr(model, mkey))

    shift = _number(*pick("workload.shift", shift, "shift"), 0.0, 1000.0, lo_open=True)
    boundary = _number(*pick("workload.boundary", boundary, "boundary"), 0.0, 1.0)
    high, low = expert_steps(steps, shift, boundary)
    experts = []
    for name, n, (key, scale) in (
            (EXPERTS[0], high, pick("workload.guidance_scale_high", guidance_scale_high, "guide_scale_high")),
            (EXPERTS[1], low, pick("workload.guidance_scale_low", guidance_scale_low, "guide_scale_low"))):
        if scale is not None:
            scale = _number(key, scale, 0.0, 100.0)
        cfg_calls = 2 if guidance and (scale is None or scale > 1.0) else 1
        experts.append(Expert(name, n, scale, cfg_calls))
    return Wan22Options(mode, shift, boundary, tuple(experts),
                        time_embedding_per_token(time_embedding, model, runtime_name))


def stage_split(experts) -> tuple[int, dict[str, int]]:
    """How the diffusion_core stage holds the experts: (stage repeat, {expert: scope repeat}).
    The stage repeats by the calls per step both experts share (2 with guidance on both, so
    CFG parallelism can split the stage), each expert scope by its remaining calls; experts
    that run no step are left out."""
    run = [e for e in experts if e.steps]
    per_step = math.gcd(*(e.calls_per_step for e in run)) if run else 1
    return per_step, {e.name: e.calls // per_step for e in run}


def build_experts(b, dit, opts: Wan22Options, *, latent_shape, batch: int, text_len: int, weights,
                  compute_dtype, **dit_kw) -> None:
    """Lower the ``diffusion_core`` stage of a two-expert model into ``b`` (``dit``: each
    expert's :class:`wan_dit.DitArch`): one DiT forward
    per expert, in scopes ``high_noise`` and ``low_noise``, each holding a loop ``calls`` that
    repeats by the expert's DiT calls (the stage repeats by the calls per step both share; see
    :func:`stage_split`). Records
    the split in ``graph.meta["experts"]["diffusion_core"]``. ``dit_kw`` go to
    :func:`wan_dit.build` (the runtime's lowering variant, ``timestep_per_token``)."""
    stage_rep, reps = stage_split(opts.experts)
    with b.stage("diffusion_core", invocations=stage_rep), b.weights(weights):
        for e in opts.experts:
            if e.name not in reps:
                continue
            # the expert's name keeps its weights apart; the loop counts its calls (shared weights)
            with b.scope(e.name), b.loop("calls", reps[e.name]):
                wan_dit.build(b, dit, latent_shape=latent_shape, batch=batch, text_len=text_len,
                              compute_dtype=compute_dtype, **dit_kw)
    b.graph.meta.setdefault("experts", {})["diffusion_core"] = [
        {"name": e.name, "steps": e.steps, "guidance_scale": e.guidance_scale, "calls": e.calls} for e in opts.experts]
