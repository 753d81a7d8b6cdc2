"""The hostile-input harness: run one broken input through the command, then check the refusal.

Every case asserts the same four things: exit status 2, exactly one line on stderr, that line
naming the place (file:line, field or flag) and the fix, and nothing written (every file under
the test folder, the workspace's included, byte for byte as before; the ledger's entry count
and head unchanged).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from safescale.cli import main
from safescale.ledger import Workspace
from safescale.policy import ModelRecord

Build = Callable[[Path, Path], list[str]]
"""(inputs folder, workspace folder) -> the full argument list; writes the hostile input."""


@dataclass(frozen=True)
class Case:
    """One broken input and what its refusal must say."""

    id: str
    build: Build
    place: str
    """A substring naming where the problem is: ``runs.csv:3``, ``--flops``, a field path."""
    fix: str
    """A substring of the fix the line offers."""


Content = str | bytes | Callable[[Path], None]
"""A hostile input: text, bytes, or a maker that puts something else at the path (a link to
/dev/zero, a FIFO, a folder, a sparse file)."""


def put(path: Path, content: Content) -> Path:
    """Write ``content`` at ``path``; return ``path``."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        content(path)
    return path


Refuse = Callable[[Case], str]
"""The ``refuse`` fixture: run a case, assert its refusal, return the error line."""


def ws_args(ws: Path, *args: str) -> list[str]:
    """``--workspace WS ARGS...``."""
    return ["--workspace", str(ws), *args]


def special(kind: str) -> Callable[[Path], None]:
    """Write a file that is not a plain file of the expected size at ``path``."""

    def make(path: Path) -> None:
        if kind == "zero":
            path.symlink_to("/dev/zero")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        elif kind.startswith("sparse"):
            with path.open("wb") as fh:  # st_size says it all; nothing need be read
                fh.truncate(int(kind.removeprefix("sparse")) << 20)

    return make


SPECIAL_FIX = {
    "zero": "not a regular file",
    "fifo": "not a regular file",
    "folder": "is a folder",
    "sparse": "is this the right file",
}


def not_plain_files(
    prefix: str,
    wrap: Callable[[Callable[[Path], None]], Build],
    place: str,
    *,
    sparse_mib: int,
    kinds: tuple[str, ...] = ("zero", "fifo", "folder", "sparse"),
) -> list[Case]:
    """The same input given as /dev/zero, a FIFO, a folder and a sparse file past its limit."""
    return [
        Case(
            f"{prefix}-{kind}",
            wrap(special(f"sparse{sparse_mib}" if kind == "sparse" else kind)),
            place,
            SPECIAL_FIX[kind],
        )
        for kind in kinds
    ]


@pytest.fixture(scope="session")
def template_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding one model, ``base``, copied fresh for every case."""
    root = tmp_path_factory.mktemp("template") / ".safescale"
    ws = Workspace.init(root, author="tester")
    ws.append_model(ModelRecord(id="base", flops=1e20, params=1e8, tokens=1e11))
    ws.close()
    return root


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a digest of its bytes (SQLite's WAL side files aside)."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.name.endswith(("-wal", "-shm", "-journal")) or "__pycache__" in rel:
            continue
        if p.is_symlink():
            out[rel] = "link:" + str(p.readlink())
        elif p.is_dir():
            out[rel] = "dir"
        elif not p.is_file():  # a FIFO: reading it would block
            out[rel] = "special"
        elif p.stat().st_size > 8 << 20:  # large (often sparse) inputs: size and time
            out[rel] = f"big:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _ledger_state(ws: Path) -> tuple[int, str | None] | None:
    if not (ws / "safescale.toml").exists():
        return None
    try:
        with Workspace.open(ws) as w:
            return w.count(), w.head()
    except Exception:  # a case that broke the configuration on purpose
        return None


@pytest.fixture
def refuse(
    tmp_path: Path,
    template_workspace: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Refuse]:
    """Run a :class:`Case`; assert the refusal; return its one line."""
    monkeypatch.delenv("SAFESCALE_HOME", raising=False)
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal must not wrap the line

    def run(case: Case) -> str:
        ws = tmp_path / "ws" / ".safescale"
        shutil.copytree(template_workspace, ws)
        inputs = tmp_path / "in"
        inputs.mkdir()
        monkeypatch.chdir(inputs)  # anything written to the current folder shows up
        argv = case.build(inputs, ws)
        before, ledger_before = _snapshot(tmp_path), _ledger_state(ws)
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        lines = err.splitlines()
        assert code == 2, f"exit {code}; stderr: {err[:500]}"
        assert len(lines) == 1, f"{len(lines)} lines on stderr: {err[:1000]}"
        line = lines[0]
        assert line.startswith("error: "), line
        assert len(line) <= 1000, "an error line is bounded"
        assert "\x1b" not in line and "\r" not in line, "control characters are escaped"
        assert case.place in line, f"the line does not name the place {case.place!r}: {line}"
        assert case.fix in line, f"the line does not give the fix {case.fix!r}: {line}"
        assert "Traceback" not in out + err
        assert _snapshot(tmp_path) == before, "a refused input must write nothing"
        assert _ledger_state(ws) == ledger_before, "a refused input must not touch the ledger"
        return line

    yield run
