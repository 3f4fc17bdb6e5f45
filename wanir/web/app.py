"""The ``wanir serve`` application (Starlette): one page, a JSON API, downloads.

Routes:

- ``GET /`` the page; ``GET /static/...`` its script and styles, and Plotly's JavaScript
  served from the installed ``plotly`` package (nothing is fetched from elsewhere);
- ``GET /api/options`` the config groups and their options, the hardware library, limits;
- ``POST /api/estimate|roofline|breakdown|diagram|compare`` (JSON body with
  ``overrides``, a list of ``KEY=VALUE`` strings, and the view's parameters);
- ``POST /api/size`` and ``POST /api/report`` start a job (:mod:`wanir.web.jobs`: a child
  process with a time limit; 202 with the job's status, 429 while one of its kind runs);
  ``GET /api/jobs/ID`` its status, progress and result; ``POST /api/jobs/ID/cancel``;
  ``GET /download/job/ID`` a finished report;
- ``POST /api/plan`` the Fleet view: ``wanir plan`` on a traffic file's text (``traffic``);
- ``GET /download/estimate.json|estimate.csv|report.html?KEY=VALUE&...`` what ``wanir
  estimate --format json|csv`` and ``wanir report`` write for those overrides (the report
  runs as a job; 429 while another runs).

A bad input answers 400 with ``{"error": one line, "key": the override it is about}``:
the message :func:`wanir.config.load_config` gives the CLI. Bodies are limited to
:data:`MAX_BODY` bytes, :data:`MAX_JSON_DEPTH` levels of nesting and :data:`BODY_TIMEOUT_S`
seconds; requests whose ``Host`` is not this server's are refused (a web page elsewhere
cannot reach it through DNS rebinding); POSTs must be JSON (no cross-site form posts); every
API call and download is refused (403) when the browser marks it cross-site
(``Sec-Fetch-Site``) or its ``Origin`` is another site's.
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import webbrowser
from pathlib import Path

import anyio
import uvicorn
from anyio import to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from wanir.errors import WanirError

from .jobs import Busy, Jobs
from .protocol import MAX_HEAD_BYTES, GuardedH11Protocol
from .service import Engine, WebError
from .service import options as service_options
from .wire import clean, cross_site, culprit, is_loopback, json_depth, plotly_js  # noqa: F401 - culprit re-exported

#: largest request body accepted (bytes), deepest nesting of its JSON, seconds to send it
MAX_BODY = 64 * 1024
MAX_JSON_DEPTH = 8
BODY_TIMEOUT_S = 10.0
#: seconds a plain download (``/download/report.html``) waits for its job
DOWNLOAD_WAIT_S = 300.0
STATIC = Path(__file__).parent / "static"


def create_app(config_dir=None, allow_files=None, allowed_hosts=None, prefetch: bool = True):
    """The Starlette application. ``config_dir``: the user's config folder (as
    ``--config-dir``); ``allow_files``: the folder ``model.from`` may read (None: none);
    ``allowed_hosts``: the ``Host`` names accepted (default: the loopback names);
    ``prefetch``: compose the configurations one hardware switch away while idle."""
    engine = Engine(config_dir, allow_files, prefetch=prefetch)
    jobs = Jobs(engine.config_dir, engine.allow_files)

    def js(data, status=200):
        return Response(json.dumps(clean(data), separators=(",", ":")), status_code=status,
                        media_type="application/json", headers={"Cache-Control": "no-store"})

    def fail(e: Exception, overrides=(), status=400):
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return js({"error": msg, "key": culprit(overrides, msg)}, status)

    def refused(request: Request, as_json: bool = True):
        """The 403 answer to a cross-site request (None when it is not one)."""
        why = cross_site(request.headers, request.headers.get("host"))
        if why is None:
            return None
        return js({"error": why, "key": None}, 403) if as_json else \
            Response(why + "\n", status_code=403, media_type="text/plain")

    def unexpected(e: BaseException):
        """A failure the checks did not foresee: one line on stderr and to the client (500)."""
        line = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        print(f"wanir serve: error: {line}", file=sys.stderr, flush=True)
        return js({"error": f"internal error ({line})", "key": None}, 500)

    async def body(request: Request) -> dict:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/json"):
            raise WebError("send the request as JSON (Content-Type: application/json)")
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            raise WebError(f"request too large (at most {MAX_BODY} bytes)")
        buf = bytearray()
        try:
            with anyio.fail_after(BODY_TIMEOUT_S):
                async for chunk in request.stream():
                    buf += chunk
                    if len(buf) > MAX_BODY:
                        raise WebError(f"request too large (at most {MAX_BODY} bytes)")
        except TimeoutError:
            raise WebError(f"the request body did not arrive within {BODY_TIMEOUT_S:.0f} s") from None
        deep = WebError(f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            data = json.loads(bytes(buf) or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise WebError("the request body is not valid JSON") from None
        except RecursionError:
            raise deep from None
        if not json_depth(data, MAX_JSON_DEPTH):
            raise deep
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

    def api(handler, status=200):
        async def endpoint(request: Request):
            no = refused(request)
            if no is not None:
                return no
            data = {}
            try:
                data = await body(request)
                return js(await handler(data), status)
            except Busy as e:
                return fail(e, status=429)
            except WanirError as e:
                ov = []
                for k in ("overrides", "a", "b"):
                    v = data.get(k) if isinstance(data, dict) else None
                    if isinstance(v, list):
                        ov += v
                return fail(e, engine_overrides(ov))
            except (ValueError, TypeError, KeyError, RecursionError) as e:   # a value the checks let through
                return fail(e)
            except Exception as e:  # noqa: BLE001 - never a traceback: one line
                return unexpected(e)
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
        req = await call(engine.size_request, d.get("overrides", []), d.get("latency"), d.get("throughput"),
                         d.get("prices"), d.get("hardware"), d.get("devices"))
        return jobs.start_size(req).status()

    async def report(d):
        ov = await call(engine.overrides, d.get("overrides", []))
        return jobs.start_report(ov).status()

    def job_endpoint(lookup, missing: str):
        """A GET/POST handler that finds a job with ``lookup(id)`` and answers its status."""
        async def handler(request: Request):
            no = refused(request)
            if no is not None:
                return no
            job = lookup(request.path_params["job"])
            if job is None:
                return js({"error": missing, "key": None}, 404)
            return js(job.status())
        return handler

    job_status = job_endpoint(jobs.get, "no such job (finished jobs are kept for a while only)")
    job_cancel = job_endpoint(jobs.cancel, "no such job")

    def report_response(job):
        if job.state != "done":
            return Response(f"the report {job.state}: {job.error or ''}".strip() + "\n", status_code=400,
                            media_type="text/plain")
        return Response(job.result, media_type="text/html",
                        headers={"Content-Disposition": 'attachment; filename="report.html"',
                                 "Cache-Control": "no-store"})

    async def job_file(request: Request):
        no = refused(request, as_json=False)
        if no is not None:
            return no
        job = jobs.get(request.path_params["job"])
        if job is None or job.kind != "report":
            return Response("no such report\n", status_code=404, media_type="text/plain")
        return report_response(job)

    def download(kind):
        async def endpoint(request: Request):
            no = refused(request, as_json=False)
            if no is not None:
                return no
            ov = [f"{k}={v}" for k, v in request.query_params.multi_items()]
            try:
                if kind == "html":      # a report: a job (one at a time, time-limited)
                    ov = await call(engine.overrides, ov)
                    job = jobs.start_report(ov)
                    await call(jobs.wait, job, DOWNLOAD_WAIT_S)
                    return report_response(job)
                text = await call(engine.download, ov, kind)
            except Busy as e:
                return Response(str(e) + "\n", status_code=429, media_type="text/plain")
            except WanirError as e:
                msg = str(e).splitlines()[0]
                return Response(msg + "\n", status_code=400, media_type="text/plain")
            except Exception as e:  # noqa: BLE001 - never a traceback: one line
                print(f"wanir serve: error: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr, flush=True)
                return Response("internal error\n", status_code=500, media_type="text/plain")
            media = {"json": "application/json", "csv": "text/csv", "html": "text/html"}[kind]
            name = {"json": "estimate.json", "csv": "estimate.csv", "html": "report.html"}[kind]
            return Response(text, media_type=media,
                            headers={"Content-Disposition": f'attachment; filename="{name}"',
                                     "Cache-Control": "no-store"})
        return endpoint

    async def fleet(d):    # the Fleet view: wanir plan on a traffic file's text (backends/capacity/web.py)
        from wanir.backends.capacity.web import fleet_view  # late import: the planner and numpy (~0.3 s) load only when the Fleet view is used
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
        Route("/api/size", api(size, 202), methods=["POST"]),
        Route("/api/report", api(report, 202), methods=["POST"]),
        Route("/api/jobs/{job}", job_status),
        Route("/api/jobs/{job}/cancel", job_cancel, methods=["POST"]),
        Route("/download/job/{job}", job_file),
        Route("/download/estimate.json", download("json")),
        Route("/download/estimate.csv", download("csv")),
        Route("/download/report.html", download("html")),
        Route("/api/plan", api(fleet), methods=["POST"]),
    ]
    hosts = list(allowed_hosts) if allowed_hosts else ["127.0.0.1", "localhost", "::1", "[::1]"]
    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])
    app.state.engine = engine
    app.state.jobs = jobs
    return app


def serve(host: str = "127.0.0.1", port: int = 8765, config_dir=None, allow_files=None, open_browser=False,
          out=None) -> None:
    """Run the server until interrupted. Binds ``host:port`` (port 0: a free port), prints
    the URL, and warns on stderr when the address is reachable from other machines."""
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
        threading.Timer(0.3, webbrowser.open, args=(url,)).start()

    # idle and slow connections are closed by the protocol (a deadline on each request head,
    # the oldest idle connection closed beyond a cap), so no limit_concurrency: silent
    # connections never make the server answer 503
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=5,
                            http=GuardedH11Protocol, h11_max_incomplete_event_size=MAX_HEAD_BYTES)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for job in app.state.jobs.running():     # no child outlives the server
            app.state.jobs.cancel(job.id)


def _warm(engine) -> None:
    try:
        engine.estimate_view([])
    except Exception:  # noqa: BLE001 - a warm-up failure shows again on the first request
        pass
