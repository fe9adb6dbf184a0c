"""The Runbooks page: each runbook, and the timeline one would run for the
next few hours, simulated on a fake clock against the configured channels."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from switchboard.console.page import Page
from switchboard.runbooks import channel_infos
from switchboard.simulate import format_text, simulate

if TYPE_CHECKING:
    from switchboard.console.page import Add


class RunbooksPage(Page):
    def routes(self, add: Add) -> None:
        add("GET", "/runbooks", self.guard.page(self.runbooks))

    async def runbooks(self, request: web.Request) -> web.StreamResponse:
        books = sorted(self.d.runbooks.values(), key=lambda r: r.name)
        chosen = request.query.get("runbook", "")
        hours = request.query.get("hours", "3")
        text = ""
        book = self.d.runbooks.get(chosen)
        if book is not None:
            span = timedelta(hours=float(hours)) if _number(hours) else timedelta(hours=3)
            text = format_text(simulate(book, channel_infos(self.d.config.channels),
                                        for_=span, timezone=self.d.config.timezone))
        return await self.guard.render(request, "runbooks.html", {
            "title": "Runbooks", "runbooks": books, "chosen": chosen, "hours": hours,
            "simulation": text, **self.flash(request)})


def _number(value: str) -> bool:
    try:
        return 0 < float(value) <= 72
    except ValueError:
        return False
