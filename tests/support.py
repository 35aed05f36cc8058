"""Test secrets and signing helpers shared by unit and integration tests."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

FIXTURES = Path(__file__).parent / "fixtures"


@functools.cache
def wix_keypair() -> tuple[str, str]:
    """(private PEM, public PEM) made once per test session; no key is committed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@functools.cache
def other_wix_keypair() -> tuple[str, str]:
    return wix_keypair.__wrapped__()  # a second, unrelated key pair


def test_secrets() -> dict[str, dict[str, str]]:
    """Per-provider secrets in the shape Settings hands to providers."""
    private, public = wix_keypair()
    return {
        "gameball": {"secret_key": "gb-test-secret"},
        "open_loyalty": {
            "header_name": "X-OL-Token",
            "header_value": "ol-test-token",
            "hmac_secret": "ol-test-hmac",
        },
        "voucherify": {"secret_key": "vf-test-secret"},
        "wix": {"public_key": public, "private_key": private},
    }


test_secrets.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_env() -> dict[str, str]:
    """CONNECTOR_* variables carrying the same test secrets (for Settings.from_env)."""
    s = test_secrets()
    return {
        "CONNECTOR_GAMEBALL_SECRET_KEY": s["gameball"]["secret_key"],
        "CONNECTOR_OPEN_LOYALTY_HEADER_NAME": s["open_loyalty"]["header_name"],
        "CONNECTOR_OPEN_LOYALTY_HEADER_VALUE": s["open_loyalty"]["header_value"],
        "CONNECTOR_OPEN_LOYALTY_HMAC_SECRET": s["open_loyalty"]["hmac_secret"],
        "CONNECTOR_VOUCHERIFY_SECRET_KEY": s["voucherify"]["secret_key"],
        "CONNECTOR_WIX_PUBLIC_KEY": s["wix"]["public_key"],
        "CONNECTOR_WIX_PRIVATE_KEY": s["wix"]["private_key"],
    }


test_env.__test__ = False  # type: ignore[attr-defined]


def fixture_cases(provider: str) -> list[Path]:
    """Every `<case>.json` payload of a provider that has a `<case>.expected.json` beside it."""
    folder = FIXTURES / provider
    return sorted(
        p
        for p in folder.glob("*.json")
        if not p.name.endswith(".expected.json") and p.with_suffix(".expected.json").exists()
    )


def expected_for(case: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(case.with_suffix(".expected.json").read_text())
    return data
