"""Crash-safe file writes: write to a temporary name in the same folder, fsync, rename."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows: no advisory locks, no sweeping)
    fcntl = None  # type: ignore[assignment]


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, sync: bool = True, mode: int | None = None
) -> Path:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The temporary file lives in the target's folder so that the final ``os.replace`` is a
    same-filesystem rename, which POSIX makes atomic. ``sync=False`` skips the two fsyncs
    (about 15 ms on a loaded disk) for files where, after a power loss, the previous version
    is as good as the new one. The file gets ``mode`` (a private key's 0o600), else what the
    user's umask gives a new file, as ``open`` would (the temporary file starts private).
    """
    target = check_output_path(path, probe=False)  # the temporary file below is the probe
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(target)
    try:
        os.fchmod(fd, new_file_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync:
        _fsync_dir(target.parent)
    return target


def new_file_mode(folder: bool = False) -> int:
    """The mode ``open`` (or ``mkdir``) gives a new file (folder) under the process umask: a
    temporary file from ``tempfile`` is private (0o600, 0o700), and renamed into place it kept
    that, so reports and exports were unreadable to the rest of a team."""
    return (0o777 if folder else 0o666) & ~_umask()


def _umask() -> int:
    """The process umask: from ``/proc`` where Linux gives it; elsewhere set and put back at
    once (the only other way to read it, which for that instant changes it for every thread)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


STALE_SECONDS = 60.0
"""A temporary file beside a target untouched this long, and held by no process, was left by
a write that was killed: the next write of the same target removes it."""


def temp_beside(target: Path) -> tuple[int, str]:
    """A new temporary file beside ``target`` (``.NAME.XXXX.tmp``), open and locked for as long
    as the returned descriptor is: the caller writes it, renames it over ``target`` and closes
    it. A killed process cannot remove its temporary file (a weights file can be gigabytes),
    so the temporary files of earlier writes of ``target`` that no live process holds and that
    are older than :data:`STALE_SECONDS` are removed first; a write in progress holds its lock
    and is left alone."""
    pattern = f".{glob.escape(target.name)}.*.tmp"
    for old in target.parent.glob(pattern):
        _remove_if_abandoned(old)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a file system without locks: no sweeping either
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd, tmp


def _remove_if_abandoned(path: Path) -> None:
    if fcntl is None:
        return
    try:
        if time.time() - path.lstat().st_mtime < STALE_SECONDS or path.is_symlink():
            return
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a write in progress
        path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)


NAME_MAX = 255
"""Longest file name (bytes of UTF-8) most file systems take."""


def check_output_path(
    path: str | os.PathLike[str],
    field: str | None = None,
    *,
    probe: bool = True,
    folder: bool = False,
) -> Path:
    """``path`` as a file to write (``folder``: a folder to write files into), or a one-line
    :class:`UserError` (naming ``field``, the flag it came from) before anything is computed or
    written: an empty path, a name too long, an existing folder, device, pipe or socket (a
    write would replace it with a regular file; for ``folder``, anything but a folder), a path
    through a file, or (``probe``) a place that cannot take a new file, found by creating and
    removing a temporary file in the nearest folder that exists. What the operating system
    refuses later (a full disk) still raises ``OSError``."""
    from safescale._errors import Problem, UserError

    text = os.fspath(path)
    target = Path(text)
    kind = "folder" if folder else "file"

    def fail(message: str) -> UserError:
        return UserError(Problem(message, field=field))

    if not text.strip():
        raise fail(f"the path is empty; give a {kind} to write")
    if len(target.name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise fail(f"the {kind} name is over {NAME_MAX} bytes; give a shorter one")
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise fail(f"{text} cannot be written ({exc.strerror}); give another path") from None
    import stat

    if folder and mode is not None and not stat.S_ISDIR(mode):
        raise fail(f"{text} is a file, not a folder; give a folder path")
    if not folder and mode is not None and stat.S_ISDIR(mode):
        raise fail(f"{text} is a folder; give a file path inside it")
    if not folder and mode is not None and not stat.S_ISREG(mode):
        raise fail(f"{text} is not a regular file (a device, pipe or socket); give a file path")
    if not probe:
        return target
    # A place that cannot take a new file (/proc, a read-only mount, no permission).
    place = target.absolute() if folder else target.absolute().parent
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        with tempfile.TemporaryFile(dir=place, prefix=".safescale-probe."):
            pass
    except OSError as exc:
        raise fail(f"{text} cannot be written ({exc.strerror or exc}); give another path") from None
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks (weights can be gigabytes)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def weights_sha256(folder: str | os.PathLike[str]) -> str:
    """The identity of a checkpoint folder's weights, as recorded in the ledger.

    A single weights file (``model.safetensors``) is hashed as is, so the value equals
    ``sha256sum model.safetensors``; a sharded checkpoint hashes the canonical JSON of
    ``{relative file: sha256}`` over its weight files. Configuration, tokenizer and training
    records are left out: they may be rewritten without changing the model.
    """
    import hashlib
    import json

    root = Path(folder)
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES and p.name != "checkpoint.pt"
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )  # fmt: skip
    if not files:
        raise FileNotFoundError(f"no weight files in {root}")
    if len(files) == 1:
        return file_sha256(files[0])
    listing = {str(p.relative_to(root)): file_sha256(p) for p in files}
    text = json.dumps(listing, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
