"""`wanir serve` in a real browser: Debian's Chromium, headless, driven by Playwright
(``executable_path``: no browser download). Skipped without Chromium or Playwright; under CI
(``CI`` set) they are required."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from urllib.parse import parse_qsl, urlsplit

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = [m for m in ("playwright", "starlette", "uvicorn", "plotly") if importlib.util.find_spec(m) is None] + \
    ([] if CHROMIUM else ["chromium"])
BASE = "?model=wan2.1-t2v-1.3b"            # the 1.3B: quick to estimate
TIMEOUT = 180_000                          # ms; a loaded 2-core machine is slow


@pytest.fixture(scope="module")
def server():
    if MISSING:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the browser tests' set-up; missing: {', '.join(MISSING)} "
                        "(make test installs the 'web' and 'browser' extras and Debian's chromium)")
        pytest.skip(f"needs {', '.join(MISSING)} (pip install 'wanir[web,browser]'; apt-get install chromium)")
    from wanir.web.launch import running_server

    with running_server() as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT)
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    yield pg
    ctx.close()


def ready(pg):
    pg.wait_for_function("document.body.dataset.state === 'ready'", timeout=TIMEOUT)


def cli(*args):
    """(exit status, stdout, stderr) of ``wanir ARGS``."""
    r = subprocess.run([sys.executable, "-m", "wanir", *args], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, COLUMNS="200"))
    return r.returncode, r.stdout, r.stderr


def cli_table(overrides):
    """The rows of the table ``wanir estimate OVERRIDES`` prints, as lists of cell texts."""
    code, out, err = cli("estimate", *overrides)
    assert code == 0, err
    rows = []
    for line in out.splitlines():
        if line.startswith("│"):
            rows.append([c.strip() for c in line.strip().strip("│").split("│")])
    return rows


def page_table(pg, sel="#stage-table"):
    return pg.eval_on_selector_all(f"{sel} tbody tr", "rs => rs.map(r => Array.from(r.cells).map(c => c.textContent))")


def page_overrides(pg):
    """The overrides the page's permalink carries."""
    return [f"{k}={v}" for k, v in parse_qsl(urlsplit(pg.input_value("#permalink")).query)]


def test_page_loads(server, page):
    page.goto(server + BASE)
    ready(page)
    rows = page_table(page)
    assert [r[0] for r in rows] == [r[0] for r in cli_table(["model=wan2.1-t2v-1.3b"])]
    assert rows[-1][0] == "total"
    assert page.locator("#fit").inner_text().endswith("fits")
    assert page.errors == []


def test_gpu_and_resolution_change_the_table_to_the_cli_values(server, page):
    page.goto(server + BASE)
    ready(page)
    before = page_table(page)
    page.select_option('[data-key="hardware"]', "a100-80gb")
    page.fill('[data-key="workload.height"]', "480")
    page.fill('[data-key="workload.width"]', "832")
    page.wait_for_function("document.body.dataset.state === 'ready' && "
                           "document.getElementById('permalink').value.includes('workload.width=832')")
    ov = page_overrides(page)
    assert sorted(ov) == sorted(["model=wan2.1-t2v-1.3b", "hardware=a100-80gb", "workload.height=480",
                                 "workload.width=832"])
    after = page_table(page)
    assert after != before
    assert after == cli_table(ov)
    code, out, _ = cli("estimate", *ov)        # the caption too (rich may wrap it over lines)
    assert " ".join(page.inner_text("#est-caption").split()) in " ".join(out.split())
    assert "a100-80gb" in page.inner_text("#est-title")
    assert page.errors == []


