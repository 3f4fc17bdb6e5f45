"""The Fleet view of `wanir serve` (wanir plan on a traffic file's text) in headless Chromium,
driven by Playwright (as tests/test_web_browser.py): it plans, plots and lists the ranking,
and a bad traffic file shows one line naming the key."""
import importlib.util
import os
import shutil

import pytest

pytestmark = pytest.mark.browser

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
    assert rows.count() == 4                                   # the example's four deployments
    assert page.locator("#fl-cdf .main-svg").count() >= 1 and page.locator("#fl-pareto .main-svg").count() >= 1
    assert page.text_content("#fl-summary").startswith("best:")
    assert page.errors == []


def test_fleet_view_names_the_bad_key(page):
    page.fill("#fl-traffic", "classes: [{name: a, share: -1}]\narrivals: {rate_per_hour: 1}\n")
    page.click("#fl-run")
    page.wait_for_function("document.querySelector('#view-fleet').dataset.state === 'error'", timeout=TIMEOUT)
    assert "classes[0].share" in page.text_content("#fl-error")
