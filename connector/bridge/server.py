"""Running the bridge process: topics, producer, aiohttp server, graceful SIGTERM.

With `CONNECTOR_BRIDGE_PROCESSES` > 1, `run_bridge` supervises that many bridge processes bound
to the same port with SO_REUSEPORT (the kernel spreads new connections over them): the way to
give the bridge more than one core, since one Python process handles HTTP on one core. Each
child has its own producer and, with a spool, its own spool directory (`bridge-<n>`: SQLite
wants one writer). SIGTERM to the supervisor stops every child gracefully; a child that dies
stops the others and the supervisor exits 1, so the orchestrator restarts the whole bridge.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import subprocess
import sys
import time

from aiohttp import web

from connector.bridge import http1
from connector.bridge.app import Bridge, create_app
from connector.bridge.producer import KafkaRawProducer
from connector.kafka_admin import wait_and_ensure_topics
from connector.settings import Settings, process_env

log = logging.getLogger("connector.bridge")


def run_bridge(settings: Settings) -> int:
    if settings.bridge_processes > 1:
        return supervise(settings.bridge_processes)
    return serve(settings)


def supervise(count: int) -> int:
    env = process_env()
    children = [
        subprocess.Popen([sys.executable, "-m", "connector.bridge.server", str(n)], env=env)
        for n in range(count)
    ]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("bridge: %d processes sharing the port (SO_REUSEPORT)", count)
    code = 0
    while any(c.poll() is None for c in children):
        for child in children:
            if child.poll() is not None and child.returncode != 0 and not stopping:
                log.error("a bridge process exited with %s; stopping the others", child.returncode)
                code = 1
                stop(signal.SIGTERM, None)
        time.sleep(0.2)
    if any(c.returncode != 0 for c in children):
        code = 1
    return code


# CPython collects generation 0 every 700 new container objects. A webhook makes a few dozen
# (parser callbacks, headers, a task, futures), so with 256 connections in flight the bridge ran
# a collection every few milliseconds over everything alive. Collecting every 50,000 and
# freezing what start-up made (modules, settings, verifiers: never garbage) measured
# http_ceiling at c256 p99 70.7 -> 31.4 ms and 10.1k -> 11.7k/s, c64 14.6k -> 15.5k/s
# (benchmarks/bridge.py, same run). Memory stays bounded: collections still run.
GC_THRESHOLD = (50_000, 50, 1000)


def tune_gc() -> None:
    """Fewer cyclic collections in a bridge process (GC_THRESHOLD); call once set up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def serve(settings: Settings, index: int | None = None) -> int:
    """One bridge process; `index` is set for a child of `supervise` (shared port)."""
    if index is not None and settings.spool_dir is not None:
        settings = settings.replace(spool_dir=settings.spool_dir / f"bridge-{index}")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # optional speed-up
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if settings.spool_dir is None:
        loop.run_until_complete(wait_and_ensure_topics(settings, [settings.topics.raw]))

    # with a spool the bridge listens at once, Kafka or not: the forwarder ensures the topic
    async def ensure_topic() -> None:
        await wait_and_ensure_topics(settings, [settings.topics.raw], patience=float("inf"))

    log.info(
        "bridge listening on http://%s:%d (raw topic %s, %s HTTP)",
        settings.bridge_host,
        settings.bridge_port,
        settings.topics.raw,
        settings.bridge_http,
    )
    if settings.bridge_http == "lean":
        bridge = Bridge(settings, KafkaRawProducer(settings), ensure_topic=ensure_topic)
        tune_gc()
        try:
            loop.run_until_complete(
                http1.serve(
                    bridge, settings.bridge_host, settings.bridge_port, reuse_port=index is not None
                )
            )
        finally:
            _cancel_remaining(loop)
            loop.close()
        log.info("bridge stopped")
        return 0
    app = create_app(settings, KafkaRawProducer(settings), ensure_topic=ensure_topic)
    tune_gc()
    # run_app turns SIGTERM/SIGINT into a graceful stop: no new connections, in-flight
    # requests finish (up to shutdown_timeout), then on_cleanup flushes the producer.
    web.run_app(
        app,
        host=settings.bridge_host,
        port=settings.bridge_port,
        print=None,
        access_log=None,
        shutdown_timeout=15,
        handle_signals=True,
        reuse_port=index is not None,
        loop=loop,
    )
    log.info("bridge stopped")
    return 0


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left (writes for requests already answered 503), as aiohttp's run_app
    does, so no task is destroyed pending when the loop closes."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


if __name__ == "__main__":  # a child of `supervise`
    from connector.cli import _settings

    raise SystemExit(serve(_settings(), index=int(sys.argv[1])))
