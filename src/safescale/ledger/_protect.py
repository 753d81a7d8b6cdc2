"""The workspace's own files, which no output flag may overwrite.

``ledger checkpoint --out``, ``ledger export -o`` and ``report --out`` write wherever they are
told; pointed at the database, a key, the checkpoint or an artifact they would replace the very
records they describe. :func:`refuse_workspace_file` stops that before anything is computed.
"""

from __future__ import annotations

import os
from pathlib import Path

from safescale._errors import Problem, UserError
from safescale._input import quote
from safescale.ledger._checkpoint import CHECKPOINT_NAME
from safescale.ledger._config import CONFIG_NAME, WorkspaceConfig, read_config
from safescale.ledger._store import resolve_url, sqlite_path

_SQLITE_SIDES = ("", "-wal", "-shm", "-journal")


def protected_paths(root: Path) -> tuple[list[Path], list[Path]]:
    """The files and the folders of the workspace at ``root`` that only safescale writes."""
    try:
        config = read_config(root / CONFIG_NAME)
    except (UserError, OSError):
        config = WorkspaceConfig()  # a damaged configuration: protect the default layout
    files = [root / CONFIG_NAME, root / config.private_key, root / config.public_key,
             root / CHECKPOINT_NAME, (root / CHECKPOINT_NAME).with_suffix(".lock")]  # fmt: skip
    try:
        database = sqlite_path(resolve_url(config.database_url, root))
    except Exception:  # an unusable URL names no file to protect
        database = None
    if database is not None:
        files += [database.with_name(database.name + side) for side in _SQLITE_SIDES]
    return files, [root / config.artifacts]


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_workspace_file(target: Path, workspace: Path | None, field: str) -> None:
    """A :class:`UserError` if ``target`` is (or would replace) one of the own files of the
    workspace ``workspace`` names (as ``--workspace`` does; None: the default place): its
    database, keys, configuration, checkpoint or an artifact."""
    from safescale.ledger._workspace import _locate

    root = _locate(workspace)
    if not (root / CONFIG_NAME).exists():
        return
    files, folders = protected_paths(root)
    resolved = target.resolve()
    hit = any(resolved == f.resolve() or _same(target, f) for f in files) or any(
        resolved.is_relative_to(d.resolve()) for d in folders
    )
    if hit:
        raise UserError(
            Problem(f"{quote(str(target))} is one of the workspace's own files (its database, "
                    "keys, checkpoint or artifacts); write somewhere outside them", field=field)
        )  # fmt: skip


def refuse_workspace_folder(target: Path, workspace: Path | None, field: str) -> None:
    """A :class:`UserError` if the folder ``target`` is the workspace's own folder or lies
    inside it (an output folder there would mix other files with its records), or is (or is
    inside) one of its own files or its artifacts, as :func:`refuse_workspace_file` says."""
    from safescale.ledger._workspace import _locate

    root = _locate(workspace)
    if (root / CONFIG_NAME).exists() and target.resolve().is_relative_to(root.resolve()):
        raise UserError(
            Problem(f"{quote(str(target))} is inside the workspace folder, which holds only "
                    "safescale's own files; write somewhere outside it", field=field)
        )  # fmt: skip
    refuse_workspace_file(target, workspace, field)
