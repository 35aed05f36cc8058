"""The soak's run: Apache Kafka, the bridge and workers (a `connector.kit` stack), the faults
injected into them, the supervisor that restarts what exits by itself, and the recovery
measured after each fault."""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from benchmarks.soak_senders import PROVIDER_RETRIES, Sender
from benchmarks.soak_workload import MAX_BODY, Workload
from connector.embedded.kafka import KafkaBroker
from connector.kit import offsets
from connector.kit.processes import Bridge, Child, ChildError, Stack, Worker
from connector.kit.ready import http_get

KINDS = ("broker", "worker", "rebalance", "bridge", "outage")
SPOOL_METRICS = (
    "bridge_spooled_total",
    "bridge_spool_records",
    "bridge_spool_forwarded",
    "bridge_spool_full_total",
    "bridge_spooling",
)
# Faust reads these from the environment: notice a killed worker in ~6 s instead of 60 s
FAST_FAILOVER = {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_async(coro: Any, timeout: float = 20) -> Any:
    """`asyncio.run` with a deadline; None when Kafka does not answer (e.g. it is down)."""
    try:
        return asyncio.run(asyncio.wait_for(coro, timeout))
    except (Exception, asyncio.CancelledError):
        return None


def lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Records of `topics` the group has not committed past (-1 if it cannot tell)."""
    got = run_async(offsets.lag(bootstrap, group, topics))
    return -1 if got is None else int(got)


@dataclass
class Fault:
    name: str
    kind: str
    t0: float = 0.0  # seconds since the sender started
    repaired: float | None = None  # the restart (or addition) was done
    bridge_200_s: float | None = None  # first 200 to a request sent after t0
    workers_ready_s: float | None = None  # every live worker's /readyz is 200
    spool_drained_s: float | None = None  # the bridge's spool was empty again (with the spool)
    caught_up_s: float | None = None  # the group committed past what raw+events held when ready
    end: float | None = None
    notes: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.tmp = Path(tempfile.mkdtemp(prefix="soak-"))
        self.broker = KafkaBroker(self.tmp / "kafka")
        self._stack: Stack | None = None
        self.bridge: Bridge | None = None
        self.bridge_port = 0
        self.workers: dict[str, Worker] = {}
        self.lock = threading.Lock()
        self.busy: set[str] = set()  # processes a fault is handling (the supervisor keeps off)
        self.unexpected_exits: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.sender: Sender | None = None
        self.stopping = threading.Event()
        self.spool_dir = self.tmp / "bridge-spool" if args.spool else None
        # the last /metrics figures (SPOOL_METRICS) of each bridge process, by pid: counters
        # start at 0 in every process, so the run's totals are sums over processes
        self.bridge_metrics: dict[int, dict[str, float]] = {}
        self.spool_at_bridge_kill: list[int] = []  # spool records when a bridge was killed

    def bridge_env(self) -> dict[str, str]:
        """The bridge's own settings: the spool, the same directory for every bridge process."""
        return {} if self.spool_dir is None else {"CONNECTOR_SPOOL_DIR": str(self.spool_dir)}

    # -- processes -------------------------------------------------------------------------

    @property
    def stack(self) -> Stack:
        assert self._stack is not None
        return self._stack

    def logs(self, chars: int = 8000) -> str:
        return "" if self._stack is None else self._stack.logs(chars)

    def setup(self) -> None:
        log(f"starting Apache Kafka in {self.tmp}")
        self.broker.start()
        self._stack = Stack(self.broker.bootstrap, f"soak{uuid.uuid4().hex[:6]}", self.tmp)
        self.stack.base_env.update(
            CONNECTOR_PARTITIONS="4",
            CONNECTOR_MAX_BODY_BYTES=str(MAX_BODY),
            CONNECTOR_ACK_TIMEOUT_MS="2000",
            CONNECTOR_LOG_LEVEL="INFO",
            **FAST_FAILOVER,
        )
        self.bridge = self.stack.start_bridge(**self.bridge_env())
        self.bridge_port = self.bridge.port
        log(f"bridge at {self.bridge.url}; starting two workers")
        for name in ("worker-a", "worker-b"):
            self.workers[name] = self.stack.start_worker(name, wait=False)
        for w in self.workers.values():
            self.stack.wait_ready(w)
        log("workers ready")

    def start_bridge(self) -> Bridge:
        """A new bridge on the first one's port (and spool), not waited for."""
        self.bridge = self.stack.start_bridge(
            port=self.bridge_port, wait=False, **self.bridge_env()
        )
        return self.bridge

    def restart_worker(self, name: str) -> Worker:
        old = self.workers[name]
        w = self.stack.start_worker(name, port=old.port, data_dir=old.data_dir, wait=False)
        self.workers[name] = w
        return w

    def supervise(self) -> None:
        """Restart processes that exit on their own (and count them)."""
        while not self.stopping.wait(1.0):
            with self.lock:
                procs: list[tuple[str, Child]] = [(n, w) for n, w in self.workers.items()]
                if self.bridge is not None:
                    procs.append(("bridge", self.bridge))
                for name, p in procs:
                    if name in self.busy or p.alive:
                        continue
                    code = p.returncode
                    t = self.sender.now() if self.sender else 0.0
                    log(f"{name} exited by itself ({code}); restarting it")
                    self.unexpected_exits.append(
                        {"process": name, "code": code, "t": round(t, 1), "log": p.log_tail(1500)}
                    )
                    if name == "bridge":
                        self.start_bridge()
                    else:
                        self.restart_worker(name)
            self.scrape_bridge()

    def scrape_bridge(self) -> dict[str, float] | None:
        """The live bridge's spool figures from /metrics (kept per process); None if no answer."""
        with self.lock:
            bridge = self.bridge
        if bridge is None or not bridge.alive:
            return None
        status, body = http_get(bridge.url + "/metrics", timeout=3)
        if status != 200:
            return None
        got: dict[str, float] = dict.fromkeys(SPOOL_METRICS, 0.0)
        for line in body.decode().splitlines():
            name, _, value = line.partition(" ")
            name = name.partition("{")[0]
            if name in got:  # summed over labels (bridge_spooled_total is per provider)
                got[name] += float(value.split()[0])
        with self.lock:
            self.bridge_metrics[bridge.pid] = got
        return got

    def spool_empty(self) -> bool:
        """True without a spool; else the live bridge says its spool holds no record."""
        if self.spool_dir is None:
            return True
        got = self.scrape_bridge()
        return got is not None and got["bridge_spool_records"] == 0

    # -- waiting ---------------------------------------------------------------------------

    def _http_ok(self, url: str) -> bool:
        return http_get(url, timeout=3)[0] == 200

    def _poll(self, check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(interval)
        return False

    def workers_ready(self) -> bool:
        with self.lock:
            urls = [w.url for w in self.workers.values()]
        return all(self._http_ok(u + "/readyz") for u in urls)

    def measure(self, f: Fault) -> None:
        """Recovery after a fault: workers ready, then the group caught up with the backlog."""
        assert self.sender is not None
        st = self.stack
        timeout = 120 if self.quick else 300
        if self._poll(self.workers_ready, timeout):
            f.workers_ready_s = round(self.sender.now() - f.t0, 2)
        else:
            f.notes.append(f"workers not all ready within {timeout}s")
        if self.spool_dir is not None:
            # what the bridge spooled reaches raw only now: catching up means with that too
            if self._poll(self.spool_empty, timeout):
                f.spool_drained_s = round(self.sender.now() - f.t0, 2)
            else:
                f.notes.append(f"spool not empty within {timeout}s")
        topics = [st.topic("raw"), st.topic("events")]
        target = self._ends(topics)
        if target is not None:

            def caught() -> bool:
                committed = self._committed(topics)
                return committed is not None and all(
                    committed.get(tp, 0) >= end for tp, end in target.items()
                )

            if self._poll(caught, timeout, 1.0):
                f.caught_up_s = round(self.sender.now() - f.t0, 2)
            else:
                f.notes.append(f"group not caught up within {timeout}s")
        f.end = round(self.sender.now(), 2)

    def _ends(self, topics: list[str]) -> dict[TopicPartition, int] | None:
        for _ in range(30):
            got = run_async(offsets.end_offsets(self.broker.bootstrap, topics))
            if got:
                return dict(got)
            time.sleep(1)
        return None

    def _committed(self, topics: list[str]) -> dict[TopicPartition, int] | None:
        got = run_async(offsets.committed(self.broker.bootstrap, self.stack.app_id))
        return None if got is None else {tp: o for tp, o in got.items() if tp.topic in topics}

    # -- faults ----------------------------------------------------------------------------

    def fault(self, name: str, kind: str, action: Callable[[Fault], None]) -> Fault:
        assert self.sender is not None
        f = Fault(name, kind, t0=round(self.sender.now(), 2))
        self.faults.append(f)
        log(f"fault {name} at t={f.t0:.0f}s")
        try:
            action(f)
        except Exception as exc:  # recorded; the scoreboard shows it
            f.notes.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        f.repaired = round(self.sender.now(), 2)
        self.measure(f)
        log(
            f"fault {name}: repaired {f.repaired - f.t0:.1f}s, workers ready "
            f"{f.workers_ready_s}s, caught up {f.caught_up_s}s {'; '.join(f.notes)}"
        )
        return f

    def broker_bounce(self, sig: int, outage: float) -> Callable[[Fault], None]:
        def action(f: Fault) -> None:
            self.broker.stop(sig)
            time.sleep(outage)
            self.broker.start()

        return action

    def long_outage(self, outage: float) -> Callable[[Fault], None]:
        """Kafka SIGKILLed for `outage` s; halfway through, the bridge too (kill -9 while it
        spools) and a new one on the same port and spool."""

        def action(f: Fault) -> None:
            started = time.monotonic()
            self.broker.stop(signal.SIGKILL)
            try:
                time.sleep(outage / 2)
                self.bridge_kill(f)
                time.sleep(max(0.0, outage - (time.monotonic() - started)))
            finally:
                self.broker.start()

        return action

    def bridge_kill(self, f: Fault) -> None:
        """SIGKILL the bridge (no shutdown code runs) and start a new one: same port, same spool."""
        got = self.scrape_bridge()
        with self.lock:
            self.busy.add("bridge")
            old = self.bridge
        try:
            assert old is not None
            old.kill()
            if self.spool_dir is not None:
                records = -1 if got is None else int(got["bridge_spool_records"])
                self.spool_at_bridge_kill.append(records)
                f.notes.append(f"bridge SIGKILLed with {records} webhooks in its spool")
            else:
                f.notes.append("bridge SIGKILLed (no spool)")
            with self.lock:
                self.start_bridge()
            # a bridge with a spool listens at once; one without waits for Kafka first
            if self.spool_dir is not None and not self._poll(
                lambda: self._http_ok(f"{old.url}/readyz"), 60, 0.2
            ):
                f.notes.append("new bridge not ready within 60s")
        finally:
            with self.lock:
                self.busy.discard("bridge")

    def worker_kill(self, name: str) -> Callable[[Fault], None]:
        def action(f: Fault) -> None:
            with self.lock:
                self.busy.add(name)
            try:
                self.workers[name].kill()
                time.sleep(2 if self.quick else 5)
                with self.lock:
                    self.restart_worker(name)
            finally:
                with self.lock:
                    self.busy.discard(name)

        return action

    def worker_add(self, name: str) -> Callable[[Fault], None]:
        def action(f: Fault) -> None:
            with self.lock:
                self.workers[name] = self.stack.start_worker(name, wait=False)

        return action

    def worker_remove(self, name: str) -> Callable[[Fault], None]:
        def action(f: Fault) -> None:
            with self.lock:
                self.busy.add(name)
                w = self.workers.pop(name)
            try:
                w.stop()
            except ChildError as exc:
                f.notes.append(str(exc).splitlines()[0])
            finally:
                with self.lock:
                    self.busy.discard(name)

        return action

    def bridge_restart(self, f: Fault) -> None:
        with self.lock:
            self.busy.add("bridge")
            old = self.bridge
        try:
            assert old is not None
            self.scrape_bridge()  # its counters, before they go with the process
            try:
                old.stop()
            except ChildError as exc:
                f.notes.append(str(exc).splitlines()[0])
            with self.lock:
                self.start_bridge()
            if not self._poll(lambda: self._http_ok(f"{old.url}/readyz"), 60, 0.2):
                f.notes.append("bridge not ready within 60s")
        finally:
            with self.lock:
                self.busy.discard("bridge")

    def combined(self, f: Fault) -> None:
        """Several at once: broker SIGKILL + a worker SIGKILL + bridge restart + scale-in."""
        threads = [
            threading.Thread(target=self.broker_bounce(signal.SIGKILL, 8), args=(f,)),
            threading.Thread(target=self.worker_kill("worker-a"), args=(f,)),
            threading.Thread(target=self.bridge_restart, args=(f,)),
        ]
        if "worker-c" in self.workers:
            threads.append(threading.Thread(target=self.worker_remove("worker-c"), args=(f,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def schedule(self, kinds: set[str]) -> list[tuple[float, str, str, Callable[[Fault], None]]]:
        """(seconds after start, name, kind, action) of each fault in this run."""
        duration = self.args.minutes * 60
        outage = self.args.outage_seconds
        plan: list[tuple[float, str, str, Callable[[Fault], None]]] = []
        if self.quick:
            plan = [
                (5, "worker-b SIGKILL + restart", "worker", self.worker_kill("worker-b")),
                (14, "bridge restart", "bridge", self.bridge_restart),
                (20, "worker-c added (rebalance)", "rebalance", self.worker_add("worker-c")),
                (
                    28,
                    "broker SIGKILL + restart",
                    "broker",
                    self.broker_bounce(signal.SIGKILL, 3),
                ),
                (
                    45,
                    f"long broker outage: SIGKILL, {outage:.0f} s down, bridge SIGKILL",
                    "outage",
                    self.long_outage(outage),
                ),
            ]
        else:
            plan = [
                (
                    0.07,
                    "broker SIGTERM + restart",
                    "broker",
                    self.broker_bounce(signal.SIGTERM, 10),
                ),
                (
                    0.19,
                    "broker SIGKILL + restart",
                    "broker",
                    self.broker_bounce(signal.SIGKILL, 10),
                ),
                (0.31, "worker-b SIGKILL + restart", "worker", self.worker_kill("worker-b")),
                (0.43, "worker-c added (rebalance)", "rebalance", self.worker_add("worker-c")),
                (0.55, "bridge restart", "bridge", self.bridge_restart),
                (0.68, "together: broker, worker, bridge, worker-c out", "all", self.combined),
                (
                    0.8,
                    f"long broker outage: SIGKILL, {outage:.0f} s down, bridge SIGKILL",
                    "outage",
                    self.long_outage(outage),
                ),
            ]
            plan = [(frac * duration, n, k, a) for frac, n, k, a in plan]
        # the combined fault runs when every kind of the ones it combines does
        combined = {"broker", "worker", "rebalance", "bridge"}
        return [p for p in plan if p[2] in kinds or (p[2] == "all" and combined <= kinds)]

    # -- the whole run ---------------------------------------------------------------------

    def run(self, workload: Workload) -> dict[str, Any]:
        args = self.args
        kinds = set(args.faults)
        assert self.bridge is not None
        retries = PROVIDER_RETRIES if args.provider_retries else None
        self.sender = Sender(self.bridge.url, workload, args.rate, self.quick, retries)
        supervisor = threading.Thread(target=self.supervise, daemon=True)
        supervisor.start()
        self.sender.begin()
        duration = args.minutes * 60
        for at_s, name, kind, action in self.schedule(kinds):
            while self.sender.now() < at_s:
                time.sleep(0.2)
            self.fault(name, kind, action)
        while self.sender.now() < duration:
            time.sleep(0.2)
        log(f"load done after {self.sender.now():.0f}s; waiting for retries and late deliveries")
        self.sender.stop_generating.set()
        if not self.sender.done.wait(self.sender.horizon + 60):
            raise RuntimeError("senders did not finish")
        load_end = self.sender.now()
        drained = self.drain()
        self.stopping.set()
        supervisor.join(5)
        return {"load_seconds": round(load_end, 1), "drain_seconds": drained}

    def drain(self) -> float | None:
        """Seconds until the worker group committed past the end of raw and events."""
        assert self.sender is not None
        started = time.monotonic()
        st = self.stack
        timeout = 90 if self.quick else 600
        # the spool first: what it still holds is not on raw yet
        ok = self._poll(
            lambda: (
                self.spool_empty()
                and self.workers_ready()
                and lag(self.broker.bootstrap, st.app_id, [st.topic("raw"), st.topic("events")])
                == 0
            ),
            timeout,
            1.0,
        )
        took = round(time.monotonic() - started, 1)
        log(f"drain: {'caught up' if ok else 'NOT caught up'} after {took}s")
        return took if ok else None

    def close(self) -> None:
        self.stopping.set()
        if self._stack is not None:
            self._stack.close()
        self.broker.cleanup()
