"""A/B baseline for `pipeline.py --worker-app`: the package's worker with faust_compat use 7
(`install_fast_wait_first`) turned off, everything else as shipped.

    .venv/bin/python benchmarks/pipeline.py --quick --records 10000 --rounds 2 --peers quix \
        --worker-app benchmarks/variants/no_fast_wait_first.py

(`benchmarks/results/wait_first_ab.json`: runs with and without, in the order with, without,
without, with.)
"""

from __future__ import annotations

import connector.streams.app as package_app
from connector.settings import Settings


def create_app(settings: Settings) -> package_app.ConnectorApp:
    package_app.install_fast_wait_first = lambda consumer: False  # type: ignore[assignment]
    return package_app.create_app(settings)
