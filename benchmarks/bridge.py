"""Bridge benchmark: accepted webhooks/s and latency, next to the ceilings and two Go peers.

    .venv/bin/python benchmarks/bridge.py [--quick] [--broker host:port] [--concurrency 16,64,256]
                                          [--modes bridge,benthos,...]

These measurements, in one run, at each concurrency (closed loop: C connections, each sends the
next request as soon as the previous answer arrives):

* `bridge`         `loyalty-connector bridge` (the real command: uvloop, the lean HTTP/1.1
                   layer on httptools, signature check, acks=all idempotent producer) in its own
                   process.
* `bridge_aiohttp` the same command with CONNECTOR_BRIDGE_HTTP=aiohttp: the same handler behind
                   the aiohttp app (the bridge before the lean layer), for the same-run change.
* `bridge_x2`      the same command with CONNECTOR_BRIDGE_PROCESSES=2: two bridge processes on
                   one port (SO_REUSEPORT), the documented way to more cores; CPU is both's.
* `http_ceiling`   the bridge (lean layer, same handler) in its own process, with a producer
                   whose send returns at once: what HTTP handling + verification alone allow.
* `broker_ceiling` a bare aiokafka producer (acks=all, idempotent, same settings, payload,
                   headers and concurrency) in its own process: what Python + Kafka alone allow.
* `bridge_spooling` the bridge with Kafka away: every webhook goes to the spool.
* `benthos`        the peer: the MIT Benthos engine v4.60.0 (github.com/redpanda-data/benthos/v4)
                   with its `http_server` input (sync response), a processor checking the same
                   X-GB-Signature (bad → 401) and a franz-go output we wrote (acks=all,
                   idempotent, the answer waits for Kafka's ack); benchmarks/peers/benthos_bridge.
* `go_plain`       the upper reference: Go net/http + franz-go, same check, same record.

The Go peers are built by `go build` into ~/.cache/loyalty-connector/peers (benchmarks/peers/
gobuild.py) and write the same raw record as our bridge (key, body, headers of connector/raw.py).
Server CPU per request comes from /proc (all threads), over warm-up + measurement.

The load generator is a separate process speaking raw HTTP/1.1 keep-alive over asyncio streams
(uvloop), so little client CPU is spent per request. The Gameball payload is signed once up
front; every request carries the same body and `X-GB-Signature`, and the bridge checks it.
Apache Kafka (KRaft, single node) runs on the same machine unless --broker is given. Server,
client and broker share the machine's cores: on a 2-core box the figures are a lower bound of
what one bridge process does with a core to itself.

Writes benchmarks/results/bridge.json and benchmarks/results/bridge.png.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connector.embedded import free_port  # noqa: E402
from connector.kit.charts import figure  # noqa: E402
from connector.kit.processes import cpu_seconds  # noqa: E402
from connector.kit.ready import NotReady, wait_http  # noqa: E402
from connector.providers import PROVIDERS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "gameball" / "v4_profile_updated.json"
SECRET = "bench-gameball-secret"
PREFIX_BASE = "bench"
MODES = (
    "bridge",
    "bridge_aiohttp",
    "bridge_x2",
    "http_ceiling",
    "broker_ceiling",
    "bridge_spooling",
    "benthos",
    "go_plain",
)
GO_PEERS = {"benthos": "benthos_bridge", "go_plain": "go_plain_bridge"}  # mode -> gobuild name
TARGET_RATE = 5000
TARGET_P99_MS = 25.0
TARGET_RATIO = 0.60
# issue 15: accepted/s at least the Benthos peer's at these concurrencies, and this p99 at 64
PEER_CONCURRENCIES = (64, 256)
PEER_P99_CONCURRENCY = 64
PEER_TARGET_P99_MS = 10.0


def signed_payload() -> tuple[bytes, dict[str, str]]:
    """The Gameball delivery every request sends, signed once."""
    return PROVIDERS["gameball"].sign(FIXTURE.read_bytes(), {"secret_key": SECRET})


def bridge_env(broker: str, port: int, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env.update(
        CONNECTOR_BROKER_URL=broker,
        CONNECTOR_BRIDGE_HOST="127.0.0.1",
        CONNECTOR_BRIDGE_PORT=str(port),
        CONNECTOR_TOPIC_PREFIX=prefix,
        CONNECTOR_GAMEBALL_SECRET_KEY=SECRET,
        CONNECTOR_LOG_FORMAT="json",
        CONNECTOR_LOG_LEVEL="INFO",
    )
    return env


# ---------------------------------------------------------------------------------------------
# child: the HTTP ceiling server (the bridge app with a producer that does nothing)


class NoopProducer:
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> None:
        return None

    async def ready(self) -> bool:
        return True


def serve_noop() -> int:
    """Like `run_bridge` (uvloop, the lean HTTP layer, the same handler), minus Kafka."""
    from connector.bridge import http1
    from connector.bridge.app import Bridge
    from connector.bridge.server import tune_gc
    from connector.logs import setup_logging
    from connector.settings import Settings

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    settings = Settings.from_env()
    setup_logging(settings.log_level, settings.log_format)
    bridge = Bridge(settings, NoopProducer())
    tune_gc()  # as `serve` does
    asyncio.run(http1.serve(bridge, settings.bridge_host, settings.bridge_port))
    return 0


# ---------------------------------------------------------------------------------------------
# child: the load generator (raw HTTP/1.1 keep-alive, one connection per concurrent client)


async def _load(url: str, concurrency: int, warmup: float, duration: float) -> dict[str, Any]:
    host, port_s = url.removeprefix("http://").split(":")
    port = int(port_s)
    body, headers = signed_payload()
    head = f"POST /webhooks/gameball HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += f"Content-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    request = head.encode() + body
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    answered = [0]  # every answer, warm-up included (the server CPU window's requests)
    begin = time.perf_counter()
    measure_from = begin + warmup
    end = measure_from + duration

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    return
                writer.write(request)
                answer = await reader.readuntil(b"\r\n\r\n")
                status = int(answer[9:12])
                lower = answer.lower()
                i = lower.find(b"content-length:")
                n = int(lower[i + 15 : lower.index(b"\r\n", i)])
                await reader.readexactly(n)
                t1 = time.perf_counter()
                answered[0] += 1
                if t0 >= measure_from:
                    latencies.append(t1 - t0)
                    statuses[status] += 1
                if b"connection: close" in lower:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] += 1
        finally:
            writer.close()

    cpu0 = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    row = _summary(latencies, statuses, errors, duration, time.process_time() - cpu0)
    row["requests_incl_warmup"] = answered[0]
    return row


def _summary(
    latencies: list[float],
    statuses: collections.Counter[int],
    errors: collections.Counter[str],
    duration: float,
    cpu: float,
) -> dict[str, Any]:
    ok = sorted(latencies)

    def pct(p: float) -> float:
        return round(ok[min(len(ok) - 1, int(p * len(ok)))] * 1000, 2) if ok else float("nan")

    return {
        "accepted_per_s": round(statuses.get(200, 0) / duration, 1),
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(ok[-1] * 1000, 2) if ok else float("nan"),
        "client_cpu_s": round(cpu, 2),
    }


# ---------------------------------------------------------------------------------------------
# child: the broker ceiling (bare aiokafka producer, same settings as KafkaRawProducer)


async def _produce(
    broker: str, topic: str, concurrency: int, warmup: float, duration: float
) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    body, headers = signed_payload()
    from connector import raw

    kafka_headers = raw.raw_headers(
        provider="gameball",
        tenant=None,
        received_ms=int(time.time() * 1000),
        request_id=uuid.uuid4().hex,
        content_type="application/json",
        verified=True,
        kept=[("x-gb-signature", headers["X-GB-Signature"])],
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=broker,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
        client_id="bench-bare-producer",
    )
    await producer.start()
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    begin = time.perf_counter()
    measure_from = begin + warmup
    end = measure_from + duration

    async def worker() -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                fut = await producer.send(
                    topic, value=body, key=uuid.uuid4().hex.encode(), headers=kafka_headers
                )
                await fut
            except Exception as exc:
                errors[type(exc).__name__] += 1
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append(t1 - t0)
                statuses[200] += 1

    cpu0 = time.process_time()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await producer.stop()
    return _summary(latencies, statuses, errors, duration, time.process_time() - cpu0)


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live children (a `CONNECTOR_BRIDGE_PROCESSES` supervisor's
    bridges); /proc/<pid>/task/<pid>/children lists them (Linux)."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(cpu_seconds(int(c)) for c in children)


def _child_loop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass


# ---------------------------------------------------------------------------------------------
# orchestration


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    class Server:  # what kit.ready.wait_http watches
        name = "server"

        @property
        def alive(self) -> bool:
            return proc.poll() is None

        @property
        def returncode(self) -> int | None:
            return proc.returncode

        def log_tail(self, chars: int = 3000) -> str:
            return log.read_text()[-chars:]

    try:
        wait_http(url + "/readyz", timeout, watch=[Server()], interval=0.2)
    except NotReady as exc:
        raise SystemExit(str(exc)) from None


def _run_child(args: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_server(
    mode: str, broker: str, concurrencies: list[int], warmup: float, duration: float, work: Path
) -> list[dict[str, Any]]:
    port = free_port()
    prefix = f"{PREFIX_BASE}{uuid.uuid4().hex[:6]}"
    env = bridge_env(broker, port, prefix)
    if mode == "bridge_spooling":
        # Kafka away (nothing listens on the broker port): every webhook goes to the spool
        env.update(
            CONNECTOR_BROKER_URL=f"127.0.0.1:{free_port()}",
            CONNECTOR_SPOOL_DIR=str(work / f"spool-{prefix}"),
            CONNECTOR_SPOOL_MAX_BYTES=str(16 * 1024**3),
        )
    log = work / f"{mode}.log"
    script = Path(sys.executable).with_name("loyalty-connector")
    if mode == "bridge_aiohttp":
        env["CONNECTOR_BRIDGE_HTTP"] = "aiohttp"
    if mode == "bridge_x2":
        env["CONNECTOR_BRIDGE_PROCESSES"] = "2"
    if mode in ("bridge", "bridge_aiohttp", "bridge_x2", "bridge_spooling"):
        cmd = [str(script), "bridge"] if script.exists() else [sys.executable, "-m", "connector"]
        if not script.exists():
            cmd.append("bridge")
    elif mode in GO_PEERS:
        cmd = go_peer_command(mode, broker, port, prefix)
    else:
        cmd = [sys.executable, __file__, "--child-serve-noop"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        _wait_healthy(url, proc, log)
        for c in concurrencies:
            cpu0 = tree_cpu_seconds(proc.pid)
            row = _run_child(
                ["--child-load", url, str(c), str(warmup), str(duration)],
                timeout=warmup + duration + 120,
            )
            # server CPU over warmup + measurement (all the server's threads), per answer
            cpu = tree_cpu_seconds(proc.pid) - cpu0
            row["server_cpu_s"] = round(cpu, 2)
            answered = row.get("requests_incl_warmup") or 0
            row["server_cpu_us_per_request"] = round(cpu / answered * 1e6, 1) if answered else None
            row.update(mode=mode, concurrency=c)
            rows.append(row)
            print(_line(row), flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows


def go_peer_command(mode: str, broker: str, port: int, prefix: str) -> list[str]:
    """The command line of a Go peer (built first, if the cache lacks it), its raw topic made."""
    from benchmarks.peers import gobuild
    from connector.kafka_admin import ensure_topics
    from connector.settings import Settings

    binary = gobuild.build(GO_PEERS[mode])
    settings = Settings.from_env({"CONNECTOR_BROKER_URL": broker, "CONNECTOR_TOPIC_PREFIX": prefix})
    asyncio.run(ensure_topics(settings, [settings.topics.raw]))
    return [
        str(binary),
        "-addr",
        f"127.0.0.1:{port}",
        "-brokers",
        broker,
        "-topic",
        settings.topics.raw,
        "-secret",
        SECRET,
    ]


def measure_broker(
    broker: str, concurrencies: list[int], warmup: float, duration: float
) -> list[dict[str, Any]]:
    from connector.kafka_admin import ensure_topics
    from connector.settings import Settings

    settings = Settings.from_env(
        {"CONNECTOR_BROKER_URL": broker, "CONNECTOR_TOPIC_PREFIX": f"{PREFIX_BASE}bare"}
    )
    asyncio.run(ensure_topics(settings, [settings.topics.raw]))
    rows = []
    for c in concurrencies:
        row = _run_child(
            ["--child-produce", broker, settings.topics.raw, str(c), str(warmup), str(duration)],
            timeout=warmup + duration + 120,
        )
        row.update(mode="broker_ceiling", concurrency=c)
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    extra = "" if not row["errors"] else f" errors={row['errors']}"
    non200 = {k: v for k, v in row["statuses"].items() if k != "200"}
    if non200:
        extra += f" non-200={non200}"
    return (
        f"{row['mode']:>15} c={row['concurrency']:>4}  {row['accepted_per_s']:>8.0f}/s  "
        f"p50 {row['p50_ms']:>6.2f} ms  p99 {row['p99_ms']:>6.2f} ms  "
        f"server {row.get('server_cpu_us_per_request') or float('nan'):>6.0f} CPU µs/req{extra}"
    )


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["mode"], r["concurrency"]): r for r in rows}
    out: dict[str, Any] = {"per_concurrency": []}
    for c in sorted({r["concurrency"] for r in rows}):
        b, h = by.get(("bridge", c)), by.get(("http_ceiling", c))
        if not b or not h:
            continue
        ratio = b["accepted_per_s"] / h["accepted_per_s"] if h["accepted_per_s"] else 0.0
        out["per_concurrency"].append(
            {
                "concurrency": c,
                "bridge_per_s": b["accepted_per_s"],
                "bridge_p99_ms": b["p99_ms"],
                "share_of_http_ceiling": round(ratio, 3),
                "meets_rate_and_p99": b["accepted_per_s"] >= TARGET_RATE
                and b["p99_ms"] <= TARGET_P99_MS,
                "meets_ratio": ratio >= TARGET_RATIO,
            }
        )
    out["targets"] = {
        "accepted_per_s": TARGET_RATE,
        "p99_ms": TARGET_P99_MS,
        "share_of_http_ceiling": TARGET_RATIO,
    }
    out["met_at_some_concurrency"] = any(
        p["meets_rate_and_p99"] and p["meets_ratio"] for p in out["per_concurrency"]
    )
    out["peers"] = peer_verdict(by)
    return out


def peer_verdict(by: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """Issue 15's goals as ratios: ours / Benthos accepted/s at 64 and 256, p99 at 64."""
    levels = sorted({c for _, c in by})
    rows = []
    for c in levels:
        ours = by.get(("bridge", c))
        if not ours:
            continue
        row: dict[str, Any] = {
            "concurrency": c,
            "bridge_per_s": ours["accepted_per_s"],
            "bridge_p99_ms": ours["p99_ms"],
            "bridge_cpu_us_per_request": ours.get("server_cpu_us_per_request"),
        }
        before = by.get(("bridge_aiohttp", c))
        if before:  # the same handler behind the aiohttp app: the lean layer's change
            row["bridge_aiohttp_per_s"] = before["accepted_per_s"]
            row["bridge_aiohttp_p99_ms"] = before["p99_ms"]
            row["bridge_aiohttp_cpu_us_per_request"] = before.get("server_cpu_us_per_request")
            row["lean_over_aiohttp"] = (
                round(ours["accepted_per_s"] / before["accepted_per_s"], 3)
                if before["accepted_per_s"]
                else None
            )
        x2 = by.get(("bridge_x2", c))
        benthos = by.get(("benthos", c))
        if x2:  # the documented way to more cores, beside the peer
            row["bridge_x2_per_s"] = x2["accepted_per_s"]
            row["bridge_x2_p99_ms"] = x2["p99_ms"]
            if benthos and benthos["accepted_per_s"]:
                row["bridge_x2_over_benthos"] = round(
                    x2["accepted_per_s"] / benthos["accepted_per_s"], 3
                )
        for name in GO_PEERS:
            peer = by.get((name, c))
            if peer:
                row[f"{name}_per_s"] = peer["accepted_per_s"]
                row[f"{name}_p99_ms"] = peer["p99_ms"]
                row[f"{name}_cpu_us_per_request"] = peer.get("server_cpu_us_per_request")
                row[f"bridge_over_{name}"] = (
                    round(ours["accepted_per_s"] / peer["accepted_per_s"], 3)
                    if peer["accepted_per_s"]
                    else None
                )
        rows.append(row)
    at = {r["concurrency"]: r for r in rows}
    goals: dict[str, Any] = {}
    for c in PEER_CONCURRENCIES:
        ratio = at.get(c, {}).get("bridge_over_benthos")
        goals[f"accepted_at_{c}_vs_benthos"] = {
            "ratio": ratio,
            "target": ">= 1.0",
            "met": ratio is not None and ratio >= 1.0,
        }
    p99 = at.get(PEER_P99_CONCURRENCY, {}).get("bridge_p99_ms")
    goals[f"p99_at_{PEER_P99_CONCURRENCY}_ms"] = {
        "value": p99,
        "ratio_to_target": round(p99 / PEER_TARGET_P99_MS, 3) if p99 is not None else None,
        "target": f"<= {PEER_TARGET_P99_MS:.0f} ms",
        "met": p99 is not None and p99 <= PEER_TARGET_P99_MS,
    }
    met = all(g["met"] for g in goals.values())
    return {"per_concurrency": rows, "goals": goals, "all_met": met}


