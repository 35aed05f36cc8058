"""Settings come from one env mapping; bad values name the variable; docs and compose agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.settings import VARIABLE_NAMES, VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_sensible() -> None:
    s = Settings.from_env({})
    assert s.broker_url is None and s.bootstrap_servers == "localhost:9092"
    assert s.bridge_port == 8080 and s.web_port == 6066
    assert s.topics.raw == "loyalty.webhooks.raw" and s.topics.balances == "loyalty.balances"
    assert s.max_body_bytes == 1024 * 1024
    assert s.ack_timeout_ms < 1250  # Wix wants a 200 within 1250 ms
    assert s.processing_guarantee == "at_least_once"


def test_prefix_renames_every_topic() -> None:
    topics = Settings.from_env({"CONNECTOR_TOPIC_PREFIX": "acme"}).topics.all()
    assert all(t.startswith("acme.") for t in topics.values())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONNECTOR_BRIDGE_PORT", "eighty"),
        ("CONNECTOR_WEB_PORT", "70000"),
        ("CONNECTOR_PARTITIONS", "0"),
        ("CONNECTOR_LOG_LEVEL", "LOUD"),
        ("CONNECTOR_PROCESSING_GUARANTEE", "maybe"),
        ("CONNECTOR_BROKER_URL", "localhost"),
        ("CONNECTOR_IDEMPOTENT_PRODUCER", "perhaps"),
        ("CONNECTOR_TOPIC_PREFIX", "bad prefix"),
        ("CONNECTOR_GAMEBALL_SIGNATURE_ENCODING", "rot13"),
        ("CONNECTOR_OPEN_LOYALTY_TIMESTAMP_TOLERANCE", "-5"),
        ("CONNECTOR_WIX_PUBLIC_KEY", "not a pem"),
        ("CONNECTOR_WIX_PUBLIC_KEY_FILE", "/nonexistent/key.pem"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name.replace("CONNECTOR_", "")):
        Settings.from_env({name: value})


def test_broker_url_forms() -> None:
    s = Settings.from_env({"CONNECTOR_BROKER_URL": "kafka://a:9092, b:9093"})
    assert s.bootstrap_servers == "a:9092,b:9093"


def test_secrets_are_not_in_repr() -> None:
    s = Settings.from_env({"CONNECTOR_VOUCHERIFY_SECRET_KEY": "sup3r-s3cret"})
    assert "sup3r-s3cret" not in repr(s)
    assert "sup3r-s3cret" not in repr(s.provider("voucherify"))
    assert s.provider("voucherify").secrets_for(None) == {"secret_key": "sup3r-s3cret"}


def test_wix_public_key_file_is_read(tmp_path: Path) -> None:
    pem = "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"
    (tmp_path / "k.pem").write_text(pem)
    s = Settings.from_env({"CONNECTOR_WIX_PUBLIC_KEY_FILE": str(tmp_path / "k.pem")})
    assert s.provider("wix").secrets_for(None)["public_key"] == pem  # type: ignore[index]


def test_tenants_file_gives_per_tenant_secrets(tmp_path: Path) -> None:
    f = tmp_path / "tenants.toml"
    f.write_text('[gameball.shop-eu]\nsecret_key = "eu"\n[gameball.shop-us]\nsecret_key = "us"\n')
    f.chmod(0o600)
    s = Settings.from_env(
        {"CONNECTOR_TENANTS_FILE": str(f), "CONNECTOR_GAMEBALL_SECRET_KEY": "global"}
    )
    gb = s.provider("gameball")
    assert gb.secrets_for("shop-eu")["secret_key"] == "eu"  # type: ignore[index]
    assert gb.secrets_for("shop-us")["secret_key"] == "us"  # type: ignore[index]
    assert gb.secrets_for(None)["secret_key"] == "global"  # type: ignore[index]
    assert gb.secrets_for("shop-xx") is None  # unknown tenant of a tenanted provider
    assert gb.tenant_names == ("shop-eu", "shop-us")
    # A provider without tenants accepts any tenant label with its global secrets.
    assert s.provider("voucherify").secrets_for("anything") is not None


@pytest.mark.parametrize(
    "text", ['[nope.t]\nx = "1"\n', '[gameball.t]\nsecret = "1"\n', "not toml ["]
)
def test_bad_tenants_file_is_a_clear_error(tmp_path: Path, text: str) -> None:
    f = tmp_path / "tenants.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match="CONNECTOR_TENANTS_FILE"):
        Settings.from_env({"CONNECTOR_TENANTS_FILE": str(f)})


def test_readme_table_lists_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(CONNECTOR_[A-Z0-9_]+)` \|", readme, re.M))
    assert documented == set(VARIABLE_NAMES)
    for var in VARIABLES:  # defaults in the table match the code
        row = re.search(rf"^\| `{var.name}` \| ([^|]*) \|", readme, re.M)
        assert row is not None
        shown = row.group(1).strip().strip("`")
        assert shown == (var.default if var.default is not None else "(unset)"), var.name


def test_docker_compose_uses_only_real_settings() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    names = set(re.findall(r"\b(CONNECTOR_[A-Z0-9_]+)\b", text))
    assert names, "docker-compose.yml configures the connector through CONNECTOR_* variables"
    assert names <= set(VARIABLE_NAMES), names - set(VARIABLE_NAMES)


def test_only_settings_reads_os_environ() -> None:
    offenders = [
        p.relative_to(ROOT)
        for p in (ROOT / "connector").rglob("*.py")
        if "os.environ" in p.read_text() and p.name != "settings.py"
    ]
    assert offenders == []
