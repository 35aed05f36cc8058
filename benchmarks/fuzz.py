"""Fuzzing campaign: hypothesis over every provider's verify and decode, counts and failures.

    .venv/bin/python benchmarks/fuzz.py [--examples N] [--providers gameball,wix] [--seed S]

For each provider, N generated inputs (default 100,000), in three families that reuse the
strategies of the unit suite (`tests/unit/providers/test_fuzz.py`, which runs a small count in
`make test`; FUZZ_EXAMPLES scales it there):

* `mutated`   (half)  the provider's fixture payloads, mutated structurally (keys dropped, values
                      swapped for other JSON types and numbers the schema cannot hold, layers
                      wrapped, stringified or unwrapped);
* `json`      (a quarter) arbitrary JSON documents;
* `bytes`     (a quarter) arbitrary bytes with arbitrary signature headers.

Every input goes through:

* decode (the unit suite's `_check`): DecodeError, or events that encode with the Avro codec and
  print as JSON; `delivery_id` on the body. Anything else escaping is an unhandled exception;
* verify without a valid signature (arbitrary header values): must raise VerificationError;
  passing is "accepted unsigned", any other exception is unhandled;
* for `mutated` and `json` inputs: verify of the body signed with the right secret must pass
  ("authentic refused" otherwise), and of that signed body with one byte changed to a
  non-whitespace byte (for Wix: inside the token's claims segment) must raise VerificationError
  ("tampered accepted" otherwise).

Failures are collected, not raised (hypothesis does not stop or shrink), so one run reports all
of them with a sample input each. Writes benchmarks/results/fuzz.json; exits 1 if any provider
had an unhandled exception, an accepted unsigned or tampered body, or a refused authentic one.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import platform
import sys
import time
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from connector.errors import ConfigError, DecodeError, VerificationError  # noqa: E402
from connector.kit.payloads import secrets as test_secrets  # noqa: E402
from connector.providers import PROVIDERS, RequestTarget  # noqa: E402
from tests.unit.providers.test_fuzz import (  # noqa: E402
    JSON,
    KEYS,
    PAYLOADS,
    VERSION_HEADERS,
    _check,
    _dump,
    _expand,
    mutated,
)

RESULTS = ROOT / "benchmarks" / "results"
SLOW_S = 5.0  # an input that takes longer is a finding (a webhook that costs seconds is a DoS)
HANG_DUMP_S = 60.0  # still running after this: dump every thread's stack to stderr
FAMILIES = (("mutated", 0.5), ("json", 0.25), ("bytes", 0.25))


def target(key: str) -> RequestTarget:
    """Where the fuzzed deliveries are "posted" (Open Loyalty Cloud signs the request line)."""
    return RequestTarget("POST", "127.0.0.1", f"/webhooks/{key}")


def signature_headers() -> tuple[str, ...]:
    """The headers the providers sign with (an unsigned body is tried with all of them)."""
    names: set[str] = set()
    for key, provider in PROVIDERS.items():
        try:
            _, headers = provider.sign(b"{}", test_secrets()[key], target=target(key))
        except Exception:  # noqa: S112 - e.g. Wix signs documents only; its body is the token
            continue
        names |= {n for n in headers if n.lower() not in {"content-type", "user-agent"}}
    return tuple(sorted(names))


SIGNATURE_HEADERS = signature_headers()


class Tally:
    """Counts and failures of one provider (failures kept with the first few samples)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.counts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.samples: dict[str, dict[str, Any]] = {}
        self.slowest = 0.0

    def fail(self, what: str, body: bytes, exc: BaseException | None = None) -> None:
        label = what if exc is None else f"{what}: {type(exc).__name__}: {str(exc)[:120]}"
        self.failures[label] += 1
        if label not in self.samples and len(self.samples) < 50:
            self.samples[label] = {
                "body": body[:2000].decode("utf-8", "replace"),
                "traceback": "" if exc is None else traceback.format_exc()[-2000:],
            }

    def timed(self, family: str, body: bytes, checks: Any) -> None:
        """Run one input's checks; a slow one is a failure, a hung one dumps its stack."""
        self.counts["inputs"] += 1
        faulthandler.dump_traceback_later(HANG_DUMP_S, exit=False)
        started = time.perf_counter()
        try:
            checks()
        finally:
            faulthandler.cancel_dump_traceback_later()
        took = time.perf_counter() - started
        self.slowest = max(self.slowest, took)
        if took > SLOW_S:
            self.fail(f"slow input ({family}, > {SLOW_S:.0f}s)", body)
            print(f"  slow {family} input: {took:.1f}s: {body[:300]!r}", flush=True)

    def decode(self, body: bytes, headers: dict[str, str]) -> None:
        self.counts["decode"] += 1
        try:
            _check(self.key, body, headers)
        except Exception as exc:
            self.fail("decode unhandled", body, exc)

    def verify_unsigned(self, body: bytes, signature: str) -> None:
        self.counts["verify_unsigned"] += 1
        headers = dict.fromkeys(SIGNATURE_HEADERS, signature)
        try:
            PROVIDERS[self.key].verify(body, headers, test_secrets()[self.key], target(self.key))
        except VerificationError:
            return
        except Exception as exc:
            self.fail("verify unhandled", body, exc)
            return
        self.fail("accepted unsigned", body)

    def verify_signed(self, body: bytes, position: int) -> None:
        provider, secrets = PROVIDERS[self.key], test_secrets()[self.key]
        try:
            signed, headers = provider.sign(body, secrets, target=target(self.key))
        except (ConfigError, DecodeError, ValueError, TypeError):
            self.counts["unsignable"] += 1  # e.g. a Wix document that is not an envelope
            return
        self.counts["verify_authentic"] += 1
        try:
            provider.verify(signed, headers, secrets, target(self.key))
        except Exception as exc:
            self.fail("authentic refused", signed, exc)
        self.counts["verify_tampered"] += 1
        tampered = tamper(self.key, signed, position)
        try:
            provider.verify(tampered, headers, secrets, target(self.key))
        except VerificationError:
            return
        except Exception as exc:
            self.fail("verify unhandled (tampered)", tampered, exc)
            return
        self.fail("tampered accepted", tampered)

    def as_json(self, seconds: float) -> dict[str, Any]:
        return {
            "inputs": self.counts["inputs"],
            "counts": dict(self.counts),
            "seconds": round(seconds, 1),
            "slowest_input_s": round(self.slowest, 3),
            "failures": dict(self.failures),
            "samples": self.samples,
        }


