"""Registry of webhook providers, keyed by the provider key used in URLs, settings and topics."""

from __future__ import annotations

from connector.errors import UnknownProviderError
from connector.providers.base import DecodeContext, Secrets, WebhookProvider
from connector.providers.gameball import Gameball
from connector.providers.open_loyalty import OpenLoyalty
from connector.providers.voucherify import Voucherify
from connector.providers.wix import Wix

PROVIDERS: dict[str, WebhookProvider] = {
    "gameball": Gameball(),
    "open_loyalty": OpenLoyalty(),
    "voucherify": Voucherify(),
    "wix": Wix(),
}


def get_provider(key: str) -> WebhookProvider:
    """The provider registered under `key`, or an error listing the valid keys."""
    try:
        return PROVIDERS[key]
    except KeyError:
        valid = ", ".join(sorted(PROVIDERS))
        raise UnknownProviderError(f"unknown provider {key!r}; valid providers: {valid}") from None


__all__ = ["PROVIDERS", "DecodeContext", "Secrets", "WebhookProvider", "get_provider"]
