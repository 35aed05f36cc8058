"""Suite-wide fixtures: the real Apache Kafka broker the integration tests run against.

The broker is started once per session from Maven Central jars (cached). If it cannot start,
every integration test errors with the reason: a missing broker is a failure, never a skip.
Set CONNECTOR_TEST_BROKER=host:port to use a broker that is already running instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.embedded.kafka import KAFKA_VERSION, KafkaBroker
from connector.embedded.registry import ApicurioRegistry


class ExternalBroker:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.version = "external"


_started: dict[str, str] = {}


def pytest_report_header(config: pytest.Config) -> str:
    external = os.environ.get("CONNECTOR_TEST_BROKER")
    if external:
        return f"integration broker: external at {external}"
    return f"integration broker: Apache Kafka {KAFKA_VERSION} (KRaft, Maven Central jars)"


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _started:
        terminalreporter.write_line(
            f"integration tests ran against Apache Kafka {_started['version']} "
            f"at {_started['bootstrap']}"
        )


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker | ExternalBroker]:
    """The session's Apache Kafka broker (bootstrap address in `.bootstrap`)."""
    external = os.environ.get("CONNECTOR_TEST_BROKER")
    if external:
        _started.update(version="(external)", bootstrap=external)
        yield ExternalBroker(external)
        return
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()  # raises BrokerError with the broker's log tail: the test errors, not skips
    _started.update(version=broker.version, bootstrap=broker.bootstrap)
    try:
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of the test's own, for tests that stop and restart it."""
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    _started.setdefault("version", broker.version)
    _started.setdefault("bootstrap", broker.bootstrap)
    try:
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix, so tests sharing the session broker never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApicurioRegistry]:
    """The session's Apicurio Registry (Confluent-compatible API at `.url`), in memory.

    Fetched once from Maven Central (cached) and run with Java 17; if it cannot start, the
    tests using it error with the reason, never skip.
    """
    registry = ApicurioRegistry(tmp_path_factory.mktemp("apicurio"))
    registry.start()  # raises RegistryStartError with the registry's log tail
    try:
        yield registry
    finally:
        registry.cleanup()
