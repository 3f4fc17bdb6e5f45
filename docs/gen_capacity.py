"""Regenerate the worked example of docs/capacity.md and its pictures from real `wanir plan`
output.

    python docs/gen_capacity.py          # the worked example, its plots and the JSON excerpt
    python docs/gen_capacity.py --web    # also docs/img/web-fleet.png (the Fleet tab of wanir serve)

Runs ``wanir plan examples/traffic.yaml --top 10 -o DIR``, puts its table and the closed-form
figures of its simulated rows between the ``<!-- gen_capacity: NAME -->`` markers of
docs/capacity.md, an excerpt of its plan.json (the JSON of ``--format json``) into
docs/cli.md, and copies the plots to docs/img/capacity-*.png.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "capacity.md"
CLI = ROOT / "docs" / "cli.md"
ARGS = ["plan", "examples/traffic.yaml", "--top", "10", "-q"]


def _minutes(s) -> str:
    return "-" if s is None else f"{s / 60:.1f} min"


def web_shot() -> None:
    """Screenshot the Fleet tab of ``wanir serve`` after planning its example (Playwright and
    Debian's Chromium, as docs/gen_web_screenshots.py)."""
    from playwright.sync_api import sync_playwright  # late import: only --web needs the browser extras

    from wanir.web.launch import running_server  # late import: only --web needs the web extra

    path = ROOT / "docs" / "img" / "web-fleet.png"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with running_server() as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url + "?model=wan2.1-t2v-1.3b#view=fleet")
        page.click("#fl-run")
        page.wait_for_selector("#view-fleet[data-state=ready]", timeout=300_000)
        page.wait_for_timeout(500)
        page.locator("#view-fleet").screenshot(path=str(path))
        browser.close()
    print(f"wrote {path}")


def main() -> None:
    if "--web" in sys.argv[1:]:
        web_shot()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, COLUMNS="200")
        r = subprocess.run([sys.executable, "-m", "wanir", *ARGS, "-o", tmp], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=900)
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        table = "```\n$ wanir " + " ".join(ARGS[:-1]) + "\n" + r.stdout.rstrip() + "\n```"
        plan = json.loads((Path(tmp) / "plan.json").read_text())
        rows = ["| deployment | replicas (closed form → simulated) | p95 closed form | p95 simulated (95 % interval) "
                "| Little's law L vs λW, worst run |", "|---|---|---|---|---|"]
        for d in plan["deployments"]:
            if d["method"] != "simulation" or not d.get("analytic"):
                continue
            sim, ana = d["simulated"], d["analytic"]
            ci = sim["ci"]["p95"]
            worst = max(abs(a - b) / b for a, b in sim["little"])
            rows.append(f"| {d['hardware']} × {d['devices']} {d['plan']} | {ana['replicas']} → {d['replicas']} | "
                        f"{_minutes(ana['latency_s']['p95'])} | {_minutes(sim['latency_s']['p95'])} "
                        f"({_minutes(ci['low'])} to {_minutes(ci['high'])}) | {worst:.1e} relative |")
        for stem, name in (("latency_cdf", "latency-cdf"), ("cost_vs_p95", "cost-vs-p95"),
                           ("load_curves", "load-curves")):
            shutil.copyfile(Path(tmp) / f"{stem}.png", ROOT / "docs" / "img" / f"capacity-{name}.png")
    excerpt = {"deployments": [_cut(plan["deployments"][0])], "best": "... (the first deployment, as above)",
               "traffic": _cut(plan["traffic"]),
               **{k: _cut(v) for k, v in plan.items() if k not in ("deployments", "best", "traffic")}}
    blocks = {DOC: (("table", table), ("check", "\n".join(rows))),
              CLI: (("json", "```json\n" + _compact(excerpt) + "\n```"),)}
    for path, items in blocks.items():
        text = path.read_text()
        for name, body in items:
            text = re.sub(rf"(<!-- gen_capacity: {name} -->\n).*?(<!-- /gen_capacity -->)",
                          lambda m: m.group(1) + body + "\n" + m.group(2), text, flags=re.S)
        path.write_text(text)
    print(f"wrote {DOC}, {CLI} and docs/img/capacity-*.png")


def _compact(d: dict) -> str:
    """The excerpt as JSON: the first deployment and ``traffic`` one key a line, values compact."""
    def obj(o: dict, pad: str) -> str:
        return "{\n" + ",\n".join(f"{pad}  {json.dumps(k)}: {json.dumps(v)}" for k, v in o.items()) + f"\n{pad}}}"
    parts = [f' "deployments": [{obj(d["deployments"][0], "  ")}]', f' "best": {json.dumps(d["best"])}',
             f' "traffic": {obj(d["traffic"], " ")}']
    parts += [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in d.items() if k not in ("deployments", "best", "traffic")]
    return "{\n" + ",\n".join(parts) + "\n}"


def _cut(x, depth=0):
    """``x`` with lists longer than 3 cut to their first 3 items and a "..." marker; floats to 4 digits."""
    if isinstance(x, float):
        return float(f"{x:.4g}")
    if isinstance(x, dict):
        return {k: _cut(v, depth + 1) for k, v in x.items()}
    if isinstance(x, list):
        return [_cut(v, depth + 1) for v in x[:3]] + (["..."] if len(x) > 3 else [])
    return x


if __name__ == "__main__":
    main()
