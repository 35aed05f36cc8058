"""`eager.drive`: a coroutine run without a Task behaves as it would in one.

The oracle is asyncio itself: each coroutine below is also run as a Task and must give the same
result, in the same order of steps, with errors raised inside it where a Task raises them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connector.bridge.eager import drive


async def _steps(log: list[str], fut: asyncio.Future[int], failing: asyncio.Future[int]) -> int:
    log.append("start")
    await asyncio.sleep(0)  # a bare yield
    log.append("after yield")
    value = await fut  # a future done later
    log.append(f"got {value}")
    try:
        await failing
    except KeyError as exc:
        log.append(f"caught {exc.args[0]}")
    already = asyncio.get_running_loop().create_future()
    already.set_result(1)
    await already  # done already: no suspension
    return value + 1


def _run(how: str) -> tuple[list[str], Any]:
    async def main() -> tuple[list[str], Any]:
        loop = asyncio.get_running_loop()
        log: list[str] = []
        fut: asyncio.Future[int] = loop.create_future()
        failing: asyncio.Future[int] = loop.create_future()
        outcome: list[Any] = []
        if how == "task":
            task = asyncio.ensure_future(_steps(log, fut, failing))
            task.add_done_callback(lambda t: outcome.append(t.result()))
        else:
            drive(_steps(log, fut, failing), lambda value, exc: outcome.append(value or exc))
        log.append("returned")
        for _ in range(3):
            await asyncio.sleep(0)
        loop.call_soon(fut.set_result, 41)
        loop.call_soon(failing.set_exception, KeyError("boom"))
        for _ in range(10):
            await asyncio.sleep(0)
        return log, outcome

    return asyncio.run(main())


def test_drive_matches_a_task_step_for_step() -> None:
    task_log, task_outcome = _run("task")
    drive_log, drive_outcome = _run("drive")
    assert task_outcome == drive_outcome == [42]
    steps = ["start", "after yield", "got 41", "caught boom"]
    assert [x for x in drive_log if x != "returned"] == steps
    assert [x for x in task_log if x != "returned"] == steps
    # drive starts at once (the task only on the next loop turn): the one intended difference
    assert drive_log[:2] == ["start", "returned"]
    assert task_log[:2] == ["returned", "start"]


def test_an_error_reaches_done_or_the_log(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("bad")

    async def main() -> list[Any]:
        got: list[Any] = []
        drive(fails(), lambda value, exc: got.append(exc))
        drive(fails())  # no `done`: logged
        for _ in range(5):
            await asyncio.sleep(0)
        return got

    got = asyncio.run(main())
    assert len(got) == 1 and isinstance(got[0], ValueError)
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


def test_a_coroutine_that_finishes_at_once_is_done_before_drive_returns() -> None:
    async def quick() -> str:
        return "now"

    async def main() -> list[Any]:
        got: list[Any] = []
        drive(quick(), lambda value, exc: got.append(value))
        return list(got)  # before any loop turn

    assert asyncio.run(main()) == ["now"]
