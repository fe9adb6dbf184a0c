"""Store writes that many channel workers ask for in the same loop step, done
in one transaction right after it: one commit for a fan-out over thousands of
channels, not one per channel. Each caller awaits its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")
# Items per shared transaction: large enough that 10,000 channels fanning out at
# once take a few commits, small enough that one commit never waits long.
SHARED_BATCH = 2000


class Shared(Generic[Item, Answer]):
    """Calls gathered per loop step and run as one: `run` gets every caller's
    items and answers each, in order."""

    def __init__(self, run: Callable[[list[list[Item]]], Awaitable[list[Answer]]],
                 limit: int = SHARED_BATCH) -> None:
        self._run, self._limit = run, limit
        self._pending: list[tuple[list[Item], asyncio.Future[Answer]]] = []
        self._armed = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, items: list[Item]) -> Answer:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending.append((items, future))
        if not self._armed:
            self._armed = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        taken, size = 0, 0
        while taken < len(self._pending) and size < self._limit:
            size += len(self._pending[taken][0])
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        self._armed = bool(self._pending)
        if self._armed:  # the rest after whatever else waits (a declaration, say)
            asyncio.get_running_loop().call_soon(self._flush)
        task = asyncio.get_running_loop().create_task(self._answer(batch))
        self._tasks.add(task)  # kept until done: the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, batch: list[tuple[list[Item], asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self._run([items for items, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)
