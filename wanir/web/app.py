"""The ``wanir serve`` application (Starlette): one page, a JSON API, downloads.

Routes:

- ``GET /`` the page; ``GET /static/...`` its script and styles, and Plotly's JavaScript
  served from the installed ``plotly`` package (nothing is fetched from elsewhere);
- ``GET /api/options`` the config groups and their options, the hardware library, limits;
- ``POST /api/estimate|roofline|breakdown|diagram|compare|size`` (JSON body with
  ``overrides``, a list of ``KEY=VALUE`` strings, and the view's parameters);
- ``POST /api/plan`` the Fleet view: ``wanir plan`` on a traffic file's text (``traffic``);
- ``GET /download/estimate.json|estimate.csv|report.html?KEY=VALUE&...`` what ``wanir
  estimate --format json|csv`` and ``wanir report`` write for those overrides.

A bad input answers 400 with ``{"error": one line, "key": the override it is about}``:
the message :func:`wanir.config.load_config` gives the CLI. Bodies are limited to
:data:`MAX_BODY` bytes; requests whose ``Host`` is not this server's are refused (a web page
elsewhere cannot reach it through DNS rebinding); POSTs must be JSON (no cross-site form
posts).
"""
from __future__ import annotations

import json
import math
import sys
from importlib import resources
from pathlib import Path

from wanir.errors import WanirError

from .service import Engine, WebError
from .service import options as service_options

#: largest request body accepted (bytes)
MAX_BODY = 64 * 1024
STATIC = Path(__file__).parent / "static"


def plotly_js() -> Path | None:
    """Path of ``plotly.min.js`` inside the installed ``plotly`` package (None without it)."""
    try:
        p = resources.files("plotly") / "package_data" / "plotly.min.js"
    except ModuleNotFoundError:
        return None
    p = Path(str(p))
    return p if p.is_file() else None


