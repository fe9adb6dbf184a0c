"""Push deliveries (`POST /feeds/{feed_id}`) and the feeds' status. A delivery
carries its feed's own token or signature, which the feed checks."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from switchboard.api.common import ok, read_body
from switchboard.refusals import Refused

if TYPE_CHECKING:
    from switchboard.api.services import Services

# Signed feed bodies read at once (each up to max_body_bytes): memory stays
# bounded whatever number of signed-looking deliveries arrive together.
FEED_BODIES_AT_ONCE = 32


class FeedsApi:
    def __init__(self, services: Services) -> None:
        self.d = services
        self._feed_bodies = asyncio.Semaphore(FEED_BODIES_AT_ONCE)

    async def feed(self, request: web.Request) -> web.Response:
        feed_id = request.match_info["feed_id"]
        proven = self.d.feeds.admit(feed_id, request.headers)  # before a byte of the body
        try:
            body = await (read_body(request) if proven else self._unproven_body(request))
        except Refused as exc:
            self.d.feeds.count_error(feed_id, exc.code, exc.message)
            raise
        except web.HTTPRequestEntityTooLarge:
            self.d.feeds.count_error(feed_id, "too_large")
            raise
        result = await self.d.feeds.deliver(feed_id, body, request.headers)
        return ok(result, 202)

    async def _unproven_body(self, request: web.Request) -> bytes:
        """A signed feed's body, which only its signature can vouch for: only so
        many are buffered at once, and one past them is told to retry."""
        if self._feed_bodies.locked():
            raise Refused(503, "busy", "too many unverified deliveries at once; retry")
        async with self._feed_bodies:
            return await read_body(request)

    async def feeds_status(self, request: web.Request) -> web.Response:
        return ok(self.d.feeds.status(self.d.clock()))
