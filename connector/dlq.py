"""`loyalty-connector dlq list` and `dlq redrive`: look at dead letters, and reprocess them.

A dead letter (`loyalty.webhooks.dlq`, Avro `DeadLetter`) keeps the bytes that failed and the
headers of the record they came in: a raw webhook for the stages `route`, `decode` and `encode`
(the normalize step), an events-topic record for `ledger`. `redrive` writes each selected dead
letter back where it came from (raw webhooks to `loyalty.webhooks.raw` with their original key
and headers; events to `loyalty.events` keyed by the member), so the workers run the current code
on it. Each redriven dead letter is recorded on the compacted topic `loyalty.webhooks.dlq.redriven`
(key: the dead letter's `partition:offset`), and a dead letter already recorded there is never
redriven again: redriving twice changes nothing. A redriven webhook keeps its key and request id,
so if it did reach the ledger some other way, the ledger's dedupe counts it once. One that fails
again becomes a new dead letter, with the new reason, and can be redriven after the next fix.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer

from connector.errors import ConnectorError, SchemaError
from connector.inspect import read_to_end
from connector.kafka_admin import ensure_topics
from connector.models import DeadLetter, LoyaltyEvent
from connector.registry import codec_for
from connector.settings import Settings

NORMALIZE_STAGES = ("route", "decode", "encode")
STAGES = (*NORMALIZE_STAGES, "ledger")
REDRIVE_OF = "redrive-of"


class DlqError(ConnectorError):
    """A dead-letter command could not be done (bad arguments, unreadable records)."""


def redriven_topic(settings: Settings) -> str:
    return settings.topics.dlq_redriven


@dataclass(frozen=True, slots=True)
class Letter:
    partition: int
    offset: int
    timestamp_ms: int
    dead: DeadLetter | None  # None: the record is not a readable DeadLetter
    problem: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"


async def read_letters(settings: Settings) -> list[Letter]:
    codec = codec_for(settings)
    out = []
    for m in await read_to_end(settings.bootstrap_servers, settings.topics.dlq):
        try:
            dead = codec.decode(m.value or b"", DeadLetter)
            out.append(Letter(m.partition, m.offset, m.timestamp, dead))
        except SchemaError as exc:
            out.append(Letter(m.partition, m.offset, m.timestamp, None, str(exc)))
    return sorted(out, key=lambda x: (x.timestamp_ms, x.partition, x.offset))


async def read_redriven(settings: Settings) -> dict[str, dict[str, Any]]:
    """Dead letters already redriven: `partition:offset` -> the record of it."""
    done: dict[str, dict[str, Any]] = {}
    for m in await read_to_end(settings.bootstrap_servers, redriven_topic(settings)):
        if m.key is not None and m.value is not None:
            done[m.key.decode()] = json.loads(m.value)
    return done


def _text(raw: bytes, limit: int = 600) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(raw)} bytes, not UTF-8: {raw[:48].hex()}...>"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def selected(
    letters: list[Letter],
    stage: str | None,
    provider: str | None,
    since: datetime | None,
) -> list[Letter]:
    out = []
    for letter in letters:
        d = letter.dead
        if d is None:
            continue
        if stage is not None and d.stage != stage:
            continue
        if provider is not None and d.provider != provider:
            continue
        if since is not None and d.failed_at < since:
            continue
        out.append(letter)
    return out


def run_list(settings: Settings, show: int, as_json: bool, out: TextIO = sys.stdout) -> int:
    letters = asyncio.run(read_letters(settings))
    redriven = asyncio.run(read_redriven(settings))
    counts: Counter[tuple[str, str, str]] = Counter()
    for letter in letters:
        d = letter.dead
        if d is None:
            counts[("?", "?", "unreadable")] += 1
        else:
            counts[(d.stage, d.provider or "-", d.error_class)] += 1
    waiting = [x for x in letters if x.dead is not None and x.ref not in redriven]
    samples = (
        [
            {
                "ref": x.ref,
                "failed_at": x.dead.failed_at.isoformat(),
                "stage": x.dead.stage,
                "provider": x.dead.provider,
                "tenant": x.dead.tenant,
                "error_class": x.dead.error_class,
                "error_message": x.dead.error_message,
                "delivery_id": x.dead.delivery_id,
                "redriven": redriven.get(x.ref),
                "raw": _text(x.dead.raw),
            }
            for x in letters[-show:]
            if x.dead is not None
        ]
        if show
        else []
    )
    report: dict[str, Any] = {
        "topic": settings.topics.dlq,
        "total": len(letters),
        "not_redriven": len(waiting),
        "by": [
            {"stage": s, "provider": p, "error_class": e, "count": n}
            for (s, p, e), n in sorted(counts.items())
        ],
        "samples": samples,
    }
    if as_json:
        out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return 0
    out.write(
        f"{report['total']} dead letters on {settings.topics.dlq}, "
        f"{report['not_redriven']} not redriven\n"
    )
    if report["by"]:
        out.write(f"{'stage':<8} {'provider':<13} {'error':<28} count\n")
        for row in report["by"]:
            out.write(
                f"{row['stage']:<8} {row['provider']:<13} {row['error_class']:<28} {row['count']}\n"
            )
    for s in samples:
        state = "redriven" if s["redriven"] else "waiting"
        out.write(
            f"\n[{s['ref']}] {s['failed_at']} {s['stage']} {s['provider']} ({state}): "
            f"{s['error_class']}: {s['error_message']}\n  {s['raw']}\n"
        )
    return 0


async def redrive(
    settings: Settings,
    *,
    stage: str | None = None,
    provider: str | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Write the selected, not yet redriven dead letters back; returns what was done."""
    if stage is not None and stage not in STAGES:
        raise DlqError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    letters = selected(await read_letters(settings), stage, provider, since)
    redriven = await read_redriven(settings)
    todo = [x for x in letters if x.ref not in redriven]
    report: dict[str, Any] = {
        "selected": len(letters),
        "already_redriven": len(letters) - len(todo),
        "redriven": 0,
        "by_stage": {},
        "dry_run": dry_run,
    }
    if dry_run or not todo:
        report["would_redrive"] = len(todo)
        return report
    codec = codec_for(settings)
    topics = settings.topics
    await ensure_topics(settings, [redriven_topic(settings)])
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    by_stage: Counter[str] = Counter()
    try:
        for letter in todo:
            d = letter.dead
            assert d is not None
            headers = [(k, v.encode()) for k, v in d.headers.items() if k != REDRIVE_OF]
            headers.append((REDRIVE_OF, f"{topics.dlq}:{letter.ref}".encode()))
            if d.stage == "ledger":
                try:
                    member = codec.decode(d.raw, LoyaltyEvent).member_key
                except SchemaError as exc:
                    raise DlqError(
                        f"dead letter {letter.ref}: not an events record: {exc}"
                    ) from None
                target, key = topics.events, member.encode()
            else:
                target, key = topics.raw, d.delivery_id.encode()
            md = await producer.send_and_wait(target, d.raw, key=key, headers=headers)
            record = {
                "redriven_at": int(time.time() * 1000),
                "to": f"{target}:{md.partition}:{md.offset}",
                "stage": d.stage,
                "error_class": d.error_class,
            }
            # the marker after the record: a crash in between redrives it again, which the
            # ledger's dedupe absorbs (same key, same request id)
            await producer.send_and_wait(
                redriven_topic(settings), json.dumps(record).encode(), key=letter.ref.encode()
            )
            by_stage[d.stage] += 1
    finally:
        await producer.stop()
    report["redriven"] = sum(by_stage.values())
    report["by_stage"] = dict(by_stage)
    return report


def run_redrive(
    settings: Settings,
    stage: str | None,
    provider: str | None,
    since: datetime | None,
    dry_run: bool,
    out: TextIO = sys.stdout,
) -> int:
    report = asyncio.run(
        redrive(settings, stage=stage, provider=provider, since=since, dry_run=dry_run)
    )
    out.write(json.dumps(report) + "\n")
    return 0


def parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DlqError(
            f"--since {text!r}: expected an ISO time, e.g. 2026-12-01T10:00:00Z"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
