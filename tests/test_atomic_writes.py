"""Crash-safe writes: a write killed part way leaves the old file, and its temporary file is
removed by the next write of the same target once no process holds it (real processes, killed
for real)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from safescale._io import STALE_SECONDS, atomic_write_bytes

HOLD = """
import os, sys, time
from pathlib import Path
from safescale._io import temp_beside

fd, tmp = temp_beside(Path(sys.argv[1]))
os.write(fd, b"half of a new file")
print(tmp, flush=True)
time.sleep(600)
"""


def _writer(target: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process part way through writing ``target``: its temporary file, and the process."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def _age(path: Path, seconds: float) -> None:
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime - seconds))


def test_a_killed_writes_temporary_file_goes_with_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    atomic_write_bytes(target, b"old")
    killed_old, killed_new, live = _writer(target), _writer(target), _writer(target)
    for proc, _ in (killed_old, killed_new):
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        assert target.read_bytes() == b"old"  # the killed writes left the old file
        _age(killed_old[1], STALE_SECONDS + 60)
        _age(live[1], STALE_SECONDS + 60)  # a slow write, still going
        # another target's temporary file, and a name that only looks like one, stay
        other = tmp_path / ".other.bin.abc.tmp"
        other.write_bytes(b"x")
        _age(other, STALE_SECONDS + 60)
        atomic_write_bytes(target, b"new")
        assert target.read_bytes() == b"new"
        assert not killed_old[1].exists()  # killed and old: removed
        assert killed_new[1].exists()  # killed a moment ago: not yet (it may be a new write)
        assert live[1].exists()  # held by a live process: never
        assert other.exists()
    finally:
        live[0].kill()
        live[0].wait()
    _age(killed_new[1], STALE_SECONDS + 60)
    _age(live[1], STALE_SECONDS + 60)
    atomic_write_bytes(target, b"newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.bin.abc.tmp", "weights.bin"]


def test_a_written_file_has_the_mode_the_umask_gives(tmp_path: Path) -> None:
    """The temporary file is private (0o600), and renamed into place it kept that: reports,
    exports and behaviour files were unreadable to the rest of a team. A private key stays
    private from its first byte."""
    from safescale._io import _umask
    from safescale.ledger import KeyPair

    old = os.umask(0o022)
    try:
        assert atomic_write_bytes(tmp_path / "report.md", b"x").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert atomic_write_bytes(tmp_path / "r2.md", b"x").stat().st_mode & 0o777 == 0o600
        assert _umask() == 0o077 and os.umask(0o077) == 0o077  # read, not changed
        os.umask(0o022)
        KeyPair.generate().save(tmp_path / "k.pem", tmp_path / "k.pem.pub")
        assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "k.pem.pub").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
