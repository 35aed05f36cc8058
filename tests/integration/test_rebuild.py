"""`rebuild`, `diff` and `cutover` on real Apache Kafka, against live workers.

(a) Members with more events than the dedupe memory (`CONNECTOR_DEDUPE_MEMORY=10`): re-running
    the live consumer group from the start double counts the Open Loyalty member (id-less
    events: nothing tells a replay from a new delivery once the memory forgot it), while the
    rebuild, fresh state over the same raw records, matches the first pass exactly and the
    restored changelog is exactly the table a worker would hold; `diff` finds the reset's
    damage and nothing else.
(b) A decoder changed in the rebuilding process only: `diff` reports exactly the accounts of
    that provider, by exactly the amounts; an unchanged rebuild is identical; `--until` stops
    each partition at the first record at or after the time.
(c) The cut-over as the README documents it: rebuild while the live worker keeps serving and
    keeps receiving, refused while it runs, stop it, `cutover`, start a worker with the shadow
    app id: every event counted once (more events after the rebuild than the dedupe memory
    holds, so a second application would show), ledger consumers' rule gives each entry once.

The expected numbers are computed here from the payloads, not by the ledger code. Webhooks go
in waves of five per member, each applied before the next is sent, so the live worker sees
each member's events at most five apart (less than the dedupe memory and the balance chain).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import TopicPartition

from connector.diff import diff
from connector.inspect import read_to_end
from connector.models import MemberBalance, account_key
from connector.providers import PROVIDERS
from connector.rebuild import RebuildOptions, rebuild
from connector.settings import Settings
from connector.shadow import (
    Shadow,
    ShadowError,
    commit_offsets,
    group_offsets,
    group_state,
    read_manifest,
)
from connector.streams.state_format import load_state
from tests.integration.harness import (
    Delivery,
    Harness,
    WorkerProc,
    gb_profile,
    latest_by_key,
    ol_points_transfer,
    partition_of,
    sign,
    vf_transaction_created,
    wait_until,
)

D = Decimal
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
WAVE = 5
VF_CAMPAIGN = "camp_loyalty"  # the harness's loyalty card campaign: the Voucherify account


def _at(i: int) -> str:
    return (T0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")


class Member:
    """One member's webhooks (the i-th is `delivery(i)`) and the figures they add up to."""

    def __init__(self, provider: str, customer: str) -> None:
        self.provider, self.customer = provider, customer

    @property
    def key(self) -> str:
        return f"{self.provider}:default:{self.customer}"

    @property
    def account(self) -> str:
        """The account key on the balances topic (Voucherify: the loyalty campaign's)."""
        if self.provider == "voucherify":
            return account_key(self.key, VF_CAMPAIGN)
        return self.key

    def points(self, i: int) -> int:
        return 10 + 3 * i + len(self.customer) % 7

    def balance(self, n: int) -> Decimal:
        """The balance after the first n webhooks."""
        return D(sum(self.points(i) for i in range(n))).quantize(D("0.01"))

    def delivery(self, i: int) -> Delivery:
        c = self.customer
        if self.provider == "open_loyalty":
            return sign("open_loyalty", ol_points_transfer(c, f"{c}-t{i}", self.points(i), _at(i)))
        if self.provider == "voucherify":
            total = int(self.balance(i + 1))
            body = vf_transaction_created(
                c, f"ev_{c}_{i}", f"vtx_{c}_{i}", "POINTS_ADDITION", self.points(i), total, _at(i)
            )
            return sign("voucherify", body)
        if self.provider == "gameball":
            total = int(self.balance(i + 1))
            gold = total >= 100
            body = gb_profile(
                c,
                _at(i),
                activated=total,
                pending=0,
                tier="gold" if gold else "basic",
                tier_order=2 if gold else 1,
            )
            return sign("gameball", body)
        raise ValueError(self.provider)

    def query(self, h: Harness, worker: WorkerProc, n: int) -> dict[str, Any]:
        """The member's figures from the worker, once its balance is that of n webhooks."""
        want = self.balance(n)

        def done(body: dict[str, Any]) -> bool:
            return D(str(body["balance"])) == want

        return h.wait_member(worker, self.provider, "default", self.customer, done)


