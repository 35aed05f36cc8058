"""The connector's exceptions: one root, so callers can tell our errors from bugs."""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""


class ConfigError(ConnectorError):
    """A setting is missing or malformed; the message names the variable and what is expected."""


class VerificationError(ConnectorError):
    """A webhook's signature, token or shared header did not check out.

    Messages are short and never contain secrets or the expected signature.
    """


class DecodeError(ConnectorError):
    """A webhook body could not be turned into canonical events (what is wrong, and where)."""


class SchemaError(ConnectorError):
    """A record does not match its Avro schema, or bytes are not a record we know."""


class UnknownProviderError(ConnectorError):
    """A provider name that is not registered."""


class BrokerError(ConnectorError):
    """A broker could not be started, reached or used."""


class InvalidTenantError(ConnectorError):
    """A tenant name outside the tenant alphabet (letters, digits, '.', '_', '-')."""
