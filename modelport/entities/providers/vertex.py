"""Google Cloud Vertex AI (``google-cloud-vertex-ai``, block ``google_cloud_vertex_ai_config``).

=====================  =================================================================
task                   Vertex AI call (``{base}/v1/projects/{project_id}/locations/{region}/
                       publishers/google/models/{model}``)
=====================  =================================================================
``llm/v1/chat``        ``:generateContent``; streaming ``:streamGenerateContent?alt=sse``
                       (Gemini; translation in ``gemini.py``)
``llm/v1/completions`` the same, with each prompt as the only user message
``llm/v1/embeddings``  ``:predict`` with ``instances: [{"content": ...}]`` (text-embedding
                       and gemini-embedding models)
=====================  =================================================================

``base`` is ``https://{region}-aiplatform.googleapis.com`` (``https://aiplatform.googleapis.com``
for region ``global``), or the server's ``vertex_base_url`` setting. The block's ``private_key`` is a
service-account key file (JSON); requests carry an OAuth access token obtained with it
from the key's ``token_uri`` through google-auth, cached until five minutes before it
expires (:class:`TokenSource`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from typing import Any, ClassVar

import google.auth.exceptions
import google.auth.transport.requests
import httpx
import orjson
import requests
from google.oauth2 import service_account

from modelport.entities.providers.base import ProviderContext, credential
from modelport.entities.providers.gemini import GeminiChat
from modelport.entities.providers.http import json_of, send
from modelport.errors import (
    BadGateway,
    DeadlineExceeded,
    InvalidParameterValue,
    PermissionDenied,
    TemporarilyUnavailable,
)
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS, embeddings_response, inputs_of

__all__ = ["TokenSource", "VertexProvider", "embed_to_vertex", "token_source"]

NAME = "google-cloud-vertex-ai"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
#: A cached token is used until this many seconds before it expires.
REFRESH_MARGIN = 300.0
#: Instances per ``:predict`` call: text-embedding models take up to 250, gemini-embedding one.
EMBED_BATCH = 250


class TokenSource:
    """OAuth access tokens for one service-account key.

    google-auth refreshes synchronously (HTTP through ``requests``), so a refresh runs in a
    worker thread; a thread lock lets one refresh run at a time, and callers that waited
    for it take its token. The token is reused until :data:`REFRESH_MARGIN` before expiry.
    """

    def __init__(self, info: dict[str, Any], timeout: float) -> None:
        try:
            self.credentials = service_account.Credentials.from_service_account_info(
                info, scopes=list(SCOPES)
            )
        except (ValueError, KeyError) as exc:
            raise PermissionDenied(
                f"The endpoint's private_key is not a usable service-account key: {exc}"
            ) from None
        self.email = str(info.get("client_email", ""))
        self.timeout = timeout
        self._lock = threading.Lock()
        self._session: requests.Session | None = None

    def _fresh(self) -> str | None:
        creds = self.credentials
        if not creds.token or creds.expiry is None:
            return None
        left = (creds.expiry - dt.datetime.now(dt.UTC).replace(tzinfo=None)).total_seconds()
        return str(creds.token) if left > REFRESH_MARGIN else None

    def _refresh(self) -> str:
        with self._lock:
            token = self._fresh()
            if token is not None:
                return token
            if self._session is None:
                self._session = requests.Session()
            request = _TimedRequest(self._session, self.timeout)
            try:
                self.credentials.refresh(request)
            except google.auth.exceptions.RefreshError as exc:
                what = f"Could not get a Google access token for {self.email}: {exc}"
                if getattr(exc, "retryable", False):
                    raise TemporarilyUnavailable(what, retry_after=1) from None
                raise PermissionDenied(f"{what} (check the private_key configured on the endpoint)") from None
            except google.auth.exceptions.TransportError as exc:
                if "timed out" in str(exc).lower() or "timeout" in str(exc).lower():
                    raise DeadlineExceeded(f"Google's token endpoint did not answer in time: {exc}") from None
                raise BadGateway(f"Could not reach Google's token endpoint: {exc}") from None
            return str(self.credentials.token)

    async def token(self) -> str:
        """A valid access token: the cached one, or a new one."""
        return self._fresh() or await asyncio.to_thread(self._refresh)

    def forget(self, token: str) -> None:
        """Drop ``token`` if it is still the cached one (Google refused it before its expiry:
        revoked, or the key was disabled), so the next query gets a new one."""
        with self._lock:
            if self.credentials.token == token:
                self.credentials.token = None


class _TimedRequest:
    """google-auth's ``requests`` transport with a timeout on every call (its default is 120 s)."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self._request = google.auth.transport.requests.Request(session)
        self._timeout = timeout

    def __call__(
        self, url: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any
    ) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return self._request(url, method=method, body=body, headers=headers, **kwargs)


