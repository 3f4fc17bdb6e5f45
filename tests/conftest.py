"""Test set-up.

Under CI (``CI`` set in the environment):
- hypothesis runs derandomized and without an example database, so a CI result depends
  neither on the random examples of that run nor on failures replayed from an earlier one;
  local runs keep drawing new examples and keep their database outside the repository;
- the reference packages (torch, diffusers, transformers) must be importable: the reference
  tests skip without them, and a CI run that skipped them would prove none of the exact counts.
"""
import importlib.util
import os
import subprocess
import sys

from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# hypothesis' storage (example database, cached constants) never lives in the repository:
# locally it is kept in the user's cache directory; under CI there is no example database,
# so nothing is replayed from an earlier run
set_hypothesis_home_dir(os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                     "wanir", "hypothesis"))
settings.register_profile("ci", derandomize=True, deadline=None, database=None)
settings.register_profile("dev")
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_configure(config):
    if os.environ.get("CI"):
        missing = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(f"CI needs the 'reference' extra for the reference tests; missing: {', '.join(missing)}")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_estimate_caches(request):
    """wanir caches resolved scenarios, counted builds and estimates in process; a test that
    monkeypatches a rule table or a frontend must not leave a result counted with the patch
    behind for the next test, nor find one counted without it: the caches are emptied before
    and after each test that uses monkeypatch."""
    patched = "monkeypatch" in request.fixturenames
    if patched:
        from wanir.estimate import clear_caches
        clear_caches()
    yield
    if patched:
        clear_caches()


@pytest.fixture(autouse=True)
def _cli_subprocess_only_in_integration_tests(request):
    """A test that runs Python or wanir in a new process (the CLI as a user runs it, a server)
    is an integration test: ``make test-fast`` leaves those out by their marker, so one left
    unmarked would slow the fast tier (about 0.3 s of CPU a process) without anyone noticing.
    Starting one from a test without the ``integration`` marker fails, naming the test.
    Other processes (``uname`` behind ``platform``, Graphviz's ``dot``) are not this rule's."""
    if request.node.get_closest_marker("integration") is not None:
        yield
        return
    real = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kwargs):
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        prog = os.path.basename(os.fsdecode(argv[0])) if argv else ""
        if argv and (os.fsdecode(argv[0]) == sys.executable or prog.startswith("python") or prog == "wanir"):
            raise AssertionError(f"{request.node.nodeid} runs {prog} in a new process: mark it @pytest.mark.integration")
        real(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = guarded
    try:
        yield
    finally:
        subprocess.Popen.__init__ = real
