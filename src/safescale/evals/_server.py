"""``safescale serve-model``: a local checkpoint behind an OpenAI-compatible HTTP API.

Endpoints (loopback by default):

* ``GET /v1/models``
* ``POST /v1/completions`` with a text or token-id prompt; ``prompt_logprobs`` (vLLM's
  extension, as Inspect's ``openai-api-completions`` and ``vllm-completions`` send it) and
  ``echo`` + ``logprobs`` (as lm-eval's ``local-completions`` sends it) return prompt
  log-probabilities;
* ``POST /v1/chat/completions`` for generation.

Scoring uses the same engine as the in-process provider, so both give the same numbers.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from safescale._errors import UserError
from safescale.evals._lm import LocalLM, LoglikelihoodGroup

API_VERSION = "v1"


class CompletionRequest(BaseModel):
    """Body of ``POST /v1/completions`` (the fields we honour; others are ignored)."""

    model_config = ConfigDict(extra="allow")

    model: str = ""
    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = 16
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    echo: bool = False
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    stop: str | list[str] | None = None


class ChatRequest(BaseModel):
    """Body of ``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="allow")

    model: str = ""
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None


class ModelServer:
    """Serves one loaded :class:`LocalLM` over HTTP on ``host:port`` (port 0: any free port)."""

    def __init__(self, lm: LocalLM, name: str, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.lm = lm
        self.name = name
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet by default
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") == f"/{API_VERSION}/models":
                    self._send(
                        200, {"object": "list", "data": [{"id": server.name, "object": "model"}]}
                    )
                else:
                    self._send(404, _error("not found"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    if self.path == f"/{API_VERSION}/completions":
                        self._send(200, server.completions(CompletionRequest.model_validate(body)))
                    elif self.path == f"/{API_VERSION}/chat/completions":
                        self._send(200, server.chat(ChatRequest.model_validate(body)))
                    else:
                        self._send(404, _error("not found"))
                except (ValidationError, json.JSONDecodeError, ValueError, UserError) as exc:
                    self._send(400, _error(str(exc).splitlines()[0]))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/{API_VERSION}"

    def start(self) -> ModelServer:
        """Serve in a background thread (for tests and embedding); returns self."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.httpd.serve_forever()

    def close(self) -> None:
        """Stop serving and release the port."""
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- endpoints ------------------------------------------------------------------------------

    def _prompts(self, prompt: Any) -> list[list[int]]:
        if isinstance(prompt, str):
            return [self.lm.encode(prompt)]
        if prompt and all(isinstance(t, int) for t in prompt):
            return [list(prompt)]
        return [self.lm.encode(p) if isinstance(p, str) else list(p) for p in prompt]

    def completions(self, req: CompletionRequest) -> dict[str, Any]:
        """The ``/v1/completions`` response for ``req``."""
        prompts = self._prompts(req.prompt)
        for ids in prompts:
            if not ids:
                raise ValueError("empty prompt")
            self.lm.check_ids(ids, "prompt")
        want_scores = req.prompt_logprobs is not None or (req.echo and req.logprobs is not None)
        scores: list[tuple[float, ...]] = [() for _ in prompts]
        if want_scores:
            groups = [LoglikelihoodGroup((p[0],), (tuple(p[1:]),)) for p in prompts if len(p) > 1]
            results = iter(self.lm.loglikelihood(groups))
            scores = [next(results)[0].token_logprobs if len(p) > 1 else () for p in prompts]
        max_new = req.max_tokens or 0
        gens = (
            self.lm.generate(prompts, max_new, req.temperature, req.top_p, req.seed)
            if max_new
            else [[] for _ in prompts]
        )
        choices = []
        for i, (ids, lps, new) in enumerate(zip(prompts, scores, gens, strict=True)):
            text = _cut(self.lm.decode(new), req.stop)
            choice: dict[str, Any] = {
                "index": i,
                "text": text,
                "finish_reason": "length" if len(new) >= max_new else "stop",
            }
            tokens = self.lm.token_strings(ids)
            if req.prompt_logprobs is not None:
                # vLLM's shape: None for the first token, then {id: {logprob, rank, decoded_token}}.
                choice["prompt_logprobs"] = [None] + [
                    {str(t): {"logprob": lp, "rank": 1, "decoded_token": s}}
                    for t, lp, s in zip(ids[1:], lps, tokens[1:], strict=True)
                ]
            if req.echo and req.logprobs is not None:
                choice["text"] = self.lm.decode(ids) + text
                choice["logprobs"] = {
                    "tokens": tokens,
                    "token_logprobs": [None, *lps],
                    "top_logprobs": [None]
                    + [{s: lp} for s, lp in zip(tokens[1:], lps, strict=True)],
                    "text_offset": [],
                }
            choices.append(choice)
        n_prompt = sum(map(len, prompts))
        n_new = sum(map(len, gens))
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": choices,
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": n_new,
                "total_tokens": n_prompt + n_new,
            },
        }

    def chat(self, req: ChatRequest) -> dict[str, Any]:
        """The ``/v1/chat/completions`` response for ``req``."""
        messages = [
            {"role": m.get("role", "user"), "content": _content_text(m.get("content"))}
            for m in req.messages
        ]
        tok = self.lm.tokenizer
        if getattr(tok, "chat_template", None):
            text = str(
                tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        elif len(messages) == 1:
            text = messages[0]["content"]
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        ids = self.lm.encode(text)
        max_new = req.max_completion_tokens or req.max_tokens or 256
        (new,) = self.lm.generate([ids], max_new, req.temperature, req.top_p, req.seed)
        content = _cut(self.lm.decode(new), req.stop)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "length" if len(new) >= max_new else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": len(ids),
                "completion_tokens": len(new),
                "total_tokens": len(ids) + len(new),
            },
        }


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _cut(text: str, stop: str | list[str] | None) -> str:
    for s in [stop] if isinstance(stop, str) else stop or []:
        if s and s in text:
            text = text[: text.index(s)]
    return text


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}
