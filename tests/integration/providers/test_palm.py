"""The palm provider (served by the Gemini API) against a loopback Google."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modelport.entities.providers.palm import PalmProvider
from modelport.errors import BadRequest, PermissionDenied, RequestLimitExceeded, TemporarilyUnavailable
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS
from tests.fakes.vertex_server import API_KEY, FakeGoogle, embedding_of
from tests.integration.providers.contexts import BASE_URLS, ENDPOINT, ask

CONFIG = {"palm_api_key_plaintext": API_KEY}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeGoogle]:
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_server: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> FakeGoogle:
    fake_server.reset()
    monkeypatch.setitem(BASE_URLS, "palm", fake_server.url)
    return fake_server


def _ask(method: str, body: dict[str, Any], task: str = CHAT, **kw: Any) -> Any:
    kw.setdefault("model", "gemini-2.0-flash")
    kw.setdefault("config", CONFIG)
    return ask(PalmProvider, method, body, task=task, **kw)


def test_chat_goes_to_the_gemini_api_with_the_key_header(fake: FakeGoogle) -> None:
    answer = _ask(
        "chat", {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]}
    )
    sent = fake.requests[-1]
    assert sent["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent["headers"]["x-goog-api-key"] == API_KEY
    assert "authorization" not in sent["headers"]
    assert sent["json"] == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "S"}]},
    }
    assert answer["model"] == ENDPOINT
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "echo: hi"}
    assert answer["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}


def test_stream_chat(fake: FakeGoogle) -> None:
    chunks = _ask("chat_stream", {"messages": [{"role": "user", "content": "a b"}]})
    assert fake.requests[-1]["query"] == {"alt": "sse"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "echo: a b"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_completions(fake: FakeGoogle) -> None:
    answer = _ask("completions", {"prompt": "x y"}, task=COMPLETIONS)
    assert [c["text"] for c in answer["choices"]] == ["echo: x y"]


def test_embeddings_use_batch_embed_contents(fake: FakeGoogle) -> None:
    body = {"input": ["a b", "c"], "extra_params": {"task_type": "RETRIEVAL_DOCUMENT"}}
    answer = _ask("embeddings", body, task=EMBEDDINGS, model="text-embedding-004")
    sent = fake.requests[-1]
    assert sent["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert sent["json"] == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "a b"}]},
                "taskType": "RETRIEVAL_DOCUMENT",
            },
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "c"}]},
                "taskType": "RETRIEVAL_DOCUMENT",
            },
        ]
    }
    assert [d["embedding"] for d in answer["data"]] == [embedding_of("a b"), embedding_of("c")]
    assert answer["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


def test_a_wrong_key_is_permission_denied_though_google_says_400(fake: FakeGoogle) -> None:
    with pytest.raises(PermissionDenied, match="API key not valid"):
        _ask(
            "chat",
            {"messages": [{"role": "user", "content": "hi"}]},
            config={"palm_api_key_plaintext": "nope"},
        )


@pytest.mark.parametrize(
    ("status", "error"), [(400, BadRequest), (429, RequestLimitExceeded), (503, TemporarilyUnavailable)]
)
def test_errors(fake: FakeGoogle, status: int, error: type[Exception]) -> None:
    fake.faults.fail(status, f"message {status}")
    with pytest.raises(error, match=f"message {status}"):
        _ask("chat", {"messages": [{"role": "user", "content": "hi"}]})
