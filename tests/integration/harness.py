"""Test harness for the bridge and Faust worker as real processes on real Apache Kafka.

A `Harness` belongs to one test: a topic prefix, a Faust app id, a tmp dir and the processes it
started. It is the support kit's `Stack` (`python -m connector bridge|worker` children with a
per-test environment, each with its own log file, waited for until ready) plus what tests ask:
it sends webhooks signed as each provider would (`connector.kit.payloads`, re-exported here),
reads output topics to their end (Avro decoded), queries members over HTTP, and waits until the
worker group has processed everything. When the test fails, `close` prints every process's log,
so pytest shows them next to the failure.

Nothing here is mocked or skipped: a process that does not come up or stop cleanly fails the
test with its log (the kit's NotReady or ChildError).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from connector.avro import default_codec
from connector.errors import BrokerError
from connector.inspect import read_to_end
from connector.kit import offsets
from connector.kit.payloads import VF_CAMPAIGN as VF_CAMPAIGN
from connector.kit.payloads import Delivery as Delivery
from connector.kit.payloads import _vf_customer as _vf_customer
from connector.kit.payloads import gb_profile as gb_profile
from connector.kit.payloads import ol_level_changed as ol_level_changed
from connector.kit.payloads import ol_points_changed as ol_points_changed
from connector.kit.payloads import ol_points_transfer as ol_points_transfer
from connector.kit.payloads import sign as sign
from connector.kit.payloads import vf_points_added as vf_points_added
from connector.kit.payloads import vf_tier_joined as vf_tier_joined
from connector.kit.payloads import vf_transaction_created as vf_transaction_created
from connector.kit.payloads import wix_account as wix_account
from connector.kit.processes import Bridge as Bridge
from connector.kit.processes import Stack
from connector.kit.processes import Worker as WorkerProc

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# webhooks


async def post_all(
    bridge_url: str, deliveries: Iterable[Delivery], concurrency: int = 8, attempts: int = 20
) -> list[str]:
    """POST each delivery; retry refusals (503/429) and connection errors as providers do.

    Returns the bridge's request ids of the accepted attempts. Anything but 200 in the end, or a
    4xx, fails the test.
    """
    sem = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(d: Delivery) -> str:
            last = ""
            for attempt in range(attempts):
                try:
                    async with (
                        sem,
                        http.post(bridge_url + d.path, data=d.body, headers=d.headers) as r,
                    ):
                        text = await r.text()
                        if r.status == 200:
                            return str(json.loads(text)["request_id"])
                        last = f"{r.status} {text}"
                        if r.status < 500 and r.status != 429:
                            break
                except (aiohttp.ClientError, TimeoutError) as exc:
                    last = repr(exc)
                await asyncio.sleep(min(0.1 * (attempt + 1), 1.0))
            raise AssertionError(f"bridge refused a {d.provider} delivery: {last}")

        return list(await asyncio.gather(*(one(d) for d in deliveries)))


# ---------------------------------------------------------------------------------------------
# reading Kafka


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str
    value: Any  # the decoded model (LedgerEntry, MemberBalance, ...) or raw bytes


async def _read_topic(
    bootstrap: str, topic: str, decode: bool, isolation: str, timeout: float
) -> list[Record]:
    codec = default_codec()
    try:
        messages = await read_to_end(bootstrap, topic, isolation_level=isolation, timeout=timeout)
    except BrokerError as exc:
        raise AssertionError(str(exc)) from None
    return [
        Record(
            topic,
            m.partition,
            m.offset,
            (m.key or b"").decode("utf-8", "replace"),
            codec.decode(m.value) if decode and m.value is not None else m.value,
        )
        for m in messages
    ]


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as Faust's producer) gives a key."""
    return int(DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions))))


