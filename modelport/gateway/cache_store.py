"""Where cached answers live: this process's memory (:class:`LocalCache`) or Redis (:class:`RedisCache`).

Both keep entries under ``<group>:<key>``, where the group is an endpoint's cache identity
(``<endpoint id>:<identity>``, ``routing.py``): a changed config or AI gateway makes a new group,
and the old one is dropped (:meth:`retain` here, :meth:`drop_endpoint` in Redis) or expires.

- :class:`LocalCache`: an LRU bounded by bytes (``--response-cache-bytes``), entries expiring by
  their TTL; exact for one server process.
- :class:`RedisCache` (``--redis``): one ``SET ... EX ttl`` per entry, shared by every process
  and server on that Redis. It fails open: when Redis cannot be reached a lookup is a miss and
  nothing is stored (logged once per outage, counted in ``errors``).

Semantic buckets hold the newest :data:`BUCKET_SIZE` (vector, key) pairs of a bucket; a lookup
compares the query's vector (unit length) with all of them and takes the most similar one at or
above the threshold whose entry is still there. In this process the buckets' vectors have a
budget of their own, a quarter of ``--response-cache-bytes`` (least recently used bucket first).
"""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["BUCKET_SIZE", "CacheStore", "Entry", "LocalCache", "RedisCache"]

log = logging.getLogger("modelport.gateway")

#: Texts remembered per semantic bucket (the newest).
BUCKET_SIZE = 256
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class Entry:
    """A cached answer: the served entity that gave it, and its JSON body or its stream's chunks
    (each chunk's JSON)."""

    served: str
    body: bytes = b""
    chunks: tuple[bytes, ...] | None = None

    @property
    def size(self) -> int:
        return len(self.served) + len(self.body) + sum(len(c) + 4 for c in self.chunks or ())

    def encode(self) -> bytes:
        served = self.served.encode()
        head = (b"S" if self.chunks is not None else b"B") + _LEN.pack(len(served)) + served
        if self.chunks is None:
            return head + self.body
        return head + b"".join(_LEN.pack(len(c)) + c for c in self.chunks)

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        (n,) = _LEN.unpack_from(data, 1)
        served = data[5 : 5 + n].decode()
        rest = memoryview(data)[5 + n :]
        if data[:1] == b"B":
            return cls(served, bytes(rest))
        chunks, i = [], 0
        while i < len(rest):
            (size,) = _LEN.unpack_from(rest, i)
            chunks.append(bytes(rest[i + 4 : i + 4 + size]))
            i += 4 + size
        return cls(served, b"", tuple(chunks))


def _pair_size(pair: tuple[np.ndarray, str, float]) -> int:
    return int(pair[0].nbytes) + len(pair[1]) + 64


def unit(vector: list[float]) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class CacheStore(Protocol):
    async def get(self, group: str, key: str) -> Entry | None: ...

    async def put(self, group: str, key: str, entry: Entry, ttl: int) -> None: ...

    async def nearest(
        self, group: str, bucket: str, vector: np.ndarray, threshold: float
    ) -> Entry | None: ...

    async def remember(self, group: str, bucket: str, key: str, vector: np.ndarray, ttl: int) -> None: ...

    def retain(self, groups: set[str]) -> None: ...

    async def drop_endpoint(self, endpoint_id: str, keep: str | None) -> None: ...

    async def aclose(self) -> None: ...


class LocalCache:
    """This process's cache: LRU by bytes, TTL per entry."""

    def __init__(self, max_bytes: int, clock: Any = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, Entry]] = OrderedDict()
        self._groups: dict[str, set[str]] = {}
        self._buckets: OrderedDict[tuple[str, str], deque[tuple[np.ndarray, str, float]]] = OrderedDict()
        self.bytes = 0
        #: Bytes of the semantic buckets' vectors, bounded apart: a quarter of ``max_bytes``
        #: (the least recently used bucket goes first).
        self.bucket_bytes = 0
        self.errors = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, group: str, key: str) -> Entry | None:
        found = self._entries.get((group, key))
        if found is None:
            return None
        if found[0] <= self._clock():
            self._remove((group, key))
            return None
        self._entries.move_to_end((group, key))
        return found[1]

    async def put(self, group: str, key: str, entry: Entry, ttl: int) -> None:
        size = entry.size
        if size > self.max_bytes:
            return
        if (group, key) in self._entries:
            self._remove((group, key))
        self._entries[(group, key)] = (self._clock() + ttl, entry)
        self._groups.setdefault(group, set()).add(key)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))

    async def nearest(self, group: str, bucket: str, vector: np.ndarray, threshold: float) -> Entry | None:
        pairs = self._buckets.get((group, bucket))
        if not pairs:
            return None
        self._buckets.move_to_end((group, bucket))
        now = self._clock()
        scored = sorted(
            (
                (float(v @ vector), key)
                for v, key, expires in pairs
                if expires > now and v.shape == vector.shape
            ),
            reverse=True,
        )
        for score, key in scored:
            if score < threshold:
                break
            found = await self.get(group, key)
            if found is not None:  # else evicted: the next most similar may still be there
                return found
        return None

    async def remember(self, group: str, bucket: str, key: str, vector: np.ndarray, ttl: int) -> None:
        pairs = self._buckets.get((group, bucket))
        if pairs is None:
            pairs = self._buckets[(group, bucket)] = deque()
        self._buckets.move_to_end((group, bucket))
        if len(pairs) >= BUCKET_SIZE:
            self.bucket_bytes -= _pair_size(pairs.pop())
        pair = (vector, key, self._clock() + ttl)
        pairs.appendleft(pair)
        self.bucket_bytes += _pair_size(pair)
        while self.bucket_bytes > self.max_bytes // 4 and self._buckets:
            self._drop_bucket(next(iter(self._buckets)))

    def retain(self, groups: set[str]) -> None:
        """Drop every group not in ``groups`` (the endpoints' current identities)."""
        for group in [g for g in self._groups if g not in groups]:
            for key in list(self._groups.get(group, ())):
                self._remove((group, key))
        for bucket in [b for b in self._buckets if b[0] not in groups]:
            self._drop_bucket(bucket)

    def _drop_bucket(self, name: tuple[str, str]) -> None:
        self.bucket_bytes -= sum(_pair_size(p) for p in self._buckets.pop(name))

    async def drop_endpoint(self, endpoint_id: str, keep: str | None) -> None:
        self.retain({g for g in self._groups if not g.startswith(f"{endpoint_id}:") or g == keep})

    def _remove(self, item: tuple[str, str]) -> None:
        _, entry = self._entries.pop(item)
        self.bytes -= entry.size
        keys = self._groups.get(item[0])
        if keys is not None:
            keys.discard(item[1])
            if not keys:
                del self._groups[item[0]]

    async def aclose(self) -> None:
        return None


