"""`wanir serve` under load and abuse, on 127.0.0.1 only, each bounded in count and time:
an idle-connection flood, slow clients, 50 concurrent estimates while a sizing runs, and
cross-site requests. The server is started as the CLI starts it; what each test measures is
printed (``-s``) and nothing asserts a speed: every wait has a generous bound instead."""
import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from extras import need_web

SMALL = ["model=wan2.1-t2v-1.3b", "workload=480p", "workload.frames=17", "workload.steps=2"]
BOUND_S = 120          # no single answer may take longer than this, even on a loaded 2-core machine


@pytest.fixture(scope="module")
def server():
    need_web()
    from wanir.web.launch import running_server

    info = {}
    with running_server(info=info) as (u, _):
        yield u, info


def request(url, data=None, headers=None, method=None, timeout=BOUND_S):
    """(status, body bytes) of one request."""
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    body = data if isinstance(data, (bytes, type(None))) else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def addr(url):
    u = urlsplit(url)
    return u.hostname, u.port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def closed_by_server(sock, wait_s):
    """Whether the server closes ``sock`` within ``wait_s`` seconds."""
    sock.settimeout(wait_s)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


@pytest.mark.integration
def test_idle_connection_flood_does_not_lock_anyone_out(server):
    """200 connections that send nothing (more than the server keeps, 128): a normal request
    still gets its page, and the silent ones are closed after the head deadline."""
    from wanir.web.protocol import HEAD_TIMEOUT_S, MAX_CONNECTIONS

    url, info = server
    rss0 = rss_kib(info["pid"])
    socks = []
    try:
        for _ in range(200):
            socks.append(socket.create_connection(addr(url), timeout=10))
        t0 = time.perf_counter()
        status, body = request(url)
        t_page = time.perf_counter() - t0
        assert status == 200 and b"<html" in body
        status, _ = request(url + "api/estimate", {"overrides": SMALL})
        assert status == 200
        t0 = time.perf_counter()
        closed = sum(closed_by_server(s, HEAD_TIMEOUT_S + 10) for s in socks[-MAX_CONNECTIONS // 2:])
        t_close = time.perf_counter() - t0
        assert closed == MAX_CONNECTIONS // 2
        print(f"\nidle flood: page answered in {1e3 * t_page:.0f} ms with 200 silent connections open; "
              f"the last {closed} closed by the server within {t_close:.1f} s (head deadline {HEAD_TIMEOUT_S} s); "
              f"server RSS {rss0} -> {rss_kib(info['pid'])} KiB")
    finally:
        for s in socks:
            s.close()


@pytest.mark.integration
def test_slow_clients_are_cut_off(server):
    """A request head sent a byte at a time, and a body that stops half way: both end within
    their deadlines, and the server keeps answering others meanwhile."""
    from wanir.web.app import BODY_TIMEOUT_S
    from wanir.web.protocol import HEAD_TIMEOUT_S

    url, _ = server
    host, port = addr(url)
    head = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: " + "a" * 100
    s = socket.create_connection((host, port), timeout=5)
    t0 = time.perf_counter()
    cut = False
    try:
        for ch in head:
            s.sendall(ch.encode())
            time.sleep(0.2)
            if time.perf_counter() - t0 > HEAD_TIMEOUT_S + 10:
                break
    except OSError:
        cut = True
    if not cut:
        cut = closed_by_server(s, 5)
    t_head = time.perf_counter() - t0
    s.close()
    assert cut and t_head <= HEAD_TIMEOUT_S + 10
    # a body that never completes: 400 with one line after the body deadline
    s = socket.create_connection((host, port), timeout=BODY_TIMEOUT_S + 30)
    t0 = time.perf_counter()
    s.sendall((f"POST /api/estimate HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
               "Content-Length: 1000\r\n\r\n{\"overrides\": [").encode())
    assert request(url)[0] == 200            # others are served meanwhile
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    t_body = time.perf_counter() - t0
    s.close()
    assert reply.startswith(b"HTTP/1.1 400")
    msg = json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]
    assert msg == f"the request body did not arrive within {BODY_TIMEOUT_S:.0f} s"
    print(f"\nslow head cut after {t_head:.1f} s (deadline {HEAD_TIMEOUT_S} s); stalled body answered 400 after "
          f"{t_body:.1f} s (deadline {BODY_TIMEOUT_S} s)")


@pytest.mark.integration
def test_estimates_answer_while_a_sizing_runs(server):
    """A sizing runs as a job in its own process: a second one is refused (429), and 50
    concurrent estimates all answer (each within the bound) while it runs; the job reports
    its progress and can be cancelled."""
    url, _ = server
    status, body = request(url + "api/size", {"overrides": SMALL, "devices": "1,2,4,8"})
    assert status == 202, body
    job = json.loads(body)
    assert job["state"] == "running" and job["limit_s"] > 0
    status, body = request(url + "api/size", {"overrides": SMALL, "devices": "1,2"})
    assert status == 429 and "already running" in json.loads(body)["error"]
    request(url + "api/estimate", {"overrides": SMALL})      # composed once, then 50 at a time

    def one(i):
        t0 = time.perf_counter()
        s, b = request(url + "api/estimate", {"overrides": SMALL + [f"workload.steps={2 + i % 3}"]})
        return s, time.perf_counter() - t0, json.loads(b)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=50) as ex:
        got = list(ex.map(one, range(50)))
    wall = time.perf_counter() - t0
    assert all(s == 200 for s, _, _ in got), [d.get("error") for s, _, d in got if s != 200][:3]
    status, body = request(url + f"api/jobs/{job['id']}")
    st = json.loads(body)
    assert status == 200 and st["state"] in ("running", "done")
    assert st["progress"] is None or 0 <= st["progress"] <= 1
    ran_during = st["state"] == "running"
    status, body = request(url + f"api/jobs/{job['id']}/cancel", {}, method="POST")
    assert status == 200 and json.loads(body)["state"] in ("cancelled", "done")
    lat = sorted(t for _, t, _ in got)
    print(f"\n50 concurrent estimates {'during' if ran_during else 'after'} a sizing: all 200 in {wall:.1f} s "
          f"(median {lat[25]:.2f} s, max {lat[-1]:.2f} s); sizing progress then {st['progress']}")
    # the slot is free again
    status, body = request(url + "api/size", {"overrides": SMALL, "devices": "1", "hardware": ["h100-sxm"]})
    assert status == 202
    jid = json.loads(body)["id"]
    t_end = time.monotonic() + BOUND_S * 2
    while time.monotonic() < t_end:
        st = json.loads(request(url + f"api/jobs/{jid}")[1])
        if st["state"] != "running":
            break
        time.sleep(0.5)
    assert st["state"] == "done", st
    assert st["progress"] == 1.0 and st["result"]["rows"]


