"""A/B baseline for `pipeline.py --worker-app`: the package's worker with each at-least-once
output sent on its own (Faust's `Producer.send`, one future per record, as before
`OutputBatch`), everything else as shipped.

    .venv/bin/python benchmarks/pipeline.py --quick --records 10000 --rounds 2 --peers quix \\
        --worker-app benchmarks/variants/per_record_outputs.py

(`benchmarks/results/output_batch_ab.json`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import connector.streams.app as package_app
import connector.streams.outputs as outputs_module
from connector.settings import Settings


@dataclass
class _Sent:
    ack: Any


class PerRecord:
    """`OutputBatch`'s interface, sending every record at once through `Outputs.send`."""

    def __init__(self, outputs: outputs_module.Outputs) -> None:
        self.outputs, self.acks = outputs, []

    async def send(self, topic: Any, key: bytes, value: bytes | None, source: Any) -> None:
        self.acks.append(await self.outputs.send(topic, key, value, source))

    async def dead_letter(self, dl: Any, source: Any) -> None:
        self.acks.append(await self.outputs.dead_letter(dl, source))

    async def flush(self) -> list[_Sent]:
        acks, self.acks = self.acks, []
        return [_Sent(a) for a in acks]


def create_app(settings: Settings) -> package_app.ConnectorApp:
    outputs_module.Outputs.batch = lambda self: PerRecord(self)  # type: ignore[assignment,method-assign,return-value]
    return package_app.create_app(settings)
