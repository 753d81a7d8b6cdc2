"""One identity per model: the id that names it in evidence, chosen once.

A model is reached in many ways: a local folder (``runs/a/final``), an Inspect model string
naming that folder (``safescale//abs/runs/a/final``, ``hf/runs/a/final``), or an endpoint that
serves it (``openai-api-completions/local/m``). Evidence about the same weights must land on
one record, and evidence about different weights must never share one, so the id is resolved
here, in this order:

1. ``--model-id`` when given (checked against the ledger: it may not name other weights, and
   weights already on record under another id may not be renamed);
2. for a local folder, the ledger's model record with the same weights sha256;
3. for an endpoint, the ledger's model record whose ``weights_ref`` is that model string;
4. otherwise a derived id: the folder's name and the first 12 hex digits of its weights
   sha256 (``final-3fa2c81b9d07``), so ``a/final`` and ``b/final`` never collide; for an
   endpoint with nothing on record, the model string itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safescale._errors import Problem, UserError
from safescale.policy import ModelRecord

LOCAL_PROVIDERS = ("safescale", "hf")
"""Inspect providers whose model name is a local folder."""
ID_HASH_CHARS = 12
"""Hex digits of the weights sha256 in a derived id (48 bits: no accidental collision)."""


@dataclass(frozen=True)
class ModelIdentity:
    """Who a MODEL argument stands for."""

    id: str
    """The model id its evidence carries."""
    source: Literal["given", "ledger", "derived", "model-string"]
    """How the id was found (see the module docstring)."""
    path: Path | None = None
    """The local weights folder, when there is one."""
    weights_sha256: str | None = None
    """The weights' identity (:func:`safescale.evals.model_dir_sha256`), for a local folder."""
    endpoint: str | None = None
    """The Inspect model string of a model reached through a provider other than a folder."""


def looks_like_path(model: str) -> bool:
    """A MODEL argument naming a folder (absolute, relative with ./, or an existing path)."""
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()


def local_folder(model: str) -> Path | None:
    """The local weights folder ``model`` names: a path, or ``safescale/``/``hf/`` + a path."""
    if looks_like_path(model):
        return Path(model).expanduser().resolve()
    provider, sep, rest = model.partition("/")
    if sep and provider in LOCAL_PROVIDERS and rest:
        candidate = Path(rest).expanduser()
        if candidate.is_dir():
            return candidate.resolve()
    return None


def derived_id(path: Path, weights_sha256: str) -> str:
    """A readable id that is unique to the weights: ``<folder name>-<sha256 prefix>``."""
    return f"{path.name}-{weights_sha256[:ID_HASH_CHARS]}"


def resolve_model_identity(
    model: str,
    *,
    model_id: str | None = None,
    records: Sequence[ModelRecord] = (),
) -> ModelIdentity:
    """The identity of MODEL (a folder or an Inspect model string) among ``records``.

    Raises:
        UserError: ``model_id`` names a record with other weights, or the weights are on
            record under another id.
    """
    from safescale.evals._evidence import model_dir_sha256

    folder = local_folder(model)
    if folder is None:
        by_ref = next((r for r in records if r.weights_ref == model), None)
        if model_id is not None:
            return ModelIdentity(model_id, "given", endpoint=model)
        if by_ref is not None:
            return ModelIdentity(by_ref.id, "ledger", endpoint=model)
        return ModelIdentity(model, "model-string", endpoint=model)
    if not folder.is_dir():
        # Left to the model loader, which says what is missing.
        return ModelIdentity(model_id or folder.name, "given" if model_id else "derived", folder)
    sha = model_dir_sha256(folder)
    same = [r for r in records if r.weights_sha256 == sha]
    if model_id is not None:
        named = next((r for r in records if r.id == model_id), None)
        if named is not None and named.weights_sha256 not in (None, sha):
            raise UserError(
                Problem(
                    f"model {model_id!r} is on record with other weights "
                    f"({named.weights_sha256[:ID_HASH_CHARS]}..., these are "
                    f"{sha[:ID_HASH_CHARS]}...); choose another id",
                    field="--model-id",
                )
            )
        if same and all(r.id != model_id for r in same):
            raise UserError(
                Problem(
                    f"these weights are on record as {same[0].id!r}; "
                    f"use --model-id {same[0].id} or leave it out",
                    field="--model-id",
                )
            )
        return ModelIdentity(model_id, "given", folder, sha)
    if same:
        return ModelIdentity(same[0].id, "ledger", folder, sha)
    return ModelIdentity(derived_id(folder, sha), "derived", folder, sha)


def ledger_models(ws: Any | None) -> list[ModelRecord]:
    """The workspace's model records (none without a workspace)."""
    return [] if ws is None else list(ws.models())