def _clean(x):
    """``x`` with non-finite floats as None (JSON has no inf/nan)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


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


def create_app(config_dir=None, allow_files=None, allowed_hosts=None, prefetch: bool = True):
    """The Starlette application. ``config_dir``: the user's config folder (as
    ``--config-dir``); ``allow_files``: the folder ``model.from`` may read (None: none);
    ``allowed_hosts``: the ``Host`` names accepted (default: the loopback names);
    ``prefetch``: compose the configurations one hardware switch away while idle."""
    from anyio import to_thread
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    engine = Engine(config_dir, allow_files, prefetch=prefetch)

    def js(data, status=200):
        return Response(json.dumps(_clean(data), separators=(",", ":")), status_code=status,
                        media_type="application/json", headers={"Cache-Control": "no-store"})

    def fail(e: Exception, overrides=()):
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return js({"error": msg, "key": culprit(overrides, msg)}, 400)

    async def body(request: Request) -> dict:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/json"):
            raise WebError("send the request as JSON (Content-Type: application/json)")
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            raise WebError(f"request too large (at most {MAX_BODY} bytes)")
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > MAX_BODY:
                raise WebError(f"request too large (at most {MAX_BODY} bytes)")
        try:
            data = json.loads(bytes(buf) or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise WebError("the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise WebError("the request body must be a JSON object")
        return data

    async def call(fn, *a):
        return await to_thread.run_sync(lambda: fn(*a))

    def engine_overrides(ov):
        """The overrides as the engine saw them (paths made absolute), for naming the culprit."""
        try:
            return engine.overrides(ov) + [o for o in ov if isinstance(o, str)]
        except WanirError:
            return [o for o in ov if isinstance(o, str)]

    def api(handler):
        async def endpoint(request: Request):
            data = {}
            try:
                data = await body(request)
                return js(await handler(data))
            except WanirError as e:
                ov = []
                for k in ("overrides", "a", "b"):
                    v = data.get(k) if isinstance(data, dict) else None
                    if isinstance(v, list):
                        ov += v
                return fail(e, engine_overrides(ov))
            except (ValueError, TypeError, KeyError) as e:   # a value the checks let through: still one line
                return fail(e)
        return endpoint

    async def page(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def plotly(request: Request):
        p = plotly_js()
        if p is None:
            return Response("/* plotly is not installed: pip install 'wanir[web]' */",
                            media_type="text/javascript", status_code=404)
        return FileResponse(p, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    async def options(request: Request):
        try:
            return js(await call(service_options, engine.config_dir))
        except WanirError as e:
            return fail(e)

    async def estimate(d):
        return await call(engine.estimate_view, d.get("overrides", []))

    async def roofline(d):
        return await call(engine.roofline_view, d.get("overrides", []), d.get("by", "op"), d.get("depth", 2))

    async def breakdown(d):
        return await call(engine.breakdown_view, d.get("overrides", []), d.get("depth", 2))

    async def diagram(d):
        svg = await call(engine.diagram_view, d.get("overrides", []), d.get("stage"), d.get("depth", 2),
                         d.get("color", "bound"))
        return {"svg": svg}

    async def compare(d):
        return await call(engine.compare_view, d.get("a", []), d.get("overrides", d.get("b", [])))

    async def size(d):
        return await call(engine.size_view, d.get("overrides", []), d.get("latency"), d.get("throughput"),
                          d.get("prices"), d.get("hardware"), d.get("devices"))

    def download(kind):
        async def endpoint(request: Request):
            ov = [f"{k}={v}" for k, v in request.query_params.multi_items()]
            try:
                text = await call(engine.download, ov, kind)
            except WanirError as e:
                msg = str(e).splitlines()[0]
                return Response(msg + "\n", status_code=400, media_type="text/plain")
            media = {"json": "application/json", "csv": "text/csv", "html": "text/html"}[kind]
            name = {"json": "estimate.json", "csv": "estimate.csv", "html": "report.html"}[kind]
            return Response(text, media_type=media,
                            headers={"Content-Disposition": f'attachment; filename="{name}"',
                                     "Cache-Control": "no-store"})
        return endpoint

    async def fleet(d):    # the Fleet view: wanir plan on a traffic file's text (backends/capacity/web.py)
        from wanir.backends.capacity.web import fleet_view  # late import: the planner loads only when used
        return await call(fleet_view, d, engine.config_dir)

    routes = [
        Route("/", page),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/static/vendor/plotly.min.js", plotly),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        Route("/api/options", options),
        Route("/api/estimate", api(estimate), methods=["POST"]),
        Route("/api/roofline", api(roofline), methods=["POST"]),
        Route("/api/breakdown", api(breakdown), methods=["POST"]),
        Route("/api/diagram", api(diagram), methods=["POST"]),
        Route("/api/compare", api(compare), methods=["POST"]),
        Route("/api/size", api(size), methods=["POST"]),
        Route("/download/estimate.json", download("json")),
        Route("/download/estimate.csv", download("csv")),
        Route("/download/report.html", download("html")),
        Route("/api/plan", api(fleet), methods=["POST"]),
    ]
    hosts = list(allowed_hosts) if allowed_hosts else ["127.0.0.1", "localhost", "::1", "[::1]"]
    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])
    app.state.engine = engine
    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(host: str = "127.0.0.1", port: int = 8765, config_dir=None, allow_files=None, open_browser=False,
          out=None) -> None:
    """Run the server until interrupted. Binds ``host:port`` (port 0: a free port), prints
    the URL, and warns on stderr when the address is reachable from other machines."""
    import socket
    import threading

    import uvicorn

    out = out or sys.stdout
    if allow_files is not None and not Path(allow_files).is_dir():
        raise WebError(f"--allow-files {allow_files}: no such directory")
    if config_dir is not None and not Path(config_dir).is_dir():
        raise WebError(f"--config-dir {config_dir}: no such directory")
    loop = is_loopback(host)
    bind = "localhost" if host == "localhost" else host.strip("[]")
    try:
        infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise WebError(f"--host {host}: {e.strerror}") from None
    fam, _, _, _, addr = infos[0]
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise WebError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    real_port = sock.getsockname()[1]
    url_host = f"[{addr[0]}]" if fam == socket.AF_INET6 else ("127.0.0.1" if host == "localhost" else addr[0])
    url = f"http://{url_host}:{real_port}/"
    hosts = None
    if not loop:
        print(f"wanir serve: warning: listening on {host}, reachable from other machines; the page has no "
              "login, anyone who can reach this address can use it", file=sys.stderr, flush=True)
        hosts = ["*"]
    app = create_app(config_dir, allow_files, allowed_hosts=hosts)
    print(f"wanir serve: {url}  (Ctrl-C to stop)", file=out, flush=True)
    # compose and estimate the default configuration once in the background: the first
    # page load then answers at once
    threading.Thread(target=_warm, args=(app.state.engine,), daemon=True).start()
    if open_browser:
        import webbrowser
        threading.Timer(0.3, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=5,
                            limit_concurrency=64)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _warm(engine) -> None:
    try:
        engine.estimate_view([])
    except Exception:  # noqa: BLE001 - a warm-up failure shows again on the first request
        pass
