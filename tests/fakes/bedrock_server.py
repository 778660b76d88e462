"""A loopback double of Amazon Bedrock Runtime: InvokeModel and InvokeModelWithResponseStream.

``POST /model/{modelId}/invoke`` and ``/model/{modelId}/invoke-with-response-stream``,
as AWS serves them:

* every request must carry a SigV4 signature (service ``bedrock``) that the double
  recomputes with botocore from :data:`ACCESS_KEY_ID` / :data:`SECRET_ACCESS_KEY`; a
  missing, unknown, mis-scoped, stale or wrong one gets 403 with AWS's ``{"message"}`` body
  and ``x-amzn-ErrorType``;
* bodies are checked per model family the way Bedrock refuses them (unknown keys, missing
  required ones), answered in each family's own shape, with the
  ``X-Amzn-Bedrock-*-Token-Count`` headers;
* streams are ``application/vnd.amazon.eventstream`` frames built by :func:`frame`
  (prelude, string headers, payload, both CRC32s) so botocore's own parser reads them;
  each ``chunk`` event carries ``{"bytes": base64(model event), "p": padding}``, the last
  one ``amazon-bedrock-invocationMetrics``; errors inside a stream are ``exception`` frames.

Families: ``anthropic.claude*`` (via the Anthropic double's model), ``amazon.titan-text*``,
``amazon.titan-embed*``, ``amazon.nova*``, ``cohere.command-r*``, ``cohere.command*text*``,
``cohere.embed*``, ``ai21.jamba*``. Text models echo the last user text (``"You said: ..."``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import itertools
import json
import re
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes import anthropic_server as claude
from tests.fakes.http_fixture import Faults, LoopbackServer

ACCESS_KEY_ID = "AKIAFAKEBEDROCKTEST1"
SECRET_ACCESS_KEY = "fake/secret+key-for-the-bedrock-double"
REGION = "us-east-1"

ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$"
)


class Refused(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"message": message}).encode()


def error_headers(kind: str) -> dict[str, str]:
    return {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}


# ---- SigV4 ----------------------------------------------------------------------------------------
def check_signature(
    request: Request, body: bytes, *, key_id: str, secret: str, region: str, token: str | None
) -> None:
    """Recompute the request's SigV4 signature with botocore; raise :class:`Refused` (403)."""
    auth = request.headers.get("authorization")
    if not auth:
        raise Refused(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH_RE.match(auth)
    if match is None:
        raise Refused(
            403, "IncompleteSignatureException", f"Authorization header requires valid fields: {auth}"
        )
    scope, signed, signature = match.groups()
    parts = scope.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise Refused(403, "IncompleteSignatureException", f"Credential is malformed: {scope}")
    if parts[0] != key_id:
        raise Refused(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if parts[2] != region:
        raise Refused(
            403,
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{parts[2]}'.",
        )
    if parts[3] != "bedrock":
        raise Refused(
            403, "InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'."
        )
    amz_date = request.headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise Refused(
            403, "IncompleteSignatureException", "Missing or malformed X-Amz-Date header."
        ) from None
    if abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) > 300 or amz_date[:8] != parts[1]:
        raise Refused(403, "InvalidSignatureException", f"Signature expired: {amz_date} is now out of range.")
    if token is not None and request.headers.get("x-amz-security-token") != token:
        raise Refused(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    names = signed.split(";")
    if "host" not in names:
        raise Refused(
            403, "InvalidSignatureException", "'Host' must be a 'SignedHeader' in the AWS Authorization."
        )
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    url = f"{request.url.scheme}://{request.headers['host']}{raw_path.decode()}" + (
        f"?{query.decode()}" if query else ""
    )
    headers = {name: request.headers.get(name, "") for name in names}
    aws = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    aws.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key_id, secret, token), "bedrock", region)
    canonical = signer.canonical_request(aws)
    expected = signer.signature(signer.string_to_sign(aws, canonical), aws)
    if signer.signed_headers(signer.headers_to_sign(aws)) != signed or not hmac.compare_digest(
        expected, signature
    ):
        raise Refused(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.",
        )


