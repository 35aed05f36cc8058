"""One frozen `Settings`, built from an environment mapping: the only reader of `os.environ`.

Every variable is declared once: the connector's own in `connector.env` (`CORE_VARIABLES`), each
provider's from its `options` (`connector.providers.options`), the tenants file's tables in
`connector.providers.tenants`. `VARIABLES` is all of them, the README's table is checked against
it by a test. A bad value is a `ConfigError` naming the variable and what is expected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.env import (
    COMPATIBILITY,
    CORE_VARIABLES,
    UNVERIFIED_HELP,
    Var,
    api_tokens,
    attribute_names,
    boolean,
    choice,
    get,
    integer,
    log,
    name_like,
    parse_broker_url,
    public_url,
    registry_url,
)
from connector.models import TENANT_RE
from connector.providers.options import (
    ProviderConfig,
    configured_names,
    provider_config,
    provider_variables,
)
from connector.providers.tenants import load_tenants
from connector.topics import Topics

__all__ = [
    "COMPATIBILITY",
    "TENANT_RE",
    "UNVERIFIED_HELP",
    "ProviderConfig",
    "Settings",
    "Var",
    "configured_by_user",
    "effective_settings",
    "parse_broker_url",
    "process_env",
    "provider_env_names",
    "variables",
]


def variables() -> tuple[Var, ...]:
    """Every variable: the connector's own, then each registered provider's, in key order."""
    from connector.providers import PROVIDERS

    return CORE_VARIABLES + tuple(v for p in PROVIDERS.values() for v in provider_variables(p))


def __getattr__(name: str) -> Any:
    # Built on first use, not at import: the provider registry loads installed plugins, and a
    # broken one must be a ConfigError the command line reports, not an import traceback.
    if name == "VARIABLES":
        return variables()
    if name == "VARIABLE_NAMES":
        return frozenset(v.name for v in variables())
    if name == "PROVIDER_KEYS":
        from connector.providers import PROVIDERS

        return tuple(PROVIDERS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def process_env() -> dict[str, str]:
    """A copy of the process environment (for commands that pass it on to child processes)."""
    return dict(os.environ)


@dataclass(frozen=True)
class Settings:
    broker_url: str | None
    topic_prefix: str
    partitions: int
    replication_factor: int
    bridge_host: str
    bridge_port: int
    web_host: str
    web_port: int
    web_advertised_host: str
    log_level: str
    log_format: str
    max_body_bytes: int
    body_timeout_ms: int
    ack_timeout_ms: int
    max_in_flight: int
    idempotent_producer: bool
    processing_guarantee: str
    app_id: str
    data_dir: Path
    table_store: str
    standby_replicas: int
    dedupe_memory: int
    member_cache_bytes: int
    tenants_file: Path | None
    providers: Mapping[str, ProviderConfig] = field(repr=False)
    schema_registry_url: str | None = None
    schema_registry_username: str | None = None
    schema_registry_password: str | None = field(default=None, repr=False)
    schema_compatibility: str = "FULL_TRANSITIVE"
    public_url: str | None = None
    spool_dir: Path | None = None
    spool_max_bytes: int = 1024**3
    bridge_processes: int = 1
    bridge_http: str = "lean"
    redact_attributes: frozenset[str] = frozenset()
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    api_auth_metrics: bool = False
    query_max_wait_ms: int = 10_000
    faust_table_pages: bool = False

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def bootstrap_servers(self) -> str:
        return self.broker_url or "localhost:9092"

    def provider(self, key: str) -> ProviderConfig:
        return self.providers[key]

    def replace(self, **changes: Any) -> Settings:
        import dataclasses

        return dataclasses.replace(self, **changes)

    def bind_verifiers(self) -> None:
        """Bind every provider's and tenant's secrets now (the bridge, at start): a key that
        cannot be parsed is a ConfigError before the first delivery, not at it."""
        for cfg in self.providers.values():
            cfg.bind_all()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        from connector.providers import PROVIDERS

        env = dict(os.environ if env is None else env)
        names = {v.name for v in variables()}
        unknown = sorted(
            k
            for k in env
            if k.startswith("CONNECTOR_") and k not in names and not k.startswith("CONNECTOR_TEST_")
        )
        if unknown:
            log.warning("ignoring unknown settings: %s", ", ".join(unknown))

        broker = get(env, "CONNECTOR_BROKER_URL")
        prefix = name_like(env, "CONNECTOR_TOPIC_PREFIX")
        app_id = name_like(env, "CONNECTOR_APP_ID")
        tenants_path = get(env, "CONNECTOR_TENANTS_FILE")
        tenants = load_tenants(Path(tenants_path), PROVIDERS) if tenants_path else {}
        return cls(
            broker_url=parse_broker_url(broker) if broker else None,
            topic_prefix=prefix,
            partitions=integer(env, "CONNECTOR_PARTITIONS", 1, 1000),
            replication_factor=integer(env, "CONNECTOR_REPLICATION_FACTOR", 1, 10),
            bridge_host=str(get(env, "CONNECTOR_BRIDGE_HOST")),
            bridge_port=integer(env, "CONNECTOR_BRIDGE_PORT", 0, 65535),
            web_host=str(get(env, "CONNECTOR_WEB_HOST")),
            web_port=integer(env, "CONNECTOR_WEB_PORT", 0, 65535),
            web_advertised_host=str(get(env, "CONNECTOR_WEB_ADVERTISED_HOST")).strip(),
            log_level=choice(env, "CONNECTOR_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR")),
            log_format=choice(env, "CONNECTOR_LOG_FORMAT", ("json", "text")),
            max_body_bytes=integer(env, "CONNECTOR_MAX_BODY_BYTES", 1024, 64 * 1024 * 1024),
            body_timeout_ms=integer(env, "CONNECTOR_BODY_TIMEOUT_MS", 100, 600_000),
            ack_timeout_ms=integer(env, "CONNECTOR_ACK_TIMEOUT_MS", 50, 60_000),
            max_in_flight=integer(env, "CONNECTOR_MAX_IN_FLIGHT", 1, 1_000_000),
            idempotent_producer=boolean(env, "CONNECTOR_IDEMPOTENT_PRODUCER"),
            processing_guarantee=choice(
                env, "CONNECTOR_PROCESSING_GUARANTEE", ("at_least_once", "exactly_once")
            ),
            app_id=app_id,
            data_dir=Path(str(get(env, "CONNECTOR_DATA_DIR"))),
            table_store=choice(env, "CONNECTOR_TABLE_STORE", ("rocksdb", "memory")),
            standby_replicas=integer(env, "CONNECTOR_STANDBY_REPLICAS", 0, 10),
            dedupe_memory=integer(env, "CONNECTOR_DEDUPE_MEMORY", 10, 1_000_000),
            member_cache_bytes=integer(env, "CONNECTOR_MEMBER_CACHE_MB", 0, 1_000_000) * 2**20,
            tenants_file=Path(tenants_path) if tenants_path else None,
            providers={
                key: provider_config(env, provider, tenants.get(key, {}))
                for key, provider in PROVIDERS.items()
            },
            schema_registry_url=registry_url(env),
            schema_registry_username=get(env, "CONNECTOR_SCHEMA_REGISTRY_USERNAME"),
            schema_registry_password=get(env, "CONNECTOR_SCHEMA_REGISTRY_PASSWORD"),
            schema_compatibility=choice(env, "CONNECTOR_SCHEMA_COMPATIBILITY", COMPATIBILITY),
            public_url=public_url(env),
            spool_dir=Path(spool) if (spool := get(env, "CONNECTOR_SPOOL_DIR")) else None,
            spool_max_bytes=integer(env, "CONNECTOR_SPOOL_MAX_BYTES", 1024 * 1024, 2**50),
            bridge_processes=integer(env, "CONNECTOR_BRIDGE_PROCESSES", 1, 64),
            bridge_http=choice(env, "CONNECTOR_BRIDGE_HTTP", ("lean", "aiohttp")),
            redact_attributes=attribute_names(env, "CONNECTOR_REDACT_ATTRIBUTES"),
            api_tokens=api_tokens(env),
            api_auth_metrics=boolean(env, "CONNECTOR_API_AUTH_METRICS"),
            query_max_wait_ms=integer(env, "CONNECTOR_QUERY_MAX_WAIT_MS", 0, 120_000),
            faust_table_pages=boolean(env, "CONNECTOR_FAUST_TABLE_PAGES"),
        )


MASK = "****** (set)"


def effective_settings(env: Mapping[str, str], settings: Settings) -> dict[str, Any]:
    """What `loyalty-connector config` prints: every variable's effective value and where it
    came from (secrets masked), each provider's state and the warnings the processes log."""
    from connector.providers import PROVIDERS

    rows = []
    for var in variables():
        raw = env.get(var.name)
        source = "environment" if raw not in (None, "") else "default"
        value = raw if source == "environment" else var.default
        if var.secret and value is not None:
            value = MASK
        rows.append({"name": var.name, "value": value, "source": source})
    providers: dict[str, Any] = {}
    warnings = []
    for key, provider in PROVIDERS.items():
        cfg = settings.provider(key)
        configured = provider.is_configured(cfg.values) or any(
            provider.is_configured(cfg.secrets_for(t) or {}) for t in cfg.tenant_names
        )
        providers[key] = {
            "configured": configured,
            "unverified": cfg.unverified,
            "tenants": list(cfg.tenant_names),
        }
        if cfg.unverified:
            warnings.append(
                f"{key} deliveries are accepted WITHOUT verification "
                f"(CONNECTOR_{key.upper()}_UNVERIFIED=true): development only"
            )
    return {"variables": rows, "providers": providers, "warnings": warnings}


def provider_env_names(key: str) -> tuple[str, ...]:
    """Every `CONNECTOR_<PROVIDER>_*` variable of one provider."""
    from connector.providers import get_provider

    return tuple(v.name for v in provider_variables(get_provider(key)))


def configured_by_user(env: Mapping[str, str], key: str) -> list[str]:
    """The variables (and tenants file tables) by which `env` configures provider `key`."""
    from connector.providers import PROVIDERS, get_provider

    found = configured_names(env, get_provider(key))
    tenants_path = env.get("CONNECTOR_TENANTS_FILE")
    if tenants_path and key in load_tenants(Path(tenants_path), PROVIDERS):
        found.append(f"CONNECTOR_TENANTS_FILE [{key}.*]")
    return found
