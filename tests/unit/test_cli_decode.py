"""`loyalty-connector decode`: a webhook body -> canonical events as JSON lines, as users run it.

Exit codes: 0 decoded, 2 cannot decode, 3 verification failed; failures print one `error:` line
on stderr and never a traceback.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from connector.cli import main
from connector.models import EventType, Provider
from connector.providers import PROVIDERS
from tests.support import (
    FIXTURES,
    expected_for,
    fixture_cases,
    test_env,
    test_secrets,
    wix_keypair,
)

ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# One signed fixture per provider, and what a user must see for it: these cases were chosen,
# else the provider's first fixture with an expected file.
PREFERRED_CASES = {
    "gameball": "v4_profile_updated",
    "open_loyalty": "available_points_amount_changed",
    "voucherify": "tier_upgraded",
    "wix": "account_updated_claims",
}
SIGNED_CASES = {
    key: PREFERRED_CASES.get(key) or fixture_cases(key)[0].stem
    for key in PROVIDERS
    if fixture_cases(key)
}
# Fields whose expected value is the fixed receive time of test_fixtures.py when the payload has
# no time of its own; the CLI uses the real clock.
CLOCK_FIELDS = {"received_at", "occurred_at"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The process environment holds exactly the test secrets (Settings.from_env reads it)."""
    for name in list(os.environ):
        if name.startswith("CONNECTOR_"):
            monkeypatch.delenv(name)
    values = test_env()
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONNECTOR_"):
            monkeypatch.delenv(name)


