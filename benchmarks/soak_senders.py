"""The soak's senders: one thread with its own event loop posting the workload's deliveries to
the bridge as providers do (acknowledged only on 200; refusals retried with backoff, within each
provider's retry budget when there is one, through a load balancer that retries refused
connections)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import threading
import time
import traceback

import aiohttp

from benchmarks.soak_workload import Item, Workload

# How often each provider retries a delivery it was not answered 2xx before it drops it
# (docs/delivery-semantics.md): Open Loyalty (Cloud) once; Gameball three times (+5, +20,
# +60 min), then "the webhook request will be discarded"; Voucherify 12 times, then a project
# webhook is disabled; Wix 12 more attempts over ~47 h. The soak keeps its compressed timing.
PROVIDER_RETRIES = {"open_loyalty": 1, "gameball": 3, "voucherify": 12, "wix": 12}
# The load balancer in front of the bridge (with provider retry budgets): a connection nobody
# accepts is retried this often, this far apart (HAProxy `retries`, turn-around timer 1 s). A
# bridge stopped with SIGTERM while Kafka is down takes ~11 s to exit (its drain and the
# producer's stop wait 5 s each), then ~1 s to start: 30 s covers that with room.
LB_CONNECT_RETRIES = 30
LB_RETRY_DELAY_S = 1.0
CLIENT_TIMEOUT_S = 10.0  # a sender's wait for one answer


class Sender:
    """Its own thread and event loop: schedules items, posts them, retries like providers."""

    def __init__(
        self,
        url: str,
        workload: Workload,
        rate: float,
        quick: bool,
        retries: dict[str, int] | None = None,
    ) -> None:
        self.url, self.workload, self.rate = url, workload, rate
        self.horizon = 90.0 if quick else 600.0
        # retries per provider (then the delivery is dropped); None: until the horizon
        self.retries = retries
        if retries is not None:  # the budget ends a delivery's retries, never the horizon
            longest = CLIENT_TIMEOUT_S + LB_CONNECT_RETRIES * LB_RETRY_DELAY_S + 4.0
            self.horizon = max(self.horizon, (max(retries.values()) + 1) * longest)
        self.lb_reconnects = 0  # refused connections the load balancer retried
        self.items: list[Item] = []
        self.start = time.monotonic()
        self.start_epoch = time.time()
        self.stop_generating = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="sender", daemon=True)

    def begin(self) -> None:
        self.start = time.monotonic()
        self.start_epoch = time.time()
        self.thread.start()

    def now(self) -> float:
        return time.monotonic() - self.start

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            traceback.print_exc()
        finally:
            self.done.set()

    async def _main(self) -> None:
        heap: list[tuple[float, int, Item]] = []
        order = itertools.count()
        tasks: set[asyncio.Task[None]] = set()
        sem = asyncio.Semaphore(48)
        connector = aiohttp.TCPConnector(limit=48)
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
        generated = 0.0
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            while True:
                now = self.now()
                if not self.stop_generating.is_set():
                    while generated < now * self.rate:
                        for it in self.workload.step():
                            delay = 0.0
                            if it.kind == "duplicate":
                                delay = self.workload.rng.uniform(0.0, 3.0)
                            if not it.ordered and self.workload.rng.random() < self.workload.p_late:
                                delay += self.workload.rng.uniform(*self.workload.late_range)
                                it.late = True
                            heapq.heappush(heap, (now + delay, next(order), it))
                            generated += 1
                while heap and heap[0][0] <= now:
                    _, _, it = heapq.heappop(heap)
                    self.items.append(it)
                    task = asyncio.ensure_future(self._deliver(http, sem, it))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if self.stop_generating.is_set() and not heap and not tasks:
                    return
                await asyncio.sleep(0.02)

    async def _deliver(self, http: aiohttp.ClientSession, sem: asyncio.Semaphore, it: Item) -> None:
        if it.after is not None:  # the member's previous delivery must be answered first
            await it.after.answered.wait()
        try:
            await self._attempts(http, sem, it)
        finally:
            it.answered.set()

    async def _attempts(
        self, http: aiohttp.ClientSession, sem: asyncio.Semaphore, it: Item
    ) -> None:
        d = it.delivery
        first = self.now()
        budget = None if self.retries is None else self.retries[d.provider]
        # with budgets, a load balancer stands between the providers and the bridge
        reconnects = 0 if budget is None else LB_CONNECT_RETRIES
        for attempt in itertools.count():
            retry_after = 4.0
            status = 0
            for reconnect in range(reconnects + 1):
                started = self.now()
                status, refused = 0, False
                try:
                    async with (
                        sem,
                        http.post(self.url + d.path, data=d.body, headers=d.headers) as r,
                    ):
                        text = await r.text()
                        status = r.status
                        if status == 200:
                            doc = json.loads(text)
                            it.request_id = str(doc["request_id"])
                            it.spooled = doc.get("spooled") is True
                        try:
                            retry_after = float(r.headers.get("Retry-After", "4"))
                        except ValueError:
                            pass
                except aiohttp.ClientConnectorError:
                    refused = True  # nothing accepted the connection: no request was sent
                except (aiohttp.ClientError, TimeoutError, OSError):
                    status = 0  # connection reset or no answer in time
                it.attempts.append((started, self.now() - started, status))
                if not refused or reconnect == reconnects:
                    break
                self.lb_reconnects += 1
                await asyncio.sleep(LB_RETRY_DELAY_S)
            it.provider_attempts = attempt + 1
            if status not in (0, 429, 503):
                it.status = status
                return
            if budget is not None and attempt >= budget:
                it.status, it.lost = status, True  # the provider's last retry: it drops it
                return
            if self.now() - first > self.horizon:
                it.status, it.gave_up = status, True
                return
            backoff = min(0.25 * 2**attempt, retry_after, 4.0)
            await asyncio.sleep(backoff * self.workload.rng.uniform(0.5, 1.0))
