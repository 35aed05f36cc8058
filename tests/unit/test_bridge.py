"""Bridge behaviours that need no broker: an in-memory RawProducer stands in for Kafka.

Everything that depends on Kafka itself (records landing, broker outages, load) is in
tests/integration/test_bridge_kafka.py against real Apache Kafka.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from connector.bridge import http1
from connector.bridge.app import METRICS_KEY, Bridge, create_app
from connector.providers import PROVIDERS
from connector.providers.base import RequestTarget
from connector.providers.gameball import signature_digest
from connector.providers.open_loyalty import OpenLoyalty
from connector.settings import Settings
from tests.support import FIXTURES, fixture_cases, other_wix_keypair, test_env, test_secrets

GB_BODY = (FIXTURES / "gameball" / "v4_profile_updated.json").read_bytes()


class FakeProducer:
    """In-memory RawProducer: records what was sent; can fail, hang or wait for a gate."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode  # "ok", "raise" or "hang"
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.gate: asyncio.Event | None = None
        self.waiting = 0
        self.release = asyncio.Event()  # ends "hang" sends, so shutdown need not wait for them
        self.is_ready = True
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        if self.mode == "raise":
            raise ConnectionError("broker gone")
        if self.mode == "hang":
            await self.release.wait()
            raise ConnectionError("gave up")
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
            self.waiting -= 1
        self.records.append((topic, key, value, list(headers)))

    async def ready(self) -> bool:
        return self.is_ready


def settings(**extra: str) -> Settings:
    env = {**test_env(), "CONNECTOR_TOPIC_PREFIX": "unit"}
    env.update(extra)
    return Settings.from_env(env)


# Every test here runs against both HTTP front ends of the same handler: the lean one
# (connector/bridge/http1.py, the default) and the aiohttp app (CONNECTOR_BRIDGE_HTTP=aiohttp).
FRONTS = ("lean", "aiohttp")
_front = ["lean"]


@pytest.fixture(autouse=True, params=FRONTS)
def front(request: pytest.FixtureRequest) -> Iterator[str]:
    _front[0] = request.param
    yield request.param
    _front[0] = "lean"


