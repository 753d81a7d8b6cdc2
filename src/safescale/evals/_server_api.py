"""Request bodies of ``serve-model``'s OpenAI-compatible API, validated with field names.

A request that breaks a rule gets HTTP 400 (413 when too large, 401 without the right token)
and OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, whose message
starts with the field at fault: ``max_tokens: must be at least 0``. Fields the server does not
implement are refused when set to anything but their neutral value, never silently ignored.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_LOGPROBS = 20
"""Most alternatives per token (vLLM's default limit; OpenAI's completions allow 5)."""
MAX_N = 64
"""Most choices per request."""
MAX_PROMPTS = 2048
"""Most prompts in one completions request (OpenAI's limit)."""
MAX_ROWS = 4096
"""Most sequences (prompts times ``n``) one request may ask the engine for."""
MAX_STOP = 16
"""Most stop strings per request (OpenAI allows 4; vLLM more)."""
MAX_STOP_CHARS = 1000
"""Longest stop string."""
SAMPLING_EPS = 1e-5
"""A temperature below this is greedy decoding (as vLLM treats it): dividing logits by a
vanishing temperature overflows."""
MAX_SEED = 2**63
"""Seeds are taken modulo this (the choices of a request sample with seed + i)."""
KNOWN_EXTRA = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls"})
"""Fields clients send that change nothing here (bookkeeping): accepted without a word."""
MAX_NOTED = 64
"""Distinct unknown field names the log mentions (one line each), then no more."""

log = logging.getLogger("safescale.serve")
_noted: set[str] = set()


def note_unknown(names: Any) -> None:
    """Log, once per name, a request field the server does not know and ignores. OpenAI
    clients send fields of newer API versions; refusing them would break those clients, and
    ignoring them silently would hide a setting that does nothing."""
    for name in names:
        if name in _noted or name in KNOWN_EXTRA or len(_noted) >= MAX_NOTED:
            continue
        _noted.add(name)
        log.warning(
            "serve-model: request field %s is not implemented and is ignored (logged once)",
            ascii(name[:100]),
        )


class ApiError(Exception):
    """An HTTP error answer: status, message and the request field at fault."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = f"{param}: {message}" if param else message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        }


class _Common(BaseModel):
    """Fields shared by both endpoints."""

    # Strict types: "n": true or "stream": "yes" are not quietly converted.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    def unsupported(self) -> None:
        """Refuse settings this server would otherwise ignore."""
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise ApiError(400, "is not supported by serve-model; leave it 0", name)
        if self.logit_bias:
            raise ApiError(400, "is not supported by serve-model", "logit_bias")
        extra = self.model_extra or {}
        if extra:
            note_unknown(k for k in extra if k != "response_format")
        fmt = extra.get("response_format")
        if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
            raise ApiError(
                400, 'is not supported by serve-model; leave it out or {"type": "text"}',
                "response_format",
            )  # fmt: skip

    @field_validator("stop", mode="after")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        many = [v] if isinstance(v, str) else (v or [])
        if len(many) > MAX_STOP:
            raise ValueError(f"{len(many)} stop strings is over the limit of {MAX_STOP}")
        if any(len(x) > MAX_STOP_CHARS for x in many):
            raise ValueError(f"a stop string is over {MAX_STOP_CHARS} characters")
        return v

    @property
    def stops(self) -> tuple[str, ...]:
        """The stop strings, as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk (``stream_options``)."""
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionRequest(_Common):
    """Body of ``POST /v1/completions``."""

    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    prompt_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    """vLLM's extension: log-probabilities of the prompt tokens in vLLM's shape."""
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, v: Any) -> Any:
        if isinstance(v, str):
            return v
        if not isinstance(v, list) or not v:
            raise ValueError("must be a string, a list of strings or a list of token ids")
        if len(v) > MAX_PROMPTS and not isinstance(v[0], int):
            raise ValueError(f"{len(v)} prompts is over the limit of {MAX_PROMPTS} a request")
        kinds = set(map(type, v))  # one pass in C: a JSON body holds exact ints and strs
        if kinds == {int} or kinds == {str}:
            return v
        if all(isinstance(x, str) for x in v):
            return v
        if all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return v
        if all(
            isinstance(x, list)
            and x
            and all(isinstance(t, int) and not isinstance(t, bool) for t in x)
            for x in v
        ):
            return v
        raise ValueError(
            "must be a string, a list of strings, a list of token ids or a list of such lists"
            " (none empty)"
        )

    def unsupported(self) -> None:
        super().unsupported()
        if self.best_of not in (None, self.n):
            raise ApiError(400, "is not supported by serve-model; use n", "best_of")
        if self.suffix:
            raise ApiError(400, "is not supported by serve-model", "suffix")


class ChatMessage(BaseModel):
    """One message of a chat request."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, v: Any) -> Any:
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in v
        ):
            return "".join(p["text"] for p in v)
        raise ValueError('must be a string or a list of {"type": "text", "text": "..."} parts')


class ChatRequest(_Common):
    """Body of ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: list[Any] | None = None

    def unsupported(self) -> None:
        super().unsupported()
        if self.top_logprobs and not self.logprobs:
            raise ApiError(400, "needs logprobs: true", "top_logprobs")
        if self.tools:
            raise ApiError(400, "tool calling is not supported by serve-model", "tools")


def parse(model: type[CompletionRequest] | type[ChatRequest], body: Any) -> Any:
    """Validate ``body`` as ``model``; an :class:`ApiError` names the first field at fault."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        req = model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _field(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ApiError(400, msg[:1].lower() + msg[1:], loc or None) from None
    req.unsupported()
    return req


def _field(loc: tuple[int | str, ...]) -> str:
    """``("messages", 0, "content")`` -> ``messages[0].content``; union branch tags dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part in ("str", "int", "float", "bool", "list", "dict"):
            break  # pydantic names the union member it tried; the field is what came before
        else:
            out += f".{part}" if out else part
    return out
