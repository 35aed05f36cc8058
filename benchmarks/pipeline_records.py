"""The pipeline benchmark's webhooks: signed bodies of all four providers in the fixture shapes,
as raw-topic records (benchmarks/pipeline.py)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connector.providers import PROVIDERS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PROVIDER_ORDER = ("gameball", "open_loyalty", "voucherify", "wix")
PARTITIONS = 8
TARGET_SHARE_OF_CEILING = 0.50
TARGET_P99_MS = 250.0
TARGET_RECOVERY_PER_S = 50_000
# The worker's peers (benchmarks/peers/): name -> (script, extra arguments, topic prefix tag)
PEERS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "quix": ("quix_worker.py", (), "q"),
    "quix_eos": ("quix_worker.py", ("--exactly-once",), "qe"),
    "plain": ("plain_worker.py", (), "p"),
}
PEER_LABELS = {
    "worker": "our Faust worker",
    "quix": "Quix Streams\n(at-least-once)",
    "quix_eos": "Quix Streams\n(exactly-once)",
    "plain": "plain aiokafka\n+ rocksdict",
}
# MemberBalance fields that must end equal whatever the engine. Left out: times, the last event's
# id and `events_applied`: a balances record is written when the balance changes, so the last
# one's count and id depend on the order a member's events arrived in (its raw records sit on
# several partitions), not on the work done; the applied totals are compared separately.
BALANCE_FIELDS = (
    "balance",
    "computed_balance",
    "reported_balance",
    "pending_points",
    "lifetime_earned",
    "lifetime_redeemed",
    "lifetime_expired",
    "lifetime_adjusted",
    "drift",
    "tier",
)
BASE_TIME = datetime(2025, 3, 1, tzinfo=UTC)
NS = uuid.UUID("6f1c1f3e-3b7e-4f0e-9a55-0c0ffee0b3c4")


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uid(*parts: object) -> str:
    return str(uuid.uuid5(NS, ":".join(str(p) for p in parts)))


def payload(provider: str, run: str, member: int, seq: int, wix_site: str) -> dict[str, Any]:
    """The seq-th webhook (0-based) of one member: valid, distinct, newer than the previous.

    Amounts depend on member and seq; snapshots (Gameball, Wix) grow and carry a newer time or
    revision, so each derives a movement; deltas (Open Loyalty, Voucherify) carry fresh
    movement ids, so none is deduplicated away.
    """
    from tests.integration import harness as h

    at = _iso(BASE_TIME + timedelta(minutes=seq, seconds=member % 60))
    step = 5 + (member * 7 + seq * 3) % 50
    total = sum(5 + (member * 7 + k * 3) % 50 for k in range(seq + 1))
    if provider == "gameball":
        return h.gb_profile(
            f"gb-{run}-{member}",
            at,
            activated=total,
            pending=seq % 3,
            tier="gold" if seq >= 5 else "basic",
            tier_order=2 if seq >= 5 else 1,
        )
    if provider == "open_loyalty":
        customer = _uid("ol", run, member)
        transfer = _uid("olt", run, member, seq)
        if seq % 2 == 0:
            return h.ol_points_transfer(customer, transfer, step, at)
        return h.ol_points_changed(customer, transfer, step, "add", total, at)
    if provider == "voucherify":
        customer = f"cust_{run}{member}"
        event_id, tx = f"evvou_{run}{member}x{seq}", f"vtx_{run}{member}x{seq}"
        make = h.vf_transaction_created if seq % 2 == 0 else h.vf_points_added
        return make(customer, event_id, tx, "POINTS_ADDITION", step, total, at)
    if provider == "wix":
        kind = "account_points_updated" if seq % 2 == 0 else "account_updated"
        return h.wix_account(
            f"wix.loyalty.v1.{kind}",
            wix_site,
            _uid("wix", run, member),
            _uid("wixe", run, member, seq),
            at,
            revision=seq + 1,
            balance=total,
            earned=total,
        )
    raise ValueError(provider)


def signed(
    provider: str, body: dict[str, Any], secrets: dict[str, dict[str, str]]
) -> tuple[bytes, dict[str, str]]:
    """Exact bytes and HTTP headers as the provider would send them (Wix: an RS256 JWT)."""
    return PROVIDERS[provider].sign(json.dumps(body).encode(), secrets[provider])


def kafka_record(
    provider: str, body: bytes, http_headers: dict[str, str]
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(key, headers) of the raw record the bridge would write for this delivery."""
    request_id = uuid.uuid4().hex
    p = PROVIDERS[provider]
    lower = {k.lower(): v for k, v in http_headers.items()}
    key = p.delivery_id(body, lower) or request_id
    from connector import raw

    headers = raw.raw_headers(
        provider=provider,
        tenant=None,
        received_ms=int(time.time() * 1000),
        request_id=request_id,
        content_type=lower.get("content-type", ""),
        verified=True,
        kept=[(n, lower[n.lower()]) for n in p.kept_headers if n.lower() in lower],
    )
    return key.encode(), headers


def bench_secrets(work: Path) -> dict[str, dict[str, str]]:
    """The test secrets (one Wix key pair per run), shared with children through a file."""
    path = work / "secrets.json"
    if path.exists():
        data: dict[str, dict[str, str]] = json.loads(path.read_text())
        return data
    from tests.support import test_secrets

    secrets = test_secrets()
    path.write_text(json.dumps(secrets))
    return secrets


def bridge_secret_env() -> dict[str, str]:
    """The bridge's CONNECTOR_* secrets: the test suite's, the ones `bench_secrets` signs with."""
    from tests.support import test_env

    return test_env()


def balance_key_of(provider: str, body: bytes, headers: dict[str, str]) -> str:
    """The balances-topic key of a delivery's first event: its account key (a Voucherify
    member's balance is kept per loyalty card: `voucherify:default/camp_loyalty:cust_…`)."""
    from connector.providers import DecodeContext

    lower = {k.lower(): v for k, v in headers.items()}
    return PROVIDERS[provider].decode(body, lower, DecodeContext())[0].account_key


def member_key_of(provider: str, body: bytes, headers: dict[str, str]) -> list[str]:
    """Member keys of the events a delivery decodes to (checks the body is valid, too)."""
    from connector.providers import DecodeContext

    lower = {k.lower(): v for k, v in headers.items()}
    events = PROVIDERS[provider].decode(body, lower, DecodeContext())
    return [e.member_key for e in events]


def make_raw_records(
    n: int, members: int, run: str, secrets: dict[str, dict[str, str]]
) -> tuple[list[tuple[bytes, bytes, list[tuple[str, bytes]]]], dict[str, int]]:
    wix_site = _uid("site", run)
    records = []
    per_provider = dict.fromkeys(PROVIDER_ORDER, 0)
    checked = dict.fromkeys(PROVIDER_ORDER, 0)
    for r in range(n):
        member, seq = r % members, r // members
        provider = PROVIDER_ORDER[member % len(PROVIDER_ORDER)]
        body, headers = signed(provider, payload(provider, run, member, seq, wix_site), secrets)
        if checked[provider] < 40:  # a sample of each provider must decode to events
            checked[provider] += 1
            if not member_key_of(provider, body, headers):
                raise SystemExit(f"generated {provider} body decodes to no event: {body[:300]!r}")
        key, kafka_headers = kafka_record(provider, body, headers)
        records.append((key, body, kafka_headers))
        per_provider[provider] += 1
    return records, per_provider
