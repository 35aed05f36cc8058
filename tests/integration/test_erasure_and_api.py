"""Member erasure and the member API's safety, on real Apache Kafka through bridge and workers.

Erasure: a Voucherify `customer.deleted`, a Wix delivery with `triggeredByAnonymizeRequest`,
and the operator's `loyalty-connector forget` each delete the member's table records
(changelog tombstones), tombstone its balances and tiers records, and make the member query
answer 410 with the time of erasure; a late event for an erased member is dropped and counted,
it does not bring the member back. CONNECTOR_REDACT_ATTRIBUTES keeps e-mail addresses out of
the events topic.

API: bearer tokens from a file, 401 that says nothing about the member, the token kept when a
query is proxied to the worker owning the member, `?min_offset=` read-your-writes through the
other worker, 504 with the freshness when it cannot be met, Faust's /table pages off.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from connector.models import LoyaltyEvent, account_key
from connector.streams.state_format import erasure_key
from tests.integration.harness import (
    Harness,
    _read_topic,
    _vf_customer,
    gb_profile,
    latest_by_key,
    partition_of,
    sign,
    vf_points_added,
    wait_until,
    wix_account,
)

TOKEN = "test-token-0123456789abcdef"
OTHER_TOKEN = "other-token-0123456789abcdef"


def get(url: str, token: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    async def run() -> tuple[int, dict[str, Any], dict[str, str]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            async with http.get(url, headers=headers) as resp:
                text = await resp.text()
                try:
                    body = json.loads(text)
                except json.JSONDecodeError:
                    body = {"text": text}
                return resp.status, body, dict(resp.headers)

    return asyncio.run(run())


def vf_deleted(customer: str, event_id: str, at: str) -> dict[str, Any]:
    """Voucherify project webhook `customer.deleted` (docs/providers.md, Voucherify events)."""
    return {
        "id": f"whs_{event_id}",
        "project_id": "proj_test",
        "created_at": at,
        "type": "Customer deleted",
        "data": {"customer": _vf_customer(customer)},
        "event": {
            "id": event_id,
            "type": "customer.deleted",
            "created_at": at,
            "entity_id": customer,
        },
    }


def test_erasure_deletes_tombstones_answers_410_and_is_not_undone_by_late_events(
    h: Harness,
) -> None:
    worker = h.start_worker(CONNECTOR_REDACT_ATTRIBUTES="email,phone")
    bridge = h.start_bridge()
    vf, wix, gb = "cust_del", "wix-anon", "gb-forget"
    h.send(
        bridge,
        [
            # a Voucherify customer with two cards (two accounts) ...
            sign(
                "voucherify",
                vf_points_added(
                    vf, "ev1", "vtx_1", "POINTS_ACCRUAL", 50, 50, "2024-05-01T10:00:00Z"
                ),
            ),
            sign(
                "voucherify",
                vf_points_added(
                    vf,
                    "ev2",
                    "vtx_2",
                    "POINTS_ACCRUAL",
                    7,
                    7,
                    "2024-05-01T10:01:00Z",
                    campaign="camp_other",
                    card="v_other",
                ),
            ),
            sign(
                "wix",
                wix_account(
                    "wix.loyalty.v1.account_updated",
                    "site-1",
                    wix,
                    "wx-1",
                    "2024-05-01T10:00:00Z",
                    revision=1,
                    balance=40,
                    earned=40,
                ),
                tenant="site-1",
            ),
            sign(
                "gameball",
                gb_profile(
                    gb, "2024-05-01T10:00:00Z", activated=30, pending=0, tier="basic", tier_order=1
                ),
            ),
        ],
    )
    h.wait_member(worker, "voucherify", "default", vf, lambda b: len(b["accounts"]) == 2)
    h.wait_member(worker, "wix", "site-1", wix, lambda b: b["balance"] == 40)
    h.wait_member(worker, "gameball", "default", gb, lambda b: b["balance"] == 30)

    # the e-mail address Gameball sends never reaches the events topic
    events = [r.value for r in h.read("events")]
    assert any(e.member_key == f"gameball:default:{gb}" for e in events)
    assert all("email" not in e.attributes for e in events if isinstance(e, LoyaltyEvent))

    anonymize = wix_account(
        "wix.loyalty.v1.account_updated",
        "site-1",
        wix,
        "wx-2",
        "2024-05-02T10:00:00Z",
        revision=2,
        balance=0,
    )
    anonymize["data"]["triggeredByAnonymizeRequest"] = True
    h.send(
        bridge,
        [
            sign("voucherify", vf_deleted(vf, "evdel_1", "2024-05-02T10:00:00Z")),
            sign("wix", anonymize, tenant="site-1"),
        ],
    )
    forgot = h.cli("forget", "gameball", "default", gb)
    assert forgot.returncode == 0, forgot.stderr
    written = json.loads(forgot.stdout)
    assert written["member_key"] == f"gameball:default:{gb}"
    assert written["topic"] == h.topic("events")

    members = {
        "voucherify": ("default", vf, "customer_deleted"),
        "wix": ("site-1", wix, "anonymize_request"),
        "gameball": ("default", gb, "forget"),
    }

    def erased(provider: str) -> dict[str, Any] | None:
        tenant, customer, _ = members[provider]
        status, body, _ = get(f"{worker.url}/members/{provider}/{tenant}/{customer}")
        return body if status == 410 else None

    for provider, (_, _, reason) in members.items():
        body = wait_until(
            lambda p=provider: erased(p), 60, f"{provider} member erased", on_timeout=h.logs
        )
        assert body["reason"] == reason
        assert body["erased_at"].startswith("20")
    # an unknown member is still 404, not 410
    status, _, _ = get(f"{worker.url}/members/gameball/default/never-seen")
    assert status == 404
    # the members CLI says so too
    out = h.cli("members", "gameball", "default", gb, "--url", worker.url)
    assert out.returncode == 1 and "erased" in out.stderr

    vf_key = f"voucherify:default:{vf}"
    keys = {
        account_key(vf_key, "camp_loyalty"),
        account_key(vf_key, "camp_other"),
        f"wix:site-1:{wix}",
        f"gameball:default:{gb}",
    }
    h.wait_caught_up()
    balances = latest_by_key(h.read("balances"))
    tiers = latest_by_key(h.read("tiers"))
    for k in keys:
        assert k in balances and balances[k] is None, (k, balances.get(k))
        assert k in tiers and tiers[k] is None, k
    changelog = latest_by_key(
        asyncio.run(
            _read_topic(h.bootstrap, f"{h.app_id}-members-changelog", False, "read_committed", 30)
        )
    )
    for k in keys | {vf_key}:
        assert changelog.get(k, None) is None, k
    for mk in (vf_key, f"wix:site-1:{wix}", f"gameball:default:{gb}"):
        marker = changelog[erasure_key(mk).decode()]
        assert marker is not None and mk.encode() not in marker and b"cust_" not in marker

    # a late delivery for the erased Voucherify customer (a provider retry of an older event)
    dropped_before = h.metric(worker, "worker_erased_member_events_total")
    h.send(
        bridge,
        [
            sign(
                "voucherify",
                vf_points_added(
                    vf, "ev3", "vtx_3", "POINTS_ACCRUAL", 5, 55, "2024-05-01T10:02:00Z"
                ),
            )
        ],
    )
    h.wait_caught_up()
    assert h.metric(worker, "worker_erased_member_events_total") >= dropped_before + 1
    assert erased("voucherify") is not None
    balances = latest_by_key(h.read("balances"))
    assert balances[account_key(vf_key, "camp_loyalty")] is None
    assert h.metric(worker, "worker_erased_members_total") == 3


def test_tokens_proxying_read_your_writes_and_no_table_pages(h: Harness, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# member API tokens\n{TOKEN}\n{OTHER_TOKEN}  # the second client\n")
    tokens.chmod(0o600)
    env = {"CONNECTOR_API_TOKENS_FILE": str(tokens), "CONNECTOR_STANDBY_REPLICAS": "0"}
    h.base_env.update(env)  # workers and the members CLI
    a = h.start_worker("worker-a")
    b = h.start_worker("worker-b")
    bridge = h.start_bridge()

    def routes_settled() -> dict[str, list[int]] | None:
        routes = h.routes(a)
        owned = sorted(p for ps in routes.values() for p in ps)
        return routes if len(routes) == 2 and owned == [0, 1] else None

    routes = wait_until(
        routes_settled, 90, "both workers own a members partition", on_timeout=h.logs
    )
    h.wait_ready(a)
    h.wait_ready(b)
    # a Gameball customer whose partition worker B owns: asked at worker A, proxied to B
    owned_by_b = routes.get(b.url)
    assert owned_by_b is not None, routes
    customer = next(
        c
        for i in range(200)
        if partition_of(f"gameball:default:{(c := f'gb-{i}')}", 2) in owned_by_b
    )
    h.send(
        bridge,
        [
            sign(
                "gameball",
                gb_profile(
                    customer,
                    "2024-05-01T10:00:00Z",
                    activated=10,
                    pending=0,
                    tier="basic",
                    tier_order=1,
                ),
            )
        ],
    )
    url = f"{a.url}/members/gameball/default/{customer}"
    unknown = f"{a.url}/members/gameball/default/nobody-at-all"

    # no token, a wrong token, another scheme: 401, the same answer for a known and an unknown
    # member, with the challenge header
    for target in (url, unknown):
        for token in (None, "wrong-token-0123456789abcdef"):
            status, body, headers = get(target, token)
            assert status == 401, (target, status, body)
            assert body == {"error": "a valid bearer token is required"}
            assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    # health and readiness stay open; /metrics too unless CONNECTOR_API_AUTH_METRICS
    assert get(f"{a.url}/healthz")[0] == 200
    assert get(f"{a.url}/metrics")[0] == 200
    # Faust's table pages do not serve table data
    assert get(f"{a.url}/table/members/")[0] == 404
    assert get(f"{a.url}/table/members/{customer}/")[0] == 404

    def seen() -> dict[str, Any] | None:
        status, body, _ = get(url, OTHER_TOKEN)
        return body if status == 200 else None

    body = wait_until(
        seen, 60, "the member through worker A with the second token", on_timeout=h.logs
    )
    assert body["balance"] == 10

    # read-your-writes: write a second profile, find its events record, and ask worker A (not
    # the owner) for the member at that offset at once; the proxied request keeps the wait
    h.send(
        bridge,
        [
            sign(
                "gameball",
                gb_profile(
                    customer,
                    "2024-05-01T11:00:00Z",
                    activated=25,
                    pending=0,
                    tier="basic",
                    tier_order=1,
                ),
            )
        ],
    )
    mk = f"gameball:default:{customer}"

    def events_offset() -> int | None:
        records = [r for r in h.read("events") if r.key == mk]
        return records[-1].offset if len(records) >= 2 else None

    offset = wait_until(events_offset, 30, "the second event on the events topic")
    status, body, _ = get(f"{url}?min_offset={offset}&wait_ms=10000", TOKEN)
    assert status == 200, body
    assert body["balance"] == 25 and body["source_offset"] >= offset
    # an offset no one will write soon: 504 with the current freshness, within the wait
    status, body, _ = get(f"{url}?min_offset={offset + 10_000}&wait_ms=300", TOKEN)
    assert status == 504, body
    assert body["min_offset"] == offset + 10_000 and body["applied_offset"] >= offset
    # bad freshness parameters: 400
    assert get(f"{url}?min_offset=-1", TOKEN)[0] == 400
    assert get(f"{url}?min_offset=1&wait_ms=999999", TOKEN)[0] == 400
    # the CLI sends the file's first token
    out = h.cli(
        "members", "gameball", "default", customer, "--url", a.url, "--min-offset", str(offset)
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["balance"] == 25
