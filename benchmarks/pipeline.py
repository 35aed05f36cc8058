"""Pipeline benchmark: the Faust worker from raw topic to balances, next to a plain-Python ceiling.

    .venv/bin/python benchmarks/pipeline.py [--quick] [--broker host:port] [--wait-quiet 900]
                                            [--rates 1000,500] [--worker-app PATH]

Four measurements, in one run, on one Kafka:

* `throughput`  N raw records (all four providers, many members, bodies made from the fixture
                shapes with distinct customers, amounts and revisions; Wix bodies are RS256 JWTs
                from `provider.sign`) are written to the raw topic of a fresh prefix first; then
                ONE `python -m connector worker` starts and we time from its first balance
                record to the moment every raw record is normalized and every event applied
                (the worker's own /metrics counters). Events/s and raw webhooks/s.
* `ceiling`     the same raw records through a plain aiokafka loop in one process: consume →
                `normalize` (provider decode + Avro encode, the worker's own function) →
                produce (acks=all) to a scratch topic. Only the first of the worker's two hops,
                with no framework and no table: what one Python process can do at best.
* `latency`     a real `python -m connector bridge` (signatures checked) in front of the same,
                still running worker; a separate open-loop sender posts signed deliveries at a
                fixed rate (one delivery per fresh member, so each balance record maps to exactly
                one webhook) and notes when each 200 arrived; a separate consumer on
                `<prefix>.balances` notes when each member's balance arrived. Latency = balance
                seen - 200 received.
* `peers`       the same raw records through other engines doing the worker's job with our own
                functions (`normalize`, the ledger step, the members-table format), each on
                its own topics, same timing rule (first events record → last output) and CPU
                per event (/proc): `quix` (Quix Streams, RocksDB state, at-least-once),
                `quix_eos` (the same, exactly-once) and `plain` (aiokafka + rocksdict, no
                framework); benchmarks/peers/. Each peer's final balances (last record per key
                of its balances topic) are compared with the worker's, so a peer doing less
                work shows. With --rounds R (3 in a full run) the worker and each peer run R
                times, interleaved, and the medians are reported.
* `recovery`    the worker is stopped (SIGTERM) and a fresh one started with the same app id and
                an EMPTY data dir: it must rebuild the members table from
                `<app_id>-members-changelog`. Changelog records / (start → /readyz 200), next to
                the start → /readyz time of a worker with an empty changelog (the fixed cost)
                and a restore ceiling: plain aiokafka reading the same changelog into
                per-partition RocksDB write batches (what Faust's recovery does, minus Faust).
* `faust_floor` the worker's Faust app and two-hop topology with none of its work
                (benchmarks/faust_floor.py), and `faust_floor_one_hop`: the same four records
                per event from one agent on the raw topic. Interleaved, once per round; their
                difference (`one_hop_saves`) is what issue 15's one-hop lever would save.

Apache Kafka 4.1.1 (KRaft, single node, Kafka's default flush policy) runs on the same machine
unless --broker is given. Worker, bridge, load processes and broker share the machine's cores.

Writes benchmarks/results/pipeline.json and benchmarks/results/pipeline.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import cpu_profile  # noqa: E402
from benchmarks import pipeline_kafka as on_kafka  # noqa: E402
from benchmarks.pipeline_kafka import compare_balances, ensure, latency_deliveries  # noqa: E402
from benchmarks.pipeline_records import (  # noqa: E402
    PARTITIONS,
    PEERS,
    RESULTS,
    TARGET_P99_MS,
    TARGET_RECOVERY_PER_S,
    TARGET_SHARE_OF_CEILING,
    bench_secrets,
    bridge_secret_env,
    make_raw_records,
    member_key_of,
    records_setup,
)
from benchmarks.pipeline_report import (  # noqa: E402
    by_second,
    chart,
    count,
    pct,
    profile_chart,
    profile_summary,
    quantiles,
    verdict,
)
from connector import raw as raw_contract  # noqa: E402
from connector.embedded import free_port  # noqa: E402
from connector.kit import brokers, machine, processes  # noqa: E402
from connector.kit.processes import cpu_seconds  # noqa: E402
from connector.kit.ready import NotReady, http_get, wait_http  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def base_env(broker: str, prefix: str) -> dict[str, str]:
    return processes.child_env(
        CONNECTOR_BROKER_URL=broker,
        CONNECTOR_TOPIC_PREFIX=prefix,
        CONNECTOR_PARTITIONS=str(PARTITIONS),
        CONNECTOR_LOG_FORMAT="json",
        CONNECTOR_LOG_LEVEL="WARNING",
    )


# A/B runs of proposed worker changes: --worker-app PATH runs the worker with `create_app`
# taken from PATH (a modified copy of connector/streams/app.py) instead of the package's;
# PATH::FUNCTION takes FUNCTION from PATH instead of create_app (the floors use it).
WORKER_APP: str | None = None
# --profile: py-spy on every worker, floor and peer over its measured window
# (benchmarks/cpu_profile.py), the breakdown in each run's "profile".
PROFILE = False
PROFILE_DIR: Path | None = None  # where --profile leaves the raw py-spy files (<out>-pyspy/)


def run_worker_with_app(path: str) -> int:
    import importlib.util

    path, _, function = path.partition("::")  # PATH::FUNCTION: another create_app of PATH
    spec = importlib.util.spec_from_file_location("connector.streams.app_variant", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    import connector.streams.worker as worker_module
    from connector.cli import main as cli_main

    worker_module.create_app = getattr(module, function or "create_app")
    return int(cli_main(["worker"]) or 0)


class Connector(processes.Child):
    """`python -m connector <command>` on `port`, with its own log; stopped with SIGTERM."""

    def __init__(
        self, command: str, env: dict[str, str], log: Path, port: int, app: str | None = None
    ) -> None:
        """`app`: a worker's create_app from this file instead (default: --worker-app, if any)."""
        app = app or (WORKER_APP if command == "worker" else None)
        argv = [sys.executable, __file__, "--child-worker", app] if app else None
        super().__init__(log.stem, argv or processes.connector_argv(command), env, log, cwd=ROOT)
        self.log_file = log
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 180) -> float:
        """Poll /readyz until 200; returns the time (epoch s) it first answered 200."""
        try:
            url = self.url + "/readyz"
            return wait_http(url, timeout, watch=[self], interval=0.05, request_timeout=1)
        except NotReady as exc:
            raise SystemExit(str(exc)) from None

    def stop(self, timeout: float = 60, *, check: bool = False) -> int:
        """SIGTERM and wait, SIGKILL after `timeout`; the exit code, whatever it is."""
        return super().stop(timeout, check=check)


