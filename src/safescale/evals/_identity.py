"""One identity per model: the id that names it in evidence, chosen once.

A model is reached in many ways: a local folder (``runs/a/final``), an Inspect model string
naming that folder (``safescale//abs/runs/a/final``, ``hf/runs/a/final``), or an endpoint that
serves it (``openai-api-completions/local/m``). Evidence about the same weights must land on
one record, and evidence about different weights must never share one, so the id is resolved
here, in this order:

1. ``--model-id`` when given (checked against the ledger: it may not name other weights, and
   weights already on record under another id may not be renamed);
2. for a local folder, the ledger's model record with the same weights sha256; for an
   endpoint whose server reports the sha256 of the weights it serves (``safescale
   serve-model`` does, in its ``/v1/models`` entries: :func:`served_weights`), the same;
3. for an endpoint, the ledger's model record whose ``weights_ref`` is that model string
   (when the server reports weights, only a record that holds no weights hash of its own);
4. otherwise a derived id: the folder's name and the first 12 hex digits of its weights
   sha256 (``final-3fa2c81b9d07``), so ``a/final`` and ``b/final`` never collide; a server
   that reports its weights gets the id their folder would get; for an endpoint with nothing
   on record and no reported weights, the model string itself.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safescale._errors import Problem, UserError
from safescale._input import is_sha256, quote
from safescale.evals._lm import MAX_CONTEXT
from safescale.policy import ModelRecord

LOCAL_PROVIDERS = ("safescale", "hf")
"""Inspect providers whose model name is a local folder."""
ID_HASH_CHARS = 12
"""Hex digits of the weights sha256 in a derived id (48 bits: no accidental collision)."""
SERVICE_PROVIDERS = ("openai-api", "openai-api-completions")
"""Inspect providers whose model string is ``PROVIDER/SERVICE/MODEL``, the server found at
``$SERVICE_BASE_URL`` (as Inspect finds it)."""
ENV_PROVIDERS = {"vllm": "VLLM", "openai": "OPENAI"}
"""Inspect providers whose model string is ``PROVIDER/MODEL``, with the environment prefix of
their server's address."""
SERVED_TIMEOUT = 5.0
"""Seconds to wait for a server's ``/models`` answer."""

log = logging.getLogger(__name__)


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
    """The weights' identity (:func:`safescale.evals.model_dir_sha256`): of a local folder,
    or as the endpoint's server reports it."""
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


@dataclass(frozen=True)
class ServedWeights:
    """What a server reports about the weights behind one of its model names."""

    base_url: str
    name: str
    """The model name clients send."""
    weights_sha256: str
    folder_name: str | None
    """The name of the weights' folder on the server (``root``), when reported."""


def endpoint_address(
    model: str, model_args: Mapping[str, Any] | None = None
) -> tuple[str, str, str | None] | None:
    """(base URL, served model name, API key) of an Inspect model string, found as Inspect
    finds them: ``base_url`` / ``api_key`` in ``model_args``, else the environment
    (``$SERVICE_BASE_URL`` for ``openai-api/SERVICE/NAME``, ``$VLLM_BASE_URL`` ...,
    then ``$INSPECT_EVAL_MODEL_BASE_URL``); ``None`` when no address is known."""
    args = model_args or {}
    provider, _, rest = model.partition("/")
    if provider in SERVICE_PROVIDERS:
        service, _, name = rest.partition("/")
        prefix = service.upper().replace("-", "_")
    elif provider in ENV_PROVIDERS:
        name, prefix = rest, ENV_PROVIDERS[provider]
    else:
        name, prefix = rest, None
    if not name:
        return None
    url = args.get("base_url") or (
        (os.environ.get(f"{prefix}_BASE_URL") or os.environ.get("INSPECT_EVAL_MODEL_BASE_URL"))
        if prefix
        else None
    )
    if not url:
        return None
    key = args.get("api_key") or (os.environ.get(f"{prefix}_API_KEY") if prefix else None)
    return str(url), name, str(key) if key else None


def _model_list(url: str, key: str | None) -> Any:
    """``GET URL/models``: the ``data`` of its answer (HTTP errors raised as they come)."""
    request = urllib.request.Request(url.rstrip("/") + "/models")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=SERVED_TIMEOUT) as answer:
        return json.loads(answer.read()).get("data") or []


def _lists_models(url: str, key: str | None) -> bool:
    """Whether ``URL/v1/models`` answers with a model list."""
    try:
        return isinstance(_model_list(url.rstrip("/") + "/v1", key), list)
    except (OSError, ValueError, AttributeError):
        return False


