"""What `BaseProvider` gives a provider that does not say otherwise: `is_configured` from its
`required` options, test and dev secrets from the options' `test`/`dev` values, its samples
folder and no delivery id (`verify` through `bind`: every built-in provider's tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.providers import PROVIDERS
from connector.providers.base import BaseProvider, Option
from connector.resources import samples_dir


class Minimal(BaseProvider):
    key = "minimal"
    options = (
        Option("TOKEN", None, "t", secret=True, required=True, test="t-test", dev="t-dev"),
        Option("KEY_FILE", None, "k", required=True),
        Option("MODE", "fast", "m", test="slow"),
    )


def test_built_in_secrets_are_what_they_were(tmp_path: Path) -> None:
    secrets = {
        key: (PROVIDERS[key].test_secrets(), PROVIDERS[key].dev_secrets(tmp_path))
        for key in ("gameball", "open_loyalty", "voucherify")
    }
    assert secrets["gameball"] == (
        {"secret_key": "gb-test-secret"},
        {"secret_key": "dev-gameball-secret"},
    )
    assert secrets["voucherify"] == (
        {"secret_key": "vf-test-secret"},
        {"secret_key": "dev-voucherify-secret"},
    )
    assert secrets["open_loyalty"] == (
        {
            "header_name": "X-OL-Token",
            "header_value": "ol-test-token",
            "hmac_secret": "ol-test-hmac",
        },
        {
            "header_name": "X-Loyalty-Token",
            "header_value": "dev-open-loyalty-token",
            "hmac_secret": "dev-open-loyalty-hmac",
        },
    )


def test_secrets_come_from_the_options_and_dev_defaults_to_test() -> None:
    assert Minimal().test_secrets() == {"token": "t-test", "mode": "slow"}
    assert Minimal().dev_secrets(Path("unused")) == {"token": "t-dev", "mode": "slow"}
    assert "t-test" not in repr(Minimal.options)


def test_configured_when_every_required_option_is_set_a_file_option_by_its_value() -> None:
    assert Minimal().is_configured({"token": "x", "key": "pem"})
    assert not Minimal().is_configured({"token": "x"})
    assert not Minimal().is_configured({"token": "", "key": "pem"})
    assert PROVIDERS["wix"].is_configured({"public_key": "pem"})
    assert not PROVIDERS["wix"].is_configured({"private_key": "pem"})


def test_without_a_required_option_is_configured_must_be_written() -> None:
    class Open(Minimal):
        options = (Option("MODE", "fast", "m"),)

    with pytest.raises(NotImplementedError, match="required=True"):
        Open().is_configured({})


def test_there_is_no_delivery_id_unless_the_provider_reads_one() -> None:
    assert Minimal().delivery_id(b'{"id": "x"}', {}) is None
    assert PROVIDERS["gameball"].delivery_id(b'{"id": "x"}', {}) is None


def test_samples_are_the_connectors_folder_or_one_beside_the_module() -> None:
    for key, provider in PROVIDERS.items():
        assert provider.samples() == samples_dir() / key
    assert Minimal().samples() is None  # neither connector/samples/minimal nor ./samples
    # a plugin's `samples/` beside its module: test_plugins.py, with the installed Acme
