"""Hostile output paths: an existing directory, a symbolic link, a suffix that does not match
the format, an unwritable place, a failing or missing Graphviz. Each is one line and exit 2;
a failed write leaves what was there untouched and no temporary file behind."""
import csv
import errno
import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostile import assert_one_line_error, cli
from wanir.errors import WanirError
from wanir.safeout import csv_cell, write_output

SMALL = ("model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.frames=5", "workload.steps=1")


@pytest.mark.integration
@pytest.mark.parametrize("cmd,name,needle", [
    ("render", "out.svg", "is an existing directory"),
    ("report", "out.html", "is an existing directory"),
])
def test_existing_directory(tmp_path, cmd, name, needle):
    (tmp_path / name).mkdir()
    assert_one_line_error(cli(cmd, *SMALL, "-o", tmp_path / name), needle)


@pytest.mark.integration
def test_trailing_slash_names_a_directory(tmp_path):
    assert_one_line_error(cli("render", *SMALL, "-o", f"{tmp_path}/d.svg/"), "names a directory")


@pytest.mark.integration
@pytest.mark.parametrize("cmd,name", [("render", "x.svg"), ("report", "x.html")])
def test_symbolic_link_is_not_followed(tmp_path, cmd, name):
    target = tmp_path / "target"
    target.write_text("keep me")
    (tmp_path / name).symlink_to(target)
    assert_one_line_error(cli(cmd, *SMALL, "-o", tmp_path / name), "symbolic link")
    assert target.read_text() == "keep me"


@pytest.mark.integration
@pytest.mark.parametrize("cmd,name,needle", [
    ("report", "r.pdf", "does not match the output format"),
    ("report", "r", "no suffix"),
    ("render", "r.html", "unknown format"),
])
def test_suffix_must_match_the_format(tmp_path, cmd, name, needle):
    assert_one_line_error(cli(cmd, *SMALL, "-o", tmp_path / name), needle)
    assert not (tmp_path / name).exists()


@pytest.mark.integration
def test_parent_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    assert_one_line_error(cli("render", *SMALL, "-o", tmp_path / "f" / "x.svg"), "is not a directory")


@pytest.mark.integration
def test_missing_graphviz_is_one_line(tmp_path):
    import sys
    env = {"PATH": os.path.dirname(sys.executable)}   # python, no `dot`
    assert_one_line_error(cli("render", *SMALL, "-o", tmp_path / "x.svg", env=env), "`dot` was not found")
    assert not (tmp_path / "x.svg").exists()
    assert cli("render", *SMALL, "-o", tmp_path / "x.dot", env=env).returncode == 0   # .dot needs no Graphviz


@pytest.mark.integration
def test_failing_graphviz_is_one_line(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dot").write_text("#!/bin/sh\ncat >/dev/null\necho 'Error: syntax error in line 1' >&2\necho more >&2\nexit 1\n")
    (fake / "dot").chmod(0o755)
    env = {"PATH": f"{fake}:{os.environ['PATH']}"}
    assert_one_line_error(cli("render", *SMALL, "-o", tmp_path / "x.png", env=env), "`dot` failed",
                          "syntax error in line 1")


def test_permission_error_names_the_path(tmp_path, monkeypatch):
    def deny(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", deny)
    out = tmp_path / "x.html"
    with pytest.raises(WanirError, match=rf"{out}: cannot write: permission denied"):
        write_output(out, "<html></html>", (".html",))
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_old_file(tmp_path):
    out = tmp_path / "x.svg"
    out.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WanirError, match="No space left"):
        write_output(out, boom, (".svg",))
    assert out.read_text() == "old" and os.listdir(tmp_path) == ["x.svg"]


def test_write_replaces_atomically(tmp_path):
    out = tmp_path / "r.html"
    out.write_text("old")
    write_output(out, "new", (".html",))
    assert out.read_text() == "new" and os.listdir(tmp_path) == ["r.html"]


# ----------------------------------------------------------------------------- CSV injection


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_csv_cells_a_spreadsheet_would_run_are_escaped(s):
    cell = csv_cell(s)
    if s[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(s)
            assert cell == s                      # a number written as text stays a number
        except ValueError:
            assert cell == "'" + s
    else:
        assert cell == s


def test_sweep_csv_escapes_formula_cells(tmp_path):
    from wanir.backends.sweep import SweepResult, parse_sweep, write_csv

    res = SweepResult([{"x": "=HYPERLINK(\"http://x\")", "y": -1.5, "z": "@SUM(A1)"}], ["x", "y", "z"],
                      parse_sweep(["workload.steps=1"]))
    p = write_csv(res, tmp_path / "r.csv")
    row = next(csv.DictReader(io.StringIO(p.read_text())))
    assert row == {"x": "'=HYPERLINK(\"http://x\")", "y": "-1.5", "z": "'@SUM(A1)"}
