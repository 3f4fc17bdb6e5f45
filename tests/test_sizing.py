"""wanir size: plan enumeration, prices, ranking and memory filtering."""
import pytest

from wanir.backends.sizing import candidate_plans, parse_prices, size
from wanir.errors import ConfigError


def test_candidate_plans_use_every_device_and_respect_heads():
    for n in (1, 2, 4, 8, 16):
        plans = candidate_plans(n, heads=12, guidance=True)
        assert plans
        for p in plans:
            assert p.degree == n
            assert 12 % p.ulysses == 0          # 12 heads: never 8-way Ulysses
            assert n % p.fsdp == 0
    assert not any(p.ulysses == 8 for p in candidate_plans(8, heads=12, guidance=True))
    assert any(p.ulysses == 8 for p in candidate_plans(8, heads=40, guidance=True))


def test_cfg_parallel_only_with_guidance():
    assert any(p.cfg == 2 for p in candidate_plans(4, heads=40, guidance=True))
    assert all(p.cfg == 1 for p in candidate_plans(4, heads=40, guidance=False))


def test_parse_prices():
    assert parse_prices(["h100-sxm=2.5", "l40s=0.9"]) == {"h100-sxm": 2.5, "l40s": 0.9}
    with pytest.raises(ConfigError, match="HARDWARE=USD"):
        parse_prices(["h100-sxm"])


@pytest.mark.slow
def test_size_ranks_by_cost_and_drops_what_does_not_fit():
    res = size(["model=wan2.1-t2v-1.3b", "workload=480p"], latency_s=60.0, hardware=["h100-sxm", "rtx-4090"],
               devices=(1, 2, 4), prices={"h100-sxm": 2.5, "rtx-4090": 0.4})
    cands = res["candidates"]
    assert res["evaluated"] == len(cands) + res["dropped"]
    assert all(c.fits for c in cands)
    meeting = [c for c in cands if c.meets]
    assert meeting and all(c.time_s <= 60.0 for c in meeting)
    costs = [c.cost_per_video for c in meeting]
    assert costs == sorted(costs)
    for c in meeting:   # cost per video = GPUs x price x hours per video per replica
        price = {"h100-sxm": 2.5, "rtx-4090": 0.4}[c.hardware]
        assert c.cost_per_video == pytest.approx(c.devices * price * c.time_s / 3600 / c.plan.dp)


def test_size_drops_what_does_not_fit():
    # 14B DiT weights alone at bf16: 14e9 x 2 bytes = 28 GB > a 24 GiB card
    res = size(["model=wan2.1-t2v-14b", "workload=480p"], latency_s=1e9, hardware=["rtx-4090"], devices=(1,))
    assert res["evaluated"] == res["dropped"] > 0 and res["candidates"] == []


SMALL = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=5", "workload.steps=2"]


def test_unknown_price_name_is_an_error_naming_valid_ones():
    with pytest.raises(ConfigError, match=r"no hardware named 'h100'.*did you mean.*h100-sxm"):
        size(SMALL, latency_s=1e9, hardware=["h100-sxm"], devices=(1,), prices={"h100": 2.5})
    with pytest.raises(ConfigError, match="h100-sxm"):
        parse_prices(["h100=2.5"], known=["h100-sxm", "l40s"])
    for bad in ("h100-sxm=nan", "h100-sxm=inf", "h100-sxm=-1"):
        with pytest.raises(ConfigError, match="finite"):
            parse_prices([bad])


@pytest.mark.slow
def test_partial_prices_rank_priced_first_then_the_rest():
    res = size(SMALL, latency_s=1e9, hardware=["h100-sxm", "l40s"], devices=(1, 2), prices={"l40s": 1.0})
    cands = res["candidates"]
    assert not res["priced"]
    flags = [c.priced for c in cands]
    # every priced row comes before every unpriced one (all meet this loose target)
    assert flags == sorted(flags, reverse=True) and True in flags and False in flags
    priced = [c.cost_per_video for c in cands if c.priced]
    assert priced == sorted(priced)
    unpriced = [c.gpu_hours_per_video for c in cands if not c.priced]
    assert unpriced == sorted(unpriced)
    assert {c.hardware for c in cands if c.priced} == {"l40s"}


