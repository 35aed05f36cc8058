"""`loyalty-connector diff`: the live state against a rebuild's, account by account.

Both sides are read the way a downstream consumer reads them: `<prefix>.balances` compacted
(the newest `MemberBalance` per account key) and `<prefix>.ledger` summed per account and entry
kind (`points_delta`), each `entry_id` once per member (a worker that crashed after sending may
repeat an output; a repeat is the same entry). An account differs if its balance, computed
balance, pending points, tier or any ledger total differs; deltas are shadow − live (how much
the rebuild changes the figure). Exit code 0: identical; 1: differences; 2: could not compare.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiokafka import ConsumerRecord

from connector.errors import SchemaError
from connector.models import ZERO, DeadLetter, LedgerEntry, MemberBalance, Tier, account_key
from connector.registry import codec_for
from connector.settings import Settings
from connector.shadow import ShadowError, end_offsets, read_manifest, scan
from connector.topics import Topics

NUMBERS = ("balance", "computed_balance", "pending_points")
LEDGER = "ledger "  # field-name prefix of a ledger total: "ledger POINTS_EARNED"


@dataclass
class Side:
    """One prefix's balances and ledger totals, as a consumer of its topics sees them."""

    prefix: str
    balances: dict[str, MemberBalance] = field(default_factory=dict)
    ledger: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # account → kind → sum
    entries: int = 0
    repeated: int = 0  # records of an entry already counted
    undecodable: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "accounts": len(self.balances),
            "ledger_entries": self.entries,
            "repeated_entries": self.repeated,
            "undecodable": self.undecodable,
            "dead_letters": dict(sorted(self.dead_letters.items())),
        }


async def read_side(settings: Settings, prefix: str) -> Side:
    codec = codec_for(settings)
    topics = Topics(prefix)
    side = Side(prefix)
    seen: set[tuple[str, str]] = set()

    def on_balance(m: ConsumerRecord[bytes, bytes]) -> None:
        key = (m.key or b"").decode("utf-8", "replace")
        if m.value is None:  # a tombstone deletes the account
            side.balances.pop(key, None)
            return
        try:
            side.balances[key] = codec.decode(m.value, MemberBalance)
        except SchemaError:
            side.undecodable += 1

    def on_entry(m: ConsumerRecord[bytes, bytes]) -> None:
        try:
            entry: LedgerEntry = codec.decode(m.value or b"", LedgerEntry)
        except SchemaError:
            side.undecodable += 1
            return
        mark = (entry.member_key, entry.entry_id)
        if mark in seen:
            side.repeated += 1
            return
        seen.add(mark)
        side.entries += 1
        totals = side.ledger.setdefault(account_key(entry.member_key, entry.account_id), {})
        totals[entry.kind.value] = totals.get(entry.kind.value, ZERO) + entry.points_delta

    def on_dead_letter(m: ConsumerRecord[bytes, bytes]) -> None:
        try:
            side.dead_letters[codec.decode(m.value or b"", DeadLetter).stage] += 1
        except SchemaError:
            side.undecodable += 1

    bootstrap = settings.bootstrap_servers
    await scan(bootstrap, topics.balances, on_balance)
    await scan(bootstrap, topics.ledger, on_entry)
    await scan(bootstrap, topics.dlq, on_dead_letter)
    return side


# -- comparing ---------------------------------------------------------------------------------


def _tier_text(tier: Tier | None) -> str | None:
    if tier is None:
        return None
    return tier.name or tier.id or None


def _same_tier(a: Tier | None, b: Tier | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.id, a.name) == (b.id, b.name)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class AccountDiff:
    account: str
    only_in: str | None  # "live", "shadow" or None (on both sides)
    fields: dict[str, dict[str, str | None]]  # field → live, shadow[, delta]

    @property
    def provider(self) -> str:
        return self.account.split(":", 1)[0]

    def size(self) -> Decimal:
        """The largest |delta| of the account's figures (for ordering the sample)."""
        deltas = [abs(Decimal(d)) for f in self.fields.values() if (d := f.get("delta"))]
        return max(deltas, default=ZERO)

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "provider": self.provider,
            "only_in": self.only_in,
            "differences": self.fields,
        }


