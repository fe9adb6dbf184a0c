"""The Import page: a CSV or JSON lines calendar uploaded, every row checked
as the API checks a new post; one bad row and nothing is imported (a dry run
only checks)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from switchboard import people, refusals
from switchboard.api import posting_role
from switchboard.auth import Caller
from switchboard.console.page import Page, form_str
from switchboard.posts import check_import
from switchboard.refusals import Refused

if TYPE_CHECKING:
    from switchboard.console.page import Add


class ImportPage(Page):
    def routes(self, add: Add) -> None:
        page = self.guard.page
        add("GET", "/import", page(self.import_form))
        add("POST", "/import", page(self.import_post))

    async def import_form(self, request: web.Request) -> web.StreamResponse:
        return await self.guard.render(request, "import.html", {
            "title": "Import", "problems": [], "result": "", **self.flash(request)})

    async def import_post(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        caller = self.caller(request)
        upload = form.get("file")
        ctx: dict[str, Any] = {"title": "Import", "problems": [], "result": "", "ok": ""}
        try:
            if not (caller.can("marketing") or caller.can("ops")):
                raise refusals.forbidden(f"{caller.name} cannot post")
            if not isinstance(upload, web.FileField):
                raise refusals.bad_request("choose a CSV or JSON lines file to upload")
            data = upload.file.read()
            name = (upload.filename or "calendar.csv")[:200]
            dry = form_str(form, "action") == "dry-run"
            ctx["result"] = await self.import_rows(request, caller, data, name, dry, ctx)
        except Refused as exc:
            return await self.guard.refused(request, "import.html", ctx, exc)
        return await self.guard.render(request, "import.html", ctx,
                                 422 if ctx["problems"] else 200)

    async def import_rows(self, request: web.Request, caller: Caller, data: bytes,
                          name: str, dry: bool, ctx: dict[str, Any]) -> str:
        config = self.d.config

        def admit(post: Any) -> None:
            people.check_post(caller, post.channel, post.kind, config)
            if post.kind == "marketing" and config.needs_approval(post.channel):
                post.state = "pending_approval"

        now = self.d.clock()
        rows, problems = await asyncio.to_thread(
            check_import, data, name, role=posting_role(caller), now=now, tz=config.timezone,
            channels=self.api.limits(), admit=admit)
        if problems:
            ctx["problems"] = problems
            return f"{len(problems)} problem(s) in {name}; nothing was imported"
        if dry:
            return f"dry run: all {len(rows)} row(s) of {name} are good; nothing imported yet"
        created, existing = await self.d.store.import_posts(rows, caller.name, now)
        if created:
            self.d.publisher.poke(min(post.due_at for _, post in rows))
        return f"imported {len(created)} post(s) from {name} ({len(existing)} already there)"
