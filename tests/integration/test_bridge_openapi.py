"""schemathesis against the bridge's own `/openapi.json`: no 5xx, every response as documented.

Both HTTP front ends are checked (the lean one, the default, and the aiohttp app). The bridge
runs in-process in a background thread (its own event loop) with a real
KafkaRawProducer on the session's Apache Kafka, so accepted deliveries really go to Kafka.
Gameball runs with CONNECTOR_GAMEBALL_UNVERIFIED=true (no secret) so generated bodies reach the
200 path; the other providers are configured and answer 401 to unsigned bodies; a tenants
file makes the tenant route answer both 200 and 404.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from connector.bridge import http1
from connector.bridge.app import Bridge, create_app
from connector.bridge.producer import KafkaRawProducer
from connector.kafka_admin import ensure_topics
from connector.settings import Settings
from tests.support import test_env

schemathesis.experimental.OPEN_API_3_1.enable()


class ThreadedBridge:
    """The bridge app served from a daemon thread with its own event loop."""

    def __init__(self, s: Settings, front: str) -> None:
        self.settings = s
        self.front = front
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.server: http1.Server | None = None
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bridge", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        s = self.settings
        await ensure_topics(s, [s.topics.raw])
        if self.front == "lean":
            self.server = http1.Server(Bridge(s, KafkaRawProducer(s)), "127.0.0.1", 0)
            await self.server.start()
            self.url = f"http://127.0.0.1:{self.server.port}"
            return
        self.runner = web.AppRunner(create_app(s, KafkaRawProducer(s)), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def start(self) -> ThreadedBridge:
        self.thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(grace=5), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module", params=["lean", "aiohttp"])
def bridge_url(
    kafka: Any, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    tenants = tmp_path_factory.mktemp("tenants") / "tenants.toml"
    tenants.write_text('[voucherify.proj-a]\nsecret_key = "vf-a"\n')
    tenants.chmod(0o600)
    env = {k: v for k, v in test_env().items() if "GAMEBALL" not in k}
    env.update(
        CONNECTOR_BROKER_URL=kafka.bootstrap,
        CONNECTOR_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}",
        CONNECTOR_PARTITIONS="2",
        CONNECTOR_GAMEBALL_UNVERIFIED="true",
        CONNECTOR_TENANTS_FILE=str(tenants),
        CONNECTOR_MAX_BODY_BYTES="4096",
    )
    bridge = ThreadedBridge(Settings.from_env(env), request.param).start()
    try:
        yield bridge.url
    finally:
        bridge.stop()


@pytest.fixture
def api_schema(bridge_url: str) -> Any:
    return schemathesis.from_uri(f"{bridge_url}/openapi.json", base_url=bridge_url)


schema = schemathesis.from_pytest_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_bridge_matches_its_openapi_spec(case: Any) -> None:
    response = case.call_and_validate(timeout=10)
    assert response.status_code < 500


def test_spec_documents_every_route(bridge_url: str) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{bridge_url}/openapi.json", timeout=10) as resp:  # noqa: S310
        spec = json.load(resp)
    assert set(spec["paths"]) == {
        "/webhooks/{provider}",
        "/webhooks/{provider}/{tenant}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }
