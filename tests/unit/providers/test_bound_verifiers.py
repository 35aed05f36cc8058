"""Secrets bound once (`provider.bind(secrets)`) verify exactly as `verify(body, headers, secrets)`.

Wix's bound verifier checks the JWS itself instead of calling `jwt.decode` (PyJWT spends most of
a verification re-checking the token's alphabet); `reference` below is the former
`Wix.verify`, so every token here must get the same verdict and the same message from both.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import ConfigError, VerificationError
from connector.providers import PROVIDERS
from connector.providers.open_loyalty import DEFAULT_SIGN_TARGET
from connector.providers.wix import _public_key, _token_text
from connector.settings import Settings
from tests.support import fixture_cases, other_wix_keypair, test_env, test_secrets, wix_keypair

WIX = PROVIDERS["wix"]


# PyJWT's error -> what `Wix.verify` says; the first that matches (InvalidSignatureError is a
# DecodeError).
REFERENCE_MESSAGES: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired (exp is in the past)"),
    (jwt.InvalidAlgorithmError, "token algorithm not allowed (RS256 only)"),
    (jwt.InvalidSignatureError, "token signature does not match the public key"),
    (jwt.ImmatureSignatureError, "token is not valid yet (iat/nbf in the future)"),
    (jwt.DecodeError, "body is not a well-formed JWT"),
)


def reference(body: bytes, pem: str, leeway: float = 0.0) -> str | None:
    """The verdict of `Wix.verify` before secrets were bound: PyJWT's `jwt.decode`."""
    token = _token_text(body)
    if token is None:
        return "body is not a JWT"
    try:
        jwt.decode(
            token,
            _public_key(pem),
            algorithms=["RS256"],
            options={"require": ["exp", "iat"], "verify_aud": False},
            leeway=leeway,
        )
    except jwt.MissingRequiredClaimError as exc:
        return f"token lacks the {exc.claim} claim"
    except jwt.PyJWTError as exc:
        said = (message for error, message in REFERENCE_MESSAGES if isinstance(exc, error))
        return next(said, f"token rejected ({type(exc).__name__})")
    return None


def bound(body: bytes, pem: str, leeway: float = 0.0) -> str | None:
    verifier = WIX.bind({"public_key": pem, "leeway": str(leeway)})
    try:
        verifier.verify(body, {})
    except VerificationError as exc:
        return str(exc)
    return None


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _private(pem: str) -> RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, RSAPrivateKey)
    return key


def token(header: Any, claims: Any, private_pem: str | None = None) -> bytes:
    """A compact JWS of any header and claims (JSON values, or raw bytes), RS256-signed."""
    h = _b64(header if isinstance(header, bytes) else json.dumps(header).encode())
    p = _b64(claims if isinstance(claims, bytes) else json.dumps(claims).encode())
    key = _private(private_pem or wix_keypair()[0])
    signature = key.sign(h + b"." + p, padding.PKCS1v15(), hashes.SHA256())
    return h + b"." + p + b"." + _b64(signature)


def good(now: int) -> dict[str, Any]:
    return {"data": "{}", "iat": now - 10, "exp": now + 3600}


def without(claim: str) -> Callable[[int], dict[str, Any]]:
    return lambda now: {k: v for k, v in good(now).items() if k != claim}


RS256 = {"alg": "RS256", "typ": "JWT", "kid": "k1"}

HEADERS: list[Any] = [
    RS256,
    {"alg": "RS256"},
    {"alg": "RS256", "kid": 5},
    {"alg": "RS256", "crit": ["b64"], "b64": False},
    {"alg": "RS256", "crit": ["b64"], "b64": True},
    {"alg": "RS256", "crit": ["b64"]},
    {"alg": "RS256", "crit": "b64", "b64": True},
    {"alg": "RS256", "crit": [1]},
    {"alg": "RS256", "crit": []},
    {"alg": "RS256", "crit": ["exp"]},
    {"alg": "RS256", "b64": False},
    {"alg": "HS256"},
    {"alg": "RS512"},
    {"alg": "none"},
    {"alg": ""},
    {"typ": "JWT"},
    ["RS256"],
    b"not json",
]
# claims as of `now` (the time the test runs, not when it was collected)
CLAIMS: dict[str, Callable[[int], Any]] = {
    "good": good,
    "expired": lambda now: {**good(now), "exp": now - 60},
    "exp as text": lambda now: {**good(now), "exp": str(now + 60)},
    "exp not a number": lambda now: {**good(now), "exp": "soon"},
    "exp a float": lambda now: {**good(now), "exp": now + 60.5},
    "exp null": lambda now: {**good(now), "exp": None},
    "iat in the future": lambda now: {**good(now), "iat": now + 600},
    "iat not a number": lambda now: {**good(now), "iat": "yesterday"},
    "iat an array": lambda now: {**good(now), "iat": [1]},
    "nbf in the future": lambda now: {**good(now), "nbf": now + 600},
    "nbf past": lambda now: {**good(now), "nbf": now - 600},
    "nbf not a number": lambda now: {**good(now), "nbf": "later"},
    "sub a number": lambda now: {**good(now), "sub": 7},
    "sub a string": lambda now: {**good(now), "sub": "member"},
    "jti a number": lambda now: {**good(now), "jti": 7},
    "aud": lambda now: {**good(now), "aud": "someone"},
    "no exp": without("exp"),
    "no iat": without("iat"),
    "an array": lambda now: [good(now)],
    "not JSON": lambda now: b"not json",
}


