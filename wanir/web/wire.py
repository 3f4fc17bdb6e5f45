"""What ``wanir serve`` checks and sends that needs no web framework (so the checks are
tested, and the sizing child answers, without the 'web' extra): JSON made safe to send, the
nesting depth of a request body, cross-site and loopback checks, the override an error is
about, and where Plotly's JavaScript lies."""
from __future__ import annotations

import ipaddress
import math
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit


def plotly_js() -> Path | None:
    """Path of ``plotly.min.js`` inside the installed ``plotly`` package (None without it)."""
    try:
        p = resources.files("plotly") / "package_data" / "plotly.min.js"
    except ModuleNotFoundError:
        return None
    p = Path(str(p))
    return p if p.is_file() else None


def clean(x):
    """``x`` with non-finite floats as None (JSON has no inf/nan)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x


def json_depth(x, limit: int) -> bool:
    """Whether ``x`` (parsed JSON) nests at most ``limit`` levels of lists and objects
    (iterative: any depth is looked at without recursion)."""
    stack = [(x, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d > limit:
                return False
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return True


def cross_site(headers, host: str | None) -> str | None:
    """Why a request must be refused as cross-site (one line), or None: the browser marks it
    ``Sec-Fetch-Site: cross-site`` or ``same-site`` (another port or subdomain), or it carries
    an ``Origin`` that is not ``http://HOST`` of this request. Requests without these headers
    (a typed address, ``curl``) pass."""
    site = headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return f"refused: a request from another site (Sec-Fetch-Site: {site}); open the page itself"
    origin = headers.get("origin")
    if origin is not None:
        o = urlsplit(origin)
        if origin == "null" or o.scheme not in ("http", "https") or not host or o.netloc.lower() != host.lower():
            return f"refused: a request from another origin ({origin[:80]}); open the page itself"
    return None


def culprit(overrides, message: str) -> str | None:
    """The key of the override an error message is about: the one named earliest in it
    (the longest when two start at the same place); else the one whose value (four
    characters or more, not a number) it names; or None."""
    best = None
    for o in overrides or ():
        if not isinstance(o, str):
            continue
        key = o.split("=", 1)[0].strip()
        if not key:
            continue
        i = message.find(key)
        if i < 0:
            continue
        cand = (i, -len(key), key)
        if best is None or cand < best:
            best = cand
    if best is None:   # a message naming the value alone (a path: "/m: no such file or directory")
        for o in overrides or ():
            key, _, value = o.partition("=") if isinstance(o, str) else ("", "", "")
            if len(value) >= 4 and not value.replace(".", "").isdigit() and value in message:
                return key.strip()
    return None if best is None else best[2]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