def latest_by_key(records: Iterable[Record]) -> dict[str, Any]:
    """Compacted-topic view: the last value per key (records of one key share a partition)."""
    out: dict[str, Any] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.key] = r.value
    return out


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.3,
    on_timeout: Callable[[], str] = lambda: "",
) -> T:
    """Poll `check` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except AssertionError as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f"\nlast check failure: {last_exc}" if last_exc else ""
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}{detail}\n{on_timeout()}"
            )
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# the harness


class Harness(Stack):
    """The `Stack` of one test, and what the tests do with it: send, read, query, wait."""

    def close(self, failed: bool = False) -> None:
        """Stop every process; print their logs when the test failed."""
        super().close()
        if failed:
            print("\n==== process logs ====")
            print(self.logs(20000))

    # -- webhooks and queries ----------------------------------------------------------------

    def send(
        self, bridge: Bridge, deliveries: Iterable[Delivery], concurrency: int = 8
    ) -> list[str]:
        return asyncio.run(post_all(bridge.url, list(deliveries), concurrency))

    def member(
        self, worker: WorkerProc | str, provider: str, tenant: str, customer_id: str
    ) -> tuple[int, dict[str, Any]]:
        base = worker if isinstance(worker, str) else worker.url

        async def get() -> tuple[int, dict[str, Any]]:
            url = f"{base}/members/{provider}/{tenant}/{customer_id}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.get(url) as resp:
                    text = await resp.text()
                    try:
                        return resp.status, json.loads(text)
                    except json.JSONDecodeError:
                        return resp.status, {"text": text}

        return asyncio.run(get())

    def wait_member(
        self,
        worker: WorkerProc | str,
        provider: str,
        tenant: str,
        customer_id: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float = 60,
    ) -> dict[str, Any]:
        """The member's JSON once `done(json)` holds (retrying 404 and 503 meanwhile)."""
        last: list[Any] = [None]

        def check() -> dict[str, Any] | None:
            try:
                status, body = self.member(worker, provider, tenant, customer_id)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last[0] = repr(exc)
                return None
            last[0] = (status, body)
            return body if status == 200 and done(body) else None

        return wait_until(
            check,
            timeout,
            f"member {provider}/{tenant}/{customer_id}",
            on_timeout=lambda: f"last answer: {last[0]}\n{self.logs()}",
        )

    def read(
        self, name: str, *, decode: bool = True, committed: bool = True, timeout: float = 30
    ) -> list[Record]:
        """Every record of a connector topic (`ledger`, `balances`, ...), read to its end."""
        isolation = "read_committed" if committed else "read_uncommitted"
        return asyncio.run(
            _read_topic(self.bootstrap, self.topic(name), decode, isolation, timeout)
        )

    def caught_up(self) -> bool:
        """True once the worker group committed offsets past every record of raw and events."""
        committed = asyncio.run(offsets.committed(self.bootstrap, self.app_id))
        for name in ("raw", "events"):
            last: dict[int, int] = {}
            for r in self.read(name, decode=False):
                last[r.partition] = max(last.get(r.partition, -1), r.offset)
            for partition, offset in last.items():
                if committed.get(TopicPartition(self.topic(name), partition), -1) <= offset:
                    return False
        return True

    def wait_caught_up(self, timeout: float = 60) -> None:
        wait_until(
            self.caught_up,
            timeout,
            "the worker group to process raw and events to the end",
            interval=0.5,
            on_timeout=self.logs,
        )

    def metric(self, worker: WorkerProc, name: str) -> float:
        """Sum of a Prometheus metric's samples (all labels) on a worker's /metrics."""

        async def get() -> str:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                async with http.get(worker.url + "/metrics") as resp:
                    return await resp.text()

        total = 0.0
        for line in asyncio.run(get()).splitlines():
            m = re.match(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", line)
            if m:
                total += float(m.group(1))
        return total

    def routes(self, worker: WorkerProc) -> dict[str, list[int]]:
        """Faust's view of the members table: worker URL → active partitions (`/router/`)."""

        async def get() -> dict[str, dict[str, list[int]]]:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                async with http.get(worker.url + "/router/members/") as resp:
                    assert resp.status == 200, await resp.text()
                    data: dict[str, dict[str, list[int]]] = await resp.json()
                    return data

        changelog = f"{self.app_id}-members-changelog"
        return {url: sorted(t.get(changelog, [])) for url, t in asyncio.run(get()).items()}

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`python -m connector ARGS...` with this harness's environment."""
        return subprocess.run(
            [sys.executable, "-m", "connector", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@contextmanager
def open_harness(bootstrap: str, prefix: str, tmp: Path, request: Any) -> Iterator[Harness]:
    """A Harness for one test; its processes are stopped after it, logs printed on failure."""
    h = Harness(bootstrap, prefix, tmp)
    failed_before = request.session.testsfailed
    try:
        yield h
    finally:
        h.close(failed=request.session.testsfailed > failed_before)