CROSS = [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {"Origin": "http://evil.example"},
         {"Origin": "null"}, {"Origin": "http://127.0.0.1:1"}]


@pytest.mark.integration
@pytest.mark.parametrize("headers", CROSS, ids=lambda h: "-".join(f"{k}:{v}" for k, v in h.items()))
def test_cross_site_requests_are_refused(server, headers):
    """What another web site's page can make a browser send: downloads (links, images),
    report and sizing jobs, estimates. Each answers 403 before any work."""
    url, _ = server
    q = "&".join(SMALL)
    for path in (f"download/report.html?{q}", f"download/estimate.json?{q}", f"download/estimate.csv?{q}"):
        t0 = time.perf_counter()
        status, body = request(url + path, headers=headers)
        assert status == 403 and body.decode().count("\n") == 1, path
        assert time.perf_counter() - t0 < BOUND_S
    for path, data in (("api/estimate", {"overrides": SMALL}), ("api/size", {"overrides": SMALL}),
                       ("api/report", {"overrides": SMALL})):
        status, body = request(url + path, data, headers=headers)
        assert status == 403 and "refused" in json.loads(body)["error"], path


@pytest.mark.integration
def test_same_origin_requests_pass(server):
    url, _ = server
    origin = url.rstrip("/")
    status, _ = request(url + "api/estimate", {"overrides": SMALL},
                        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert status == 200
    status, body = request(url + "download/estimate.csv?" + "&".join(SMALL), headers={"Sec-Fetch-Site": "none"})
    assert status == 200 and body.startswith(b"stage")


@pytest.mark.integration
@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"overrides": ' + b"[" * 50 + b"]" * 50 + b"}",
                                  b'{"a": ' * 5000 + b"1" + b"}" * 5000, b"\xff\xfe{", b'{"overrides": [1, {}]}', b"null"])
