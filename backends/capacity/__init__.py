"""Capacity planning under request traffic (``wanir plan``; docs/capacity.md).

- :mod:`.traffic`: the traffic file, read through the bounded loader and checked key by key;
- :mod:`.queueing`: Erlang C, Allen–Cunneen, Pollaczek–Khinchine and latency quantiles;
- :mod:`.simulate`: the discrete-event simulation (profiles, traces, batches, cold starts);
- :mod:`.planner`: service times from wanir's estimates, replicas, costs and the ranking;
- :mod:`.render`: the table, JSON and CSV of ``wanir plan``; :mod:`.figures` the plots and
  :mod:`.report` the self-contained report.html.

:func:`plan` is ``wanir.plan``.
"""
from __future__ import annotations

import os

from . import planner
from . import traffic as tr


def plan(traffic, *, config_dir=None, hardware=None, devices=None, prices=None, simulate: bool = True,
         progress: bool = False, jobs: int | None = None):
    """Plan the fleet for ``traffic``: a path to a traffic YAML file, a mapping with its
    content, or a :class:`.traffic.Traffic`. Returns a :class:`.planner.PlanResult`
    (``.to_dict()`` is the JSON of ``wanir plan --format json``; seconds, USD)."""
    if isinstance(traffic, (str, os.PathLike)):
        t = tr.load(traffic)
    elif isinstance(traffic, tr.Traffic):
        t = traffic
    else:
        t = tr.from_mapping(traffic)
    return planner.plan(t, config_dir=config_dir, hardware=hardware, devices=devices, prices=prices,
                        simulate=simulate, progress=progress, jobs=jobs)
