"""Providers from installed packages: the `loyalty_connector.providers` entry-point group.

Each test puts a made-up installed distribution (its modules and a `.dist-info` with
entry_points.txt, as pip would leave them) on `sys.path` and loads the registry afresh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.models import Provider
from connector.providers import load_providers
from tests.support import write_plugin

ACME = Path(__file__).resolve().parents[2] / "plugins" / "loyalty_connector_acme"
ACME_TARGET = "loyalty_connector_acme:Acme"


def installed_acme(root: Path, dist: str = "loyalty-connector-acme") -> Path:
    shutil.copytree(ACME / "loyalty_connector_acme", root / "loyalty_connector_acme")
    return write_plugin(root, dist, {"acme": ACME_TARGET}, {})


def test_an_installed_plugin_is_a_provider_like_the_built_in_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(installed_acme(tmp_path)))
    providers = load_providers()
    assert list(providers) == ["acme", "gameball", "open_loyalty", "voucherify", "wix"]
    acme = providers["acme"]
    assert acme.provider is Provider.OTHER
    assert [o.name for o in acme.options] == ["SECRET"]
    assert acme.samples() == tmp_path / "loyalty_connector_acme" / "samples"
    assert acme.test_secrets() == {"secret": "acme-test-secret"}


@pytest.mark.parametrize(
    ("entry_points", "modules", "message"),
    [
        (
            {"acme": "lc_broken:Acme"},
            {"lc_broken.py": "raise ImportError('needs acme-sdk')\n"},
            "cannot load provider plugin entry point acme = 'lc_broken:Acme' in group "
            "loyalty_connector.providers (from loyalty-connector-broken 0.1): ImportError: "
            "needs acme-sdk",
        ),
        ({"acme": "lc_missing:Acme"}, {}, "ModuleNotFoundError: No module named 'lc_missing'"),
        (
            {"wix": "lc_twin:Twin"},
            {
                "lc_twin.py": f"from {ACME_TARGET.replace(':', ' import ')}\n"
                "class Twin(Acme):\n    key = 'wix'\n"
            },
            "key 'wix' is a built-in provider; uninstall one of them",
        ),
        (
            {"acme2": ACME_TARGET},
            {},
            "has key 'acme'; the entry point's name must be it",
        ),
        ({"acme": "lc_thing:Thing"}, {"lc_thing.py": "class Thing:\n    key = 'acme'\n"}, "lacks"),
        (
            {"acme": "lc_open:Open"},
            {
                "lc_open.py": f"from {ACME_TARGET.replace(':', ' import ')}\nclass Open(Acme):\n"
                "    options = ()\n"
            },
            "marks no option required=True and implements no is_configured",
        ),
    ],
)
def test_a_broken_or_clashing_plugin_is_a_config_error_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entry_points: dict[str, str],
    modules: dict[str, str],
    message: str,
) -> None:
    shutil.copytree(ACME / "loyalty_connector_acme", tmp_path / "loyalty_connector_acme")
    monkeypatch.syspath_prepend(
        str(write_plugin(tmp_path, "loyalty-connector-broken", entry_points, modules))
    )
    with pytest.raises(ConfigError) as err:
        load_providers()
    assert message in str(err.value)
    assert "entry point" in str(err.value) and "loyalty-connector-broken" in str(err.value)


def test_two_packages_with_one_key_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed_acme(tmp_path / "a")
    write_plugin(tmp_path / "b", "acme-fork", {"acme": ACME_TARGET}, {})
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    with pytest.raises(ConfigError, match="key 'acme' is registered twice"):
        load_providers()


def test_the_command_line_reports_a_broken_plugin_in_one_line(tmp_path: Path) -> None:
    root = write_plugin(
        tmp_path,
        "loyalty-connector-broken",
        {"acme": "lc_broken:Acme"},
        {"lc_broken.py": "raise RuntimeError('boom')\n"},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for argv in (["config"], ["decode", "--provider", "wix", "--no-verify", "x.json"]):
        done = subprocess.run(
            [sys.executable, "-m", "connector", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error: cannot load provider plugin entry point acme = ")
        assert "RuntimeError: boom" in line
