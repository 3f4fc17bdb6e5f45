"""The software stack an estimate or a sizing row assumes: runtime, attention kernel (as run
on the GPU: the runtime's default for its family unless set) and precisions — one record
(:func:`stack_of`) that the size table, its caption and the per-device table name."""
from __future__ import annotations

from wanir import kernels
from wanir.errors import ConfigError
from wanir.runtime import run_attention_kernel

#: the precision keys a sizing row names (the image encoder only where the model has one)
STACK_PRECISIONS = ("dit_weights", "dit_compute", "text_encoder", "vae")
#: how a table names each precision key
PREC_NAMES = {"dit_weights": "DiT weights", "dit_compute": "DiT compute", "text_encoder": "text encoder",
              "vae": "VAE"}


def stack_of(run, hw) -> dict:
    """The software stack the resolved ``run`` (a :class:`wanir.scenario.Run`) runs on
    ``hw``: {"runtime": name, "attention_kernel": the concrete kernel (``sdpa`` resolved for
    the GPU's family), "attention_kernel_config": the name as configured or defaulted (e.g.
    ``sdpa``), "kernel_default": whether the runtime chose it, "precision": {key: dtype} as
    configured} — what every sizing row and caption names."""
    name = run_attention_kernel(run, hw)
    try:
        concrete = kernels.resolve_attention(name, hw)
    except ConfigError:
        concrete = name
    precision = (run.configured_options or run.options).precision
    prec = {k: getattr(precision, k) for k in STACK_PRECISIONS}
    return {"runtime": run.runtime.name, "attention_kernel": concrete, "attention_kernel_config": name,
            "kernel_default": run.kernel_from_runtime, "precision": prec}


def kernel_label(st: dict) -> str:
    """The kernel a stack runs, as 'configured→run' where ``sdpa`` resolves to another name."""
    k, named = st.get("attention_kernel", "-"), st.get("attention_kernel_config")
    return k if not named or named == k else f"{named}→{k}"
