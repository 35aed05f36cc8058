"""Signature checks per delivery: `verify(body, headers, secrets)` (secrets read per request)
against the bound verifier (`provider.bind(secrets)` once, then `verify(body, headers)`).

For Wix also the check as it was before binding, `jwt.decode` with the cached key, which is what
the bound verifier replaced. The cells of one provider are measured in turns (A, B, C, A, B, C,
...) so a noisy machine slows them alike; each reports the median µs per delivery over every
signed fixture of the provider.

    .venv/bin/python benchmarks/verify.py            # 1 s per turn, 7 turns
    .venv/bin/python benchmarks/verify.py --quick

Writes benchmarks/results/verify.json (or --out DIR).
"""

from __future__ import annotations

import argparse
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

import jwt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connector.kit.payloads import secrets as test_secrets  # noqa: E402
from connector.providers import PROVIDERS, RequestTarget  # noqa: E402
from connector.providers.wix import _public_key  # noqa: E402
from tests.support import fixture_cases  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
Check = Callable[[bytes, dict[str, str]], None]


def cells(key: str) -> dict[str, Check]:
    provider, secrets = PROVIDERS[key], test_secrets()[key]
    target = RequestTarget("POST", "127.0.0.1", f"/webhooks/{key}")
    bound = provider.bind(secrets)
    out: dict[str, Check] = {
        "verify(secrets) per request": lambda b, h: provider.verify(b, h, secrets, target),
        "bound verifier": lambda b, h: bound.verify(b, h, target),
    }
    if key == "wix":  # the check before secrets were bound: PyJWT with the (cached) key object

        def before(body: bytes, headers: dict[str, str]) -> None:
            jwt.decode(
                body.decode("ascii"),
                _public_key(secrets["public_key"]),
                algorithms=["RS256"],
                options={"require": ["exp", "iat"], "verify_aud": False},
                leeway=0.0,
            )

        out = {"jwt.decode (before)": before, **out}
    return out


def deliveries(key: str) -> list[tuple[bytes, dict[str, str]]]:
    provider, secrets = PROVIDERS[key], test_secrets()[key]
    target = RequestTarget("POST", "127.0.0.1", f"/webhooks/{key}")
    return [provider.sign(c.read_bytes(), secrets, target=target) for c in fixture_cases(key)]


def turn(check: Check, items: list[tuple[bytes, dict[str, str]]], seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for body, headers in items:
            check(body, headers)
        n += len(items)
    return 1e6 * elapsed / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seconds, turns = (0.2, 3) if args.quick else (1.0, 7)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"seconds_per_turn": seconds, "turns": turns},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "cpu_count": os.cpu_count(),
        },
        "us_per_delivery": {},
    }
    for key in PROVIDERS:
        items = deliveries(key)
        checks = cells(key)
        for check in checks.values():  # warm up, and every one accepts every delivery
            for body, headers in items:
                check(body, headers)
        runs: dict[str, list[float]] = {name: [] for name in checks}
        for _ in range(turns):
            for name, check in checks.items():
                runs[name].append(turn(check, items, seconds))
        medians = {name: round(statistics.median(r), 2) for name, r in runs.items()}
        results["us_per_delivery"][key] = medians
        print(f"{key:13} " + "  ".join(f"{n}: {v:7.1f} µs" for n, v in medians.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "verify.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out / 'verify.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
