"""One frozen `Settings`, built from an environment mapping: the only reader of `os.environ`.

Every variable is declared once in `VARIABLES` (name, default, meaning); the README's table is
checked against it by a test. A bad value is a `ConfigError` naming the variable and what is
expected.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.errors import ConfigError
from connector.models import TENANT_RE
from connector.topics import Topics

log = logging.getLogger(__name__)

PROVIDER_KEYS = ("gameball", "open_loyalty", "voucherify", "wix")


@dataclass(frozen=True)
class Var:
    name: str
    default: str | None
    help: str
    secret: bool = False


# Provider options: CONNECTOR_<PROVIDER>_<OPTION>; the option name (lower case) is the key the
# provider module reads from its secrets mapping. Tenants files use the same option names.
PROVIDER_OPTIONS: dict[str, tuple[Var, ...]] = {
    "gameball": (
        Var("SECRET_KEY", None, "Gameball SecretKey used in `X-GB-Signature`", secret=True),
        Var("SIGNATURE_ENCODING", "auto", "`auto`, `hex` or `base64` (their docs conflict)"),
    ),
    "open_loyalty": (
        Var("HEADER_NAME", None, "name of the custom request header set in Open Loyalty"),
        Var("HEADER_VALUE", None, "value of that header (compared in constant time)", secret=True),
        Var(
            "HMAC_SECRET",
            None,
            "secret of the optional `X-Webhook-Signature` HMAC (Cloud: `whsec_...`, as shown)",
            secret=True,
        ),
        Var(
            "HMAC_SCHEME",
            None,
            "what the HMAC signs: `cloud` (Open Loyalty Cloud's method, host, path, body hash, "
            "timestamp, request id; the default) or `template` (the default when "
            "`HMAC_TEMPLATE` is set)",
        ),
        Var(
            "HMAC_TEMPLATE",
            None,
            "signed string of the `template` scheme (older custom setups): `{body}` (when unset) "
            "or `{timestamp}.{body}`",
        ),
        Var("TIMESTAMP_TOLERANCE", "300", "seconds `X-Webhook-Timestamp` may differ; 0 = off"),
    ),
    "voucherify": (
        Var("SECRET_KEY", None, "project webhook secret for `x-voucherify-signature`", secret=True),
    ),
    "wix": (
        Var("PUBLIC_KEY", None, "the app's public key (PEM text) verifying RS256 JWTs"),
        Var("PUBLIC_KEY_FILE", None, "path of a PEM file, instead of `CONNECTOR_WIX_PUBLIC_KEY`"),
        Var(
            "PRIVATE_KEY",
            None,
            "private key (PEM) used only by `replay` to sign test JWTs",
            secret=True,
        ),
        Var("PRIVATE_KEY_FILE", None, "path of that private key PEM file"),
    ),
}
UNVERIFIED_HELP = "`true` accepts unsigned deliveries (development only; logged loudly)"

VARIABLES: tuple[Var, ...] = (
    Var(
        "CONNECTOR_BROKER_URL",
        None,
        "Kafka bootstrap servers (`host:port[,host:port]`, `kafka://` optional). "
        "Unset: `dev` starts the embedded broker, other commands use `localhost:9092`",
    ),
    Var("CONNECTOR_TOPIC_PREFIX", "loyalty", "prefix of every topic name"),
    Var("CONNECTOR_PARTITIONS", "8", "partitions of topics the connector creates"),
    Var("CONNECTOR_REPLICATION_FACTOR", "1", "replication factor of topics the connector creates"),
    Var("CONNECTOR_BRIDGE_HOST", "0.0.0.0", "bridge listen address"),
    Var("CONNECTOR_BRIDGE_PORT", "8080", "bridge HTTP port"),
    Var(
        "CONNECTOR_PUBLIC_URL",
        None,
        "the bridge's URL as providers post to it, behind a proxy (e.g. "
        "`https://hooks.example.com/base`). Signatures over the URL (Open Loyalty Cloud) are "
        "checked for its host (no port) and its path + the request path. Unset: the `Host` "
        "header and the request path",
    ),
    Var("CONNECTOR_WEB_HOST", "0.0.0.0", "worker HTTP listen address"),
    Var("CONNECTOR_WEB_PORT", "6066", "worker HTTP port (member queries, metrics)"),
    Var(
        "CONNECTOR_WEB_ADVERTISED_HOST",
        "127.0.0.1",
        "host name other workers use to reach this worker's HTTP port (query routing)",
    ),
    Var("CONNECTOR_LOG_LEVEL", "INFO", "`DEBUG`, `INFO`, `WARNING` or `ERROR`"),
    Var("CONNECTOR_LOG_FORMAT", "json", "`json` (one object per line) or `text`"),
    Var("CONNECTOR_MAX_BODY_BYTES", "1048576", "largest webhook body accepted (413 above)"),
    Var(
        "CONNECTOR_BODY_TIMEOUT_MS",
        "10000",
        "longest time a client may take to send a body (408 after; stops slow-body clients)",
    ),
    Var(
        "CONNECTOR_ACK_TIMEOUT_MS",
        "800",
        "longest wait for the broker's ack before answering 503 (Wix allows 1250 ms)",
    ),
    Var("CONNECTOR_MAX_IN_FLIGHT", "2000", "concurrent webhooks per bridge before 429"),
    Var(
        "CONNECTOR_SPOOL_DIR",
        None,
        "directory of the bridge's local spool (store-and-forward): webhooks Kafka does not "
        "take within the ack deadline are kept there durably, answered 200 and forwarded once "
        "Kafka is back. Unset: answer 503 instead",
    ),
    Var(
        "CONNECTOR_SPOOL_MAX_BYTES",
        "1073741824",
        "the spool's size cap; when full, webhooks get 503 again",
    ),
    Var(
        "CONNECTOR_IDEMPOTENT_PRODUCER",
        "true",
        "idempotent producer with `acks=all`; `false` for brokers without it",
    ),
    Var("CONNECTOR_PROCESSING_GUARANTEE", "at_least_once", "`at_least_once` or `exactly_once`"),
    Var("CONNECTOR_APP_ID", "loyalty-connector", "Faust app id (consumer group, changelog names)"),
    Var("CONNECTOR_DATA_DIR", ".data", "worker's local state directory (table store)"),
    Var("CONNECTOR_TABLE_STORE", "rocksdb", "`rocksdb` (durable) or `memory`"),
    Var("CONNECTOR_STANDBY_REPLICAS", "1", "standby copies of each table partition"),
    Var("CONNECTOR_DEDUPE_MEMORY", "1000", "recent event and movement ids kept per member"),
    Var("CONNECTOR_TENANTS_FILE", None, "TOML file of per-tenant provider secrets"),
    Var(
        "CONNECTOR_SCHEMA_REGISTRY_URL",
        None,
        "Confluent-compatible Schema Registry base URL (e.g. Apicurio's `.../apis/ccompat/v7`). "
        "Set: the worker registers its schemas and writes the registry wire format",
    ),
    Var("CONNECTOR_SCHEMA_REGISTRY_USERNAME", None, "Schema Registry basic-auth user name"),
    Var(
        "CONNECTOR_SCHEMA_REGISTRY_PASSWORD",
        None,
        "Schema Registry basic-auth password",
        secret=True,
    ),
    Var(
        "CONNECTOR_SCHEMA_COMPATIBILITY",
        "FULL_TRANSITIVE",
        "compatibility rule the worker sets on its subjects: `BACKWARD`, `FORWARD`, `FULL` "
        "(each also `_TRANSITIVE`), `NONE`, or `REGISTRY` (leave the registry's setting)",
    ),
) + tuple(
    Var(f"CONNECTOR_{p.upper()}_{o.name}", o.default, o.help, o.secret)
    for p, opts in PROVIDER_OPTIONS.items()
    for o in (*opts, Var("UNVERIFIED", "false", UNVERIFIED_HELP))
)
VARIABLE_NAMES = frozenset(v.name for v in VARIABLES)
_DEFAULTS = {v.name: v.default for v in VARIABLES}


def process_env() -> dict[str, str]:
    """A copy of the process environment (for commands that pass it on to child processes)."""
    return dict(os.environ)


def _int(env: Mapping[str, str], name: str, lo: int, hi: int) -> int:
    raw = _get(env, name)
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r}: expected an integer from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value}: expected an integer from {lo} to {hi}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = str(_get(env, name)).strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = str(_get(env, name)).strip()
    if raw.lower() not in choices and raw.upper() not in choices:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw.lower() if raw.lower() in choices else raw.upper()


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value == "":
        return _DEFAULTS.get(name)
    return value


def parse_broker_url(raw: str, name: str = "CONNECTOR_BROKER_URL") -> str:
    """`kafka://h:p,h2:p2` or `h:p` → `h:p,h2:p2` (aiokafka bootstrap servers)."""
    servers = []
    for part in raw.split(","):
        part = part.strip()
        for scheme in ("kafka://", "tcp://", "plaintext://"):
            if part.lower().startswith(scheme):
                part = part[len(scheme) :]
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"{name}={raw!r}: expected host:port[,host:port] (e.g. localhost:9092)"
            )
        servers.append(f"{host}:{port}")
    return ",".join(servers)


def _read_file(path: str, name: str) -> str:
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{name}={path!r}: cannot read the file ({exc.strerror})") from None
    return text


def _warn_if_readable_by_others(path: Path, name: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        log.warning("%s %s is readable by other users; chmod 600 it", name, path)


@dataclass(frozen=True)
class ProviderConfig:
    """Secrets and options of one provider: global ones plus per-tenant overrides."""

    key: str
    values: Mapping[str, str] = field(repr=False)
    tenants: Mapping[str, Mapping[str, str]] = field(repr=False)
    unverified: bool = False

    def secrets_for(self, tenant: str | None) -> Mapping[str, str] | None:
        """Secrets for a delivery to `tenant` (None = un-tenanted URL); None for unknown tenants."""
        if tenant is None or tenant not in self.tenants:
            if tenant is not None and self.tenants:
                return None
            return self.values
        return {**self.values, **self.tenants[tenant]}

    @property
    def tenant_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.tenants))


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
    tenants_file: Path | None
    providers: Mapping[str, ProviderConfig] = field(repr=False)
    schema_registry_url: str | None = None
    schema_registry_username: str | None = None
    schema_registry_password: str | None = field(default=None, repr=False)
    schema_compatibility: str = "FULL_TRANSITIVE"
    public_url: str | None = None
    spool_dir: Path | None = None
    spool_max_bytes: int = 1024**3

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        env = dict(os.environ if env is None else env)
        unknown = sorted(
            k
            for k in env
            if k.startswith("CONNECTOR_")
            and k not in VARIABLE_NAMES
            and not k.startswith("CONNECTOR_TEST_")
        )
        if unknown:
            log.warning("ignoring unknown settings: %s", ", ".join(unknown))

        broker = _get(env, "CONNECTOR_BROKER_URL")
        prefix = str(_get(env, "CONNECTOR_TOPIC_PREFIX")).strip()
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", prefix):
            raise ConfigError(
                f"CONNECTOR_TOPIC_PREFIX={prefix!r}: expected letters, digits, '.', '_' or '-'"
            )
        app_id = str(_get(env, "CONNECTOR_APP_ID")).strip()
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", app_id):
            raise ConfigError(
                f"CONNECTOR_APP_ID={app_id!r}: expected letters, digits, '.', '_' or '-'"
            )
        tenants_path = _get(env, "CONNECTOR_TENANTS_FILE")
        tenants = _load_tenants(Path(tenants_path)) if tenants_path else {}
        return cls(
            broker_url=parse_broker_url(broker) if broker else None,
            topic_prefix=prefix,
            partitions=_int(env, "CONNECTOR_PARTITIONS", 1, 1000),
            replication_factor=_int(env, "CONNECTOR_REPLICATION_FACTOR", 1, 10),
            bridge_host=str(_get(env, "CONNECTOR_BRIDGE_HOST")),
            bridge_port=_int(env, "CONNECTOR_BRIDGE_PORT", 0, 65535),
            web_host=str(_get(env, "CONNECTOR_WEB_HOST")),
            web_port=_int(env, "CONNECTOR_WEB_PORT", 0, 65535),
            web_advertised_host=str(_get(env, "CONNECTOR_WEB_ADVERTISED_HOST")).strip(),
            log_level=_choice(env, "CONNECTOR_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR")),
            log_format=_choice(env, "CONNECTOR_LOG_FORMAT", ("json", "text")),
            max_body_bytes=_int(env, "CONNECTOR_MAX_BODY_BYTES", 1024, 64 * 1024 * 1024),
            body_timeout_ms=_int(env, "CONNECTOR_BODY_TIMEOUT_MS", 100, 600_000),
            ack_timeout_ms=_int(env, "CONNECTOR_ACK_TIMEOUT_MS", 50, 60_000),
            max_in_flight=_int(env, "CONNECTOR_MAX_IN_FLIGHT", 1, 1_000_000),
            idempotent_producer=_bool(env, "CONNECTOR_IDEMPOTENT_PRODUCER"),
            processing_guarantee=_choice(
                env, "CONNECTOR_PROCESSING_GUARANTEE", ("at_least_once", "exactly_once")
            ),
            app_id=app_id,
            data_dir=Path(str(_get(env, "CONNECTOR_DATA_DIR"))),
            table_store=_choice(env, "CONNECTOR_TABLE_STORE", ("rocksdb", "memory")),
            standby_replicas=_int(env, "CONNECTOR_STANDBY_REPLICAS", 0, 10),
            dedupe_memory=_int(env, "CONNECTOR_DEDUPE_MEMORY", 10, 1_000_000),
            tenants_file=Path(tenants_path) if tenants_path else None,
            providers={p: _provider_config(env, p, tenants.get(p, {})) for p in PROVIDER_KEYS},
            schema_registry_url=_registry_url(env),
            schema_registry_username=_get(env, "CONNECTOR_SCHEMA_REGISTRY_USERNAME"),
            schema_registry_password=_get(env, "CONNECTOR_SCHEMA_REGISTRY_PASSWORD"),
            schema_compatibility=_choice(env, "CONNECTOR_SCHEMA_COMPATIBILITY", COMPATIBILITY),
            public_url=_public_url(env),
            spool_dir=Path(spool) if (spool := _get(env, "CONNECTOR_SPOOL_DIR")) else None,
            spool_max_bytes=_int(env, "CONNECTOR_SPOOL_MAX_BYTES", 1024 * 1024, 2**50),
        )


COMPATIBILITY = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
    "REGISTRY",
)


def _registry_url(env: Mapping[str, str]) -> str | None:
    name = "CONNECTOR_SCHEMA_REGISTRY_URL"
    raw = _get(env, name)
    if raw is None:
        return None
    url = raw.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(f"{name}={raw!r}: expected an http:// or https:// URL")
    return url


def _public_url(env: Mapping[str, str]) -> str | None:
    name = "CONNECTOR_PUBLIC_URL"
    raw = _get(env, name)
    if raw is None:
        return None
    url = raw.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/?#@]+(/[^\s?#]*)?", url):
        raise ConfigError(
            f"{name}={raw!r}: expected an http:// or https:// URL with no user, query or fragment"
        )
    return url


def _option_values(get: Callable[[str], str | None], key: str, where: str) -> dict[str, str]:
    """Provider option values by option key, with *_FILE variants resolved to their contents."""
    for opt in PROVIDER_OPTIONS[key]:
        inline = opt.name[: -len("_FILE")] if opt.name.endswith("_FILE") else None
        if inline and get(inline) not in (None, "") and get(opt.name) not in (None, ""):
            raise ConfigError(
                f"{where}{inline} and {where}{opt.name} are both set: give the value inline or "
                "as a file, not both"
            )
    values: dict[str, str] = {}
    for opt in PROVIDER_OPTIONS[key]:
        raw = get(opt.name)
        if raw is None or raw == "":
            if opt.default is not None:
                values[opt.name.lower()] = opt.default
            continue
        if opt.name.endswith("_FILE"):
            target = opt.name[: -len("_FILE")].lower()
            values[target] = _read_file(raw, f"{where}{opt.name}")
        else:
            values[opt.name.lower()] = raw
    _check_options(key, values, where)
    return values


MASK = "****** (set)"


def effective_settings(env: Mapping[str, str], settings: Settings) -> dict[str, Any]:
    """What `loyalty-connector config` prints: every variable's effective value and where it
    came from (secrets masked), each provider's state and the warnings the processes log."""
    from connector.providers import PROVIDERS

    variables = []
    for var in VARIABLES:
        raw = env.get(var.name)
        source = "environment" if raw not in (None, "") else "default"
        value = raw if source == "environment" else var.default
        if var.secret and value is not None:
            value = MASK
        variables.append({"name": var.name, "value": value, "source": source})
    providers: dict[str, Any] = {}
    warnings = []
    for key in PROVIDER_KEYS:
        cfg = settings.provider(key)
        configured = PROVIDERS[key].is_configured(cfg.values) or any(
            PROVIDERS[key].is_configured(cfg.secrets_for(t) or {}) for t in cfg.tenant_names
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
    return {"variables": variables, "providers": providers, "warnings": warnings}


def provider_env_names(key: str) -> tuple[str, ...]:
    """Every `CONNECTOR_<PROVIDER>_*` variable of one provider."""
    prefix = f"CONNECTOR_{key.upper()}_"
    return tuple(prefix + o.name for o in PROVIDER_OPTIONS[key]) + (prefix + "UNVERIFIED",)


def configured_by_user(env: Mapping[str, str], key: str) -> list[str]:
    """The variables (and tenants file tables) by which `env` configures provider `key`."""
    found = [n for n in provider_env_names(key) if env.get(n)]
    tenants_path = env.get("CONNECTOR_TENANTS_FILE")
    if tenants_path and key in _load_tenants(Path(tenants_path)):
        found.append(f"CONNECTOR_TENANTS_FILE [{key}.*]")
    return found


def _check_options(key: str, values: Mapping[str, str], where: str) -> None:
    if key == "gameball" and values.get("signature_encoding", "auto") not in {
        "auto",
        "hex",
        "base64",
    }:
        raise ConfigError(f"{where}SIGNATURE_ENCODING: expected auto, hex or base64")
    if key == "open_loyalty":
        tol = values.get("timestamp_tolerance", "300")
        if not tol.isdigit():
            raise ConfigError(f"{where}TIMESTAMP_TOLERANCE={tol!r}: expected whole seconds >= 0")
        if "{body}" not in values.get("hmac_template", "{body}"):
            raise ConfigError(f"{where}HMAC_TEMPLATE must contain {{body}}")
        if bool(values.get("header_name")) != bool(values.get("header_value")):
            raise ConfigError(f"{where}HEADER_NAME and {where}HEADER_VALUE must be set together")
        _check_hmac_scheme(values, where)
    if key == "wix":
        for k in ("public_key", "private_key"):
            pem = values.get(k)
            if pem and "-----BEGIN" not in pem:
                raise ConfigError(f"{where}{k.upper()}: expected PEM text (-----BEGIN ...)")


def _check_hmac_scheme(
    values: Mapping[str, str], where: str, scheme_from: str = "", template_from: str = ""
) -> None:
    scheme = values.get("hmac_scheme", "").strip().lower()
    if scheme and scheme not in {"cloud", "template"}:
        raise ConfigError(
            f"{scheme_from or where}HMAC_SCHEME={scheme!r}: expected cloud or template"
        )
    if scheme == "cloud" and values.get("hmac_template"):
        raise ConfigError(
            f"{scheme_from or where}HMAC_SCHEME=cloud and {template_from or where}HMAC_TEMPLATE "
            "are both set: the cloud scheme signs a fixed string; unset HMAC_TEMPLATE or set "
            "HMAC_SCHEME=template"
        )


def _provider_config(
    env: Mapping[str, str], key: str, tenant_tables: Mapping[str, Mapping[str, Any]]
) -> ProviderConfig:
    prefix = f"CONNECTOR_{key.upper()}_"
    values = _option_values(lambda n: env.get(prefix + n), key, prefix)
    tenants: dict[str, dict[str, str]] = {}
    for tenant, table in tenant_tables.items():
        where = f"tenants file [{key}.{tenant}] "

        def lookup(n: str, t: Mapping[str, Any] = table) -> str | None:
            return _str_or_none(t.get(n.lower()))

        own = _option_values(lookup, key, where)
        # Only what the tenant sets overrides the global values; defaults come from the globals.
        explicit = {opt.name.lower() for opt in PROVIDER_OPTIONS[key] if opt.name.lower() in table}
        explicit |= {n[: -len("_file")] for n in explicit if n.endswith("_file")}
        tenants[tenant] = {k: v for k, v in own.items() if k in explicit}
        if key == "open_loyalty":  # a tenant's template against the global scheme, or vice versa
            merged = {**values, **tenants[tenant]}
            scheme_from = where if "hmac_scheme" in tenants[tenant] else prefix
            template_from = where if "hmac_template" in tenants[tenant] else prefix
            _check_hmac_scheme(merged, where, scheme_from, template_from)
    return ProviderConfig(key, values, tenants, _bool(env, f"{prefix}UNVERIFIED"))


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _load_tenants(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """`[provider.tenant]` tables of provider options: `[gameball.shop-eu] secret_key = ...`."""
    name = "CONNECTOR_TENANTS_FILE"
    text = _read_file(str(path), name)
    _warn_if_readable_by_others(path, name)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}={str(path)!r}: not valid TOML ({exc})") from None
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for provider, tenants in data.items():
        if provider not in PROVIDER_OPTIONS:
            raise ConfigError(
                f"{name}: unknown provider [{provider}]; valid: {', '.join(PROVIDER_KEYS)}"
            )
        if not isinstance(tenants, dict):
            raise ConfigError(f"{name}: [{provider}] must hold [{provider}.<tenant>] tables")
        allowed = {o.name.lower() for o in PROVIDER_OPTIONS[provider]}
        for tenant, table in tenants.items():
            if not TENANT_RE.match(tenant) or not isinstance(table, dict):
                raise ConfigError(
                    f"{name}: [{provider}.{tenant}] must be a table named with letters, digits, "
                    "'.', '_' or '-'"
                )
            bad = sorted(set(table) - allowed)
            if bad:
                raise ConfigError(
                    f"{name}: [{provider}.{tenant}] has unknown keys {', '.join(bad)}; "
                    f"valid: {', '.join(sorted(allowed))}"
                )
        out[provider] = tenants
    return out
