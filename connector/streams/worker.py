"""Running a worker process: Faust's `faust.Worker` around our `ConnectorApp`; SIGTERM stops it."""

from __future__ import annotations

import asyncio
import logging

import faust

from connector.kafka_admin import wait_and_ensure_topics
from connector.registry import register_schemas
from connector.settings import Settings
from connector.streams.app import create_app

log = logging.getLogger("connector.worker")


def run_worker(settings: Settings) -> int:
    # Source topics must exist before the consumer subscribes (Faust only creates its own
    # changelog topics); the bridge creates the raw topic too, whichever starts first.
    asyncio.run(wait_and_ensure_topics(settings))
    # Registry mode: every output schema is registered (and checked against the subject's
    # compatibility rule) before Faust starts; a refusal stops the worker with a RegistryError.
    ids = register_schemas(settings)
    if ids:
        log.info(
            "schema registry %s: %s",
            settings.schema_registry_url,
            ", ".join(f"{subject}={schema_id}" for subject, schema_id in sorted(ids.items())),
        )
    connector = create_app(settings)
    if settings.processing_guarantee == "exactly_once":
        log.info(
            "processing_guarantee=exactly_once: outputs, table and offsets commit in "
            "Kafka transactions"
        )
    worker = faust.Worker(
        connector.app,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        daemon=True,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
