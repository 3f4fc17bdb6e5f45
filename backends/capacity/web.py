"""The Fleet view of ``wanir serve``: ``POST /api/plan`` with a traffic file's text.

The page sends ``{"traffic": YAML text, "hardware": [names], "devices": [counts]}``; the
text goes through the same bounded loader and checks as a traffic file (a ``trace:`` is
refused: the page reads no files). The request runs in the server (not as a job), so it
plans only the deployments the text lists, at most :data:`MAX_ESTIMATES` estimates. The
answer is the JSON of ``wanir plan`` (first :data:`ROWS` rows, each with ``service_text``: its
mean service time and range as the table prints it) plus the latency CDF points
of the leading deployments (analytic, peak hour) for the page's plots.
"""
from __future__ import annotations

import numpy as np
import yaml

from wanir.errors import ConfigError
from wanir.safeio import load_yaml

from . import planner
from .render import service_text
from . import queueing as Q
from . import traffic as tr

#: rows sent to the page
ROWS = 60
#: deployments whose latency CDF is sent, and points per curve
CDF_ROWS = 5
CDF_POINTS = 120
#: characters of traffic text accepted (the body limit of the server applies as well)
MAX_TEXT = 60_000
#: class × deployment estimates one page request may take (the request runs in the server, not as a job)
MAX_ESTIMATES = 32


def cdf_points(result, row, n: int = CDF_POINTS) -> dict:
    """The analytic latency CDF of ``row`` at the peak hour: {"x": seconds, "y": fractions}."""
    mix = Q.Mix(result.traffic.shares, tuple(row.class_service_s))
    qr = Q.mgc(result.traffic.peak_rate_per_hour / 3600.0, mix, row.servers)
    if not qr.stable:
        return {"x": [], "y": []}
    xs = np.linspace(0.0, Q.latency_quantile(qr, mix, 0.999), n)
    return {"x": [float(x) for x in xs], "y": [1.0 - Q.latency_tail(qr, mix, float(x)) for x in xs]}


def fleet_view(data: dict, config_dir=None) -> dict:
    """Plan the traffic text of a Fleet request; returns {"plan": the JSON of ``wanir plan``
    (first ROWS rows), "cdf": [{"label", "x", "y"}]}. ConfigError (one line) on bad input."""
    text = data.get("traffic")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise ConfigError(f"traffic: send the traffic file's text (YAML, at most {MAX_TEXT} characters)")
    try:
        doc = load_yaml(text, "traffic", max_nodes=20_000, max_depth=16)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"traffic{where}: not valid YAML ({getattr(e, 'problem', None) or 'parse error'})") from None
    if isinstance(doc, dict) and isinstance(doc.get("arrivals"), dict) and "trace" in doc["arrivals"]:
        raise ConfigError("traffic arrivals.trace: the web page reads no files; run `wanir plan` with the trace")
    t = tr.from_mapping(doc, "traffic")
    n = sum(len(t.classes) * (2 if d.batch > 1 else 1) for d in t.deployments)
    if not t.deployments or n > MAX_ESTIMATES:
        raise ConfigError(f"traffic deployments: the page plans the deployments it is given, at most {MAX_ESTIMATES} "
                          f"class × deployment estimates (got {n}); `wanir plan` searches every GPU and plan")
    hw = data.get("hardware") or None
    if hw is not None and (not isinstance(hw, list) or len(hw) > 64 or not all(isinstance(h, str) and len(h) <= 64
                                                                               for h in hw)):
        raise ConfigError("hardware: a list of at most 64 hardware names")
    dev = data.get("devices") or None
    if dev is not None and (not isinstance(dev, list) or len(dev) > 8 or
                            not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 64 for n in dev)):
        raise ConfigError("devices: a list of at most 8 device counts in [1, 64]")
    res = planner.plan(t, config_dir=config_dir, hardware=hw, devices=dev, jobs=1)
    d = res.to_dict()
    d["deployments"] = d["deployments"][:ROWS]
    for row, r in zip(d["deployments"], res.rows):     # the mean service time with its range, as the table prints it
        row["service_text"] = service_text(r)
    drawn = [r for r in res.rows if r.replicas is not None and r.servers and r.batch == 1][:CDF_ROWS]
    cdf = [{"label": f"{r.replicas}× {r.hardware}×{r.devices} {r.plan}", **cdf_points(res, r)} for r in drawn]
    return {"plan": d, "cdf": cdf}
