"""`wanir --help` names the models it covers: every built-in model option."""
import pytest

from hostile import REPO, cli


@pytest.mark.integration
def test_help_names_every_builtin_model():
    models = sorted(p.stem for p in (REPO / "wanir" / "configs" / "model").glob("*.yaml"))
    assert len(models) >= 7
    r = cli("--help")
    assert r.returncode == 0, r.stderr[-2000:]
    text = "".join(r.stdout.split())          # argparse wraps the description
    for m in models:
        assert m in text, m
    assert "model.from=PATH" in text
