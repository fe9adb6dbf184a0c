"""The Now page: each channel's next post and the incidents holding it, each
feed's last success, the banners, and a send-now form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from switchboard import people
from switchboard.auth import Caller
from switchboard.console.page import Page, done, form_str, probe
from switchboard.refusals import Refused

if TYPE_CHECKING:
    from switchboard.console.guard import Guard
    from switchboard.console.page import Add
    from switchboard.console.posting import Posting


class NowPage(Page):
    def __init__(self, guard: Guard, posting: Posting) -> None:
        super().__init__(guard)
        self.posting = posting

    def routes(self, add: Add) -> None:
        page = self.guard.page
        add("GET", "/", page(self.now))
        add("GET", "/banners", page(self.banners))
        add("POST", "/send", page(self.send))

    async def channel_rows(self, caller: Caller) -> list[dict[str, Any]]:
        rows = []
        for item in self.d.channel_list():
            cid = item["id"]
            nxt = await self.d.store.page_posts(["scheduled", "queued"], cid, limit=1)
            rows.append({**item, "next": nxt[0] if nxt else None,
                         "held_by": await self.held_by(cid, "marketing"),
                         "may_send": item["audience"] == "public"
                         and people.may_act(caller, probe(cid), self.d.config)
                         and caller.can("marketing")})
        return rows

    def feed_rows(self) -> list[dict[str, Any]]:
        registry = self.d.metrics.registry
        out = []
        for feed in self.d.config.feeds:
            last = registry.get_sample_value("switchboard_feed_last_success_timestamp_seconds",
                                             {"feed": feed.id})
            out.append({"id": feed.id, "kind": feed.kind, "last_success": last or None})
        return out

    async def now(self, request: web.Request) -> web.StreamResponse:
        return await self.guard.render(request, "now.html", {
            **self.flash(request), "channels": await self.channel_rows(self.caller(request)),
            "feeds": self.feed_rows(), "title": "Now"})

    async def banners(self, request: web.Request) -> web.StreamResponse:
        return await self.guard.render(request, "banners.html", {})

    async def send(self, request: web.Request) -> web.StreamResponse:
        """Send now from the Now page: the API's checks, the gate, then the send."""
        form = await request.post()
        caller = self.caller(request)
        try:
            post = await self.posting.send_one(request, {"channel": form_str(form, "channel"),
                                                         "text": form_str(form, "text")})
        except Refused as exc:
            return await self.guard.refused(request, "now.html", {
                "ok": "", "channels": await self.channel_rows(caller), "feeds": self.feed_rows(),
                "title": "Now"}, exc)
        raise done("/", f"post {post.id} on {post.channel}: {post.state}")
