"""The Python API from several threads, and what it accepts as overrides."""
from concurrent.futures import ThreadPoolExecutor

import pytest

import wanir
from wanir.errors import ConfigError

SMALL = ["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=5", "workload.steps=2"]

# distinct group choices, so that threads compose configurations (Hydra) at the same time
CASES = [SMALL + [f"hardware={hw}", f"roofline={mode}"]
         for hw in ("h100-sxm", "a100-80gb", "l40s", "h200") for mode in ("calibrated", "ideal")]


@pytest.mark.slow
def test_concurrent_estimates_match_sequential():
    from wanir import config

    config._compose.cache_clear()        # make every thread compose, not read a cache
    with ThreadPoolExecutor(max_workers=8) as ex:
        got = list(ex.map(lambda ov: wanir.estimate(ov).to_dict(), CASES * 3))
    want = [wanir.estimate(ov).to_dict() for ov in CASES]
    for i, d in enumerate(got):
        assert d == want[i % len(CASES)]


def test_overrides_must_be_a_list_or_tuple_of_strings():
    with pytest.raises(ConfigError, match="list or tuple of strings.*got str"):
        wanir.estimate("model=wan2.1-t2v-1.3b")
    with pytest.raises(ConfigError, match="must be strings[;,] got int"):
        wanir.estimate(["workload.height=480", 5])
    for bad in ({"workload.height": 480}, None, (o for o in SMALL)):
        with pytest.raises(ConfigError, match="list or tuple"):
            wanir.estimate(bad)
    assert wanir.estimate(tuple(SMALL)).to_dict() == wanir.estimate(list(SMALL)).to_dict()
