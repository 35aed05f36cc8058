"""Faust worker: `normalize` and `ledger` agents, the members table and member queries.

Laid out as Faust suggests for larger apps: `app.py` builds the app (`create_app(settings)` →
`ConnectorApp`), `agents.py`, `views.py` and `metrics.py` beside it; the members table is
`members.py` with its record format in `state_format.py`; Faust internals only in
`faust_compat.py`. `connector.streams:app` is the module-level app Faust's own CLI needs
(`faust -A connector.streams:app worker`), built from the environment on first use.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from connector.settings import Settings
        from connector.streams.app import create_app

        built = create_app(Settings.from_env()).app
        globals()["app"] = built
        return built
    raise AttributeError(name)
