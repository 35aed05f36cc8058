"""The worker's web views: the member query (routed to the key's owner), health, readiness and
metrics."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from faust.exceptions import SameNode
from faust.tables import TableManager
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable
from prometheus_client import generate_latest

from connector.domain.ledger import MemberState
from connector.models import ACCOUNT_RE, account_key, json_time, to_json_obj
from connector.streams.members import Members
from connector.streams.partitioner import CachedPartitioner
from connector.streams.state_format import record_key

if TYPE_CHECKING:
    from connector.streams.app import ConnectorApp


def register_views(connector: ConnectorApp) -> None:
    """Add `/members/...`, `/healthz`, `/readyz` and `/metrics` to `connector.app`."""
    app, metrics = connector.app, connector.metrics
    table = connector.members
    members = Members(app, table)

    settings = connector.settings
    auth = BearerAuth(settings.api_tokens)
    freshness = connector.freshness
    partitions = list(range(settings.partitions))
    partitioner = CachedPartitioner()
    max_wait = settings.query_max_wait_ms

    @app.page("/members/{provider}/{tenant}/{customer_id}")
    class MemberView(View):
        async def get(
            self, request: Request, provider: str, tenant: str, customer_id: str
        ) -> Response:
            # Authentication first: a refused request learns nothing about the member.
            if not auth.allows(request.headers.get("Authorization")):
                return unauthorized(self)
            key = f"{provider}:{tenant}:{customer_id}"
            account = request.query.get("account")
            if account is not None and not ACCOUNT_RE.match(account):
                return self.json({"error": f"account {account[:80]!r} is not valid"}, status=400)
            try:
                wait = freshness_query(request.query, max_wait)
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            try:
                # Faust's table routing: answered here if we own the key's partition, else
                # proxied to the worker that does. All of a member's accounts live in the
                # partition of its member key (the events topic's key).
                return await app.router.route_req(table.name, record_key(key), self.web, request)
            except SameNode:
                pass
            except ServiceUnavailable:
                return self.json({"error": "members table is rebalancing; retry"}, status=503)
            if wait is not None:
                # Read-your-writes: the member's events partition (where its records live:
                # the partition its member key goes to) must have applied `min_offset`.
                min_offset, wait_ms = wait
                partition = partitioner(key.encode(), partitions, partitions)
                if not member_has_applied(members, key, min_offset) and not await freshness.wait(
                    partition, min_offset, wait_ms / 1000
                ):
                    applied = freshness.applied_offset(partition)
                    return self.json(
                        {
                            "error": f"events partition {partition} has not applied offset "
                            f"{min_offset} within {wait_ms} ms; retry",
                            "partition": partition,
                            "min_offset": min_offset,
                            "applied_offset": applied,
                        },
                        status=504,
                    )
            default = members.lookup(key)
            if default is None:
                erased = members.lookup_erasure(key)
                if erased is not None:
                    return self.json(
                        {
                            "error": f"member {key} was erased",
                            "erased_at": json_time(erased.erased_at),
                            "reason": erased.reason.value,
                        },
                        status=410,
                    )
                return self.json({"error": f"unknown member {key}"}, status=404)
            accounts = [default] if default.events_applied else []
            for other in default.accounts:
                state = members.lookup(account_key(key, other))
                if state is not None:
                    accounts.append(state)
            if account is not None:
                chosen = [a for a in accounts if a.account_id == account]
                if not chosen:
                    known = ", ".join(a.account_id for a in accounts)
                    return self.json(
                        {"error": f"member {key} has no account {account!r}; accounts: {known}"},
                        status=404,
                    )
                return self.json(account_json(chosen[0]))
            return self.json(member_json(default, accounts))

    @app.page("/healthz")
    async def healthz(view: View, request: Request) -> Response:
        return view.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(view: View, request: Request) -> Response:
        recovery = cast(TableManager, app.tables).recovery
        ready = not app.rebalancing and recovery.completed.is_set()
        return view.json(
            {"status": "ready" if ready else "recovering"}, status=200 if ready else 503
        )

    metrics_auth = auth if settings.api_auth_metrics else BearerAuth(())

    @app.page("/metrics")
    async def metrics_page(view: View, request: Request) -> Response:
        if not metrics_auth.allows(request.headers.get("Authorization")):
            return unauthorized(view)
        return view.bytes(
            generate_latest(metrics.registry), content_type="text/plain; version=0.0.4"
        )


def member_has_applied(members: Members, key: str, offset: int) -> bool:
    """True when one of the member's own records was written by events offset `offset` or a
    later one (a partition idle since this worker took it over has no applied offset yet)."""
    default = members.lookup(key)
    if default is None:
        return False
    states = [default] + [members.lookup(account_key(key, a)) for a in default.accounts]
    return any(s is not None and (s.source_offset or -1) >= offset for s in states)


class BearerAuth:
    """Bearer tokens (RFC 6750) checked in constant time; no tokens: every request passes."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(t.encode() for t in tokens)

    def __repr__(self) -> str:  # never the tokens
        return f"BearerAuth({len(self._tokens)} token(s))"

    def allows(self, authorization: str | None) -> bool:
        if not self._tokens:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        presented = given.strip().encode()
        # compare with every token (no early exit: the time does not say which one matched)
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(presented, token)
        return matched and scheme.lower() == "bearer"


def unauthorized(view: View) -> Response:
    response = view.json({"error": "a valid bearer token is required"}, status=401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="loyalty-connector"'
    return response


def freshness_query(query: Mapping[str, str], max_wait_ms: int) -> tuple[int, int] | None:
    """(`min_offset`, `wait_ms`) of a member query, or None without `min_offset`."""
    raw = query.get("min_offset")
    if raw is None:
        if "wait_ms" in query:
            raise ValueError("wait_ms is only meaningful with min_offset")
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise ValueError(f"min_offset must be an offset (0 or more), got {raw[:40]!r}")
    wait_raw = query.get("wait_ms", str(min(DEFAULT_WAIT_MS, max_wait_ms)))
    if not wait_raw.isdigit() or int(wait_raw) > max_wait_ms:
        raise ValueError(
            f"wait_ms must be 0..{max_wait_ms} (CONNECTOR_QUERY_MAX_WAIT_MS), got {wait_raw[:40]!r}"
        )
    return int(raw), int(wait_raw)


DEFAULT_WAIT_MS = 5000


def account_json(state: MemberState) -> dict[str, Any]:
    """One account's figures: its MemberBalance fields (balance, counters, drift, tier,
    freshness: `updated_at`, `as_of`, `events_applied`)."""
    return to_json_obj(state.to_balance())


def member_json(default: MemberState, accounts: list[MemberState]) -> dict[str, Any]:
    """The member query's answer: the member's primary account's figures at the top level (the
    single-account answer, as before accounts existed: the default account, else the first
    account that moved), and every account under `accounts`.

    Points of different accounts are never added up: two loyalty programs' cards or two
    wallets hold different currencies.
    """
    if not accounts:  # an index-only record with no account left
        return account_json(default) | {"accounts": []}
    primary = accounts[0]
    return account_json(primary) | {"accounts": [account_json(a) for a in accounts]}