def start_worker(
    broker: str,
    prefix: str,
    app_id: str,
    work: Path,
    name: str,
    log_level: str = "WARNING",
    app: str | None = None,
) -> Connector:
    port = free_port()
    data_dir = work / f"{name}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = base_env(broker, prefix)
    env.update(
        CONNECTOR_APP_ID=app_id,
        CONNECTOR_DATA_DIR=str(data_dir),
        CONNECTOR_WEB_PORT=str(port),
        CONNECTOR_WEB_HOST="127.0.0.1",
        CONNECTOR_LOG_LEVEL=log_level,
    )
    return Connector("worker", env, work / f"{name}.log", port, app)


def worker_metrics(url: str) -> dict[str, float] | None:
    """raw, events, applied (event-age histogram count), dead letters by stage."""
    status, body = http_get(url + "/metrics", timeout=2)
    if status != 200:
        return None
    out = {
        "raw": 0.0,
        "events": 0.0,
        "applied": 0.0,
        "duplicates": 0.0,
        "dl": 0.0,
        "dl_ledger": 0.0,
    }
    for line in body.decode().splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, value = line.rpartition(" ")
        v = float(value)
        if name == "worker_raw_records_total":
            out["raw"] = v
        elif name.startswith("worker_events_total{"):
            out["events"] += v
        elif name == "worker_event_age_seconds_count":
            out["applied"] = v
        elif name == "worker_duplicate_events_total":
            out["duplicates"] = v
        elif name.startswith("worker_dead_letters_total{"):
            out["dl"] += v
            if 'stage="ledger"' in name:
                out["dl_ledger"] += v
    return out


# ---------------------------------------------------------------------------------------------
# phases (orchestrator)


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_peer(
    peer: str,
    broker: str,
    raw_topic: str,
    peer_prefix: str,
    n: int,
    work: Path,
    kafka_pid: int | None,
    timeout: float,
) -> dict[str, Any]:
    """One run of a worker peer over `raw_topic`, onto the topics of `peer_prefix`."""
    script, extra, _ = PEERS[peer]
    ensure(broker, peer_prefix)
    state_dir = work / f"{peer_prefix}-state"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "peers" / script),
        broker,
        raw_topic,
        peer_prefix,
        str(n),
        str(state_dir),
        *extra,
    ]
    if kafka_pid:
        cmd += ["--kafka-pid", str(kafka_pid)]
    log = work / f"{peer_prefix}.log"
    started = time.time()
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        # From its start: the peer's start-up samples are left out by layer (cpu_profile), and
        # its thread CPU comes from its own window (peers/common.py Progress).
        sampler = cpu_profile.Sampler(proc.pid, work / f"{peer_prefix}.pyspy") if PROFILE else None
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    ended = time.time()
    sampled = sampler.stop() if sampler is not None else None
    lines = out.decode(errors="replace").strip().splitlines()
    if not lines:
        raise SystemExit(f"peer {peer} printed nothing:\n{log.read_text(errors='replace')[-3000:]}")
    row: dict[str, Any] = json.loads(lines[-1])
    if sampled is not None and row.get("thread_cpu_s"):
        row["profile"] = cpu_profile.breakdown(
            sampled[0], row["thread_cpu_s"], row["applied"], sampled[1]
        )
    outputs = [f"{peer_prefix}.{t}" for t in ("balances", "ledger", "tiers")]
    first, last_out = asyncio.run(on_kafka.time_span(broker, outputs))
    first_event, _ = asyncio.run(on_kafka.time_span(broker, [f"{peer_prefix}.events"]))
    offsets = asyncio.run(
        on_kafka.topic_offsets(
            broker, [*outputs, f"{peer_prefix}.events", f"{peer_prefix}.webhooks.dlq"]
        )
    )
    secs = max(1e-9, last_out - first)
    whole = max(1e-9, last_out - first_event)
    row.update(
        peer=peer,
        exit_code=proc.returncode,
        process_wall_s=round(ended - started, 2),
        first_event_at=round(first_event, 3),
        first_balance_at=round(first, 3),
        last_output_at=round(last_out, 3),
        seconds=round(secs, 3),
        events_per_s=round(row["applied"] / secs, 1),
        whole_seconds=round(whole, 3),
        whole_events_per_s=round(row["applied"] / whole, 1),
        whole_raw_per_s=round(row["raw"] / whole, 1),
        startup_s=round(first_event - started, 2),
        outputs={t.removeprefix(peer_prefix + "."): e - b for t, (b, e) in offsets.items()},
        log_tail=log.read_text(errors="replace")[-600:] if proc.returncode else "",
    )
    print(
        f"peer {peer}: {row['applied']} events ({row['raw']} raw), first event → last output "
        f"{whole:.2f} s → {row['whole_events_per_s']:.0f} events/s, "
        f"{row['cpu_us_per_event']:.0f} CPU µs/event ({row['cpu_cores']} cores)"
        + ("" if row["complete"] else " INCOMPLETE"),
        flush=True,
    )
    return row


