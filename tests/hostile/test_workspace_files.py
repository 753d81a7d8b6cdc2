"""Hostile and careless workspace files: configuration, keys, exports, output paths."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.conftest import Build, Case, Refuse, not_plain_files, put, ws_args

TOML = "safescale.toml"


def with_config(edit: Callable[[str], str] | bytes | Callable[[Path], None], kind: str = "text",
                *cmd: str) -> Build:  # fmt: skip
    """``compute show`` (or CMD) on the workspace with its configuration edited."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = ws / TOML
        if isinstance(edit, bytes):
            path.write_bytes(edit)
        elif kind == "file":
            path.unlink()
            edit(path)  # type: ignore[call-arg]
        else:
            path.write_text(edit(path.read_text()))  # type: ignore[arg-type]
        return ws_args(ws, *(cmd or ("compute", "show")))

    return build


def setting(key: str, value: str) -> Callable[[str], str]:
    """Replace (or add) ``key = value`` in the TOML text."""

    def edit(text: str) -> str:
        kept = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
        return "\n".join([*kept, f"{key} = {value}"]) + "\n"

    return edit


CONFIG = [
    Case("config-bad-toml", with_config(lambda t: t + "author = \n"), TOML, "fix the syntax"),
    Case(
        "config-latin1",
        with_config('author = "caf\xe9"\n'.encode("latin-1")),
        f"{TOML}:1",
        "save the file as UTF-8",
    ),
    Case(
        "config-unknown-key",
        with_config(setting("colour", '"red"')),
        "colour",
        "see docs/ledger.md for the keys",
    ),
    Case(
        "config-author-escape",
        with_config(setting("author", '"me\\u001b[2J"')),
        f"{TOML}: author",
        "remove it",
    ),
    Case(
        "config-author-newline",
        with_config(setting("author", '"me\\nFAKE entry"')),
        f"{TOML}: author",
        "remove it",
    ),
    Case(
        "config-author-long",
        with_config(setting("author", '"' + "a" * 5000 + '"')),
        f"{TOML}: author",
        "shorten it",
    ),
    Case(
        "config-policy-newline",
        with_config(setting("default_policy", '"lab\\n"')),
        "default_policy",
        "remove it",
    ),
    Case(
        "config-url-mysql",
        with_config(setting("database_url", '"mysql://u@h/db"')),
        "database_url",
        "use sqlite or postgresql",
    ),
    Case(
        "config-url-garbage",
        with_config(setting("database_url", '"::nonsense::"')),
        "database_url",
        "use sqlite:///ledger.sqlite",
    ),
    Case(
        "config-url-100kb",
        with_config(setting("database_url", '"sqlite:///' + "x" * 10_000 + '"')),
        "database_url",
        "shorten it",
    ),
    Case("config-version-2", with_config(setting("version", "2")), "version", "expected 1"),
    Case(
        "config-version-text",
        with_config(setting("version", '"one"')),
        "version",
        "see docs/ledger.md",
    ),
    *not_plain_files(
        "config",
        lambda make: with_config(make, "file"),
        TOML,
        sparse_mib=1,
        kinds=("zero", "fifo", "sparse"),
    ),
]


def with_key(make: Callable[[Path], None] | bytes | None, *cmd: str) -> Build:
    """``compute add`` (which signs) with the private key replaced."""

    def build(inp: Path, ws: Path) -> list[str]:
        key = ws / "keys" / "ed25519.pem"
        key.unlink()
        if isinstance(make, bytes):
            key.write_bytes(make)
        elif make is not None:
            make(key)
        return ws_args(ws, *(cmd or ("compute", "add", "--model", "new", "--flops", "1e20")))

    return build


def rsa_pem(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip


KEY = "ed25519.pem"
KEYS = [
    Case(
        "key-garbage",
        with_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"),
        KEY,
        "not a usable PEM private key",
    ),
    Case("key-empty", with_key(b""), KEY, "not a usable PEM private key"),
    Case("key-missing", with_key(None), KEY, "restore it from backup"),
    Case("key-not-ed25519", with_key(rsa_pem), KEY, "not an ed25519 private key"),
    *not_plain_files("key", with_key, KEY, sparse_mib=1, kinds=("zero", "fifo", "sparse")),
]


def verify(flag: str, content: bytes | Callable[[Path], None]) -> Build:
    """``ledger verify --public-key F`` or ``--export F``."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / ("key.pem" if flag == "--public-key" else "export.json"), content)
        return ws_args(ws, "ledger", "verify", flag, str(path))

    return build


LEDGER = [
    Case(
        "pubkey-garbage",
        verify("--public-key", b"not a key"),
        "key.pem",
        "give the ledger's ed25519 key",
    ),
    *not_plain_files(
        "pubkey",
        lambda make: verify("--public-key", make),
        "key.pem",
        sparse_mib=1,
        kinds=("zero", "fifo", "sparse"),
    ),
    Case(
        "pubkey-missing",
        lambda i, w: ws_args(w, "ledger", "verify", "--public-key", str(i / "none.pem")),
        "none.pem",
        "check the path",
    ),
    Case("export-garbage", verify("--export", b"{not json"), "export.json", "not a ledger export"),
    Case(
        "export-latin1",
        verify("--export", '{"x": "caf\xe9"}'.encode("latin-1")),
        "export.json",
        "not a ledger export",
    ),
    Case(
        "export-deep",
        verify("--export", b"[" * 100_000 + b"]" * 100_000),
        "export.json",
        "not a ledger export",
    ),
    Case(
        "export-wrong-shape",
        verify("--export", json.dumps({"entries": 3}).encode()),
        "export.json",
        "not a ledger export",
    ),
    *not_plain_files(
        "export",
        lambda make: verify("--export", make),
        "export.json",
        sparse_mib=1,
        kinds=("zero",),
    ),
    Case(
        "export-out-folder",
        lambda i, w: ws_args(w, "ledger", "export", "-o", str(i)),
        "--output",
        "give a file path",
    ),
    Case(
        "report-out-folder",
        lambda i, w: ws_args(w, "report", "--out", str(i)),
        "--out",
        "give a file path",
    ),
    Case(
        "init-over-a-file",
        lambda i, w: ["--workspace", str(i / "f"), "init"] if (i / "f").write_text("x") else [],
        "f",
        "is a file, not a folder",
    ),
    Case(
        "sign-role-newline",
        lambda i, w: ws_args(w, "assess", "sign", "latest", "--role", "RSO\nCEO"),
        "--role",
        "use letters, digits",
    ),
    Case(
        "sign-note-escape",
        lambda i, w: ws_args(w, "assess", "sign", "latest", "--role", "RSO", "--note", "ok\x1b[8m"),
        "--note",
        "remove it",
    ),
    Case(
        "sign-identity-long",
        lambda i, w: ws_args(
            w, "assess", "sign", "latest", "--role", "RSO", "--identity", "x" * 10_000
        ),
        "--identity",
        "shorten it",
    ),
    Case(
        "sign-determination-escape",
        lambda i, w: ws_args(w, "assess", "sign", "d\x1b[2J", "--role", "RSO"),
        "DETERMINATION",
        "use letters, digits",
    ),
]


@pytest.mark.parametrize("case", CONFIG + KEYS + LEDGER, ids=lambda c: c.id)
def test_refused(case: Case, refuse: Refuse) -> None:
    refuse(case)


CASES = CONFIG + KEYS + LEDGER
