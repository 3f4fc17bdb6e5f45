"""`wanir serve` over HTTP (no browser): the server started as the CLI starts it, its limits
and refusals, and its downloads against what the CLI prints."""
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from extras import need_web

from wanir.web.wire import is_loopback

SMALL = ["model=wan2.1-t2v-1.3b", "workload=480p", "workload.frames=17", "workload.steps=2"]


@pytest.fixture(scope="module")
def url():
    need_web()
    from wanir.web.launch import running_server

    with running_server() as (u, _):
        yield u


def request(url, data=None, headers=None, method=None):
    """(status, headers, body bytes) of one request."""
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    body = data if isinstance(data, (bytes, type(None))) else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def cli(*args):
    """(exit status, stdout, stderr) of the CLI; the output decoded as written (\r\n kept)."""
    r = subprocess.run([sys.executable, "-m", "wanir", *args], capture_output=True, timeout=300)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


@pytest.mark.integration
def test_page_fetches_nothing_from_elsewhere(url):
    status, _, page = request(url)
    assert status == 200
    text = page.decode()
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", text)
    for ref in re.findall(r"""(?:src|href)="(/static/[^"]+)\"""", text):
        s, h, b = request(url.rstrip("/") + ref)
        assert s == 200 and len(b) > 100, ref
    js = Path(__file__).resolve().parent.parent / "wanir" / "web" / "static" / "app.js"
    assert not re.search(r"https?://", js.read_text())
    s, h, b = request(url + "static/vendor/plotly.min.js")
    assert s == 200 and h["content-type"].startswith("text/javascript") and b"plotly" in b[:2000].lower()


@pytest.mark.integration
def test_estimate_api_and_error(url):
    s, _, b = request(url + "api/estimate", {"overrides": SMALL})
    assert s == 200
    d = json.loads(b)
    assert d["table"]["rows"][-1][0] == "total"
    s, _, b = request(url + "api/estimate", {"overrides": SMALL + ["workload.frames=80"]})
    code, _, err = cli("estimate", *SMALL, "workload.frames=80")
    assert s == 400 and code == 2
    assert json.loads(b) == {"error": err.strip().removeprefix("wanir: error: "), "key": "workload.frames"}


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_downloads_equal_the_cli(url, fmt):
    q = "&".join(SMALL)
    s, h, b = request(url + f"download/estimate.{fmt}?{q}")
    assert s == 200 and "attachment" in h["content-disposition"]
    code, out, _ = cli("estimate", *SMALL, "--format", fmt)
    assert code == 0
    if fmt == "json":
        assert json.loads(b) == json.loads(out)
    else:
        assert b.decode() == out


@pytest.mark.integration
def test_report_download_is_the_cli_report(url, tmp_path):
    s, h, b = request(url + "download/report.html?" + "&".join(SMALL))
    assert s == 200 and h["content-type"].startswith("text/html")
    code, _, err = cli("report", *SMALL, "-o", str(tmp_path / "r.html"))
    assert code == 0, err
    # the tables are the CLI report's (the SVG plots carry dates and random ids)
    cli_html = (tmp_path / "r.html").read_text(encoding="utf-8")
    for tid in ("config-table", "stage-table", "scope-table"):
        pat = re.compile(rf'<table id="{tid}">.*?</table>', re.S)
        assert pat.search(b.decode()).group(0) == pat.search(cli_html).group(0)
    assert b'id="stage-table"' in b


@pytest.mark.integration
def test_refusals(url):
    # body too large, not JSON, bad JSON, wrong Host (DNS rebinding), a file path, a bad download
    s, _, b = request(url + "api/estimate", b'{"overrides": ["' + b"x" * 70000 + b'"]}',
                      headers={"Content-Type": "application/json"})
    assert s == 400 and b"too large" in b
    s, _, b = request(url + "api/estimate", b"overrides=workload.height%3D480",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert s == 400 and b"JSON" in b
    s, _, b = request(url + "api/estimate", b"{nope", headers={"Content-Type": "application/json"})
    assert s == 400 and json.loads(b)["error"] == "the request body is not valid JSON"
    s, _, _ = request(url, headers={"Host": "attacker.example"})
    assert s == 400
    s, _, b = request(url + "api/estimate", {"overrides": ["model.from=/etc"]})
    assert s == 400 and json.loads(b)["key"] == "model.from" and "--allow-files" in json.loads(b)["error"]
    s, _, b = request(url + "download/estimate.json?workload=../../../../etc/passwd")
    assert s == 400 and b.decode().count("\n") == 1 and "plain name" in b.decode()
    s, _, b = request(url + "api/size", {"overrides": SMALL, "devices": "1,2,4,8,16,32,64"})
    assert s == 400 and "at most" in json.loads(b)["error"]


@pytest.mark.integration
def test_allow_files_restricts_model_from(tmp_path):
    need_web()
    from wanir.web.launch import running_server

    models = tmp_path / "models"
    models.mkdir()
    with running_server("--allow-files", str(models)) as (u, _):
        s, _, b = request(u + "api/estimate", {"overrides": ["model.from=../"]})
        assert s == 400 and "outside the folder" in json.loads(b)["error"]
        s, _, b = request(u + "api/estimate", {"overrides": ["model.from=missing"]})
        assert s == 400 and json.loads(b)["key"] == "model.from"


@pytest.mark.integration
def test_bad_arguments_one_line():
    need_web()
    code, out, err = cli("serve", "--allow-files", "/no/such/dir", "--port", "0")
    assert code == 2 and err.strip().startswith("wanir: error: --allow-files") and err.count("\n") == 1


def test_loopback_names():
    for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(h)
    for h in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        assert not is_loopback(h)


def test_non_loopback_address_warns(monkeypatch, capsys):
    """Listening where other machines can reach it prints a warning and accepts any Host
    (checked on 127.0.0.1 posing as a public address: no public address is bound)."""
    need_web()
    import io

    import uvicorn

    from wanir.web import app as A

    seen = {}
    monkeypatch.setattr(A, "is_loopback", lambda host: False)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: seen.update(app=self.config.app))
    monkeypatch.setattr(A, "_warm", lambda engine: None)
    out = io.StringIO()
    A.serve("127.0.0.1", 0, out=out)
    err = capsys.readouterr().err
    assert "warning: listening on 127.0.0.1, reachable from other machines" in err
    assert re.match(r"wanir serve: http://127\.0\.0\.1:\d+/", out.getvalue())
    mw = seen["app"].user_middleware[0]
    assert mw.kwargs["allowed_hosts"] == ["*"]
