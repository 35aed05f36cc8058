"""Test harness for the bridge and Faust worker as real processes on real Apache Kafka.

A `Harness` belongs to one test: a topic prefix, a Faust app id, a tmp dir and the processes it
started. It starts `python -m connector bridge|worker` children with a per-test environment
(each with its own log file), waits until they are ready, sends webhooks signed as each provider
would (`provider.sign` with the test secrets), reads output topics to their end (Avro decoded),
queries members over HTTP, and waits until the worker group has processed everything. When the
test fails, `close` prints every process's log, so pytest shows them next to the failure.

Nothing here is mocked or skipped: a process that does not come up is an AssertionError.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from connector.avro import default_codec
from connector.embedded import free_port
from connector.errors import BrokerError
from connector.inspect import read_to_end
from connector.providers import PROVIDERS
from tests.support import test_env, test_secrets

T = TypeVar("T")

READY_TIMEOUT = 90.0  # a worker needs ~10-15 s alone; rebalancing with a crashed peer, longer
STOP_TIMEOUT = 20.0


# ---------------------------------------------------------------------------------------------
# processes


class Proc:
    """One child process (`python -m connector ...`) with its log file."""

    def __init__(self, name: str, command: str, env: dict[str, str], log: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, env, log
        with open(log, "ab") as out:
            out.write(f"==== start {name}: {command} at {time.strftime('%X')}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "connector", command],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return f"--- {self.name} log ({self.log}) ---\n{self.log_text()[-chars:]}"

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown code runs) and reap."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait; asserts a clean exit (code 0) within `timeout` seconds."""
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {timeout:.0f}s of SIGTERM\n{self.log_tail()}"
            ) from None
        assert code == 0, f"{self.name} exited with {code} after SIGTERM\n{self.log_tail()}"
        return code


class Bridge(Proc):
    def __init__(self, name: str, env: dict[str, str], log: Path, port: int) -> None:
        super().__init__(name, "bridge", env, log)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


class WorkerProc(Proc):
    def __init__(
        self, name: str, env: dict[str, str], log: Path, port: int, data_dir: Path
    ) -> None:
        super().__init__(name, "worker", env, log)
        self.port, self.data_dir = port, data_dir
        self.url = f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------------------------------
# webhooks


@dataclass(frozen=True)
class Delivery:
    """A signed webhook, ready to POST (posting it twice = the provider retrying it)."""

    provider: str
    body: bytes
    headers: dict[str, str]
    tenant: str | None = None

    @property
    def path(self) -> str:
        return f"/webhooks/{self.provider}" + (f"/{self.tenant}" if self.tenant else "")


