"""Optional extras the tests need, in one place: whether each is installed, and the one way a
test that needs it skips (or, under CI, fails: CI installs every extra)."""
import importlib.util
import os

import pytest

#: the 'web' extra of `wanir serve`
WEB = all(importlib.util.find_spec(m) for m in ("starlette", "uvicorn", "plotly"))


def need_web() -> None:
    """Skip the calling test when the 'web' extra is missing (fail under CI, which has it)."""
    if WEB:
        return
    if os.environ.get("CI"):
        pytest.fail("CI needs the 'web' extra (starlette, uvicorn, plotly) for the `wanir serve` tests")
    pytest.skip("needs the 'web' extra: pip install 'wanir[web]'")
