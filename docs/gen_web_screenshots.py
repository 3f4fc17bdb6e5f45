"""Write screenshots of each view of ``wanir serve`` to docs/img/web-*.png.

Starts the server on a free port, drives Debian's Chromium headless with Playwright
(``executable_path``: no browser download) and saves one PNG per view.

    .venv/bin/python docs/gen_web_screenshots.py [--chromium /usr/bin/chromium] [--out docs/img]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from wanir.web.launch import running_server

HERE = Path(__file__).resolve().parent
#: the configuration shown: the 14B at 720p on an H100 (the default); the comparison puts the
#: 14B at 480p on an H200 next to it; the sizing tab sizes the 1.3B at 480p for 60 s per video
#: at illustrative prices
QUERY = "?hardware=h100-sxm"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    ap.add_argument("--out", default=str(HERE / "img"))
    a = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with running_server() as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a.chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        def shot(name, view, ready=None, query=QUERY, full=False):
            page.goto(url + query + (f"#view={view}" if view != "estimate" else ""))
            page.wait_for_selector("body[data-state=ready]", timeout=120_000)
            if ready:
                page.wait_for_selector(ready, timeout=120_000)
            page.wait_for_timeout(400)
            page.screenshot(path=str(out / f"web-{name}.png"), full_page=full)
            print(f"wrote {out / f'web-{name}.png'}")

        shot("estimate", "estimate", "#stage-table tbody tr")
        shot("roofline", "roofline", "#roofline-plot .main-svg")
        shot("breakdown", "breakdown", "#memory-plot .main-svg", full=True)
        shot("diagram", "diagram", "#diagram svg", query=QUERY + "&model=wan2.1-t2v-1.3b")
        page.goto(url + "?hardware=h200&workload=480p#view=compare&a=" +
                  "hardware%3Dh100-sxm%26workload%3D720p")
        page.wait_for_selector("#compare-table tbody tr", timeout=120_000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / "web-compare.png"))
        print(f"wrote {out / 'web-compare.png'}")
        page.goto(url + "?model=wan2.1-t2v-1.3b&workload=480p")
        page.wait_for_selector("body[data-state=ready]", timeout=120_000)
        # the sizing runs (as a job) when its tab opens: its inputs are set first
        for k, v in (("latency", "60"), ("hardware", "h100-sxm,h200,b200,a100-80gb,l40s,mi300x"),
                     ("prices", "h100-sxm=2.5 h200=3.5 b200=5 a100-80gb=1.5 l40s=1 mi300x=2.5")):
            page.evaluate("([id, v]) => { document.getElementById(id).value = v; }", [f"sz-{k}", v])
        page.click('#tabs button[data-view="sizing"]')
        page.wait_for_selector("#sizing-table tbody tr", timeout=300_000)
        page.wait_for_selector("body[data-state=ready]", timeout=300_000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / "web-sizing.png"), full_page=False)
        print(f"wrote {out / 'web-sizing.png'}")
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
