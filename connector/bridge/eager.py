"""Running a coroutine without wrapping it in an asyncio Task, for the bridge's hot path.

A Task per webhook (creation, registration in asyncio's task set, a first trip through the
loop) measured ~16 % of the HTTP ceiling's CPU at 256 connections (py-spy,
benchmarks/bridge.py). Most of the bridge's coroutines finish at once or wait for one future
at a time: `drive` runs one now, as far as it goes, and on from each future it waits for, as a
Task would. What a Task has and this does not: cancel(), current_task() and a context copy
per task. The coroutines driven here use none of them (asyncio.timeout, which needs
current_task, is only on the aiohttp path).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("connector.bridge")

Done = Callable[[Any, BaseException | None], None]


def drive(coro: Coroutine[Any, Any, Any], done: Done | None = None) -> None:
    """Run `coro` now; `done(result, None)` or `done(None, error)` when it finishes. Without
    `done`, an error is logged, as an unretrieved Task exception would be."""
    try:
        waited = coro.send(None)
    except StopIteration as stop:
        if done is not None:
            done(stop.value, None)
        return
    except BaseException as exc:
        if done is None:
            log.exception("unexpected error in the bridge", exc_info=exc)
        else:
            done(None, exc)
        return
    resume_after(coro, waited, done)


def resume_after(coro: Coroutine[Any, Any, Any], waited: Any, done: Done | None) -> None:
    """`coro` yielded `waited`: go on once it is done (a bare yield: at the next loop turn)."""
    if waited is None:  # asyncio.sleep(0)
        asyncio.get_running_loop().call_soon(drive, coro, done)
        return
    # an asyncio future, blocking on it (Future.__await__): once done, the coroutine gets its
    # result, or its exception raised, when it is sent None
    waited._asyncio_future_blocking = False
    waited.add_done_callback(functools.partial(_resume, coro, done))


def _resume(coro: Coroutine[Any, Any, Any], done: Done | None, _: asyncio.Future[Any]) -> None:
    drive(coro, done)