def _median_run(runs: list[dict[str, Any]], key: str = "whole_events_per_s") -> dict[str, Any]:
    """The median run by `key`, with every run's `key` and CPU per event beside it."""
    chosen = dict(sorted(runs, key=lambda r: r.get(key) or 0.0)[len(runs) // 2])
    chosen["runs_whole_events_per_s"] = [r.get(key) for r in runs]
    chosen["runs_cpu_us_per_event"] = [
        r.get("cpu_us_per_event", r.get("worker_cpu_us_per_event")) for r in runs
    ]
    return chosen


ONE_HOP_APP = ROOT / "benchmarks" / "one_hop_worker.py"
RawRecords = list[tuple[bytes, bytes, list[tuple[str, bytes]]]]


def keyed_by_member(records: RawRecords) -> RawRecords:
    """`--one-hop`: each raw record keyed by its (first) event's member key instead of its
    delivery id, which moves to the `delivery-id` header (connector/raw.py): every record of
    a member lands in one partition, and every implementation still sees the same deliveries."""
    out: RawRecords = []
    for key, value, headers in records:
        named = raw_contract.header_map(headers)
        members = member_key_of(named[raw_contract.PROVIDER], value, named)
        if not members or len(set(members)) > 1:
            raise SystemExit(f"--one-hop: a delivery for {members or 'no member'}: {value[:200]!r}")
        out.append((members[0].encode(), value, [*headers, (raw_contract.DELIVERY_ID, key)]))
    return out


def measure_throughput(
    broker: str,
    prefix: str,
    app_id: str,
    n: int,
    work: Path,
    kafka_pid: int | None,
    timeout: float,
    name: str = "worker-1",
    app: str | None = None,
) -> tuple[Connector, dict[str, Any]]:
    topics = f"{prefix}.balances", f"{prefix}.ledger", f"{prefix}.tiers"
    worker = start_worker(broker, prefix, app_id, work, name, app=app)
    samples: list[list[float]] = []
    deadline = time.monotonic() + timeout
    done_at: float | None = None
    last: dict[str, float] = {}
    cpu_start: tuple[float, float, float] | None = None
    cpu_end: tuple[float, float, float] | None = None
    sampler: cpu_profile.Sampler | None = None
    threads0: dict[str, float] = {}
    threads_s: dict[str, float] = {}
    while time.monotonic() < deadline:
        if not worker.alive:
            raise SystemExit(f"worker exited:\n{worker.log_tail()}")
        m = worker_metrics(worker.url)
        now = time.time()
        if m is not None:
            last = m
            samples.append([now, m["raw"], m["events"], m["applied"]])
            if cpu_start is None and m["raw"] > 0:
                cpu_start = (now, cpu_seconds(worker.pid), cpu_seconds(kafka_pid))
                if PROFILE and worker.pid:
                    threads0 = cpu_profile.thread_cpu(worker.pid)
                    sampler = cpu_profile.Sampler(worker.pid, work / f"{name}.pyspy")
            if m["raw"] >= n and m["applied"] + m["dl_ledger"] >= m["events"] > 0:
                done_at = now
                cpu_end = (now, cpu_seconds(worker.pid), cpu_seconds(kafka_pid))
                if sampler is not None and worker.pid:
                    threads_s = cpu_profile.thread_delta(
                        threads0, cpu_profile.thread_cpu(worker.pid)
                    )
                break
        time.sleep(0.2)
    if done_at is None:
        print(f"throughput: worker did not finish within {timeout:.0f}s: {last}", flush=True)
    first, last_out = asyncio.run(on_kafka.time_span(broker, list(topics)))
    first_event, _ = asyncio.run(on_kafka.time_span(broker, [f"{prefix}.events"]))
    offsets = asyncio.run(
        on_kafka.topic_offsets(broker, [*topics, f"{prefix}.events", f"{prefix}.webhooks.dlq"])
    )
    end = last_out if done_at is None else max(last_out, min(done_at, last_out + 0.25))
    # The window: first balance record written → last output written (all applied by then;
    # the metrics poll saw it at most one poll interval later).
    secs = max(1e-9, last_out - first)
    row: dict[str, Any] = {
        "raw": int(last.get("raw", 0)),
        "events": int(last.get("events", 0)),
        "applied": int(last.get("applied", 0)),
        "duplicates": int(last.get("duplicates", 0)),
        "dead_letters": int(last.get("dl", 0)),
        "complete": done_at is not None,
        "first_balance_at": round(first, 3),
        "last_output_at": round(last_out, 3),
        "seen_done_by_poll_at": round(done_at, 3) if done_at else None,
        "seconds": round(secs, 3),
        "seconds_to_poll_done": round(end - first, 3),
        "events_per_s": round(last.get("applied", 0) / secs, 1),
        "raw_per_s": round(last.get("raw", 0) / secs, 1),
        "startup_s": round(first_event - worker.started, 2),
        # The ledger hardly runs while normalize has a backlog, so most of the normalize hop
        # happens before the first balance record: the whole worker's rate is counted from its
        # first events record (normalize's first output) too.
        "first_event_at": round(first_event, 3),
        "whole_seconds": round(last_out - first_event, 3),
        "whole_events_per_s": round(last.get("applied", 0) / max(1e-9, last_out - first_event), 1),
        "whole_raw_per_s": round(last.get("raw", 0) / max(1e-9, last_out - first_event), 1),
        "outputs": {t.removeprefix(prefix + "."): e - b for t, (b, e) in offsets.items()},
        "progress": [[round(t - first, 3), r, e, a] for t, r, e, a in samples],
    }
    if cpu_start and cpu_end and cpu_end[0] > cpu_start[0]:
        wall = cpu_end[0] - cpu_start[0]
        row["worker_cpu_cores"] = round((cpu_end[1] - cpu_start[1]) / wall, 2)
        row["kafka_cpu_cores"] = round((cpu_end[2] - cpu_start[2]) / wall, 2)
        row["worker_cpu_us_per_event"] = round(
            (cpu_end[1] - cpu_start[1]) / max(1, row["applied"]) * 1e6, 1
        )
    if sampler is not None:
        samples, leaves = sampler.stop()
        if threads_s:
            row["profile"] = cpu_profile.breakdown(samples, threads_s, row["applied"], leaves)
    print(
        f"throughput: {row['applied']} events ({row['raw']} raw) in {secs:.2f} s → "
        f"{row['events_per_s']:.0f} events/s, {row['raw_per_s']:.0f} webhooks/s; from the first "
        f"event: {row['whole_events_per_s']:.0f} events/s "
        f"(worker {row.get('worker_cpu_cores', '?')} cores)",
        flush=True,
    )
    return worker, row


FLOOR_APP = ROOT / "benchmarks" / "faust_floor.py"
# The floor's apps (`--child-worker PATH::FUNCTION`): two hops as the worker, or one.
FLOORS = {"faust_floor": "create_app", "faust_floor_one_hop": "create_app_one_hop"}


def measure_floor(
    broker: str,
    prefix: str,
    app_id: str,
    n: int,
    work: Path,
    kafka_pid: int | None,
    kind: str = "faust_floor",
) -> dict[str, Any]:
    """The same records through `benchmarks/faust_floor.py`: Faust + Kafka I/O, no work;
    `kind` faust_floor_one_hop: the same four records per event from one agent (one hop)."""
    floor, row = measure_throughput(
        broker,
        prefix,
        app_id,
        n,
        work,
        kafka_pid,
        timeout=600,
        name=f"worker-{kind}-{prefix}",
        app=f"{FLOOR_APP}::{FLOORS[kind]}",
    )
    floor.stop()
    row.pop("progress", None)
    what = "one hop" if kind == "faust_floor_one_hop" else "the worker's app and topology"
    print(
        f"{kind.replace('_', ' ')}: {row['whole_events_per_s']:.0f} events/s from its first "
        f"events record, "
        f"{row.get('worker_cpu_us_per_event', '?')} CPU µs/event ({what}, "
        "no decoding, Avro, rules or table)",
        flush=True,
    )
    return row


def floor_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each floor's median run (by events/s from its first events record, the peers' rule: a
    two-hop run's first balance comes only after most of the normalize backlog) with every
    run's figures, and what one hop saves: the medians' difference in CPU per event, and
    their events/s ratio."""
    out: dict[str, Any] = {}
    for kind, rows in runs.items():
        chosen = dict(sorted(rows, key=lambda r: r["whole_events_per_s"])[len(rows) // 2])
        chosen["runs_whole_events_per_s"] = [r["whole_events_per_s"] for r in rows]
        chosen["runs_events_per_s"] = [r["events_per_s"] for r in rows]
        chosen["runs_cpu_us_per_event"] = [r.get("worker_cpu_us_per_event") for r in rows]
        out[kind] = chosen
    two, one = out.get("faust_floor"), out.get("faust_floor_one_hop")
    if two and one:
        cpu2 = statistics.median(c for c in two["runs_cpu_us_per_event"] if c is not None)
        cpu1 = statistics.median(c for c in one["runs_cpu_us_per_event"] if c is not None)
        out["one_hop_saves"] = {
            "cpu_us_per_event": round(cpu2 - cpu1, 1),
            "cpu_share": round(1 - cpu1 / cpu2, 3),
            "events_per_s_ratio": round(one["whole_events_per_s"] / two["whole_events_per_s"], 3),
        }
    return out


def measure_latency(
    broker: str,
    prefix: str,
    worker: Connector,
    rate: float,
    duration: float,
    warmup: float,
    run: str,
    work: Path,
) -> dict[str, Any]:
    port = free_port()
    env = base_env(broker, prefix)
    env.update(
        CONNECTOR_BRIDGE_PORT=str(port),
        CONNECTOR_BRIDGE_HOST="127.0.0.1",
        **bridge_secret_env(),
    )
    bridge = Connector("bridge", env, work / "bridge.log", port)
    seen_file, sent_file = work / "seen.json", work / "sent.json"
    watch_log = open(work / "watcher.log", "wb")  # noqa: SIM115 - closed below
    watcher = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child-watch",
            broker,
            f"{prefix}.balances",
            str(seen_file),
        ],
        stdout=subprocess.PIPE,
        stderr=watch_log,
        text=True,
        cwd=ROOT,
    )
    try:
        bridge.wait_ready(60)
        assert watcher.stdout is not None
        if watcher.stdout.readline().strip() != "READY":
            raise SystemExit(f"watcher failed: {(work / 'watcher.log').read_text()[-3000:]}")
        before = worker_metrics(worker.url) or {}
        cpu0 = {"worker": cpu_seconds(worker.pid), "bridge": cpu_seconds(bridge.pid)}
        sent = run_child(
            ["--child-send", bridge.url, str(rate), str(duration), run, str(work), str(sent_file)],
            timeout=duration + 600,
        )
        # drain: every accepted webhook normalized, every event applied, and no raw record
        # arriving for 2 s (a 503 may still have been written after its ack timed out), so the
        # next phase starts with an idle worker.
        accepted = sum(1 for r in json.loads(sent_file.read_text()) if r[1] == 200)
        deadline = time.monotonic() + 300
        last_raw, stable_since = -1.0, time.monotonic()
        while time.monotonic() < deadline:
            m = worker_metrics(worker.url) or {}
            raw = m.get("raw", 0.0)
            if raw != last_raw:
                last_raw, stable_since = raw, time.monotonic()
            applied = m.get("applied", 0) + m.get("dl_ledger", 0)
            if (
                raw >= before.get("raw", 0) + accepted
                and applied >= m.get("events", 0)
                and time.monotonic() - stable_since >= 2.0
            ):
                break
            time.sleep(0.2)
        time.sleep(1.0)
        cpu = {
            "worker": round(cpu_seconds(worker.pid) - cpu0["worker"], 2),
            "bridge": round(cpu_seconds(bridge.pid) - cpu0["bridge"], 2),
        }
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
        watch_log.close()
        bridge.stop()
    rows = json.loads(sent_file.read_text())
    seen = json.loads(seen_file.read_text())
    start = sent["start"]
    lat, lat_written, lat_sent, lost, non200 = [], [], [], 0, 0
    lat_at: list[tuple[float, float]] = []
    lateness = []
    for key, status, scheduled, sent_at, ok_at, *_ in rows:
        if status != 200:
            non200 += 1
            continue
        if scheduled - start < warmup:
            continue
        lateness.append(sent_at - scheduled)
        if key not in seen:
            lost += 1
            continue
        seen_at, written_at = seen[key]
        lat.append(seen_at - ok_at)
        lat_at.append((scheduled, seen_at - ok_at))
        lat_written.append(written_at - ok_at)
        lat_sent.append(seen_at - sent_at)
    res = {
        "rate_per_s": rate,
        "duration_s": duration,
        "warmup_excluded_s": warmup,
        "sent": len(rows),
        "non_200": non200,
        "statuses": count(str(r[1]) for r in rows),
        "measured": len(lat),
        "balance_not_seen": lost,
        "achieved_send_rate_per_s": round(len(rows) / max(1e-9, rows[-1][3] - rows[0][3]), 1),
        "sender_lateness_p99_ms": pct(lateness, 0.99),
        "p50_ms": pct(lat, 0.50),
        "p90_ms": pct(lat, 0.90),
        "p99_ms": pct(lat, 0.99),
        "max_ms": pct(lat, 1.0),
        "written_p50_ms": pct(lat_written, 0.50),
        "written_p99_ms": pct(lat_written, 0.99),
        "sent_to_seen_p50_ms": pct(lat_sent, 0.50),
        "sent_to_seen_p99_ms": pct(lat_sent, 0.99),
        "cpu_s": cpu,
        "cpu_us_per_webhook": {k: round(v / len(rows) * 1e6, 1) for k, v in cpu.items()},
        # the CDF as 1,001 quantiles, and the median per second of sending (shows a growing queue)
        "latency_cdf_ms": quantiles(lat, 1000),
        "p50_by_second_ms": [pct(sec, 0.5) for sec in by_second(lat_at, start + warmup)],
    }
    print(
        f"latency @ {rate:.0f}/s: p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
        f"max {res['max_ms']} ms ({res['measured']} measured, {non200} non-200, "
        f"{lost} balances not seen)",
        flush=True,
    )
    return res


def _log_times(log: Path) -> dict[str, float]:
    """Epoch times of Faust's recovery log lines (JSON log format)."""
    out: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        msg = str(rec.get("message", rec.get("msg", "")))
        ts = rec.get("ts")
        if not ts:
            continue
        t = datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
        for key, needle in (
            ("restore_start", "Restoring state from changelog topics"),
            ("restore_done", "Done reading from changelog topics"),
            ("recovery_complete", "Recovery complete"),
            ("worker_ready", "Worker ready"),
        ):
            if needle in msg and key not in out:
                out[key] = t
    return out


def measure_recovery(
    broker: str, prefix: str, app_id: str, work: Path, sample_keys: list[str], runs: int = 3
) -> dict[str, Any]:
    """Start → /readyz of fresh workers (empty data dirs), with and without a changelog.

    Each kind is started `runs` times, one after the other, and the medians are compared: the
    difference is what replaying the changelog adds to a start, the recovery's own time.
    """
    changelog = f"{app_id}-members-changelog"
    begin, end = asyncio.run(on_kafka.topic_offsets(broker, [changelog]))[changelog]
    records = end - begin
    # the fixed cost: a worker whose changelog is empty (own prefix and app id), same machine
    empty_prefix = f"{prefix}e"
    ensure(broker, empty_prefix)
    empty_times, ready_times, bulk, found = [], [], [], 0
    last_log: Path | None = None
    for i in range(runs):
        empty = start_worker(
            broker, empty_prefix, f"{app_id}-empty", work, f"worker-empty-{i}", "INFO"
        )
        try:
            empty_times.append(empty.wait_ready(180) - empty.started)
        finally:
            empty.stop()
        worker = start_worker(broker, prefix, app_id, work, f"worker-recover-{i}", "INFO")
        try:
            ready_times.append(worker.wait_ready(600) - worker.started)
            if i == 0:
                for key in sample_keys:
                    provider, tenant, customer = key.split(":", 2)
                    tenant = tenant.split("/", 1)[0]  # an account key names the member's tenant
                    status, _ = http_get(f"{worker.url}/members/{provider}/{tenant}/{customer}", 5)
                    found += status == 200
        finally:
            worker.stop()
        last_log = worker.log_file
        bulk.append(_bulk_restore_line(worker.log_file))
    ceiling_dir = work / "restore-ceiling"
    ceiling_dir.mkdir()
    ceiling = run_child(
        ["--child-restore-ceiling", broker, changelog, str(ceiling_dir)], timeout=600
    )
    ready, empty_ready = _median(ready_times), _median(empty_times)
    restored = [b for b in bulk if b is not None]
    restore_s = _median([b["seconds"] for b in restored]) if restored else None
    times = _log_times(last_log) if last_log else {}
    res = {
        "changelog_topic": changelog,
        "changelog_records": records,
        "runs": runs,
        "start_to_ready_s": round(ready, 3),
        "start_to_ready_runs_s": [round(x, 3) for x in ready_times],
        "empty_changelog_start_to_ready_s": round(empty_ready, 3),
        "empty_changelog_runs_s": [round(x, 3) for x in empty_times],
        # the figure with the target: changelog records / what they add to a start
        "records_per_s_net_of_empty_start": round(records / max(1e-3, ready - empty_ready), 1),
        "records_per_s": round(records / ready, 1),
        "bulk_restore": restored[-1] if restored else None,
        "bulk_restore_s": restore_s,
        "records_per_s_bulk_restore_window": round(records / restore_s, 1) if restore_s else None,
        "faust_restore_log_window_s": (
            round(times["restore_done"] - times["restore_start"], 3)
            if "restore_start" in times and "restore_done" in times
            else None
        ),
        "sample_members_found": f"{found}/{len(sample_keys)}",
        "restore_ceiling": ceiling,
    }
    print(
        f"recovery: {records} changelog records, ready after {ready:.2f} s (median of {runs}; "
        f"empty changelog: {empty_ready:.2f} s) → "
        f"{res['records_per_s_net_of_empty_start']:.0f} records/s net of the fixed start "
        f"({res['records_per_s']:.0f}/s start to ready; bulk restore window "
        f"{restore_s} s); members found {res['sample_members_found']}; "
        f"restore ceiling (aiokafka → rocksdict) {ceiling['records_per_s']:.0f} records/s",
        flush=True,
    )
    return res


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


_BULK_LINE = re.compile(
    r"bulk restore: (\d+) changelog records into (\d+) partition\(s\) in ([0-9.]+) s"
)


def _bulk_restore_line(log: Path) -> dict[str, Any] | None:
    """The worker's own figure for its bulk changelog restore (connector/streams/recovery.py)."""
    match = _BULK_LINE.search(log.read_text(errors="replace"))
    if match is None:
        return None
    records, partitions, seconds = match.groups()
    return {"records": int(records), "partitions": int(partitions), "seconds": float(seconds)}


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def measure(
    args: argparse.Namespace, peers: list[str], kafka: brokers.BenchKafka, before: machine.Before
) -> dict[str, Any]:
    """Every phase on `kafka`, in order, as `args` and `peers` say; the result file's content."""
    n = args.records or (8_000 if args.quick else 40_000)
    members = args.members or (1_000 if args.quick else 2_000)
    duration = args.duration or (8.0 if args.quick else 20.0)
    rounds = args.rounds or (1 if args.quick else 3)
    warmup = 1.0
    broker, kafka_pid = kafka.bootstrap, kafka.pid
    run = uuid.uuid4().hex[:6]
    prefix, app_id = f"pipe{run}", f"pipe-bench-{run}"
    result: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    worker: Connector | None = None
    try:
        secrets = bench_secrets(work)
        print(f"generating {n} signed webhooks for {members} members ...", flush=True)
        t = time.time()
        records, per_provider = make_raw_records(n, members, run, secrets)
        if args.one_hop:
            records = keyed_by_member(records)
        print(f"  {time.time() - t:.1f} s; producing to {prefix}.webhooks.raw ...", flush=True)
        ensure(broker, prefix)
        ensure(broker, f"{prefix}x")  # the ceiling's scratch output: <prefix>x.events
        asyncio.run(on_kafka.produce_raw(broker, f"{prefix}.webhooks.raw", records))
        # The Faust floors' own topics: each run of each (two hops f, one hop g) needs its own.
        floor_prefixes = {
            kind: [f"{prefix}{letter}{i}" for i in range(rounds)]
            for kind, letter in (("faust_floor", "f"), ("faust_floor_one_hop", "g"))
        }
        for floor_prefix in (p for ps in floor_prefixes.values() for p in ps):
            ensure(broker, floor_prefix)
            asyncio.run(on_kafka.produce_raw(broker, f"{floor_prefix}.webhooks.raw", records))
        one_hop_prefixes = [f"{prefix}h{i}" for i in range(rounds)] if args.one_hop else []
        for one_hop_prefix in one_hop_prefixes:
            ensure(broker, one_hop_prefix)
            asyncio.run(on_kafka.produce_raw(broker, f"{one_hop_prefix}.webhooks.raw", records))
        # Extra rounds of the worker (--rounds) each need a raw topic of their own; the peers
        # all read <prefix>.webhooks.raw with consumer groups of their own.
        worker_prefixes = [f"{prefix}w{i}" for i in range(rounds - 1)] + [prefix]
        for extra_prefix in worker_prefixes[:-1]:
            ensure(broker, extra_prefix)
            asyncio.run(on_kafka.produce_raw(broker, f"{extra_prefix}.webhooks.raw", records))
        del records

        runs = [
            run_child(
                ["--child-ceiling", broker, f"{prefix}.webhooks.raw", f"{prefix}x.events"],
                timeout=900,
            )
            for _ in range(1 if args.quick else 3)
        ]
        ceiling = dict(sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2])
        ceiling["runs_events_per_s"] = [r["events_per_s"] for r in runs]
        print(
            f"ceiling: {ceiling['events']} events ({ceiling['raw']} raw) in "
            f"{ceiling['seconds']:.2f} s → {ceiling['events_per_s']:.0f} events/s "
            f"(median of {ceiling['runs_events_per_s']})",
            flush=True,
        )
        # The two floors, interleaved (order swapped every run) so that they share the
        # machine's drift: the one-hop floor measures issue 15's one-hop lever.
        floor_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in FLOORS}
        for i in range(rounds):
            for kind in list(FLOORS)[:: 1 if i % 2 == 0 else -1]:
                fp = floor_prefixes[kind][i]
                floor_runs[kind].append(
                    measure_floor(broker, fp, f"{app_id}-{fp}", n, work, kafka_pid, kind)
                )
        floors = floor_summary(floor_runs)
        # Rounds: each peer, then the worker; the last round's worker stays up for latency.
        peer_runs: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
        peer_balances: dict[str, list[dict[str, tuple[str, ...]]]] = {p: [] for p in peers}
        worker_runs: list[dict[str, Any]] = []
        worker_balances: list[dict[str, tuple[str, ...]]] = []
        one_hop_runs: list[dict[str, Any]] = []
        one_hop_balances: list[dict[str, tuple[str, ...]]] = []
        for i, worker_prefix in enumerate(worker_prefixes):
            if one_hop_prefixes:
                hp = one_hop_prefixes[i]
                one_hop, row = measure_throughput(
                    broker,
                    hp,
                    f"{app_id}-{hp}",
                    n,
                    work,
                    kafka_pid,
                    900,
                    f"one-hop-{i}",
                    app=str(ONE_HOP_APP),
                )
                one_hop.stop()
                row.pop("progress", None)
                one_hop_runs.append(row)
                one_hop_balances.append(
                    asyncio.run(on_kafka.final_balances(broker, f"{hp}.balances"))
                )
            for peer in peers:
                peer_prefix = f"{prefix}{PEERS[peer][2]}{i}"
                row = measure_peer(
                    peer, broker, f"{prefix}.webhooks.raw", peer_prefix, n, work, kafka_pid, 900
                )
                peer_runs[peer].append(row)
                peer_balances[peer].append(
                    asyncio.run(on_kafka.final_balances(broker, f"{peer_prefix}.balances"))
                )
            last = worker_prefix == prefix
            worker, row = measure_throughput(
                broker,
                worker_prefix,
                app_id if last else f"{app_id}-w{i}",
                n,
                work,
                kafka_pid,
                timeout=900,
                name="worker-1" if last else f"worker-round-{i}",
            )
            # before the latency phase adds members to <prefix>.balances
            worker_balances.append(
                asyncio.run(on_kafka.final_balances(broker, f"{worker_prefix}.balances"))
            )
            if not last:
                worker.stop()
                row.pop("progress", None)
            worker_runs.append(row)
        throughput = worker_runs[-1]
        if len(worker_runs) > 1:
            median = _median_run(worker_runs)
            throughput["median_of_rounds"] = {
                k: median[k]
                for k in (
                    "whole_events_per_s",
                    "events_per_s",
                    "worker_cpu_us_per_event",
                    "runs_whole_events_per_s",
                    "runs_cpu_us_per_event",
                    "profile",
                )
                if k in median
            }
        reference = worker_balances[-1]
        peer_results: dict[str, Any] = {}
        one_hop_result: dict[str, Any] | None = None
        if one_hop_runs:
            one_hop_result = _median_run(one_hop_runs)
            checks = [compare_balances(reference, b) for b in one_hop_balances]
            one_hop_result["balances_equal_to_worker"] = all(c["equal"] for c in checks)
            one_hop_result["balances_check"] = checks[-1]
            print(
                f"one-hop worker: median {one_hop_result['whole_events_per_s']:.0f} events/s, "
                f"{one_hop_result.get('worker_cpu_us_per_event')} CPU µs/event; balances equal "
                f"to the worker's: {one_hop_result['balances_equal_to_worker']}",
                flush=True,
            )
        for peer in peers:
            chosen = _median_run(peer_runs[peer])
            checks = [compare_balances(reference, b) for b in peer_balances[peer]]
            chosen["balances_equal_to_worker"] = all(c["equal"] for c in checks)
            chosen["applied_equal_to_worker"] = all(
                r["applied"] == throughput["applied"] for r in peer_runs[peer]
            )
            chosen["balances_check"] = checks[-1]
            chosen["rounds"] = len(peer_runs[peer])
            peer_results[peer] = chosen
            print(
                f"peer {peer}: median {chosen['whole_events_per_s']:.0f} events/s, "
                f"{chosen['cpu_us_per_event']:.0f} CPU µs/event; balances equal to the "
                f"worker's: {chosen['balances_equal_to_worker']}",
                flush=True,
            )
        worker_rounds_equal = all(
            compare_balances(reference, b)["equal"] for b in worker_balances[:-1]
        )
        assert worker is not None  # the last round's, still up
        latency = [
            measure_latency(broker, prefix, worker, rate, duration, warmup, f"{run}r{i}", work)
            for i, rate in enumerate(float(r) for r in args.rates.split(","))
        ]
        worker.stop()
        sent = json.loads((work / "sent.json").read_text())
        sample = [r[0] for r in random.Random(1).sample(sent, min(20, len(sent)))]
        recovery = measure_recovery(broker, prefix, app_id, work, sample)
        setup = {
            **brokers.setup(kafka),
            **records_setup(n, members, per_provider),
            "worker": "one `python -m connector worker`, at_least_once, rocksdb, "
            "CONNECTOR_LOG_LEVEL=WARNING",
            "worker_app": WORKER_APP or "connector/streams/app.py",
            "raw_key": "member (delivery id in the delivery-id header)"
            if args.one_hop
            else "delivery id",
            "rounds": rounds,
            "peers": {
                "quix": f"Quix Streams {_version('quixstreams')}, RocksDB state, "
                "at-least-once, default commit interval (5 s), changelog on",
                "quix_eos": "the same, processing_guarantee=exactly-once",
                "plain": "aiokafka + rocksdict in one asyncio process, batches of 500, "
                "outputs then changelog acked before the RocksDB write and the commit",
                "work": "all run connector.streams.normalize.normalize and "
                "connector.streams.ledger.LedgerStep (connector.domain.ledger) with the "
                "members-table format of connector/streams/state_format.py",
                "timing": "first events record → last ledger/balances/tiers record "
                "(Kafka timestamps); CPU: the process's /proc utime+stime from its first "
                "raw record to all applied",
            }
            if peers
            else {},
            **machine.conditions(before, quick=args.quick),
        }
        result = {
            "benchmark": "pipeline",
            "when": machine.when(),
            "setup": setup,
            "throughput": throughput,
            "peers": peer_results,
            "worker_rounds_balances_equal": worker_rounds_equal,
            "ceiling": ceiling,
            "one_hop_worker": one_hop_result,
            "faust_floor": floors["faust_floor"],
            "faust_floor_one_hop": floors["faust_floor_one_hop"],
            "one_hop_saves": floors.get("one_hop_saves"),
            "latency": latency,
            "recovery": recovery,
        }
        if PROFILE:
            result["profile"] = profile_summary(result)
        result["verdict"] = verdict(result)
        result["chart_title"] = (
            f"loyalty-connector worker pipeline, {os.cpu_count()} cores shared by worker, "
            f"load generators and Kafka ({'quick' if args.quick else 'full'} run, "
            f"{result['when']})"
        )
    finally:
        if worker is not None:
            worker.stop()
        if PROFILE_DIR is not None:  # the raw py-spy files, for flame graphs and a second look
            PROFILE_DIR.mkdir(parents=True, exist_ok=True)
            for raw in work.glob("*.pyspy"):
                shutil.copy(raw, PROFILE_DIR / raw.name)
            print(f"py-spy raw profiles in {PROFILE_DIR}", flush=True)
        if result:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}", flush=True)
    return result