def compare_account(
    key: str,
    live: MemberBalance | None,
    shadow: MemberBalance | None,
    live_ledger: dict[str, Decimal],
    shadow_ledger: dict[str, Decimal],
) -> AccountDiff | None:
    out: dict[str, dict[str, str | None]] = {}
    for name in NUMBERS:
        a = None if live is None else getattr(live, name)
        b = None if shadow is None else getattr(shadow, name)
        if a != b:
            delta = (b or ZERO) - (a or ZERO)
            out[name] = {"live": _text(a), "shadow": _text(b), "delta": str(delta)}
    live_tier = None if live is None else live.tier
    shadow_tier = None if shadow is None else shadow.tier
    if not _same_tier(live_tier, shadow_tier):
        out["tier"] = {"live": _tier_text(live_tier), "shadow": _tier_text(shadow_tier)}
    for kind in sorted(set(live_ledger) | set(shadow_ledger)):
        a, b = live_ledger.get(kind), shadow_ledger.get(kind)
        if (a or ZERO) != (b or ZERO):
            delta = (b or ZERO) - (a or ZERO)
            out[LEDGER + kind] = {"live": _text(a), "shadow": _text(b), "delta": str(delta)}
    if not out:
        return None
    in_live = live is not None or bool(live_ledger)
    in_shadow = shadow is not None or bool(shadow_ledger)
    only = None if in_live and in_shadow else ("live" if in_live else "shadow")
    return AccountDiff(key, only, out)


