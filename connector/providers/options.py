"""Provider settings: each provider's `options` as `CONNECTOR_<KEY>_<OPTION>` variables and
tenants-file keys, read into a `ProviderConfig` that holds the secrets and, bound once, the
verifiers the bridge checks deliveries with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.env import UNVERIFIED_HELP, Var, boolean, read_file
from connector.errors import ConfigError
from connector.providers.base import Option, Secrets, Verifier, WebhookProvider, Where

UNVERIFIED = Option("UNVERIFIED", "false", UNVERIFIED_HELP)


def env_prefix(key: str) -> str:
    return f"CONNECTOR_{key.upper()}_"


def provider_variables(provider: WebhookProvider) -> tuple[Var, ...]:
    """Every `CONNECTOR_<KEY>_*` variable of one provider, in its `options` order."""
    prefix = env_prefix(provider.key)
    return tuple(
        Var(prefix + o.name, o.default, o.help, o.secret) for o in (*provider.options, UNVERIFIED)
    )


def option_values(
    provider: WebhookProvider, get: Callable[[str], str | None], where: Where
) -> dict[str, str]:
    """Option values by lower-case name (defaults filled, *_FILE options read), validated."""
    options = provider.options
    for opt in options:
        inline = opt.name[: -len("_FILE")] if opt.name.endswith("_FILE") else None
        if inline and get(inline) not in (None, "") and get(opt.name) not in (None, ""):
            raise ConfigError(
                f"{where(inline)} and {where(opt.name)} are both set: give the value inline or "
                "as a file, not both"
            )
    values: dict[str, str] = {}
    for opt in options:
        raw = get(opt.name)
        if raw is None or raw == "":
            if opt.default is not None:
                values[opt.name.lower()] = opt.default
            continue
        if opt.name.endswith("_FILE"):
            values[opt.name[: -len("_FILE")].lower()] = read_file(raw, where(opt.name))
        else:
            values[opt.name.lower()] = raw
    provider.check_options(values, where)
    return values


@dataclass(frozen=True)
class ProviderConfig:
    """Secrets and options of one provider: global ones plus per-tenant overrides.

    `verifier_for(tenant)` is the provider's `bind` of that tenant's secrets, made once and
    kept; `bind_all()` makes every one up front, so a bad key stops a process at start.
    """

    key: str
    values: Mapping[str, str] = field(repr=False)
    tenants: Mapping[str, Mapping[str, str]] = field(repr=False)
    unverified: bool = False
    provider: WebhookProvider | None = field(default=None, repr=False, compare=False)
    _bound: dict[str | None, Verifier] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def secrets_for(self, tenant: str | None) -> Mapping[str, str] | None:
        """Secrets for a delivery to `tenant` (None = un-tenanted URL); None for unknown tenants."""
        if tenant is None or tenant not in self.tenants:
            if tenant is not None and self.tenants:
                return None
            return self.values
        return {**self.values, **self.tenants[tenant]}

    def verifier_for(self, tenant: str | None) -> Verifier | None:
        """The bound verifier for a delivery to `tenant`; None for an unknown tenant.

        ConfigError if the provider refuses these secrets (e.g. a key that is not a PEM key).
        """
        scope = tenant if tenant in self.tenants else None
        if tenant is not None and scope is None and self.tenants:
            return None
        bound = self._bound.get(scope)
        if bound is None:
            secrets = self.secrets_for(scope)
            assert secrets is not None
            bound = self._bind(secrets, scope)
            self._bound[scope] = bound
        return bound

    def bind_all(self) -> None:
        """Bind the global secrets and every tenant's now (a process calls this at start)."""
        for scope in (None, *self.tenant_names):
            self.verifier_for(scope)

    def _bind(self, secrets: Secrets, scope: str | None) -> Verifier:
        if self.provider is None:
            from connector.providers import PROVIDERS

            provider = PROVIDERS[self.key]
        else:
            provider = self.provider
        try:
            return provider.bind(secrets)
        except ConfigError as exc:
            where = f"tenants file [{self.key}.{scope}]" if scope else env_prefix(self.key) + "*"
            raise ConfigError(f"{where}: {exc}") from None

    @property
    def tenant_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.tenants))


def provider_config(
    env: Mapping[str, str],
    provider: WebhookProvider,
    tenant_tables: Mapping[str, Mapping[str, Any]],
) -> ProviderConfig:
    """One provider's configuration from the environment and its tenants-file tables."""
    key = provider.key
    prefix = env_prefix(key)

    def env_where(name: str) -> str:
        return prefix + name

    values = option_values(provider, lambda n: env.get(prefix + n), env_where)
    names = {opt.name.lower() for opt in provider.options}
    tenants: dict[str, dict[str, str]] = {}
    for tenant, table in tenant_tables.items():
        label = f"tenants file [{key}.{tenant}] "

        def tenant_where(name: str, label: str = label) -> str:
            return label + name

        def lookup(n: str, t: Mapping[str, Any] = table) -> str | None:
            value = t.get(n.lower())
            return None if value is None else str(value)

        own = option_values(provider, lookup, tenant_where)
        # Only what the tenant sets overrides the global values; defaults come from the globals.
        explicit = {n for n in names if n in table}
        explicit |= {n[: -len("_file")] for n in explicit if n.endswith("_file")}
        tenants[tenant] = {k: v for k, v in own.items() if k in explicit}
        # The merged values are what the tenant's deliveries are checked with (e.g. a tenant's
        # template against the global scheme): each named where it was set.
        merged = {**values, **tenants[tenant]}

        def merged_where(
            name: str, mine: Mapping[str, str] = tenants[tenant], label: str = label
        ) -> str:
            return label + name if name.lower() in mine else prefix + name

        provider.check_options(merged, merged_where)
    unverified = boolean(env, f"{prefix}UNVERIFIED", UNVERIFIED.default)
    return ProviderConfig(key, values, tenants, unverified, provider)


def configured_names(env: Mapping[str, str], provider: WebhookProvider) -> list[str]:
    """The `CONNECTOR_<KEY>_*` variables `env` sets for a provider."""
    return [v.name for v in provider_variables(provider) if env.get(v.name)]