def tamper(key: str, signed: bytes, position: int) -> bytes:
    """`signed` with one byte changed to a non-whitespace byte (JWT: in the claims segment)."""
    if key == "wix":
        head, claims, sig = signed.split(b".")
        i = position % len(claims) if claims else 0
        new = b"A" if claims[i : i + 1] != b"A" else b"B"
        return b".".join([head, claims[:i] + new + claims[i + 1 :], sig])
    if not signed:
        return b"x"
    i = position % len(signed)
    new = b"x" if signed[i : i + 1] != b"x" else b"y"
    return signed[:i] + new + signed[i + 1 :]


def run_provider(key: str, examples: int, seed: int | None) -> Tally:
    tally = Tally(key)
    docs = [_expand(json.loads(path.read_text())) for k, path in PAYLOADS if k == key]
    positions = st.integers(min_value=0, max_value=10**6)

    def config(n: int) -> settings:
        return settings(
            max_examples=n,
            deadline=None,
            database=None,
            derandomize=seed is not None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )

    for family, share in FAMILIES:
        n = max(1, int(examples * share))
        if family == "mutated":

            @config(n)
            @given(data=st.data(), headers=VERSION_HEADERS, sig=st.text(max_size=64), pos=positions)
            def run(data: st.DataObject, headers: dict[str, str], sig: str, pos: int) -> None:
                doc = data.draw(st.sampled_from(docs))
                body = _dump(data.draw(mutated(doc)))

                def checks() -> None:
                    tally.decode(body, headers)  # version headers: only Gameball reads them
                    tally.verify_unsigned(body, sig)
                    tally.verify_signed(body, pos)

                tally.timed("mutated", body, checks)

        elif family == "json":

            @config(n)
            @given(value=JSON, sig=st.text(max_size=64), pos=positions)
            def run(value: Any, sig: str, pos: int) -> None:
                body = json.dumps(value).encode()

                def checks() -> None:
                    tally.decode(body, {})
                    tally.verify_unsigned(body, sig)
                    tally.verify_signed(body, pos)

                tally.timed("json", body, checks)

        else:

            @config(n)
            @given(body=st.binary(max_size=400), sig=st.text(max_size=64))
            def run(body: bytes, sig: str) -> None:
                def checks() -> None:
                    tally.decode(body, {})
                    tally.verify_unsigned(body, sig)

                tally.timed("bytes", body, checks)

        before = tally.counts["inputs"]
        started = time.perf_counter()
        run()
        print(
            f"  {key:13} {family:8} {tally.counts['inputs'] - before:>7} inputs "
            f"in {time.perf_counter() - started:6.1f}s",
            flush=True,
        )
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="inputs per provider")
    parser.add_argument("--providers", default=",".join(KEYS))
    parser.add_argument("--seed", type=int, default=None, help="derandomize (reproducible)")
    parser.add_argument("--out", default=str(RESULTS / "fuzz.json"))
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.providers.split(",") if k.strip()]
    unknown = set(keys) - set(KEYS)
    if unknown:
        parser.error(f"unknown providers {sorted(unknown)}")
    report: dict[str, Any] = {
        "examples_per_provider": args.examples,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "providers": {},
    }
    bad = False
    for key in keys:
        print(f"{key}: {args.examples} inputs", flush=True)
        started = time.perf_counter()
        tally = run_provider(key, args.examples, args.seed)
        report["providers"][key] = tally.as_json(time.perf_counter() - started)
        print(f"  {key}: {dict(tally.counts)}; failures: {dict(tally.failures) or 'none'}")
        bad = bad or bool(tally.failures)
    report["ok"] = not bad
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'PASS' if not bad else 'FAIL'}; written {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
