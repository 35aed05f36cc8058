"""The soak's report: the timeline of the bridge's answers per second, its chart (PNG), and
the scoreboard printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.soak_faults import Fault
from benchmarks.soak_workload import Item
from connector.kit import charts


def timeline(items: list[Item], faults: list[Fault]) -> dict[str, list[int]]:
    """Per second since the start: 200s, 503s (and 429s), connection errors, others."""
    end = int(max((s + d for it in items for s, d, _ in it.attempts), default=0)) + 1
    series = {k: [0] * end for k in ("ok", "refused", "no_answer", "other")}
    for it in items:
        for s, d, st in it.attempts:
            sec = min(end - 1, int(s + d))
            k = (
                "ok"
                if st == 200
                else "refused"
                if st in (429, 503)
                else "no_answer"
                if st == 0
                else "other"
            )
            series[k][sec] += 1
    return series


def chart(series: dict[str, list[int]], faults: list[Fault], path: Path) -> None:
    if not charts.available():
        return  # no matplotlib (the `dev` extra): the scoreboard has the same numbers
    with charts.figure(path, figsize=(12, 4.5)) as (_, ax):
        xs = list(range(len(series["ok"])))
        ax.plot(xs, series["ok"], label="200 accepted/s", color="tab:green", lw=1)
        ax.plot(xs, series["refused"], label="503/429 per s", color="tab:red", lw=1)
        ax.plot(xs, series["no_answer"], label="connection errors/s", color="tab:gray", lw=1)
        for f in faults:
            ax.axvspan(f.t0, f.end or f.t0, color="tab:orange", alpha=0.15)
            ax.axvline(f.t0, color="tab:orange", lw=1)
            ax.text(f.t0, ax.get_ylim()[1] * 0.95, " " + f.name, rotation=90, va="top", fontsize=7)
        ax.set_xlabel("seconds since load started")
        ax.set_ylabel("responses per second")
        ax.set_title("soak: bridge answers over time (orange: fault until recovered)")
        ax.legend(loc="lower right", fontsize=8)


def print_board(board: dict[str, Any]) -> None:
    w = board["webhooks"]
    print("\n==== soak scoreboard ====")
    print(f"load {board.get('load_seconds')} s, drain {board.get('drain_seconds')} s")
    print(
        f"webhooks sent {w['sent']} {w['by_kind']}, late {w['late']}, acknowledged (200) "
        f"{w['acknowledged_200']}, in raw topic by request-id {w['in_raw_topic_by_request_id']}, "
        f"gave up {w['gave_up']}"
    )
    print(f"HTTP attempts {w['http_attempts']}: {w['attempt_statuses']}")
    rp, sp = board["provider_retry_policy"], board["spool"]
    print(
        f"provider retries {rp['retries'] or 'until the horizon'}: lost by provider retry policy "
        f"{rp['lost_by_provider_retry_policy']} {rp['by_provider']} by fault {rp['by_fault']}; "
        f"{rp['customers_touched']} customers touched, "
        f"{rp['accounts_excluded_from_balance_checks']} accounts left out of the balance checks; "
        f"load balancer reconnects {w['load_balancer_reconnects']}"
    )
    if sp["enabled"]:
        print(
            f"spool: {sp['acknowledged_spooled']} acknowledged as spooled; bridges counted "
            f"spooled {sp['bridge_spooled_total']}, forwarded {sp['bridge_spool_forwarded']}, "
            f"full {sp['bridge_spool_full_total']} over {sp['bridge_processes_scraped']} "
            f"processes; records at the end {sp['bridge_spool_records_at_end']}; when the bridge "
            f"was killed {sp['spool_records_when_bridge_killed']}"
        )
    else:
        print("spool: off")
    wl = board["workload"]
    print(f"members by flavour {wl['members_by_flavour']}")
    print(
        f"accounts {wl['accounts']} of {wl['customers']} customers {wl['accounts_by_id']}; "
        f"multi-account customers {wl['multi_account_customers']} "
        f"({wl['multi_account_movements']} movements)"
    )
    print(f"valid deliveries by shape {wl['valid_by_shape']}")
    print(f"byte-identical repeats (new deliveries) {wl['byte_identical_repeats']}")
    print(
        f"ledger: {board['ledger']['distinct_entries']} distinct entries, "
        f"{board['ledger']['re_emitted_same_entry_id']} re-emitted with the same entry_id"
    )
    print(f"dead letters: {board['dead_letters']['records']} {board['dead_letters']['reasons']}")
    ov = board["dead_letters"].get("overflow")
    if ov is not None:
        print(
            f"overflow (amountChange {ov['amount_change']}): sent {ov['sent']} to "
            f"{', '.join(ov['members']) or '-'}, acknowledged {ov['acknowledged']}, dead-lettered "
            f"by the ledger {ov['dead_lettered_by_ledger']} ({ov['dead_letter_records']} "
            f"records), booked entries {len(ov['booked_entries'])}"
        )
    lat = board["latency_ms"]
    print(
        f"bridge latency ms during faults {lat['during_faults']}, outside {lat['outside_faults']}"
    )
    print("recovery (s from injection):")
    for name, r in board["recovery_s"].items():
        print(f"  {name:52} {r}")
    if board["unexpected_exits"]:
        print(f"unexpected exits: {[(e['process'], e['code']) for e in board['unexpected_exits']]}")
    print("must be 0:")
    for k, v in board["must_be_zero"].items():
        print(f"  {'ok ' if v == 0 else 'BAD'} {k:45} {v}")
    print("RESULT:", "PASS" if board["ok"] else "FAIL")