def test_malformed_or_deep_bodies_get_one_line(server, body):
    url, info = server
    n0 = len(info["lines"])
    status, b = request(url + "api/estimate", body, headers={"Content-Type": "application/json"})
    assert status == 400
    d = json.loads(b)
    assert "\n" not in d["error"]
    time.sleep(0.2)
    log = "".join(info["lines"][n0:])
    assert "Traceback" not in log and "Error" not in log


@pytest.mark.integration     # runs wanir in a subprocess
def test_a_job_is_stopped_at_its_time_limit(monkeypatch):
    """A job's child that outlives its limit is killed, the job says so, and the slot frees."""
    import sys

    from wanir.web import jobs as J

    monkeypatch.setitem(J.LIMIT_S, "size", 1.0)
    runner = J.Jobs()
    job = runner._begin("size")
    code = ("import json, sys, time\n"
            "print(json.dumps({'progress': 0.25}), file=sys.stderr, flush=True)\n"
            "time.sleep(60)\n")
    t0 = time.perf_counter()
    runner._run(job, [sys.executable, "-c", code], "", None)
    took = time.perf_counter() - t0
    assert job.state == "timed out" and "time limit of 1 s" in job.error and job.progress == 0.25
    assert took < 30                                           # killed, not waited for
    assert runner._begin("size").state == "running"            # the slot is free again
    with pytest.raises(J.Busy, match="already running"):
        runner._begin("size")


@pytest.mark.integration
def test_a_cross_site_page_in_a_browser_cannot_reach_it(server, tmp_path):
    """A page served from another origin (localhost on another port: another site for the
    browser) tries what a hostile page would: an <img> and a link to the report download, a
    no-cors fetch and a form POST to the API. The browser sends its own Sec-Fetch-Site and
    Origin headers; every one of those requests is answered 403."""
    import functools
    import http.server
    import shutil
    import threading

    pytest.importorskip("playwright")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Debian's chromium")
    from playwright.sync_api import sync_playwright

    url, _ = server
    target = url.rstrip("/")
    q = "&".join(SMALL)
    (tmp_path / "evil.html").write_text(f"""<!DOCTYPE html><html><body>
<img src="{target}/download/report.html?{q}">
<img src="{target}/download/estimate.json?{q}">
<form id="f" method="POST" action="{target}/api/size" enctype="text/plain">
<input name='{{"overrides": [], "x": "' value='"}}'></form>
<script>
fetch("{target}/api/report", {{method: "POST", mode: "no-cors", body: '{{"overrides": []}}'}}).catch(() => null);
fetch("{target}/download/estimate.csv?{q}", {{mode: "no-cors"}}).catch(() => null);
setTimeout(() => document.getElementById("f").submit(), 500);
</script></body></html>""")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    seen = []
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
            pg = b.new_page()
            pg.on("response", lambda r: seen.append((r.url, r.status)) if r.url.startswith(target) else None)
            pg.goto(f"http://localhost:{evil.server_address[1]}/evil.html")
            t_end = time.monotonic() + 60
            while time.monotonic() < t_end and len(seen) < 5:
                pg.wait_for_timeout(200)
            b.close()
    finally:
        evil.shutdown()
    paths = {u.split("?")[0].removeprefix(target): s for u, s in seen}
    assert set(paths) >= {"/download/report.html", "/download/estimate.json", "/download/estimate.csv",
                          "/api/report", "/api/size"}, seen
    assert all(s == 403 for s in paths.values()), seen
    # the page started no report: the report slot is free (a running one would answer 429)
    status, body = request(url + "api/report", {"overrides": SMALL})
    assert status == 202, body
    request(url + f"api/jobs/{json.loads(body)['id']}/cancel", {}, method="POST")
