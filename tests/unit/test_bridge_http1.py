"""HTTP/1.1 as the lean front end (connector/bridge/http1.py) speaks it, over raw sockets.

The bridge's behaviour per delivery is tested for both front ends in test_bridge.py; these are
the protocol cases aiohttp used to handle for us: pipelining, keep-alive and close, HTTP/1.0,
`Expect: 100-continue`, chunked bodies, malformed requests, the head cap, HEAD, idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from connector.bridge import http1
from connector.bridge.app import Bridge
from connector.providers.gameball import signature_digest
from tests.support import test_secrets
from tests.unit.test_bridge import GB_BODY, FakeProducer, settings

SECRET = test_secrets()["gameball"]["secret_key"]
SIG = signature_digest(GB_BODY, SECRET).hex()


def delivery(extra: str = "", body: bytes = GB_BODY, version: str = "1.1") -> bytes:
    return (
        f"POST /webhooks/gameball HTTP/{version}\r\nHost: x\r\nX-GB-Signature: {SIG}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


@contextlib.asynccontextmanager
async def server(producer: FakeProducer, **env: str) -> AsyncIterator[http1.Server]:
    srv = http1.Server(Bridge(settings(**env), producer), "127.0.0.1", 0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=2)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(1), 10) == b""


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_pipelined_requests_are_answered_in_order() -> None:
    async def go() -> None:
        producer = FakeProducer()
        async with server(producer) as srv:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(delivery() + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + delivery())
            first, second, third = [await read_answer(r) for _ in range(3)]
            assert first[0] == 200 and json.loads(first[2])["accepted"] is True
            assert second[0] == 200 and json.loads(second[2]) == {"status": "ok"}
            assert third[0] == 200
            assert json.loads(first[2])["request_id"] != json.loads(third[2])["request_id"]
            assert len(producer.records) == 2
            assert producer.records[0][2] == GB_BODY
            w.close()

    run(go())


def test_connection_close_and_http_1_0_close_after_the_answer() -> None:
    async def go() -> None:
        async with server(FakeProducer()) as srv:
            for request in (delivery("Connection: close\r\n"), delivery(version="1.0")):
                r, w = await asyncio.open_connection("127.0.0.1", srv.port)
                w.write(request)
                status, headers, _ = await read_answer(r)
                assert status == 200
                assert headers["connection"] == "close"
                assert await closed(r)
                w.close()

    run(go())


def test_expect_100_continue_gets_its_interim_answer() -> None:
    async def go() -> None:
        producer = FakeProducer()
        async with server(producer) as srv:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            head, _, body = delivery("Expect: 100-continue\r\n").partition(b"\r\n\r\n")
            w.write(head + b"\r\n\r\n")
            assert await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5) == (
                b"HTTP/1.1 100 Continue\r\n\r\n"
            )
            w.write(body)
            assert (await read_answer(r))[0] == 200
            assert producer.records[0][2] == GB_BODY
            w.close()

    run(go())


def test_chunked_body_is_verified_as_the_decoded_bytes() -> None:
    async def go() -> None:
        producer = FakeProducer()
        async with server(producer) as srv:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            half = len(GB_BODY) // 2
            chunks = b"".join(
                b"%x\r\n%s\r\n" % (len(part), part) for part in (GB_BODY[:half], GB_BODY[half:])
            )
            w.write(
                b"POST /webhooks/gameball HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                + f"X-GB-Signature: {SIG}\r\n\r\n".encode()
                + chunks
                + b"0\r\n\r\n"
            )
            assert (await read_answer(r))[0] == 200
            assert producer.records[0][2] == GB_BODY
            w.close()

    run(go())


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /webhooks/gameball HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # smuggling shape: refused
        b"POST /webhooks/gameball HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_and_the_server_goes_on(request_bytes: bytes) -> None:
    async def go() -> None:
        producer = FakeProducer()
        async with server(producer) as srv:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(request_bytes)
            status, headers, _ = await read_answer(r)
            assert status == 400
            assert headers["connection"] == "close"
            assert await closed(r)
            r2, w2 = await asyncio.open_connection("127.0.0.1", srv.port)
            w2.write(delivery())
            assert (await read_answer(r2))[0] == 200
            assert len(producer.records) == 1
            w.close()
            w2.close()

    run(go())


def test_a_head_over_the_cap_is_431_and_closed() -> None:
    async def go() -> None:
        async with server(FakeProducer()) as srv:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(b"POST /webhooks/gameball HTTP/1.1\r\nHost: x\r\n")
            for _ in range(8):  # 8 x 8 KiB of headers, never ending
                w.write(b"X-Pad: " + b"a" * 8192 + b"\r\n")
            status, _, _ = await read_answer(r)
            assert status == 431
            assert await closed(r)
            w.close()

    run(go())


def test_content_length_over_the_cap_is_413_before_the_body() -> None:
    async def go() -> None:
        producer = FakeProducer()
        async with server(producer, CONNECTOR_MAX_BODY_BYTES="2048") as srv:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(
                b"POST /webhooks/gameball HTTP/1.1\r\nHost: x\r\n"
                + f"X-GB-Signature: {SIG}\r\nContent-Length: 100000000\r\n\r\n".encode()
            )
            status, headers, body = await read_answer(r)  # answered with no body sent
            assert status == 413 and "2048" in json.loads(body)["error"]
            assert headers["connection"] == "close"
            assert producer.records == []
            w.close()

    run(go())


def test_head_and_wrong_methods_and_unknown_paths() -> None:
    async def go() -> None:
        async with server(FakeProducer()) as srv:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 ")  # no body follows a HEAD answer
            w.write(b"GET /webhooks/gameball HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = await read_answer(r)
            assert (status, headers["allow"]) == (405, "POST")
            w.write(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            status, headers, _ = await read_answer(r)
            assert (status, headers["allow"]) == (405, "GET,HEAD")
            for path in (b"/nope", b"/webhooks/", b"/webhooks/gameball/a/b", b"/webhooks//x"):
                w.write(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                status, _, body = await read_answer(r)
                assert status == 404, path
                assert "error" in json.loads(body)
            w.close()

    run(go())


def test_idle_keep_alive_connections_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "KEEPALIVE_S", 0.3)

    async def go() -> None:
        async with server(FakeProducer()) as srv:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(delivery())
            assert (await read_answer(r))[0] == 200
            assert await closed(r)  # after ~0.3 s + one sweep
            w.close()

    run(go())


def test_stop_lets_the_delivery_in_flight_finish() -> None:
    async def go() -> None:
        producer = FakeProducer()
        producer.gate = asyncio.Event()
        srv = http1.Server(Bridge(settings(), producer), "127.0.0.1", 0)
        await srv.start()
        r, w = await asyncio.open_connection("127.0.0.1", srv.port)
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", srv.port)
        w.write(delivery())
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(srv.stop(grace=5))
        await asyncio.sleep(0.1)
        assert await closed(idle_r)  # idle: closed at once
        producer.gate.set()
        status, headers, _ = await read_answer(r)
        assert status == 200  # the delivery in flight was answered, then the connection closed
        await stopping
        assert len(producer.records) == 1
        w.close()
        idle_w.close()

    run(go())