def sign(provider: str, payload: Any, tenant: str | None = None) -> Delivery:
    """`payload` (a JSON-able object, or exact bytes) signed as `provider` would send it."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signed, headers = PROVIDERS[provider].sign(body, test_secrets()[provider])
    return Delivery(provider, signed, headers, tenant)


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


async def _group_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


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


@dataclass
class Harness:
    bootstrap: str
    prefix: str
    tmp: Path
    app_id: str = ""
    base_env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app_id = self.app_id or f"{self.prefix}-app"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
        env.update(test_env())
        env.update(
            CONNECTOR_BROKER_URL=self.bootstrap,
            CONNECTOR_TOPIC_PREFIX=self.prefix,
            CONNECTOR_APP_ID=self.app_id,
            CONNECTOR_PARTITIONS="2",
            CONNECTOR_LOG_FORMAT="text",
            CONNECTOR_BRIDGE_HOST="127.0.0.1",
            CONNECTOR_WEB_HOST="127.0.0.1",
            CONNECTOR_WEB_ADVERTISED_HOST="127.0.0.1",
            CONNECTOR_ACK_TIMEOUT_MS="5000",  # a loaded 2-core CI box; providers retry anyway
            PYTHONUNBUFFERED="1",
        )
        env.update(self.base_env)
        self.base_env = env

    # -- names -------------------------------------------------------------------------------

    def topic(self, name: str) -> str:
        """`raw`, `events`, `ledger`, `balances`, `tiers`, `dlq` → the prefixed topic name."""
        return {
            "raw": f"{self.prefix}.webhooks.raw",
            "dlq": f"{self.prefix}.webhooks.dlq",
        }.get(name, f"{self.prefix}.{name}")

    def env(self, **overrides: str) -> dict[str, str]:
        return {**self.base_env, **overrides}

    # -- processes ---------------------------------------------------------------------------

    def start_bridge(self, name: str = "bridge", **env: str) -> Bridge:
        port = free_port()
        bridge = Bridge(
            name, self.env(CONNECTOR_BRIDGE_PORT=str(port), **env), self.tmp / f"{name}.log", port
        )
        self.procs.append(bridge)
        self._wait_http(bridge, bridge.url + "/readyz", 30)
        return bridge

    def start_worker(
        self,
        name: str = "worker",
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        wait: bool = True,
        **env: str,
    ) -> WorkerProc:
        port = port or free_port()
        data_dir = data_dir or self.tmp / f"{name}-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        worker = WorkerProc(
            name,
            self.env(CONNECTOR_WEB_PORT=str(port), CONNECTOR_DATA_DIR=str(data_dir), **env),
            self.tmp / f"{name}.log",
            port,
            data_dir,
        )
        self.procs.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: WorkerProc, timeout: float = READY_TIMEOUT) -> None:
        self._wait_http(worker, worker.url + "/readyz", timeout)

    def _wait_http(self, proc: Proc, url: str, timeout: float) -> None:
        async def status() -> int:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
                try:
                    async with http.get(url) as resp:
                        return resp.status
                except (aiohttp.ClientError, TimeoutError):
                    return 0

        deadline = time.monotonic() + timeout
        while asyncio.run(status()) != 200:
            if not proc.alive:
                raise AssertionError(
                    f"{proc.name} exited ({proc.popen.returncode}) before {url} answered 200\n"
                    f"{proc.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{proc.name}: {url} did not answer 200 within {timeout:.0f}s\n"
                    f"{proc.log_tail()}"
                )
            time.sleep(0.25)

    def logs(self) -> str:
        return "\n".join(p.log_tail(8000) for p in self.procs)

    def close(self, failed: bool) -> None:
        for p in self.procs:
            if p.alive:
                p.popen.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
        if failed:
            print("\n==== process logs ====")
            for p in self.procs:
                print(p.log_tail(20000))

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
        committed = asyncio.run(_group_offsets(self.bootstrap, self.app_id))
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


# ---------------------------------------------------------------------------------------------
# payload templates (shapes copied from tests/fixtures/<provider>; the numbers come from tests)


def ol_points_transfer(
    customer: str, transfer_id: str, value: int, at: str, *, kind: str = "adding"
) -> dict[str, Any]:
    """Open Loyalty `account.points_transfer` (issuer `system`: an earn, not an adjustment)."""
    return {
        "type": "account.points_transfer",
        "createdAt": at,
        "data": {
            "storeCode": "DEFAULT",
            "accountId": f"acc-{customer}",
            "customerId": customer,
            "pointsTransferId": transfer_id,
            "value": value,
            "issuer": "system",
            "type": kind,
            "state": "active",
        },
    }


def ol_points_changed(
    customer: str | None, transfer_id: str, change: int, change_type: str, amount: int, at: str
) -> dict[str, Any]:
    """Open Loyalty `account.available_points_amount_changed` (`amount` = balance after)."""
    data: dict[str, Any] = {
        "amount": amount,
        "amountChange": change,
        "amountChangeType": change_type,
        "pointsTransferId": transfer_id,
        "transactionId": f"tx-{transfer_id}",
    }
    if customer is not None:
        data["customerId"] = customer
    return {"type": "account.available_points_amount_changed", "createdAt": at, "data": data}


def ol_level_changed(customer: str, level_id: str, level_name: str, at: str) -> dict[str, Any]:
    return {
        "type": "customer.level_changed",
        "data": {
            "customerId": customer,
            "levelId": level_id,
            "levelName": level_name,
            "levelAchievementDate": at,
        },
    }


def _vf_customer(customer: str) -> dict[str, Any]:
    return {"id": customer, "source_id": f"src-{customer}", "object": "customer"}


VF_CAMPAIGN = "camp_loyalty"  # the loyalty campaign of the builders' cards unless told


def _vf_card_id(customer: str, card: str | None) -> str:
    """The loyalty card's voucher id: `v_<customer>` unless the test names another card."""
    return card or f"v_{customer}"


