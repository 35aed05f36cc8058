"""Settings come from one env mapping; bad values name the variable; docs and compose agree."""

from __future__ import annotations

import json
import os
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


# ---------------------------------------------------------------------------------------------
# inline or *_FILE, `dev`'s sample secrets, `config`


def test_an_option_given_inline_and_as_a_file_names_both(tmp_path: Path) -> None:
    pem = tmp_path / "k.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n")
    env = {"CONNECTOR_WIX_PUBLIC_KEY": pem.read_text(), "CONNECTOR_WIX_PUBLIC_KEY_FILE": str(pem)}
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert "CONNECTOR_WIX_PUBLIC_KEY and CONNECTOR_WIX_PUBLIC_KEY_FILE are both set" in str(err)
    # the same in a tenants file table
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        f'[wix.site-1]\npublic_key = "-----BEGIN PUBLIC KEY-----"\npublic_key_file = "{pem}"\n'
    )
    with pytest.raises(ConfigError, match=r"\[wix.site-1\] PUBLIC_KEY and .*PUBLIC_KEY_FILE"):
        Settings.from_env({"CONNECTOR_TENANTS_FILE": str(tenants)})


def test_dev_fills_sample_secrets_only_for_providers_the_user_left_alone(tmp_path: Path) -> None:
    from connector.dev import dev_secrets, fill_dev_secrets

    own_key = "-----BEGIN PUBLIC KEY-----\nmine\n-----END PUBLIC KEY-----\n"
    env = {"CONNECTOR_WIX_PUBLIC_KEY": own_key, "CONNECTOR_VOUCHERIFY_UNVERIFIED": "true"}
    used, own = fill_dev_secrets(env, dev_secrets(tmp_path))
    assert own == {
        "wix": ["CONNECTOR_WIX_PUBLIC_KEY"],
        "voucherify": ["CONNECTOR_VOUCHERIFY_UNVERIFIED"],
    }
    assert (
        "CONNECTOR_WIX_PUBLIC_KEY_FILE" not in env and "CONNECTOR_WIX_PRIVATE_KEY_FILE" not in env
    )
    assert "CONNECTOR_VOUCHERIFY_SECRET_KEY" not in env
    assert env["CONNECTOR_WIX_PUBLIC_KEY"] == own_key
    assert used["CONNECTOR_GAMEBALL_SECRET_KEY"] == env["CONNECTOR_GAMEBALL_SECRET_KEY"]
    assert "CONNECTOR_OPEN_LOYALTY_HMAC_SECRET" in used
    Settings.from_env(env)  # and the result is a valid configuration


def test_a_tenants_file_counts_as_the_users_configuration(tmp_path: Path) -> None:
    from connector.dev import dev_secrets, fill_dev_secrets

    tenants = tmp_path / "tenants.toml"
    tenants.write_text('[gameball.shop-eu]\nsecret_key = "theirs"\n')
    env = {"CONNECTOR_TENANTS_FILE": str(tenants)}
    used, own = fill_dev_secrets(env, dev_secrets(tmp_path))
    assert own == {"gameball": ["CONNECTOR_TENANTS_FILE [gameball.*]"]}
    assert "CONNECTOR_GAMEBALL_SECRET_KEY" not in used


def test_config_prints_effective_settings_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.cli import main

    for k in list(os.environ):
        if k.startswith("CONNECTOR_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("CONNECTOR_GAMEBALL_SECRET_KEY", "gb-very-secret")
    monkeypatch.setenv("CONNECTOR_SCHEMA_REGISTRY_PASSWORD", "registry-very-secret")
    monkeypatch.setenv("CONNECTOR_PARTITIONS", "12")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out
    assert re.search(r"CONNECTOR_GAMEBALL_SECRET_KEY +\*+ \(set\) +\[environment\]", out)
    assert re.search(r"CONNECTOR_PARTITIONS +12 +\[environment\]", out)
    assert re.search(r"CONNECTOR_BRIDGE_PORT +8080 +\[default\]", out)
    assert re.search(r"gameball +configured", out)
    assert re.search(r"voucherify +NOT configured", out)
    assert main(["config", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {v["name"] for v in report["variables"]} == VARIABLE_NAMES
    assert "very-secret" not in str(report)


def test_config_exits_non_zero_with_the_processes_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.cli import main

    monkeypatch.setenv("CONNECTOR_PROCESSING_GUARANTEE", "maybe")
    assert main(["config"]) == 1
    message = capsys.readouterr().err
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"CONNECTOR_PROCESSING_GUARANTEE": "maybe"})
    assert message.strip() == f"error: {err.value}"
    assert main(["worker"]) == 1  # the worker refuses with the very same line
    assert capsys.readouterr().err == message


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from connector.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"loyalty-connector {version('loyalty-connector')}"
    import connector

    assert connector.__version__ == version("loyalty-connector")  # the bridge's OpenAPI version


# ---------------------------------------------------------------------------------------------
# provider options come from the provider modules


def test_each_providers_variables_are_its_own_options() -> None:
    from connector.providers import PROVIDERS

    for key, provider in PROVIDERS.items():
        prefix = f"CONNECTOR_{key.upper()}_"
        declared = [v for v in VARIABLES if v.name.startswith(prefix)]
        assert [v.name for v in declared] == [prefix + o.name for o in provider.options] + [
            prefix + "UNVERIFIED"
        ]
        for var, opt in zip(declared, provider.options, strict=False):
            assert (var.default, var.help, var.secret) == (opt.default, opt.help, opt.secret)
        s = Settings.from_env({})
        assert s.provider(key).secrets_for(None) == {
            o.name.lower(): o.default for o in provider.options if o.default is not None
        }


def test_a_tenant_table_is_checked_by_its_provider_and_named_in_the_error(tmp_path: Path) -> None:
    f = tmp_path / "tenants.toml"
    f.write_text('[gameball.shop-eu]\nsecret_key = "eu"\nsignature_encoding = "rot13"\n')
    f.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"CONNECTOR_TENANTS_FILE": str(f)})
    assert str(err.value) == (
        "tenants file [gameball.shop-eu] SIGNATURE_ENCODING: expected auto, hex or base64"
    )


def test_dev_and_test_secrets_are_the_providers_own(tmp_path: Path) -> None:
    from connector.dev import dev_secrets
    from connector.providers import PROVIDERS
    from tests.support import test_env, test_secrets

    samples = dev_secrets(tmp_path)
    assert set(samples) == set(PROVIDERS)
    for key, values in samples.items():
        assert values and all(n.startswith(f"CONNECTOR_{key.upper()}_") for n in values)
    env = {k: v for values in samples.values() for k, v in values.items()}
    s = Settings.from_env(env)
    t = Settings.from_env(test_env())
    for key, provider in PROVIDERS.items():  # both configure every provider
        assert provider.is_configured(s.provider(key).secrets_for(None) or {})
        assert t.provider(key).secrets_for(None) == {
            **{o.name.lower(): o.default for o in provider.options if o.default is not None},
            **test_secrets()[key],
        }
