"""Microbenchmark of faust_compat use 7: a Faust consumer's per-message
`wait_first(callback(message), suspend_flow.wait())`, as `Consumer._drain_messages` awaits it,
with mode's `Service.wait_first` and with `install_fast_wait_first`'s fast path.

    .venv/bin/python benchmarks/wait_first.py [--messages 50000]

Prints JSON (µs per message); the consumer is not started (the wait does not touch Kafka).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import faust

from connector.streams.faust_compat import install_fast_wait_first


async def _deliver(message: int) -> int:  # the conductor's callback, finishing at once
    return message


async def _per_message(consumer: faust.types.ConsumerT, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await consumer.wait_first(_deliver(i), consumer.suspend_flow.wait())  # type: ignore[attr-defined]
    return round((time.perf_counter() - start) / n * 1e6, 2)


async def _main(n: int) -> dict[str, float]:
    app = faust.App("wait-first-bench", broker="kafka://127.0.0.1:1", store="memory://")
    consumer = app.consumer
    modes = await _per_message(consumer, n)
    install_fast_wait_first(consumer)
    fast = await _per_message(consumer, n)
    return {"mode_wait_first_us": modes, "fast_path_us": fast, "messages": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    print(json.dumps(asyncio.run(_main(parser.parse_args().messages))))


if __name__ == "__main__":
    main()
