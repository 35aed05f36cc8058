"""Points earned and redeemed per day and provider, from an exported ledger, as a PNG chart.

    .venv/bin/loyalty-connector export ledger --out ledger.parquet
    .venv/bin/python analytics/ledger_chart.py ledger.parquet --out ledger.png

The numbers come from DuckDB running `connector.export.LEDGER_DAILY_SQL` (the query shown in
the README) over the Parquet (or CSV) file; the chart is matplotlib: one panel for earned, one
for redeemed, a line per provider. Needs the `analytics` extra and matplotlib (`dev` extra).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connector.export import ledger_daily  # noqa: E402 - after the path tweak
from connector.kit import charts  # noqa: E402


def chart(source: Path, out: Path) -> list[tuple[object, ...]]:
    rows = ledger_daily(source).fetchall()  # (day, provider, account, earned, redeemed, entries)
    series = sorted({(r[1], r[2]) for r in rows})
    with charts.figure(out, 2, 1, figsize=(9, 6), sharex=True) as (fig, axes):
        for ax, column, title in ((axes[0], 3, "points earned"), (axes[1], 4, "points redeemed")):
            for provider, account in series:  # one line per account: never two currencies summed
                mine = [r for r in rows if (r[1], r[2]) == (provider, account)]
                days = [r[0] for r in mine]
                values = [float(r[column] or 0) for r in mine]
                label = provider if account == "default" else f"{provider} {account}"
                ax.plot(days, values, marker="o", label=label)
            ax.set_title(f"{title} per day")
            ax.set_ylabel("points")
            charts.grid(ax)
        axes[0].legend(loc="upper left", fontsize="small")
        fig.autofmt_xdate()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="exported ledger (.parquet or .csv)")
    parser.add_argument("--out", type=Path, default=Path("ledger.png"), help="PNG to write")
    args = parser.parse_args(argv)
    rows = chart(args.source, args.out)
    for day, provider, account, earned, redeemed, entries in rows:
        print(
            f"{day}  {provider:<13} {account:<14} earned {earned or 0:>10}  "
            f"redeemed {redeemed or 0:>10}  "
            f"({entries} entries)"
        )
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