class LeanClient:
    """The lean server on a real port, with the parts of aiohttp's TestClient the tests use."""

    def __init__(self, server: Any, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.app = {METRICS_KEY: server.bridge.metrics}

    def make_url(self, path: str | URL) -> URL:
        # as sent: a percent-encoded path stays encoded (signatures cover the path as sent)
        return URL(f"http://{self.server.host}:{self.server.port}{path}", encoded=True)

    async def post(self, path: str | URL, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.session.post(self.make_url(path), **kwargs)

    async def get(self, path: str | URL, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.session.get(self.make_url(path), **kwargs)

    async def close(self) -> None:
        await self.session.close()


@contextlib.asynccontextmanager
async def bridge(s: Settings, producer: Any) -> AsyncIterator[Any]:
    if _front[0] == "lean":
        server = http1.Server(Bridge(s, producer), "127.0.0.1", 0)
        await server.start()
        client: Any = LeanClient(server, aiohttp.ClientSession())
    else:
        client = TestClient(TestServer(create_app(s, producer)))
        await client.start_server()
    try:
        yield client
    finally:
        if hasattr(producer, "release"):
            producer.release.set()
        if getattr(producer, "gate", None) is not None:
            producer.gate.set()
        for gate in getattr(producer, "gates", ()):
            gate.set()
        await client.close()
        if _front[0] == "lean":
            await server.stop(grace=5)


def run(fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(fn())  # type: ignore[arg-type]


def signed(provider: str, body: bytes) -> tuple[bytes, dict[str, str]]:
    return PROVIDERS[provider].sign(body, test_secrets()[provider])


GB_SECRET = test_secrets()["gameball"]["secret_key"]


def gb_headers(body: bytes = GB_BODY, secret: str = GB_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GB-Signature": signature_digest(body, secret).hex(),
    }


def one_fixture(provider: str) -> bytes:
    return fixture_cases(provider)[0].read_bytes()


# ---------------------------------------------------------------------------------------------
# accepted deliveries


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_signed_delivery_is_sent_with_its_headers(provider: str) -> None:
    producer = FakeProducer()

    async def go() -> None:
        body, headers = signed(provider, one_fixture(provider))
        async with bridge(settings(), producer) as client:
            resp = await client.post(f"/webhooks/{provider}", data=body, headers=headers)
            assert resp.status == 200, await resp.text()
            answer = await resp.json()
        assert answer["accepted"] is True
        assert producer.started and producer.stopped
        [(topic, key, value, kafka_headers)] = producer.records
        assert topic == "unit.webhooks.raw"
        assert value == body
        h = dict(kafka_headers)
        assert h["provider"] == provider.encode()
        assert h["tenant"] == b""
        assert h["request-id"] == answer["request_id"].encode()
        assert h["verified"] == b"true"
        assert abs(int(h["received-at"]) - time.time() * 1000) < 60_000
        lower = {k.lower(): v for k, v in headers.items()}
        assert h["content-type"] == lower["content-type"].encode()
        for name in PROVIDERS[provider].kept_headers:
            if name in lower:
                assert h[name] == lower[name].encode()
        assert key  # the provider's delivery id, else the request id

    run(go)


def test_unverified_switch_accepts_unsigned_and_marks_it() -> None:
    env = {k: v for k, v in test_env().items() if "GAMEBALL" not in k}
    s = Settings.from_env({**env, "CONNECTOR_GAMEBALL_UNVERIFIED": "true"})
    producer = FakeProducer()

    async def go() -> None:
        async with bridge(s, producer) as client:
            resp = await client.post(
                "/webhooks/gameball", data=GB_BODY, headers={"Content-Type": "application/json"}
            )
            assert resp.status == 200, await resp.text()
        [(_, _, value, headers)] = producer.records
        assert value == GB_BODY
        assert dict(headers)["verified"] == b"false"

    run(go)


def test_unverified_switch_still_checks_signatures_when_secrets_exist() -> None:
    s = settings(CONNECTOR_GAMEBALL_UNVERIFIED="true")
    producer = FakeProducer()

    async def go() -> None:
        async with bridge(s, producer) as client:
            resp = await client.post(
                "/webhooks/gameball", data=GB_BODY, headers=gb_headers(secret="wrong")
            )
            assert resp.status == 401
        assert producer.records == []

    run(go)


# ---------------------------------------------------------------------------------------------
# refusals


def test_provider_not_configured_is_404() -> None:
    s = Settings.from_env({"CONNECTOR_TOPIC_PREFIX": "unit"})
    producer = FakeProducer()

    async def go() -> None:
        async with bridge(s, producer) as client:
            resp = await client.post("/webhooks/voucherify", data=b"{}")
            assert resp.status == 404
            assert "CONNECTOR_VOUCHERIFY_" in (await resp.json())["error"]
        assert producer.records == []

    run(go)


def test_unknown_provider_and_tenant_are_404(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        '[gameball.shop-eu]\nsecret_key = "eu"\n[gameball.shop-us]\nsecret_key = "us"\n'
    )
    tenants.chmod(0o600)
    s = settings(CONNECTOR_TENANTS_FILE=str(tenants))
    producer = FakeProducer()

    async def go() -> None:
        async with bridge(s, producer) as client:
            resp = await client.post("/webhooks/loyaltylion", data=b"{}")
            assert resp.status == 404
            assert "gameball" in (await resp.json())["error"]
            resp = await client.post("/webhooks/gameball/shop-xx", data=GB_BODY)
            assert resp.status == 404
            error = (await resp.json())["error"]
            assert "shop-eu" in error and "shop-us" in error
            resp = await client.post("/webhooks/gameball/-bad-", data=GB_BODY)
            assert resp.status == 404
            # a known tenant verifies with its own secret, not the global one
            resp = await client.post(
                "/webhooks/gameball/shop-eu", data=GB_BODY, headers=gb_headers()
            )
            assert resp.status == 401
            resp = await client.post(
                "/webhooks/gameball/shop-eu", data=GB_BODY, headers=gb_headers(secret="eu")
            )
            assert resp.status == 200
        [(_, _, _, headers)] = producer.records
        assert dict(headers)["tenant"] == b"shop-eu"

    run(go)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_forged_tampered_and_unsigned_are_401(provider: str) -> None:
    producer = FakeProducer()
    body, headers = signed(provider, one_fixture(provider))
    if provider == "wix":
        forged_body, forged_headers = PROVIDERS["wix"].sign(
            one_fixture(provider), {"private_key": other_wix_keypair()[0]}
        )
        tampered = _tamper_jwt(body)
        unsigned_body, unsigned = _unsigned_jwt(body), {"Content-Type": "text/plain"}
    else:
        forged_secrets = {k: "forged-" + v for k, v in test_secrets()[provider].items()}
        forged_body, forged_headers = PROVIDERS[provider].sign(body, forged_secrets)
        tampered = body.replace(b"{", b'{"x": 1, ', 1)
        unsigned_body, unsigned = body, {"Content-Type": "application/json"}

    async def go() -> None:
        async with bridge(settings(), producer) as client:
            for data, h in (
                (forged_body, forged_headers),
                (tampered, headers),
                (unsigned_body, unsigned),
            ):
                resp = await client.post(f"/webhooks/{provider}", data=data, headers=h)
                assert resp.status == 401, await resp.text()
                answer = await resp.json()
                assert answer["error"].startswith("verification failed")
                assert answer["request_id"]
        assert producer.records == []

    run(go)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _claims(token: bytes) -> dict[str, Any]:
    payload = token.split(b".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))
    )
    return claims


def _tamper_jwt(token: bytes) -> bytes:
    """Same header and signature, one claim changed."""
    header, _, sig = token.split(b".")
    claims = _claims(token)
    claims["exp"] = int(claims.get("exp", 0)) + 1
    return b".".join((header, _b64(json.dumps(claims).encode()), sig))


def _unsigned_jwt(token: bytes) -> bytes:
    """The same claims with `alg: none` and no signature."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return b".".join((header, _b64(json.dumps(_claims(token)).encode()), b""))


def test_oversized_bodies_are_413() -> None:
    s = settings(CONNECTOR_MAX_BODY_BYTES="2048")
    producer = FakeProducer()
    big = b"[" + b" " * 4096 + b"]"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 512

    async def go() -> None:
        async with bridge(s, producer) as client:
            resp = await client.post("/webhooks/gameball", data=big, headers=gb_headers(big))
            assert resp.status == 413
            assert "2048" in (await resp.json())["error"]
            resp = await client.post("/webhooks/gameball", data=chunks(), headers=gb_headers())
            assert resp.status == 413
            assert resp.headers.get("Content-Length") is not None
            # at the cap exactly is fine (it then fails verification, not size)
            exact = b"[" + b" " * 2046 + b"]"
            resp = await client.post("/webhooks/gameball", data=exact, headers=gb_headers(exact))
            assert resp.status == 200
        assert len(producer.records) == 1

    run(go)


# ---------------------------------------------------------------------------------------------
# back-pressure and broker trouble


def test_over_max_in_flight_is_429() -> None:
    s = settings(CONNECTOR_MAX_IN_FLIGHT="2", CONNECTOR_ACK_TIMEOUT_MS="5000")
    producer = FakeProducer()

    async def go() -> None:
        producer.gate = asyncio.Event()
        async with bridge(s, producer) as client:

            async def post() -> int:
                resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
                await resp.read()
                if resp.status == 429:
                    assert resp.headers["Retry-After"] == "1"
                return resp.status

            held = [asyncio.ensure_future(post()) for _ in range(2)]
            for _ in range(200):  # until both are parked in the producer
                await asyncio.sleep(0.01)
                if producer.waiting == 2:
                    break
            assert await post() == 429
            producer.gate.set()
            assert await asyncio.gather(*held) == [200, 200]
            assert await post() == 200
        assert len(producer.records) == 3

    run(go)


@pytest.mark.parametrize("mode", ["raise", "hang"])
def test_producer_failure_or_hang_is_503_within_the_deadline(mode: str) -> None:
    s = settings(CONNECTOR_ACK_TIMEOUT_MS="200")
    producer = FakeProducer(mode)

    async def go() -> None:
        async with bridge(s, producer) as client:
            started = time.perf_counter()
            resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
            elapsed = time.perf_counter() - started
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
            assert "retry" in (await resp.json())["error"]
            assert elapsed < 0.2 + 0.45
            if mode == "hang":
                assert elapsed >= 0.19

    run(go)


def test_default_ack_deadline_is_800ms_and_below_wix_1250ms() -> None:
    s = Settings.from_env({})
    assert s.ack_timeout_ms == 800
    producer = FakeProducer("hang")

    async def go() -> None:
        async with bridge(settings(), producer) as client:
            started = time.perf_counter()
            resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
            elapsed = time.perf_counter() - started
        assert resp.status == 503
        assert 0.79 <= elapsed < 1.25

    run(go)


def test_unacknowledged_sends_beyond_the_limit_are_refused_early() -> None:
    """Timed-out sends still count against CONNECTOR_MAX_IN_FLIGHT until Kafka answers them."""
    s = settings(CONNECTOR_MAX_IN_FLIGHT="2", CONNECTOR_ACK_TIMEOUT_MS="50")
    producer = FakeProducer()

    async def go() -> None:
        producer.gate = asyncio.Event()
        async with bridge(s, producer) as client:
            for _ in range(2):
                resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
                assert resp.status == 503
            started = time.perf_counter()
            resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
            assert resp.status == 503
            assert "not keeping up" in (await resp.json())["error"]
            assert time.perf_counter() - started < 0.05
            producer.gate.set()
            await asyncio.sleep(0.05)
            resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
            assert resp.status == 200
        # the two 503s were written late (at least once is fine: the ledger dedupes)
        assert len(producer.records) == 3

    run(go)


# ---------------------------------------------------------------------------------------------
# health, readiness, metrics, OpenAPI


def test_health_readiness_and_openapi() -> None:
    producer = FakeProducer()

    async def go() -> None:
        async with bridge(settings(), producer) as client:
            resp = await client.get("/healthz")
            assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
            resp = await client.get("/readyz")
            assert resp.status == 200
            producer.is_ready = False
            resp = await client.get("/readyz")
            assert resp.status == 503
            assert resp.headers["Retry-After"]
            resp = await client.get("/openapi.json")
            spec = await resp.json()
            assert spec["openapi"].startswith("3.1")
            assert "/webhooks/{provider}/{tenant}" in spec["paths"]
            resp = await client.get("/webhooks/gameball")
            assert resp.status == 405
            assert "error" in await resp.json()
            resp = await client.get("/nope")
            assert resp.status == 404
            assert "error" in await resp.json()

    run(go)


def test_metrics_count_requests_by_provider_and_status_and_verification_failures() -> None:
    producer = FakeProducer()

    async def go() -> None:
        async with bridge(settings(), producer) as client:
            for _ in range(2):
                resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
                assert resp.status == 200
            resp = await client.post(
                "/webhooks/gameball", data=GB_BODY, headers=gb_headers(secret="no")
            )
            assert resp.status == 401
            resp = await client.post("/webhooks/nobody", data=b"{}")
            assert resp.status == 404
            resp = await client.get("/metrics")
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        value = _samples(text)
        assert (
            value("bridge_requests_total", provider="gameball", tenant="default", status="200") == 2
        )
        assert (
            value("bridge_requests_total", provider="gameball", tenant="default", status="401") == 1
        )
        assert value("bridge_requests_total", provider="unknown", tenant="-", status="404") == 1
        assert value("bridge_verification_failures_total", provider="gameball") == 1
        assert value("bridge_accepted_bytes_total", provider="gameball") == 2 * len(GB_BODY)
        assert value("bridge_produce_seconds_count") == 2
        assert value("bridge_in_flight") == 0

    run(go)


def _samples(text: str) -> Callable[..., float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    return value


def test_secrets_never_appear_in_logs_or_responses(caplog: pytest.LogCaptureFixture) -> None:
    """Forged deliveries of every provider, logged at DEBUG: no secret, no valid signature."""
    caplog.set_level(logging.DEBUG)
    secrets = test_secrets()
    needles = {
        "gb-test-secret",
        "ol-test-token",
        "ol-test-hmac",
        "vf-test-secret",
        secrets["wix"]["private_key"].splitlines()[1],
    }
    producer = FakeProducer()
    texts: list[str] = []

    async def go() -> None:
        async with bridge(settings(), producer) as client:
            # tampered bodies: the signature that *would* be valid must not leak either
            tampered = GB_BODY + b" "
            needles.add(signature_digest(tampered, "gb-test-secret").hex())
            resp = await client.post("/webhooks/gameball", data=tampered, headers=gb_headers())
            texts.append(await resp.text())
            # a forged Open Loyalty token close to the real one
            ol_body, ol_headers = signed("open_loyalty", one_fixture("open_loyalty"))
            forged: Mapping[str, str] = {**ol_headers, "X-OL-Token": "ol-test-tokeX"}
            resp = await client.post("/webhooks/open_loyalty", data=ol_body, headers=forged)
            texts.append(await resp.text())
            vf_body, vf_headers = signed("voucherify", one_fixture("voucherify"))
            vf_tampered = vf_body.replace(b"{", b'{"x":1,', 1)
            resp = await client.post("/webhooks/voucherify", data=vf_tampered, headers=vf_headers)
            texts.append(await resp.text())
            resp = await client.post(
                "/webhooks/wix", data=b"not.a.jwt", headers={"Content-Type": "text/plain"}
            )
            texts.append(await resp.text())
            resp = await client.get("/metrics")
            texts.append(await resp.text())

    run(go)
    assert producer.records == []
    assert any("refused" in r.getMessage() for r in caplog.records)
    haystack = "\n".join(texts) + "\n" + caplog.text
    haystack += "\n".join(str(vars(r)) for r in caplog.records)
    for needle in needles:
        assert needle not in haystack


def test_aiokafka_retry_storm_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """A down broker makes aiokafka log each of thousands of reconnects a second at ERROR."""
    from connector.bridge.producer import (
        AIOKAFKA_RETRY_LOGGERS,
        RepeatFilter,
        quiet_aiokafka_retries,
    )

    logger = logging.getLogger("aiokafka")
    sender = logging.getLogger("aiokafka.producer.sender")  # a child: its records skip ours
    loggers = [logging.getLogger(name) for name in AIOKAFKA_RETRY_LOGGERS]
    before = {lg: list(lg.filters) for lg in loggers}
    try:
        # a producer started earlier in this process (and this test's other front-end run)
        # installed filters that remember these templates: start from none
        for lg in loggers:
            lg.filters[:] = [f for f in lg.filters if not isinstance(f, RepeatFilter)]
        quiet_aiokafka_retries()
        quiet_aiokafka_retries()  # idempotent: one filter
        assert sum(isinstance(f, RepeatFilter) for f in logger.filters) == 1
        caplog.set_level(logging.WARNING, logger="aiokafka")
        for port in range(1000):
            logger.error("Unable connect to node with id %s: %s", 1, port)
            sender.warning("Got error produce response: %s", f"NodeNotReadyError {port}")
        logger.error("Unable to update metadata from %s", [1])
        messages = [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")]
        assert messages == [
            "Unable connect to node with id 1: 0",
            "Got error produce response: NodeNotReadyError 0",
            "Unable to update metadata from [1]",
        ]
    finally:
        for lg, filters in before.items():
            lg.filters[:] = filters


# ---------------------------------------------------------------------------------------------
# Open Loyalty Cloud HMAC: signed over the method, host and path the provider posted to

OL_HMAC_ENV = {k: v for k, v in test_env().items() if "OPEN_LOYALTY_HEADER" not in k}
OL_HMAC = {"hmac_secret": test_secrets()["open_loyalty"]["hmac_secret"]}


def ol_settings(**extra: str) -> Settings:
    return Settings.from_env({**OL_HMAC_ENV, "CONNECTOR_TOPIC_PREFIX": "unit", **extra})


def ol_signed(
    host: str, path: str, secrets: Mapping[str, str] = OL_HMAC
) -> tuple[bytes, dict[str, str]]:
    """A fixture signed as Open Loyalty Cloud would sign a POST to https://`host``path`."""
    target = RequestTarget("POST", host, path)
    return OpenLoyalty().sign(one_fixture("open_loyalty"), secrets, target=target)


def test_open_loyalty_cloud_hmac_is_checked_for_the_host_and_path_of_the_request() -> None:
    producer = FakeProducer()
    own = "/webhooks/open_loyalty"

    async def go() -> None:
        async with bridge(ol_settings(), producer) as client:

            async def post(signed: Any, url: str = own, **headers: str) -> tuple[int, str]:
                body, h = signed
                resp = await client.post(url, data=body, headers={**h, **headers})
                return resp.status, await resp.text()

            # the test server's Host header is 127.0.0.1:<port>: the port is not signed
            assert (await post(ol_signed("127.0.0.1", own)))[0] == 200
            # the query string is not signed
            assert (await post(ol_signed("127.0.0.1", own), own + "?source=ol"))[0] == 200
            # a Host header with a port, as a provider sends it for https://host:8443/...
            signed = ol_signed("hooks.example.com", own)
            assert (await post(signed, Host="hooks.example.com:8443"))[0] == 200
            status, text = await post(signed)  # the same signature, another host
            assert status == 401 and "does not match" in text, text
            status, text = await post(ol_signed("127.0.0.1", own + "/shop"))
            assert status == 401 and "POST 127.0.0.1/webhooks/open_loyalty" in text, text
            status, _ = await post(ol_signed("127.0.0.1", own + "/"))
            assert status == 401

    run(go)
    assert len(producer.records) == 3


def test_public_url_gives_the_signed_host_and_path_prefix() -> None:
    producer = FakeProducer()
    s = ol_settings(CONNECTOR_PUBLIC_URL="https://hooks.example.com:8443/base/")

    async def go() -> None:
        async with bridge(s, producer) as client:
            body, headers = ol_signed("hooks.example.com", "/base/webhooks/open_loyalty")
            resp = await client.post("/webhooks/open_loyalty", data=body, headers=headers)
            assert resp.status == 200, await resp.text()
            # the Host header (here a proxy's upstream name) no longer matters
            forwarded = {**headers, "Host": "connector.internal:8080"}
            resp = await client.post("/webhooks/open_loyalty", data=body, headers=forwarded)
            assert resp.status == 200, await resp.text()
            # signed for the bridge's own address, as without a public URL: refused
            body, headers = ol_signed("127.0.0.1", "/webhooks/open_loyalty")
            resp = await client.post("/webhooks/open_loyalty", data=body, headers=headers)
            assert resp.status == 401
            assert "hooks.example.com/base/webhooks/open_loyalty" in await resp.text()

    run(go)
    assert len(producer.records) == 2


def test_open_loyalty_cloud_hmac_of_a_tenant_signs_the_tenant_path(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text('[open_loyalty.shop-eu]\nhmac_secret = "whsec_' + "ab" * 32 + '"\n')
    tenants.chmod(0o600)
    producer = FakeProducer()
    eu = {"hmac_secret": "whsec_" + "ab" * 32}

    async def go() -> None:
        async with bridge(ol_settings(CONNECTOR_TENANTS_FILE=str(tenants)), producer) as client:
            path = "/webhooks/open_loyalty/shop-eu"
            body, headers = ol_signed("127.0.0.1", path, eu)
            resp = await client.post(path, data=body, headers=headers)
            assert resp.status == 200, await resp.text()
            body, headers = ol_signed("127.0.0.1", "/webhooks/open_loyalty", eu)
            resp = await client.post(path, data=body, headers=headers)
            assert resp.status == 401
            # the path is signed as sent, percent-encoding included (the route decodes it)
            encoded = URL("/webhooks/open_loyalty/shop%2Deu", encoded=True)
            body, headers = ol_signed("127.0.0.1", "/webhooks/open_loyalty/shop%2Deu", eu)
            resp = await client.post(encoded, data=body, headers=headers)
            assert resp.status == 200, await resp.text()
            body, headers = ol_signed("127.0.0.1", path, eu)
            resp = await client.post(encoded, data=body, headers=headers)
            assert resp.status == 401

    run(go)
    assert [dict(h)["tenant"] for _, _, _, h in producer.records] == [b"shop-eu", b"shop-eu"]


def test_open_loyalty_template_scheme_ignores_host_and_path() -> None:
    producer = FakeProducer()
    template = {"CONNECTOR_OPEN_LOYALTY_HMAC_TEMPLATE": "{timestamp}.{body}"}
    secrets = OL_HMAC | {"hmac_template": "{timestamp}.{body}"}

    async def go() -> None:
        async with bridge(ol_settings(**template), producer) as client:
            body, headers = ol_signed("elsewhere.example", "/anything", secrets)
            resp = await client.post("/webhooks/open_loyalty", data=body, headers=headers)
            assert resp.status == 200, await resp.text()
            cloud, cloud_headers = ol_signed("127.0.0.1", "/webhooks/open_loyalty")
            resp = await client.post("/webhooks/open_loyalty", data=cloud, headers=cloud_headers)
            assert resp.status == 401

    run(go)
    assert len(producer.records) == 1


@pytest.mark.parametrize("public_url", [None, "https://hooks.example.com/base"])
def test_replay_signs_open_loyalty_for_the_url_the_bridge_checks(public_url: str | None) -> None:
    from connector.replay import replay

    producer = FakeProducer()
    s = ol_settings(**({"CONNECTOR_PUBLIC_URL": public_url} if public_url else {}))
    files = fixture_cases("open_loyalty")[:2]

    async def go() -> None:
        async with bridge(s, producer) as client:
            to = str(client.make_url(""))
            counts = await replay(files, to, None, None, s, concurrency=1, retries=0)
            assert dict(counts) == {"200": 2}

    run(go)
    assert len(producer.records) == 2


def test_replay_target_is_the_public_url_a_delivery_would_have_come_through() -> None:
    from connector.replay import signed_target

    public = "https://hooks.example.com/base"
    via_proxy = RequestTarget("POST", "hooks.example.com", "/base/webhooks/open_loyalty")
    assert signed_target(public + "/webhooks/open_loyalty", public) == via_proxy
    assert signed_target("http://127.0.0.1:8080/webhooks/open_loyalty", public) == via_proxy
    assert signed_target("http://127.0.0.1:8080/webhooks/open_loyalty/t", None) == RequestTarget(
        "POST", "127.0.0.1", "/webhooks/open_loyalty/t"
    )
