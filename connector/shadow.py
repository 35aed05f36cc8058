"""What `rebuild`, `diff` and `cutover` share: shadow names, the rebuild's manifest, Kafka reads.

A rebuild writes fresh state under a *shadow* topic prefix and a *shadow* app id, next to the
live ones, and never touches a live topic. Its names:

* events, ledger, balances, tiers, dead letters: `<shadow>.events`, `<shadow>.ledger`,
  `<shadow>.balances`, `<shadow>.tiers`, `<shadow>.webhooks.dlq`;
* the members table's changelog (what a worker restores): `<shadow_app_id>-members-changelog`;
* the consumer group a cut-over worker runs as: `<shadow_app_id>`;
* the manifest (one JSON record: what was rebuilt, up to where): `<shadow>.rebuild`.

The manifest is written last: a shadow prefix without one is a rebuild that did not finish.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from connector.errors import BrokerError, ConnectorError
from connector.settings import Settings
from connector.streams.faust_compat import partitions_of
from connector.topics import Topics

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")
MANIFEST_SUFFIX = "rebuild"
MANIFEST_KEY = b"manifest"
REBUILD_BY = "loyalty-connector rebuild"
CUTOVER_BY = "loyalty-connector cutover"


class ShadowError(ConnectorError):
    """A rebuild, diff or cut-over cannot go ahead (and nothing was changed)."""


@dataclass(frozen=True)
class Shadow:
    """The names of one rebuild's state, next to the live settings'."""

    prefix: str
    app_id: str

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def changelog(self) -> str:
        """The members table's changelog of a worker run with `CONNECTOR_APP_ID=app_id`."""
        return changelog_topic(self.app_id)

    @property
    def manifest_topic(self) -> str:
        return f"{self.prefix}.{MANIFEST_SUFFIX}"

    def outputs(self) -> list[str]:
        """The shadow's Avro topics (the raw topic is always the live one)."""
        t = self.topics
        return [t.events, t.ledger, t.balances, t.tiers, t.dlq]


def changelog_topic(app_id: str) -> str:
    """Faust's changelog of the `members` table: `<app id>-<table>-changelog`."""
    return f"{app_id}-members-changelog"


def default_shadow(settings: Settings, now: datetime) -> Shadow:
    stamp = now.strftime("%Y%m%d%H%M")
    return Shadow(f"{settings.topic_prefix}-rebuild-{stamp}", f"{settings.app_id}-rebuild-{stamp}")


def check_shadow(settings: Settings, shadow: Shadow) -> None:
    for what, name in (("--shadow-prefix", shadow.prefix), ("--shadow-app-id", shadow.app_id)):
        if not NAME_RE.fullmatch(name):
            raise ShadowError(f"{what}={name!r}: expected letters, digits, '.', '_' or '-'")
    if shadow.prefix == settings.topic_prefix:
        raise ShadowError(
            f"--shadow-prefix {shadow.prefix!r} is the live CONNECTOR_TOPIC_PREFIX: a rebuild "
            "never writes live topics"
        )
    if shadow.app_id == settings.app_id:
        raise ShadowError(
            f"--shadow-app-id {shadow.app_id!r} is the live CONNECTOR_APP_ID: the rebuild's "
            "state needs an app id of its own"
        )


# -- the manifest ------------------------------------------------------------------------------


def manifest_metadata(manifest: dict[str, Any], by: str = REBUILD_BY) -> str:
    """The offset-commit metadata naming who committed (Kafka keeps up to 4096 bytes)."""
    small = {"by": by, "shadow_prefix": manifest.get("shadow_prefix"), "at": manifest.get("at")}
    return json.dumps(small, separators=(",", ":"))


def committed_by(metadata: str | None) -> str | None:
    """`REBUILD_BY`, `CUTOVER_BY`, or None for an offset anything else committed (a worker)."""
    try:
        value = json.loads(metadata or "")
    except ValueError:
        return None
    by = value.get("by") if isinstance(value, dict) else None
    return by if by in (REBUILD_BY, CUTOVER_BY) else None


