"""Bridge benchmark: accepted webhooks/s and latency, next to the HTTP and the broker ceilings.

    .venv/bin/python benchmarks/bridge.py [--quick] [--broker host:port] [--concurrency 16,64,256]

Three measurements, in one run, at each concurrency (closed loop: C connections, each sends the
next request as soon as the previous answer arrives):

* `bridge`         `loyalty-connector bridge` (the real command: uvloop, aiohttp, signature
                   check, acks=all idempotent producer) in its own process.
* `http_ceiling`   the same aiohttp app in its own process, with a producer whose send returns
                   at once: what HTTP handling + verification alone allow.
* `broker_ceiling` a bare aiokafka producer (acks=all, idempotent, same settings, payload,
                   headers and concurrency) in its own process: what Python + Kafka alone allow.

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
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connector.embedded import free_port  # noqa: E402
from connector.providers import PROVIDERS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "gameball" / "v4_profile_updated.json"
SECRET = "bench-gameball-secret"
PREFIX_BASE = "bench"
MODES = ("bridge", "http_ceiling", "broker_ceiling", "bridge_spooling")
TARGET_RATE = 5000
TARGET_P99_MS = 25.0
TARGET_RATIO = 0.60


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
    """Like `run_bridge`, minus Kafka: uvloop, run_app, no access log."""
    from aiohttp import web

    from connector.bridge.app import create_app
    from connector.logs import setup_logging
    from connector.settings import Settings

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    settings = Settings.from_env()
    setup_logging(settings.log_level, settings.log_format)
    app = create_app(settings, NoopProducer())
    web.run_app(
        app,
        host=settings.bridge_host,
        port=settings.bridge_port,
        print=None,
        access_log=None,
        handle_signals=True,
    )
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
    return _summary(latencies, statuses, errors, duration, time.process_time() - cpu0)


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


def _child_loop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass


# ---------------------------------------------------------------------------------------------
# orchestration


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server not ready within {timeout}s:\n{log.read_text()[-3000:]}")


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
    if mode in ("bridge", "bridge_spooling"):
        cmd = [str(script), "bridge"] if script.exists() else [sys.executable, "-m", "connector"]
        if not script.exists():
            cmd.append("bridge")
    else:
        cmd = [sys.executable, __file__, "--child-serve-noop"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        _wait_healthy(url, proc, log)
        for c in concurrencies:
            cpu0 = _cpu_seconds(proc.pid)
            row = _run_child(
                ["--child-load", url, str(c), str(warmup), str(duration)],
                timeout=warmup + duration + 120,
            )
            # server CPU over warmup + measurement: per accepted request, roughly
            row["server_cpu_s"] = round(_cpu_seconds(proc.pid) - cpu0, 2)
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
        f"p50 {row['p50_ms']:>6.2f} ms  p99 {row['p99_ms']:>6.2f} ms{extra}"
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
    return out


def chart(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {
        "bridge": "C0",
        "http_ceiling": "C2",
        "broker_ceiling": "C1",
        "bridge_spooling": "C3",
    }
    for mode in MODES:
        pts = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["concurrency"])
        if not pts:
            continue
        xs = [r["concurrency"] for r in pts]
        ax1.plot(xs, [r["accepted_per_s"] for r in pts], "o-", color=styles[mode], label=mode)
        ax2.plot(xs, [r["p99_ms"] for r in pts], "o-", color=styles[mode], label=f"{mode} p99")
        ax2.plot(xs, [r["p50_ms"] for r in pts], "x--", color=styles[mode], label=f"{mode} p50")
    ax1.axhline(TARGET_RATE, color="grey", ls=":", label=f"target {TARGET_RATE}/s")
    ax2.axhline(TARGET_P99_MS, color="grey", ls=":", label=f"target p99 {TARGET_P99_MS:.0f} ms")
    levels = sorted({r["concurrency"] for r in rows})
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    duration = args.duration or (2.0 if args.quick else 8.0)
    warmup = 0.5 if args.quick else 2.0

    broker_obj = None
    kafka_version = "external"
    if args.broker:
        broker = args.broker
    else:
        from connector.embedded import kafka as embedded_kafka

        broker_obj = embedded_kafka.KafkaBroker()
        if not args.fsync_every_message:
            # The test broker fsyncs every message (log.flush.interval.messages=1). Production
            # Kafka leaves flushing to the OS and relies on replication; measure that.
            original = broker_obj._write_config

            def write_config() -> Path:
                props = original()
                props.write_text(props.read_text().replace("log.flush.interval.messages=1\n", ""))
                return props

            broker_obj._write_config = write_config  # type: ignore[method-assign]
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
            rows += measure_broker(broker, concurrencies, warmup, duration)
            rows += measure_server("http_ceiling", broker, concurrencies, warmup, duration, work)
            rows += measure_server("bridge", broker, concurrencies, warmup, duration, work)
            rows += measure_server("bridge_spooling", broker, concurrencies, warmup, duration, work)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
