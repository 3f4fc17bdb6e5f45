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

pytestmark = [pytest.mark.browser, pytest.mark.integration]

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


def sizing_inputs(pg, **values):
    """Fill the sizing tab's inputs (hidden until the tab opens) before opening it."""
    for k, v in values.items():
        pg.evaluate("([id, v]) => { document.getElementById(id).value = v; }", [f"sz-{k}", v])


def test_sizing_with_prices_for_some_gpus(server, page):
    """Prices for one GPU of two and a throughput target: the rows come in `wanir size`'s
    order, with its videos/batch, $/video ("no price" on the other GPU) and GPU-h/video
    columns; the Pareto stars are on the rows the sizing marks; the table sorts."""
    from wanir.backends.report import fmt_time_range
    from wanir.web.service import Engine

    ov = ["model=wan2.1-t2v-1.3b", "workload=480p", "workload.frames=17", "workload.steps=4"]
    page.goto(server + "?" + "&".join(ov))
    ready(page)
    sizing_inputs(page, throughput="100", devices="1,2", hardware="h100-sxm,a100-80gb", prices="h100-sxm=2.5")
    page.click('#tabs button[data-view="sizing"]')
    page.wait_for_selector("#sizing-table tbody tr")
    ready(page)
    want = Engine().size_view(ov, throughput="100", hardware=["h100-sxm", "a100-80gb"], devices="1,2",
                              prices=["h100-sxm=2.5"])
    heads = page.eval_on_selector_all("#sizing-table thead th", "hs => hs.map(h => h.textContent)")
    for h in ("videos/batch", "$/video", "GPU-h/video", "Pareto", "latency", "runtime", "attention kernel",
              "DiT weights/compute"):
        assert h in heads
    rows = page_table(page, "#sizing-table")
    col = {h: i for i, h in enumerate(heads)}
    assert [(r[col["hardware"]], int(r[col["GPUs"]]), r[col["plan"]], int(r[col["videos/batch"]])) for r in rows] == \
        [(r["hardware"], r["devices"], r["plan"], r["batch"]) for r in want["rows"]]
    for r, w in zip(rows, want["rows"]):
        assert (r[col["$/video"]] == "no price") == (w["hardware"] == "a100-80gb")
        assert (r[col["Pareto"]] == "★") == w["pareto"]
        # the stack each row assumed, and its latency with the error range as the CLI formats times
        assert (r[col["runtime"]], r[col["attention kernel"]]) == (w["runtime"], w["attention_kernel"])
        assert r[col["DiT weights/compute"]] == f"{w['precision']['dit_weights']}/{w['precision']['dit_compute']}"
        lo, hi = w["time_range_s"]
        assert r[col["latency"]] == fmt_time_range(w["time_s"], (lo, hi)) and lo <= w["time_s"] <= hi
    assert page.locator("#sizing-table tr.pareto").count() == sum(w["pareto"] for w in want["rows"]) >= 2
    assert "no price for a100-80gb" in page.inner_text("#sz-summary")
    page.click('#sizing-table th[data-key="time_s"]')
    assert page.get_attribute('#sizing-table th[data-key="time_s"]', "aria-sort") == "ascending"
    by_rank = {w["rank"]: w["time_s"] for w in want["rows"]}
    shown = [by_rank[int(r[0])] for r in page_table(page, "#sizing-table")]
    assert shown == sorted(shown)
    assert page.errors == []


PLAN = ["parallel=fsdp+ulysses", "parallel.degree=4"]


def test_plan_round_trip_resets_the_device_count(server, page):
    """fsdp+ulysses on 4 devices, then back to single: the device count resets with the
    plan, the page answers (no error), and the table is the CLI's each time.

    On the way the page passes through fsdp+ulysses at the preset's 8 devices, which the
    1.3B refuses: its DiT has 12 attention heads (Wan2.1-T2V-1.3B's config.json: dim 1536,
    num_heads 12) and 12 % 8 != 0, so Ulysses cannot split them 8 ways. The page says so
    on the plan's field and greys its views; the next configuration that answers clears both."""
    page.goto(server + BASE)
    ready(page)
    page.select_option('[data-key="parallel"]', "fsdp+ulysses")
    page.wait_for_function("document.body.dataset.state === 'error'")
    assert "12 heads" in page.inner_text('[data-field="parallel"] .err')
    assert page.locator(".stale").count() > 0
    # the refused request's one console line, and nothing else, from that step
    assert page.errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    page.errors.clear()
    page.fill('[data-key="parallel.degree"]', "4")
    page.wait_for_function("document.body.dataset.state === 'ready' && "
                           "document.getElementById('permalink').value.includes('parallel.degree=4')")
    assert page_table(page) == cli_table(["model=wan2.1-t2v-1.3b", *PLAN])      # the per-device table
    assert "4 × h100-sxm" in page.inner_text("#est-title")
    page.select_option('[data-key="parallel"]', "single")
    page.wait_for_function("document.body.dataset.state === 'ready' && "
                           "!document.getElementById('permalink').value.includes('parallel.degree')")
    assert page.input_value('[data-key="parallel.degree"]') == ""
    assert page.is_disabled('[data-key="parallel.degree"]')
    assert sorted(page_overrides(page)) == ["model=wan2.1-t2v-1.3b", "parallel=single"]
    assert page_table(page) == cli_table(["model=wan2.1-t2v-1.3b", "parallel=single"])
    assert page.inner_text("#error") == "" and page.locator(".stale").count() == 0
    assert page.inner_text('[data-field="parallel"] .err') == ""
    assert page.get_attribute("#dl-json", "href").endswith("parallel=single")
    assert page.errors == []