def served_card(model: str, model_args: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The entry for ``model``'s name in its server's ``GET /models`` answer.

    Addresses that do not answer, answers that are not a model list, and model names the
    server does not list give ``None``.

    Raises:
        UserError: the server refuses the API key, does not serve the model name, or answers
            under ``/v1`` of the base URL given.
    """
    found = endpoint_address(model, model_args)
    if found is None:
        return None
    url, name, key = found
    try:
        cards = _model_list(url, key)
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and not url.rstrip("/").endswith("/v1") and _lists_models(url, key):
            # The base URL names the server, not its API: every request would be a 404.
            raise UserError(
                Problem(
                    f"the server at {url} answers under {url.rstrip('/')}/v1; give that as "
                    "the base URL (-M base_url=... or the provider's *_BASE_URL)",
                    field="--model",
                )
            ) from None
        if exc.code in (401, 403):  # said now, not by every request of the run
            raise UserError(
                Problem(
                    f"the server at {url} refused the API key (HTTP {exc.code}); give the key "
                    "it expects with -M api_key=KEY (or the provider's *_API_KEY)",
                    field="--model",
                )
            ) from None
        log.debug("no model list from %s: %s", url, exc)
        return None
    except (OSError, ValueError, AttributeError) as exc:  # unreachable, refused, not JSON
        log.debug("no model list from %s: %s", url, exc)
        return None
    if not isinstance(cards, list):
        return None
    ids = [c["id"] for c in cards if isinstance(c, dict) and isinstance(c.get("id"), str)]
    if ids and name not in ids:
        shown = ", ".join(quote(i) for i in ids[:5]) + (" ..." if len(ids) > 5 else "")
        raise UserError(
            Problem(
                f"the server at {url} serves {shown}, not {quote(name)}; name one of them "
                "in the model string",
                field="--model",
            )
        )
    return next((c for c in cards if isinstance(c, dict) and c.get("id") == name), None)


def served_weights(model: str, model_args: Mapping[str, Any] | None = None) -> ServedWeights | None:
    """The weights behind an endpoint, as its server's ``GET /models`` reports them.

    ``safescale serve-model`` lists each model with ``weights_sha256`` (and the weights
    folder's name as ``root``); servers that report no hash (vLLM, hosted APIs), addresses
    that do not answer, and model names the server does not list give ``None``: the endpoint
    is then known by its model string.

    Raises:
        UserError: as :func:`served_card`.
    """
    card = served_card(model, model_args)
    if card is None or not is_sha256(sha := card.get("weights_sha256")):
        return None
    found = endpoint_address(model, model_args)
    assert found is not None  # a card came from it
    root = card.get("root")
    return ServedWeights(found[0], found[1], sha, root if isinstance(root, str) and root else None)


def served_context(model: str, model_args: Mapping[str, Any] | None = None) -> int | None:
    """The context in tokens (prompt and new tokens together) of the model behind an endpoint,
    as its server reports it (``max_model_len``: vLLM and ``serve-model`` do); ``None`` when it
    does not say, or says something that is not a plausible length.

    Raises:
        UserError: as :func:`served_card`.
    """
    card = served_card(model, model_args)
    n = card.get("max_model_len") if card is not None else None
    # bool is an int; a length under 3 leaves no room for a context, a choice and a new token
    if isinstance(n, int) and not isinstance(n, bool) and 3 <= n <= MAX_CONTEXT:
        return n
    return None


def resolve_model_identity(
    model: str,
    *,
    model_id: str | None = None,
    records: Sequence[ModelRecord] = (),
    model_args: Mapping[str, Any] | None = None,
    ask_server: bool = False,
) -> ModelIdentity:
    """The identity of MODEL (a folder or an Inspect model string) among ``records``.

    With ``ask_server`` (a run about to use the endpoint), an endpoint's server is asked which
    weights it serves (:func:`served_weights`; its address from ``model_args`` or the
    environment, as Inspect finds it). Logs and results read later are not: their server may
    be gone, or serve other weights by then.

    Raises:
        UserError: ``model_id`` names a record with other weights, or the weights are on
            record under another id.
    """
    from safescale.evals._evidence import model_dir_sha256

    folder = local_folder(model)
    if folder is None:
        by_ref = next((r for r in records if r.weights_ref == model), None)
        served = served_weights(model, model_args) if ask_server else None
        if served is not None:
            return _by_weights(
                served.weights_sha256,
                served.folder_name or served.name,
                model_id,
                records,
                endpoint=model,
                # A record naming this endpoint, with no weights of its own, is still its record.
                by_ref=by_ref if by_ref is not None and by_ref.weights_sha256 is None else None,
            )
        if model_id is not None:
            return ModelIdentity(model_id, "given", endpoint=model)
        if by_ref is not None:
            return ModelIdentity(by_ref.id, "ledger", endpoint=model)
        return ModelIdentity(model, "model-string", endpoint=model)
    if not folder.is_dir():
        # Left to the model loader, which says what is missing.
        return ModelIdentity(model_id or folder.name, "given" if model_id else "derived", folder)
    return _by_weights(model_dir_sha256(folder), folder.name, model_id, records, path=folder)


def _by_weights(
    sha: str,
    name: str,
    model_id: str | None,
    records: Sequence[ModelRecord],
    *,
    path: Path | None = None,
    endpoint: str | None = None,
    by_ref: ModelRecord | None = None,
) -> ModelIdentity:
    """The identity of known weights (``name``: their folder's name), by rules 1 to 4."""
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
        return ModelIdentity(model_id, "given", path, sha, endpoint)
    if same:
        return ModelIdentity(same[0].id, "ledger", path, sha, endpoint)
    if by_ref is not None:
        return ModelIdentity(by_ref.id, "ledger", path, sha, endpoint)
    return ModelIdentity(derived_id(Path(name), sha), "derived", path, sha, endpoint)


def id_for_weights(sha: str, model_id: str | None, records: Sequence[ModelRecord]) -> str | None:
    """The id results about the weights ``sha`` (a log's recorded hash, on import) go under:
    ``model_id`` when given, refused as ``eval run`` refuses it (a record with other weights,
    or these weights on record under another id); else the ledger's record of these weights;
    else None (the caller keeps the id the run recorded).

    Raises:
        UserError: ``model_id`` conflicts with the ledger's records.
    """
    if model_id is not None:
        return _by_weights(sha, model_id, model_id, records).id
    return next((r.id for r in records if r.weights_sha256 == sha), None)


def ledger_models(ws: Any | None) -> list[ModelRecord]:
    """The workspace's model records (none without a workspace)."""
    return [] if ws is None else list(ws.models())