def _plot_profile(result: dict[str, Any], out: Path) -> None:
    """--profile's stacked bars beside the result: <out>-profile.png."""
    if result.get("profile"):
        title = f"CPU per event by layer, {result['when']} ({result['setup'].get('rounds')} rounds)"
        profile_chart(result["profile"], out.with_name(f"{out.stem}-profile.png"), title)
        print(f"wrote {out.with_name(out.stem + '-profile.png')}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child-worker":
        return run_worker_with_app(argv[1])
    if argv and argv[0] == "--child-restore-ceiling":
        print(
            json.dumps(asyncio.run(on_kafka.run_restore_ceiling(argv[1], argv[2], Path(argv[3]))))
        )
        return 0
    if argv and argv[0] == "--child-ceiling":
        print(json.dumps(asyncio.run(on_kafka.run_ceiling(argv[1], argv[2], argv[3]))))
        return 0
    if argv and argv[0] == "--child-send":
        url, rate, secs, run, work, rows_file = argv[1:7]
        deliveries = latency_deliveries(float(rate), float(secs), run, Path(work))
        rows, start = asyncio.run(on_kafka.send_open_loop(url, float(rate), deliveries))
        Path(rows_file).write_text(json.dumps(rows))
        print(json.dumps({"sent": len(rows), "start": start}))
        return 0
    if argv and argv[0] == "--child-watch":
        seen = asyncio.run(on_kafka.watch_first_records(argv[1], argv[2]))
        Path(argv[3]).write_text(json.dumps(seen))
        print(json.dumps({"seen": len(seen)}))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs (smoke test)")
    parser.add_argument("--broker", help="use this Kafka (host:port) instead of starting one")
    parser.add_argument("--records", type=int, help="raw records for throughput")
    parser.add_argument("--members", type=int, help="members for throughput")
    parser.add_argument(
        "--rates",
        default="1000,500",
        help="latency phase webhooks/s, comma-separated; the first is the one with the target",
    )
    parser.add_argument("--duration", type=float, help="latency phase seconds")
    machine.add_wait_quiet(parser)
    parser.add_argument(
        "--worker-app",
        help="A/B: run the worker with create_app from this modified copy of "
        "connector/streams/app.py",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"worker peers to run beside ours, comma-separated subset of {', '.join(PEERS)}, "
        "or 'none'",
    )
    parser.add_argument(
        "--one-hop",
        action="store_true",
        help="key every raw record by member (delivery id in the delivery-id header) and run "
        "the one-hop worker (benchmarks/one_hop_worker.py) in each round too",
    )
    parser.add_argument(
        "--rounds", type=int, help="interleaved runs of the worker and each peer (1 quick, 3 full)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy on every worker, floor and peer: CPU per event by layer and by native "
        "thread (benchmarks/cpu_profile.py; needs the bench extra)",
    )
    parser.add_argument("--out", default=str(RESULTS / "pipeline.json"))
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.replot:
        replot = json.loads(out.read_text())
        summary = profile_summary(replot)  # derived from the runs' own profiles
        if summary and summary != replot.get("profile"):
            replot["profile"] = summary
            out.write_text(json.dumps(replot, indent=2) + "\n")
        chart(replot, out.with_suffix(".png"))
        _plot_profile(replot, out)
        return 0
    global WORKER_APP, PROFILE, PROFILE_DIR
    WORKER_APP = str(Path(args.worker_app).resolve()) if args.worker_app else None
    PROFILE = args.profile
    if PROFILE:
        cpu_profile.py_spy()  # fail now, not after the records are made
        PROFILE_DIR = out.parent / f"{out.stem}-pyspy"
    peers = [] if args.peers == "none" else [p.strip() for p in args.peers.split(",") if p]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; valid: {', '.join(PEERS)}, none")
    if any(p.startswith("quix") for p in peers) and _version("quixstreams") is None:
        parser.error("the quix peers need Quix Streams: pip install -e '.[bench]'")
    # aiokafka logs each NotLeaderForPartition retry right after topic creation; they are harmless
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    before = machine.before_run(args.wait_quiet)

    # production's flush policy: the test broker fsyncs every message, Kafka leaves that to the OS
    with brokers.kafka(args.broker) as kafka:
        result = measure(args, peers, kafka, before)
    throughput, latency = result["throughput"], result["latency"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    chart(result, out.with_suffix(".png"))
    _plot_profile(result, out)
    v = result["verdict"]
    print(f"wrote {out} and {out.with_suffix('.png')}")
    print(
        f"worker {throughput['events_per_s']:.0f} events/s = {v['worker_share_of_ceiling']:.0%} "
        f"of the ceiling ({'meets' if v['meets_throughput'] else 'misses'} "
        f"{TARGET_SHARE_OF_CEILING:.0%}); latency p99 {latency[0]['p99_ms']} ms "
        f"({'meets' if v['meets_latency_p99'] else 'misses'} {TARGET_P99_MS:.0f} ms); recovery "
        f"{v['recovery_records_per_s']:.0f} records/s net of start-up "
        f"({'meets' if v['meets_recovery'] else 'misses'} {TARGET_RECOVERY_PER_S:,})"
    )
    for name, goal in (v.get("peers") or {}).get("goals", {}).items():
        print(f"issue 15 goal {name}: {goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
