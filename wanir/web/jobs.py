"""Long work of ``wanir serve`` (a sizing, an HTML report) as jobs: each runs in a child
process with a time limit, reports its progress, and never holds the lock the estimates
take; one job of a kind runs at a time (a second is refused: :class:`Busy`, HTTP 429).

The child for a sizing is ``python -m wanir.web.jobs`` (this module), reading its request as
JSON on stdin, writing progress lines ``{"progress": fraction}`` on stderr and the sizing
payload as JSON on stdout; the child for a report is ``wanir report`` itself.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from wanir.errors import WanirError

from .service import Engine
from .wire import clean

#: seconds a job may run, by kind
LIMIT_S = {"size": 300.0, "report": 300.0}
#: finished jobs kept for their results (the oldest dropped first)
KEEP_DONE = 8
#: largest result kept (bytes)
MAX_RESULT_BYTES = 64 * 1024 * 1024


class Busy(WanirError):
    """A job of this kind is already running (HTTP 429)."""


@dataclass
class Job:
    """One job: ``kind`` ('size' or 'report'), ``state`` ('running', 'done', 'failed',
    'timed out', 'cancelled'), seconds since it started, its limit, ``progress`` (a fraction
    in [0, 1], or None when the work cannot tell), the error line, the result (the sizing
    payload, or the report's HTML text)."""

    kind: str
    limit_s: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    state: str = "running"
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    progress: float | None = None
    error: str | None = None
    result: object = None
    proc: subprocess.Popen | None = None

    def status(self, with_result: bool = True) -> dict:
        """Plain data for the page: id, kind, state, elapsed_s, limit_s, progress, error and,
        when done and ``with_result``, the result."""
        end = self.ended if self.ended is not None else time.monotonic()
        out = {"id": self.id, "kind": self.kind, "state": self.state, "elapsed_s": round(end - self.started, 2),
               "limit_s": self.limit_s, "progress": self.progress, "error": self.error}
        if with_result and self.state == "done" and self.kind != "report":
            out["result"] = self.result
        return out


class Jobs:
    """The jobs of one server: start one (:meth:`start_size`, :meth:`start_report`), look one
    up (:meth:`get`), cancel one (:meth:`cancel`)."""

    def __init__(self, config_dir=None, allow_files=None):
        self.config_dir, self.allow_files = config_dir, allow_files
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}

    def _begin(self, kind: str) -> Job:
        with self.lock:
            for j in self.jobs.values():
                if j.kind == kind and j.state == "running":
                    what = "a sizing" if kind == "size" else "an HTML report"
                    raise Busy(f"{what} is already running (for {time.monotonic() - j.started:.0f} s, at most "
                               f"{j.limit_s:.0f} s); wait for it or cancel it")
            done = [j for j in self.jobs.values() if j.state != "running"]
            for j in sorted(done, key=lambda j: j.started)[: max(0, len(done) - KEEP_DONE + 1)]:
                del self.jobs[j.id]
            job = Job(kind, LIMIT_S[kind])
            self.jobs[job.id] = job
            return job

    def get(self, job_id: str) -> Job | None:
        """The job ``job_id`` (None when unknown or forgotten)."""
        with self.lock:
            return self.jobs.get(str(job_id))

    def cancel(self, job_id: str) -> Job | None:
        """Stop job ``job_id`` if it runs; returns it (None when unknown)."""
        job = self.get(job_id)
        if job is not None and job.state == "running" and job.proc is not None:
            job.state = "cancelled"
            _kill(job.proc)
        return job

    def running(self) -> list[Job]:
        """The jobs running now."""
        with self.lock:
            return [j for j in self.jobs.values() if j.state == "running"]

    def start_size(self, request: dict) -> Job:
        """Start a sizing of ``request`` (the checked arguments of
        :meth:`wanir.web.service.Engine.size_view`, see :func:`wanir.web.service.size_request`)."""
        job = self._begin("size")
        argv = [sys.executable, "-m", "wanir.web.jobs"]
        payload = json.dumps({"config_dir": self.config_dir, "allow_files": self.allow_files, **request})
        threading.Thread(target=self._run, args=(job, argv, payload, None), daemon=True,
                         name=f"wanir-job-{job.id}").start()
        return job

    def start_report(self, overrides: list[str]) -> Job:
        """Start ``wanir report OVERRIDES`` (``overrides`` checked by
        :func:`wanir.web.service.check_overrides`)."""
        job = self._begin("report")
        d = tempfile.mkdtemp(prefix="wanir-serve-")
        out = Path(d) / "report.html"
        argv = [sys.executable, "-m", "wanir", "report", *overrides, "-o", str(out)]
        if self.config_dir:
            argv += ["--config-dir", self.config_dir]
        threading.Thread(target=self._run, args=(job, argv, None, out), daemon=True,
                         name=f"wanir-job-{job.id}").start()
        return job

    def wait(self, job: Job, timeout: float | None = None) -> Job:
        """Block until ``job`` ends (or ``timeout`` seconds); returns it."""
        t_end = None if timeout is None else time.monotonic() + timeout
        while job.state == "running" and (t_end is None or time.monotonic() < t_end):
            time.sleep(0.05)
        return job

    def _run(self, job: Job, argv, stdin_text, out_file) -> None:
        err_lines: list[str] = []
        try:
            job.proc = proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                               errors="replace", start_new_session=True)
        except OSError as e:
            job.state, job.error, job.ended = "failed", f"could not start the job: {e}", time.monotonic()
            return
        out_chunks: list[str] = []
        size = [0]

        def read_out():
            for chunk in iter(lambda: proc.stdout.read(65536), ""):
                size[0] += len(chunk)
                if size[0] <= MAX_RESULT_BYTES:
                    out_chunks.append(chunk)

        def read_err():
            for line in proc.stderr:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        p = json.loads(line).get("progress")
                    except (ValueError, AttributeError):
                        p = None
                    if isinstance(p, (int, float)) and 0 <= p <= 1:
                        job.progress = float(p)
                        continue
                if line:
                    err_lines.append(line[:500])
                    del err_lines[:-20]

        readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
        for r in readers:
            r.start()
        try:
            if stdin_text is not None:
                proc.stdin.write(stdin_text)
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=job.limit_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            job.state = "timed out"
            job.error = f"stopped after its time limit of {job.limit_s:.0f} s"
        for r in readers:
            r.join(timeout=5)
        job.ended = time.monotonic()
        try:
            if job.state != "running":      # timed out or cancelled
                return
            if proc.returncode != 0:
                msg = err_lines[-1] if err_lines else f"the job failed (exit status {proc.returncode})"
                job.state, job.error = "failed", msg.removeprefix("wanir: error: ")
                return
            if size[0] > MAX_RESULT_BYTES:
                job.state, job.error = "failed", f"the result is larger than {MAX_RESULT_BYTES} bytes"
                return
            try:
                job.result = out_file.read_text(encoding="utf-8") if out_file is not None else \
                    json.loads("".join(out_chunks))
            except (OSError, ValueError) as e:
                job.state, job.error = "failed", f"the job's result could not be read: {str(e)[:200]}"
                return
            job.progress, job.state = 1.0, "done"
        finally:
            if out_file is not None:
                try:
                    out_file.unlink(missing_ok=True)
                    out_file.parent.rmdir()
                except OSError:
                    pass


def _kill(proc: subprocess.Popen) -> None:
    """Stop ``proc`` and its children (it leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


def _child() -> int:
    """The sizing child: the request on stdin, progress on stderr, the payload on stdout."""
    req = json.loads(sys.stdin.read())
    eng = Engine(req.pop("config_dir", None), req.pop("allow_files", None))

    def progress(fraction: float) -> None:
        print(json.dumps({"progress": round(float(fraction), 4)}), file=sys.stderr, flush=True)

    try:
        out = eng.size_view(progress=progress, **req)
    except WanirError as e:
        print("wanir: error: " + (str(e).splitlines()[0] if str(e) else type(e).__name__), file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(clean(out), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child())
