"""Integration fixtures: `h`, a Harness of the test's own on the broker `harness_broker` names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Harness, open_harness


@pytest.fixture
def harness_broker(kafka: Any) -> Any:
    """The broker `h` runs on: the session's (a module whose tests stop it overrides this)."""
    return kafka


@pytest.fixture
def h(
    harness_broker: Any, topic_prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Harness]:
    """The test's Harness: its processes are stopped after it, their logs printed on failure."""
    with open_harness(harness_broker.bootstrap, topic_prefix, tmp_path, request) as harness:
        yield harness
