"""`GET /api/v1/events`: server-sent events telling open pages that state moved.

One watcher per daemon compares a cheap mark of the state (incidents and
their cooldowns, the channels under control, the newest timeline entry and
post event) every half second and wakes every open stream when it changes;
each page then fetches the part it shows. A declaration reaches an open page
within a second, whichever process or route made it.

Each page is rendered with the version it saw and connects with it
(`?since=N`): a change between the page's reading and its connection, or
while a stream was down and the browser reconnects, is pushed at once
instead of being taken for the state the page shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp_sse import sse_response

if TYPE_CHECKING:
    from switchboard.api import Services

EVERY = 0.5  # seconds between looks at the state
KEEPALIVE = 15.0  # seconds between comments that keep proxies from closing the stream


class Pulse:
    def __init__(self, services: Services) -> None:
        self.d = services
        self.version = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._mark: Any = None
        self.closing = False

    async def mark(self) -> Any:
        d = self.d
        now = d.clock()
        listing = [(i.id, i.state, i.held_done, i.cooldown_until)
                   for i in await d.incidents.listing(False)]
        return (listing, sorted(d.gate.channels_under_control(now)), await d.store.change_marks())

    async def watch(self) -> None:
        while True:
            try:
                mark = await self.mark()
            except Exception:  # a store that cannot be read now: try again next round
                mark = self._mark
            if mark != self._mark:
                self._mark = mark
                self.version += 1
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(EVERY)

    async def start(self) -> None:
        # Pages and streams arriving together at the first view start one watcher.
        async with self._starting:
            if self._task is None:
                self._mark = await self.mark()
                self._task = asyncio.get_running_loop().create_task(self.watch())

    async def stop(self, app: web.Application) -> None:
        """On shutdown: every open stream ends now, not at its next keepalive."""
        self.closing = True
        async with self._changed:
            self._changed.notify_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self, seen: int) -> int:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(
                    lambda: self.version != seen or self.closing),
                                       KEEPALIVE)
        return self.version

    async def current(self) -> int:
        """The version now (watching from the first page on)."""
        await self.start()
        return self.version

    async def events(self, request: web.Request, since: int | None) -> web.StreamResponse:
        """The stream, for a caller already let in. `since`: the version the page was
        rendered with (a different one now is a change it has not shown)."""
        await self.start()
        seen = self.version if since is None else since
        async with sse_response(request, headers={"Cache-Control": "no-store"}) as stream:
            await stream.send(str(seen), event="hello")
            while stream.is_connected() and not self.closing:
                now = await self.wait(seen)
                if now != seen:
                    seen = now
                    await stream.send(str(seen), event="change")
                else:
                    await stream.send("", event="keepalive")
        return stream
