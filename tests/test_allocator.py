"""The caching-allocator model (passes/allocator.py) against PyTorch's documented rules.

Every expected number is derived here from the rules as PyTorch states them (the constants
of c10/core/AllocatorConfig.h and CUDACachingAllocator.cpp, the CUDA memory-management
notes), not read from wanir's output."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from wanir.passes import allocator as al

MiB = 1 << 20


def test_constants_match_pytorchs_header():
    """The constants equal those in the installed PyTorch's c10/core/AllocatorConfig.h."""
    torch = pytest.importorskip("torch", reason="needs PyTorch (reference extra) for its headers")
    hdr = Path(torch.__file__).parent / "include" / "c10" / "core" / "AllocatorConfig.h"
    if not hdr.is_file():
        pytest.skip("this PyTorch build ships no c10/core/AllocatorConfig.h")
    text = hdr.read_text()
    found = {m.group(1): int(m.group(2)) for m in re.finditer(r"constexpr size_t (k\w+) = (\d+);", text)}
    for name, value, _ in al.RULES:
        if name in found:
            assert found[name] == value, name
    assert {"kMinBlockSize", "kSmallSize", "kSmallBuffer", "kMinLargeAlloc", "kRoundLarge"} <= set(found)


@pytest.mark.parametrize("n, want", [(1, 512), (511, 512), (512, 512), (513, 1024), (1000, 1024),
                                     (3 * 512 + 1, 4 * 512), (10 * MiB + 1, 10 * MiB + 512)])
def test_round_size_is_a_multiple_of_512(n, want):
    assert al.round_size(n) == want


@pytest.mark.parametrize("n, want", [
    (1, 2 * MiB),                    # small: a 2 MiB segment
    (1 * MiB, 2 * MiB),              # exactly kSmallSize is still small
    (1 * MiB + 1, 20 * MiB),         # above 1 MiB and below 10 MiB: kLargeBuffer
    (10 * MiB - 512, 20 * MiB),
    (10 * MiB, 10 * MiB),            # from kMinLargeAlloc on: its own size rounded up to 2 MiB
    (10 * MiB + 1, 12 * MiB),
    (101 * MiB, 102 * MiB),
])
def test_segment_size_follows_get_allocation_size(n, want):
    assert al.segment_size(n) == want


def test_small_requests_pack_into_2_mib_segments():
    a = al.CachingAllocator()
    per_segment = 2 * MiB // 512                 # 4096 blocks of 512 bytes fill one 2 MiB segment
    for i in range(per_segment):
        a.malloc(i, 100)                         # 100 bytes round up to 512
    assert a.reserved == 2 * MiB and a.allocated == 2 * MiB
    a.malloc("one more", 1)
    assert a.reserved == 4 * MiB


def test_large_pool_split_rule():
    a = al.CachingAllocator()
    a.malloc("x", 5 * MiB)                       # 20 MiB segment, split: 15 MiB free remainder
    assert (a.reserved, a.allocated) == (20 * MiB, 5 * MiB)
    a.malloc("y", 5 * MiB)                       # reuses the remainder
    assert (a.reserved, a.allocated) == (20 * MiB, 10 * MiB)
    a.malloc("z", 9 * MiB + 512 * 1024)         # 9.5 MiB into the 10 MiB left: 0.5 MiB ≤ 1 MiB, not split
    assert a.reserved == 20 * MiB
    assert a.allocated == 20 * MiB              # the whole remaining block counts as allocated


def test_freed_blocks_stay_reserved_until_empty_cache():
    a = al.CachingAllocator()
    a.malloc("a", 100 * MiB)
    a.free("a")
    assert (a.allocated, a.reserved) == (0, 100 * MiB)
    a.malloc("b", 50 * MiB)                      # best fit: split the cached 100 MiB block
    assert a.reserved == 100 * MiB
    a.malloc("c", 60 * MiB)                      # 50 MiB left in that segment: too small, a new one
    assert a.reserved == 160 * MiB
    a.free("b")
    a.free("c")
    a.empty_cache()
    assert a.reserved == 0


def test_best_fit_picks_the_smallest_block_that_fits():
    a = al.CachingAllocator()
    for k, mib in (("p", 40), ("q", 30), ("r", 60)):
        a.malloc(k, mib * MiB)
    a.free("p")
    a.free("r")
    a.malloc("s", 30 * MiB)                      # fits both cached blocks: takes the 40 MiB one
    a.malloc("t", 55 * MiB)                      # and this one the 60 MiB one: no new segment
    assert a.reserved == 130 * MiB