def signed(key: str, case: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """The fixture signed as its provider would: (body file, --header arguments)."""
    body, headers = PROVIDERS[key].sign(
        (FIXTURES / key / f"{case}.json").read_bytes(), test_secrets()[key]
    )
    path = tmp_path / f"{case}.body"
    path.write_bytes(body)
    return path, [
        arg for name, value in headers.items() for arg in ("--header", f"{name}: {value}")
    ]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any], list[str]]:
    """(exit code, stdout parsed as JSON lines, stderr lines)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err.splitlines()


def assert_refused(code: int, err: list[str], exit_code: int, *fragments: str) -> None:
    assert code == exit_code
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    assert "Traceback" not in err[0]
    for fragment in fragments:
        assert fragment in err[0]


def assert_canonical(event: dict[str, Any]) -> None:
    """What every printed event looks like: symbols, ISO times, numbers, tier object or null."""
    assert event["provider"] in {p.value for p in Provider}
    assert event["type"] in {t.value for t in EventType}
    assert ISO_MILLIS.match(event["occurred_at"]) and ISO_MILLIS.match(event["received_at"])
    for name in ("points_delta", "balance", "pending_points"):
        assert event[name] is None or type(event[name]) in (int, float), (name, event[name])
    tier = event["tier"]
    assert tier is None or set(tier) == {"id", "name", "order"}
    assert isinstance(event["attributes"], dict)
    assert all(isinstance(v, str) for v in event["attributes"].values())


# --- verified decoding -------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(SIGNED_CASES))
def test_signed_payload_of_each_provider_prints_its_canonical_events(
    key: str, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = SIGNED_CASES[key]
    body, headers = signed(key, case, tmp_path)
    code, events, err = run(capsys, "decode", "--provider", key, *headers, str(body))
    assert (code, err) == (0, [])
    expected = expected_for(FIXTURES / key / f"{case}.json")
    assert len(events) == len(expected)
    for got, want in zip(events, expected, strict=True):
        assert_canonical(got)
        assert got["provider"] == PROVIDERS[key].provider.value
        assert {k: got[k] for k in want if k not in CLOCK_FIELDS} == {
            k: v for k, v in want.items() if k not in CLOCK_FIELDS
        }


def test_printed_values_have_json_types_not_strings(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body, headers = signed("gameball", "v4_profile_updated", tmp_path)
    _, [event], _ = run(capsys, "decode", "--provider", "gameball", *headers, str(body))
    assert event["balance"] == 90 and event["pending_points"] == 10
    assert event["counters"]["total"] == 100
    assert event["tier"] == {"id": None, "name": "basic", "order": 1}
    assert event["occurred_at"] == "2024-11-19T17:34:42.297Z"
    assert event["type"] == "BALANCE_SNAPSHOT" and event["provider"] == "GAMEBALL"


def test_tenant_option_scopes_the_member_key(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body, headers = signed("voucherify", "tier_upgraded", tmp_path)
    code, [event], _ = run(
        capsys, "decode", "--provider", "voucherify", "--tenant", "shop-eu", *headers, str(body)
    )
    assert code == 0
    assert event["tenant"] == "shop-eu"
    assert event["member_key"] == "voucherify:shop-eu:cust_IdgAFZxYwwHctOk9pPuMu308"


def test_no_verify_decodes_an_unsigned_body_without_any_secret(
    no_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = FIXTURES / "open_loyalty" / "customer_level_changed.json"
    code, [event], err = run(
        capsys, "decode", "--provider", "open_loyalty", "--no-verify", str(path)
    )
    assert (code, err) == (0, [])
    assert_canonical(event)
    assert event["type"] == "TIER_CHANGED"


def test_body_can_come_from_stdin(
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body, headers = signed("wix", "account_created", tmp_path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body.read_bytes())))
    code, events, err = run(capsys, "decode", "--provider", "wix", *headers, "-")
    assert (code, err) == (0, [])
    assert [e["type"] for e in events] == ["CUSTOMER_REGISTERED", "BALANCE_SNAPSHOT"]


def test_an_event_per_line_and_nothing_for_a_delivery_about_no_member(
    no_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = FIXTURES / "gameball" / "v3_notifications.json"
    code = main(["decode", "--provider", "gameball", "--no-verify", str(path)])
    out = capsys.readouterr().out
    assert code == 0 and out.endswith("\n") and out.count("\n") == 1
    empty = FIXTURES / "wix" / "doc_earning_rule_created.json"
    assert main(["decode", "--provider", "wix", "--no-verify", str(empty)]) == 0
    assert capsys.readouterr() == ("", "")


# --- decode errors: exit 2 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"event": "customer.profile.updated", "customer_id": ', "not valid JSON"),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'{"playerUniqueId": null}', "playerUniqueId is missing"),
    ],
)
def test_undecodable_body_exits_2_with_one_line(
    body: bytes,
    fragment: str,
    no_secrets: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "body.json"
    path.write_bytes(body)
    code, out, err = run(capsys, "decode", "--provider", "gameball", "--no-verify", str(path))
    assert out == []
    assert_refused(code, err, 2, "cannot decode", fragment)


def test_a_signed_but_undecodable_body_is_verified_first_then_exits_2(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body, headers = signed("gameball", "v3_profile_doc_sample_null_player", tmp_path)
    code, _, err = run(capsys, "decode", "--provider", "gameball", *headers, str(body))
    assert_refused(code, err, 2, "playerUniqueId")


def test_missing_file_is_reported_without_traceback(
    no_secrets: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json"
    code, _, err = run(capsys, "decode", "--provider", "wix", "--no-verify", str(missing))
    assert_refused(code, err, 1, "cannot read", str(missing))


# --- verification failures: exit 3 ------------------------------------------------------------


def _header(headers: list[str], name: str, value: str | None) -> list[str]:
    """The --header arguments with `name` replaced (or dropped when value is None)."""
    pairs = [headers[i + 1] for i in range(0, len(headers), 2)]
    kept = [p for p in pairs if p.split(":", 1)[0].strip().lower() != name.lower()]
    if value is not None:
        kept.append(f"{name}: {value}")
    return [arg for p in kept for arg in ("--header", p)]


@pytest.mark.parametrize(
    ("key", "case", "header"),
    [
        ("gameball", "v4_profile_updated", "X-GB-Signature"),
        ("voucherify", "tier_upgraded", "x-voucherify-signature"),
        ("open_loyalty", "customer_updated", "X-Webhook-Signature"),
    ],
)
def test_wrong_signature_exits_3(
    key: str,
    case: str,
    header: str,
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body, headers = signed(key, case, tmp_path)
    forged = _header(headers, header, "0" * 64)
    code, out, err = run(capsys, "decode", "--provider", key, *forged, str(body))
    assert out == []
    assert_refused(code, err, 3, "verification failed", "does not match")


@pytest.mark.parametrize("key", sorted(SIGNED_CASES))
def test_tampered_byte_exits_3(
    key: str, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body, headers = signed(key, SIGNED_CASES[key], tmp_path)
    data = bytearray(body.read_bytes())
    if key == "wix":  # flip a character of the token's payload segment (still base64url)
        at = data.index(b".") + 10
        data[at] = ord("A") if data[at] != ord("A") else ord("B")
    else:  # one digit of a number
        at = re.search(rb"[0-9]", bytes(data[20:])).start() + 20  # type: ignore[union-attr]
        data[at] = ord("7") if data[at] != ord("7") else ord("8")
    body.write_bytes(bytes(data))
    code, out, err = run(capsys, "decode", "--provider", key, *headers, str(body))
    assert out == []
    assert_refused(code, err, 3, "verification failed")


@pytest.mark.parametrize(
    ("key", "case", "header", "message"),
    [
        ("gameball", "v4_profile_updated", "X-GB-Signature", "missing X-GB-Signature"),
        ("voucherify", "tier_upgraded", "x-voucherify-signature", "missing x-voucherify"),
        ("open_loyalty", "customer_updated", "X-OL-Token", "missing X-OL-Token"),
    ],
)
def test_missing_signature_header_exits_3(
    key: str,
    case: str,
    header: str,
    message: str,
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body, headers = signed(key, case, tmp_path)
    code, _, err = run(
        capsys, "decode", "--provider", key, *_header(headers, header, None), str(body)
    )
    assert_refused(code, err, 3, message)


def _wix_token(claims: dict[str, Any], *, alg: str = "RS256") -> bytes:
    if alg == "none":

        def b64(obj: dict[str, Any]) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.".encode()
    key = serialization.load_pem_private_key(wix_keypair()[0].encode(), password=None)
    return jwt.encode(claims, key, algorithm=alg).encode()  # type: ignore[arg-type]


def _wix_claims(**times: int) -> dict[str, Any]:
    doc = json.loads((FIXTURES / "wix" / "account_updated_claims.json").read_text())
    return {"data": doc["data"], **times}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (
            lambda now: _wix_token(_wix_claims(iat=now - 7200, exp=now - 3600)),
            "token expired",
        ),
        (
            lambda now: _wix_token(_wix_claims(iat=now, exp=now + 3600), alg="none"),
            "RS256 only",
        ),
        (lambda now: _wix_token(_wix_claims(iat=now)), "lacks the exp claim"),
        (
            lambda now: (FIXTURES / "wix" / "account_updated_claims.json").read_bytes(),
            "not a JWT",
        ),
    ],
    ids=["expired", "alg-none", "no-exp", "unsigned-document"],
)
def test_wix_token_that_is_not_authentic_and_current_exits_3(
    token: Any,
    message: str,
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "token"
    path.write_bytes(token(int(time.time())))
    code, out, err = run(capsys, "decode", "--provider", "wix", str(path))
    assert out == []
    assert_refused(code, err, 3, "verification failed", message)
    # the same bytes decode with --no-verify: exit 3 really was about authenticity
    if message != "not a JWT":
        assert main(["decode", "--provider", "wix", "--no-verify", str(path)]) == 0
        capsys.readouterr()


@pytest.mark.parametrize("key", sorted(SIGNED_CASES))
def test_unconfigured_secrets_exit_3_with_a_hint(
    key: str, no_secrets: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = FIXTURES / key / f"{SIGNED_CASES[key]}.json"
    code, out, err = run(capsys, "decode", "--provider", key, str(body))
    assert out == []
    assert_refused(code, err, 3, f"CONNECTOR_{key.upper()}_", "--no-verify")


# --- --header parsing -------------------------------------------------------------------------


def test_header_names_are_case_insensitive_and_values_are_trimmed(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = FIXTURES / "voucherify" / "tier_upgraded.json"
    _, headers = PROVIDERS["voucherify"].sign(path.read_bytes(), test_secrets()["voucherify"])
    value = headers["x-voucherify-signature"]
    code, events, err = run(
        capsys,
        "decode",
        "--provider",
        "voucherify",
        "--header",
        f"X-VOUCHERIFY-SIGNATURE:   {value}   ",
        str(path),
    )
    assert (code, err, len(events)) == (0, [], 1)


def test_header_value_may_contain_colons(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only the first colon separates: a value with colons reaches the provider whole, so a
    # "sha256=<hex>" style value or a URL is not cut.
    body, headers = signed("gameball", "v4_profile_updated", tmp_path)
    code, _, err = run(
        capsys,
        "decode",
        "--provider",
        "gameball",
        "--header",
        "X-GB-Signature: a:b:c",
        str(body),
    )
    assert_refused(code, err, 3, "does not match")
    assert main(["decode", "--provider", "gameball", *headers, str(body)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("bad", ["no-colon-here", ": value-without-name"])
def test_malformed_header_is_a_usage_error(
    bad: str, no_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = FIXTURES / "gameball" / "v4_profile_updated.json"
    with pytest.raises(SystemExit) as exc:
        main(["decode", "--provider", "gameball", "--header", bad, "--no-verify", str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "expected 'Name: value'" in err and "Traceback" not in err


def test_unknown_provider_lists_the_valid_ones(
    no_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["decode", "--provider", "shopify", "--no-verify", "-"])
    err = capsys.readouterr().err
    assert all(key in err for key in PROVIDERS)


# --- a real process ---------------------------------------------------------------------------


def test_real_process_refuses_a_forgery_with_exit_3_and_one_stderr_line(tmp_path: Path) -> None:
    """`python -m connector decode` as a child process, body on stdin, forged signature."""
    body, headers = signed("voucherify", "tier_upgraded", tmp_path)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    child_env.update(test_env())
    forged = _header(headers, "x-voucherify-signature", "ab" * 32)
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "decode", "--provider", "voucherify", *forged, "-"],
        input=body.read_bytes(),
        capture_output=True,
        env=child_env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 3, stderr
    assert proc.stdout == b""
    assert stderr.splitlines() == [
        "error: verification failed: x-voucherify-signature does not match the body"
    ]


# --- payloads from the providers' public docs, as a new user would try them --------------------


def test_doc_payloads_not_in_the_original_fixtures_decode_sensibly(
    no_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Doc samples added for this check (sources in each fixture folder's README.md)."""

    def decode(key: str, name: str) -> list[dict[str, Any]]:
        code, events, err = run(
            capsys, "decode", "--provider", key, "--no-verify", str(FIXTURES / key / name)
        )
        assert (code, err) == (0, [])
        for event in events:
            assert_canonical(event)
        return events

    [published] = decode("voucherify", "doc_project_settings_voucher_published.json")
    assert published["type"] == "OTHER" and published["provider_event_type"] == "voucher.published"
    assert published["customer_id"] == "cust_ID" and published["event_id"] == "evvou_ID"
    assert published["occurred_at"] == "2025-10-16T16:03:23.071Z"
    assert published["attributes"]["voucher_code"] == "kUs7oM-cOD3"

    [redeemed] = decode("voucherify", "doc_openapi_redemption_succeeded.json")
    assert redeemed["type"] == "REWARD_REDEEMED"
    assert redeemed["customer_id"] == "cust_1g637SqVZnkdPNdAIZ7Ra879"
    assert redeemed["order"] == {
        "id": "ord_3VYCHwdV0YOOch2nm1RsTKNI",
        "amount_minor": 7000,
        "currency": None,
    }
    assert redeemed["points_delta"] is None  # a voucher redemption moves no points

    [notification] = decode("gameball", "v3_doc_notifications_webhook.json")
    assert notification["type"] == "NOTIFICATION"
    assert notification["customer_id"] == "testwebhook@gameball.co"
    assert notification["attributes"]["locales"] == "en,fr"
    assert notification["attributes"]["title.fr"] == "Félicitations"

    assert decode("wix", "doc_earning_rule_created.json") == []  # about no member


def test_voucherify_doc_data_object_alone_is_refused_with_a_pointer_to_the_envelope(
    no_secrets: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The OpenAPI examples document only `data`; pasted as is, it is not a delivery.
    envelope = json.loads(
        (FIXTURES / "voucherify" / "doc_openapi_redemption_succeeded.json").read_text()
    )
    path = tmp_path / "data-only.json"
    path.write_text(json.dumps(envelope["data"]))
    code, _, err = run(capsys, "decode", "--provider", "voucherify", "--no-verify", str(path))
    assert_refused(code, err, 2, "v2024-01-01")
