"""Apache Kafka (KRaft, single node) from Maven Central jars, run with the machine's Java 17.

Used by the test suite and by anyone with Java who wants the real broker locally. The jars are
fetched once with Maven into a cache directory; later runs need no network.
"""

from __future__ import annotations

import base64
import logging
import shutil
import signal
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from connector.embedded import LocalServer, fetch_with_maven, fetched, free_port, settle
from connector.errors import BrokerError
from connector.resources import kafka_pom

log = logging.getLogger(__name__)

# Kafka 4.x: faust-streaming's broker suite runs against 4.0 with aiokafka 0.14, and 4.1 passes
# ours; Faust's exactly_once needs the transactions only the real broker gives.
KAFKA_VERSION = "4.1.1"
POM = kafka_pom()

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={log_dir}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.flush.interval.messages=1
"""

# For `KafkaBroker(properties=...)`: Kafka's own flush policy (the OS writes back, replication
# protects) instead of the fsync per message above, which the tests' durability checks want
# and which production does not pay. Benchmarks measure with this.
PRODUCTION_FLUSH: dict[str, str | None] = {"log.flush.interval.messages": None}

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def cache_dir() -> Path:
    return Path.home() / ".cache" / "loyalty-connector" / f"kafka-{KAFKA_VERSION}"


def fetch_jars(version: str = KAFKA_VERSION) -> Path:
    """The directory of the broker's jars, fetched with Maven on first use (then cached)."""
    libs = cache_dir() / "libs"
    if fetched(libs):
        return libs
    pom = cache_dir() / "pom.xml"
    partial = fetch_with_maven(
        cache_dir(),
        ["-f", str(pom), "dependency:copy-dependencies"],
        "libs.partial",
        what=f"Apache Kafka {version} jars",
        missing="Maven (`mvn`) is needed once to fetch Apache Kafka's jars; install it",
        produced="kafka_2.13-*.jar",
        files={pom.name: POM.read_text().replace("@KAFKA_VERSION@", version)},
    )
    return settle(partial, libs, version)


class KafkaBroker(LocalServer):
    """One KRaft node on free loopback ports; stop() and start() again keep its data and ports."""

    log_name = "kafka.log"

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        heap: str = "768m",
        properties: Mapping[str, str | None] | None = None,
    ) -> None:
        """`properties`: server.properties set over SERVER_PROPERTIES (a new key is added); a
        None value leaves the key out, so the broker's own default applies."""
        super().__init__(work_dir, "kafka-")
        self.controller_port = free_port()
        self.heap = heap
        self.properties = dict(properties or {})
        self.version = KAFKA_VERSION
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return self.address

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java 17+ (`java`) is needed to run Apache Kafka; install it")
        return java

    def _write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        props = self.work_dir / "server.properties"
        base = SERVER_PROPERTIES.format(
            port=self.port, controller_port=self.controller_port, log_dir=self.work_dir / "data"
        )
        values: dict[str, str | None] = {}
        for line in base.splitlines():
            key, _, value = line.partition("=")
            values[key] = value
        values.update(self.properties)
        props.write_text("".join(f"{k}={v}\n" for k, v in values.items() if v is not None))
        (self.work_dir / "log4j2.properties").write_text(LOG4J2.format(log_file=self.log_file))
        return props

    def _cmd(self, libs: Path, *args: str) -> list[str]:
        return [
            self._java(),
            f"-Xmx{self.heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",  # faster start, plenty for a test broker
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def start(self, timeout: float = 90) -> None:
        libs = fetch_jars(self.version)
        props = self._write_config()
        if not self._formatted:
            # `--cluster-id=` form: a random id may start with "-" and read as an option.
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            fmt = subprocess.run(
                self._cmd(
                    libs,
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(props),
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
            self._formatted = True
        self._spawn(self._cmd(libs, "kafka.Kafka", str(props)), self.work_dir / "kafka.stdout")
        self._wait_for_kafka(timeout, f"Apache Kafka {self.version} did not start")
        log.info("Apache Kafka %s ready at %s", self.version, self.bootstrap)

    def tail_log(self, n: int = 30) -> str:
        lines: list[str] = []
        for f in (self.work_dir / "kafka.stdout", self.log_file):
            if f.exists():
                lines += f.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        self._halt(sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
