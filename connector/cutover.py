"""`loyalty-connector cutover`: make a finished rebuild the live state, keeping the topic names.

Run it after every live worker has stopped and before any worker runs with the shadow app id.
It changes three things, and checks first that it may (nothing is changed if a check fails):

1. **Balances and tiers**: each account whose rebuilt `MemberBalance` differs from the newest
   live one (any figure, not the freshness fields), or that only the rebuild has, gets its
   rebuilt record appended to the live compacted `<prefix>.balances`; likewise `<prefix>.tiers`
   where the rebuilt tier differs. Consumers of those tables need do nothing.
2. **The shadow group's events offsets**: the consumer group `<shadow_app_id>` is committed on
   the live events topic at the end offsets it has *now*, with the live workers stopped.
3. Nothing else: the shadow group's raw offsets stay where the rebuild stopped.

Why nothing is counted twice. The rebuilt state is every raw record before the rebuild's stop
offsets, applied once. A worker with `CONNECTOR_APP_ID=<shadow_app_id>` restores that state from
the shadow changelog, normalizes the raw topic from the stop offsets on (the records that came
in during and after the rebuild), and applies from the live events topic only what lies past
the offsets committed here. The live workers are stopped, so everything past those offsets is
that worker's own normalize output: raw records after the stop offsets, each once. The live
workers' events before them (records the rebuild already applied, or that the new worker
normalizes again) are never applied.

Ledger and events consumers: the old rules' entries stay on `<prefix>.ledger`; the ledger under
the current rules is `<shadow>.ledger` from its beginning, then `<prefix>.ledger` from the offsets
`cutover` prints (likewise events). Balances of members who moved after the rebuild read their
rebuild-time value until the new workers have caught up with them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from connector.errors import SchemaError
from connector.models import MemberBalance, MemberTier, Tier
from connector.registry import codec_for
from connector.settings import Settings
from connector.shadow import (
    CUTOVER_BY,
    REBUILD_BY,
    ShadowError,
    _start,
    commit_offsets,
    committed_by,
    end_offsets,
    group_offsets,
    group_state,
    manifest_metadata,
    read_manifest,
    scan,
)
from connector.topics import Topics

# MemberBalance fields that say when, not what: a republish is for a different *figure*
FRESHNESS = frozenset({"updated_at", "as_of", "last_event_id", "events_applied", "source_offset"})


@dataclass
class CutoverResult:
    prefix: str
    app_id: str
    shadow_prefix: str
    shadow_app_id: str
    dry_run: bool = False
    balances_republished: int = 0
    balances_equal: int = 0
    balances_only_live: int = 0
    tiers_republished: int = 0
    events_offsets: dict[int, int] = field(default_factory=dict)
    ledger_offsets: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {
            "events_offsets": {str(p): o for p, o in sorted(self.events_offsets.items())},
            "ledger_offsets": {str(p): o for p, o in sorted(self.ledger_offsets.items())},
            "worker_env": {"CONNECTOR_APP_ID": self.shadow_app_id},
        }


def _figures(balance: MemberBalance) -> tuple[Any, ...]:
    return tuple(
        getattr(balance, f.name)
        for f in dataclasses.fields(MemberBalance)
        if f.name not in FRESHNESS
    )


def _same_tier(a: Tier | None, b: Tier | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.id, a.name, a.order) == (b.id, b.name, b.order)


async def _latest(
    settings: Settings, topic: str, kind: type[Any]
) -> dict[bytes, tuple[bytes, Any]]:
    """key → (the newest record's bytes, decoded) of a compacted topic."""
    codec = codec_for(settings)
    out: dict[bytes, tuple[bytes, Any]] = {}

    def keep(m: ConsumerRecord[bytes, bytes]) -> None:
        key = m.key or b""
        if m.value is None:
            out.pop(key, None)
            return
        try:
            out[key] = (m.value, codec.decode(m.value, kind))
        except SchemaError:
            pass

    await scan(settings.bootstrap_servers, topic, keep)
    return out


async def _check(
    settings: Settings, shadow_prefix: str, shadow_app_id: str | None, allow_partial: bool
) -> tuple[dict[str, Any], str]:
    bootstrap = settings.bootstrap_servers
    manifest = await read_manifest(settings, shadow_prefix)
    if manifest is None:
        raise ShadowError(
            f"no finished rebuild under {shadow_prefix} (no manifest on {shadow_prefix}.rebuild): "
            "run `loyalty-connector rebuild` first, and let it finish"
        )
    if manifest.get("prefix") != settings.topic_prefix:
        raise ShadowError(
            f"{shadow_prefix} is a rebuild of CONNECTOR_TOPIC_PREFIX={manifest.get('prefix')!r}, "
            f"not of {settings.topic_prefix!r}"
        )
    app_id = shadow_app_id or str(manifest["shadow_app_id"])
    if app_id != manifest["shadow_app_id"]:
        raise ShadowError(
            f"{shadow_prefix} was rebuilt for app id {manifest['shadow_app_id']!r}, not {app_id!r}"
        )
    if not manifest.get("from_start") and not allow_partial:
        raise ShadowError(
            f"{shadow_prefix} is a partial rebuild (--since {manifest.get('since')}, or raw "
            "records deleted by retention): its state lacks history, so it is not cut over "
            "(--allow-partial overrides)"
        )
    for group, who in ((settings.app_id, "live"), (app_id, "shadow")):
        state, members = await group_state(bootstrap, group)
        if members:
            stop = (
                "stop every live worker first (a killed worker leaves the group after its "
                "session timeout)"
                if who == "live"
                else "workers already run with the shadow app id: stop them; if they processed "
                "anything, rebuild again"
            )
            raise ShadowError(
                f"consumer group {group} ({who}) has {members} active members ({state}): {stop}"
            )
    committed = await group_offsets(bootstrap, app_id)
    live = settings.topics
    raw = [meta for tp, meta in committed.items() if tp.topic == live.raw]
    events = [meta for tp, meta in committed.items() if tp.topic == live.events]
    if not raw or any(committed_by(m.metadata) != REBUILD_BY for m in raw):
        raise ShadowError(
            f"consumer group {app_id}'s raw offsets are not the rebuild's: a worker already ran "
            "with that app id; rebuild again under new names"
        )
    if any(committed_by(m.metadata) == CUTOVER_BY for m in events):
        raise ShadowError(f"{shadow_prefix} was already cut over")
    if any(committed_by(m.metadata) != REBUILD_BY for m in events):
        raise ShadowError(
            f"consumer group {app_id}'s events offsets are not the rebuild's: a worker already "
            "ran with that app id; rebuild again under new names"
        )
    return manifest, app_id


async def cutover(
    settings: Settings,
    shadow_prefix: str,
    shadow_app_id: str | None = None,
    *,
    dry_run: bool = False,
    allow_partial: bool = False,
) -> CutoverResult:
    manifest, app_id = await _check(settings, shadow_prefix, shadow_app_id, allow_partial)
    live, shadow = settings.topics, Topics(shadow_prefix)
    bootstrap = settings.bootstrap_servers
    result = CutoverResult(settings.topic_prefix, settings.app_id, shadow_prefix, app_id, dry_run)

    live_balances = await _latest(settings, live.balances, MemberBalance)
    shadow_balances = await _latest(settings, shadow.balances, MemberBalance)
    live_tiers = await _latest(settings, live.tiers, MemberTier)
    shadow_tiers = await _latest(settings, shadow.tiers, MemberTier)
    balances: list[tuple[bytes, bytes]] = []
    for key, (value, rebuilt) in sorted(shadow_balances.items()):
        current = live_balances.get(key)
        if current is None or _figures(current[1]) != _figures(rebuilt):
            balances.append((key, value))
        else:
            result.balances_equal += 1
    result.balances_only_live = len(set(live_balances) - set(shadow_balances))
    tiers: list[tuple[bytes, bytes]] = []
    for key, (value, rebuilt) in sorted(shadow_tiers.items()):
        current = live_tiers.get(key)
        if current is None or not _same_tier(current[1].tier, rebuilt.tier):
            tiers.append((key, value))
    result.balances_republished, result.tiers_republished = len(balances), len(tiers)

    if not dry_run:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=settings.idempotent_producer,
            linger_ms=5,
        )
        await _start(producer, bootstrap)
        try:
            futures = [await producer.send(live.balances, v, key=k) for k, v in balances]
            futures += [await producer.send(live.tiers, v, key=k) for k, v in tiers]
            for fut in futures:
                await fut
        finally:
            await producer.stop()
    result.events_offsets = await end_offsets(bootstrap, live.events)
    result.ledger_offsets = await end_offsets(bootstrap, live.ledger)
    if not dry_run:
        offsets = {TopicPartition(live.events, p): o for p, o in result.events_offsets.items()}
        await commit_offsets(bootstrap, app_id, offsets, manifest_metadata(manifest, by=CUTOVER_BY))
    return result


