"""The Fleet view of `wanir serve` (wanir plan on a traffic file's text) in headless Chromium,
driven by Playwright (as tests/test_web_browser.py): it plans, plots and lists the ranking,
and a bad traffic file shows one line naming the key."""
import importlib.util
import os
import re
import shutil

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = [m for m in ("playwright", "starlette", "uvicorn", "plotly") if importlib.util.find_spec(m) is None] + \
    ([] if CHROMIUM else ["chromium"])
TIMEOUT = 180_000


@pytest.fixture(scope="module")
def page():
    if MISSING:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the browser tests' set-up; missing: {', '.join(MISSING)}")
        pytest.skip(f"needs {', '.join(MISSING)} (pip install 'wanir[web,browser]'; apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from wanir.web.launch import running_server

    with running_server() as (url, _), sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        pg = b.new_page(viewport={"width": 1400, "height": 900})
        pg.set_default_timeout(TIMEOUT)
        pg.errors = []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        pg.goto(url + "?model=wan2.1-t2v-1.3b#view=fleet")
        yield pg
        b.close()


def test_fleet_view_plans_the_example(page):
    page.click("#fl-run")
    page.wait_for_function("['ready', 'error'].includes(document.querySelector('#view-fleet').dataset.state)",
                           timeout=TIMEOUT)
    assert page.text_content("#fl-error") == ""
    rows = page.locator("#fleet-table tbody tr")
    # the example's four deployments: those whose classes all fit in memory are listed, the
    # rest counted in the summary (the 720p class needs more than an RTX 4090's 24 GB)
    import wanir
    big = wanir.estimate(["model=wan2.1-t2v-1.3b", "workload.height=720", "workload.width=1280", "hardware=rtx-4090"])
    assert not big.fits
    hws = page.eval_on_selector_all("#fleet-table tbody tr", "rs => rs.map(r => r.cells[1].textContent)")
    assert "rtx-4090" not in hws and rows.count() == 3
    assert "4 deployments evaluated, 1 do not fit in memory" in page.text_content("#fl-summary")
    # the mean service time with the time model's error range: LOW ≤ mean ≤ HIGH, as printed
    heads = page.eval_on_selector_all("#fleet-table thead th", "hs => hs.map(h => h.textContent)")
    cells = page.eval_on_selector_all("#fleet-table tbody tr", "rs => rs.map(r => r.cells[%d].textContent)"
                                      % heads.index("service (range)"))
    for c in cells:
        m = re.fullmatch(r"([\d.,]+) (\w+) \(([\d.,]+)–([\d.,]+)\)", c)
        assert m, c
        assert float(m[3].replace(",", "")) <= float(m[1].replace(",", "")) <= float(m[4].replace(",", ""))
    assert page.locator("#fl-cdf .main-svg").count() >= 1 and page.locator("#fl-pareto .main-svg").count() >= 1
    assert page.text_content("#fl-summary").startswith("best:")
    assert page.errors == []


def test_fleet_view_names_the_bad_key(page):
    page.fill("#fl-traffic", "classes: [{name: a, share: -1}]\narrivals: {rate_per_hour: 1}\n")
    page.click("#fl-run")
    page.wait_for_function("document.querySelector('#view-fleet').dataset.state === 'error'", timeout=TIMEOUT)
    assert "classes[0].share" in page.text_content("#fl-error")
