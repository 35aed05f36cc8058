"""The tenants file (`CONNECTOR_TENANTS_FILE`): TOML tables `[<provider>.<tenant>]` of provider
options, the same lower-case names as the `CONNECTOR_<KEY>_*` variables.

    [gameball.shop-eu]
    secret_key = "..."
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connector.env import read_file, warn_if_readable_by_others
from connector.errors import ConfigError
from connector.models import TENANT_RE
from connector.providers.base import WebhookProvider

NAME = "CONNECTOR_TENANTS_FILE"
TenantTables = dict[str, dict[str, dict[str, Any]]]


def load_tenants(path: Path, providers: Mapping[str, WebhookProvider]) -> TenantTables:
    """`{provider: {tenant: table}}`; ConfigError naming the table and key that is wrong."""
    text = read_file(str(path), NAME)
    warn_if_readable_by_others(path, NAME)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{NAME}={str(path)!r}: not valid TOML ({exc})") from None
    out: TenantTables = {}
    for key, tenants in data.items():
        provider = providers.get(key)
        if provider is None:
            raise ConfigError(f"{NAME}: unknown provider [{key}]; valid: {', '.join(providers)}")
        if not isinstance(tenants, dict):
            raise ConfigError(f"{NAME}: [{key}] must hold [{key}.<tenant>] tables")
        allowed = {o.name.lower() for o in provider.options}
        for tenant, table in tenants.items():
            if not TENANT_RE.match(tenant) or not isinstance(table, dict):
                raise ConfigError(
                    f"{NAME}: [{key}.{tenant}] must be a table named with letters, digits, "
                    "'.', '_' or '-'"
                )
            bad = sorted(set(table) - allowed)
            if bad:
                raise ConfigError(
                    f"{NAME}: [{key}.{tenant}] has unknown keys {', '.join(bad)}; "
                    f"valid: {', '.join(sorted(allowed))}"
                )
        out[key] = tenants
    return out