#: Token sources by key fingerprint, shared by every endpoint with that key; a rotated key
#: gets a new source, and the least recently used beyond :data:`_MAX_SOURCES` are dropped.
_SOURCES: OrderedDict[str, TokenSource] = OrderedDict()
_SOURCES_LOCK = threading.Lock()
_MAX_SOURCES = 64


def token_source(key_json: str, timeout: float) -> TokenSource:
    """The shared :class:`TokenSource` of a service-account key (its JSON text)."""
    fingerprint = hashlib.sha256(key_json.encode()).hexdigest()
    with _SOURCES_LOCK:
        source = _SOURCES.get(fingerprint)
        if source is not None:
            _SOURCES.move_to_end(fingerprint)
            return source
    try:
        info = orjson.loads(key_json)
    except orjson.JSONDecodeError:
        raise PermissionDenied(
            "The endpoint's private_key must be a service-account key file (JSON), "
            "as downloaded from Google Cloud."
        ) from None
    if not isinstance(info, dict):
        raise PermissionDenied(
            "The endpoint's private_key must be a service-account key file (a JSON object)."
        )
    source = TokenSource(info, timeout)
    with _SOURCES_LOCK:
        source = _SOURCES.setdefault(fingerprint, source)
        while len(_SOURCES) > _MAX_SOURCES:
            _SOURCES.popitem(last=False)
    return source


def embed_to_vertex(body: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """The ``:predict`` body of a text-embedding model; ``extra_params`` ``task_type`` and
    ``title`` go into every instance, the others (``autoTruncate``...) into ``parameters``."""
    extra = dict(body.get("extra_params") or {})
    instance_extra = {k: extra.pop(k) for k in ("task_type", "title") if k in extra}
    parameters: dict[str, Any] = {}
    if body.get("dimensions") is not None:
        parameters["outputDimensionality"] = body["dimensions"]
    parameters.update(extra)
    out: dict[str, Any] = {"instances": [{"content": t, **instance_extra} for t in texts]}
    if parameters:
        out["parameters"] = parameters
    return out


class VertexProvider(GeminiChat):
    """Gemini and text-embedding models on Vertex AI, with service-account OAuth."""

    provider: ClassVar[str] = NAME
    service: ClassVar[str] = "Vertex AI"
    tasks: ClassVar[frozenset[str]] = frozenset({CHAT, COMPLETIONS, EMBEDDINGS})
    streaming: ClassVar[frozenset[str]] = frozenset({CHAT, COMPLETIONS})

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        project, region = ctx.config.get("project_id"), ctx.config.get("region")
        if not project or not region:
            raise InvalidParameterValue("google_cloud_vertex_ai_config needs 'project_id' and 'region'.")
        host = (
            "https://aiplatform.googleapis.com"
            if region == "global"
            else f"https://{region}-aiplatform.googleapis.com"
        )
        base = ctx.base_url("vertex", host)
        model = (
            ctx.model
            if ctx.model.startswith(("publishers/", "endpoints/"))
            else f"publishers/google/models/{ctx.model}"
        )
        self.url = f"{base}/v1/projects/{project}/locations/{region}/{model}"

    async def _post(self, url: str, payload: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        """POST with a bearer token; a token Google refuses is dropped from the cache."""
        key = credential(self.ctx.config, "private_key", self.ctx.resolve)
        if not key:
            raise PermissionDenied("The endpoint's google_cloud_vertex_ai_config has no private_key.")
        source = token_source(key, self.ctx.timeout)
        token = await source.token()
        headers = {
            "authorization": f"Bearer {token}",
            "accept": "text/event-stream" if stream else "application/json",
        }
        try:
            return await send(self.ctx, NAME, "POST", url, headers=headers, json=payload, stream=stream)
        except PermissionDenied:
            source.forget(token)
            raise

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = inputs_of(body)
        size = 1 if "gemini-embedding" in self.ctx.model else EMBED_BATCH
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        answers = await asyncio.gather(*(self._embed(body, batch) for batch in batches))
        vectors = [v for batch_vectors, _ in answers for v in batch_vectors]
        return embeddings_response(self.ctx.endpoint, vectors, sum(tokens for _, tokens in answers))

    async def _embed(self, body: dict[str, Any], texts: list[str]) -> tuple[list[list[float]], int]:
        response = await self._post(f"{self.url}:predict", embed_to_vertex(body, texts))
        predictions = json_of(NAME, response).get("predictions")
        if not isinstance(predictions, list) or len(predictions) != len(texts):
            raise BadGateway(f"Provider '{NAME}' answered :predict without one prediction per input.")
        vectors: list[list[float]] = []
        tokens = 0
        for prediction in predictions:
            embedding = prediction.get("embeddings") or {}
            values = embedding.get("values")
            if not isinstance(values, list):
                raise BadGateway(f"Provider '{NAME}' answered :predict without embeddings.values.")
            vectors.append(values)
            tokens += int((embedding.get("statistics") or {}).get("token_count") or 0)
        return vectors, tokens