def test_bad_value_shows_the_cli_message_next_to_the_control(server, page):
    page.goto(server + BASE)
    ready(page)
    page.fill('[data-key="workload.frames"]', "80")
    page.wait_for_function("document.body.dataset.state === 'error'")
    code, _, err = cli("estimate", "model=wan2.1-t2v-1.3b", "workload.frames=80")
    assert code == 2
    msg = page.inner_text('.field[data-field="workload.frames"] .err')
    assert msg == err.strip().removeprefix("wanir: error: ")
    assert "allowed nearby: 77 or 81" in msg
    page.fill('[data-key="workload.frames"]', "81")
    ready(page)
    assert page.inner_text('.field[data-field="workload.frames"] .err') == ""
    # a bad line in the advanced box: the message shows under the box
    page.fill("#advanced", "roofline.mode=fastest")
    page.wait_for_function("document.body.dataset.state === 'error'")
    code, _, err = cli("estimate", "model=wan2.1-t2v-1.3b", "workload.frames=81", "roofline.mode=fastest")
    assert page.inner_text('.field[data-field="advanced"] .err') == err.strip().removeprefix("wanir: error: ")


def test_roofline_tab(server, page):
    from wanir.web.service import Engine

    page.goto(server + BASE)
    ready(page)
    page.click('#tabs button[data-view="roofline"]')
    page.wait_for_selector("#roofline-plot .scatterlayer .point")
    ready(page)
    n = page.locator("#roofline-plot .scatterlayer .point").count()
    expect = Engine().roofline_view(["model=wan2.1-t2v-1.3b"], "op", 2)
    assert n == len(expect["points"])
    page.select_option("#roof-by", "scope")
    page.wait_for_function(f"document.querySelectorAll('#roofline-plot .scatterlayer .point').length !== {n}")
    assert "#view=roofline" in page.input_value("#permalink") and "roof-by=scope" in page.input_value("#permalink")
    assert page.errors == []


def test_sizing_tab_sorts(server, page):
    page.goto(server + BASE + "&workload=480p#view=sizing")
    page.wait_for_selector("#sizing-table tbody tr")
    ready(page)
    assert page.locator("#sizing-plot .main-svg").count() >= 1
    assert page.locator("#sizing-table tr.pareto").count() >= 1
    page.click('#sizing-table th[data-key="time_s"]')
    assert page.get_attribute('#sizing-table th[data-key="time_s"]', "aria-sort") == "ascending"
    times = page.evaluate("S.sizing.rows.slice()")
    by_rank = {r["rank"]: r["time_s"] for r in times}
    shown = [by_rank[int(r[0])] for r in page_table(page, "#sizing-table")]
    assert shown == sorted(shown)
    page.click('#sizing-table th[data-key="time_s"]')
    shown = [by_rank[int(r[0])] for r in page_table(page, "#sizing-table")]
    assert shown == sorted(shown, reverse=True)
    assert page.errors == []


def test_permalink_restores_the_page(server, page, browser):
    page.goto(server + BASE)
    ready(page)
    page.select_option('[data-key="hardware"]', "h200")
    page.fill('[data-key="workload.steps"]', "20")
    page.fill("#advanced", "roofline.mode=ideal")
    page.wait_for_function("document.body.dataset.state === 'ready' && "
                           "document.getElementById('permalink').value.includes('roofline.mode=ideal')")
    page.click('#tabs button[data-view="compare"]')
    page.wait_for_selector("#compare-table tbody tr")
    link = page.input_value("#permalink")
    table = page_table(page)
    other = browser.new_page()
    try:
        other.goto(link)
        other.wait_for_selector("#compare-table tbody tr", timeout=TIMEOUT)
        ready(other)
        assert other.input_value('[data-key="hardware"]') == "h200"
        assert other.input_value('[data-key="workload.steps"]') == "20"
        assert other.input_value("#advanced") == "roofline.mode=ideal"
        assert page_table(other) == table
        assert other.locator('#tabs button[data-view="compare"]').get_attribute("class") == "active"
    finally:
        other.close()


def test_download_json_is_the_cli_document(server, page):
    page.goto(server + BASE + "&hardware=b200&workload=480p")
    ready(page)
    with page.expect_download() as d:
        page.click("#dl-json")
    got = json.loads(open(d.value.path()).read())
    code, out, err = cli("estimate", "model=wan2.1-t2v-1.3b", "hardware=b200", "workload=480p", "--format", "json")
    assert code == 0, err
    assert got == json.loads(out)
    assert d.value.suggested_filename == "estimate.json"