async def read_manifest(settings: Settings, shadow_prefix: str) -> dict[str, Any] | None:
    """The manifest a finished rebuild wrote under `shadow_prefix`, or None."""
    topic = f"{shadow_prefix}.{MANIFEST_SUFFIX}"
    found: list[dict[str, Any]] = []

    def keep(m: ConsumerRecord[bytes, bytes]) -> None:
        if m.key == MANIFEST_KEY and m.value:
            found.append(json.loads(m.value))

    await scan(settings.bootstrap_servers, topic, keep)
    return found[-1] if found else None


# -- Kafka reads -------------------------------------------------------------------------------


def committed_reader(bootstrap: str) -> AIOKafkaConsumer:
    """A consumer outside any group that reads what was committed, from the beginning."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )


async def _start(client: Any, bootstrap: str) -> None:
    try:
        await asyncio.wait_for(client.start(), 15)
    except (TimeoutError, OSError) as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from None


async def scan(
    bootstrap: str,
    topic: str,
    handle: Callable[[ConsumerRecord[bytes, bytes]], None],
    *,
    stall: float = 60.0,
) -> int:
    """Feed every record of `topic`, beginning to the end offsets it had at the start, to
    `handle` (read_committed), one partition after another in offset order; the count.

    A topic that does not exist has no records. No progress for `stall` seconds: BrokerError.
    """
    consumer = committed_reader(bootstrap)
    await _start(consumer, bootstrap)
    count = 0
    try:
        tps = await partitions_of(consumer, topic)
        if not tps:
            return 0
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + stall
        while remaining:
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if not remaining:
                break
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
            if batch:
                deadline = time.monotonic() + stall
            elif time.monotonic() > deadline:
                raise BrokerError(f"could not read {topic} to its end {end} within {stall:.0f}s")
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset < end[tp]:
                        handle(m)
                        count += 1
    finally:
        await consumer.stop()
    return count


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition → end offset ({} for a topic that does not exist)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await _start(consumer, bootstrap)
    try:
        tps = await partitions_of(consumer, topic)
        if not tps:
            return {}
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def _with_admin(bootstrap: str, call: Callable[[AIOKafkaAdminClient], Any]) -> Any:
    """`await call(admin)`, retried for up to 30 s on retriable errors (a new broker has no
    group coordinator until its offsets topic exists)."""
    deadline = time.monotonic() + 30
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await _start(admin, bootstrap)
        try:
            return await call(admin)
        except KafkaError as exc:
            if not getattr(exc, "retriable", False) or time.monotonic() > deadline:
                raise BrokerError(f"Kafka at {bootstrap}: {exc}") from None
        finally:
            await admin.close()
        await asyncio.sleep(0.5)


async def group_offsets(bootstrap: str, group: str) -> dict[TopicPartition, OffsetAndMetadata]:
    """A consumer group's committed offsets (with their metadata)."""
    offsets = await _with_admin(bootstrap, lambda a: a.list_consumer_group_offsets(group))
    return {tp: meta for tp, meta in offsets.items() if meta.offset >= 0}


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, members) of a consumer group: ("Empty", 0) once every member left; a group that
    never existed is ("Dead", 0)."""
    responses = await _with_admin(bootstrap, lambda a: a.describe_consumer_groups([group]))
    for response in responses:
        for described in response.groups:
            _, name, state, _, _, members = described[:6]
            if name == group:
                return str(state), len(members)
    return "Dead", 0


async def commit_offsets(
    bootstrap: str, group: str, offsets: dict[TopicPartition, int], metadata: str
) -> None:
    """Commit `offsets` for `group` from outside it (the group must have no active member: the
    broker refuses a commit from a non-member while the group is in use)."""
    if not offsets:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await _start(consumer, bootstrap)
    try:
        consumer.assign(list(offsets))
        await consumer.commit(
            {tp: OffsetAndMetadata(offset, metadata) for tp, offset in offsets.items()}
        )
    finally:
        await consumer.stop()


def ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)
