"""Brokers the connector starts itself: embedded Tansu for `dev`, Apache Kafka for tests."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time

from connector.errors import BrokerError


def stop_process(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 20
) -> None:
    """Signal a child we started and wait for it; SIGKILL if it does not go in `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_kafka(bootstrap: str, timeout: float, *, alive: object = None) -> None:
    """Block until the broker answers a Kafka metadata request, or raise BrokerError.

    `alive` is an optional callable returning False when the broker process died, so a crash
    fails fast with its reason instead of waiting for the timeout.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            raise BrokerError("the broker process exited while starting")
        if not _port_open(bootstrap):
            time.sleep(0.2)
            continue
        try:
            asyncio.run(_metadata(bootstrap))
            return
        except Exception as exc:  # any failure means "not ready yet"
            last = exc
            time.sleep(0.3)
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout:.0f}s: {last}")


def _port_open(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


async def _metadata(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        await asyncio.wait_for(admin.describe_cluster(), 5)
    finally:
        await admin.close()
