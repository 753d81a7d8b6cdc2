"""The workspace's ed25519 key pair: generate, store, load, sign, verify.

Ed25519 (Bernstein et al. 2012, RFC 8032) gives 64-byte deterministic signatures, so signing
needs no randomness at append time and the same entry always signs to the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safescale._errors import Problem, UserError
from safescale._input import read_limited
from safescale._io import atomic_write_bytes

# Domain separation: a signature made for a ledger entry can never be replayed as a
# signature over some other safescale message (or the other way round).
SIGNING_CONTEXT = b"safescale-ledger-entry-v1:"

MAX_KEY_BYTES = 64 << 10
"""Largest key file read (an ed25519 PEM is about 120 bytes)."""


def key_id(public: Ed25519PublicKey) -> str:
    """A short fingerprint: the first 16 hex digits of sha256 of the raw 32-byte public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo) text."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_pem(pem: str | bytes, source: str = "public key") -> Ed25519PublicKey:
    """Parse a PEM public key; anything but ed25519 is a :class:`UserError`."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise UserError(
            Problem(f"not a PEM public key ({exc}); give the ledger's ed25519 key", source=source)
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(Problem("not an ed25519 public key", source=source))
    return key


@dataclass(frozen=True)
class KeyPair:
    """The workspace's signing key and its public half."""

    private: Ed25519PrivateKey
    """Signs new entries."""
    public: Ed25519PublicKey
    """Verifies them; exported for outside reviewers."""

    @property
    def id(self) -> str:
        """Fingerprint of the public key (see :func:`key_id`)."""
        return key_id(self.public)

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the operating system's randomness."""
        private = Ed25519PrivateKey.generate()
        return cls(private=private, public=private.public_key())

    def save(self, private_path: Path, public_path: Path) -> None:
        """Write both halves as PEM; the private key readable by its owner only."""
        raw = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write_bytes(private_path, raw, mode=0o600)  # private from its first byte
        atomic_write_bytes(public_path, public_pem(self.public).encode())

    @classmethod
    def load(cls, private_path: Path) -> KeyPair:
        """Read the private key (PEM, PKCS8, unencrypted) written by :meth:`save`."""
        if not private_path.exists():
            raise UserError(
                Problem("signing key is missing; restore it from backup", source=str(private_path))
            )
        pem = read_limited(private_path, MAX_KEY_BYTES, what="key file")
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise UserError(
                Problem(f"not a usable PEM private key ({exc})", source=str(private_path))
            ) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise UserError(Problem("not an ed25519 private key", source=str(private_path)))
        return cls(private=private, public=private.public_key())

    def sign(self, entry_hash: str) -> str:
        """Hex signature over an entry hash (hex), with the ledger's signing context."""
        return self.private.sign(SIGNING_CONTEXT + bytes.fromhex(entry_hash)).hex()


def verify_signature(public: Ed25519PublicKey, signature: object, entry_hash: str) -> bool:
    """Whether ``signature`` (hex) signs ``entry_hash`` (hex); malformed input is just False."""
    try:
        public.verify(
            bytes.fromhex(signature),  # type: ignore[arg-type]
            SIGNING_CONTEXT + bytes.fromhex(entry_hash),
        )
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
