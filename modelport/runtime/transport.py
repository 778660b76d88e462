"""Where a replica listens and how the server side connects to it: a unix socket on this
machine, or TCP (replicas on a Ray cluster's nodes) behind a handshake and, optionally, TLS.

An address is a string, as the replica registry stores it (``store/replicas.py``):

- a unix socket: its path (``/run/.../ep-r1-123-4.sock``) or ``unix:<path>``;
- TCP: ``tcp://HOST:PORT/NAME``, where ``NAME`` is the replica's name (a Ray actor's name):
  the per-replica secret is derived from it.

TCP handshake, before any ``runtime/protocol.py`` frame: the replica sends :data:`MAGIC` and a
16-byte random nonce; the client answers ``HMAC-SHA256(secret, MAGIC + nonce)`` (32 bytes);
the replica compares in constant time and answers one byte, :data:`ACCEPTED`, or closes the
connection. The secret is per replica, ``HMAC-SHA256(store key, NAME)`` (:class:`ReplicaKeys`):
only processes that read the store's replica key (the servers of one modelport deployment)
can talk to a replica; the key never crosses the network, a nonce is never reused, and the
replica learns its own secret from its environment (:data:`SECRET_ENV`), not its command line.

TLS, when the server has a certificate (``--tls-certfile``): the replica serves with the same
certificate and key, and clients trust exactly that certificate (pinned, hostname not checked:
replicas listen on node addresses the certificate does not name).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = [
    "ACCEPTED",
    "MAGIC",
    "SECRET_ENV",
    "HandshakeFailed",
    "ReplicaAddress",
    "ReplicaKeys",
    "client_tls",
    "open_replica",
    "serve_replica",
    "server_tls",
]

MAGIC = b"MPRPLC01"
ACCEPTED = b"\x01"
NONCE_BYTES = 16
#: The variable that gives a TCP replica its secret (hex); the worker removes it at start.
SECRET_ENV = "MODELPORT_REPLICA_SECRET"
HANDSHAKE_SECONDS = 10.0

Connected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class HandshakeFailed(ConnectionError):
    """The replica refused this client's proof, or answered something that is not a replica."""


@dataclass(frozen=True)
class ReplicaAddress:
    scheme: str  # "unix" or "tcp"
    path: str = ""
    host: str = ""
    port: int = 0
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> ReplicaAddress:
        if text.startswith("tcp://"):
            rest = text[len("tcp://") :]
            hostport, _, name = rest.partition("/")
            host, sep, port = hostport.rpartition(":")
            if not sep or not port.isdecimal():
                raise ValueError(f"not a replica address: {text!r} (tcp://HOST:PORT/NAME)")
            return cls("tcp", host=host.strip("[]"), port=int(port), name=name)
        return cls("unix", path=text.removeprefix("unix:"))

    @property
    def is_tcp(self) -> bool:
        return self.scheme == "tcp"

    def __str__(self) -> str:
        if self.is_tcp:
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}/{self.name}"
        return self.path


class ReplicaKeys:
    """The secrets of TCP replicas, derived from the store's replica key, and the client side's
    TLS context (None: plain TCP)."""

    def __init__(self, key: bytes, tls: ssl.SSLContext | None = None) -> None:
        self._key = key
        self.tls = tls

    def secret(self, name: str) -> bytes:
        return hmac.new(self._key, name.encode(), hashlib.sha256).digest()


def _proof(secret: bytes, nonce: bytes) -> bytes:
    return hmac.new(secret, MAGIC + nonce, hashlib.sha256).digest()


def client_tls(certfile: str) -> ssl.SSLContext:
    """A client context that trusts exactly the server's certificate ``certfile``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certfile)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf itself is the trust anchor
    return context


def server_tls(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


async def open_replica(
    address: str, keys: ReplicaKeys | None = None, timeout: float = HANDSHAKE_SECONDS
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the replica at ``address``; over TCP, prove the replica's secret first."""
    where = ReplicaAddress.parse(address)
    if not where.is_tcp:
        return await asyncio.open_unix_connection(where.path)
    if keys is None:
        raise HandshakeFailed(f"no replica key to reach {address}")
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(where.host, where.port, ssl=keys.tls), timeout
    )
    try:
        hello = await asyncio.wait_for(reader.readexactly(len(MAGIC) + NONCE_BYTES), timeout)
        if not hello.startswith(MAGIC):
            raise HandshakeFailed(f"{address} is not a modelport replica")
        writer.write(_proof(keys.secret(where.name), hello[len(MAGIC) :]))
        answer = await asyncio.wait_for(reader.read(1), timeout)
        if answer != ACCEPTED:
            raise HandshakeFailed(f"the replica at {address} refused this server's proof")
    except BaseException:
        writer.close()
        raise
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def serve_replica(
    address: str, connected: Connected, *, secret: bytes | None = None, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.AbstractServer, str]:
    """Listen on ``address`` and call ``connected`` for each client (over TCP: each client that
    passed the handshake). Returns the server and the address it listens on (TCP port 0 is
    replaced by the port given)."""
    where = ReplicaAddress.parse(address)
    if not where.is_tcp:
        return await asyncio.start_unix_server(connected, path=where.path), where.path
    if not secret:
        raise ValueError(f"a TCP replica needs its secret (the {SECRET_ENV} variable)")

    async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonce = os.urandom(NONCE_BYTES)
        try:
            writer.write(MAGIC + nonce)
            proof = await asyncio.wait_for(reader.readexactly(32), HANDSHAKE_SECONDS)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            writer.close()
            return
        if not hmac.compare_digest(proof, _proof(secret, nonce)):
            writer.close()
            return
        writer.write(ACCEPTED)
        await connected(reader, writer)

    server = await asyncio.start_server(handshake, where.host, where.port, ssl=tls, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    return server, str(ReplicaAddress("tcp", host=where.host, port=port, name=where.name))
