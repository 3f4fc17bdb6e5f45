"""Helpers of the hostile-input tests: run the ``wanir`` CLI (or a Python snippet) in a
subprocess under an address-space limit and a timeout, and check that it failed with one
clean line and exit status 2."""
import os
import subprocess
import sys
from pathlib import Path

GiB = 2**30
REPO = Path(__file__).resolve().parents[1]

#: address space a hostile case may use (the interpreter, Hydra, numpy and matplotlib fit in it)
MEM_LIMIT = 3 * GiB
#: wall-clock seconds a hostile case may take
TIME_LIMIT = 90

_PRELUDE = """
import resource, sys
lim = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
sys.argv = sys.argv[1:]
"""
_CLI = _PRELUDE + "from wanir.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def _env(extra=None):
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200")
    env.update(extra or {})
    return env


def cli(*args, mem=MEM_LIMIT, timeout=TIME_LIMIT, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run ``wanir ARGS`` under ``mem`` bytes of address space; fails the test on timeout."""
    return subprocess.run([sys.executable, "-c", _CLI, str(mem), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO, env=_env(env))


def python(code: str, mem=MEM_LIMIT, timeout=TIME_LIMIT) -> subprocess.CompletedProcess:
    """Run a Python snippet under the same limits."""
    return subprocess.run([sys.executable, "-c", _PRELUDE + code, str(mem)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=_env())


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2, exactly one line on stderr starting ``wanir: error:``, no traceback,
    every needle in it; returns the line."""
    err = r.stderr
    assert r.returncode == 2, (r.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    assert err.count("\n") == 1 and err.startswith("wanir: error: "), err[-2000:]
    assert len(err) < 1200, f"an error line of {len(err)} characters"
    for n in needles:
        assert n in err, (n, err)
    return err.strip()
