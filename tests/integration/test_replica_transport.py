"""Replicas over TCP (runtime/transport.py): a real ReplicaServer on a loopback port; only a
client that proves the replica's secret gets to send frames, with or without TLS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from modelport.runtime import protocol
from modelport.runtime.replica_server import Handler, ReplicaServer
from modelport.runtime.transport import (
    HandshakeFailed,
    ReplicaAddress,
    ReplicaKeys,
    client_tls,
    open_replica,
    server_tls,
)

KEY = b"k" * 32
NAME = "ep1-r1-abcd"


class Echo(Handler):
    async def predict(self, payload: bytes) -> bytes:
        return b"echo:" + payload


@contextlib.asynccontextmanager
async def replica(keys: ReplicaKeys, tls: object = None) -> AsyncIterator[str]:
    """A replica server on 127.0.0.1 (any port) with the secret ``keys`` gives NAME."""
    server = ReplicaServer(Echo(), parent_pid=os.getppid())
    address_file = f"/tmp/mp-transport-{id(server)}"
    task = asyncio.create_task(
        server.serve(
            f"tcp://127.0.0.1:0/{NAME}",
            secret=keys.secret(NAME),
            tls=tls,  # type: ignore[arg-type]
            address_file=address_file,
        )
    )
    try:
        for _ in range(200):
            if Path(address_file).exists():
                break
            await asyncio.sleep(0.01)
        yield Path(address_file).read_text()
    finally:
        server.stop()
        await asyncio.wait_for(task, 5)
        Path(address_file).unlink(missing_ok=True)


async def predict(address: str, keys: ReplicaKeys, body: bytes) -> tuple[int, bytes]:
    reader, writer = await open_replica(address, keys)
    try:
        writer.write(protocol.encode(7, protocol.PREDICT, body))
        request_id, kind, payload = await protocol.read_frame(reader)
        assert request_id == 7
        return kind, payload
    finally:
        writer.close()


def test_addresses_round_trip() -> None:
    tcp = ReplicaAddress.parse("tcp://10.0.0.5:40123/ep-r1-x")
    assert (tcp.host, tcp.port, tcp.name, tcp.is_tcp) == ("10.0.0.5", 40123, "ep-r1-x", True)
    assert str(tcp) == "tcp://10.0.0.5:40123/ep-r1-x"
    v6 = ReplicaAddress.parse("tcp://[::1]:9/n")
    assert (v6.host, str(v6)) == ("::1", "tcp://[::1]:9/n")
    unix = ReplicaAddress.parse("/run/mp/ep-r1.sock")
    assert (unix.is_tcp, unix.path, str(unix)) == (False, "/run/mp/ep-r1.sock", "/run/mp/ep-r1.sock")
    with pytest.raises(ValueError):
        ReplicaAddress.parse("tcp://nohost/x")


def test_a_client_with_the_key_is_served_over_tcp() -> None:
    async def main() -> None:
        keys = ReplicaKeys(KEY)
        async with replica(keys) as address:
            assert address.startswith("tcp://127.0.0.1:") and address.endswith(f"/{NAME}")
            assert not address.startswith("tcp://127.0.0.1:0/")
            kind, payload = await predict(address, keys, b"hi")
            assert (kind, payload) == (protocol.OK, b"echo:hi")

    asyncio.run(main())


def test_a_client_without_the_key_is_refused_before_any_frame() -> None:
    async def main() -> None:
        async with replica(ReplicaKeys(KEY)) as address:
            with pytest.raises(HandshakeFailed, match="refused"):
                await open_replica(address, ReplicaKeys(b"x" * 32))
            # Skipping the handshake: the frame is read as a (wrong) proof and the socket closed.
            host, port = address[len("tcp://") :].split("/")[0].split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(protocol.encode(1, protocol.PING) + b"\0" * 32)
            data = await asyncio.wait_for(reader.read(), 5)
            assert protocol.PONG not in data[24:]  # the hello (magic + nonce), then EOF
            assert len(data) == 24
            writer.close()

    asyncio.run(main())


def test_a_port_that_is_not_a_replica_is_named() -> None:
    async def main() -> None:
        async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 40)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(talk, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await open_replica(f"tcp://127.0.0.1:{port}/{NAME}", ReplicaKeys(KEY))
        except HandshakeFailed as exc:
            assert "not a modelport replica" in str(exc)
        else:
            raise AssertionError("an HTTP server passed for a replica")
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_a_tls_replica_is_reached_with_the_pinned_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=modelport", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )

    async def main() -> None:
        async with replica(ReplicaKeys(KEY), server_tls(str(cert), str(key))) as address:
            kind, payload = await predict(address, ReplicaKeys(KEY, client_tls(str(cert))), b"tls")
            assert (kind, payload) == (protocol.OK, b"echo:tls")
            with pytest.raises(TimeoutError):  # no TLS: each side waits for the other's hello
                await open_replica(address, ReplicaKeys(KEY), timeout=1)
            ping = await open_replica(address, ReplicaKeys(KEY, client_tls(str(cert))))
            ping[1].write(protocol.encode(3, protocol.PING))
            _, kind, stats = await protocol.read_frame(ping[0])
            assert kind == protocol.PONG and orjson.loads(stats)["requests"] == 1
            ping[1].close()

    asyncio.run(main())
