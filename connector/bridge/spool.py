"""Store-and-forward for the bridge: a local spool for when Kafka cannot take a webhook.

Open Loyalty retries a refused delivery once, Gameball three times, Voucherify disables a
webhook after twelve failures: a Kafka outage of minutes would lose points movements for good if
the bridge only answered 503. With `CONNECTOR_SPOOL_DIR` set, a verified request Kafka did not
acknowledge within the ack deadline (or any request while Kafka is unreachable) is written to the
spool, durably, and answered 200; the `Forwarder` drains the spool into `loyalty.webhooks.raw` in
arrival order once Kafka is back, and deletes a record only after Kafka acknowledged it.

The store is SQLite from the standard library, in WAL mode with `synchronous=FULL`: a committed
transaction is on disk (fsync of the WAL) before `append` returns, survives `kill -9` and a power
cut of that disk, and readers never block the writer. One connection lives on one thread; appends
that arrive while a commit is running wait for the next one, so one fsync covers a whole group of
requests (group commit). A home-made log file would need its own framing, torn-write detection
and compaction; SQLite has them, tested for decades.

Durability is that of one disk: the spool is not replicated like Kafka. Records spooled while
Kafka's ack was only late may also reach Kafka from the original send; both copies carry the
same key and request id, so the ledger counts them once (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
Row = tuple[str, bytes | None, bytes, str, int, int]  # topic, key, value, headers, ms, size
Stats = tuple[int, int, int | None]  # count, bytes, oldest spooled_ms
Send = Callable[[str, bytes, bytes, Sequence[tuple[str, bytes]]], Awaitable[None]]

log = logging.getLogger("connector.bridge.spool")

FILE_NAME = "bridge-spool.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    spooled_ms INTEGER NOT NULL,
    size INTEGER NOT NULL
)
"""
# what a record costs beyond its bytes (row, index, headers' names): keeps the cap honest
ROW_OVERHEAD = 128


class SpoolFull(Exception):
    """The spool holds `CONNECTOR_SPOOL_MAX_BYTES`: the request is refused (503)."""


@dataclass(frozen=True, slots=True)
class Spooled:
    seq: int
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    spooled_ms: int


def _headers_text(headers: Sequence[tuple[str, bytes]]) -> str:
    return json.dumps([[n, base64.b64encode(v).decode()] for n, v in headers])


def _headers_of(text: str) -> list[tuple[str, bytes]]:
    return [(str(n), base64.b64decode(v)) for n, v in json.loads(text)]


