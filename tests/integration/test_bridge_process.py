"""`loyalty-connector bridge` as a real process (graceful SIGTERM) and `loyalty-connector replay`
against it, on real Apache Kafka."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector import cli
from connector.embedded import free_port
from connector.kit.processes import Bridge, child_env
from connector.kit.ready import wait_http
from connector.providers import PROVIDERS
from connector.replay import collect, infer_provider
from tests.integration.test_bridge_kafka import consume, gameball_delivery, headers_of, request_ids
from tests.support import FIXTURES, test_env


def raw_topic(bridge: Bridge) -> str:
    assert bridge.env is not None
    return f"{bridge.env['CONNECTOR_TOPIC_PREFIX']}.webhooks.raw"


def start_bridge(bootstrap: str, prefix: str, log: Path) -> Bridge:
    """`loyalty-connector bridge` (the console script) in a child process; returns once
    /healthz answers."""
    port = free_port()
    env = child_env(
        **test_env(),
        CONNECTOR_BROKER_URL=bootstrap,
        CONNECTOR_BRIDGE_HOST="127.0.0.1",
        CONNECTOR_BRIDGE_PORT=str(port),
        CONNECTOR_TOPIC_PREFIX=prefix,
        CONNECTOR_PARTITIONS="2",
        CONNECTOR_LOG_FORMAT="text",
    )
    bridge = Bridge("bridge", env, log, port, console_script=True)
    try:
        wait_http(bridge.url + "/healthz", 30, watch=[bridge], interval=0.1)
    except BaseException:
        bridge.kill()
        raise
    return bridge


@pytest.fixture(scope="module")
def live_bridge(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    bridge = start_bridge(kafka.bootstrap, prefix, tmp_path_factory.mktemp("bridge") / "log")
    try:
        yield bridge
    finally:
        bridge.stop(15, check=False)


# ---------------------------------------------------------------------------------------------


def test_sigterm_drains_in_flight_requests_and_exits_0(
    kafka: Any, topic_prefix: str, tmp_path: Path
) -> None:
    bridge = start_bridge(kafka.bootstrap, topic_prefix, tmp_path / "bridge.log")
    try:

        async def go() -> tuple[str, list[tuple[int, str] | BaseException]]:
            async with aiohttp.ClientSession() as http:

                async def post(n: int) -> tuple[int, str]:
                    body, headers = gameball_delivery(n)
                    async with http.post(
                        bridge.url + "/webhooks/gameball", data=body, headers=headers
                    ) as r:
                        return r.status, (await r.json()).get("request_id", "")

                status, first = await post(0)
                assert status == 200
                # a burst in flight while SIGTERM arrives: whatever got a 200 must be in Kafka
                burst = [asyncio.ensure_future(post(n)) for n in range(1, 30)]
                await asyncio.sleep(0.01)
                bridge.popen.send_signal(signal.SIGTERM)
                answers = await asyncio.gather(*burst, return_exceptions=True)
            return first, answers

        first, answers = asyncio.run(go())
        started = time.monotonic()
        code = bridge.popen.wait(15)
        assert code == 0, bridge.log_tail()
        assert time.monotonic() - started < 15
    finally:
        bridge.stop(15, check=False)
    acked = {first} | {a[1] for a in answers if isinstance(a, tuple) and a[0] == 200}
    refused = [a for a in answers if isinstance(a, tuple) and a[0] != 200]
    assert not refused, refused  # in-flight requests finish; late ones cannot connect at all
    records = asyncio.run(
        consume(kafka.bootstrap, raw_topic(bridge), lambda rs: acked <= request_ids(rs))
    )
    assert acked <= request_ids(records)
    assert "bridge stopped" in bridge.log_tail()


def test_sigterm_while_kafka_is_down_exits_within_a_grace_period(
    own_kafka: Any, topic_prefix: str, tmp_path: Path
) -> None:
    """Kubernetes gives 30 s by default; a bridge whose broker is gone must not need longer."""
    bridge = start_bridge(own_kafka.bootstrap, topic_prefix, tmp_path / "bridge.log")
    try:

        async def post_all(n: int) -> list[int]:
            async with aiohttp.ClientSession() as http:

                async def post(i: int) -> int:
                    body, headers = gameball_delivery(i)
                    async with http.post(
                        bridge.url + "/webhooks/gameball", data=body, headers=headers
                    ) as r:
                        return r.status

                return list(await asyncio.gather(*(post(i) for i in range(n))))

        assert asyncio.run(post_all(1)) == [200]
        own_kafka.kill()
        # records waiting for a broker that is gone: each request gets its 503 (ack timeout)
        assert set(asyncio.run(post_all(20))) == {503}
        started = time.monotonic()
        bridge.popen.send_signal(signal.SIGTERM)
        code = bridge.popen.wait(25)
        took = time.monotonic() - started
    finally:
        bridge.stop(15, check=False)
    assert code == 0, bridge.log_tail()
    assert took < 15, f"exit took {took:.1f} s\n{bridge.log_tail()}"
    assert "bridge stopped" in bridge.log_tail()


def _replay(
    url: str, paths: list[str], env_file: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    code = cli.main(["replay", *paths, "--to", url, "--env-file", str(env_file)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_replay_sends_every_fixture_and_summarises(
    live_bridge: Bridge,
    kafka: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for k in list(os.environ):
        if k.startswith("CONNECTOR_"):
            monkeypatch.delenv(k)
    for k, v in test_env().items():
        monkeypatch.setenv(k, v)
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    files = collect([str(FIXTURES)])
    per_provider = collections.Counter(infer_provider(f, None) for f in files)
    assert set(per_provider) == set(PROVIDERS)  # every provider has fixtures

    code, output = _replay(live_bridge.url, [str(FIXTURES)], env_file, capsys)
    assert code == 0, output
    m = re.search(r"sent (\d+) webhooks in [\d.]+s \((.*)\)", output)
    assert m, output
    assert int(m.group(1)) == len(files)
    assert m.group(2) == f"200: {len(files)}"

    records = asyncio.run(
        consume(kafka.bootstrap, raw_topic(live_bridge), lambda rs: len(rs) >= len(files))
    )
    landed = collections.Counter(headers_of(r)["provider"].decode() for r in records)
    assert landed == per_provider

    # the bridge refuses deliveries signed with the wrong secret: replay exits non-zero
    monkeypatch.setenv("CONNECTOR_GAMEBALL_SECRET_KEY", "not-the-bridge-secret")
    code, output = _replay(live_bridge.url, [str(FIXTURES / "gameball")], env_file, capsys)
    assert code == 1
    assert f"401: {per_provider['gameball']}" in output
    assert "verification failed" in output
    assert "not-the-bridge-secret" not in output
