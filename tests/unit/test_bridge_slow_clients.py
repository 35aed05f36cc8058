"""Hostile and slow clients: the bridge frees the connection and keeps serving everyone else."""

from __future__ import annotations

import asyncio
import time

from connector.providers.gameball import signature_digest
from tests.support import test_secrets
from tests.unit.test_bridge import (
    GB_BODY,
    FakeProducer,
    bridge,
    front,  # noqa: F401  (both HTTP front ends)
    settings,
)

SECRET = test_secrets()["gameball"]["secret_key"]


def _signed_request(body: bytes = GB_BODY) -> bytes:
    sig = signature_digest(body, SECRET).hex()
    return (
        b"POST /webhooks/gameball HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"X-GB-Signature: {sig}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def _status(reader: asyncio.StreamReader) -> int:
    line = await asyncio.wait_for(reader.readline(), 10)
    return int(line.split()[1])


async def _closed(reader: asyncio.StreamReader, timeout: float = 5) -> bool:
    """True once the server closed the connection (EOF after whatever it sent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        if not chunk:
            return True
    return False


def test_trickled_body_gets_408_and_others_are_served_meanwhile() -> None:
    async def run() -> None:
        producer = FakeProducer()
        async with bridge(settings(CONNECTOR_BODY_TIMEOUT_MS="600"), producer) as client:
            host, port = client.server.host, client.server.port
            slow_r, slow_w = await asyncio.open_connection(host, port)
            sig = signature_digest(GB_BODY, SECRET).hex()
            slow_w.write(
                b"POST /webhooks/gameball HTTP/1.1\r\nHost: x\r\n"
                + f"X-GB-Signature: {sig}\r\nContent-Length: {len(GB_BODY)}\r\n\r\n".encode()
                + GB_BODY[:5]
            )
            await slow_w.drain()
            # While the slow client trickles, a normal delivery goes through at once.
            started = time.monotonic()
            fast_r, fast_w = await asyncio.open_connection(host, port)
            fast_w.write(_signed_request())
            await fast_w.drain()
            assert await _status(fast_r) == 200
            assert time.monotonic() - started < 0.5
            for i in range(5, 15):  # one byte every 100 ms: never finishes within 600 ms
                slow_w.write(GB_BODY[i : i + 1])
                await slow_w.drain()
                await asyncio.sleep(0.1)
            assert await _status(slow_r) == 408
            assert await _closed(slow_r)
            assert len(producer.records) == 1  # only the complete, verified delivery
            fast_w.close()
            slow_w.close()

    asyncio.run(run())


def test_never_ending_chunked_body_is_cut_off_at_the_cap() -> None:
    async def run() -> None:
        producer = FakeProducer()
        async with bridge(settings(CONNECTOR_MAX_BODY_BYTES="4096"), producer) as client:
            r, w = await asyncio.open_connection(client.server.host, client.server.port)
            w.write(
                b"POST /webhooks/gameball HTTP/1.1\r\nHost: x\r\n"
                b"X-GB-Signature: 00\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            status = None
            for _ in range(200):  # up to 200 KiB, far past the 4 KiB cap
                try:
                    w.write(b"400\r\n" + b"a" * 1024 + b"\r\n")
                    await w.drain()
                except ConnectionError:
                    break
                if r.at_eof() or r._buffer:  # noqa: SLF001 - answer arrived early
                    break
            status = await _status(r)
            assert status == 413
            assert producer.records == []
            w.close()

    asyncio.run(run())


def test_huge_headers_are_refused_without_a_crash() -> None:
    async def run() -> None:
        producer = FakeProducer()
        async with bridge(settings(), producer) as client:
            r, w = await asyncio.open_connection(client.server.host, client.server.port)
            w.write(
                b"POST /webhooks/gameball HTTP/1.1\r\nHost: x\r\nX-Big: "
                + b"a" * 100_000
                + b"\r\nContent-Length: 2\r\n\r\n{}"
            )
            await w.drain()
            status = await _status(r)
            assert 400 <= status < 500
            w.close()
            # The server still answers normal deliveries afterwards.
            r2, w2 = await asyncio.open_connection(client.server.host, client.server.port)
            w2.write(_signed_request())
            await w2.drain()
            assert await _status(r2) == 200
            w2.close()

    asyncio.run(run())
