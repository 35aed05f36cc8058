"""Topic names, defined once. A configurable prefix replaces the leading `loyalty.`."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "loyalty"


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = DEFAULT_PREFIX

    @property
    def raw(self) -> str:
        """Exact request bodies of accepted webhooks: the system of record."""
        return f"{self.prefix}.webhooks.raw"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.webhooks.dlq"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def ledger(self) -> str:
        return f"{self.prefix}.ledger"

    @property
    def balances(self) -> str:
        return f"{self.prefix}.balances"

    @property
    def tiers(self) -> str:
        return f"{self.prefix}.tiers"

    def all(self) -> dict[str, str]:
        return {
            "raw": self.raw,
            "events": self.events,
            "ledger": self.ledger,
            "balances": self.balances,
            "tiers": self.tiers,
            "dlq": self.dlq,
        }

    @property
    def dlq_redriven(self) -> str:
        """Which dead letters `dlq redrive` wrote back (compacted, key `partition:offset`)."""
        return f"{self.dlq}.redriven"

    def compacted(self) -> frozenset[str]:
        return frozenset({self.balances, self.tiers, self.dlq_redriven})

    def value_schema(self, topic: str) -> str | None:
        """The Avro record name of a topic's values (None for the raw topic: exact bytes)."""
        return {
            self.events: "LoyaltyEvent",
            self.ledger: "LedgerEntry",
            self.balances: "MemberBalance",
            self.tiers: "MemberTier",
            self.dlq: "DeadLetter",
        }.get(topic)
