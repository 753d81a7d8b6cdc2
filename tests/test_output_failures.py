"""Output that cannot be written: JSON on a full stdout and a ``--plot`` into a folder that takes
no files are one line and exit status 2, in every command that prints or plots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CODE = "import sys; from safescale.cli import main; sys.exit(main(sys.argv[1:]))"


def _run(args: list[str], stdout: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CODE, *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
        timeout=120,
    )  # fmt: skip


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_json_to_a_full_disk_is_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("flops,acc\n" + "".join(f"1e{18 + i},{0.3 + i / 20}\n" for i in range(6)))
    commands = [
        ["policy", "show", "lab", "--json"],
        ["scaling", "forecast", str(csv), "--compute", "flops", "--score", "acc", "--at", "1e24",
         "--json"],
    ]  # fmt: skip
    with open("/dev/full", "w") as full:
        for args in commands:
            done = _run(args, full)
            assert done.returncode == 2, (args, done.stderr)
            assert done.stderr.count("\n") == 1 and "cannot write the output" in done.stderr


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (takes no new files)")
def test_a_plot_into_a_folder_that_takes_no_files_is_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("flops,acc\n" + "".join(f"1e{18 + i},{0.3 + i / 20}\n" for i in range(6)))
    target = Path("/proc/f.png")  # even root cannot create a file there
    done = _run(["scaling", "forecast", str(csv), "--compute", "flops", "--score", "acc", "--at",
                 "1e24", "--plot", str(target)], subprocess.PIPE)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--plot" in done.stderr and "cannot be written" in done.stderr
    assert done.stdout == ""  # refused before the forecast was made


def test_a_failure_of_the_machine_is_one_line_and_status_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A full disk or a lost connection mid-command is no usage error (status 1, not 2), but
    # still one line, with --debug offered for the traceback (and giving it).
    from safescale.cli import main
    from safescale.ledger import Workspace

    root = tmp_path / ".safescale"
    Workspace.init(root, author="t").close()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(root / "ledger.sqlite"))

    monkeypatch.setattr(Workspace, "verify", full)
    code = main(["--workspace", str(root), "ledger", "verify"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "OSError: No space left on device" in err and "ledger.sqlite" in err
    assert "--debug" in err
    with pytest.raises(OSError, match="No space left"):
        main(["--workspace", str(root), "--debug", "ledger", "verify"])