class Spool:
    """The durable queue. `append` and `delete` are coroutines; SQLite runs on its own thread."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.path = Path(directory) / FILE_NAME
        self.max_bytes = max_bytes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._db: sqlite3.Connection | None = None
        self._waiting: list[tuple[Row, asyncio.Future[int]]] = []
        self._committer: asyncio.Task[None] | None = None
        self.count = 0
        self.bytes = 0
        self.oldest_ms: int | None = None
        self.appended = asyncio.Event()  # set on every commit: wakes the forwarder
        self.commits = 0

    # -- on the spool thread --------------------------------------------------------------------

    def _stats(self) -> Stats:
        assert self._db is not None
        count, size, oldest = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(spooled_ms) FROM spool"
        ).fetchone()
        return int(count), int(size), None if oldest is None else int(oldest)

    def _open(self) -> Stats:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(SCHEMA)
        self._db = db
        return self._stats()

    def _insert(self, rows: list[Row]) -> list[int]:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            seqs = [
                int(
                    db.execute(
                        "INSERT INTO spool (topic, key, value, headers, spooled_ms, size) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        row,
                    ).lastrowid
                    or 0
                )
                for row in rows
            ]
            db.execute("COMMIT")  # synchronous=FULL: the WAL is fsynced before this returns
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return seqs

    def _read(self, limit: int, max_bytes: int) -> list[Spooled]:
        assert self._db is not None
        out: list[Spooled] = []
        total = 0
        for seq, topic, key, value, headers, spooled_ms, size in self._db.execute(
            "SELECT seq, topic, key, value, headers, spooled_ms, size FROM spool "
            "ORDER BY seq LIMIT ?",
            (limit,),
        ):
            if out and total + size > max_bytes:
                break
            total += size
            out.append(Spooled(seq, topic, key, value, _headers_of(headers), spooled_ms))
        return out

    def _delete(self, seqs: list[int]) -> Stats:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM spool WHERE seq = ?", [(q,) for q in seqs])
        db.execute("COMMIT")
        return self._stats()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- on the event loop ----------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        count, size, oldest = await self._run(self._open)
        self.count, self.bytes, self.oldest_ms = count, size, oldest
        if count:
            log.warning(
                "spool %s holds %d webhooks (%d bytes) from before this start: forwarding them",
                self.path,
                count,
                size,
            )
            self.appended.set()

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    async def append(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> int:
        """Store one record durably; its sequence number once committed. SpoolFull if full."""
        text = _headers_text(headers)
        size = len(value) + len(key or b"") + len(text) + ROW_OVERHEAD
        pending = sum(row[5] for row, _ in self._waiting)
        if self.bytes + pending + size > self.max_bytes:
            raise SpoolFull(
                f"spool holds {self.bytes + pending} of {self.max_bytes} bytes "
                "(CONNECTOR_SPOOL_MAX_BYTES)"
            )
        row = (topic, key, value, text, int(time.time() * 1000), size)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, fut))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._commit_groups())
        return await asyncio.shield(fut)

    async def _commit_groups(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            rows = [row for row, _ in group]
            try:
                seqs = await self._run(self._insert, rows)
            except Exception as exc:
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.commits += 1
            self.count += len(rows)
            self.bytes += sum(r[5] for r in rows)
            if self.oldest_ms is None:
                self.oldest_ms = rows[0][4]
            for (_, fut), seq in zip(group, seqs, strict=True):
                if not fut.done():
                    fut.set_result(seq)
            self.appended.set()

    async def read(self, limit: int = 500, max_bytes: int = 4 * 1024 * 1024) -> list[Spooled]:
        """The oldest records, in arrival order (at least one, if any)."""
        return await self._run(self._read, limit, max_bytes)

    async def delete(self, seqs: list[int]) -> None:
        if not seqs:
            return
        count, size, oldest = await self._run(self._delete, seqs)
        self.count, self.bytes, self.oldest_ms = count, size, oldest

    def oldest_age_s(self) -> float:
        if self.oldest_ms is None or not self.count:
            return 0.0
        return max(0.0, time.time() - self.oldest_ms / 1000)


class Forwarder:
    """Drains the spool into Kafka, oldest first; deletes a batch once Kafka acked all of it.

    `spooling` is the bridge's mode: True from the first request Kafka did not take until the
    spool is empty again. While it holds, new requests go straight to the spool (behind the
    ones already there), so the raw topic receives them in arrival order and a provider is
    answered in milliseconds instead of after the ack deadline.
    """

    def __init__(
        self, spool: Spool, send: Send, ensure: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.spool = spool
        self._send = send  # async (topic, key, value, headers) -> None, returns on Kafka's ack
        self._ensure = ensure  # async () -> None: the raw topic exists (retried until it does)
        self.spooling = spool.count > 0
        self.forwarded = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.backoff_s = 0.5

    def start(self) -> None:
        self.spooling = self.spooling or self.spool.count > 0
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self.spool.appended.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def begin(self, why: str) -> None:
        if not self.spooling:
            self.spooling = True
            log.warning("Kafka did not take a webhook (%s): spooling to %s", why, self.spool.path)

    async def _run(self) -> None:
        ensure = self._ensure
        delay = self.backoff_s
        while not self._stopping:
            if not self.spool.count:
                if self.spooling:
                    self.spooling = False
                    log.warning(
                        "spool drained: %d webhooks forwarded to Kafka; writing directly again",
                        self.forwarded,
                    )
                self.spool.appended.clear()
                if not self.spool.count:
                    await self.spool.appended.wait()
                continue
            try:
                if ensure is not None:
                    await ensure()
                    ensure = None
                batch = await self.spool.read()
                await asyncio.gather(
                    *(self._send(r.topic, r.key or b"", r.value, r.headers) for r in batch)
                )
                await self.spool.delete([r.seq for r in batch])
                self.forwarded += len(batch)
                delay = self.backoff_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka still away: keep the records, try again later
                self.failures += 1
                log.info("spool forward failed (%s); retrying in %.1f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
