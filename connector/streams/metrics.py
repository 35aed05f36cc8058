"""The worker's Prometheus metrics (served on the worker's `/metrics`, see views.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.raw = Counter("worker_raw_records_total", "Raw webhooks normalized", registry=r)
        self.events = Counter(
            "worker_events_total", "Canonical events by type", ["type"], registry=r
        )
        self.dead_letters = Counter(
            "worker_dead_letters_total", "Dead letters by stage", ["stage"], registry=r
        )
        self.duplicates = Counter(
            "worker_duplicate_events_total", "Events already applied (no effect)", registry=r
        )
        self.beyond_horizon = Counter(
            "worker_beyond_dedupe_horizon_total",
            "Events not in the dedupe memory but as old as events it forgot: taken as "
            "redeliveries (also counted as duplicates); grows: raise CONNECTOR_DEDUPE_MEMORY",
            registry=r,
        )
        self.beyond_movement_horizon = Counter(
            "worker_beyond_movement_horizon_total",
            "Of those, events naming a movement whose key the movement memory forgot too: "
            "taken as a twin or redelivery of a forgotten movement and not booked again (lost, "
            "if it was new); grows: raise CONNECTOR_DEDUPE_MEMORY",
            registry=r,
        )
        self.entries = Counter(
            "worker_ledger_entries_total", "Ledger entries by origin", ["origin"], registry=r
        )
        self.erased_members = Counter(
            "worker_erased_members_total",
            "Members erased (records deleted, balances and tiers tombstoned) by reason",
            ["reason"],
            registry=r,
        )
        self.erased_events = Counter(
            "worker_erased_member_events_total",
            "Events for an erased member, dropped (late retries; docs/erasure.md)",
            registry=r,
        )
        self.reregistered = Counter(
            "worker_reregistered_members_total",
            "Erased members registered again after their erasure (fresh records)",
            registry=r,
        )
        self.lag = Histogram(
            "worker_event_age_seconds",
            "Webhook received → balance written",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
