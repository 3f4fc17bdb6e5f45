"""Forked worker processes for the drivers that run many independent evaluations
(``wanir sweep``'s points, ``wanir size``'s plans): one way to start them and one way to
set each up, so both behave alike on Ctrl-C and under garbage collection."""
from __future__ import annotations

import gc
import multiprocessing
import signal


def fork_pool(jobs: int, initializer, initargs: tuple = ()):
    """A ``multiprocessing`` pool of ``jobs`` processes forked from this one (a
    ``multiprocessing.pool.Pool``): the workers start with what this process holds (imports,
    composed groups, caches), frozen out of their collections (``gc.freeze``) so the pages
    they share with it stay unwritten; a caller's own freeze is left alone. Forking needs a
    process without other threads."""
    frozen = gc.get_freeze_count() == 0
    if frozen:
        gc.freeze()
    try:
        return multiprocessing.get_context("fork").Pool(jobs, initializer=initializer, initargs=initargs)
    finally:
        if frozen:
            gc.unfreeze()


def quiet_worker() -> None:
    """Set up a pool worker: Ctrl-C reaches the whole process group, so the worker ignores
    it (the parent stops the pool); its collector stays off (a worker lives only for one
    search, whose driver paces collections)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()
