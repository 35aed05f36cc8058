"""Test secrets and signing helpers shared by unit and integration tests.

The secrets are the providers' own `test_secrets()` (each provider module owns them), gathered
by the support kit (`connector.kit.payloads`), so a new provider needs nothing here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from connector.kit import payloads
from connector.kit.payloads import other_wix_keypair as other_wix_keypair
from connector.providers import PROVIDERS, WebhookProvider
from connector.providers.wix import test_keypair as _wix_test_keypair

FIXTURES = Path(__file__).parent / "fixtures"


def wix_keypair() -> tuple[str, str]:
    """(private PEM, public PEM) made once per test session; no key is committed."""
    return _wix_test_keypair()


def test_secrets() -> dict[str, dict[str, str]]:
    """Per-provider secrets in the shape Settings hands to providers."""
    return payloads.secrets()


test_secrets.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_env() -> dict[str, str]:
    """CONNECTOR_* variables carrying the same test secrets (for Settings.from_env)."""
    return payloads.secret_env()


test_env.__test__ = False  # type: ignore[attr-defined]


@contextlib.contextmanager
def registered(provider: WebhookProvider) -> Iterator[WebhookProvider]:
    """`provider` in `PROVIDERS` for the duration (a throw-away provider of one test)."""
    PROVIDERS.add(provider)
    try:
        yield provider
    finally:
        PROVIDERS.remove(provider.key)


def fixture_cases(provider: str) -> list[Path]:
    """Every `<case>.json` payload of a provider that has a `<case>.expected.json` beside it."""
    folder = FIXTURES / provider
    return sorted(
        p
        for p in folder.glob("*.json")
        if not p.name.endswith(".expected.json") and p.with_suffix(".expected.json").exists()
    )


def expected_for(case: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(case.with_suffix(".expected.json").read_text())
    return data


def write_plugin(
    root: Path, dist: str, entry_points: Mapping[str, str], modules: Mapping[str, str]
) -> Path:
    """An installed-looking distribution under `root` (put `root` on `sys.path`/`PYTHONPATH`):
    its modules and a `<dist>.dist-info` whose entry_points.txt declares `entry_points`
    (`{"acme": "module:Class"}`) in the `loyalty_connector.providers` group."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[loyalty_connector.providers]\n{lines}")
    return root
