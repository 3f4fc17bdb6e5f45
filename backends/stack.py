"""The software stack an estimate or a sizing row assumes: runtime, attention kernel (as run
on the GPU: the runtime's default for its family unless set) and precisions — one record
(:func:`stack_of`) that the size table, its caption and the per-device table name."""
from __future__ import annotations

from wanir import kernels
from wanir.errors import ConfigError
from wanir.options import select
from wanir.runtime import attention_kernel_for, runtime_options

#: the precision keys a sizing row names (the image encoder only where the model has one)
STACK_PRECISIONS = ("dit_weights", "dit_compute", "text_encoder", "vae")
#: how a table names each precision key
PREC_NAMES = {"dit_weights": "DiT weights", "dit_compute": "DiT compute", "text_encoder": "text encoder",
              "vae": "VAE"}


def stack_of(cfg, hw) -> dict:
    """The software stack ``cfg`` runs on ``hw``: {"runtime": name, "attention_kernel": the
    concrete kernel (``sdpa`` resolved for the GPU's family), "attention_kernel_config": the
    name as configured or defaulted (e.g. ``sdpa``), "kernel_default": whether the runtime
    chose it, "precision": {key: dtype}} — what every sizing row and caption names."""
    name = attention_kernel_for(cfg, hw)
    applied = list(select(cfg, "runtime.defaults_applied", []) or [])
    try:
        concrete = kernels.resolve_attention(name, hw)
    except ConfigError:
        concrete = name
    prec = {k: select(cfg, f"precision.{k}", None) for k in STACK_PRECISIONS}
    default = "roofline.attention_kernel" in applied or select(cfg, "roofline.attention_kernel") is None
    return {"runtime": runtime_options(cfg).name, "attention_kernel": concrete, "attention_kernel_config": name,
            "kernel_default": default, "precision": prec}


def kernel_label(st: dict) -> str:
    """The kernel a stack runs, as 'configured→run' where ``sdpa`` resolves to another name."""
    k, named = st.get("attention_kernel", "-"), st.get("attention_kernel_config")
    return k if not named or named == k else f"{named}→{k}"