def chart(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    with figure(path, 1, 3, figsize=(16, 4.6)) as (fig, (ax1, ax2, ax3)):
        _draw(rows, title, fig, ax1, ax2, ax3)


def _draw(rows: list[dict[str, Any]], title: str, fig: Any, ax1: Any, ax2: Any, ax3: Any) -> None:
    styles = {
        "bridge": "C0",
        "bridge_aiohttp": "C6",
        "bridge_x2": "C8",
        "http_ceiling": "C2",
        "broker_ceiling": "C1",
        "bridge_spooling": "C3",
        "benthos": "C4",
        "go_plain": "C5",
    }
    labels = {
        "bridge": "bridge (lean HTTP)",
        "bridge_aiohttp": "bridge (aiohttp)",
        "bridge_x2": "bridge, 2 processes",
        "benthos": "Benthos v4.60 + franz-go",
        "go_plain": "Go net/http + franz-go",
    }
    present = [m for m in MODES if any(r["mode"] == m for r in rows)]
    for mode in present:
        pts = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["concurrency"])
        xs = [r["concurrency"] for r in pts]
        name = labels.get(mode, mode)
        style = "s-" if mode in GO_PEERS else "o-"
        ax1.plot(xs, [r["accepted_per_s"] for r in pts], style, color=styles[mode], label=name)
        ax2.plot(xs, [r["p99_ms"] for r in pts], style, color=styles[mode], label=f"{name} p99")
        ax2.plot(xs, [r["p50_ms"] for r in pts], "x--", color=styles[mode], label=f"{name} p50")
    ax1.axhline(TARGET_RATE, color="grey", ls=":", label=f"target {TARGET_RATE}/s")
    ax2.axhline(TARGET_P99_MS, color="grey", ls=":", label=f"target p99 {TARGET_P99_MS:.0f} ms")
    ax2.axhline(
        PEER_TARGET_P99_MS,
        color="C4",
        ls=":",
        label=f"issue 15: p99 {PEER_TARGET_P99_MS:.0f} ms at c={PEER_P99_CONCURRENCY}",
    )
    levels = sorted({r["concurrency"] for r in rows})
    servers = [m for m in present if m != "broker_ceiling"]
    width = 0.8 / max(1, len(servers))
    for i, mode in enumerate(servers):
        by_c = {r["concurrency"]: r for r in rows if r["mode"] == mode}
        vals = [by_c.get(c, {}).get("server_cpu_us_per_request") or 0 for c in levels]
        xs_bar = [k + (i - (len(servers) - 1) / 2) * width for k in range(len(levels))]
        ax3.bar(xs_bar, vals, width, color=styles[mode], label=labels.get(mode, mode))
    ax3.set_xticks(range(len(levels)))
    ax3.set_xticklabels([str(c) for c in levels])
    ax3.set_xlabel("concurrent clients")
    ax3.set_ylabel("server CPU µs / request (all threads)")
    ax3.set_title("CPU per request", fontsize=10)
    ax3.legend(fontsize=7)
    ax3.grid(True, axis="y", alpha=0.3)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels)
        ax.set_xticklabels([str(c) for c in levels])
        ax.minorticks_off()
        ax.set_xlabel("concurrent clients")
        ax.grid(True, alpha=0.3)
    ax1.set_ylabel("accepted webhooks / s")
    ax1.set_ylim(bottom=0)
    ax2.set_ylabel("latency (ms)")
    ax2.set_yscale("log")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # hidden child modes
    if argv and argv[0] == "--child-serve-noop":
        return serve_noop()
    if argv and argv[0] == "--child-load":
        _child_loop()
        url, c, w, d = argv[1], int(argv[2]), float(argv[3]), float(argv[4])
        print(json.dumps(asyncio.run(_load(url, c, w, d))))
        return 0
    if argv and argv[0] == "--child-produce":
        _child_loop()
        broker, topic, c, w, d = argv[1], argv[2], int(argv[3]), float(argv[4]), float(argv[5])
        print(json.dumps(asyncio.run(_produce(broker, topic, c, w, d))))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--broker", help="use this Kafka (host:port) instead of starting one")
    parser.add_argument("--concurrency", default="16,32,64,256", help="comma-separated levels")
    parser.add_argument("--duration", type=float, default=None, help="seconds per point")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated subset of {', '.join(MODES)} (default: all)",
    )
    parser.add_argument("--out", default=str(RESULTS / "bridge.json"))
    parser.add_argument(
        "--fsync-every-message",
        action="store_true",
        help="keep the test broker's log.flush.interval.messages=1 (default: Kafka's default)",
    )
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from --out")
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads(Path(args.out).read_text())
        chart(saved["results"], Path(args.out).with_suffix(".png"), saved["chart_title"])
        return 0
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    load_before = os.getloadavg()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; valid: {', '.join(MODES)}")
    if any(m in GO_PEERS for m in modes):
        from benchmarks.peers import gobuild

        print("building the Go peers (cached) ...", flush=True)
        try:
            built = {m: str(gobuild.build(GO_PEERS[m])) for m in modes if m in GO_PEERS}
        except gobuild.GoBuildError as exc:
            parser.exit(2, f"{exc}\n")
    else:
        built = {}
    duration = args.duration or (2.0 if args.quick else 8.0)
    warmup = 0.5 if args.quick else 2.0

    broker_obj = None
    kafka_version = "external"
    if args.broker:
        broker = args.broker
    else:
        from connector.embedded import kafka as embedded_kafka

        # The test broker fsyncs every message (log.flush.interval.messages=1). Production
        # Kafka leaves flushing to the OS and relies on replication; measure that.
        broker_obj = embedded_kafka.KafkaBroker(
            properties={} if args.fsync_every_message else embedded_kafka.PRODUCTION_FLUSH
        )
        print("starting Apache Kafka ...", flush=True)
        broker_obj.start()
        broker = broker_obj.bootstrap
        kafka_version = broker_obj.version
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
            work = Path(tmp)
            # The bare producer goes first: it also warms the broker's JIT, which otherwise
            # steals CPU from whichever measurement comes right after the broker started.
            # The peers run right after our bridge, so the three share the machine's state.
            order = (
                "broker_ceiling",
                "http_ceiling",
                "bridge",
                "bridge_aiohttp",
                "benthos",
                "bridge_x2",
                "go_plain",
            )
            for mode in [*order, "bridge_spooling"]:
                if mode not in modes:
                    continue
                if mode == "broker_ceiling":
                    rows += measure_broker(broker, concurrencies, warmup, duration)
                else:
                    rows += measure_server(mode, broker, concurrencies, warmup, duration, work)
    finally:
        if broker_obj is not None:
            broker_obj.cleanup()

    body, _ = signed_payload()
    result = {
        "benchmark": "bridge",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "setup": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "kafka": f"Apache Kafka {kafka_version} (KRaft, single node, same machine, "
            + ("fsync every message)" if args.fsync_every_message else "default flush policy)")
            if broker_obj
            else f"external broker {broker}",
            "payload": f"Gameball {FIXTURE.name}, {len(body)} bytes, X-GB-Signature checked",
            "producer": "acks=all, idempotent, linger_ms=0, 8 partitions",
            "client": "separate process, raw HTTP/1.1 keep-alive, 1 connection per client",
            "warmup_s": warmup,
            "duration_s": duration,
            "quick": args.quick,
            "modes": modes,
            "peers": {
                "benthos": "github.com/redpanda-data/benthos/v4 v4.60.0 (MIT engine): http_server "
                "input, sync response; gameball_verify processor; franz_sync output on "
                "github.com/twmb/franz-go v1.22.3 (acks=all, idempotent, linger 0, "
                "ProduceSync per message, max_in_flight 1024); 200 with an empty body",
                "go_plain": "Go net/http + franz-go v1.22.3, same check and record, ProduceSync "
                "per request",
                "binaries": built,
                "go": _go_version() if built else None,
            },
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "note": "one machine shared by servers, load generator and Kafka (and by other "
            "engineers' jobs): figures are noisy, compare rows of the same run only",
        },
        "results": rows,
        "verdict": verdict(rows),
        "chart_title": (
            f"loyalty-connector bridge, {os.cpu_count()} cores shared by bridge, client and "
            f"Kafka ({'quick' if args.quick else f'{duration:.0f} s per point'})"
        ),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    chart(rows, out.with_suffix(".png"), result["chart_title"])
    print(f"wrote {out} and {out.with_suffix('.png')}")
    for p in result["verdict"]["per_concurrency"]:
        print(
            f"c={p['concurrency']}: bridge {p['bridge_per_s']:.0f}/s, p99 {p['bridge_p99_ms']} ms, "
            f"{p['share_of_http_ceiling']:.0%} of the HTTP ceiling"
        )
    for name, goal in result["verdict"]["peers"]["goals"].items():
        print(f"issue 15 goal {name}: {goal}")
    return 0


def _go_version() -> str:
    try:
        out = subprocess.run(["go", "version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return "unknown"
    return out.stdout.strip()


if __name__ == "__main__":
    raise SystemExit(main())
