"""Every fixture payload, signed as its provider would, verifies and decodes as expected."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.models import to_json_obj
from connector.providers import PROVIDERS, DecodeContext
from connector.providers.base import RequestTarget
from tests.support import expected_for, fixture_cases, test_secrets

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CASES = [(key, case) for key in sorted(PROVIDERS) for case in fixture_cases(key)]


def test_every_provider_has_fixtures() -> None:
    for key in PROVIDERS:
        assert len(fixture_cases(key)) >= 3, f"{key} needs fixtures under tests/fixtures/{key}/"


@pytest.mark.parametrize(("key", "case"), CASES, ids=[f"{k}/{c.stem}" for k, c in CASES])
def test_fixture_decodes_to_expected_events(key: str, case) -> None:  # type: ignore[no-untyped-def]
    provider = PROVIDERS[key]
    secrets = test_secrets()[key]
    body, headers = provider.sign(case.read_bytes(), secrets)
    # Open Loyalty Cloud signs the request line: what `sign` signs for by default
    provider.verify(body, headers, secrets, RequestTarget("POST", "127.0.0.1", f"/webhooks/{key}"))
    events = provider.decode(body, headers, DecodeContext(tenant=None, received_at=RECEIVED))
    got = [to_json_obj(e) for e in events]
    expected = expected_for(case)
    # A payload without a time is dated by the signed X-Webhook-Timestamp (Open Loyalty), which
    # `sign` sets to the signing second: the expected file names the header instead of a value.
    stamp = {k.lower(): v for k, v in headers.items()}.get("x-webhook-timestamp")
    for e in expected:
        if e.get("occurred_at") == "$X-Webhook-Timestamp":
            assert stamp is not None, "the fixture expects a signed X-Webhook-Timestamp"
            e["occurred_at"] = (
                datetime.fromtimestamp(int(stamp), UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
    assert len(got) == len(expected), got
    for g, e in zip(got, expected, strict=True):
        subset = {k: g.get(k) for k in e}
        assert subset == e
    # Deterministic ids: decoding the same delivery again yields the same events.
    again = provider.decode(body, headers, DecodeContext(tenant=None, received_at=RECEIVED))
    assert [e.event_id for e in again] == [e.event_id for e in events]
