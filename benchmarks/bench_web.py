"""Time ``wanir serve``: how long it takes to start, and how long the page takes to answer a
change.

- start: from launching ``wanir serve --port 0`` to the first answer of its page (median of
  ``--starts`` launches);
- a change over HTTP: ``POST /api/estimate`` round trips for configurations not seen before,
  (a) a workload value changed (a new graph; no new Hydra composition), (b) a GPU switched
  right after the previous answer (a new composition unless the idle-time composition got
  there first), (c) a GPU switched after a pause (the idle-time composition has run);
- a change in the browser (with Playwright and Chromium present): from the ``change`` event
  of the hardware menu to the new table on screen.

    .venv/bin/python benchmarks/bench_web.py [--starts 3] [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
import urllib.request

from wanir.web.launch import running_server

GPUS = ("a100-80gb", "h200", "b200", "l40s", "h800", "mi300x", "a800", "h20")


def post(url: str, overrides: list[str]) -> float:
    """Seconds for one estimate round trip."""
    body = json.dumps({"overrides": overrides}).encode()
    req = urllib.request.Request(url + "api/estimate", data=body, headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
    return time.perf_counter() - t


def ms(xs) -> str:
    return f"median {1e3 * statistics.median(xs):.0f} ms (min {1e3 * min(xs):.0f}, max {1e3 * max(xs):.0f}, n={len(xs)})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    a = ap.parse_args(argv)

    starts = []
    for _ in range(a.starts):
        with running_server() as (_, t):
            starts.append(t)
    print(f"start (launch to first page answer): {ms(starts)}")

    with running_server() as (url, _):
        post(url, [])                                        # the page's first request
        time.sleep(8)                                        # let the idle-time composition run
        values = [post(url, [f"workload.height={h}"]) for h in (480, 496, 512, 528, 544, 560, 576, 592)]
        print(f"change a workload value (new graph): {ms(values)}")
        quick = []
        for g in GPUS[:4]:
            quick.append(post(url, [f"hardware={g}", "workload.height=592"]))
        print(f"switch GPU right after an answer: {ms(quick)}")
        idle = []
        for g in GPUS[4:]:
            time.sleep(4)
            idle.append(post(url, [f"hardware={g}", "workload.height=592"]))
        print(f"switch GPU after a pause: {ms(idle)}")

        if a.chromium:
            try:
                from playwright.sync_api import sync_playwright
            except ImportError:
                print("browser: playwright not installed; skipped")
                return 0
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=a.chromium, headless=True, args=["--no-sandbox"])
                pg = b.new_page()
                pg.goto(url)
                pg.wait_for_function("document.body.dataset.state === 'ready'", timeout=120_000)
                times = []
                for g in ("h100-sxm", "h200", "a100-80gb", "b200", "h100-sxm", "h200"):
                    time.sleep(3)
                    times.append(pg.evaluate("""async (g) => {
                        const s = document.querySelector('[data-key="hardware"]');
                        const t0 = performance.now();
                        s.value = g; s.dispatchEvent(new Event('change'));
                        while (document.body.dataset.state !== 'ready') await new Promise(r => setTimeout(r, 2));
                        await new Promise(r => requestAnimationFrame(r));
                        return (performance.now() - t0) / 1e3; }""", g))
                print(f"browser: GPU menu change to the new table on screen: {ms(times)}")
                b.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
