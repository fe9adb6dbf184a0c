"""One holder at a time per key, for work that checks and then writes across
awaits (a repeat of a request, two deliveries of one alert): the second waits
for the first, then sees what it wrote."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType


class KeyedLocks:
    def __init__(self) -> None:
        # A lock and how many hold or wait for it: kept only while in use, so
        # memory follows the work in flight, not every key ever seen.
        self._locks: dict[Hashable, _Entry] = {}

    def hold(self, *keys: Hashable) -> _Held:
        """Hold every one of `keys` (taken in one order, so two holders of the same
        keys never wait for each other in a circle)."""
        return _Held(self, sorted(set(keys), key=repr) if len(keys) > 1 else list(keys))

    async def _take(self, key: Hashable) -> None:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _Entry()
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:
            self._leave(key)
            raise

    def _give(self, key: Hashable) -> None:
        self._locks[key].lock.release()
        self._leave(key)

    def _leave(self, key: Hashable) -> None:
        entry = self._locks[key]
        entry.users -= 1
        if not entry.users:
            del self._locks[key]


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


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
