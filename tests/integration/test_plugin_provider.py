"""A provider from another package, end to end: `tests/plugins/loyalty_connector_acme` is
pip-installed (into a temporary directory on `PYTHONPATH`, never into the project's venv) and
found through its `loyalty_connector.providers` entry point by every process: `decode`, the
bridge (signed webhooks onto the raw topic), `replay` (its samples) and the worker (events with
`provider = OTHER`, a members table keyed `acme:...`). Removed again after the module.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.models import LoyaltyEvent, Provider
from tests.integration.harness import Delivery, Harness
from tests.integration.test_bridge_kafka import consume, headers_of

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "loyalty_connector_acme"
SAMPLES = PLUGIN / "loyalty_connector_acme" / "samples"
SECRET = "acme-integration-secret"


def acme_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The installed plugin: `pip install --target` of a copy of its source (a build leaves
    egg-info next to the sources), uninstalled by deleting the directory afterwards."""
    work = tmp_path_factory.mktemp("acme")
    source = work / "src"
    shutil.copytree(PLUGIN, source)
    target = work / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (info,) = target.glob("loyalty_connector_acme-*.dist-info")
    assert "acme = loyalty_connector_acme:Acme" in (info / "entry_points.txt").read_text()
    try:
        yield target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def plugin_env(site: Path) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": os.pathsep.join(p for p in (str(site), path) if p),
        "CONNECTOR_ACME_SECRET": SECRET,
    }


@pytest.fixture
def h(kafka: Any, topic_prefix: str, tmp_path: Path, site: Path, request: Any) -> Iterator[Harness]:
    harness = Harness(kafka.bootstrap, topic_prefix, tmp_path, base_env=plugin_env(site))
    failed_before = request.session.testsfailed
    try:
        yield harness
    finally:
        harness.close(failed=request.session.testsfailed > failed_before)


def test_decode_verifies_and_decodes_with_the_installed_plugin(h: Harness) -> None:
    sample = SAMPLES / "01_earned.json"
    body = sample.read_bytes()

    def decode(secret: str) -> subprocess.CompletedProcess[str]:
        header = f"X-Acme-Signature: {acme_signature(body, secret)}"
        return h.cli("decode", "--provider", "acme", "--header", header, str(sample))

    done = decode(SECRET)
    assert done.returncode == 0, done.stderr
    [event] = [json.loads(line) for line in done.stdout.splitlines()]
    assert event["provider"] == "OTHER"
    assert event["member_key"] == "acme:default:m-42"
    assert event["attributes"] == {"program": "gold-club", "provider_key": "acme"}
    assert (event["type"], event["points_delta"], event["balance"]) == ("POINTS_EARNED", 120, 120)
    forged = decode("not-the-secret")
    assert forged.returncode == 3
    assert forged.stderr.strip() == (
        "error: verification failed: X-Acme-Signature does not match the body"
    )
    # `config` lists the plugin's variables and state like a built-in provider's
    config = json.loads(h.cli("config", "--json").stdout)
    names = {v["name"] for v in config["variables"]}
    assert {"CONNECTOR_ACME_SECRET", "CONNECTOR_ACME_UNVERIFIED"} <= names
    assert config["providers"]["acme"]["configured"] is True


def test_bridge_replay_and_worker_run_the_plugin_end_to_end(h: Harness, tmp_path: Path) -> None:
    worker = h.start_worker()
    bridge = h.start_bridge()

    # a signed webhook onto the raw topic; one signed with another secret is refused
    body = json.dumps(
        {"id": "acme-evt-0", "type": "points.earned", "member": "m-7", "points": 5, "balance": 5}
    ).encode()
    h.send(bridge, [Delivery("acme", body, {"X-Acme-Signature": acme_signature(body)})])
    [record] = asyncio.run(
        consume(h.bootstrap, h.topic("raw"), lambda rs: any(r.value == body for r in rs))
    )
    headers = headers_of(record)
    assert headers["provider"] == b"acme" and headers["verified"] == b"true"
    assert record.key == b"acme-evt-0"  # the plugin's delivery id is the raw record's key
    assert headers["x-acme-signature"] == acme_signature(body).encode()  # its kept header
    wrong = {"X-Acme-Signature": acme_signature(body, "not-the-secret")}
    with pytest.raises(AssertionError, match="401"):
        h.send(bridge, [Delivery("acme", body, wrong)])

    # `replay` signs the plugin's own samples with CONNECTOR_ACME_SECRET
    empty = tmp_path / "empty.env"
    empty.write_text("")
    argv = ["replay", str(SAMPLES), "--provider", "acme", "--to", bridge.url]
    done = h.cli(*argv, "--env-file", str(empty))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sent 2 webhooks" in done.stdout and "(200: 2)" in done.stdout

    member = h.wait_member(worker, "acme", "default", "m-42", lambda m: float(m["balance"]) == 100)
    assert member["provider"] == "OTHER"
    assert h.wait_member(worker, "acme", "default", "m-7", lambda m: float(m["balance"]) == 5)
    h.wait_caught_up()
    events = [r.value for r in h.read("events")]
    acme = [e for e in events if isinstance(e, LoyaltyEvent) and e.member_key.startswith("acme:")]
    assert {e.event_id for e in acme} == {"acme-evt-0", "acme-evt-1", "acme-evt-2"}
    assert all(e.provider is Provider.OTHER for e in acme)
    assert all(e.attributes["provider_key"] == "acme" for e in acme)
    assert not h.read("dlq", decode=False)
