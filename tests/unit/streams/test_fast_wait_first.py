"""`install_fast_wait_first`: Faust's per-message wait, without its four Tasks when the
delivery finishes at once, and exactly mode's behaviour when it does not.

Each test drives a real Faust consumer (faust-streaming's aiokafka transport, not started: the
wait does not touch the broker) the way `Consumer._drain_messages` does:
`await consumer.wait_first(callback(message), consumer.suspend_flow.wait())`.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import faust
import pytest

from connector.streams.faust_compat import install_fast_wait_first


@pytest.fixture
def app() -> Iterator[faust.App]:
    yield faust.App("fast-wait-first-test", broker="kafka://127.0.0.1:1", store="memory://")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_delivery_that_finishes_at_once_runs_in_the_draining_task(app: faust.App) -> None:
    async def main() -> None:
        consumer = app.consumer
        assert install_fast_wait_first(consumer)
        ran_in: list[asyncio.Task[Any] | None] = []

        async def deliver(value: int) -> int:
            ran_in.append(asyncio.current_task())
            return value * 2

        suspend = consumer.suspend_flow.wait()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = deliver(21)
            done = await consumer.wait_first(first, suspend)
            del first
            gc.collect()
        assert done.done == [done.done[0]] and done.results == [42] and not done.stopped
        # no Task of its own (mode's wait_first would run it in one)
        assert ran_in == [asyncio.current_task()]
        # the suspend wait was closed, never started, and nothing warns "never awaited"
        assert inspect.getcoroutinestate(suspend) == inspect.CORO_CLOSED
        assert not [w for w in caught if "never awaited" in str(w.message)], caught

    run(main())


def test_a_delivery_that_suspends_is_resumed_with_what_it_awaited(app: faust.App) -> None:
    async def main() -> None:
        consumer = app.consumer
        install_fast_wait_first(consumer)
        loop = asyncio.get_running_loop()
        room = loop.create_future()
        steps: list[str] = []

        async def deliver() -> int:
            steps.append("decoded")
            got = await room  # a full stream queue: put() waits for room
            steps.append(f"put {got}")
            await asyncio.sleep(0)
            return got + 1

        loop.call_later(0.02, room.set_result, 41)
        done = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        assert done.results == [42] and not done.stopped
        assert steps == ["decoded", "put 41"]

    run(main())


def test_a_suspended_flow_wins_over_a_waiting_delivery_and_cancels_it(app: faust.App) -> None:
    # as with mode's wait_first: a rebalance suspends the flow, the pending delivery is dropped
    async def main() -> None:
        consumer = app.consumer
        install_fast_wait_first(consumer)
        never = asyncio.get_running_loop().create_future()
        cancelled = asyncio.Event()

        async def deliver() -> None:
            try:
                await never
            except asyncio.CancelledError:
                cancelled.set()
                raise

        asyncio.get_running_loop().call_later(0.02, consumer.suspend_flow.set)
        done = await asyncio.wait_for(
            consumer.wait_first(deliver(), consumer.suspend_flow.wait()), 2
        )
        assert done.results == [True] and not done.stopped
        await asyncio.wait_for(cancelled.wait(), 1)

    run(main())


def test_a_flow_already_suspended_is_left_to_modes_wait_first(app: faust.App) -> None:
    async def main() -> None:
        consumer = app.consumer
        install_fast_wait_first(consumer)
        consumer.suspend_flow.set()
        ran_in: list[asyncio.Task[Any] | None] = []

        async def deliver() -> str:
            ran_in.append(asyncio.current_task())
            return "delivered"

        await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        assert ran_in and ran_in[0] is not asyncio.current_task()  # mode's own Task

    run(main())


def test_a_failing_delivery_raises_before_and_after_suspending(app: faust.App) -> None:
    async def main() -> None:
        consumer = app.consumer
        install_fast_wait_first(consumer)

        async def fails_at_once() -> None:
            raise ValueError("bad message")

        async def fails_later() -> None:
            await asyncio.sleep(0.01)
            raise KeyError("later")

        suspend = consumer.suspend_flow.wait()
        with pytest.raises(ValueError, match="bad message"):
            await consumer.wait_first(fails_at_once(), suspend)
        assert inspect.getcoroutinestate(suspend) == inspect.CORO_CLOSED
        with pytest.raises(KeyError, match="later"):
            await consumer.wait_first(fails_later(), consumer.suspend_flow.wait())

    run(main())


def test_installing_twice_or_on_something_else_is_refused(app: faust.App) -> None:
    consumer = app.consumer
    assert install_fast_wait_first(consumer) is True
    assert install_fast_wait_first(consumer) is False
    assert install_fast_wait_first(object()) is False  # type: ignore[arg-type]


def test_the_worker_app_installs_it_on_its_first_assignment(tmp_path: Any) -> None:
    # faust_app (the worker's, the one-hop worker's and the Faust floor's app) hooks it up
    from connector.settings import Settings
    from connector.streams.app import faust_app

    async def main() -> None:
        settings = Settings.from_env(
            {"CONNECTOR_DATA_DIR": str(tmp_path), "CONNECTOR_TABLE_STORE": "memory"}
        )
        app = faust_app(settings)
        consumer = app.consumer
        assert "wait_first" not in vars(consumer)
        await app.on_partitions_assigned.send(assigned=set())
        assert "wait_first" in vars(consumer)
        assert install_fast_wait_first(consumer) is False  # already there

    run(main())
