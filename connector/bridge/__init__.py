"""HTTP bridge: verified webhooks into the raw topic, answered only after a durable write."""

from connector.bridge.app import create_app

__all__ = ["create_app"]