# ---- event stream framing -------------------------------------------------------------------------
def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and headers length, CRC32), string-typed
    headers, payload, CRC32 of everything before it."""
    encoded = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        encoded += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    prelude = struct.pack(">II", 16 + len(encoded) + len(payload), len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def chunk_frame(event: dict[str, Any]) -> bytes:
    raw = base64.b64encode(json.dumps(event).encode()).decode()
    payload = json.dumps(
        {"bytes": raw, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGH"[: 1 + len(raw) % 30]}
    ).encode()
    return frame(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload
    )


def exception_frame(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, json.dumps({"message": message}).encode())


# ---- the model families ---------------------------------------------------------------------------
def _invalid(message: str) -> Refused:
    return Refused(400, "ValidationException", message)


def _keys(body: Any, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _invalid("Malformed input request, please reformat your input and try again.")
    for key in body:
        if key not in allowed:
            raise _invalid(
                f"Malformed input request: #: extraneous key [{key}] is not permitted, "
                "please reformat your input and try again."
            )
    for key in required:
        if key not in body:
            raise _invalid(
                f"Malformed input request: #: required key [{key}] not found, "
                "please reformat your input and try again."
            )
    return body


def _words(text: str) -> int:
    return len(text.split())


def _cut(text: str, max_tokens: int | None, stops: list[str] | None) -> tuple[str, str]:
    """(text, why): ``stop``, ``stop_sequence`` or ``length``."""
    for stop in stops or []:
        at = text.find(stop)
        if at >= 0:
            return text[:at], "stop_sequence"
    words = text.split(" ")
    if max_tokens is not None and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return text, "stop"


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def vector(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    return [round((seed[i % 32] - 128) / 128, 4) for i in range(dims)]


@dataclass
class Answer:
    """A family's answer: the JSON body, the stream events, the token counts."""

    body: dict[str, Any]
    events: list[dict[str, Any]]
    input_tokens: int
    output_tokens: int


def _claude(model: str, body: Any) -> Answer:
    try:
        claude.check_body(body, bedrock=True)
    except claude.Invalid as exc:
        raise _invalid(str(exc)) from None
    message = claude.make_message(body, model)
    u = message["usage"]
    return Answer(message, claude.stream_events(message), u["input_tokens"], u["output_tokens"])


_TITAN_CONFIG = {"maxTokenCount", "temperature", "topP", "stopSequences"}


def _titan_text(model: str, body: Any) -> Answer:
    body = _keys(body, {"inputText", "textGenerationConfig"}, ("inputText",))
    config = body.get("textGenerationConfig") or {}
    _keys(config, _TITAN_CONFIG)
    if not 0 <= config.get("temperature", 0) <= 1:
        raise _invalid(
            "Malformed input request: #/textGenerationConfig/temperature: 2.0 is not less or equal to 1"
        )
    prompt = body["inputText"]
    users = [line[len("User: ") :] for line in prompt.split("\n") if line.startswith("User: ")]
    text, why = _cut(
        "You said: " + (users[-1] if users else prompt),
        config.get("maxTokenCount"),
        config.get("stopSequences"),
    )
    reason = {"stop": "FINISH", "stop_sequence": "STOP_CRITERIA_MET", "length": "LENGTH"}[why]
    n_in, n_out = _words(prompt), _words(text)
    answer = {
        "inputTextTokenCount": n_in,
        "results": [{"tokenCount": n_out, "outputText": text, "completionReason": reason}],
    }
    pieces = _pieces(text)
    events = [
        {
            "outputText": p,
            "index": 0,
            "totalOutputTextTokenCount": i + 1,
            "completionReason": reason if i == len(pieces) - 1 else None,
            "inputTextTokenCount": n_in if i == 0 else None,
        }
        for i, p in enumerate(pieces)
    ]
    return Answer(answer, events, n_in, n_out)


def _titan_embed(model: str, body: Any) -> Answer:
    v2 = "v2" in model
    allowed = {"inputText", "dimensions", "normalize", "embeddingTypes"} if v2 else {"inputText"}
    body = _keys(body, allowed, ("inputText",))
    dims = body.get("dimensions", 1024) if v2 else 1536
    if v2 and dims not in (256, 512, 1024):
        raise _invalid("Malformed input request: #/dimensions: must be one of 256, 512, 1024")
    n_in = _words(body["inputText"])
    return Answer({"embedding": vector(body["inputText"], dims), "inputTextTokenCount": n_in}, [], n_in, 0)