def test_growing_requests_fragment_without_expandable_segments():
    """Sizes that grow from one iteration to the next (a request each, freed before the
    next) cannot reuse the previous segment; with expandable segments the freed space merges
    with the segment's end and is reused, so only the largest request's pages stay mapped."""
    sizes = [22, 42, 62, 82]                     # MiB; each ≥ 10 MiB and a multiple of 2 MiB
    prog = []
    for i, s in enumerate(sizes):
        prog += [("alloc", i, s * MiB), ("free", i)]
    plain = al.replay(prog)
    assert plain["peak_reserved_bytes"] == sum(sizes) * MiB
    exp = al.replay(prog, expandable=True)
    page = 20 * MiB                              # large-pool pages of an expandable segment
    assert exp["peak_reserved_bytes"] == -(-max(sizes) * MiB // page) * page
    assert plain["peak_allocated_bytes"] == exp["peak_allocated_bytes"] == max(sizes) * MiB


def test_every_runtime_empty_cache_value_has_a_rule():
    from wanir.runtime import EMPTY_CACHE

    assert set(EMPTY_CACHE) == set(al.EMPTY_CACHE_RULES)


def test_empty_cache_rules_of_the_official_code():
    pts = al.empty_cache_points
    assert pts("official", True, True) == {"before_dit_loop", "after_each_dit_call", "after_dit_loop"}
    assert pts("official", True, False) == {"after_dit_loop"}
    assert pts("official", False, True) == set()
    assert pts("never", True, True) == set()
    with pytest.raises(ValueError, match="empty_cache"):
        pts("sometimes", True, True)


def test_empty_cache_after_each_call_releases_the_loop_cache():
    """Two DiT calls whose activations do not fit the weights' cached blocks: without
    empty_cache the second call meets the first call's cache; emptying it after each call
    returns the activations' segment between calls (the peak stays one call's)."""
    stages = {"diffusion_core": {"events": [("alloc", "h", 30 * MiB), ("free", "h")], "weights": [100 * MiB],
                                 "invocations": 80}}
    prog = list(al.pipeline_program(stages, ["diffusion_core"], True, {"after_each_dit_call"}))
    assert prog.count(("empty_cache",)) == al.LOOP_REPLAYS
    r = al.replay(prog)
    assert r["peak_reserved_bytes"] == 130 * MiB and r["peak_allocated_bytes"] == 130 * MiB


def test_estimate_reports_allocated_and_reserved():
    import wanir

    est = wanir.estimate(["model=wan2.1-t2v-1.3b", "workload=480p", "workload.frames=17", "workload.steps=2",
                          "hardware=h100-sxm"])
    m = est.extra["memory"]
    tot = est.total
    assert tot["peak_allocated_bytes"] == m["peak_allocated_bytes"]
    assert tot["peak_reserved_bytes"] == m["peak_reserved_bytes"]
    # tensors' blocks: at least the live bytes, at most 512 bytes more per tensor (a loose 1 %)
    live = m["weight_bytes"] + m["activation_bytes"]
    assert live <= tot["peak_allocated_bytes"] <= 1.01 * live
    assert tot["peak_allocated_bytes"] <= tot["peak_reserved_bytes"]
    assert tot["peak_memory_bytes"] == tot["peak_reserved_bytes"] + tot["reserve_bytes"]
    from wanir import hardware
    assert est.fits == (tot["peak_memory_bytes"] <= hardware.load("h100-sxm").memory_bytes)


def test_expandable_segments_option_is_checked():
    import wanir
    from wanir.errors import ConfigError

    with pytest.raises(ConfigError, match="expandable_segments"):
        wanir.estimate(["model=wan2.1-t2v-1.3b", "memory.expandable_segments=maybe"])


def test_plan_reports_per_device_allocated_and_reserved():
    import wanir

    est = wanir.estimate(["model=wan2.1-t2v-1.3b", "workload=480p", "workload.frames=17", "workload.steps=2",
                          "hardware=h100-sxm", "parallel=ulysses", "parallel.degree=2"])
    t = est.parallel["total"]
    assert t["peak_allocated_bytes"] <= t["peak_reserved_bytes"]
    assert t["peak_memory_bytes"] == t["peak_reserved_bytes"] + t["reserve_bytes"]
    assert t["fits"] == (t["peak_memory_bytes"] <= wanir.hardware.load("h100-sxm").memory_bytes)


def _random_stages(rng, offload_weights_of_t5=True):
    """Three stages of random weights and balanced alloc/free events (sizes across the small,
    medium and large pools)."""
    sizes = [rng.choice([100, 4096, 600 * 1024, 3 * MiB, 12 * MiB, 45 * MiB]) + rng.randrange(0, 9000)
             for _ in range(400)]
    stages = {}
    for name, inv in (("text_encoder", 2), ("diffusion_core", 50), ("vae_decode", 1)):
        live, ev = [], []
        for i in range(rng.randrange(5, 60)):
            if live and rng.random() < 0.45:
                ev.append(("free", live.pop(rng.randrange(len(live)))))
            else:
                key = (name, i)
                ev.append(("alloc", key, rng.choice(sizes)))
                live.append(key)
        ev += [("free", k) for k in live]
        stages[name] = {"events": al.Program(ev), "invocations": inv,
                        "weights": [rng.choice(sizes) for _ in range(rng.randrange(0, 40))]}
    return stages


@pytest.mark.parametrize("seed", range(12))
def test_replay_pipeline_equals_the_plain_replay(seed):
    """An invariant: the cached and shortened replay of a generation (replay_pipeline) gives
    the peaks of replaying every operation of pipeline_program, run after run (cache hits)."""
    import random

    rng = random.Random(seed)
    stages = _random_stages(rng)
    order = ("text_encoder", "diffusion_core", "vae_decode")
    for offload in (False, True):
        for points in (set(), {"after_dit_loop"}, {"before_dit_loop", "after_each_dit_call", "after_dit_loop"}):
            for expandable in (False, True):
                want = al.replay(list(al.pipeline_program(stages, order, offload, points)), expandable)
                for _ in range(2):
                    assert al.replay_pipeline(stages, order, offload, points, expandable) == want
        # another activation pattern after the same opening part: the cached state is copied, not changed
        other = dict(stages, diffusion_core=dict(stages["diffusion_core"], events=al.Program(
            [("alloc", "x", 30 * MiB), ("alloc", "y", 2 * MiB), ("free", "x"), ("free", "y")])))
        want = al.replay(list(al.pipeline_program(other, order, offload, {"after_dit_loop"})))
        assert al.replay_pipeline(other, order, offload, {"after_dit_loop"}) == want
