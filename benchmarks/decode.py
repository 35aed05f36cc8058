"""Decode throughput per provider: events/s for verify+decode, decode only, verify+decode+Avro.

Every fixture payload with an expected file is signed once up front (as the provider would), then
each cell runs its pipeline over all of that provider's bodies in a loop timed with
`time.perf_counter`. A `json.loads`-only pass over the same bodies in the same run is the
baseline (for Wix, whose body is a JWT, the baseline parses the token's JSON layers, the least
any decoder must do). Cells report the median of several repeats.

    .venv/bin/python benchmarks/decode.py            # >= 2 s per cell, 5 repeats
    .venv/bin/python benchmarks/decode.py --quick    # smoke run, ~0.2 s per cell

Writes benchmarks/results/decode.json, benchmarks/results/decode.png and /tmp/readme-decode.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connector.avro import default_codec  # noqa: E402
from connector.kit import charts  # noqa: E402
from connector.kit.payloads import secrets as test_secrets  # noqa: E402
from connector.providers import PROVIDERS, DecodeContext, RequestTarget  # noqa: E402
from tests.support import fixture_cases  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
README_SNIPPET = Path("/tmp/readme-decode.md")  # noqa: S108  # fixed hand-off path for the README
CELLS = ("json_loads_baseline", "decode", "verify_decode", "verify_decode_avro")
LABELS = {
    "json_loads_baseline": "json.loads only (baseline)",
    "decode": "decode only",
    "verify_decode": "verify + decode",
    "verify_decode_avro": "verify + decode + Avro encode",
}
Delivery = tuple[bytes, dict[str, str]]


def target(key: str) -> RequestTarget:
    """Where the deliveries are posted: a local bridge (Open Loyalty Cloud signs it)."""
    return RequestTarget("POST", "127.0.0.1", f"/webhooks/{key}")


def signed_deliveries(key: str) -> list[Delivery]:
    provider = PROVIDERS[key]
    secrets = test_secrets()[key]
    out = []
    for case in fixture_cases(key):
        body, headers = provider.sign(case.read_bytes(), secrets, target=target(key))
        provider.verify(body, headers, secrets, target(key))  # signed right, or meaningless
        out.append((body, headers))
    return out


def _b64_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def baseline(key: str) -> Callable[[bytes], Any]:
    """Parsing the JSON of a body and nothing else: the floor under any decoder.

    A body that is not JSON is a JWT (Wix): the floor is its JSON layers.
    """
    body = signed_deliveries(key)[0][0]
    if body.lstrip()[:1] in (b"{", b"["):
        return json.loads

    def jwt_layers(body: bytes) -> Any:
        claims = _b64_json(body.split(b".")[1].decode())
        envelope = json.loads(claims["data"]) if isinstance(claims["data"], str) else claims["data"]
        data = envelope["data"]
        return json.loads(data) if isinstance(data, str) else data

    return jwt_layers


def pipeline(key: str, cell: str) -> Callable[[bytes, dict[str, str]], int]:
    """One delivery through the cell's steps; returns the number of canonical events."""
    provider = PROVIDERS[key]
    # as the bridge verifies: the secrets bound once (keys parsed), then one check per delivery
    verifier = provider.bind(test_secrets()[key])
    where = target(key)
    codec = default_codec()
    context = DecodeContext(tenant=None, received_at=datetime(2026, 1, 2, tzinfo=UTC))
    parse = baseline(key)

    def json_only(body: bytes, headers: dict[str, str]) -> int:
        parse(body)
        return 1

    def decode(body: bytes, headers: dict[str, str]) -> int:
        return len(provider.decode(body, headers, context))

    def verify_decode(body: bytes, headers: dict[str, str]) -> int:
        verifier.verify(body, headers, where)
        return len(provider.decode(body, headers, context))

    def verify_decode_avro(body: bytes, headers: dict[str, str]) -> int:
        verifier.verify(body, headers, where)
        events = provider.decode(body, headers, context)
        for event in events:
            codec.encode(event)
        return len(events)

    return {
        "json_loads_baseline": json_only,
        "decode": decode,
        "verify_decode": verify_decode,
        "verify_decode_avro": verify_decode_avro,
    }[cell]


def measure(
    step: Callable[[bytes, dict[str, str]], int],
    deliveries: list[Delivery],
    seconds: float,
    repeats: int,
) -> dict[str, Any]:
    """Median deliveries/s and events/s over `repeats` runs of at least `seconds` each."""
    events_per_pass = sum(step(b, h) for b, h in deliveries)  # warm-up, and the event count
    deliveries_per_pass = len(deliveries)
    # Calibrate a batch of passes that takes ~0.1 s so perf_counter overhead is negligible.
    passes = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(passes):
            for body, headers in deliveries:
                step(body, headers)
        if time.perf_counter() - t0 >= 0.1 or passes >= 1 << 20:
            break
        passes *= 2
    runs = []
    for _ in range(repeats):
        done = 0
        t0 = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds:
            for _ in range(passes):
                for body, headers in deliveries:
                    step(body, headers)
            done += passes
            elapsed = time.perf_counter() - t0
        runs.append((done, elapsed))
    rates = sorted(done * deliveries_per_pass / elapsed for done, elapsed in runs)
    median = statistics.median(rates)
    return {
        "deliveries_per_s": round(median, 1),
        # events/s: deliveries/s scaled by the events per delivery of this fixture set; for the
        # baseline, one "event" per body (it produces none).
        "events_per_s": round(median * events_per_pass / deliveries_per_pass, 1),
        "us_per_delivery": round(1e6 / median, 2),
        "repeats": [round(d * deliveries_per_pass / e, 1) for d, e in runs],
        "seconds_per_repeat": round(statistics.median(e for _, e in runs), 3),
    }


