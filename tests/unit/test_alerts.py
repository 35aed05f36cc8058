"""deploy/alerts.yml: valid Prometheus rules that fire when they should, on metrics that exist.

promtool comes from Debian's `prometheus` package (the version on this machine's list), fetched
once with `apt-get download` into the suite's cache (~/.cache/loyalty-connector/); when it
cannot be obtained the tests fail with apt's output, they never skip.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "alerts.yml"
PROMTOOL_DIR = Path.home() / ".cache" / "loyalty-connector" / "promtool-2.42.0"


@pytest.fixture(scope="session")
def promtool() -> Path:
    binary = PROMTOOL_DIR / "promtool"
    if binary.exists():
        return binary
    PROMTOOL_DIR.mkdir(parents=True, exist_ok=True)
    with open(PROMTOOL_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        with tempfile.TemporaryDirectory() as tmp:
            got = subprocess.run(
                ["apt-get", "download", "prometheus=2.42.0+ds-5+deb12u1"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=600,
            )
            debs = list(Path(tmp).glob("prometheus_*.deb"))
            if got.returncode != 0 or not debs:
                pytest.fail(f"cannot fetch Debian's prometheus package:\n{got.stdout}{got.stderr}")
            out = Path(tmp) / "x"
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(out)], check=True, timeout=120)
            shutil.copy2(out / "usr" / "bin" / "promtool", binary)
    return binary


def test_the_rules_are_valid(promtool: Path) -> None:
    done = subprocess.run(
        [str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_rules_fire_when_they_should(promtool: Path) -> None:
    done = subprocess.run(
        [str(promtool), "test", "rules", "alerts.test.yml"],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_the_rules_use_is_exported() -> None:
    # every metric the connector exports is named by a string literal where it is declared
    source = "".join(p.read_text() for p in (ROOT / "connector").rglob("*.py"))
    exported = set(re.findall(r'"((?:bridge|worker)_[a-z_]+)"', source))
    assert {"bridge_consecutive_refusals", "worker_event_age_seconds"} <= exported
    text = RULES.read_text()
    used = {u.removesuffix("_bucket") for u in re.findall(r"\b(?:bridge|worker)_[a-z_]+", text)}
    assert sorted(used - exported) == [], "alerts.yml uses metrics nobody exports"
    rules = [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]
    assert len(rules) == 6 and all(r["annotations"]["summary"] for r in rules)


def test_the_bridge_counts_refusals_in_a_row_per_provider_and_tenant() -> None:
    import asyncio

    from tests.unit.test_bridge import GB_BODY, FakeProducer, bridge, gb_headers, settings

    async def go() -> None:
        async with bridge(settings(), FakeProducer()) as client:
            forged = gb_headers(secret="not-the-secret")
            for _ in range(3):
                resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=forged)
                assert resp.status == 401
            text = await (await client.get("/metrics")).text()
            assert 'bridge_consecutive_refusals{provider="gameball",tenant="default"} 3.0' in text
            resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
            assert resp.status == 200
            text = await (await client.get("/metrics")).text()
            assert 'bridge_consecutive_refusals{provider="gameball",tenant="default"} 0.0' in text
            stamp = re.search(
                r'bridge_last_accepted_timestamp_seconds\{provider="gameball",tenant="default"\} '
                r"([0-9.e+]+)",
                text,
            )
            assert stamp is not None and float(stamp.group(1)) > 1.7e9

    asyncio.run(go())