def _offsets(offsets: dict[int, int]) -> str:
    return ", ".join(f"{p}:{o}" for p, o in sorted(offsets.items())) or "(empty)"


def summary(result: CutoverResult) -> str:
    live, shadow = Topics(result.prefix), Topics(result.shadow_prefix)
    head, done = (
        ("dry run, nothing written", "to republish") if result.dry_run else ("done", "republished")
    )
    return "\n".join(
        [
            f"cut over {result.prefix} to the rebuild {result.shadow_prefix} ({head}):",
            f"  {live.balances}: {result.balances_republished} rebuilt balances {done} "
            f"({result.balances_equal} equal; {result.balances_only_live} accounts only live, "
            "left as they are)",
            f"  {live.tiers}: {result.tiers_republished} rebuilt tiers {done}",
            f"  consumer group {result.shadow_app_id}: {live.events} at "
            + _offsets(result.events_offsets),
            "next: start the workers with "
            f"CONNECTOR_APP_ID={result.shadow_app_id} (same CONNECTOR_TOPIC_PREFIX); they restore "
            "the rebuilt members table and continue the raw topic where the rebuild stopped",
            "consumers:",
            f"  {live.balances}, {live.tiers}: nothing to do",
            f"  {live.ledger}: under the current rules = {shadow.ledger} from its beginning, then "
            f"{live.ledger} from {_offsets(result.ledger_offsets)}",
            f"  {live.events}: likewise {shadow.events}, then {live.events} from "
            f"{_offsets(result.events_offsets)}",
        ]
    )
