"""The response cache's Redis store (gateway/cache_store.py) on the real Redis of this machine."""

from __future__ import annotations

import asyncio

from modelport.gateway.cache_store import Entry, RedisCache, unit


def test_the_redis_store_keeps_entries_buckets_and_drops_an_endpoints_stale_groups(
    redis_url: str, redis_prefix: str
) -> None:
    async def main() -> None:
        cache = RedisCache(redis_url, prefix=redis_prefix)
        try:
            stream = Entry("m", b"", (b'{"a":1}', b'{"b":2}'))
            await cache.put("ep:old", "k1", Entry("m", b"{}"), ttl=60)
            await cache.put("ep:new", "k2", stream, ttl=60)
            await cache.put("other:x", "k3", Entry("m", b"3"), ttl=1)
            assert (await cache.get("ep:new", "k2")) == stream
            vector = unit([0.2, 0.9, 0.1])
            await cache.remember("ep:new", "b", "k2" + "0" * 30, vector, ttl=60)
            await cache.put("ep:new", "k2" + "0" * 30, stream, ttl=60)
            assert (await cache.nearest("ep:new", "b", vector, 0.99)) == stream
            assert await cache.nearest("ep:new", "b", unit([1.0, 0.0, 0.0]), 0.99) is None
            await cache.drop_endpoint("ep", keep="ep:new")
            assert await cache.get("ep:old", "k1") is None and await cache.get("ep:new", "k2") == stream
            await asyncio.sleep(1.2)
            assert await cache.get("other:x", "k3") is None  # its TTL
            await cache.drop_endpoint("ep", keep=None)
            assert await cache.get("ep:new", "k2") is None and cache.errors == 0
        finally:
            await cache.aclose()

    asyncio.run(main())
