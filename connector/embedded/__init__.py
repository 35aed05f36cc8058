"""Brokers the connector starts itself: embedded Tansu for `dev`, Apache Kafka for tests.

`LocalServer` is what the three servers started here share (Apache Kafka, Tansu, Apicurio
Registry): a work folder and a free loopback port, the child spawned into a session of its own
with its output appended to a log, the wait until it answers (stopped again, with its log tail,
when it does not) and the stop. `fetch_with_maven` fetches a server's files into the cache once.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from connector.errors import BrokerError

log = logging.getLogger(__name__)

COMPLETE = ".complete"  # in a fetched folder: the fetch finished (it holds the version)


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


class LocalServer:
    """A server this process starts on the loopback and stops again (a broker, a registry).

    `work_dir` (a fresh temporary folder unless given) holds its files and its log (`log_name`);
    `port` is a free loopback port unless given. A subclass starts the server with `_spawn` in
    its own `start`.
    """

    log_name = "server.log"

    def __init__(self, work_dir: Path | None, prefix: str, port: int | None = None) -> None:
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix=prefix))
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port it listens on (a broker's bootstrap address)."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.work_dir / self.log_name

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail_log(self, n: int = 40) -> str:
        """The last `n` lines of its log ("" before there is one)."""
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])

    def _spawn(self, argv: Sequence[str], output: Path, **popen: Any) -> subprocess.Popen[bytes]:
        """Start the server (`proc`; `popen`: more Popen arguments): stdout and stderr appended
        to `output`, in a session of its own (a Ctrl-C meant for this process reaches it only
        through `stop`)."""
        with open(output, "ab") as out:
            self.proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen
            )
        return self.proc

    def _wait_for_kafka(self, timeout: float, failed: str) -> None:
        """Until the broker spawned answers Kafka requests at `address`; else it is stopped and
        BrokerError says `failed`, why, and its log tail."""
        try:
            wait_for_kafka(self.address, timeout, alive=lambda: self.running)
        except BrokerError as exc:
            self.stop()
            raise BrokerError(f"{failed}: {exc}\n{self.tail_log()}") from None

    def _halt(self, sig: int, timeout: float) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, sig, timeout)

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not go in time (each server: how long)."""
        self._halt(signal.SIGTERM, 20)

    def cleanup(self) -> None:
        """Stopped, and its work folder removed with its data."""
        self.stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def fetched(folder: Path) -> bool:
    """Whether `folder` holds a finished fetch (`settle` marked it)."""
    return (folder / COMPLETE).exists()


def fetch_with_maven(
    work: Path,
    goal: Sequence[str],
    into: str,
    *,
    what: str,
    missing: str,
    produced: str,
    files: Mapping[str, str] | None = None,
    error: type[BrokerError] = BrokerError,
) -> Path:
    """`mvn -q -B GOAL -DoutputDirectory=work/INTO` in `work` (made, `files` written into it,
    `into` emptied first); that folder, once it holds a file matching `produced`.

    `error(missing)` without Maven; `error` with Maven's output tail if it failed."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise error(missing)
    work.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        (work / name).write_text(text)
    out = work / into
    shutil.rmtree(out, ignore_errors=True)
    log.info("fetching %s from Maven Central into %s", what, work)
    proc = subprocess.run(
        [mvn, "-q", "-B", *goal, f"-DoutputDirectory={out}"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=work,
    )
    if proc.returncode != 0 or not any(out.glob(produced)):
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise error(f"could not fetch {what} with Maven:\n{tail}")
    return out


def settle(partial: Path, folder: Path, version: str) -> Path:
    """`partial` (a finished fetch) moved to `folder`, replacing it, and marked complete."""
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    (folder / COMPLETE).write_text(version)
    return folder
