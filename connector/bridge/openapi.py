"""The bridge's OpenAPI 3.1 description, served at `/openapi.json` and fuzzed by schemathesis."""

from __future__ import annotations

from typing import Any

from connector import __version__
from connector.providers import PROVIDERS


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        out["headers"] = {
            "Retry-After": {
                "schema": {"type": "string"},
                "description": "seconds to wait before retrying",
            }
        }
    return out


def openapi_spec() -> dict[str, Any]:
    provider_param = {
        "name": "provider",
        "in": "path",
        "required": True,
        "description": "provider key",
        "schema": {"type": "string", "enum": sorted(PROVIDERS)},
    }
    tenant_param = {
        "name": "tenant",
        "in": "path",
        "required": True,
        "description": "tenant (shop, site, project) the webhook belongs to",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
    }
    body = {
        "required": True,
        "description": "the provider's webhook body, verified and stored byte for byte "
        "(JSON, or a JWT string for Wix)",
        "content": {
            "application/json": {"schema": {}},
            "text/plain": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    responses = {
        "200": {
            "description": "stored in Kafka (acks=all); safe to forget",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        },
        "400": _error("malformed request"),
        "401": _error("signature, token or shared header did not verify"),
        "404": _error("unknown or unconfigured provider or tenant"),
        "408": _error("body not received within CONNECTOR_BODY_TIMEOUT_MS"),
        "413": _error("body larger than CONNECTOR_MAX_BODY_BYTES"),
        "429": _error("too many concurrent webhooks", retry_after=True),
        "503": _error("Kafka unavailable or slow to acknowledge; retry", retry_after=True),
    }
    webhook_op = {
        "summary": "Receive one webhook delivery",
        "requestBody": body,
        "responses": responses,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "loyalty-connector bridge",
            "version": __version__,
            "description": "Verified loyalty webhooks into Kafka.",
        },
        "paths": {
            "/webhooks/{provider}": {
                "post": {
                    **webhook_op,
                    "operationId": "receiveWebhook",
                    "parameters": [provider_param],
                },
            },
            "/webhooks/{provider}/{tenant}": {
                "post": {
                    **webhook_op,
                    "operationId": "receiveTenantWebhook",
                    "parameters": [provider_param, tenant_param],
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "process is alive",
                    "responses": {
                        "200": {
                            "description": "alive",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Status"}
                                }
                            },
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "broker reachable and producer ready",
                    "responses": {
                        "200": {
                            "description": "ready",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Status"}
                                }
                            },
                        },
                        "503": {
                            "description": "not ready",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Status"}
                                }
                            },
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "this document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Accepted": {
                    "type": "object",
                    "required": ["accepted", "request_id"],
                    "properties": {"accepted": {"const": True}, "request_id": {"type": "string"}},
                    "additionalProperties": False,
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}},
                },
                "Status": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string"}},
                },
            }
        },
    }
