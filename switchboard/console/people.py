"""The Audit and Users pages: the last 30 days of the audit log as far as the
person's teams reach, and (for admins) adding, disabling and enabling people."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from switchboard import people
from switchboard.console.page import Page, done, form_str
from switchboard.refusals import Refused

if TYPE_CHECKING:
    from switchboard.console.page import Add


class PeoplePages(Page):
    def routes(self, add: Add) -> None:
        page = self.guard.page
        add("GET", "/audit", page(self.audit))
        add("GET", "/users", page(self.users))
        add("POST", "/users", page(self.users_post))

    async def audit(self, request: web.Request) -> web.StreamResponse:
        caller = self.caller(request)
        try:
            teams = people.may_see_audit(caller)
        except Refused as exc:
            raise web.HTTPForbidden(text=exc.message) from exc
        entries = await self.d.store.audit(teams=None if teams is None else list(teams),
                                     since=self.d.clock() - 30 * 86400, limit=1000)
        return await self.guard.render(request, "audit.html", {
            "title": "Audit", "entries": entries[::-1][:200]})

    async def users_context(self, request: web.Request) -> dict[str, Any]:
        return {"title": "Users", "people": await self.d.store.people(),
                "teams": self.d.config.teams,
                **self.flash(request)}

    async def users(self, request: web.Request) -> web.StreamResponse:
        if self.caller(request).role != "admin":
            raise web.HTTPForbidden(text="Users is for admins")
        return await self.guard.render(request, "users.html", await self.users_context(request))

    async def users_post(self, request: web.Request) -> web.StreamResponse:
        """Add a person, or disable / enable one (their sessions stop at once)."""
        if self.caller(request).role != "admin":
            raise web.HTTPForbidden(text="Users is for admins")
        form = await request.post()
        try:
            name = form_str(form, "name")
            if form_str(form, "action") in ("disable", "enable"):
                await self.d.people.update(
                    name, {"disabled": form_str(form, "action") == "disable"})
                raise done("/users", f"{name} {form_str(form, 'action')}d")
            password = str(form.get("password", ""))
            hashed = await asyncio.to_thread(self.d.people.hash_password, password)
            teams = [t for t in form.getall("team", []) if isinstance(t, str) and t]
            await self.d.people.add({"name": name, "role": form_str(form, "role") or "viewer",
                               "teams": teams}, hashed)
        except Refused as exc:
            context = await self.users_context(request)
            return await self.guard.refused(request, "users.html", context, exc)
        raise done("/users", f"{name} added")