@pytest.mark.parametrize("header", HEADERS, ids=repr)
@pytest.mark.parametrize("claims", list(CLAIMS))
def test_bound_wix_verifier_agrees_with_pyjwt(header: Any, claims: str) -> None:
    body = token(header, CLAIMS[claims](int(time.time())))
    public = wix_keypair()[1]
    assert bound(body, public) == reference(body, public)


def test_a_token_signed_by_another_key_or_tampered_is_refused_by_both() -> None:
    public = wix_keypair()[1]
    forged = token(RS256, good(int(time.time())), other_wix_keypair()[0])
    assert bound(forged, public) == reference(forged, public)
    assert bound(forged, public) == "token signature does not match the public key"
    head, claims, sig = token(RS256, good(int(time.time()))).split(b".")
    other = _b64(json.dumps({**good(int(time.time())), "data": '{"x": 1}'}).encode())
    assert bound(b".".join([head, other, sig]), public) == reference(
        b".".join([head, other, sig]), public
    )
    assert bound(token(RS256, good(int(time.time()))), public) is None


def test_leeway_applies_to_exp_iat_and_nbf_alike() -> None:
    public = wix_keypair()[1]
    now = int(time.time())
    for claims in (
        {**good(now), "exp": now - 30},
        {**good(now), "iat": now + 30},
        {**good(now), "nbf": now + 30},
    ):
        body = token(RS256, claims)
        assert bound(body, public, 120) is None and reference(body, public, 120) is None
        assert bound(body, public) == reference(body, public) is not None


def test_non_canonical_base64url_is_malformed_for_both() -> None:
    public = wix_keypair()[1]
    head, claims, sig = token(RS256, good(int(time.time()))).split(b".")
    # the last character carries unused bits: a different character decodes to the same bytes
    for segment in range(3):
        parts = [head, claims, sig]
        last = parts[segment][-1:]
        for replacement in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
            if bytes([replacement]) == last:
                continue
            parts[segment] = parts[segment][:-1] + bytes([replacement])
            body = b".".join(parts)
            assert bound(body, public) == reference(body, public), (segment, replacement)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_one_character_change_gets_the_same_verdict(data: st.DataObject) -> None:
    public = wix_keypair()[1]
    body = bytearray(token(RS256, good(int(time.time()))))
    i = data.draw(st.integers(0, len(body) - 1))
    body[i] = data.draw(st.sampled_from(b"ABCXYZabcxyz0189-_.=+/ \n"))
    assert bound(bytes(body), public) == reference(bytes(body), public)


# ---------------------------------------------------------------------------------------------
# every provider: bound == unbound; settings bind once per tenant


def _deliveries(key: str) -> list[tuple[bytes, dict[str, str]]]:
    provider, secrets = PROVIDERS[key], test_secrets()[key]
    return [
        provider.sign(case.read_bytes(), secrets, target=DEFAULT_SIGN_TARGET)
        for case in fixture_cases(key)
    ]


def _verdict(check: Callable[[], None]) -> str | None:
    try:
        check()
    except VerificationError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("key", sorted(PROVIDERS))
def test_bound_verifier_gives_the_verdicts_of_verify(key: str) -> None:
    provider, secrets = PROVIDERS[key], test_secrets()[key]
    verifier = provider.bind(secrets)
    assert verifier.configured
    for body, headers in _deliveries(key):
        tampered = body[:-3] + (b"x" if body[-3:-2] != b"x" else b"y") + body[-2:]
        for b in (body, tampered):
            for h in (headers, {}):
                assert _verdict(
                    lambda b=b, h=h: verifier.verify(b, h, DEFAULT_SIGN_TARGET)
                ) == _verdict(lambda b=b, h=h: provider.verify(b, h, secrets, DEFAULT_SIGN_TARGET))
        assert (
            _verdict(lambda b=body, h=headers: verifier.verify(b, h, DEFAULT_SIGN_TARGET)) is None
        )
    unconfigured = provider.bind({})
    assert not unconfigured.configured
    body, headers = _deliveries(key)[0]
    with pytest.raises(VerificationError):
        unconfigured.verify(body, headers, DEFAULT_SIGN_TARGET)


def test_settings_bind_each_tenant_once_and_refuse_a_bad_key_at_start(tmp_path: Any) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text('[voucherify.shop-eu]\nsecret_key = "eu"\n')
    tenants.chmod(0o600)
    s = Settings.from_env({**test_env(), "CONNECTOR_TENANTS_FILE": str(tenants)})
    s.bind_verifiers()
    vf = s.provider("voucherify")
    eu = vf.verifier_for("shop-eu")
    assert eu is not None and eu is vf.verifier_for("shop-eu")  # bound once, then kept
    assert vf.verifier_for(None) is not eu
    assert vf.verifier_for("shop-xx") is None  # unknown tenant of a tenanted provider
    body, headers = PROVIDERS["voucherify"].sign(b'{"a": 1}', {"secret_key": "eu"})
    eu.verify(body, headers)
    with pytest.raises(VerificationError):
        vf.verifier_for(None).verify(body, headers)  # type: ignore[union-attr]
    # a PEM header around garbage passes the settings' shape check, but not binding
    bad = Settings.from_env(
        {"CONNECTOR_WIX_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"}
    )
    with pytest.raises(ConfigError, match=r"CONNECTOR_WIX_\*: wix public_key is not a PEM"):
        bad.bind_verifiers()
