"""Health, readiness, metrics and the daemon's status: what operators and
their monitoring ask of a running daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from switchboard.api.common import ok

if TYPE_CHECKING:
    from switchboard.api.services import Services


class HealthApi:
    def __init__(self, services: Services) -> None:
        self.d = services

    async def healthz(self, request: web.Request) -> web.Response:
        alive = self.d.is_alive()
        return ok({"status": "ok" if alive else "scheduler stopped"}, 200 if alive else 503)

    async def readyz(self, request: web.Request) -> web.Response:
        store_ok = await self.d.check_store()
        ready = self.d.ready and store_ok
        # A standby is ready too (it serves the API and the feeds): it says which it is.
        body: dict[str, Any] = {"ready": ready, **self.d.leadership()}
        if not store_ok and self.d.store.failure is not None:
            body["store"] = self.d.store.failure.message
        return ok(body, 200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        await self.d.refresh_metrics()
        body = generate_latest(self.d.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(self, request: web.Request) -> web.Response:
        return ok(await self.d.status())

    async def channels(self, request: web.Request) -> web.Response:
        return ok(self.d.channel_list())
