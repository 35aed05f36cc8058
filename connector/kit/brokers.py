"""The Kafka a benchmark measures against: one given by address, else Apache Kafka started here.

The local broker (`KafkaBroker`) runs with production's flush policy unless told to fsync every
message as the tests' broker does, and is removed afterwards with its data. `setup` is what a
result file says about where it was measured.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from connector.embedded.kafka import PRODUCTION_FLUSH, KafkaBroker


@dataclass(frozen=True)
class BenchKafka:
    bootstrap: str
    version: str  # "external" for a broker given by address
    local: KafkaBroker | None  # the broker started here, if any
    fsync_every_message: bool = False

    @property
    def pid(self) -> int | None:
        """The local broker's process id (for its CPU seconds); None for an external one."""
        proc = self.local.proc if self.local else None
        return proc.pid if proc else None

    def describe(self) -> str:
        """For a result file's setup: which broker, and how it flushes."""
        if self.local is None:
            return f"external broker {self.bootstrap}"
        flush = "fsync every message" if self.fsync_every_message else "default flush policy"
        return f"Apache Kafka {self.version} (KRaft, single node, same machine, {flush})"


@contextmanager
def kafka(
    external: str | None = None, *, fsync_every_message: bool = False
) -> Iterator[BenchKafka]:
    """`external` (host:port) as it is; else a local Apache Kafka for the block's duration."""
    if external:
        yield BenchKafka(external, "external", None)
        return
    broker = KafkaBroker(properties={} if fsync_every_message else PRODUCTION_FLUSH)
    print("starting Apache Kafka ...", flush=True)
    broker.start()
    try:
        yield BenchKafka(broker.bootstrap, broker.version, broker, fsync_every_message)
    finally:
        broker.cleanup()


def setup(kafka: BenchKafka) -> dict[str, Any]:
    """The machine and the broker, for a result file's `setup`."""
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "kafka": kafka.describe(),
    }
