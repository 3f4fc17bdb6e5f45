"""Parallel plans: the :class:`Plan` dataclass, parsing plan names and ``parallel`` config
mappings into a Plan, and checking a plan against a model (heads, guidance, tokens)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from wanir.dictconfig import to_plain
from wanir.errors import ConfigError


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
#: ``parallel.vae``: single (the decode on one device of each replica) or patch (row bands, vae_patch.py)
VAE_MODES = ("single", "patch")


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
    vae: str = "single"     # patch: the VAE decode split into row bands over the replica (vae_patch.py)

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
                "intra_node": dict(self.intra_node), "vae": self.vae}


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
    p = dict(to_plain(p))
    known = {"name", "degree", "overlap", "gpus_per_node", "network", "intra_node", "fsdp", "vae", *DIMS}
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
    vae = p.get("vae", "single")
    vae = "single" if vae is None else vae
    if vae not in VAE_MODES:
        raise PlanError(f"parallel.vae must be one of {', '.join(VAE_MODES)}, got {vae!r}")
    return Plan(str(p.get("name", "custom")), dims["ulysses"], dims["ring"], dims["cfg"], dims["dp"], fsdp,
                overlap, gpn, tuple(sorted(dict(net).items())), tuple(sorted(dict(intra).items())), vae)


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
    return dict(to_plain(d))

