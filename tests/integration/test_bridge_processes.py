"""Several bridge processes on one port (CONNECTOR_BRIDGE_PROCESSES): the way to more cores.

The kernel spreads new connections over the processes (SO_REUSEPORT); every webhook is still
written once, and SIGTERM to the supervisor stops them all cleanly.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from connector.inspect import read_to_end
from connector.raw import header_map
from tests.integration.harness import Harness, sign


async def post_each_on_a_new_connection(url: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        d = sign("gameball", {"playerUniqueId": f"gb-proc-{i}", "activatedPoints": i})
        # a new session: a new TCP connection, which the kernel may give to either process
        async with (
            aiohttp.ClientSession() as http,
            http.post(url + d.path, data=d.body, headers=d.headers) as r,
        ):
            assert r.status == 200, await r.text()
            ids.append(str(json.loads(await r.text())["request_id"]))
    return ids


def test_two_bridge_processes_share_the_port(h: Harness) -> None:
    bridge = h.start_bridge(CONNECTOR_BRIDGE_PROCESSES="2")
    ids = asyncio.run(post_each_on_a_new_connection(bridge.url, 60))
    # a request id starts with its process's random prefix (16 hex characters)
    assert len({i[:16] for i in ids}) == 2, "both processes answered"
    raw = asyncio.run(read_to_end(h.bootstrap, h.topic("raw")))
    written = [header_map(m.headers)["request-id"] for m in raw]
    assert sorted(written) == sorted(ids)  # each webhook once
    assert bridge.stop() == 0  # SIGTERM: every process stops cleanly