@pytest.mark.slow
def test_throughput_sizing_tries_batches_and_replicas():
    res = size(SMALL, throughput=1.0, hardware=["h100-sxm"], devices=(1, 2), prices={"h100-sxm": 2.0})
    batches = {c.batch for c in res["candidates"]}
    assert {1, 2, 4} <= batches
    for c in res["candidates"]:
        # videos/hour = replicas x videos per batch x batches per hour
        assert c.videos_per_hour == pytest.approx(c.plan.dp * c.batch * 3600 / c.time_s)
        assert c.cost_per_video == pytest.approx(c.devices * 2.0 * c.time_s / 3600 / c.plan.dp / c.batch)
    # a latency target alone does not batch
    assert {c.batch for c in size(SMALL, latency_s=1e9, hardware=["h100-sxm"], devices=(1,))["candidates"]} == {1}


def test_batches_stop_where_memory_ends():
    # the 14B does not fit a 24 GiB card alone: no batch of it is tried further
    res = size(["model=wan2.1-t2v-14b", "workload=480p"], throughput=1.0, hardware=["rtx-4090"], devices=(1,))
    assert res["candidates"] == [] and {c.batch for c in res["unfit"]} == {1}


@pytest.mark.slow
def test_size_json_returns_every_evaluated_row_unless_top():
    import json

    from wanir.backends.sizing import render

    res = size(["model=wan2.1-t2v-14b", "workload=480p"], latency_s=1.0, hardware=["h100-sxm", "rtx-4090"],
               devices=(1, 2, 4, 8))
    d = json.loads(render(res, "json"))
    assert len(d["candidates"]) == res["evaluated"] > 20
    assert sum(1 for c in d["candidates"] if not c["fits"]) == res["dropped"] > 0
    assert len(json.loads(render(res, "json", top=3))["candidates"]) == 3


def test_size_honours_a_parallel_plan():
    res = size([*SMALL, "parallel=ring", "parallel.degree=2"], latency_s=1e9, hardware=["h100-sxm"])
    assert {(c.plan.label, c.devices) for c in res["candidates"]} == {("ring2", 2)}
    with pytest.raises(ConfigError, match="uses 2 devices"):
        size([*SMALL, "parallel=ring", "parallel.degree=2"], latency_s=1e9, hardware=["h100-sxm"], devices=(4,))


def test_size_honours_the_configured_hardware():
    # hardware=... (and hardware.* changes) in the overrides select the one device sized
    res = size([*SMALL, "hardware=l40s", "hardware.memory.capacity_gib.value=1"], latency_s=1e9, devices=(1,))
    assert res["candidates"] == [] and {c.hardware for c in res["unfit"]} == {"l40s"}
    assert all(c.capacity_bytes == 2**30 for c in res["unfit"])
    with pytest.raises(ConfigError, match="given twice"):
        size([*SMALL, "hardware=l40s"], latency_s=1e9, hardware=["h100-sxm"], devices=(1,))


def _times(res) -> dict:
    return {(c.hardware, c.plan.label, c.batch): c.time_s for c in res["candidates"] + res["unfit"]}


def test_a_plans_time_does_not_depend_on_what_was_sized_before():
    # an RTX 4090 host shares its uplinks and DRAM between the cards that copy offloaded weights
    # at once (backends/comm.py shared_copy_rate): dp2 copies on 2 ranks, dp8 on 8, so their
    # one-video times differ — whichever of the two the search costs first
    small = ["model=wan2.1-t2v-1.3b", "workload=480p"]
    both = _times(size(small, latency_s=600.0, hardware=["rtx-4090"], devices=(2, 8)))
    alone = {**_times(size(small, latency_s=600.0, hardware=["rtx-4090"], devices=(8,))),
             **_times(size(small, latency_s=600.0, hardware=["rtx-4090"], devices=(2,)))}
    assert both == alone
    assert both[("rtx-4090", "dp8", 1)] > both[("rtx-4090", "dp2", 1)]


@pytest.mark.slow
def test_size_over_worker_processes_equals_one_process():
    args = (["model=wan2.1-t2v-1.3b", "workload=480p"],)
    kw = dict(throughput=20.0, hardware=["h100-sxm", "l40s", "rtx-4090"], devices=(1, 2, 4, 8))
    one, two = size(*args, jobs=1, **kw), size(*args, jobs=2, **kw)
    assert [(c.hardware, c.plan, c.batch, c.time_s, c.peak_memory_bytes, c.meets) for c in one["candidates"]] == \
        [(c.hardware, c.plan, c.batch, c.time_s, c.peak_memory_bytes, c.meets) for c in two["candidates"]]
    assert _times(one) == _times(two) and one["evaluated"] == two["evaluated"] and one["dropped"] == two["dropped"]
