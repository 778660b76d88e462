"""A loopback OpenAI (and Azure OpenAI, and Microsoft Entra) server for tests and benchmarks.

It speaks the wire format of the real services, checked against the official ``openai``
package's types in ``tests/fakes/test_openai_server.py``:

- ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` with
  ``Authorization: Bearer <api key>`` (OpenAI);
- ``POST /openai/deployments/{deployment}/chat/completions`` (and ``completions``,
  ``embeddings``) with ``?api-version=`` and an ``api-key`` header or a bearer token
  (Azure OpenAI; the deployment name stands in for the model);
- ``POST /{tenant}/oauth2/v2.0/token`` (Microsoft Entra client credentials), whose tokens
  the two routes above accept;
- streaming as OpenAI sends it: ``data: <chunk>`` events, the ``stream_options.include_usage``
  chunk (``choices: []``), ``data: [DONE]``;
- errors as OpenAI sends them: ``{"error": {"message", "type", "param", "code"}}``.

Answers are deterministic: a chat answer is ``"You said: <last user text>"`` (one token per
word, ``max_tokens`` cuts it with ``finish_reason: "length"``; an image part is said as
``[image_url]``, after it is checked as OpenAI checks it; :func:`image_urls` lists a
body's), an embedding is derived from a hash of its input. With ``tools`` the model calls the first tool; with
``response_format: {"type": "json_object"}`` it answers JSON. Knobs: :attr:`faults`
(error statuses, ``Retry-After``, slow answers) and :attr:`break_stream_after`.

Run it alone (for ``bench/``): ``python -m tests.fakes.openai_server --port 8199``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import secrets
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import orjson

from tests.fakes.http_fixture import Faults, LoopbackServer

__all__ = ["API_KEY", "AZURE_KEY", "ENTRA", "FakeOpenAI", "Recorded", "image_urls", "openai_error_body"]

API_KEY = "sk-fake-openai"
AZURE_KEY = "azure-fake-key"
#: Tenant, client id and client secret the Entra token route accepts.
ENTRA = ("fake-tenant", "fake-client", "fake-secret")
AZURE_AD_TOKEN = "azuread-fake-token"

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def openai_error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    kind, default_code = _ERROR_TYPES.get(status, ("server_error", None))
    return orjson.dumps(
        {"error": {"message": message, "type": kind, "param": param, "code": code or default_code}}
    )


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class _Reject(Exception):
    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


def _bad(message: str, param: str | None = None, code: str | None = None) -> _Reject:
    return _Reject(400, openai_error_body(400, message, param, code))


def _words(text: str) -> list[str]:
    return text.split()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            "[image_url]" if p.get("type") == "image_url" else str(p.get("text", ""))
            for p in content
            if isinstance(p, dict)
        )
    return ""


def image_urls(body: Any) -> list[dict[str, Any]]:
    """The ``image_url`` objects (``{"url", "detail"?}``) of every message of a chat body."""
    return [
        part["image_url"]
        for m in body.get("messages") or []
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for part in m["content"]
        if isinstance(part, dict) and part.get("type") == "image_url"
    ]


def _check_images(messages: list[Any]) -> None:
    """Refuse ``image_url`` parts as OpenAI does: in user messages only, an object with an
    http(s) URL or a base64 image data URL, ``detail`` auto, low or high."""
    for i, m in enumerate(messages):
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            where = f"messages[{i}].content[{j}].image_url"
            if m.get("role") != "user":
                raise _bad(
                    f"Image URLs are only allowed for messages with role 'user', but this message with "
                    f"role '{m.get('role')}' contains an image URL.",
                    f"messages[{i}].content[{j}]",
                )
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str):
                raise _bad(f"Missing required parameter: '{where}.url'.", f"{where}.url")
            if isinstance(image, dict) and image.get("detail", "auto") not in ("auto", "low", "high"):
                raise _bad(f"Invalid value: '{image['detail']}'.", f"{where}.detail")
            if url.startswith("data:"):
                head, _, data = url.partition(",")
                try:
                    base64.b64decode(data, validate=True)
                except ValueError:
                    data = ""
                if not head.startswith("data:image/") or not head.endswith(";base64") or not data:
                    raise _bad(
                        "Invalid image URL: expected a base64-encoded data URL with an image MIME type "
                        "(e.g. 'data:image/png;base64,...').",
                        f"{where}.url",
                        "invalid_image_url",
                    )
            elif not url.startswith(("https://", "http://")):
                raise _bad(f"Invalid image URL: '{url[:40]}'.", f"{where}.url", "invalid_image_url")


def _vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    while len(digest) < dims:
        digest += hashlib.sha256(digest).digest()
    # Values with an exact float32 form, so base64 and float answers compare equal.
    return [(b - 128) / 128 for b in digest[:dims]]


class FakeOpenAI:
    """The ASGI app; ``start()`` serves it on 127.0.0.1 in a thread (see :class:`LoopbackServer`)."""

    def __init__(self, *, dims: int = 8) -> None:
        self.dims = dims
        self.faults = Faults(lambda status, message: openai_error_body(status, message))
        #: Close the connection after this many chunks of the next streamed answers.
        self.break_stream_after: int | None = None
        self.requests: list[Recorded] = []
        self.token_requests = 0
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None

    # ---- running -------------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        self._server = LoopbackServer(self).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return self._server.url

    def reset(self) -> None:
        self.faults.reset()
        self.break_stream_after = None
        with self._lock:
            self.requests.clear()

    def last(self, path_suffix: str = "") -> Recorded:
        """The latest request whose path ends with ``path_suffix``."""
        with self._lock:
            for rec in reversed(self.requests):
                if rec.path.endswith(path_suffix):
                    return rec
        raise AssertionError(f"no request to *{path_suffix} recorded")

    # ---- ASGI ------------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode()))
        rec = Recorded(scope["method"], scope["path"], query, headers, b"".join(chunks))
        with self._lock:
            self.requests.append(rec)
        try:
            if self.faults.delay:
                await asyncio.sleep(self.faults.delay)
            fault = self.faults.take()
            if fault is not None:
                raise _Reject(fault.status, fault.body, fault.headers)
            await self._route(rec, send)
        except _Reject as reject:
            await _send_json(send, reject.status, reject.body, reject.headers)

    async def _route(self, rec: Recorded, send: Any) -> None:
        if rec.method != "POST":
            raise _Reject(405, openai_error_body(405, f"Method {rec.method} not allowed."))
        parts = rec.path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            await self._entra_token(parts[0], rec, send)
            return
        if rec.path.startswith("/v1/"):
            self._check_openai_auth(rec)
            op, deployment = rec.path.removeprefix("/v1/"), None
        elif rec.path.startswith("/openai/deployments/") and len(parts) >= 4:
            if "api-version" not in rec.query:
                raise _Reject(404, orjson.dumps({"error": {"code": "404", "message": "Resource not found"}}))
            self._check_azure_auth(rec)
            deployment, op = parts[2], "/".join(parts[3:])
        else:
            raise _Reject(404, openai_error_body(404, f"Invalid URL (POST {rec.path})", code="unknown_url"))
        try:
            body = orjson.loads(rec.body)
        except orjson.JSONDecodeError:
            raise _bad("We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise _bad("The body of your request must be a JSON object.")
        model = deployment or body.get("model")
        if not model:
            raise _bad("you must provide a model parameter", "model", "missing_required_parameter")
        if op == "chat/completions":
            await self._chat(model, body, send)
        elif op == "completions":
            await self._completions(model, body, send)
        elif op == "embeddings":
            await _send_json(send, 200, orjson.dumps(self._embeddings(model, body)))
        else:
            raise _Reject(404, openai_error_body(404, f"Invalid URL (POST {rec.path})", code="unknown_url"))

    # ---- auth ------------------------------------------------------------------------------------
    def _bearer(self, rec: Recorded) -> str | None:
        scheme, _, value = rec.headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    def _check_openai_auth(self, rec: Recorded) -> None:
        token = self._bearer(rec)
        if token != API_KEY:
            shown = f"{token[:3]}***{token[-4:]}" if token else "(none)"
            raise _Reject(
                401,
                openai_error_body(
                    401,
                    f"Incorrect API key provided: {shown}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                ),
            )

    def _check_azure_auth(self, rec: Recorded) -> None:
        if rec.headers.get("api-key") == AZURE_KEY:
            return
        token = self._bearer(rec)
        if token is not None and (token == AZURE_AD_TOKEN or token in self._tokens):
            return
        raise _Reject(
            401,
            orjson.dumps(
                {
                    "error": {
                        "code": "401",
                        "message": "Access denied due to invalid subscription key or wrong API endpoint. "
                        "Make sure to provide a valid key for an active subscription and use a correct "
                        "regional API endpoint for your resource.",
                    }
                }
            ),
        )

    async def _entra_token(self, tenant: str, rec: Recorded, send: Any) -> None:
        form = dict(urllib.parse.parse_qsl(rec.body.decode()))
        with self._lock:
            self.token_requests += 1
        if tenant != ENTRA[0]:
            body = {
                "error": "invalid_tenant",
                "error_description": f"AADSTS90002: Tenant '{tenant}' not found.",
            }
            raise _Reject(400, orjson.dumps(body))
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != ENTRA[1]
            or form.get("client_secret") != ENTRA[2]
            or not form.get("scope", "").endswith("/.default")
        ):
            body = {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            }
            raise _Reject(401, orjson.dumps(body))
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        answer = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        await _send_json(send, 200, orjson.dumps(answer))

    # ---- chat ------------------------------------------------------------------------------------
    def _chat_answer(self, body: dict[str, Any]) -> tuple[str, list[str], str, list[dict[str, Any]] | None]:
        """(prompt text, answer words, finish reason, tool calls)."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m:
                raise _bad(f"Missing required parameter: 'messages[{i}].role'.", f"messages[{i}].role")
        _check_images(messages)
        prompt = " ".join(_text_of(m.get("content")) for m in messages)
        last = next((_text_of(m.get("content")) for m in reversed(messages) if m["role"] == "user"), "")
        tools = body.get("tools")
        if tools and body.get("tool_choice") != "none":
            name = tools[0].get("function", {}).get("name", "tool")
            call = {
                "id": f"call_{secrets.token_hex(8)}",
                "type": "function",
                "function": {"name": name, "arguments": orjson.dumps({"text": last}).decode()},
            }
            return prompt, [], "tool_calls", [call]
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
            words = [orjson.dumps({"said": last}).decode()]
        else:
            words = ["You", "said:", *_words(last)]
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and 0 < limit < len(words):
            return prompt, words[:limit], "length", None
        return prompt, words, "stop", None

    async def _chat(self, model: str, body: dict[str, Any], send: Any) -> None:
        prompt, words, reason, calls = self._chat_answer(body)
        n = int(body.get("n") or 1)
        cid, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
        usage = _usage(len(_words(prompt)), n * max(len(words), 1 if calls else 0))
        if body.get("stream"):
            await self._chat_stream(send, cid, created, model, body, words, reason, calls, n, usage)
            return
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if calls else " ".join(words),
            "refusal": None,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = calls
        answer = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": i, "message": message, "logprobs": None, "finish_reason": reason} for i in range(n)
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fake0001",
        }
        await _send_json(send, 200, orjson.dumps(answer))

    async def _chat_stream(
        self,
        send: Any,
        cid: str,
        created: int,
        model: str,
        body: dict[str, Any],
        words: list[str],
        reason: str,
        calls: list[dict[str, Any]] | None,
        n: int,
        usage: dict[str, Any],
    ) -> None:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake0001",
                "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                out["usage"] = None
            return out

        events: list[dict[str, Any]] = []
        for i in range(n):
            events.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}))
            if calls:
                for j, call in enumerate(calls):
                    events.append(chunk(i, {"tool_calls": [{"index": j, **call}]}))
            for k, word in enumerate(words):
                events.append(chunk(i, {"content": word if k == 0 else " " + word}))
            events.append(chunk(i, {}, reason))
        if include_usage:
            last = chunk(0, {})
            last["choices"], last["usage"] = [], usage
            events.append(last)
        await self._sse(send, events)

    # ---- completions -----------------------------------------------------------------------------
    async def _completions(self, model: str, body: dict[str, Any], send: Any) -> None:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = prompt
        else:
            raise _bad("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        limit = body.get("max_tokens")
        limit = limit if isinstance(limit, int) and limit > 0 else 16  # OpenAI's default
        cid, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())
        answers = []
        for p in prompts:
            words = ["Completed:", *_words(p)]
            answers.append((words[:limit], "length" if len(words) > limit else "stop"))
        usage = _usage(sum(len(_words(p)) for p in prompts), sum(len(w) for w, _ in answers))
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            def chunk(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
                out: dict[str, Any] = {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_fake0001",
                    "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
                }
                if include_usage:
                    out["usage"] = None
                return out

            events = []
            for i, (words, reason) in enumerate(answers):
                for k, word in enumerate(words):
                    events.append(chunk(i, word if k == 0 else " " + word))
                events.append(chunk(i, "", reason))
            if include_usage:
                last = chunk(0, "")
                last["choices"], last["usage"] = [], usage
                events.append(last)
            await self._sse(send, events)
            return
        answer = {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake0001",
            "choices": [
                {"text": " ".join(words), "index": i, "logprobs": None, "finish_reason": reason}
                for i, (words, reason) in enumerate(answers)
            ],
            "usage": usage,
        }
        await _send_json(send, 200, orjson.dumps(answer))

    # ---- embeddings ------------------------------------------------------------------------------
    def _embeddings(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        value = body.get("input")
        if isinstance(value, str):
            inputs = [value]
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            inputs = value
        else:
            raise _bad("'input' is a required property", "input", "missing_required_parameter")
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise _bad(f"'{fmt}' is not one of ['float', 'base64'] - 'encoding_format'", "encoding_format")
        dims = body.get("dimensions") or self.dims
        data = []
        for i, text in enumerate(inputs):
            vector: Any = _vector(text, int(dims))
            if fmt == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(len(_words(t)) for t in inputs)
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    # ---- SSE -------------------------------------------------------------------------------------
    async def _sse(self, send: Any, events: list[dict[str, Any]]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        cut = self.break_stream_after
        for i, event in enumerate(events):
            if cut is not None and i >= cut:
                # An exception after the response started: uvicorn drops the connection
                # without ending the chunked body, as a provider that dies mid-stream does.
                raise RuntimeError("fake: stream broken on purpose")
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + orjson.dumps(event) + b"\n\n",
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


async def _send_json(send: Any, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8199)
    args = parser.parse_args()
    import uvicorn

    print(f"fake OpenAI on http://{args.host}:{args.port} (api key {API_KEY})", flush=True)
    uvicorn.run(FakeOpenAI(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
