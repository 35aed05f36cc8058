"""`InFlight`: a batch's events are acked to the stream only after its writes are durable.

An ack lets Faust commit the offset, so an ack before the outputs and the table write are
acknowledged by Kafka would lose those writes on a crash (the events would not be read again).
These tests hold the writes open and look at what the stream was told meanwhile.
"""

from __future__ import annotations

import asyncio

import pytest

from connector.streams.agents import InFlight


class RecordingStream:
    """The one part of a Faust stream InFlight uses: `ack`, in the order it was called."""

    def __init__(self) -> None:
        self.acked: list[object] = []

    async def ack(self, event: object) -> bool:
        self.acked.append(event)
        return True


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_events_are_acked_only_after_the_writes_finish_and_in_order() -> None:
    async def main() -> None:
        stream = RecordingStream()
        flight = InFlight(stream)  # type: ignore[arg-type]
        durable = asyncio.Event()

        async def writes() -> None:
            await durable.wait()

        flight.launch(["e1", "e2", "e3"], writes)
        for _ in range(20):  # the loop runs the task as far as it can go
            await asyncio.sleep(0)
        assert flight.busy
        assert stream.acked == [], "acked before the writes were durable"
        durable.set()
        await flight.wait()
        assert stream.acked == ["e1", "e2", "e3"]
        assert not flight.busy

    run(main())


def test_a_failed_write_acks_nothing_and_wait_raises_it() -> None:
    async def main() -> None:
        stream = RecordingStream()
        flight = InFlight(stream)  # type: ignore[arg-type]

        async def writes() -> None:
            await asyncio.sleep(0)
            raise OSError("table write refused")

        flight.launch(["e1", "e2"], writes)
        with pytest.raises(OSError, match="table write refused"):
            await flight.wait()
        assert stream.acked == []

    run(main())


def test_the_next_batch_is_worked_on_while_the_previous_one_is_in_flight() -> None:
    """The point of InFlight: launch returns at once; only wait() blocks, and one batch at a
    time is in flight (a second launch without wait() is a programming error)."""

    async def main() -> None:
        stream = RecordingStream()
        flight = InFlight(stream)  # type: ignore[arg-type]
        first = asyncio.Event()

        async def writes() -> None:
            await first.wait()

        flight.launch(["a"], writes)
        with pytest.raises(AssertionError):
            flight.launch(["b"], writes)
        assert flight.busy  # launch returned with "a" still in flight
        first.set()
        await flight.wait()
        flight.launch(["b"], writes)
        await flight.wait()
        assert stream.acked == ["a", "b"]

    run(main())