def _nova(model: str, body: Any) -> Answer:
    body = _keys(
        body, {"schemaVersion", "system", "messages", "inferenceConfig", "toolConfig"}, ("messages",)
    )
    config = _keys(
        body.get("inferenceConfig") or {}, {"maxTokens", "temperature", "topP", "topK", "stopSequences"}
    )
    messages = body["messages"]
    if not messages or messages[0].get("role") != "user":
        raise _invalid(
            "A conversation must start with a user message. "
            "Try again with a conversation that starts with a user message."
        )
    for a, b in itertools.pairwise(messages):
        if a.get("role") == b.get("role"):
            raise _invalid("A conversation must alternate between user and assistant roles.")
    for m in messages:
        if m.get("role") not in ("user", "assistant") or not isinstance(m.get("content"), list):
            raise _invalid(
                "Malformed input request: messages must have role user|assistant and a content list"
            )
    last = " ".join(c.get("text", "") for c in messages[-1]["content"])
    text, why = _cut("You said: " + last, config.get("maxTokens"), config.get("stopSequences"))
    reason = {"stop": "end_turn", "stop_sequence": "end_turn", "length": "max_tokens"}[why]
    n_in = sum(_words(c.get("text", "")) for m in messages for c in m["content"]) + sum(
        _words(s.get("text", "")) for s in body.get("system") or []
    )
    n_out = _words(text)
    usage = {"inputTokens": n_in, "outputTokens": n_out, "totalTokens": n_in + n_out}
    answer = {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": reason,
        "usage": usage,
    }
    events: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    events += [{"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}} for p in _pieces(text)]
    events += [
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": reason}},
        {"metadata": {"usage": usage}},
    ]
    return Answer(answer, events, n_in, n_out)


_COMMAND_R = {
    "message",
    "chat_history",
    "preamble",
    "max_tokens",
    "temperature",
    "p",
    "k",
    "stop_sequences",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "documents",
    "tools",
    "tool_results",
    "search_queries_only",
    "prompt_truncation",
    "return_prompt",
    "raw_prompting",
}


def _command_r(model: str, body: Any) -> Answer:
    body = _keys(body, _COMMAND_R, ("message",))
    for turn in body.get("chat_history") or []:
        if turn.get("role") not in ("USER", "CHATBOT", "SYSTEM", "TOOL") or not isinstance(
            turn.get("message"), str
        ):
            raise _invalid(
                "Malformed input request: #/chat_history: role must be USER, CHATBOT, SYSTEM or TOOL"
            )
    if not 0 <= body.get("temperature", 0) <= 1:
        raise _invalid("Malformed input request: #/temperature: must be at most 1")
    text, why = _cut("You said: " + body["message"], body.get("max_tokens"), body.get("stop_sequences"))
    reason = "MAX_TOKENS" if why == "length" else "COMPLETE"
    n_in = (
        _words(body["message"])
        + sum(_words(t["message"]) for t in body.get("chat_history") or [])
        + _words(body.get("preamble", ""))
    )
    n_out = _words(text)
    generation = str(uuid.uuid4())
    history = [
        *(body.get("chat_history") or []),
        {"role": "USER", "message": body["message"]},
        {"role": "CHATBOT", "message": text},
    ]
    answer = {
        "response_id": str(uuid.uuid4()),
        "text": text,
        "generation_id": generation,
        "chat_history": history,
        "finish_reason": reason,
    }
    events: list[dict[str, Any]] = [
        {"is_finished": False, "event_type": "stream-start", "generation_id": generation}
    ]
    events += [{"is_finished": False, "event_type": "text-generation", "text": p} for p in _pieces(text)]
    events.append(
        {"is_finished": True, "event_type": "stream-end", "finish_reason": reason, "response": answer}
    )
    return Answer(answer, events, n_in, n_out)


_COMMAND = {
    "prompt",
    "temperature",
    "p",
    "k",
    "max_tokens",
    "stop_sequences",
    "return_likelihoods",
    "stream",
    "num_generations",
    "logit_bias",
    "truncate",
}


def _command(model: str, body: Any) -> Answer:
    body = _keys(body, _COMMAND, ("prompt",))
    prompt = body["prompt"]
    users = [line[len("User: ") :] for line in prompt.split("\n") if line.startswith("User: ")]
    text, why = _cut(
        "You said: " + (users[-1] if users else prompt), body.get("max_tokens"), body.get("stop_sequences")
    )
    reason = "MAX_TOKENS" if why == "length" else "COMPLETE"
    count = body.get("num_generations", 1)
    generations = [
        {"id": str(uuid.uuid4()), "text": text, "finish_reason": reason, "index": i} for i in range(count)
    ]
    answer = {"id": str(uuid.uuid4()), "generations": generations, "prompt": prompt}
    events: list[dict[str, Any]] = [
        {"generations": [{"text": p}], "is_finished": False} for p in _pieces(text)
    ]
    events.append(
        {"generations": [{"text": "", "finish_reason": reason}], "is_finished": True, "finish_reason": reason}
    )
    return Answer(answer, events, _words(prompt), _words(text) * count)


def _cohere_embed(model: str, body: Any) -> Answer:
    body = _keys(
        body, {"texts", "input_type", "truncate", "embedding_types", "images"}, ("texts", "input_type")
    )
    texts = body["texts"]
    if not isinstance(texts, list) or not 1 <= len(texts) <= 96:
        raise _invalid("Malformed input request: #/texts: expected between 1 and 96 items")
    if body["input_type"] not in ("search_document", "search_query", "classification", "clustering"):
        raise _invalid("Malformed input request: #/input_type: not a valid enum value")
    vectors = [vector(t, 1024) for t in texts]
    by_type = body.get("embedding_types")
    embeddings: Any = {"float": vectors} if by_type else vectors
    response_type = "embeddings_by_type" if by_type else "embeddings_floats"
    answer = {
        "embeddings": embeddings,
        "id": str(uuid.uuid4()),
        "response_type": response_type,
        "texts": texts,
    }
    return Answer(answer, [], sum(_words(t) for t in texts), 0)


def _jamba(model: str, body: Any) -> Answer:
    body = _keys(
        body,
        {
            "messages",
            "max_tokens",
            "temperature",
            "top_p",
            "stop",
            "n",
            "tools",
            "response_format",
            "documents",
            "frequency_penalty",
            "presence_penalty",
        },
        ("messages",),
    )
    for m in body["messages"]:
        if m.get("role") not in ("system", "user", "assistant", "tool") or not isinstance(
            m.get("content", ""), str | None
        ):
            raise _invalid(
                "Malformed input request: #/messages: role must be system|user|assistant|tool, "
                "content a string"
            )
    last = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
    text, why = _cut(
        "You said: " + last,
        body.get("max_tokens"),
        body.get("stop") if isinstance(body.get("stop"), list) else None,
    )
    reason = "length" if why == "length" else "stop"
    n_in, n_out = sum(_words(m.get("content") or "") for m in body["messages"]), _words(text)
    usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
    id_ = f"chatcmpl-{uuid.uuid4().hex[:16]}"
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text, "tool_calls": None},
            "finish_reason": reason,
        }
        for i in range(body.get("n", 1))
    ]
    answer = {
        "id": id_,
        "choices": choices,
        "usage": usage,
        "meta": {"requestDurationMillis": 12},
        "model": "jamba-1.5-mini",
    }
    events: list[dict[str, Any]] = [
        {"id": id_, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
    ]
    events += [
        {"id": id_, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
        for p in _pieces(text)
    ]
    events.append(
        {"id": id_, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}], "usage": usage}
    )
    return Answer(answer, events, n_in, n_out)


