"""What the long fuzzing campaign (`benchmarks/fuzz.py`, 100,000 inputs per provider) found.

Each case was an input that made a provider function crash or hang; it stays here so it cannot
come back.
"""

from __future__ import annotations

import time

import pytest

from connector.errors import DecodeError
from connector.providers import PROVIDERS
from tests.support import test_secrets


@pytest.mark.parametrize("number", ["1e999999999", "-1E+4000", "1E+999999999999999999"])
def test_wix_sign_refuses_huge_numbers_at_once(number: str) -> None:
    # `replay`/`sign` re-serialize a readable Wix document; int(Decimal("1e999999999")) used to
    # run for minutes (found as a hang by the campaign, in Wix.sign -> _compact -> _number).
    body = f'{{"eventType": "x", "instanceId": "i", "data": {{"id": "e", "n": {number}}}}}'
    started = time.perf_counter()
    with pytest.raises(DecodeError, match="out of range"):
        PROVIDERS["wix"].sign(body.encode(), test_secrets()["wix"])
    assert time.perf_counter() - started < 1.0


def test_wix_sign_keeps_ordinary_numbers() -> None:
    body = b'{"eventType": "x", "instanceId": "i", "data": {"id": "e", "a": 1.5, "b": 1e2, "c": 7}}'
    token, _ = PROVIDERS["wix"].sign(body, test_secrets()["wix"])
    PROVIDERS["wix"].verify(token, {}, test_secrets()["wix"])
