"""A loopback Google: the OAuth token endpoint, Vertex AI and the Gemini API.

No Google SDK is installed here, so the shapes follow Google's public references
(Vertex AI REST ``v1``: ``GenerateContentRequest``/``GenerateContentResponse``,
``publishers.models.predict`` for text embeddings; Gemini API ``v1beta``:
``generateContent``, ``batchEmbedContents``; RFC 7523 for the token grant), and the fake
is strict where Google is: unknown request fields, roles and schema keywords are 400s.

- ``POST /token``: ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with an
  ``assertion`` JWT, whose RS256 signature is checked with the public key of a service
  account made by :meth:`FakeGoogle.new_service_account` (``iss``, ``aud`` (Google's own
  token URL), ``scope``, ``iat``/``exp`` checked too). Answers
  ``{"access_token", "expires_in", "token_type"}``.
- Vertex AI: ``POST /v1/projects/{p}/locations/{r}/publishers/google/models/{m}:{method}``
  for ``generateContent``, ``streamGenerateContent`` (``?alt=sse``: ``data: <response>``
  events separated by CRLF CRLF; without it one JSON array) and ``predict``, with
  ``Authorization: Bearer <a token from /token>``.
- Gemini API (for the ``palm`` provider): ``POST /v1beta/models/{m}:{method}`` for
  ``generateContent``, ``streamGenerateContent``, ``batchEmbedContents``, with
  ``x-goog-api-key``; a wrong key is 400 ``API_KEY_INVALID``, as Google answers it.
- Errors: ``{"error": {"code", "message", "status"}}``.

``inlineData`` parts must hold an image ``mimeType`` and base64 ``data``, ``fileData``
parts an image ``mimeType`` and an https (or, on Vertex AI, ``gs://``) ``fileUri``
(:func:`image_parts` lists a body's). The reply is ``echo: <last user text>`` (a last image
part heard as ``[inlineData <mime>]`` or ``[fileData <mime> <uri>]``) unless a test sets
:attr:`FakeGoogle.reply_text`, or :attr:`FakeGoogle.function_call` (with tools in the
request). Tokens are words.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.http_fixture import Faults, LoopbackServer

API_KEY = "AIza-test-key"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
#: The ``aud`` of a grant assertion: Google's token endpoint, whatever URL the key's token_uri names.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
EMBED_DIMENSION = 4
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_REQUEST_FIELDS = {
    "contents",
    "systemInstruction",
    "generationConfig",
    "tools",
    "toolConfig",
    "safetySettings",
    "labels",
    "cachedContent",
}
_GENERATION_FIELDS = {
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "responseModalities",
    "mediaResolution",
}
_PART_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}
_SCHEMA_FIELDS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "default",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "properties",
    "propertyOrdering",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "minimum",
    "maximum",
}
_TASK_TYPES = {
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
}


def error_body(status: int, message: str) -> bytes:
    return json.dumps(
        {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}}
    ).encode()


def _error(status: int, message: str, **extra: Any) -> Response:
    body = json.loads(error_body(status, message))
    body["error"].update(extra)
    return JSONResponse(body, status)


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _words(text: str) -> int:
    return len(text.split())


def embedding_of(text: str, dimension: int = EMBED_DIMENSION) -> list[float]:
    """The fake's deterministic vector for ``text``."""
    base = [float(len(text)), float(_words(text)), float(sum(map(ord, text)) % 89), 0.5]
    return [base[i % len(base)] + i // len(base) for i in range(dimension)]


def image_parts(body: Any) -> list[dict[str, Any]]:
    """The ``inlineData`` and ``fileData`` parts of every content of a generateContent body."""
    return [
        part
        for content in body.get("contents") or []
        for part in content.get("parts") or []
        if "inlineData" in part or "fileData" in part
    ]


def _media_problem(part: dict[str, Any], where: str, vertex: bool) -> str | None:
    """What Google says of a malformed ``inlineData`` (``mimeType`` and base64 ``data``) or
    ``fileData`` (``mimeType`` and a ``fileUri``: https, or gs:// on Vertex AI) part."""
    if "inlineData" in part:
        blob = part["inlineData"]
        if not isinstance(blob, dict) or set(blob) != {"mimeType", "data"}:
            return f"{where}.inline_data must hold exactly mime_type and data"
        if not str(blob["mimeType"]).startswith("image/"):
            return f"Unsupported MIME type: {blob['mimeType']}"
        try:
            base64.b64decode(blob["data"], validate=True)
        except (ValueError, TypeError):
            return f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
    if "fileData" in part:
        ref = part["fileData"]
        if not isinstance(ref, dict) or set(ref) != {"mimeType", "fileUri"}:
            return f"{where}.file_data must hold exactly mime_type and file_uri"
        schemes = ("https://", "gs://") if vertex else ("https://",)
        if not str(ref["fileUri"]).startswith(schemes) or not str(ref["mimeType"]).startswith("image/"):
            return f"Invalid or unsupported file uri: {ref['fileUri']}"
    return None


class FakeGoogle:
    """The fake's state: service accounts and tokens, what it was asked, how it answers next."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.faults = Faults(error_body)
        self.token_faults = Faults(
            lambda status, message: json.dumps(
                {"error": "invalid_grant", "error_description": message}
            ).encode()
        )
        self.requests: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.token_lifetime = 3600
        self._accounts: dict[str, Any] = {}  # client_email -> (private_key_id, public key)
        self._tokens: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self.reply_text: str | None = None
        self.function_call: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.block_prompt = False
        app = Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route(
                    "/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}",
                    self._vertex,
                    methods=["POST"],
                ),
                Route("/v1beta/models/{target}", self._gemini_api, methods=["POST"]),
            ]
        )
        self.server = LoopbackServer(app)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def start(self) -> FakeGoogle:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def reset(self) -> None:
        self.faults.reset()
        self.token_faults.reset()
        self.requests.clear()
        self.token_requests.clear()
        self.token_lifetime = 3600
        self.reply_text = self.function_call = self.finish_reason = None
        self.block_prompt = False

    def revoke_tokens(self) -> None:
        """Forget every access token issued so far (they answer 401 from now on)."""
        self._tokens.clear()

    def new_service_account(self, project: str = "test-project") -> dict[str, Any]:
        """A service-account key file (as Google Cloud downloads it) whose ``token_uri`` is this fake."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        email = f"sa-{secrets.token_hex(4)}@{project}.iam.gserviceaccount.com"
        self._accounts[email] = (key_id, key.public_key())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbits(64)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com",
        }

    # ---- OAuth -------------------------------------------------------------------------------
    def _grant_problem(self, form: dict[str, str]) -> str | None:
        if form.get("grant_type") != JWT_BEARER:
            return f"Invalid grant_type: {form.get('grant_type')}"
        try:
            head, payload, signature = form["assertion"].encode().split(b".")
            header, claims = json.loads(_b64url(head)), json.loads(_b64url(payload))
        except (KeyError, ValueError):
            return "Invalid JWT: the assertion is not a JWT."
        account = self._accounts.get(claims.get("iss"))
        if header.get("alg") != "RS256" or account is None:
            return "Invalid JWT Signature."
        key_id, public_key = account
        if header.get("kid") not in (None, key_id):
            return "Invalid JWT Signature."
        try:
            public_key.verify(_b64url(signature), head + b"." + payload, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "Invalid JWT Signature."
        now = time.time()
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            return f"Invalid JWT: aud must be {GOOGLE_TOKEN_AUDIENCE}"
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return "Invalid JWT: no scope"
        if not claims.get("iat") or not claims.get("exp") or claims["iat"] > now + 300 or claims["exp"] < now:
            return (
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
            )
        if claims["exp"] - claims["iat"] > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes)."
        return None

    async def _token(self, request: Request) -> Response:
        raw = (await request.body()).decode()
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
        self.token_requests.append({"headers": dict(request.headers), "form": form})
        if self.token_faults.delay:
            await asyncio.sleep(self.token_faults.delay)
        fault = self.token_faults.take()
        if fault is not None:
            return Response(fault.body, fault.status, fault.headers, media_type="application/json")
        if request.headers.get("content-type") != "application/x-www-form-urlencoded":
            return JSONResponse({"error": "invalid_request", "error_description": "form body expected"}, 400)
        problem = self._grant_problem(form)
        if problem:
            return JSONResponse({"error": "invalid_grant", "error_description": problem}, 400)
        token = f"ya29.fake-{secrets.token_urlsafe(24)}"
        self._tokens[token] = time.time() + self.token_lifetime
        return JSONResponse(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    # ---- shared ---------------------------------------------------------------------------------
    async def _record(self, request: Request, route: str) -> tuple[dict[str, Any] | None, Response | None]:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(
            {
                "route": route,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "json": body,
                **request.path_params,
            }
        )
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        fault = self.faults.take()
        if fault is not None:
            return None, Response(fault.body, fault.status, fault.headers, media_type="application/json")
        if not isinstance(body, dict):
            return None, _error(400, "Invalid JSON payload received.")
        return body, None

    async def _vertex(self, request: Request) -> Response:
        body, refusal = await self._record(request, "vertex")
        if refusal is not None:
            return refusal
        assert body is not None
        auth = request.headers.get("authorization", "")
        expiry = self._tokens.get(auth.removeprefix("Bearer "))
        if not auth.startswith("Bearer ") or expiry is None or expiry < time.time():
            return _error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                "or other valid authentication credential.",
            )
        model, _, method = request.path_params["target"].partition(":")
        if method == "generateContent":
            return self._generate(body, model, vertex=True)
        if method == "streamGenerateContent":
            return self._stream(body, model, sse=request.query_params.get("alt") == "sse", vertex=True)
        if method == "predict":
            return self._predict(body, model)
        return _error(404, f"Method {method} not found.")

    async def _gemini_api(self, request: Request) -> Response:
        body, refusal = await self._record(request, "gemini")
        if refusal is not None:
            return refusal
        assert body is not None
        key = request.headers.get("x-goog-api-key")
        if key is None:
            return _error(
                403, "Method doesn't allow unregistered callers (callers without established identity)."
            )
        if key != self.api_key:
            details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
            return _error(400, "API key not valid. Please pass a valid API key.", details=details)
        model, _, method = request.path_params["target"].partition(":")
        if method == "generateContent":
            return self._generate(body, model, vertex=False)
        if method == "streamGenerateContent":
            return self._stream(body, model, sse=request.query_params.get("alt") == "sse", vertex=False)
        if method == "batchEmbedContents":
            return self._batch_embed(body, model)
        return _error(404, f"Method {method} not found.")

    # ---- generateContent ------------------------------------------------------------------------
    def _schema_problem(self, schema: Any, where: str) -> str | None:
        if not isinstance(schema, dict):
            return f"{where} must be an object"
        for key, value in schema.items():
            if key not in _SCHEMA_FIELDS:
                return (
                    f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
                )
            if key == "type" and not isinstance(value, str):
                return f"Invalid value at '{where}.type': must be a single type name"
            if key == "properties":
                for name, sub in value.items():
                    problem = self._schema_problem(sub, f"{where}.properties[{name}].value")
                    if problem:
                        return problem
            if key == "items":
                problem = self._schema_problem(value, f"{where}.items")
                if problem:
                    return problem
        return None

    def _invalid(self, body: dict[str, Any], vertex: bool) -> str | None:
        for key in body:
            if _camel(key) not in _REQUEST_FIELDS:
                return f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "Unable to submit request because it has an empty contents field."
        for i, content in enumerate(contents):
            if content.get("role") not in ("user", "model"):
                return f"Please use a valid role: user, model. (contents[{i}].role={content.get('role')!r})"
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                return f"Unable to submit request because contents[{i}] has no parts."
            for j, part in enumerate(parts):
                fields = {_camel(k) for k in part} - {"thought", "thoughtSignature"}
                if len(fields) != 1 or not fields <= _PART_FIELDS:
                    return f"contents[{i}].parts[{j}] must hold exactly one of {sorted(_PART_FIELDS)}"
                media = _media_problem(part, f"contents[{i}].parts[{j}]", vertex)
                if media:
                    return media
                if "functionCall" in part:
                    call, value = part["functionCall"], part["functionCall"].get("args", {})
                elif "functionResponse" in part:
                    call, value = part["functionResponse"], part["functionResponse"].get("response")
                else:
                    continue
                if not call.get("name") or not isinstance(value, dict):
                    return f"contents[{i}].parts[{j}]: a function call or response needs a name and an object"
        system = body.get("systemInstruction")
        if system is not None and not isinstance(system.get("parts"), list):
            return "systemInstruction.parts must be a list"
        for key in body.get("generationConfig") or {}:
            if _camel(key) not in _GENERATION_FIELDS:
                return f"Invalid JSON payload received. Unknown name \"{key}\" at 'generation_config'."
        for t, tool in enumerate(body.get("tools") or []):
            for d, decl in enumerate(tool.get("functionDeclarations") or []):
                if not decl.get("name"):
                    return f"tools[{t}].function_declarations[{d}].name is required"
                if "parameters" in decl:
                    problem = self._schema_problem(
                        decl["parameters"], f"tools[{t}].function_declarations[{d}].parameters"
                    )
                    if problem:
                        return problem
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
        if mode is not None and mode not in ("AUTO", "ANY", "NONE", "VALIDATED"):
            return f"Invalid value at 'tool_config.function_calling_config.mode' ({mode})"
        return None

    def _answer(self, body: dict[str, Any], model: str, vertex: bool) -> dict[str, Any]:
        """The whole ``GenerateContentResponse`` the fake gives for ``body``."""
        contents = body["contents"]
        system_parts = (body.get("systemInstruction") or {}).get("parts") or []
        prompt_words = sum(_words(str(p.get("text", ""))) for c in contents for p in c["parts"]) + sum(
            _words(str(p.get("text", ""))) for p in system_parts
        )
        config = body.get("generationConfig") or {}
        n = int(config.get("candidateCount") or 1)
        last = contents[-1]["parts"][-1]
        meta: dict[str, Any] = {"modelVersion": f"{model}-001", "responseId": uuid.uuid4().hex[:22]}
        if vertex:
            meta["createTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        if self.block_prompt:
            return {
                "promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": prompt_words, "totalTokenCount": prompt_words},
                **meta,
            }
        if self.function_call is not None and body.get("tools") and "functionResponse" not in last:
            parts = [
                {
                    "functionCall": {
                        "name": self.function_call["name"],
                        "args": self.function_call.get("args", {}),
                    }
                }
            ]
            out_words, finish = 4, "STOP"
        else:
            if "functionResponse" in last:
                heard = json.dumps(last["functionResponse"]["response"], sort_keys=True)
            elif "inlineData" in last:
                heard = f"[inlineData {last['inlineData']['mimeType']}]"
            elif "fileData" in last:
                heard = f"[fileData {last['fileData']['mimeType']} {last['fileData']['fileUri']}]"
            else:
                heard = str(last.get("text", ""))
            text = self.reply_text if self.reply_text is not None else f"echo: {heard}"
            finish = self.finish_reason or "STOP"
            limit = config.get("maxOutputTokens")
            if isinstance(limit, int) and _words(text) > limit:
                text, finish = " ".join(text.split()[:limit]), "MAX_TOKENS"
            parts, out_words = [{"text": text}], _words(text)
        candidates = [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": finish,
                "index": i,
                "avgLogprobs": -0.1,
            }
            for i in range(n)
        ]
        return {
            "candidates": candidates,
            "usageMetadata": {
                "promptTokenCount": prompt_words,
                "candidatesTokenCount": out_words * n,
                "totalTokenCount": prompt_words + out_words * n,
            },
            **meta,
        }

    def _generate(self, body: dict[str, Any], model: str, vertex: bool) -> Response:
        problem = self._invalid(body, vertex)
        if problem:
            return _error(400, problem)
        return JSONResponse(self._answer(body, model, vertex))

    def _pieces(self, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The stream of ``answer``: text a word at a time, finishReason and full usage last."""
        meta = {k: answer[k] for k in ("modelVersion", "responseId", "createTime") if k in answer}
        if "candidates" not in answer:
            return [answer]
        candidate = answer["candidates"][0]
        usage = answer["usageMetadata"]
        running = {
            "promptTokenCount": usage["promptTokenCount"],
            "totalTokenCount": usage["promptTokenCount"],
        }
        parts = candidate["content"]["parts"]
        if "text" in parts[0]:
            words = parts[0]["text"].split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            bodies = [[{"text": p}] for p in pieces]
        else:
            bodies = [parts]
        events = []
        for i, piece in enumerate(bodies):
            final = i == len(bodies) - 1
            c: dict[str, Any] = {"content": {"role": "model", "parts": piece}}
            if final:
                c["finishReason"] = candidate["finishReason"]
            events.append({"candidates": [c], "usageMetadata": usage if final else running, **meta})
        return events

    def _stream(self, body: dict[str, Any], model: str, *, sse: bool, vertex: bool) -> Response:
        problem = self._invalid(body, vertex)
        if problem:
            # Vertex answers a streaming call's errors as a one-element JSON array.
            return Response(b"[" + error_body(400, problem) + b"]", 400, media_type="application/json")
        events = self._pieces(self._answer(body, model, vertex))
        if not sse:
            return JSONResponse(events)

        async def emit() -> AsyncIterator[bytes]:
            for event in events:
                yield b"data: " + json.dumps(event).encode() + b"\r\n\r\n"

        return StreamingResponse(emit(), media_type="text/event-stream")

    # ---- embeddings -----------------------------------------------------------------------------
    def _predict(self, body: dict[str, Any], model: str) -> Response:
        instances = body.get("instances")
        if not isinstance(instances, list) or not instances:
            return _error(400, "instances must be a non-empty list")
        if model.startswith("gemini-embedding") and len(instances) > 1:
            return _error(400, f"Only one instance is allowed per request for {model}.")
        if len(instances) > 250:
            return _error(400, "A maximum of 250 instances is allowed per request.")
        for i, instance in enumerate(instances):
            if set(instance) - {"content", "task_type", "title"} or not isinstance(
                instance.get("content"), str
            ):
                return _error(400, f"instances[{i}] must be {{content, task_type?, title?}}")
            if "task_type" in instance and instance["task_type"] not in _TASK_TYPES:
                return _error(400, f"Unsupported task_type {instance['task_type']!r}")
        parameters = body.get("parameters") or {}
        if set(parameters) - {"autoTruncate", "outputDimensionality"}:
            return _error(400, f"Unknown parameters {sorted(set(parameters))}")
        dimension = int(parameters.get("outputDimensionality") or EMBED_DIMENSION)
        predictions = [
            {
                "embeddings": {
                    "values": embedding_of(inst["content"], dimension),
                    "statistics": {"truncated": False, "token_count": _words(inst["content"])},
                }
            }
            for inst in instances
        ]
        chars = sum(len(inst["content"]) for inst in instances)
        return JSONResponse({"predictions": predictions, "metadata": {"billableCharacterCount": chars}})

    def _batch_embed(self, body: dict[str, Any], model: str) -> Response:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _error(400, "requests must be a non-empty list")
        if len(requests) > 100:
            return _error(
                400, "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
            )
        out = []
        for i, item in enumerate(requests):
            if item.get("model") != f"models/{model}":
                return _error(
                    400,
                    f"Model names should start with `models/`... requests[{i}].model must be models/{model}",
                )
            unknown = {_camel(k) for k in item} - {
                "model",
                "content",
                "taskType",
                "title",
                "outputDimensionality",
            }
            if unknown:
                return _error(400, f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}"')
            if "taskType" in item and item["taskType"] not in _TASK_TYPES:
                return _error(400, f"Invalid value at 'requests[{i}].task_type'")
            text = " ".join(str(p.get("text", "")) for p in (item.get("content") or {}).get("parts") or [])
            out.append(
                {"values": embedding_of(text, int(item.get("outputDimensionality") or EMBED_DIMENSION))}
            )
        return JSONResponse({"embeddings": out})
