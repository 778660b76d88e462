"""The response cache's keys and stores (gateway/cache_keys.py, gateway/cache_store.py): which
requests are cached, what their keys cover, the LRU's byte bound and TTL, semantic buckets, and
the Redis store failing open (tests/redis/test_cache_redis.py: on the real Redis)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from modelport.gateway.cache_keys import deterministic, keys_for, semantic_text
from modelport.gateway.cache_store import BUCKET_SIZE, Entry, LocalCache, RedisCache, unit

CHAT = {"messages": [{"role": "user", "content": "What is MLflow?"}], "temperature": 0}


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"dataframe_split": {"columns": ["a"], "data": [[1]]}}, True),  # a custom model's
        ({"input": ["a text"]}, True),  # embeddings
        (CHAT, True),
        ({**CHAT, "temperature": 0.7}, False),
        ({**CHAT, "temperature": 0.7, "seed": 7}, True),  # sampling, but seeded
        ({"messages": CHAT["messages"]}, False),  # the provider's default temperature samples
        ({"messages": CHAT["messages"], "seed": 1}, True),
        ({"prompt": "Say hi", "temperature": 0.0}, True),
        ({**CHAT, "n": 2}, False),
        ({"prompt": "x", "temperature": 0, "best_of": 3}, False),
        ({**CHAT, "temperature": "hot"}, False),
    ],
)
def test_which_requests_are_deterministic(request_body: dict, expected: bool) -> None:
    assert deterministic(request_body) is expected


def test_keys_ignore_key_order_and_metadata_but_not_the_request_entity_scope_or_streaming() -> None:
    base = keys_for(CHAT, "gpt", "7", semantic=False)
    reordered = {"temperature": 0, "messages": [{"content": "What is MLflow?", "role": "user"}]}
    assert keys_for(reordered, "gpt", "7", semantic=False).exact == base.exact
    tagged = {**CHAT, "client_request_id": "r-1", "usage_context": {"team": "a"}}
    assert keys_for(tagged, "gpt", "7", semantic=False).exact == base.exact
    others = [
        keys_for({**CHAT, "max_tokens": 5}, "gpt", "7", semantic=False),
        keys_for(CHAT, "claude", "7", semantic=False),  # another served entity
        keys_for(CHAT, "gpt", "8", semantic=False),  # another user
        keys_for(CHAT, "gpt", "", semantic=False),  # the endpoint scope
        keys_for({**CHAT, "stream": True}, "gpt", "7", semantic=False),
    ]
    assert len({base.exact, *(k.exact for k in others)}) == 6
    assert base.bucket is None and others[-1].stream and not base.stream


def test_a_semantic_bucket_leaves_out_only_the_text() -> None:
    one = keys_for(CHAT, "gpt", "7", semantic=True)
    other = keys_for(
        {**CHAT, "messages": [{"role": "user", "content": "Tell me about MLflow"}]}, "gpt", "7", semantic=True
    )
    assert one.bucket is not None and one.bucket == other.bucket and one.exact != other.exact
    assert keys_for({**CHAT, "max_tokens": 9}, "gpt", "7", semantic=True).bucket != one.bucket
    assert keys_for({"dataframe_split": {}}, "m", "7", semantic=True).bucket is None


def test_semantic_text_of_chats_parts_and_prompts() -> None:
    parts = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}],
            },
        ]
    }
    assert semantic_text(parts) == "system: Be brief.\nuser: hi"
    assert semantic_text({"prompt": ["a", "b"]}) == "a\nb"
    assert semantic_text({"input": "x"}) is None


def test_entries_encode_bodies_and_streams() -> None:
    for entry in (Entry("gpt", b'{"a":1}'), Entry("m", b"", (b'{"x":1}', b"", b'{"y":"\\u00e9"}'))):
        assert Entry.decode(entry.encode()) == entry


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_the_local_cache_is_bounded_by_bytes_and_evicts_the_least_recently_used() -> None:
    async def main() -> None:
        cache = LocalCache(max_bytes=300)
        body = b"x" * 90
        for key in ("a", "b", "c"):
            await cache.put("g", key, Entry("m", body), ttl=60)
        assert cache.bytes == 3 * 91 and len(cache) == 3
        assert await cache.get("g", "a") is not None  # a is now the most recently used
        await cache.put("g", "d", Entry("m", body), ttl=60)
        assert await cache.get("g", "b") is None and await cache.get("g", "a") is not None
        assert cache.bytes <= 300
        await cache.put("g", "big", Entry("m", b"y" * 400), ttl=60)  # larger than the whole cache
        assert await cache.get("g", "big") is None and len(cache) == 3

    run(main())


def test_local_entries_expire_and_groups_not_retained_are_dropped() -> None:
    async def main() -> None:
        now = [1000.0]
        cache = LocalCache(max_bytes=10_000, clock=lambda: now[0])
        await cache.put("ep1:v1", "k", Entry("m", b"1"), ttl=10)
        await cache.put("ep2:v1", "k", Entry("m", b"2"), ttl=100)
        now[0] += 11
        assert await cache.get("ep1:v1", "k") is None
        assert (await cache.get("ep2:v1", "k")) == Entry("m", b"2")
        cache.retain({"ep2:v2"})  # ep2's config changed: its old group goes
        assert len(cache) == 0 and cache.bytes == 0

    run(main())


def test_local_semantic_buckets_take_the_most_similar_entry_above_the_threshold() -> None:
    async def main() -> None:
        cache = LocalCache(max_bytes=10_000)
        near, far = unit([1.0, 0.1, 0.0]), unit([0.0, 1.0, 0.0])
        await cache.put("g", "k-near", Entry("m", b"near"), ttl=60)
        await cache.put("g", "k-far", Entry("m", b"far"), ttl=60)
        await cache.remember("g", "b", "k-near", near, ttl=60)
        await cache.remember("g", "b", "k-far", far, ttl=60)
        query = unit([1.0, 0.0, 0.0])
        assert float(near @ query) > 0.99
        assert (await cache.nearest("g", "b", query, 0.95)) == Entry("m", b"near")
        assert await cache.nearest("g", "b", unit([0.0, 0.0, 1.0]), 0.95) is None
        assert await cache.nearest("g", "other", query, 0.5) is None
        for i in range(BUCKET_SIZE):
            await cache.remember("g", "b", f"k{i}", far, ttl=60)
        assert await cache.nearest("g", "b", query, 0.95) is None  # the oldest fell out

    run(main())


def test_the_redis_store_fails_open() -> None:
    async def main() -> None:
        cache = RedisCache("redis://127.0.0.1:1/0")  # nothing listens there
        try:
            await cache.put("g", "k", Entry("m", b"{}"), ttl=60)
            assert await cache.get("g", "k") is None
            assert await cache.nearest("g", "b", np.ones(3, dtype=np.float32), 0.5) is None
            assert cache.errors == 3
        finally:
            await cache.aclose()

    run(main())


def test_local_semantic_buckets_are_bounded_and_skip_an_evicted_best_match() -> None:
    async def main() -> None:
        cache = LocalCache(max_bytes=40_000)  # buckets get a quarter: 10,000 bytes
        vector = unit([1.0] + [0.0] * 383)  # a MiniLM-sized vector: 1,536 bytes
        await cache.put("g", "second", Entry("m", b"second"), ttl=60)
        await cache.remember("g", "b", "second", unit([0.9] + [0.1] * 383), ttl=60)
        await cache.remember("g", "b", "best-but-gone", vector, ttl=60)  # its entry is not there
        assert (await cache.nearest("g", "b", vector, 0.0)) == Entry("m", b"second")
        for i in range(20):
            await cache.remember("g", f"other-{i}", "k", vector, ttl=60)
        assert cache.bucket_bytes <= 10_000
        assert await cache.nearest("g", "b", vector, 0.0) is None  # the oldest bucket went first
        cache.retain(set())
        assert cache.bucket_bytes == 0

    run(main())
