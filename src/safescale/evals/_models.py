"""Inspect models by name, and what is checked about an endpoint before a run.

A provider that cannot start is one line (:func:`inspect_model`); an address where nothing
listens is refused before Inspect would retry it for minutes (:func:`check_listening`); a
tokenizer folder is compared with the server's own (:func:`check_tokenizer`); and provider
arguments lose their secrets before they are recorded (:func:`redact_args`).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any, overload
from urllib.parse import urlsplit

from safescale._errors import Problem, RunFailed, UserError
from safescale._input import quote
from safescale.evals._identity import endpoint_address

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection to an endpoint before a run."""


def inspect_model(name: str, field: str, **kwargs: Any) -> Any:
    """Inspect's model ``name``; a provider Inspect does not know, or one that cannot start (no
    API key or base URL, a missing package), is a one-line :class:`UserError` naming
    ``field``."""
    from inspect_ai.model import get_model

    check_listening(name, kwargs, field)
    try:
        return get_model(name, **kwargs)
    except UserError:
        raise  # the local provider's own, already one line with its field
    except Exception as exc:  # providers raise what they like; all are usage errors
        raise UserError(
            Problem(
                f"cannot use the Inspect model {quote(name)} ({_why(exc)}); check the provider "
                "name, its package, its API key and its base URL",
                field=field,
            )
        ) from None


def check_listening(name: str, model_args: Mapping[str, Any], field: str = "--model") -> None:
    """Refuse an endpoint where nothing listens: Inspect would retry a refused connection for
    minutes before the run gave up. Only the address is tried (a TCP connection, at most
    :data:`CONNECT_TIMEOUT` seconds); a server that answers, however it answers, passes.

    Raises:
        RunFailed: the connection is refused, or the host name has no address.
    """
    found = endpoint_address(name, model_args)
    if found is None:
        return  # a hosted API at its own address, or a local model
    url = urlsplit(found[0])
    if url.hostname is None:
        return
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return  # not a port: Inspect's own error says so
    try:
        socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT).close()
    except (ConnectionRefusedError, socket.gaierror) as exc:
        given = "-M base_url=URL" if model_args.get("base_url") else "the provider's *_BASE_URL"
        raise RunFailed(
            Problem(
                f"nothing answers at {found[0]} ({exc.strerror or exc}); start the server, or "
                f"give the address it listens at ({given})",
                field=field,
            )
        ) from None
    except OSError:
        return  # slow or filtered: let the run try, with Inspect's own timeouts


def _why(exc: Exception) -> str:
    """The exception's text as plain words on one line: Inspect's messages carry console
    markup (``[bold]LOCAL_BASE_URL[/bold]``) and an ``ERROR:`` heading over several lines."""
    text = str(exc)
    try:
        from rich.text import Text

        text = Text.from_markup(text).plain
    except Exception:  # not markup after all: keep the text as it is
        pass
    words = " ".join(x.strip() for x in text.splitlines() if x.strip())
    return words.removeprefix("ERROR: ") or type(exc).__name__


SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "auth", "credential", "cookie")
"""A provider argument whose name holds one of these is a secret: never written to a log, the
evidence or the ledger (a signed ledger cannot be edited afterwards)."""

REDACTED = "<redacted>"


@overload
def redact_args(args: Mapping[str, Any]) -> dict[str, Any]: ...
@overload
def redact_args(args: str) -> str: ...
@overload
def redact_args(args: None) -> None: ...
def redact_args(args: Mapping[str, Any] | str | None) -> dict[str, Any] | str | None:
    """Provider arguments as they may be recorded: secrets (``api_key=...``, by name, see
    :data:`SECRET_WORDS`) replaced by ``<redacted>``, and a user name and password written into
    a URL (``http://user:pass@host``) taken out. lm-eval writes its arguments as one
    ``key=value,key=value`` string; that form is kept."""
    if args is None:
        return None
    if isinstance(args, str):
        pairs = [item.split("=", 1) if "=" in item else [item] for item in args.split(",")]
        return ",".join(f"{p[0]}={_redact(p[0], p[1])}" if len(p) == 2 else p[0] for p in pairs)
    return {str(k): _redact(str(k), v) for k, v in args.items()}


def _redact(name: str, value: Any) -> Any:
    if any(word in name.lower() for word in SECRET_WORDS):
        return REDACTED
    if isinstance(value, str) and "://" in value:
        url = urlsplit(value)
        if "@" in url.netloc:  # user:password@host: keep the host and port only
            return url._replace(netloc=url.netloc.rsplit("@", 1)[1]).geturl()
    return value


PROBE = "Question: Which river of Zorbia runs 1,234 km east?\nAnswer: the red one (not 42)."
"""Text whose tokens are compared between the given tokenizer and the server's."""


def check_tokenizer(name: str, model_args: Mapping[str, Any], tokenizer: Any, where: str) -> None:
    """Refuse a tokenizer folder that is not the served model's: the token ids of
    :data:`PROBE` by ``tokenizer`` are sent to the server (``echo``, one new token) and each
    token's text as the server names it is compared with the local text of the same id. A
    wrong tokenizer used to score every choice with the wrong ids and give another number,
    without an error. A server that cannot answer the probe is not judged here.

    Raises:
        UserError: the server names the tokens otherwise, or refuses the ids.
    """
    import json
    import urllib.error
    import urllib.request

    found = endpoint_address(name, model_args)
    if found is None:
        return
    url, served, key = found
    ids = [int(i) for i in tokenizer.encode(PROBE, add_special_tokens=False)]
    body = {"model": served, "prompt": ids, "max_tokens": 1, "echo": True, "logprobs": 1,
            "temperature": 0}  # fmt: skip
    request = urllib.request.Request(
        url.rstrip("/") + "/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {key}"} if key else {})},
    )  # fmt: skip
    problem = (
        f"the tokenizer in {where} is not the served model's: the server {{}}; give the served "
        "model's own tokenizer folder"
    )
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as answer:
            tokens = json.loads(answer.read())["choices"][0]["logprobs"]["tokens"]
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        if exc.code == 400 and ("vocabulary" in text or "token id" in text):
            raise UserError(
                Problem(problem.format("refuses its token ids"), field="--tokenizer")
            ) from None
        return
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return  # no answer to judge by: the run will say what is wrong, if anything
    if not isinstance(tokens, list) or len(tokens) < len(ids):
        return
    texts = [tokenizer.decode([i]) for i in ids]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    got = [str(t) for t in tokens[: len(ids)]]
    # Servers name a token by its own decoded text (serve-model), by its vocabulary entry, or
    # by the text it adds to what came before (vLLM's incremental detokenizing, where a
    # SentencePiece word keeps its space): any of the three is the same tokenizer.
    if got != texts and got != pieces and "".join(got) != tokenizer.decode(ids):
        k = next(i for i, (x, y) in enumerate(zip(got, texts, strict=True)) if x != y)
        raise UserError(
            Problem(
                problem.format(f"names token {k} ({ids[k]}) {quote(got[k])}, not "
                               f"{quote(texts[k])}"),
                field="--tokenizer",
            )
        )  # fmt: skip


PROBE_TIMEOUT = 30.0
"""Seconds to wait for the server's answer to the tokenizer probe."""
