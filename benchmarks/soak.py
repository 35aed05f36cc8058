"""Soak with faults: real processes, a generated workload with trouble, an independent oracle.

    .venv/bin/python benchmarks/soak.py [--minutes M] [--members N] [--rate R]
        [--faults all|none|broker,worker,rebalance,bridge,outage] [--quick] [--out FILE]
        [--seed S] [--spool/--no-spool] [--provider-retries/--no-provider-retries]
        [--outage-seconds S]

Runs Apache Kafka (`KafkaBroker`, KRaft, its own data dir), one `loyalty-connector bridge` and two
`loyalty-connector worker` processes (one app id, each with its own CONNECTOR_WEB_PORT and
CONNECTOR_DATA_DIR), started as a support-kit stack (`connector.kit.processes.Stack`, which the
integration harness builds on too).
For M minutes it sends about R webhooks/s (trouble included), signed as each of the four
providers would sign them, for N members. Each member's provider delivers in one way (its
"flavour", see FLAVOURS), in the shapes providers really send:

* Open Loyalty legacy/Cloud pairs: `account.points_transfer` and
  `account.available_points_amount_changed` with the same `pointsTransferId`, HMAC-signed;
* Open Loyalty OSS 3.x amount changes as OSS builds them (no pointsTransferId, no time, the
  balance after as a float), with only the static header or HMAC-signed: earns, spends, and
  expiries, cancels and unlocks that arrive as `amount_change: 0, amount_change_type: subtract`
  with only the new `amount` (an unlock raises it);
* legitimate repeats: a member returning to an earlier state sends a byte-identical body (Open
  Loyalty earn 10, spend 10, earn 10; Gameball v3 100 -> 150 -> 100), which must count again;
* Voucherify additions (distribution `points_added` + project `transaction.created`, one `vtx_`),
  redemptions, and pending points later activated (sometimes with the project's
  PENDING_POINTS_ACTIVATION twin) or canceled;
* Gameball v4 profiles (created_at) and v3 flat profiles (no time, no id);
* Wix account snapshots by revision, whose tier a newer revision may clear (`"tier": null`).
* point accounts: two of three Voucherify customers hold a card in a second loyalty campaign
  (`camp_travel`, its own card id and tiers), two of three Open Loyalty legacy/Cloud members
  points in a second wallet (5.x subscription `AvailablePointsAmountChanged` naming wallet type
  `miles`); each account is its own oracle member, keyed by its account key, and some steps
  move both accounts of a customer at once.

With trouble mixed in:

* redeliveries of deliveries that name themselves (Voucherify and Wix event ids, Open Loyalty's
  X-Webhook-Request-Id): the same bytes and headers again after a 200, which must count once.
  Deliveries without any id (Gameball, unsigned Open Loyalty) are never re-sent after a 200:
  their providers re-send only what was answered non-2xx, and a second delivery of the same
  bytes is a new delivery;
* late deliveries (held back for seconds), which for Wix (revisions), Gameball v4 (created_at)
  and signed Open Loyalty (X-Webhook-Timestamp) means an older delivery arriving after a newer
  one. Deliveries with neither a time nor an id (Gameball v3, unsigned Open Loyalty) are ordered
  by the bridge's receive time only, so they are sent in order, each after the member's previous
  one was answered, and never held back;
* forged requests (signed with the wrong secret, or a correctly signed body with one byte
  changed: the signature covers the exact bytes), which must get 401;
* oversized requests (over CONNECTOR_MAX_BODY_BYTES, set to 64 KiB here), which must get 413;
* poison: a correctly signed Open Loyalty webhook without `customerId` (the bridge must accept it,
  the worker must dead-letter it);
* overflow: one correctly signed Open Loyalty amount change per run whose amounts decode but take
  the ledger past Avro `decimal(18,2)` (issue 11 item 8): dead-lettered at the ledger stage,
  never booked, the member's other events exact.

Senders behave like providers: a delivery counts as acknowledged only on 200; a 503, a 429, a
connection error or a timeout is retried with exponential backoff (0.25 s doubling, at most
Retry-After or 4 s, with jitter) until the retry horizon (10 minutes; 90 s with --quick). With
provider retry budgets (`--provider-retries`, the default when the `outage` fault runs) the
timing stays compressed like that, but each provider retries a delivery only as often as it
documents (PROVIDER_RETRIES: Open Loyalty once, Gameball 3 times, Voucherify and Wix 12 times)
and then drops it: `lost_by_provider_retry_policy`. The senders then reach the bridge as through
a load balancer that retries a refused *connection* (nothing listening: the bridge between two
processes) up to 30 times a second apart, as HAProxy's `retries` does for a restarting server;
every attempt the bridge or a broken connection answered counts against the budget.

The bridge runs with its store-and-forward spool (`CONNECTOR_SPOOL_DIR` under the run's temp
dir; `--no-spool` turns it off). With the spool, `lost_by_provider_retry_policy` must be 0 and
the spool must be empty at the end; without it, the losses are reported, and the customers
whose deliveries were lost are left out of the balance checks (counted), every other must-be-0
figure still holding.

Faults (`--faults`, default all): `broker` stops Apache Kafka with SIGTERM and later with SIGKILL
and restarts it on the same ports and data; `worker` kills a worker with SIGKILL and restarts it
(same port, same data dir); `rebalance` adds a third worker mid-run (and, in the combined phase,
stops it again with SIGTERM); `bridge` restarts the bridge (SIGTERM, then a new process on the
same port, same spool); `outage` is a long broker outage: Apache Kafka killed with SIGKILL and
kept down for `--outage-seconds` (30 s with --quick, 180 s otherwise), the bridge killed with
SIGKILL halfway through (while it spools) and a new one started on the same port and spool. Each
kind runs on its own, then (full runs) several at once. A supervisor restarts a process that
exits by itself (as systemd or Kubernetes would) and counts it.

The ORACLE is the provider's true account of each member (balance, pending points, tier, and
whether the provider has stated a balance), kept here from the operations generated,
independently of `connector.domain.ledger`: the webhooks of a step describe operations at the
provider (two webhooks may describe one), so once every delivery is accepted the member's
balance, computed balance and reported balance must all equal the true balance, and its pending
points the true pending points. At the end (after a drain
period: senders done, worker group committed past the end of raw and events) the scoreboard is
printed and written to benchmarks/results/soak.json (and a timeline PNG); the exit status is 1
when any must-be-0 figure is not 0, 2 when the processes could not be started.

"Counted twice" means: one provider movement (member + movement id + phase, where pending and
canceled are phases of their own) with two or more *different* LedgerEntry ids, or a member whose
distinct ledger entries (by entry_id) do not add up to the oracle's balance. Re-emissions of an
entry with the same entry_id (at-least-once after a crash) are counted separately and must carry
identical numbers.

This file is the command line; the parts sit beside it: soak_workload.py (the workload and the
oracle), soak_senders.py (providers' deliveries and retries), soak_faults.py (processes, faults,
supervisor, recovery), soak_checks.py (the scoreboard) and soak_report.py (timeline, chart,
printout).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.soak_checks import first_200_after, scoreboard  # noqa: E402
from benchmarks.soak_faults import KINDS, Soak, log  # noqa: E402
from benchmarks.soak_report import chart, print_board, timeline  # noqa: E402
from benchmarks.soak_senders import PROVIDER_RETRIES  # noqa: E402
from benchmarks.soak_workload import Workload  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=None, help="load duration (default 15)")
    parser.add_argument("--members", type=int, default=None, help="members (default 400)")
    parser.add_argument("--rate", type=float, default=None, help="webhooks/s (default 20)")
    parser.add_argument(
        "--faults", default="all", help="all, none or a comma list of " + ",".join(KINDS)
    )
    parser.add_argument(
        "--spool",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the bridge's store-and-forward spool (CONNECTOR_SPOOL_DIR; default on)",
    )
    parser.add_argument(
        "--provider-retries",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="senders retry as often as each provider does, then drop the delivery "
        "(default: on when the outage fault runs; off: retry until the horizon)",
    )
    parser.add_argument(
        "--outage-seconds",
        type=float,
        default=None,
        help="how long the outage fault keeps Kafka down (default 180; 30 with --quick)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="~2 minutes, small, one fault of each kind"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default=str(RESULTS / "soak.json"))
    args = parser.parse_args(argv)
    defaults = (1.0, 40, 8.0) if args.quick else (15.0, 400, 20.0)
    args.minutes = args.minutes if args.minutes is not None else defaults[0]
    args.members = args.members if args.members is not None else defaults[1]
    args.rate = args.rate if args.rate is not None else defaults[2]
    args.seed = args.seed if args.seed is not None else random.randrange(10**6)
    if args.faults == "all":
        args.faults = list(KINDS)
    elif args.faults == "none":
        args.faults = []
    else:
        args.faults = [k.strip() for k in args.faults.split(",") if k.strip()]
        unknown = set(args.faults) - set(KINDS)
        if unknown:
            parser.error(f"unknown fault kinds {sorted(unknown)}; use {','.join(KINDS)}")
    if args.outage_seconds is None:
        args.outage_seconds = 30.0 if args.quick else 180.0
    if args.provider_retries is None:
        args.provider_retries = "outage" in args.faults
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soak = Soak(args)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    keep = True  # the process logs, unless the run passes
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    try:
        try:
            soak.setup()
        except Exception as exc:
            log(f"processes did not come up: {exc}")
            print(soak.logs())
            return 2
        workload = Workload(args.members, args.seed, args.quick)
        log(
            f"load: {args.minutes} min, {args.members} members, ~{args.rate} webhooks/s, "
            f"faults {args.faults}, seed {args.seed}, spool {'on' if args.spool else 'off'}, "
            f"provider retries {PROVIDER_RETRIES if args.provider_retries else 'off'}"
        )
        extra = soak.run(workload)
        assert soak.sender is not None
        if soak.sender.error is not None:
            raise soak.sender.error
        first_200_after(soak.sender.items, soak.faults)
        extra["started"] = started
        extra["load_average_at_start"] = load_at_start
        board = scoreboard(soak, workload, extra)
        board["timeline_per_s"] = timeline(soak.sender.items, soak.faults)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(board, indent=1, default=str) + "\n")
        chart(board["timeline_per_s"], soak.faults, out.with_suffix(".png"))
        print_board(board)
        print(f"written {out}")
        if not board["ok"]:
            print(soak.logs()[-20000:])
        keep = not board["ok"]
        return 0 if board["ok"] else 1
    finally:
        soak.close()
        if keep:
            print(f"process logs and data kept in {soak.tmp}")
        else:
            shutil.rmtree(soak.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
