"""What both worker peers share: our ledger step fed from their own records and stores.

The peers run `connector.streams.normalize.normalize` and `connector.streams.ledger.LedgerStep`
(decode, dedupe, erasure, `connector.domain.ledger.apply`, Avro encodes, dead letters), the code
the Faust agents run per event; only the framework around them differs. `LedgerStep` takes a
Faust event and a `Members`: `PeerEvent` and `StoreMembers` are the few attributes it uses.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.cpu_profile import thread_cpu, thread_delta  # noqa: E402
from connector.domain.erasure import Erasure  # noqa: E402
from connector.domain.ledger import MemberState  # noqa: E402
from connector.settings import Settings  # noqa: E402
from connector.streams.state_format import (  # noqa: E402
    erasure_key,
    load_erasure,
    load_state,
    record_key,
)

OUTPUT_TOPICS = ("events", "ledger", "balances", "tiers", "dlq")


@dataclass(frozen=True, slots=True)
class PeerMessage:
    """The attributes of a Faust `Message` that LedgerStep and its dead letters read."""

    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class PeerEvent:
    """The attribute of a Faust `EventT` that LedgerStep reads."""

    message: PeerMessage


class StoreMembers:
    """`Members.read` / `read_erasure` over any `get(bytes) -> bytes | None` (Quix's State, a
    rocksdict): the table records in connector/streams/state_format.py's format."""

    def __init__(self, get: Callable[[bytes], bytes | None] | None = None) -> None:
        self.get = get

    def read(self, key: str, event: Any) -> MemberState | None:
        assert self.get is not None
        return load_state(self.get(record_key(key)))

    def read_erasure(self, member_key: str, event: Any) -> Erasure | None:
        assert self.get is not None
        return load_erasure(self.get(erasure_key(member_key)))


def topic_names(prefix: str) -> dict[str, str]:
    """The connector's topic names under `prefix` (connector/topics.py), by role."""
    names = Settings.from_env({"CONNECTOR_TOPIC_PREFIX": prefix}).topics
    return {
        "raw": names.raw,
        "events": names.events,
        "ledger": names.ledger,
        "balances": names.balances,
        "tiers": names.tiers,
        "dlq": names.dlq,
    }


def cpu_seconds(pid: int | None = None) -> float:
    """utime + stime of a process (all its threads; Linux /proc), in seconds."""
    try:
        stat = Path(f"/proc/{pid or 'self'}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Progress:
    """Counts and the CPU window of one peer run (first raw record read → all applied)."""

    expected_raw: int
    kafka_pid: int | None = None
    raw: int = 0
    events: int = 0
    ledger_seen: int = 0
    dead_normalize: int = 0
    dead_ledger: int = 0
    started_at: float | None = None
    done_at: float | None = None
    cpu0: float = 0.0
    cpu1: float = 0.0
    kafka_cpu0: float = 0.0
    kafka_cpu1: float = 0.0
    threads0: dict[str, float] | None = None
    threads1: dict[str, float] | None = None

    def first_raw(self) -> None:
        if self.started_at is None:
            self.started_at = time.time()
            self.cpu0 = cpu_seconds()
            self.threads0 = thread_cpu()
            self.kafka_cpu0 = cpu_seconds(self.kafka_pid) if self.kafka_pid else float("nan")

    @property
    def done(self) -> bool:
        return self.raw >= self.expected_raw and self.ledger_seen >= self.events

    def finish(self) -> None:
        if self.done_at is None:
            self.done_at = time.time()
            self.cpu1 = cpu_seconds()
            self.threads1 = thread_cpu()
            self.kafka_cpu1 = cpu_seconds(self.kafka_pid) if self.kafka_pid else float("nan")

    def report(self, **extra: Any) -> str:
        wall = (self.done_at or time.time()) - (self.started_at or time.time())
        cpu = self.cpu1 - self.cpu0
        applied = self.ledger_seen - self.dead_ledger
        row = {
            "raw": self.raw,
            "events": self.events,
            "applied": applied,
            "dead_letters": self.dead_normalize + self.dead_ledger,
            "dead_letters_ledger": self.dead_ledger,
            "complete": self.done_at is not None and self.done,
            "first_raw_read_at": round(self.started_at or 0.0, 3),
            "done_at": round(self.done_at or 0.0, 3),
            "cpu_window_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "cpu_cores": round(cpu / wall, 2) if wall > 0 else None,
            "cpu_us_per_event": round(cpu / max(1, applied) * 1e6, 1),
            # by thread group (librdkafka's C threads apart): pipeline.py --profile
            "thread_cpu_s": thread_delta(self.threads0, self.threads1)
            if self.threads0 is not None and self.threads1 is not None
            else None,
            "kafka_cpu_cores": round((self.kafka_cpu1 - self.kafka_cpu0) / wall, 2)
            if self.kafka_pid and wall > 0
            else None,
        }
        row.update(extra)
        return json.dumps(row)
