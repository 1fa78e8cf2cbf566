"""storage.background.stop: a background task is stopped within its bound even when it loses a cancel."""

from __future__ import annotations

import asyncio
import time

from storage.background import stop


async def polling_loop(swallow: int, polls: list[float]) -> None:
    """A poller whose first ``swallow`` cancellations are lost, as asyncio.wait_for loses one that
    arrives together with its result on Python 3.11."""
    while True:
        try:
            polls.append(time.monotonic())
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if swallow <= 0:
                raise
            swallow -= 1


def test_a_lost_cancellation_is_repeated() -> None:
    async def scenario() -> tuple[bool, bool, float]:
        polls: list[float] = []
        task = asyncio.create_task(polling_loop(3, polls))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        stopped = await stop(task, grace=5)
        return stopped, task.cancelled(), time.monotonic() - started

    stopped, cancelled, took = asyncio.run(scenario())
    assert stopped and cancelled
    assert took < 5


def test_a_task_that_never_stops_is_given_up_after_the_grace(caplog) -> None:  # noqa: ANN001
    async def scenario() -> tuple[bool, bool]:
        released = asyncio.Event()

        async def stubborn() -> None:
            while not released.is_set():
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    pass

        task = asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0)
        stopped = await stop(task, grace=0.3)
        done = task.done()
        released.set()
        await task
        return stopped, done

    stopped, done = asyncio.run(scenario())
    assert not stopped and not done
    assert "stubborn did not stop within 0.3s" in caplog.text


def test_an_error_the_task_ended_with_is_logged_not_raised(caplog) -> None:  # noqa: ANN001
    async def failing() -> None:
        raise RuntimeError("poll failed")

    async def scenario() -> bool:
        task = asyncio.create_task(failing(), name="failing")
        await asyncio.sleep(0)
        return await stop(task)

    assert asyncio.run(scenario())
    assert "failing ended with RuntimeError('poll failed')" in caplog.text