def _vf_transaction(
    customer: str,
    tx_id: str,
    tx_type: str,
    points: int,
    balance: int,
    at: str,
    *,
    campaign: str = VF_CAMPAIGN,
    card: str | None = None,
) -> dict[str, Any]:
    card = _vf_card_id(customer, card)
    return {
        "id": tx_id,
        "source_id": None,
        "voucher_id": card,
        "campaign_id": campaign,
        "source": "API",
        "reason": None,
        "type": tx_type,
        "details": {
            "balance": {
                "type": "loyalty_card",
                "total": balance,
                "object": "balance",
                "points": points,
                "balance": balance,
                "related_object": {"id": card, "type": "voucher"},
            }
        },
        "related_transaction_id": None,
        "created_at": at,
    }


def _vf_voucher(
    customer: str, balance: int, *, campaign: str = VF_CAMPAIGN, card: str | None = None
) -> dict[str, Any]:
    """The customer's loyalty card in `campaign` (one card per customer per loyalty campaign)."""
    card = _vf_card_id(customer, card)
    return {
        "id": card,
        "code": f"LC-{card.removeprefix('v_')}",
        "loyalty_card": {"points": balance, "balance": balance},
        "type": "LOYALTY_CARD",
        "campaign_id": campaign,
        "holder_id": customer,
        "object": "voucher",
    }


def vf_points_added(
    customer: str,
    event_id: str,
    tx_id: str,
    tx_type: str,
    points: int,
    balance: int,
    at: str,
    *,
    campaign: str = VF_CAMPAIGN,
    card: str | None = None,
) -> dict[str, Any]:
    """Voucherify distribution webhook `customer.voucher.loyalty_card.points_added`.

    `campaign` and `card`: the loyalty campaign and card (voucher id) the points are on.
    """
    tx = _vf_transaction(
        customer, tx_id, tx_type, points, balance, at, campaign=campaign, card=card
    )
    return {
        "id": f"whs_{event_id}",
        "project_id": "proj_test",
        "created_at": at,
        "type": "Loyalty points added",
        "data": {
            "customer": _vf_customer(customer),
            "voucher": _vf_voucher(customer, balance, campaign=campaign, card=card),
            "balance": tx["details"]["balance"],
            "transaction": tx,
        },
        "source": {"id": "distr_test", "object": "distribution"},
        "event": {
            "id": event_id,
            "type": "customer.voucher.loyalty_card.points_added",
            "created_at": at,
            "entity_id": customer,
        },
    }


