"""Amazon Bedrock: InvokeModel and InvokeModelWithResponseStream, signed with SigV4.

``POST {base}/model/{modelId}/invoke`` answers the model family's own JSON;
``/invoke-with-response-stream`` answers ``application/vnd.amazon.eventstream``: binary
frames (prelude, headers, payload, CRCs) whose ``chunk`` events carry
``{"bytes": <base64 of the model's own stream event>}`` and whose ``exception`` frames
carry Bedrock's errors. Frames are decoded with botocore's ``EventStreamBuffer``, which
checks both CRCs. What the bodies hold per ``bedrock_provider`` is ``bedrock_formats.py``.

Requests are signed with botocore's ``SigV4Auth`` (service ``bedrock``) from the block's
``aws_access_key_id`` / ``aws_secret_access_key`` (and optional ``aws_session_token``),
resolved per request. Without keys the provider refuses: instance profiles and
``uc_service_credential_name`` are not supported.

The base URL is ``https://bedrock-runtime.{aws_region}.amazonaws.com`` unless the server's
``bedrock_base_url`` setting names another one.
HTTP errors (``{"message"}`` with ``x-amzn-ErrorType``) go through the shared table of
``http.py``: ThrottlingException and ModelNotReadyException (429) become 429 with
``Retry-After``, AccessDenied and bad signatures (403) become 403, 5xx become 502/503.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, ParserError

from modelport.entities.providers.base import Provider, ProviderContext, credential
from modelport.entities.providers.bedrock_formats import Family, family_for
from modelport.entities.providers.http import json_of, provider_error, send, translate_transport_errors
from modelport.entities.providers.via_chat import stream_completion_via_chat, text_of
from modelport.errors import BadGateway, PermissionDenied
from modelport.spec.llm import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    chat_response,
    completion_response,
    embeddings_response,
    inputs_of,
    prompts_of,
    usage,
)

__all__ = ["BedrockProvider"]

SIGNING_NAME = "bedrock"
#: At most this many InvokeModel calls at once for one embeddings request.
EMBED_CONCURRENCY = 8

#: Exception events inside a response stream, and the HTTP status each has outside one.
STREAM_EXCEPTION_STATUS = {
    "validationException": 400,
    "throttlingException": 429,
    "modelTimeoutException": 408,
    "modelStreamErrorException": 424,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}


class BedrockProvider(Provider):
    """One Bedrock model id; the ``bedrock_provider`` picks the body family.

    ``tasks`` lists what some family serves; :meth:`tasks_for` what the family of one model
    id serves (Claude no embeddings, Titan Embed only embeddings), so that such a config is
    refused when it is written. A family asked for a task it lacks anyway (a config stored
    before that check) answers 501 ``NOT_IMPLEMENTED`` at query time.
    """

    provider = "amazon-bedrock"
    tasks = frozenset({CHAT, COMPLETIONS, EMBEDDINGS})
    streaming = frozenset({CHAT, COMPLETIONS})

    @classmethod
    def tasks_for(cls, config: Mapping[str, Any], model: str) -> frozenset[str]:
        return family_for(cls.provider, str(config.get("bedrock_provider") or ""), model).tasks

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        config = ctx.config
        self.region = str(config.get("aws_region") or "")
        self.family: Family = family_for(self.provider, str(config.get("bedrock_provider") or ""), ctx.model)
        base = ctx.base_url("bedrock", f"https://bedrock-runtime.{self.region}.amazonaws.com")
        self.model_url = f"{base}/model/{quote(ctx.model, safe='')}"

    # ---- transport ----
    def _credentials(self) -> Credentials:
        resolve = self.ctx.resolve
        key_id = credential(self.ctx.config, "aws_access_key_id", resolve)
        secret = credential(self.ctx.config, "aws_secret_access_key", resolve)
        if not key_id or not secret:
            raise PermissionDenied(
                "The endpoint's amazon_bedrock_config needs aws_access_key_id and aws_secret_access_key "
                "(instance profiles are not supported)."
            )
        return Credentials(key_id, secret, credential(self.ctx.config, "aws_session_token", resolve))

    def _signed(self, url: str, data: bytes, accept: Mapping[str, str]) -> dict[str, str]:
        """The headers of a SigV4-signed POST of ``data`` to ``url`` (sent exactly as signed)."""
        request = AWSRequest(
            method="POST", url=url, data=data, headers={"content-type": "application/json", **accept}
        )
        SigV4Auth(self._credentials(), SIGNING_NAME, self.region).add_auth(request)
        return dict(request.headers.items())

    async def _invoke(self, payload: dict[str, Any]) -> tuple[Any, httpx.Headers]:
        url = f"{self.model_url}/invoke"
        data = orjson.dumps(payload)
        headers = self._signed(url, data, {"accept": "application/json"})
        response = await send(self.ctx, self.provider, "POST", url, headers=headers, content=data)
        return json_of(self.provider, response), response.headers

    async def _events(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The model's own stream events, decoded from the event stream; closes the response."""
        url = f"{self.model_url}/invoke-with-response-stream"
        data = orjson.dumps(payload)
        headers = self._signed(url, data, {"x-amzn-bedrock-accept": "application/json"})
        response = await send(
            self.ctx, self.provider, "POST", url, headers=headers, content=data, stream=True
        )
        buffer = EventStreamBuffer()
        try:
            with translate_transport_errors():
                async for raw in response.aiter_bytes():
                    buffer.add_data(raw)
                    for message in buffer:
                        kind = message.headers.get(":message-type")
                        if kind == "event":
                            if message.headers.get(":event-type") == "chunk":
                                yield self._chunk_event(message.payload)
                            continue
                        if kind == "exception":
                            name = str(message.headers.get(":exception-type"))
                            status = STREAM_EXCEPTION_STATUS.get(name, 500)
                            raise provider_error(self.provider, status, message.payload, {})
                        raise BadGateway(
                            f"Provider '{self.provider}' sent a stream error "
                            f"{message.headers.get(':error-code')}: {message.headers.get(':error-message')}"
                        )
        except ParserError as exc:
            raise BadGateway(f"Provider '{self.provider}' sent a malformed event stream: {exc}") from None
        finally:
            await response.aclose()

    def _chunk_event(self, payload: bytes) -> dict[str, Any]:
        try:
            event = orjson.loads(base64.b64decode(orjson.loads(payload)["bytes"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise BadGateway(f"Provider '{self.provider}' streamed a chunk that is not JSON.") from None
        if not isinstance(event, dict):
            raise BadGateway(f"Provider '{self.provider}' streamed a chunk that is not an object.")
        return event

    async def _stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        translator = self.family.stream(self.ctx.endpoint)
        async for event in self._events(payload):
            for chunk in translator.feed(event):
                yield chunk
        for chunk in translator.close():
            yield chunk

    # ---- tasks ----
    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        data, headers = await self._invoke(self.family.chat_body(body))
        choices, usage_ = self.family.answer(data, headers)
        return chat_response(self.ctx.endpoint, choices, usage_)

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.family.stream(self.ctx.endpoint)  # refuses now, before the stream starts
        return self._stream(self.family.chat_body(body))

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        answers = await asyncio.gather(
            *(self._invoke(self.family.prompt_body(body, p)) for p in prompts_of(body))
        )
        texts: list[tuple[str, str | None]] = []
        prompt_tokens = completion_tokens = 0
        for data, headers in answers:
            choices, usage_ = self.family.answer(data, headers)
            texts += [(text_of(c["message"].get("content")), c["finish_reason"]) for c in choices]
            prompt_tokens += usage_["prompt_tokens"]
            completion_tokens += usage_["completion_tokens"]
        return completion_response(self.ctx.endpoint, texts, usage(prompt_tokens, completion_tokens))

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.family.stream(self.ctx.endpoint)

        def prompt_stream(chat_body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
            # via_chat hands over a chat body whose one user message is the prompt
            prompt = chat_body["messages"][0]["content"]
            return self._stream(self.family.prompt_body(chat_body, prompt))

        return stream_completion_via_chat(prompt_stream, body)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        bodies = self.family.embed_bodies(body, inputs_of(body))
        limit = asyncio.Semaphore(EMBED_CONCURRENCY)

        async def one(payload: dict[str, Any]) -> tuple[list[list[float]], int]:
            async with limit:
                data, headers = await self._invoke(payload)
            return self.family.embed_answer(data, headers)

        answers = await asyncio.gather(*(one(p) for p in bodies))
        vectors = [v for vs, _ in answers for v in vs]
        return embeddings_response(self.ctx.endpoint, vectors, sum(t for _, t in answers))