def send_waves(
    h: Harness, bridge: Any, worker: WorkerProc, members: list[Member], start: int, stop: int
) -> None:
    """Webhooks start..stop-1 of every member, five per member at a time, each wave applied
    (the member's balance reached) before the next is sent."""
    for first in range(start, stop, WAVE):
        last = min(first + WAVE, stop)
        h.send(bridge, [m.delivery(i) for m in members for i in range(first, last)])
        for m in members:
            m.query(h, worker, last)


def cli(h: Harness, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return h.cli(*args, timeout=timeout)  # a rebuild of the whole raw topic takes a while


def balances(h: Harness, prefix: str | None = None) -> dict[str, MemberBalance]:
    reader = h if prefix is None else Harness(h.bootstrap, prefix, h.tmp)
    return latest_by_key(reader.read("balances"))


def figures(b: MemberBalance) -> tuple[Any, ...]:
    return (
        b.balance,
        b.computed_balance,
        b.reported_balance,
        b.pending_points,
        b.lifetime_earned,
        b.lifetime_redeemed,
        b.tier,
    )


def wait_group_empty(h: Harness, group: str) -> None:
    wait_until(
        lambda: asyncio.run(group_state(h.bootstrap, group))[1] == 0,
        60,
        f"consumer group {group} to have no member",
    )


def names(h: Harness, tag: str) -> Shadow:
    return Shadow(f"{h.prefix}-rb{tag}", f"{h.app_id}-rb{tag}")


# ---------------------------------------------------------------------------------------------
# (a)


def test_rebuild_is_exact_where_a_group_reset_double_counts(h: Harness) -> None:
    h.base_env["CONNECTOR_DEDUPE_MEMORY"] = "10"  # the smallest allowed
    n = 30  # events per member: three times what the dedupe memory remembers
    ol = Member("open_loyalty", "ol-many")
    vf = Member("voucherify", "cust_many")
    gb = Member("gameball", "gb-many")
    few = [Member("open_loyalty", "ol-few"), Member("voucherify", "cust_few")]
    bridge = h.start_bridge()
    worker = h.start_worker()
    send_waves(h, bridge, worker, [ol, vf, gb], 0, n)
    send_waves(h, bridge, worker, few, 0, 3)
    h.wait_caught_up()
    live = balances(h)
    expected = {m.account: m.balance(n) for m in (ol, vf, gb)} | {
        m.account: m.balance(3) for m in few
    }
    assert {k: live[k].balance for k in expected} == expected
    assert live[ol.account].computed_balance == expected[ol.account]
    assert live[vf.account].computed_balance == expected[vf.account]  # no drift

    # the rebuild, while the live worker keeps running
    shadow = names(h, "a")
    out = cli(
        h,
        *("rebuild", "--shadow-prefix", shadow.prefix, "--shadow-app-id", shadow.app_id),
        *("--no-progress", "--json"),
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    raw_records = len(h.read("raw", decode=False))
    assert result["records"] == raw_records == 3 * n + 2 * 3
    assert result["dead_letters"] == {}
    assert result["from_start"] is True
    rebuilt = balances(h, shadow.prefix)
    assert set(rebuilt) == set(live)
    for key in live:  # every figure of every account, not just the balance
        assert figures(rebuilt[key]) == figures(live[key]), key

    # the changelog a worker with the shadow app id restores: one record per table key, in the
    # member's events partition, holding the rebuilt state
    changelog = asyncio.run(read_to_end(h.bootstrap, shadow.changelog))
    table = {m.key.decode(): (m.partition, load_state(m.value)) for m in changelog}
    vf_index = {m.key for m in (vf, *few) if m.provider == "voucherify"}
    assert set(table) == set(live) | vf_index
    for key, (partition, state) in table.items():
        assert state is not None
        assert partition == partition_of(state.member_key, 2), key
        if key in live:
            assert state.balance == live[key].balance
            assert len(state.recent_event_ids) <= 10
    for key in vf_index:  # the member's default record only lists its campaign account
        assert table[key][1].accounts == (VF_CAMPAIGN,)  # type: ignore[union-attr]

    # the shadow group continues the raw topic where the rebuild stopped: at its end
    committed = asyncio.run(group_offsets(h.bootstrap, shadow.app_id))
    raw_ends: dict[int, int] = {}
    for r in h.read("raw", decode=False):
        raw_ends[r.partition] = max(raw_ends.get(r.partition, 0), r.offset + 1)
    for p, end in raw_ends.items():
        assert committed[TopicPartition(h.topic("raw"), p)].offset == end

    same = cli(h, "diff", "--shadow-prefix", shadow.prefix, "--json")
    assert same.returncode == 0, same.stdout + same.stderr
    assert json.loads(same.stdout)["identical"] is True

    # what the issue warns about: re-run the live group from the start (every committed
    # offset of the group back to the beginning, as `kafka-consumer-groups --reset-offsets
    # --to-earliest --all-topics` does), with its state kept
    worker.stop()
    wait_group_empty(h, h.app_id)
    offsets = asyncio.run(group_offsets(h.bootstrap, h.app_id))
    assert offsets
    asyncio.run(commit_offsets(h.bootstrap, h.app_id, dict.fromkeys(offsets, 0), "reset"))
    again = h.start_worker("worker-reset", data_dir=worker.data_dir)
    h.wait_caught_up()
    after = balances(h)
    # Open Loyalty names an event by its body and delivery: with 30 events and a memory of 10,
    # the replayed copies are not remembered and count again
    assert after[ol.account].balance > 2 * expected[ol.account], after[ol.account]
    # Voucherify events carry the provider's id and time: the dedupe horizon recognises old
    # ones the memory forgot, so this member survives the reset
    assert after[vf.account].balance == expected[vf.account]
    assert after[vf.account].computed_balance == expected[vf.account]
    assert again.alive

    # the rebuild is untouched by the reset, and diff shows exactly the damage
    assert {k: v.balance for k, v in balances(h, shadow.prefix).items() if k in expected} == (
        expected
    )
    out = cli(h, "diff", "--shadow-prefix", shadow.prefix, "--json", "--sample", "50")
    assert out.returncode == 1, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["identical"] is False
    by_account = {d["account"]: d for d in report["sample"]}
    # the id-less members with more events than the memory, and nothing else: not Voucherify,
    # not the members with fewer events than the memory holds
    assert ol.account in by_account and set(by_account) <= {ol.account, gb.account}
    assert report["accounts_differing"] == len(by_account)
    ol_diff = by_account[ol.account]["differences"]["balance"]
    assert D(ol_diff["delta"]) == expected[ol.account] - after[ol.account].balance
    assert D(ol_diff["shadow"]) == expected[ol.account]
    assert report["by_provider"]["voucherify"]["differing"] == 0
    table_out = cli(h, "diff", "--shadow-prefix", shadow.prefix)
    assert table_out.returncode == 1
    assert ol.account in table_out.stdout and "differing:" in table_out.stdout


# ---------------------------------------------------------------------------------------------
# (b)


def test_diff_finds_a_changed_decoder_and_nothing_else(
    h: Harness, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    members = [
        Member("open_loyalty", "ol-ann"),
        Member("open_loyalty", "ol-bob"),
        Member("voucherify", "cust_vic"),
        Member("voucherify", "cust_val"),
        Member("gameball", "gb-gil"),
    ]
    bridge = h.start_bridge()
    worker = h.start_worker()
    send_waves(h, bridge, worker, members, 0, WAVE)
    between = datetime.now(UTC)
    time.sleep(0.05)
    send_waves(h, bridge, worker, members, WAVE, 2 * WAVE)
    h.wait_caught_up()
    live = balances(h)
    settings = Settings.from_env(h.env())

    # today's decoders: identical to the live state
    same = names(h, "same")
    asyncio.run(rebuild(settings, RebuildOptions(same, progress=True)))
    bar = capfd.readouterr().err  # tqdm on stderr: records, records/s, elapsed<ETA
    assert (
        "rebuild: 100%" in bar
        and "rec/s" in bar
        and f"{len(members) * 2 * WAVE}/{len(members) * 2 * WAVE}" in bar
    )
    report = asyncio.run(diff(settings, same.prefix))
    assert report.identical, report.to_json()
    with pytest.raises(ShadowError, match="already hold data"):  # names are never reused
        asyncio.run(rebuild(settings, RebuildOptions(same, progress=False)))

    # --until: each partition up to its first record at or after the time
    early = names(h, "until")
    result = asyncio.run(rebuild(settings, RebuildOptions(early, until=between, progress=False)))
    assert result.records == len(members) * WAVE
    assert {k: v.balance for k, v in balances(h, early.prefix).items()} == {
        m.account: m.balance(WAVE) for m in members
    }
    manifest = asyncio.run(read_manifest(settings, early.prefix))
    assert manifest is not None and manifest["until"] == between.isoformat()
    committed = asyncio.run(group_offsets(h.bootstrap, early.app_id))
    raw = {tp.partition: m.offset for tp, m in committed.items() if tp.topic == h.topic("raw")}
    assert sum(raw.values()) == len(members) * WAVE
    # --since: only the second wave; a partial rebuild is for diffs, never cut over
    late = names(h, "since")
    result = asyncio.run(rebuild(settings, RebuildOptions(late, since=between, progress=False)))
    assert result.records == len(members) * WAVE and not result.from_start
    partial = balances(h, late.prefix)
    for m in members:
        b = partial[m.account]
        if m.provider == "gameball":  # a snapshot states the provider's whole balance
            assert b.balance == m.balance(2 * WAVE)
        else:  # the movements since; Voucherify also reports its whole balance
            assert b.computed_balance == m.balance(2 * WAVE) - m.balance(WAVE)
            reported = m.balance(2 * WAVE) if m.provider == "voucherify" else None
            assert b.reported_balance == reported
    refused = cli(h, "cutover", "--shadow-prefix", late.prefix)
    assert refused.returncode == 1 and "partial rebuild" in refused.stderr

    # the fix: Voucherify points were read at half their value (the rebuilding process only)
    provider = PROVIDERS["voucherify"]
    real = provider.decode

    def doubled(body: bytes, headers: Any, context: Any) -> Any:
        return [
            replace(
                e,
                points_delta=None if e.points_delta is None else e.points_delta * 2,
                balance=None if e.balance is None else e.balance * 2,
            )
            for e in real(body, headers, context)
        ]

    monkeypatch.setattr(provider, "decode", doubled)
    fixed = names(h, "fixed")
    asyncio.run(rebuild(settings, RebuildOptions(fixed, progress=False)))
    monkeypatch.undo()

    out = cli(h, "diff", "--shadow-prefix", fixed.prefix, "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    data = json.loads(out.stdout)
    vf = [m for m in members if m.provider == "voucherify"]
    assert data["accounts_differing"] == len(vf)
    assert data["accounts_compared"] == len(live)
    assert data["only_in_live"] == data["only_in_shadow"] == 0
    assert data["by_provider"] == {
        "gameball": {"accounts": 1, "differing": 0},
        "open_loyalty": {"accounts": 2, "differing": 0},
        "voucherify": {"accounts": 2, "differing": 2},
    }
    by_account = {d["account"]: d["differences"] for d in data["sample"]}
    assert set(by_account) == {m.account for m in vf}
    for m in vf:
        total = m.balance(2 * WAVE)
        got = by_account[m.account]
        # a POINTS_ADDITION transaction is an adjustment (connector/providers/voucherify.py)
        assert set(got) == {"balance", "computed_balance", "ledger POINTS_ADJUSTED"}, got
        for name in got:
            assert D(got[name]["live"]) == total and D(got[name]["shadow"]) == 2 * total
            assert D(got[name]["delta"]) == total
    assert data["by_field"]["balance"] == {
        "accounts": 2,
        "sum_delta": str(sum(m.balance(2 * WAVE) for m in vf)),
        "max_abs_delta": str(max(m.balance(2 * WAVE) for m in vf)),
    }
    text = cli(h, "diff", "--shadow-prefix", fixed.prefix, "--sample", "1")
    assert text.returncode == 1
    assert f"differing: 2 of {len(live)} accounts" in text.stdout
    assert "sample: 1 of 2 accounts" in text.stdout
    assert worker.alive


# ---------------------------------------------------------------------------------------------
# (c)


def test_cutover_as_documented_counts_every_event_once(h: Harness) -> None:
    h.base_env["CONNECTOR_DEDUPE_MEMORY"] = "10"
    ol = Member("open_loyalty", "ol-cut")
    vf = Member("voucherify", "cust_cut")
    members = [ol, vf]
    bridge = h.start_bridge()
    live_worker = h.start_worker()
    send_waves(h, bridge, live_worker, members, 0, 15)
    h.wait_caught_up()

    # 1. rebuild while the live worker serves
    shadow = names(h, "cut")
    out = cli(
        h,
        *("rebuild", "--shadow-prefix", shadow.prefix, "--shadow-app-id", shadow.app_id),
        "--no-progress",
    )
    assert out.returncode == 0, out.stderr
    assert f"loyalty-connector diff --shadow-prefix {shadow.prefix}" in out.stderr
    # webhooks keep coming: 15 more per member (more than the dedupe memory) reach the live
    # worker after the rebuild stopped reading
    send_waves(h, bridge, live_worker, members, 15, 30)
    h.wait_caught_up()

    # 2. refused while a live worker runs; nothing changed
    refused = cli(h, "cutover", "--shadow-prefix", shadow.prefix)
    assert refused.returncode == 1
    assert "stop every live worker first" in refused.stderr
    dry = cli(h, "cutover", "--shadow-prefix", shadow.prefix, "--dry-run")
    assert dry.returncode == 1  # the live worker still runs

    # 3. stop the live workers, cut over
    live_worker.stop()
    wait_group_empty(h, h.app_id)
    done = cli(h, "cutover", "--shadow-prefix", shadow.prefix, "--json")
    assert done.returncode == 0, done.stderr
    cut = json.loads(done.stdout)
    assert cut["worker_env"] == {"CONNECTOR_APP_ID": shadow.app_id}
    # the rebuilt balances (as of the rebuild) went onto the live table: they differ from the
    # live ones, which moved since
    assert cut["balances_republished"] == 2
    twice = cli(h, "cutover", "--shadow-prefix", shadow.prefix)
    assert twice.returncode == 1 and "already cut over" in twice.stderr

    # 4. workers with the shadow app id (same prefix) continue where the rebuild stopped
    new_worker = h.start_worker("worker-shadow", CONNECTOR_APP_ID=shadow.app_id)
    h.app_id = shadow.app_id  # wait_caught_up: the new group
    h.wait_caught_up()
    for m in members:
        m.query(h, new_worker, 30)
    send_waves(h, bridge, new_worker, members, 30, 35)
    h.wait_caught_up()

    for m in members:
        body = m.query(h, new_worker, 35)
        assert D(str(body["computed_balance"])) == m.balance(35)
    latest = balances(h)
    for m in members:
        assert latest[m.account].balance == m.balance(35)
        assert latest[m.account].computed_balance == m.balance(35)
    # the new worker's ledger saw only its own events: nothing was presented twice
    assert h.metric(new_worker, "worker_duplicate_events_total") == 0
    assert h.metric(new_worker, "worker_beyond_dedupe_horizon_total") == 0
    assert h.metric(new_worker, "worker_raw_records_total") == 2 * 20  # raw after the rebuild

    # ledger consumers: the shadow ledger, then the live ledger from the printed offsets
    shadow_ledger = Harness(h.bootstrap, shadow.prefix, h.tmp).read("ledger")
    after = {int(p): o for p, o in cut["ledger_offsets"].items()}
    live_ledger = [r for r in h.read("ledger") if r.offset >= after.get(r.partition, 0)]
    entries = [r.value for r in shadow_ledger + live_ledger]
    for m in members:
        mine = [e for e in entries if e.member_key == m.key]
        assert len(mine) == len({e.entry_id for e in mine}) == 35
        assert sum(e.points_delta for e in mine) == m.balance(35)


def test_rebuild_names_are_checked(h: Harness) -> None:
    settings = Settings.from_env(h.env())
    bad = [
        Shadow(h.prefix, f"{h.app_id}-x"),
        Shadow(f"{h.prefix}-x", h.app_id),
        Shadow("no spaces", f"{h.app_id}-x"),
    ]
    for shadow in bad:
        with pytest.raises(ShadowError):
            asyncio.run(rebuild(settings, RebuildOptions(shadow, progress=False)))
    missing = Shadow(f"{h.prefix}-{uuid.uuid4().hex[:4]}", f"{h.app_id}-y")
    with pytest.raises(ShadowError, match="does not exist"):
        asyncio.run(rebuild(settings, RebuildOptions(missing, progress=False)))
    out = cli(h, "cutover", "--shadow-prefix", missing.prefix)
    assert out.returncode == 1 and "no finished rebuild" in out.stderr
    out = cli(h, "diff", "--shadow-prefix", missing.prefix)
    assert out.returncode == 2 and "does not exist" in out.stderr