class RedisCache:
    """Entries in Redis under ``<prefix><group>:e:<key>``, semantic buckets as lists under
    ``<prefix><group>:b:<bucket>`` (each item: the key, 32 bytes, then the float32 vector)."""

    def __init__(self, url: str, *, prefix: str = "modelport:cache:", client: Any = None) -> None:
        import redis.asyncio as aioredis
        import redis.exceptions

        self.prefix = prefix
        self._client = client or aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
        )
        self._failures: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError, TimeoutError)
        self._down = False
        self.errors = 0

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if not self._down:
            self._down = True
            log.warning(
                "the response cache's Redis cannot be reached: caching is off until it is back: %s", exc
            )

    def _ok(self) -> None:
        if self._down:
            self._down = False
            log.info("the response cache's Redis is reachable again")

    async def get(self, group: str, key: str) -> Entry | None:
        try:
            data = await self._client.get(f"{self.prefix}{group}:e:{key}")
        except self._failures as exc:
            self._failed(exc)
            return None
        self._ok()
        return None if data is None else Entry.decode(data)

    async def put(self, group: str, key: str, entry: Entry, ttl: int) -> None:
        try:
            await self._client.set(f"{self.prefix}{group}:e:{key}", entry.encode(), ex=ttl)
        except self._failures as exc:
            self._failed(exc)
            return
        self._ok()

    async def nearest(self, group: str, bucket: str, vector: np.ndarray, threshold: float) -> Entry | None:
        try:
            items = await self._client.lrange(f"{self.prefix}{group}:b:{bucket}", 0, BUCKET_SIZE - 1)
        except self._failures as exc:
            self._failed(exc)
            return None
        if not items:
            return None
        width = 32 + vector.nbytes  # a vector of another width (the embedding model changed) is skipped
        items = [item for item in items if len(item) == width]
        if not items:
            return None
        keys = [item[:32].decode() for item in items]
        matrix = np.frombuffer(b"".join(item[32:] for item in items), dtype=np.float32)
        scores = matrix.reshape(len(items), -1) @ vector
        for index in np.argsort(-scores):
            if scores[index] < threshold:
                break
            found = await self.get(group, keys[index])
            if found is not None:
                return found
        return None

    async def remember(self, group: str, bucket: str, key: str, vector: np.ndarray, ttl: int) -> None:
        name = f"{self.prefix}{group}:b:{bucket}"
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.lpush(name, key.encode() + vector.astype(np.float32).tobytes())
                pipe.ltrim(name, 0, BUCKET_SIZE - 1)
                pipe.expire(name, ttl)
                await pipe.execute()
        except self._failures as exc:
            self._failed(exc)

    def retain(self, groups: set[str]) -> None:
        return None  # entries of old identities are never read again and expire by their TTL

    async def drop_endpoint(self, endpoint_id: str, keep: str | None) -> None:
        """Delete the endpoint's entries of every identity but ``keep`` (after a change made by
        this process: the process that wrote a change drops what it made stale)."""
        try:
            stale = []
            async for name in self._client.scan_iter(match=f"{self.prefix}{endpoint_id}:*", count=500):
                text = name.decode() if isinstance(name, bytes) else name
                if keep is None or not text.startswith(f"{self.prefix}{keep}:"):
                    stale.append(name)
                if len(stale) >= 500:
                    await self._client.delete(*stale)
                    stale.clear()
            if stale:
                await self._client.delete(*stale)
        except self._failures as exc:
            self._failed(exc)

    async def aclose(self) -> None:
        await self._client.aclose()
