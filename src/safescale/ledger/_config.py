"""The workspace configuration file, ``safescale.toml``.

It is written once by ``safescale init`` and read on every open. It is a versioned pydantic
model because it lives on disk; TOML keeps it editable by hand.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safescale._errors import Problem, UserError
from safescale._input import check_text, read_text_limited
from safescale._io import atomic_write_text

CONFIG_NAME = "safescale.toml"
CONFIG_VERSION = 1
MAX_CONFIG_BYTES = 64 << 10
"""Largest ``safescale.toml`` read (it holds a handful of settings)."""
MAX_AUTHOR_LEN = 256
"""Longest author identity: the ledger's ``author`` column holds 256 characters (PostgreSQL
refuses a longer one at the insert)."""
MAX_SETTING_LEN = 2048
"""Longest setting (a database URL, a path, an author)."""


class WorkspaceConfig(BaseModel):
    """What ``safescale.toml`` holds. Relative paths are relative to the workspace folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = CONFIG_VERSION
    database_url: str = "sqlite:///ledger.sqlite"
    """SQLAlchemy URL; ``sqlite:///NAME`` is relative to the workspace, or a PostgreSQL URL."""
    default_policy: str = "anthropic-rsp-2.2"
    """The policy that ``compute triggers`` and ``assess`` use when none is named."""
    private_key: str = "keys/ed25519.pem"
    public_key: str = "keys/ed25519.pub.pem"
    artifacts: str = "artifacts"
    author: str | None = Field(None, min_length=1)
    """Identity recorded with every entry; else ``$SAFESCALE_AUTHOR``, else ``user@host``."""


def read_config(path: Path) -> WorkspaceConfig:
    """Parse ``safescale.toml``; a bad file is a :class:`UserError` naming the field."""
    try:
        data = tomllib.loads(
            read_text_limited(path, MAX_CONFIG_BYTES, what="workspace configuration")
        )
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise UserError(
            Problem(f"not valid TOML ({exc}); fix the syntax", source=str(path), line=line)
        ) from None
    try:
        config = WorkspaceConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(
            *(
                Problem(
                    f"{err['msg']}; see docs/ledger.md for the keys",
                    source=str(path),
                    field=".".join(str(p) for p in err["loc"]),
                )
                for err in exc.errors()
            )
        ) from None
    for name in ("database_url", "default_policy", "private_key", "public_key", "artifacts"):
        check_text(getattr(config, name), name, max_len=MAX_SETTING_LEN, source=str(path))
    if config.author is not None:
        check_text(config.author, "author", max_len=MAX_AUTHOR_LEN, source=str(path))
    if config.version != CONFIG_VERSION:
        raise UserError(
            Problem(
                f"version {config.version} is not supported (expected {CONFIG_VERSION})",
                source=str(path),
                field="version",
            )
        )
    return config


def write_config(path: Path, config: WorkspaceConfig) -> None:
    """Write ``config`` as TOML, atomically."""
    lines = ["# safescale workspace; see docs/ledger.md"]
    for key, value in config.model_dump().items():
        if value is None:
            continue
        # A JSON string is a valid TOML basic string (same escapes) for the values we write.
        lines.append(f"{key} = {json.dumps(value) if isinstance(value, str) else value}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def default_author(config: WorkspaceConfig | None = None) -> str:
    """The identity to record: configuration, then ``$SAFESCALE_AUTHOR``, then ``user@host``."""
    if config is not None and config.author:
        return config.author
    env = os.environ.get("SAFESCALE_AUTHOR")
    if env:
        # Recorded and signed with every entry, and printed by `ledger log`: held to what the
        # configuration's author is.
        return check_text(env, "$SAFESCALE_AUTHOR", max_len=MAX_AUTHOR_LEN)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
