"""A provider added in one file: its class below is all it takes. Registered for the test, it
gets its own setting, the bridge serves and verifies it, the worker's normalize step decodes
it into an Avro event with `provider = OTHER`, and `decode` prints it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from connector.avro import default_codec
from connector.cli import main
from connector.errors import ConfigError, VerificationError
from connector.models import EventType, LoyaltyEvent, Provider
from connector.providers import (
    PROVIDERS,
    BaseProvider,
    DecodeContext,
    Option,
    RequestTarget,
    Secrets,
    Where,
)
from connector.providers.base import (
    build_event,
    constant_time_equals,
    opt_points,
    parse_object,
    req_str,
    require_header,
    resolve_tenant,
)
from connector.raw import ConsumedRecord
from connector.settings import Settings, variables
from connector.streams.normalize import normalize
from tests.support import registered, test_env
from tests.unit.test_bridge import FakeProducer, bridge


def _mac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Scratch(BaseProvider):
    """Scratch: `X-Scratch-Signature` = hex HMAC-SHA256(secret, body); `{"id", "customer",
    "points"}` bodies, one POINTS_EARNED each."""

    key = "scratch"
    kept_headers = ("x-scratch-signature",)
    options = (
        Option(
            "SECRET",
            None,
            "HMAC key of `X-Scratch-Signature`",
            secret=True,
            required=True,
            test="scratch-test-secret",
        ),
        Option("MAX_POINTS", "1000", "largest earn accepted"),
    )

    def check_options(self, values: Secrets, where: Where) -> None:
        if not values.get("max_points", "").isdigit():
            raise ConfigError(f"{where('MAX_POINTS')}: expected a whole number")

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        secrets: Secrets,
        target: RequestTarget | None = None,
    ) -> None:
        given = require_header(headers, "X-Scratch-Signature")
        if not constant_time_equals(given, _mac(secrets["secret"], body)):
            raise VerificationError("X-Scratch-Signature does not match the body")

    def decode(
        self, body: bytes, headers: Mapping[str, str], context: DecodeContext
    ) -> list[LoyaltyEvent]:
        obj = parse_object(body)
        return [
            build_event(
                provider=self,
                tenant=resolve_tenant(context),
                customer_id=req_str(obj, "customer", "body"),
                event_id=req_str(obj, "id", "body"),
                provider_event_type="points.earned",
                type=EventType.POINTS_EARNED,
                occurred_at=None,
                context=context,
                points_delta=opt_points(obj, "points", "body"),
            )
        ]

    def sign(
        self, body: bytes, secrets: Secrets, target: RequestTarget | None = None
    ) -> tuple[bytes, dict[str, str]]:
        return body, {"X-Scratch-Signature": _mac(secrets["secret"], body)}


BODY = json.dumps({"id": "e-1", "customer": "c-1", "points": 25}).encode()
ENV = {"CONNECTOR_SCRATCH_SECRET": "scratch-test-secret", "CONNECTOR_TOPIC_PREFIX": "unit"}


@pytest.fixture
def scratch() -> Any:
    with registered(Scratch()) as provider:
        yield provider


def test_its_options_are_settings_with_the_usual_names_and_checks(scratch: Scratch) -> None:
    names = [v.name for v in variables() if v.name.startswith("CONNECTOR_SCRATCH_")]
    assert names == [
        "CONNECTOR_SCRATCH_SECRET",
        "CONNECTOR_SCRATCH_MAX_POINTS",
        "CONNECTOR_SCRATCH_UNVERIFIED",
    ]
    s = Settings.from_env(ENV)
    assert s.provider("scratch").secrets_for(None) == {
        "secret": "scratch-test-secret",
        "max_points": "1000",
    }
    assert "scratch-test-secret" not in repr(s)
    with pytest.raises(ConfigError, match="CONNECTOR_SCRATCH_MAX_POINTS: expected a whole"):
        Settings.from_env({**ENV, "CONNECTOR_SCRATCH_MAX_POINTS": "lots"})


def test_the_bridge_and_the_decoder_run_it_end_to_end(scratch: Scratch) -> None:
    s = Settings.from_env({**test_env(), **ENV})
    s.bind_verifiers()
    producer = FakeProducer()

    async def go() -> tuple[int, int, int]:
        async with bridge(s, producer) as client:
            body, headers = scratch.sign(BODY, scratch.test_secrets())
            ok = await client.post("/webhooks/scratch", data=body, headers=headers)
            forged = await client.post(
                "/webhooks/scratch", data=body, headers={"X-Scratch-Signature": "00" * 32}
            )
            tenant = await client.post("/webhooks/scratch/shop-1", data=body, headers=headers)
            return ok.status, forged.status, tenant.status

    assert asyncio.run(go()) == (200, 401, 200)
    assert len(producer.records) == 2
    topic, key, value, headers = producer.records[0]
    assert topic == "unit.webhooks.raw" and value == BODY
    assert ("provider", b"scratch") in headers
    assert ("x-scratch-signature", _mac("scratch-test-secret", BODY).encode()) in headers

    codec = default_codec()
    for (_, key, value, headers), tenant in zip(
        producer.records, ("default", "shop-1"), strict=True
    ):
        out = normalize(ConsumedRecord(key, value, headers, topic, 0, 0), codec)
        assert out.dead_letter is None
        [(event, encoded)] = out.events
        assert codec.decode(encoded, LoyaltyEvent) == event
        assert event.provider is Provider.OTHER
        assert event.member_key == f"scratch:{tenant}:c-1"
        assert event.attributes["provider_key"] == "scratch"
        assert (event.type, event.points_delta, event.event_id) == (
            EventType.POINTS_EARNED,
            25,
            "e-1",
        )


def test_decode_prints_its_events_and_verifies_with_its_setting(
    scratch: Scratch,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "body.json"
    path.write_bytes(BODY)
    signature = _mac("scratch-test-secret", BODY)
    monkeypatch.setenv("CONNECTOR_SCRATCH_SECRET", "scratch-test-secret")
    argv = ["decode", "--provider", "scratch", "--header", f"X-Scratch-Signature: {signature}"]
    assert main([*argv, str(path)]) == 0
    [line] = capsys.readouterr().out.splitlines()
    event = json.loads(line)
    assert (event["provider"], event["member_key"]) == ("OTHER", "scratch:default:c-1")
    monkeypatch.setenv("CONNECTOR_SCRATCH_SECRET", "another-secret")
    assert main([*argv, str(path)]) == 3
    assert "X-Scratch-Signature does not match" in capsys.readouterr().err


def test_a_key_that_is_taken_or_malformed_is_refused() -> None:
    class Twin(Scratch):
        key = "wix"

    class Bad(Scratch):
        key = "Bad-Key"

    class Impostor(Scratch):
        provider = Provider.GAMEBALL

    with pytest.raises(ConfigError, match="'wix' is a built-in provider"):
        PROVIDERS.add(Twin())
    with pytest.raises(ConfigError, match="lower-case letters"):
        PROVIDERS.add(Bad())
    with pytest.raises(ConfigError, match="Provider.OTHER"):
        PROVIDERS.add(Impostor())
    assert list(PROVIDERS) == ["gameball", "open_loyalty", "voucherify", "wix"]