def vf_transaction_created(
    customer: str,
    event_id: str,
    tx_id: str,
    tx_type: str,
    points: int,
    balance: int,
    at: str,
    *,
    campaign: str = VF_CAMPAIGN,
    card: str | None = None,
) -> dict[str, Any]:
    """Voucherify project webhook `voucher.loyalty_card.transaction.created` (holder = voucher).

    `campaign` and `card`: the loyalty campaign and card (voucher id) the points are on.
    """
    tx = _vf_transaction(
        customer, tx_id, tx_type, points, balance, at, campaign=campaign, card=card
    )
    return {
        "id": f"whs_{event_id}",
        "project_id": "proj_test",
        "created_at": at,
        "type": "voucher.loyalty_card.transaction.created",
        "data": {
            "voucher": _vf_voucher(customer, balance, campaign=campaign, card=card),
            "transaction": tx,
            "holder_loyalty_tier": None,
        },
        "source": {"id": "wh_test", "object": "webhook"},
        "event": {
            "id": event_id,
            "type": "voucher.loyalty_card.transaction.created",
            "created_at": at,
            "entity_id": _vf_card_id(customer, card),
        },
    }


def vf_tier_joined(
    customer: str,
    event_id: str,
    tier_id: str,
    tier_name: str,
    at: str,
    *,
    campaign: str = VF_CAMPAIGN,
) -> dict[str, Any]:
    """Voucherify distribution `customer.loyalty.tier.joined`: a tier of `campaign`'s program."""
    return {
        "id": f"whs_{event_id}",
        "project_id": "proj_test",
        "created_at": at,
        "type": "Tier change",
        "data": {
            "customer": _vf_customer(customer),
            # EventCustomerLoyaltyTierBase: the campaign, and each tier's campaign_id
            # (voucherify-openapi documentation/openapi-events/events-customer.json)
            "campaign": {"id": campaign, "object": "campaign"},
            "loyalty_tier": {
                "id": tier_id,
                "name": tier_name,
                "campaign_id": campaign,
                "object": "loyalty_tier",
            },
            "created_at": at,
        },
        "source": {"id": "distr_test", "object": "distribution"},
        "event": {
            "id": event_id,
            "type": "customer.loyalty.tier.joined",
            "created_at": at,
            "entity_id": customer,
        },
    }


def gb_profile(
    customer: str, at: str, *, activated: int, pending: int, tier: str, tier_order: int
) -> dict[str, Any]:
    """Gameball v4 `customer.profile.updated` (a balance snapshot).

    Without `total_points`: see the report about Gameball snapshots with total_points.
    """
    return {
        "event": "customer.profile.updated",
        "client_id": "2155",
        "customer_id": customer,
        "gb_customer_id": 1234,
        "created_at": at,
        "data": {
            "email": f"{customer}@example.com",
            "tier_name": tier,
            "tier_order": tier_order,
            "activated_points": activated,
            "pending_points": pending,
        },
    }


def wix_account(
    event_type: str,
    instance: str,
    contact: str,
    event_id: str,
    at: str,
    *,
    revision: int,
    balance: int,
    earned: int = 0,
    redeemed: int = 0,
    adjusted: int = 0,
    expired: int = 0,
    tier_id: str | None = None,
) -> dict[str, Any]:
    """A Wix account event envelope (`account_points_updated` or `account_updated`).

    `sign("wix", ...)` turns it into the RS256 JWT Wix sends (nested layers stringified).
    """
    account: dict[str, Any] = {
        "id": f"acct-{contact}",
        "contactId": contact,
        "memberId": contact,
        "revision": str(revision),
        "rewardAvailable": False,
        "points": {
            "balance": balance,
            "earned": earned,
            "redeemed": redeemed,
            "adjusted": adjusted,
            "expired": expired,
        },
        "tier": {"id": tier_id} if tier_id else None,
    }
    if event_type.endswith("account_points_updated"):
        body: dict[str, Any] = {
            "slug": "points_updated",
            "actionEvent": {"body": {"account": account}},
        }
    else:
        body = {"slug": "updated", "updatedEvent": {"currentEntity": account}}
    return {
        "eventType": event_type,
        "instanceId": instance,
        "data": {
            "id": event_id,
            "entityFqdn": "wix.loyalty.v1.account",
            "entityId": account["id"],
            "eventTime": at,
            **body,
        },
        "identity": {"identityType": "APP", "appId": "app-test"},
    }