def test_every_view_under_a_plan_is_per_device(server, page):
    """Under a plan every view shows one device's figures and says so; Compare's B total is
    the CLI's per-device time; the HTML report (one device's pipeline only) is disabled."""
    import re

    q = BASE + "&parallel=fsdp%2Bulysses&parallel.degree=4"
    page.goto(server + q + "#view=compare&a=model%3Dwan2.1-t2v-1.3b")
    page.wait_for_selector("#compare-table tbody tr")
    ready(page)
    cli_rows = cli_table(["model=wan2.1-t2v-1.3b", *PLAN])
    assert page_table(page, "#stage-table") == cli_rows
    assert page.input_value('[data-key="parallel.degree"]') == "4" and not page.is_disabled('[data-key="parallel.degree"]')
    head = page.eval_on_selector_all("#compare-table thead tr:last-child th", "hs => hs.map(h => h.textContent)")
    total = page_table(page, "#compare-table")[-1]
    assert total[0] == "total"
    cli_head = page.eval_on_selector_all("#stage-table thead th", "hs => hs.map(h => h.textContent)")
    # Compare's B total: the CLI's per-device time with its error range ("per video: T (LO–HI) on ...")
    code, out, err = cli("estimate", "model=wan2.1-t2v-1.3b", *PLAN)
    per_video = re.search(r"per video: (.+?) on 4 × h100-sxm", out)
    assert code == 0 and per_video and "–" in per_video.group(1)
    assert total[head.index("time B")] == per_video.group(1)
    assert per_video.group(1).startswith(cli_rows[-1][cli_head.index("time")] + " (")
    assert "4 × h100-sxm" in page.inner_text("#compare-table thead")
    page.click('#tabs button[data-view="roofline"]')
    page.wait_for_selector("#roofline-plot .scatterlayer .point")
    ready(page)
    assert "one device of 4 × h100-sxm" in page.text_content("#roofline-plot .gtitle")
    page.click('#tabs button[data-view="breakdown"]')
    page.wait_for_selector("#memory-plot .main-svg")
    ready(page)
    assert "one device of 4 × h100-sxm" in page.inner_text("#bd-note")
    assert "one device of 4 × h100-sxm" in page.text_content("#memory-plot .gtitle")
    peak = re.search(r"peak ([\d.]+ GiB)", page.text_content("#memory-plot"))
    assert peak and peak.group(1) == cli_rows[-1][-1]            # the CLI's per-device peak
    assert "disabled" in page.get_attribute("#dl-html", "class")
    assert page.errors == []


def test_a_view_that_cannot_update_is_marked_stale(server, page):
    page.goto(server + BASE + "#view=compare")
    page.wait_for_selector("#compare-table tbody tr")
    ready(page)
    page.fill('[data-key="workload.frames"]', "80")
    page.wait_for_function("document.body.dataset.state === 'error'")
    assert "stale" in page.get_attribute("#compare-table", "class")
    assert page.inner_text("#view-compare .stale-note").startswith("not updated: workload.frames=80")
    assert "stale" in page.get_attribute("#est-body", "class")
    for a in ("#dl-json", "#dl-csv", "#dl-html"):
        assert page.get_attribute(a, "href") is None and page.get_attribute(a, "aria-disabled") == "true"
    page.fill('[data-key="workload.frames"]', "81")
    page.wait_for_function("document.body.dataset.state === 'ready' && "
                           "!document.getElementById('compare-table').classList.contains('stale')")
    assert page.inner_text("#view-compare .stale-note") == ""
    assert page.get_attribute("#dl-json", "href") is not None
    assert [e for e in page.errors if "status of 400" not in e] == []     # the refused estimate itself


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
    # the HTML report runs as a job, then downloads: the CLI report's stage table
    with page.expect_download() as d:
        page.click("#dl-html")
    html = open(d.value.path(), encoding="utf-8").read()
    assert d.value.suggested_filename == "report.html" and 'id="stage-table"' in html