def write_chart(results: dict[str, Any], path: Path) -> None:
    keys = list(results["providers"])
    width = 0.2
    with charts.figure(path, figsize=(9, 4.8), dpi=120) as (_, ax):
        for i, cell in enumerate(CELLS):
            values = [results["providers"][k]["cells"][cell]["deliveries_per_s"] for k in keys]
            xs = [x + (i - 1.5) * width for x in range(len(keys))]
            bars = ax.bar(xs, values, width, label=LABELS[cell])
            ax.bar_label(bars, labels=[f"{v / 1000:.0f}k" for v in values], fontsize=7, padding=2)
        ax.set_xticks(range(len(keys)), keys)
        ax.set_yscale("log")
        ax.set_ylabel("deliveries per second (log scale, median)")
        ax.set_title(f"Webhook decode throughput, one core, Python {results['machine']['python']}")
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(axis="y", which="both", alpha=0.3)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "## Decode benchmark",
        "",
        "Deliveries per second on one core (median of "
        f"{results['settings']['repeats']} runs of ≥ {results['settings']['seconds_per_cell']} s), "
        "over every signed fixture of the provider (the same bodies for every column). "
        "Events/s would differ where a delivery yields several events or none; for these "
        "fixture sets they are equal (Wix: `account_created` gives two, the earning-rule doc "
        "sample none).",
        "",
        "| provider | bodies | json.loads only | decode | verify + decode | "
        "verify + decode + Avro | events/s (verify + decode + Avro) | µs per delivery (full) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in results["providers"].items():
        c = r["cells"]
        lines.append(
            f"| {key} | {r['bodies']} | "
            + " | ".join(f"{c[cell]['deliveries_per_s']:,.0f}" for cell in CELLS)
            + f" | {c['verify_decode_avro']['events_per_s']:,.0f}"
            + f" | {c['verify_decode_avro']['us_per_delivery']:.1f} |"
        )
    lines += [
        "",
        f"Measured on {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, "
        f"{results['date']}, on a shared machine (the raw repeats are in the JSON). The "
        "json.loads column parses the same bodies (Wix: the three JSON layers inside the token, "
        "without its RS256 signature check, which is most of Wix's verify cost).",
        "",
        "Reproduce: `.venv/bin/python benchmarks/decode.py` (`--quick` for a smoke run); it "
        "writes `benchmarks/results/decode.json` and `benchmarks/results/decode.png`.",
        "",
        "![decode throughput](benchmarks/results/decode.png)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short cells (smoke run)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--render-only", action="store_true", help="redraw chart and table from decode.json"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        results = json.loads((args.out / "decode.json").read_text())
        write_chart(results, args.out / "decode.png")
        README_SNIPPET.write_text(markdown(results))
        return 0
    seconds = args.seconds or (0.2 if args.quick else 2.0)
    repeats = args.repeats or (3 if args.quick else 5)

    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"seconds_per_cell": seconds, "repeats": repeats, "quick": args.quick},
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(terse=True),
            "cpu_count": os.cpu_count(),
        },
        "providers": {},
    }
    for key in sorted(PROVIDERS):
        deliveries = signed_deliveries(key)
        cells = {}
        for cell in CELLS:
            cells[cell] = measure(pipeline(key, cell), deliveries, seconds, repeats)
            print(
                f"{key:13} {LABELS[cell]:32} {cells[cell]['deliveries_per_s']:>12,.0f} deliveries/s"
                f" {cells[cell]['events_per_s']:>12,.0f} events/s",
                flush=True,
            )
        base = cells["json_loads_baseline"]["deliveries_per_s"]
        results["providers"][key] = {
            "bodies": len(deliveries),
            "mean_body_bytes": round(sum(len(b) for b, _ in deliveries) / len(deliveries)),
            "cells": cells,
            "slowdown_vs_json_loads": {
                cell: round(base / cells[cell]["deliveries_per_s"], 1) for cell in CELLS[1:]
            },
        }

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decode.json").write_text(json.dumps(results, indent=2) + "\n")
    write_chart(results, args.out / "decode.png")
    README_SNIPPET.write_text(markdown(results))
    print(f"wrote {args.out / 'decode.json'}, {args.out / 'decode.png'}, {README_SNIPPET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