#: (model id prefix, family), first match wins; a cross-region prefix (``us.``) is ignored.
MODELS: list[tuple[str, Callable[[str, Any], Answer]]] = [
    ("anthropic.claude", _claude),
    ("amazon.titan-text", _titan_text),
    ("amazon.titan-embed", _titan_embed),
    ("amazon.nova", _nova),
    ("cohere.command-r", _command_r),
    ("cohere.command", _command),
    ("cohere.embed", _cohere_embed),
    ("ai21.jamba", _jamba),
]


def family_of(model: str) -> Callable[[str, Any], Answer] | None:
    bare = re.sub(r"^(us|eu|apac|global|us-gov)\.", "", model.rsplit("/", 1)[-1])
    return next((f for prefix, f in MODELS if bare.startswith(prefix)), None)


# ---- the server -----------------------------------------------------------------------------------
@dataclass
class Received:
    path: str
    raw_path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeBedrock:
    """The double; ``with FakeBedrock() as fake:`` serves it at ``fake.url``.

    Knobs: :meth:`fail` (the next answers are Bedrock errors), ``faults.slow(s)``,
    ``stream_exception`` (an exception frame, e.g. ``throttlingException``, after the second
    chunk of the next streams), ``corrupt_stream`` (a bit flipped in the second frame).
    ``received`` lists every request, newest last.
    """

    key_id: str = ACCESS_KEY_ID
    secret: str = SECRET_ACCESS_KEY
    region: str = REGION
    session_token: str | None = None
    faults: Faults = field(default_factory=lambda: Faults(error_body))
    received: list[Received] = field(default_factory=list)
    stream_exception: str | None = None
    corrupt_stream: bool = False

    def __post_init__(self) -> None:
        routes = [
            Route("/model/{model_id:path}/invoke", self._invoke, methods=["POST"]),
            Route("/model/{model_id:path}/invoke-with-response-stream", self._stream, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes)
        self.server = LoopbackServer(self.app)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeBedrock:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeBedrock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail(
        self, status: int, message: str | None = None, *, times: int = 1, kind: str | None = None
    ) -> None:
        """Answer the next ``times`` requests with Bedrock's error for ``status``."""
        kind = kind or ERROR_TYPES.get(status, "InternalServerException")
        self.faults.fail(status, message or f"fake {kind}", times=times, headers=error_headers(kind))

    def reset(self) -> None:
        self.faults.reset()
        self.received.clear()
        self.stream_exception = None
        self.corrupt_stream = False

    @property
    def last(self) -> Any:
        return self.received[-1].body

    async def _answer(self, request: Request) -> tuple[Answer | None, Response | None]:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        raw_path = (request.scope.get("raw_path") or b"").decode()
        self.received.append(Received(request.url.path, raw_path, dict(request.headers), body))
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        fault = self.faults.take()
        if fault is not None:
            return None, Response(fault.body, fault.status, fault.headers, media_type="application/json")
        try:
            check_signature(
                request,
                raw,
                key_id=self.key_id,
                secret=self.secret,
                region=self.region,
                token=self.session_token,
            )
            model = request.path_params["model_id"]
            family = family_of(model)
            if family is None:
                raise _invalid("The provided model identifier is invalid.")
            if body is None:
                raise _invalid("Malformed input request, please reformat your input and try again.")
            return family(model, body), None
        except Refused as exc:
            return None, Response(
                error_body(exc.status, exc.message),
                exc.status,
                error_headers(exc.kind),
                media_type="application/json",
            )

    def _headers(self, answer: Answer) -> dict[str, str]:
        return {
            "x-amzn-requestid": str(uuid.uuid4()),
            "x-amzn-bedrock-invocation-latency": "12",
            "x-amzn-bedrock-input-token-count": str(answer.input_tokens),
            "x-amzn-bedrock-output-token-count": str(answer.output_tokens),
        }

    async def _invoke(self, request: Request) -> Response:
        answer, refusal = await self._answer(request)
        if refusal is not None:
            return refusal
        assert answer is not None
        return JSONResponse(answer.body, headers=self._headers(answer))

    async def _stream(self, request: Request) -> Response:
        answer, refusal = await self._answer(request)
        if refusal is not None:
            return refusal
        assert answer is not None
        if not answer.events:
            return Response(
                error_body(400, "The model is unsupported for streaming."),
                400,
                error_headers("ValidationException"),
                media_type="application/json",
            )
        events = [dict(e) for e in answer.events]
        events[-1]["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": answer.input_tokens,
            "outputTokenCount": answer.output_tokens,
            "invocationLatency": 12,
            "firstByteLatency": 3,
        }
        headers = {"x-amzn-requestid": str(uuid.uuid4()), "x-amzn-bedrock-content-type": "application/json"}
        return StreamingResponse(
            _frames(events, self.stream_exception, self.corrupt_stream),
            headers=headers,
            media_type="application/vnd.amazon.eventstream",
        )


async def _frames(events: list[dict[str, Any]], exception: str | None, corrupt: bool) -> AsyncIterator[bytes]:
    for i, event in enumerate(events):
        data = chunk_frame(event)
        if corrupt and i == 1:  # one flipped payload bit: the message CRC no longer matches
            data = data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]
        # split a frame across writes now and then, as TCP may
        half = len(data) // 2 if i % 3 == 1 else len(data)
        yield data[:half]
        if half < len(data):
            await asyncio.sleep(0)
            yield data[half:]
        if exception is not None and i == 1:
            yield exception_frame(exception, f"fake {exception}")
            return
        await asyncio.sleep(0)
