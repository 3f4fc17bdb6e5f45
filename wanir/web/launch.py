"""Start ``wanir serve`` in a child process on a free port and wait for its URL (for the
browser tests, the screenshot script and the benchmark)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager


@contextmanager
def running_server(*args: str, timeout: float = 60.0):
    """``wanir serve --port 0 ARGS...`` in a child process; yields ``(url, seconds until the
    page answered)``. The child is stopped on exit."""
    cmd = [sys.executable, "-m", "wanir", "serve", "--port", "0", *args]
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = None
        lines = []
        while url is None:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("wanir serve exited: " + "".join(lines)[-2000:])
            lines.append(line)
            m = re.search(r"(http://\S+/)", line)
            if m:
                url = m.group(1)
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()   # keep the pipe drained
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.perf_counter() - t0 > timeout:
                    raise
                time.sleep(0.02)
        started = time.perf_counter() - t0
        yield url, started
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:   # pragma: no cover
            proc.kill()
            proc.wait()
