"""The pipeline benchmark's webhooks: signed bodies of all four providers in the fixture shapes,
as raw-topic records (benchmarks/pipeline.py)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector import raw
from connector.kit import payloads
from connector.providers import PROVIDERS, DecodeContext

RESULTS = Path(__file__).resolve().parent / "results"
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


def uid(*parts: object) -> str:
    return str(uuid.uuid5(NS, ":".join(str(p) for p in parts)))


def payload(provider: str, run: str, member: int, seq: int, wix_site: str) -> dict[str, Any]:
    """The seq-th webhook (0-based) of one member: valid, distinct, newer than the previous.

    Amounts depend on member and seq; snapshots (Gameball, Wix) grow and carry a newer time or
    revision, so each derives a movement; deltas (Open Loyalty, Voucherify) carry fresh
    movement ids, so none is deduplicated away.
    """
    at = _iso(BASE_TIME + timedelta(minutes=seq, seconds=member % 60))
    step = 5 + (member * 7 + seq * 3) % 50
    total = sum(5 + (member * 7 + k * 3) % 50 for k in range(seq + 1))
    if provider == "gameball":
        return payloads.gb_profile(
            f"gb-{run}-{member}",
            at,
            activated=total,
            pending=seq % 3,
            tier="gold" if seq >= 5 else "basic",
            tier_order=2 if seq >= 5 else 1,
        )
    if provider == "open_loyalty":
        customer = uid("ol", run, member)
        transfer = uid("olt", run, member, seq)
        if seq % 2 == 0:
            return payloads.ol_points_transfer(customer, transfer, step, at)
        return payloads.ol_points_changed(customer, transfer, step, "add", total, at)
    if provider == "voucherify":
        customer = f"cust_{run}{member}"
        event_id, tx = f"evvou_{run}{member}x{seq}", f"vtx_{run}{member}x{seq}"
        make = payloads.vf_transaction_created if seq % 2 == 0 else payloads.vf_points_added
        return make(customer, event_id, tx, "POINTS_ADDITION", step, total, at)
    if provider == "wix":
        kind = "account_points_updated" if seq % 2 == 0 else "account_updated"
        return payloads.wix_account(
            f"wix.loyalty.v1.{kind}",
            wix_site,
            uid("wix", run, member),
            uid("wixe", run, member, seq),
            at,
            revision=seq + 1,
            balance=total,
            earned=total,
        )
    raise ValueError(provider)


def delivery(
    provider: str,
    run: str,
    member: int,
    seq: int,
    wix_site: str,
    secrets: dict[str, dict[str, str]],
) -> payloads.Delivery:
    """`payload` signed as the provider would send it (exact bytes and headers; Wix: an RS256
    JWT) with `secrets` (`bench_secrets`)."""
    body = payload(provider, run, member, seq, wix_site)
    return payloads.sign(provider, body, secrets=secrets[provider])


def kafka_record(
    provider: str, body: bytes, http_headers: dict[str, str]
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(key, headers) of the raw record the bridge would write for this delivery."""
    request_id = uuid.uuid4().hex
    p = PROVIDERS[provider]
    lower = {k.lower(): v for k, v in http_headers.items()}
    key = p.delivery_id(body, lower) or request_id
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
    """The providers' test secrets (one Wix key pair per run), shared with children through a
    file."""
    path = work / "secrets.json"
    if path.exists():
        data: dict[str, dict[str, str]] = json.loads(path.read_text())
        return data
    secrets = payloads.secrets()
    path.write_text(json.dumps(secrets))
    return secrets


def bridge_secret_env() -> dict[str, str]:
    """The bridge's CONNECTOR_* secrets: the providers' test secrets, which `bench_secrets`
    signs with."""
    return payloads.secret_env()


def balance_key_of(provider: str, body: bytes, headers: dict[str, str]) -> str:
    """The balances-topic key of a delivery's first event: its account key (a Voucherify
    member's balance is kept per loyalty card: `voucherify:default/camp_loyalty:cust_…`)."""
    lower = {k.lower(): v for k, v in headers.items()}
    return PROVIDERS[provider].decode(body, lower, DecodeContext())[0].account_key


def member_key_of(provider: str, body: bytes, headers: dict[str, str]) -> list[str]:
    """Member keys of the events a delivery decodes to (checks the body is valid, too)."""
    lower = {k.lower(): v for k, v in headers.items()}
    events = PROVIDERS[provider].decode(body, lower, DecodeContext())
    return [e.member_key for e in events]


def records_setup(n: int, members: int, per_provider: dict[str, int]) -> dict[str, Any]:
    """What a result file's `setup` says about the raw records (`make_raw_records`)."""
    return {
        "partitions": PARTITIONS,
        "raw_records": n,
        "members": members,
        "per_provider": per_provider,
    }


def make_raw_records(
    n: int, members: int, run: str, secrets: dict[str, dict[str, str]]
) -> tuple[list[tuple[bytes, bytes, list[tuple[str, bytes]]]], dict[str, int]]:
    wix_site = uid("site", run)
    records = []
    per_provider = dict.fromkeys(PROVIDER_ORDER, 0)
    checked = dict.fromkeys(PROVIDER_ORDER, 0)
    for r in range(n):
        member, seq = r % members, r // members
        provider = PROVIDER_ORDER[member % len(PROVIDER_ORDER)]
        d = delivery(provider, run, member, seq, wix_site, secrets)
        body, headers = d.body, d.headers
        if checked[provider] < 40:  # a sample of each provider must decode to events
            checked[provider] += 1
            if not member_key_of(provider, body, headers):
                raise SystemExit(f"generated {provider} body decodes to no event: {body[:300]!r}")
        key, kafka_headers = kafka_record(provider, body, headers)
        records.append((key, body, kafka_headers))
        per_provider[provider] += 1
    return records, per_provider
