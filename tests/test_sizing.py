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
