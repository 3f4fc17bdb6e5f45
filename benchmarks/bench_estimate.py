"""Time wanir's default estimate against counting the same pipeline with FlopCounterMode.

wanir: count (lower, transform, count) and time the default pipeline (Wan2.1 T2V-14B,
1280x720x81, 50 steps, guidance) in process with its caches emptied; resolving the
configuration is timed separately (it is cached after the first call). FlopCounterMode: build the three real modules
(UMT5EncoderModel, WanTransformer3DModel, AutoencoderKLWan) on the meta device and run one
forward of each (the VAE's decode) under FlopCounterMode with the math attention backend.
Prints the medians and their ratio.

    .venv/bin/python benchmarks/bench_estimate.py [--repeats N] [--ref-repeats M]
"""
from __future__ import annotations

import argparse
import statistics
import time


def time_wanir(repeats: int) -> dict:
    """Median seconds of: the first composition (cold), resolving again (cached), and count +
    time of the default pipeline with every cache emptied (what a new configuration costs)."""
    from wanir.config import _compose_cached
    from wanir.estimate import clear_caches, count, paused_gc
    from wanir.estimate import time as time_run
    from wanir.resolve import resolve

    _compose_cached.cache_clear()
    clear_caches()
    t = time.perf_counter()
    sc = resolve([])
    compose_cold = time.perf_counter() - t
    cached = []
    for _ in range(repeats):
        t = time.perf_counter()
        sc = resolve([])
        cached.append(time.perf_counter() - t)
    runs, build, passes = [], [], []
    for _ in range(repeats):
        clear_caches()
        with paused_gc():
            t0 = time.perf_counter()
            counted = count(sc.build)                   # lower + transforms + counting passes
            t1 = time.perf_counter()
            est = time_run(counted, sc.run)             # roofline, host stages, summary
            t2 = time.perf_counter()
        runs.append(t2 - t0)
        build.append(t1 - t0)
        passes.append(t2 - t1)
    g = est.graph
    return {"compose_cold_s": compose_cold, "compose_cached_s": statistics.median(cached),
            "build_s": statistics.median(build), "passes_s": statistics.median(passes),
            "estimate_s": statistics.median(runs), "nodes": len(g), "time_s": est.total["time_s"]}


def time_flopcounter(repeats: int) -> dict:
    """Median seconds to build the three real modules on meta and count one forward each."""
    import diffusers
    import torch
    import transformers
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from wanir.resolve import resolve

    sc = resolve([])
    cfg, wl = sc.config, sc.build.workload
    te, dit, vae = cfg.text_encoder, cfg.dit, cfg.vae

    def once():
        total = 0
        with torch.device("meta"):
            t5 = transformers.UMT5EncoderModel(transformers.UMT5Config(
                vocab_size=te.vocab_size, d_model=te.d_model, d_kv=te.d_kv, d_ff=te.d_ff, num_layers=te.num_layers,
                num_heads=te.num_heads, relative_attention_num_buckets=te.relative_attention_num_buckets,
                relative_attention_max_distance=te.relative_attention_max_distance,
                feed_forward_proj=te.feed_forward_proj, tie_word_embeddings=False)).to(torch.bfloat16).eval()
            model = diffusers.WanTransformer3DModel(
                patch_size=tuple(dit.patch_size), num_attention_heads=dit.num_attention_heads,
                attention_head_dim=dit.attention_head_dim, in_channels=dit.in_channels,
                out_channels=dit.out_channels, text_dim=dit.text_dim, freq_dim=dit.freq_dim, ffn_dim=dit.ffn_dim,
                num_layers=dit.num_layers, cross_attn_norm=dit.cross_attn_norm, qk_norm=dit.qk_norm,
                eps=dit.eps).to(torch.bfloat16).eval()
            ae = diffusers.AutoencoderKLWan(base_dim=vae.base_dim, z_dim=vae.z_dim, dim_mult=list(vae.dim_mult),
                                            num_res_blocks=vae.num_res_blocks, attn_scales=list(vae.attn_scales),
                                            temperal_downsample=list(vae.temperal_downsample)).eval()
        ids = torch.zeros(1, wl.text_len, dtype=torch.long, device="meta")
        lat = torch.empty(1, 16, wl.latent_frames, wl.latent_height, wl.latent_width, device="meta",
                          dtype=torch.bfloat16)
        txt = torch.empty(1, wl.text_len, dit.text_dim, device="meta", dtype=torch.bfloat16)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            for fn in (lambda: t5(input_ids=ids),
                       lambda: model(hidden_states=lat, timestep=torch.full((1,), 999.0, device="meta"),
                                     encoder_hidden_states=txt, return_dict=False),
                       lambda: ae.decode(lat.float(), return_dict=False)):
                fc = FlopCounterMode(display=False)
                with fc:
                    fn()
                total += fc.get_total_flops()
        return total

    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        flops = once()
        times.append(time.perf_counter() - t)
    return {"flopcounter_s": statistics.median(times), "flops": flops}


def main(argv=None) -> int:
    """Run both timings and print medians and their ratio; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--ref-repeats", type=int, default=3)
    p.add_argument("--skip-reference", action="store_true")
    a = p.parse_args(argv)
    w = time_wanir(a.repeats)
    print(f"wanir: {w['nodes']} nodes; resolve {w['compose_cold_s'] * 1e3:.0f} ms cold, "
          f"{w['compose_cached_s'] * 1e3:.2f} ms cached (excluded below)")
    print(f"wanir count + time (lower, transforms, every pass, roofline), caches emptied, median of {a.repeats}: "
          f"{w['estimate_s'] * 1e3:.1f} ms (count {w['build_s'] * 1e3:.1f} ms, time {w['passes_s'] * 1e3:.1f} ms)")
    if a.skip_reference:
        return 0
    r = time_flopcounter(a.ref_repeats)
    print(f"FlopCounterMode on the real UMT5 + DiT + VAE decoder on meta, median of {a.ref_repeats}: "
          f"{r['flopcounter_s']:.2f} s ({r['flops'] / 1e15:.1f} PFLOP per invocation counted)")
    print(f"ratio: {r['flopcounter_s'] / w['estimate_s']:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
