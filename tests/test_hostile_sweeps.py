"""Sweeps that lose nothing: finished points are kept on Ctrl-C (run.json says partial) and the
workers stop; an earlier run is refused unless --overwrite (which removes its plots); a
second sweep into the same directory is refused; sweep size and -j are bounded before any
point is built."""
import csv
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hostile import REPO, assert_one_line_error, cli
from wanir.backends import sweep as S
from wanir.errors import ConfigError

SMALL = ("model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832")


@pytest.mark.integration
@pytest.mark.parametrize("sweep,needle", [
    (("workload.steps=range(0,1000000000)",), "has 1000000000 values"),
    (("workload.steps=range(1,1000)", "workload.frames=range(1,1000)"), "more than 100000 points"),
    (("workload.steps=range(0,inf)",), "finite"),
    (("workload.steps=range(1,10,0)",), "must not be 0"),
    (("workload.steps=interval(0,1)",), "interval() and glob() are not"),
])
def test_sweep_size_bounded_before_building_points(tmp_path, sweep, needle):
    assert_one_line_error(cli("sweep", *sweep, "-o", tmp_path / "out", mem=2**31, timeout=60), needle)
    assert not (tmp_path / "out").exists()


def test_jobs_bounded_in_the_api():
    with pytest.raises(ConfigError, match="jobs"):
        S.run_sweep(["workload.steps=1,2"], jobs=3000, progress=False)


@pytest.mark.integration
def test_earlier_run_refused_then_overwritten(tmp_path):
    out = tmp_path / "out"
    r = cli("sweep", *SMALL, "workload.steps=1,2", "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    assert (out / "stage_breakdown.png").exists()
    meta = json.loads((out / "run.json").read_text())
    assert meta["partial"] is False and meta["completed"] == meta["points"] == 2
    assert_one_line_error(cli("sweep", *SMALL, "workload.steps=3", "-o", out, "-q"), "earlier sweep", "--overwrite")
    r = cli("sweep", *SMALL, "workload.steps=3", "-o", out, "-q", "--overwrite", "--plot-format", "svg")
    assert r.returncode == 0, r.stderr
    assert not any(out.glob("*.png"))                       # the earlier run's plots are gone
    with open(out / "results.csv") as f:
        assert [row["workload.steps"] for row in csv.DictReader(f)] == ["3"]


@pytest.mark.integration
def test_concurrent_sweep_into_the_same_dir_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / S.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)            # as a running sweep holds it
    try:
        assert_one_line_error(cli("sweep", *SMALL, "workload.steps=1,2", "-o", out, "-q"), "another sweep")
    finally:
        os.close(fd)
    r = cli("sweep", *SMALL, "workload.steps=1,2", "-o", out, "-q")
    assert r.returncode == 0, r.stderr          # the lock of a finished (or dead) sweep is no obstacle
    assert not (out / S.LOCK_FILE).exists()


def test_rows_are_appended_as_points_finish(tmp_path):
    """The file holds each finished point before the next one is estimated."""
    seen = []
    out = tmp_path / "out"

    def estimator(sc):
        from wanir.estimate import evaluate
        with open(out / "results.csv") if (out / "results.csv").exists() else open(os.devnull) as f:
            seen.append(max(0, len(f.read().splitlines()) - 1))
        return evaluate(sc)

    run = S._RunDir(out, S.parse_sweep([*SMALL, "workload.steps=1,2,3"]), [], False)
    try:
        S.run_sweep(run.sweep, progress=False, estimator=estimator, on_row=run.add)
    finally:
        run.close()
    assert seen == [0, 1, 2]


def _processes_in_group(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pgid=,stat=,pid="], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if ln.split()[0] == str(pgid) and not ln.split()[1].startswith("Z")]


@pytest.mark.integration
def test_ctrl_c_keeps_finished_points_and_stops_the_workers(tmp_path):
    out = tmp_path / "out"
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from wanir.cli import main; sys.exit(main(sys.argv[1:]))")
    p = subprocess.Popen([sys.executable, "-c", code, "sweep", *SMALL, "workload.steps=range(1,400)",
                          "workload.frames=5,9,13", "-o", str(out), "-q", "-j", "2"],
                         cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline:             # wait for some finished points
        try:
            if len((out / "results.csv").read_text().splitlines()) > 3:
                break
        except OSError:
            pass
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)           # Ctrl-C reaches the whole process group
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130, err
    assert "Traceback" not in err and err.count("\n") == 1 and "sweep interrupted" in err, err
    meta = json.loads((out / "run.json").read_text())
    assert meta["partial"] is True and meta["status"] == "interrupted"
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == meta["completed"] >= 3 and meta["points"] == 399 * 3
    assert all(r["total.time_s"] for r in rows)
    time.sleep(0.5)
    assert _processes_in_group(p.pid) == []   # no worker left running
    assert not (out / S.LOCK_FILE).exists()


@pytest.mark.integration
def test_failed_point_keeps_earlier_rows(tmp_path):
    out = tmp_path / "out"
    r = cli("sweep", *SMALL, "workload.frames=5,9,10", "-o", out, "-q")
    assert_one_line_error(r, "workload.frames=10")
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "failed" and meta["partial"] is True and meta["completed"] == 2
    assert len((out / "results.csv").read_text().splitlines()) == 3
