"""The worker's web views: the member query (routed to the key's owner), health, readiness and
metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from faust.exceptions import SameNode
from faust.tables import TableManager
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable
from prometheus_client import generate_latest

from connector.domain.ledger import MemberState
from connector.models import ACCOUNT_RE, account_key, to_json_obj
from connector.streams.members import Members
from connector.streams.state_format import record_key

if TYPE_CHECKING:
    from connector.streams.app import ConnectorApp


def register_views(connector: ConnectorApp) -> None:
    """Add `/members/...`, `/healthz`, `/readyz` and `/metrics` to `connector.app`."""
    app, metrics = connector.app, connector.metrics
    table = connector.members
    members = Members(app, table)

    @app.page("/members/{provider}/{tenant}/{customer_id}")
    class MemberView(View):
        async def get(
            self, request: Request, provider: str, tenant: str, customer_id: str
        ) -> Response:
            key = f"{provider}:{tenant}:{customer_id}"
            account = request.query.get("account")
            if account is not None and not ACCOUNT_RE.match(account):
                return self.json({"error": f"account {account[:80]!r} is not valid"}, status=400)
            try:
                # Faust's table routing: answered here if we own the key's partition, else
                # proxied to the worker that does. All of a member's accounts live in the
                # partition of its member key (the events topic's key).
                return await app.router.route_req(table.name, record_key(key), self.web, request)
            except SameNode:
                pass
            except ServiceUnavailable:
                return self.json({"error": "members table is rebalancing; retry"}, status=503)
            default = members.lookup(key)
            if default is None:
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

    @app.page("/metrics")
    async def metrics_page(view: View, request: Request) -> Response:
        return view.bytes(
            generate_latest(metrics.registry), content_type="text/plain; version=0.0.4"
        )


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
