"""The HTML report: self-contained, and it loads in headless Chromium without console errors
with the stage table and the diagram present."""
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import wanir
from wanir.backends import html as H

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(CHROMIUM is None or shutil.which("dot") is None,
                                   reason="needs Debian's chromium and graphviz (make system-deps)")

# Recorded into the DOM on load: every script error and every failed resource load.
RECORDER = ("<script>window.__errs=[];window.addEventListener('error',function(e){"
            "window.__errs.push(String(e.message||(e.target&&(e.target.src||e.target.href))));},true);"
            "window.addEventListener('load',function(){document.body.setAttribute('data-errors',"
            "JSON.stringify(window.__errs));});</script>")


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.rows, self.ids, self.attrs = [], {}, set(), {}
        self._table = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self._table = a.get("id")
            self.rows[self._table] = 0
        if tag == "tr" and self._table:
            self.rows[self._table] += 1
        if tag == "body":
            self.attrs = a


@pytest.fixture(scope="module")
def est():
    return wanir.estimate(["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832",
                           "workload.frames=17", "workload.steps=2"])


@pytest.fixture(scope="module")
def page(est):
    return H.to_html(est)


@pytest.mark.slow
def test_self_contained(page):
    # nothing that a browser would fetch: no external src/href/url()/@import
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert "@import" not in page and "<link" not in page


@pytest.mark.slow
def test_sections_present(page, est):
    p = _Tables()
    p.feed(page)
    assert {"stage-table", "diagram", "scope-table", "config-table", "notes"} <= p.ids
    assert p.rows["stage-table"] == 1 + len(est.stages) + 1        # header, stages, total
    for st in est.stages:
        assert f"<td>{st.name}</td>" in page
    assert page.count("<svg") >= 3                                   # diagram and two plots
    assert "Not modeled" in page or "not modeled" in page


def test_scope_breakdown_adds_up(est):
    recs = H.scope_breakdown(est, depth=2)
    by_path = {r["path"]: r for r in recs}
    for st in est.stages:
        # a stage's FLOPs are its tensor plus vector FLOPs per generation
        assert by_path[st.name]["flops"] == st.total["tensor_flops"] + st.total["vector_flops"]
        kids = [r for r in recs if r["level"] == 1 and r["path"].startswith(st.name + "/")]
        direct = sum((int(n.costs.get("tensor_flops") or 0) + int(n.costs.get("vector_flops") or 0))
                     * n.multiplicity for n in est.graph if n.stage == st.name and n.scope.depth == 1)
        assert sum(k["flops"] for k in kids) + direct == by_path[st.name]["flops"]
    assert abs(sum(r["share"] for r in recs if r["level"] == 0) - 1.0) < 1e-9


def test_architecture_notes_read_from_docs(tmp_path):
    md = tmp_path / "a.md"
    md.write_text("# A\n\n## Part\n\nText.\n\nNot modeled: the `mask`.\n\n## Modeled vs not modeled\n\n"
                  "- one\n- two\n")
    notes = H.architecture_notes(md)
    assert notes == [("Part", "Not modeled: the `mask`."), ("Modeled vs not modeled", "- one - two")]
    assert H.architecture_notes(tmp_path / "missing.md") == []


@pytest.mark.integration
@needs_browser
def test_loads_in_chromium_without_errors(tmp_path, page, est):
    html = page.replace("<head>", "<head>" + RECORDER, 1)
    f = tmp_path / "report.html"
    f.write_text(html, encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--dump-dom", f.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == []
    p = _Tables()
    p.feed(r.stdout)
    assert json.loads(p.attrs.get("data-errors", "null")) == []
    assert "stage-table" in p.ids and "diagram" in p.ids
    assert p.rows["stage-table"] == len(est.stages) + 2
    assert re.search(r'<div class="diagram" id="diagram"><svg', r.stdout)


@pytest.mark.slow
def test_cli_report(tmp_path):
    from wanir.cli import main

    out = tmp_path / "r.html"
    spec = Path(__file__).resolve().parent.parent / "examples" / "specs" / "two_stage.yaml"
    assert main(["report", "--spec", str(spec), "-o", str(out)]) == 0
    text = out.read_text()
    assert 'id="stage-table"' in text and "<svg" in text


@pytest.mark.slow
def test_report_names_the_stack_and_what_replaces_the_assumptions(page, est):
    # the same stack phrase and provenance lines as the terminal table
    from wanir.backends import report
    assert f"Stack: runtime {est.graph.meta['runtime']}; " in page
    assert f"attention kernel {est.options.roofline.attention_kernel}" in page
    for line in report.provenance_lines(est):
        assert html.escape(line, quote=False) in page or html.escape(line) in page
    assert "wanir calibrate" in page
