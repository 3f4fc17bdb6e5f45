"""`wanir estimate --format json` imports only what answering needs: no plotting, tables, graph
algorithms, web app, calibration, reference models, checkpoint readers, file output, OmegaConf or Hydra
(docs/architecture.md, "Imports sit at
module level"). An invariant of the import graph, checked in a fresh interpreter; the time it
takes is measured in benchmarks/, not here."""
import json
import subprocess
import sys

import pytest

NOT_NEEDED = ("networkx", "rich", "matplotlib", "numpy", "torch", "starlette", "plotly", "graphviz",
              "omegaconf", "hydra", "importlib.metadata",
              "wanir.web.app", "wanir.backends.calibrate", "wanir.backends.html", "wanir.backends.plots",
              "wanir.backends.sweep", "wanir.frontends.checkpoint", "wanir.hydra_compose",
              "wanir.safeout", "wanir.frontends.ckpt_read")   # file output (tempfile), checkpoint zips (zipfile)

SCRIPT = """
import contextlib, io, json, sys
from wanir.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(["estimate", "model=wan2.1-t2v-1.3b", "--format", "json"])
print(json.dumps({"code": code, "total": json.loads(out.getvalue())["total"]["tensor_flops"],
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] != "_")}))
"""


@pytest.mark.integration
def test_estimate_json_loads_no_module_it_does_not_need():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["code"] == 0 and doc["total"] > 0
    loaded = set(doc["loaded"])
    assert "wanir.estimate" in loaded                 # the check sees wanir's own modules
    bad = sorted(m for m in NOT_NEEDED if m in loaded)
    assert not bad, f"`wanir estimate --format json` imported {bad}"