@dataclass
class DiffReport:
    live: Side
    shadow: Side
    accounts: list[str]
    differing: list[AccountDiff]
    manifest: dict[str, Any] | None = None  # the rebuild's, when the shadow is one

    @property
    def identical(self) -> bool:
        return not self.differing

    def by_provider(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for key in self.accounts:
            out.setdefault(key.split(":", 1)[0], {"accounts": 0, "differing": 0})["accounts"] += 1
        for d in self.differing:
            out[d.provider]["differing"] += 1
        return dict(sorted(out.items()))

    def by_field(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for d in self.differing:
            for name, f in d.fields.items():
                row = out.setdefault(
                    name, {"accounts": 0, "sum_delta": ZERO, "max_abs_delta": ZERO}
                )
                row["accounts"] += 1
                if f.get("delta") is not None:
                    delta = Decimal(str(f["delta"]))
                    row["sum_delta"] += delta
                    row["max_abs_delta"] = max(row["max_abs_delta"], abs(delta))
        return {
            name: {
                "accounts": row["accounts"],
                **(
                    {}
                    if name == "tier"
                    else {
                        "sum_delta": str(row["sum_delta"]),
                        "max_abs_delta": str(row["max_abs_delta"]),
                    }
                ),
            }
            for name, row in sorted(out.items(), key=lambda kv: _field_order(kv[0]))
        }

    def sample(self, n: int) -> list[AccountDiff]:
        """The `n` accounts that change most (largest |delta|), then by key."""
        return sorted(self.differing, key=lambda d: (-d.size(), d.account))[:n]

    def to_json(self, sample: int = 20) -> dict[str, Any]:
        only = Counter(d.only_in for d in self.differing if d.only_in)
        return {
            "identical": self.identical,
            "live": self.live.summary(),
            "shadow": self.shadow.summary(),
            "accounts_compared": len(self.accounts),
            "accounts_differing": len(self.differing),
            "only_in_live": only.get("live", 0),
            "only_in_shadow": only.get("shadow", 0),
            "by_provider": self.by_provider(),
            "by_field": self.by_field(),
            "sample": [d.to_json() for d in self.sample(sample)],
            "rebuild": None
            if self.manifest is None
            else {
                k: self.manifest.get(k)
                for k in ("at", "shadow_app_id", "since", "until", "from_start", "dedupe_memory")
            },
        }


def _field_order(name: str) -> tuple[int, str]:
    order = {"balance": 0, "computed_balance": 1, "pending_points": 2, "tier": 3}
    return order.get(name, 4), name


def compare(live: Side, shadow: Side) -> DiffReport:
    keys = sorted(set(live.balances) | set(shadow.balances) | set(live.ledger) | set(shadow.ledger))
    differing = []
    for key in keys:
        d = compare_account(
            key,
            live.balances.get(key),
            shadow.balances.get(key),
            live.ledger.get(key, {}),
            shadow.ledger.get(key, {}),
        )
        if d is not None:
            differing.append(d)
    return DiffReport(live, shadow, keys, differing)


async def diff(settings: Settings, shadow_prefix: str) -> DiffReport:
    """Compare the live prefix with `shadow_prefix` (ShadowError if it has no balances topic:
    a mistyped prefix would otherwise show every account as only live)."""
    if not await end_offsets(settings.bootstrap_servers, Topics(shadow_prefix).balances):
        raise ShadowError(
            f"{Topics(shadow_prefix).balances} does not exist: is {shadow_prefix!r} the prefix "
            "a rebuild wrote?"
        )
    live, shadow = await asyncio.gather(
        read_side(settings, settings.topic_prefix), read_side(settings, shadow_prefix)
    )
    report = compare(live, shadow)
    report.manifest = await read_manifest(settings, shadow_prefix)
    return report


# -- the table ---------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def render(report: DiffReport, sample: int = 20) -> str:
    """The report as text for a terminal."""
    data = report.to_json(sample)
    lines = []
    if data["rebuild"]:
        rb = data["rebuild"]
        window = (
            "".join(f" {k} {rb[k]}" for k in ("since", "until") if rb.get(k))
            or " all of the raw topic"
        )
        lines.append(f"rebuild of {rb['at']}:{window} (dedupe memory {rb['dedupe_memory']})")
    for side in ("live", "shadow"):
        s = data[side]
        dls = ", ".join(f"{k} {v}" for k, v in s["dead_letters"].items()) or "none"
        lines.append(
            f"{side:<7} {s['prefix']}: {s['accounts']} accounts, {s['ledger_entries']} ledger "
            f"entries ({s['repeated_entries']} repeated), dead letters: {dls}"
        )
    if report.identical:
        lines.append(f"identical: {data['accounts_compared']} accounts, no differences")
        return "\n".join(lines)
    lines.append(
        f"differing: {data['accounts_differing']} of {data['accounts_compared']} accounts "
        f"(only in live: {data['only_in_live']}, only in shadow: {data['only_in_shadow']})"
    )
    lines.append("")
    lines += _table(
        ["provider", "accounts", "differing"],
        [[p, str(v["accounts"]), str(v["differing"])] for p, v in data["by_provider"].items()],
    )
    lines.append("")
    lines += _table(
        ["field", "accounts", "sum of deltas", "largest |delta|"],
        [
            [name, str(v["accounts"]), v.get("sum_delta", "-"), v.get("max_abs_delta", "-")]
            for name, v in data["by_field"].items()
        ],
    )
    shown = data["sample"]
    lines.append("")
    lines.append(
        f"sample: {len(shown)} of {data['accounts_differing']} accounts, largest change first "
        "(delta = shadow - live)"
    )
    rows = []
    for d in shown:
        account = d["account"] + (f" (only in {d['only_in']})" if d["only_in"] else "")
        for name, f in d["differences"].items():
            rows.append(
                [account, name, f["live"] or "-", f["shadow"] or "-", f.get("delta") or "-"]
            )
            account = ""
    lines += _table(["account", "field", "live", "shadow", "delta"], rows)
    return "\n".join(lines)
