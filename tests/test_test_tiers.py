"""The test tiers keep to their markers: a test that runs Python or wanir in a new process
must be marked ``integration`` (``make test-fast`` leaves those out), which the autouse
guard in conftest.py enforces; other processes are not refused."""
import shutil
import subprocess
import sys

import pytest


def test_a_python_process_needs_the_integration_marker():
    with pytest.raises(AssertionError, match="mark it @pytest.mark.integration"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)
    with pytest.raises(AssertionError, match="mark it @pytest.mark.integration"):
        subprocess.run(["wanir", "estimate"], check=False)


@pytest.mark.skipif(shutil.which("true") is None, reason="no `true` program")
def test_other_processes_are_not_refused():
    assert subprocess.run(["true"], check=False).returncode == 0


@pytest.mark.integration
def test_an_integration_test_may_run_python():
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0
