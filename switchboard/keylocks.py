"""One holder at a time per key, for work that checks and then writes across
awaits (a repeat of a request, two deliveries of one alert): the second waits
for the first, then sees what it wrote."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from types import TracebackType


class KeyedLocks:
    def __init__(self) -> None:
        # The keys held now, each with the holders waiting for it in turn: kept only
        # while in use, so memory follows the work in flight, not every key seen.
        # No asyncio.Lock per key: taking a free key must cost next to nothing (the
        # feeds take one per alert of every delivery).
        self._held: dict[Hashable, deque[asyncio.Future[None]]] = {}

    def hold(self, *keys: Hashable) -> _Held:
        """Hold every one of `keys` (taken in one order, so two holders of the same
        keys never wait for each other in a circle)."""
        return _Held(self, sorted(set(keys), key=repr) if len(keys) > 1 else list(keys))

    async def _take(self, key: Hashable) -> None:
        waiting = self._held.get(key)
        if waiting is None:
            self._held[key] = deque()
            return
        turn = asyncio.get_running_loop().create_future()
        waiting.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._give(key)  # handed the key just as it was cancelled: pass it on
            else:
                waiting.remove(turn)
            raise

    def _give(self, key: Hashable) -> None:
        waiting = self._held[key]
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the key goes to the next one, still held
                return
        del self._held[key]


class _Held:
    """`async with locks.hold(...)`: taken in order, given back in reverse."""

    def __init__(self, locks: KeyedLocks, keys: list[Hashable]) -> None:
        self._locks, self._keys = locks, keys
        self._taken: list[Hashable] = []

    async def __aenter__(self) -> None:
        try:
            for key in self._keys:
                await self._locks._take(key)
                self._taken.append(key)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        while self._taken:
            self._locks._give(self._taken.pop())
