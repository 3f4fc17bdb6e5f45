"""Shared by the Wan-VAE reference tests (Wan2.1 and Wan2.2 configurations): one real
decode/encode counted under FlopCounterMode (MATH SDPA) on meta, the same stage built by
wanir, and wanir's tensor FLOPs keyed by the module paths FlopCounterMode reports."""
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from wanir import GraphBuilder
from wanir.frontends import wan_vae
from wanir.passes import flops, verify
from wanir.resolve import component

# first scope below the stage (loops dropped) -> the root FlopCounterMode names
ROOTS = {"decoder": "WanDecoder3d", "encoder": "WanEncoder3d",
         "post_quant_conv": "WanCausalConv3d", "quant_conv": "WanCausalConv3d"}


class VaeCounter:
    """Counts for one VAE config ``cfg``; real counts are memoized per (kind, shape)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.memo = {}

    def count(self, vae, kind, shape):
        """(total, {module path: flops}, output shape) of one real decode/encode."""
        key = (kind, shape)
        if key not in self.memo:
            fc = FlopCounterMode(display=False)
            with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), fc:
                if kind == "decode":
                    out = vae.decode(torch.empty(1, self.cfg.z_dim, *shape, device="meta"), return_dict=False)[0]
                else:
                    out = vae.encode(torch.empty(1, 3, *shape, device="meta")).latent_dist.mode()
            mods = {m: sum(int(v) for v in ops.values()) for m, ops in fc.get_flop_counts().items()}
            self.memo[key] = (int(fc.get_total_flops()), mods, tuple(out.shape))
        return self.memo[key]

    def build(self, kind, shape):
        """(graph, output value, tensor FLOPs) of wanir's decode/encode stage."""
        cfg = self.cfg
        arch = component("vae", cfg)
        b = GraphBuilder(weight_dtype="fp32")
        with b.stage(kind):
            if kind == "decode":
                out = wan_vae.build_decoder(b, arch, latent_shape=(cfg.z_dim, *shape), batch=1, dtype="fp32")
            else:
                out = wan_vae.build_encoder(b, arch, video_shape=(3, *shape), batch=1, dtype="fp32")
        verify.run(b.graph)
        total = flops.run(b.graph)[kind]["tensor_flops"]
        return b.graph, out, total


def module_flops(graph):
    """wanir tensor FLOPs per diffusers module path, parents including their children,
    as FlopCounterMode.get_flop_counts() reports them."""
    out = {}
    for n in graph:
        f = n.costs["tensor_flops"] * n.count
        if not f:
            continue
        parts = [s.name for s in reversed(list(n.scope.ancestors())) if s.kind not in ("stage", "loop")]
        parts = [ROOTS[parts[0]]] + (parts[1:] if parts[0] in ("decoder", "encoder") else [])
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i]) or "Global"
            out[key] = out.get(key, 0) + f
    return out
