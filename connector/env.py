"""Environment variables: each declared once as a `Var`, read into a typed value or a
`ConfigError` naming the variable and what is expected.

`connector.settings` puts these together with the providers' own variables (built from their
`options`) into one `Settings`; nothing here looks at the process environment itself.
"""

from __future__ import annotations

import logging
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from connector.errors import ConfigError

log = logging.getLogger("connector.settings")


@dataclass(frozen=True)
class Var:
    name: str
    default: str | None
    help: str
    secret: bool = False


UNVERIFIED_HELP = "`true` accepts unsigned deliveries (development only; logged loudly)"

# The connector's own variables, in the README table's order; the providers' follow them.
CORE_VARIABLES: tuple[Var, ...] = (
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
        "CONNECTOR_BRIDGE_HTTP",
        "lean",
        "the bridge's HTTP layer: `lean` (asyncio + httptools, connector/bridge/http1.py) or "
        "`aiohttp` (the aiohttp app); both run the same handler, `lean` uses about half the CPU "
        "per webhook",
    ),
    Var(
        "CONNECTOR_BRIDGE_PROCESSES",
        "1",
        "bridge processes sharing the port (SO_REUSEPORT: the kernel spreads connections); "
        "about one per core given to the bridge. Each has its own producer, and its own spool "
        "under CONNECTOR_SPOOL_DIR/bridge-<n>",
    ),
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
    Var(
        "CONNECTOR_DEDUPE_MEMORY",
        "1000",
        "recent event ids kept per member (and up to twice as many movement keys)",
    ),
    Var(
        "CONNECTOR_MEMBER_CACHE_MB",
        "64",
        "worker: decoded member records kept in memory between batches, in MB of their stored "
        "size (about twice that in memory); `0` reads every record from the store",
    ),
    Var("CONNECTOR_TENANTS_FILE", None, "TOML file of per-tenant provider secrets"),
    Var(
        "CONNECTOR_REDACT_ATTRIBUTES",
        "",
        "comma-separated event attributes never written to the events topic (e.g. "
        "`email,phone`); the raw topic keeps the webhook as it came",
    ),
    Var(
        "CONNECTOR_API_TOKENS_FILE",
        None,
        "file of bearer tokens (one per line, `#` comments) the worker's member API requires "
        "(`Authorization: Bearer <token>`). Unset: the API is open (keep it on a private network)",
    ),
    Var(
        "CONNECTOR_API_AUTH_METRICS",
        "false",
        "`true`: the worker's /metrics needs a token too (/healthz and /readyz never do)",
    ),
    Var(
        "CONNECTOR_QUERY_MAX_WAIT_MS",
        "10000",
        "longest wait a member query's `?min_offset=` may ask for (`&wait_ms=`, default 5000)",
    ),
    Var(
        "CONNECTOR_FAUST_TABLE_PAGES",
        "false",
        "`true` turns on Faust's own /table pages (they read table data with no authentication)",
    ),
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
)
CORE_DEFAULTS = {v.name: v.default for v in CORE_VARIABLES}

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
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")


def get(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    """The value of `name`, else its declared default (an empty value counts as unset)."""
    value = env.get(name)
    if value is None or value == "":
        return default if default is not None else CORE_DEFAULTS.get(name)
    return value


def integer(env: Mapping[str, str], name: str, lo: int, hi: int) -> int:
    raw = get(env, name)
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r}: expected an integer from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value}: expected an integer from {lo} to {hi}")
    return value


def boolean(env: Mapping[str, str], name: str, default: str | None = None) -> bool:
    raw = str(get(env, name, default)).strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = str(get(env, name)).strip()
    if raw.lower() not in choices and raw.upper() not in choices:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw.lower() if raw.lower() in choices else raw.upper()


def name_like(env: Mapping[str, str], name: str) -> str:
    """A topic prefix or app id: letters, digits, '.', '_' or '-'."""
    value = str(get(env, name)).strip()
    if not NAME_RE.fullmatch(value):
        raise ConfigError(f"{name}={value!r}: expected letters, digits, '.', '_' or '-'")
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


def registry_url(env: Mapping[str, str]) -> str | None:
    name = "CONNECTOR_SCHEMA_REGISTRY_URL"
    raw = get(env, name)
    if raw is None:
        return None
    url = raw.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(f"{name}={raw!r}: expected an http:// or https:// URL")
    return url


def public_url(env: Mapping[str, str]) -> str | None:
    name = "CONNECTOR_PUBLIC_URL"
    raw = get(env, name)
    if raw is None:
        return None
    url = raw.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/?#@]+(/[^\s?#]*)?", url):
        raise ConfigError(
            f"{name}={raw!r}: expected an http:// or https:// URL with no user, query or fragment"
        )
    return url


def read_file(path: str, name: str) -> str:
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{name}={path!r}: cannot read the file ({exc.strerror})") from None
    return text


def warn_if_readable_by_others(path: Path, name: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        log.warning("%s %s is readable by other users; chmod 600 it", name, path)


def api_tokens(env: Mapping[str, str]) -> tuple[str, ...]:
    """The member API's bearer tokens from CONNECTOR_API_TOKENS_FILE (empty: no auth)."""
    name = "CONNECTOR_API_TOKENS_FILE"
    path = get(env, name)
    if not path:
        return ()
    warn_if_readable_by_others(Path(path).expanduser(), name)
    tokens = []
    for line in read_file(path, name).splitlines():
        token = line.split("#", 1)[0].strip()
        if not token:
            continue
        if len(token) < 16 or not TOKEN_RE.fullmatch(token):
            raise ConfigError(
                f"{name}: a token must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + / = "
                "(a line of the file is not; the file is not printed)"
            )
        tokens.append(token)
    if not tokens:
        raise ConfigError(f"{name}={path!r} holds no token (one per line)")
    return tuple(tokens)


TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/=]+")  # RFC 6750 b64token


def attribute_names(env: Mapping[str, str], name: str) -> frozenset[str]:
    raw = get(env, name) or ""
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    if "anonymize_request" in names:
        raise ConfigError(
            f"{name}: `anonymize_request` cannot be redacted: it is what tells the worker to "
            "erase a Wix member (docs/erasure.md)"
        )
    return names
