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
def running_server(*args: str, timeout: float = 60.0, info: dict | None = None):
    """``wanir serve --port 0 ARGS...`` in a child process; yields ``(url, seconds until the
    page answered)``. The child is stopped on exit. ``info`` (a dict), when given, gets the
    child's ``pid`` and ``lines``, the list its output lines are appended to."""
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
        if info is not None:
            info.update(pid=proc.pid, lines=lines)
        # keep the pipe drained (the lines kept when asked for, the last 1000)
        threading.Thread(target=_drain, args=(proc.stdout, lines if info is not None else None), daemon=True).start()
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


def _drain(stream, keep) -> None:
    for line in stream:
        if keep is not None:
            keep.append(line)
            del keep[:-1000]
