"""Registry of webhook providers, keyed by the provider key used in URLs, settings and topics.

The four built-in providers, plus any installed package's providers found once, at import,
in the `loyalty_connector.providers` entry-point group (the way pytest and Faust find plugins):

    [project.entry-points."loyalty_connector.providers"]
    acme = "loyalty_connector_acme:Acme"

The entry point's name is the provider key; it names a `WebhookProvider` class (or instance).
A plugin that cannot be loaded, or whose key is taken or malformed, is a `ConfigError` naming the
entry point and its distribution: every process refuses to start rather than drop its webhooks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from connector.errors import ConfigError, UnknownProviderError
from connector.models import Provider
from connector.providers.base import (
    BaseProvider,
    DecodeContext,
    Option,
    RequestTarget,
    Secrets,
    Verifier,
    WebhookProvider,
    Where,
)

ENTRY_POINT_GROUP = "loyalty_connector.providers"
# A key is a module name, a URL segment and an env-var infix at once; no ':' (member keys).
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# `other` is the Avro symbol of plugins (Provider.OTHER.key); CONNECTOR_TEST_* is ignored.
RESERVED_KEYS = frozenset({"other", "test"})
_MEMBERS = (
    ("key", "provider", "kept_headers", "options", "content_type", "retry_window_s")
    + ("check_options", "test_secrets", "dev_secrets", "samples", "is_configured", "bind")
    + ("verify", "decode", "delivery_id", "sign")
)


def _builtins() -> dict[str, WebhookProvider]:
    from connector.providers.gameball import Gameball
    from connector.providers.open_loyalty import OpenLoyalty
    from connector.providers.voucherify import Voucherify
    from connector.providers.wix import Wix

    return {p.key: p for p in (Gameball(), OpenLoyalty(), Voucherify(), Wix())}


def _builtin(provider: WebhookProvider) -> bool:
    return type(provider).__module__.startswith("connector.providers.")


def _describe(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    origin = f" (from {dist.name} {dist.version})" if dist is not None else ""
    return f"entry point {ep.name} = {ep.value!r} in group {ENTRY_POINT_GROUP}{origin}"


def check_provider(
    provider: Any, what: str, taken: Mapping[str, WebhookProvider], name: str | None = None
) -> WebhookProvider:
    """`provider` if it can join `taken`, else a ConfigError saying why (`what` names it)."""
    missing = [m for m in _MEMBERS if not hasattr(provider, m)]
    if missing:
        raise ConfigError(
            f"provider {what} lacks {', '.join(missing)}: subclass "
            "connector.providers.base.BaseProvider (see ADDING_A_PROVIDER.md)"
        )
    cls = type(provider)
    if getattr(cls, "verify", None) is BaseProvider.verify and cls.bind is BaseProvider.bind:
        raise ConfigError(f"provider {what} implements neither verify nor bind")
    if getattr(cls, "is_configured", None) is BaseProvider.is_configured and not any(
        getattr(o, "required", False) for o in provider.options
    ):
        raise ConfigError(
            f"provider {what} marks no option required=True and implements no is_configured"
        )
    key = provider.key
    if name is not None and key != name:
        raise ConfigError(f"provider {what} has key {key!r}; the entry point's name must be it")
    if not isinstance(key, str) or not KEY_RE.match(key) or key in RESERVED_KEYS:
        raise ConfigError(
            f"provider {what}: key {key!r} must be 1-32 lower-case letters, digits or '_', "
            f"starting with a letter, and not {' or '.join(sorted(RESERVED_KEYS))}"
        )
    if key in taken:
        whose = "a built-in provider" if _builtin(taken[key]) else "registered twice"
        raise ConfigError(f"provider {what}: key {key!r} is {whose}; uninstall one of them")
    symbol = provider.provider
    if not isinstance(symbol, Provider) or (
        symbol is not Provider.OTHER and symbol.value.lower() != key
    ):
        raise ConfigError(
            f"provider {what}: provider symbol {symbol!r} is another provider's; a plugin "
            "sends Provider.OTHER (its key is in the member key and the provider_key attribute)"
        )
    clash = sorted(_variables(provider) & _taken_variables(taken))
    if clash:
        raise ConfigError(f"provider {what}: its settings {', '.join(clash)} already exist")
    return provider


def _variables(provider: Any) -> set[str]:
    prefix = f"CONNECTOR_{str(provider.key).upper()}_"
    return {prefix + o.name for o in provider.options} | {prefix + "UNVERIFIED"}


def _taken_variables(taken: Mapping[str, WebhookProvider]) -> set[str]:
    from connector.env import CORE_VARIABLES

    names = {v.name for v in CORE_VARIABLES}
    for other in taken.values():
        names |= _variables(other)
    return names


def load_plugin(ep: EntryPoint, taken: Mapping[str, WebhookProvider]) -> WebhookProvider:
    """The provider an entry point names, checked; ConfigError saying what is wrong with it."""
    what = f"plugin {_describe(ep)}"
    try:
        target: Any = ep.load()
        provider: Any = target() if isinstance(target, type) else target
    except Exception as exc:  # the plugin's own import or constructor failed: say whose it is
        raise ConfigError(
            f"cannot load provider {what}: {type(exc).__name__}: {exc} "
            "(fix or uninstall that package)"
        ) from exc
    return check_provider(provider, what, taken, ep.name)


def load_providers() -> dict[str, WebhookProvider]:
    """The built-in providers and the installed plugins', in key order."""
    found = _builtins()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        found[ep.name] = load_plugin(ep, found)
    return dict(sorted(found.items()))


class ProviderRegistry(Mapping[str, WebhookProvider]):
    """The providers by key, in key order: loaded on first use, once.

    Not at import: a broken plugin is then a ConfigError where the command line reports it
    (one `error:` line), not a traceback while `connector` itself is imported.
    """

    def __init__(self) -> None:
        self._providers: dict[str, WebhookProvider] | None = None

    def _all(self) -> dict[str, WebhookProvider]:
        if self._providers is None:
            self._providers = load_providers()
        return self._providers

    def __getitem__(self, key: str) -> WebhookProvider:
        return self._all()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._all().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"ProviderRegistry({list(self)})"

    def add(self, provider: WebhookProvider) -> None:
        """Register one more provider in this process (tests, embedding applications)."""
        current = self._all()
        check_provider(provider, f"{type(provider).__name__}", current)
        self._providers = dict(sorted({**current, provider.key: provider}.items()))

    def remove(self, key: str) -> None:
        """Forget a provider `add` registered."""
        if key in self._all() and _builtin(self._all()[key]):
            raise ValueError(f"{key} is built in")
        self._providers = {k: v for k, v in self._all().items() if k != key}


PROVIDERS = ProviderRegistry()


def get_provider(key: str) -> WebhookProvider:
    """The provider registered under `key`, or an error listing the valid keys."""
    try:
        return PROVIDERS[key]
    except KeyError:
        valid = ", ".join(sorted(PROVIDERS))
        raise UnknownProviderError(f"unknown provider {key!r}; valid providers: {valid}") from None


__all__ = [
    "ENTRY_POINT_GROUP",
    "PROVIDERS",
    "ProviderRegistry",
    "BaseProvider",
    "DecodeContext",
    "Option",
    "RequestTarget",
    "Secrets",
    "Verifier",
    "WebhookProvider",
    "Where",
    "get_provider",
    "load_providers",
]
