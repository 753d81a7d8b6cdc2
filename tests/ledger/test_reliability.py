"""Crashes and concurrent writers, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safescale.ledger import Workspace

SRC = str(Path(__file__).resolve().parents[2] / "src")

# Appends batches of BATCH evidence records (plus an artifact each) until killed.
WRITER = """
import sys, itertools
from safescale.ledger import Workspace
from safescale.policy import Evidence
ws = Workspace.open(sys.argv[1])
tag, batch = sys.argv[2], int(sys.argv[3])
for i in itertools.count():
    sha = ws.add_artifact(f"{tag}-{i} ".encode() * 2000)
    ws.append_many([
        Evidence(id=f"{tag}-{i}-{j}", model=tag, kind="evaluation", subject="s", value=j,
                 artifacts={"log": sha})
        for j in range(batch)
    ])
    if i == 0:
        print("started", flush=True)
"""

# Appends single records for a fixed time, then prints how many it wrote.
APPENDER = """
import sys, time
from safescale.ledger import Workspace
from safescale.policy import Evidence
ws = Workspace.open(sys.argv[1])
tag, seconds = sys.argv[2], float(sys.argv[3])
end, n = time.monotonic() + seconds, 0
while time.monotonic() < end:
    ws.append(Evidence(id=f"{tag}-{n}", model=tag, kind="evaluation", subject="s", value=n))
    n += 1
print(n, flush=True)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_append_leaves_a_valid_ledger(ws: Workspace) -> None:
    batch = 40
    for round_ in range(3):
        proc = _python(WRITER, str(ws.root), f"w{round_}", str(batch))
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        time.sleep(0.3 + 0.2 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        report = ws.verify()
        assert report.ok, report.problems[:5]
        # Whole transactions only: every batch is all there or not there at all.
        assert report.entries % batch == 0 and report.entries >= batch * (round_ + 1)
    # The workspace keeps working after the crashes.
    ws.append_many([])
    assert ws.verify().ok


@pytest.mark.slow
def test_eight_concurrent_appenders_lose_nothing(ws: Workspace) -> None:
    seconds = 10.0
    procs = [_python(APPENDER, str(ws.root), f"p{i}", str(seconds)) for i in range(8)]
    counts = {}
    for i, proc in enumerate(procs):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        counts[f"p{i}"] = int(out.strip())
    report = ws.verify()
    assert report.ok, report.problems[:5]
    assert report.entries == sum(counts.values()) > 8
    for tag, n in counts.items():
        assert sorted(e.id for e in ws.evidence(tag)) == sorted(f"{tag}-{k}" for k in range(n))


# `safescale compute add` of one model id, started by every process at the same moment.
ADD_SAME = """
import sys, time
from safescale.cli import main
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
sys.exit(main(["--workspace", sys.argv[1], "compute", "add", "--model", "same",
               "--flops", "1e20"]))
"""


@pytest.mark.slow
def test_concurrent_compute_add_of_one_new_model_records_it_once(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "w").close()
    start = time.time() + 4.0  # after every interpreter has imported safescale
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen([sys.executable, "-c", ADD_SAME, str(tmp_path / "w"), str(start)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]  # fmt: skip
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2, 2, 2, 2, 2], results
    assert all("'same' is already recorded" in err for code, err in results if code == 2)
    with Workspace.open(tmp_path / "w") as ws:
        assert [m.id for m in ws.models()] == ["same"]
        assert ws.count() == 1 and ws.verify().ok


OPEN = """
import sys, time
from safescale.ledger import Workspace
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
with Workspace.open(sys.argv[1]) as ws:
    print(ws.verify().ok, flush=True)
"""


@pytest.mark.slow
def test_processes_opening_an_old_workspace_at_once_upgrade_it_once(tmp_path: Path) -> None:
    from .test_migration import release_copy

    root = release_copy(tmp_path / "ws")
    start = time.time() + 4.0
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN, str(root), str(start)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, results
    assert [out.strip() for out, _ in results] == ["True"] * 4
