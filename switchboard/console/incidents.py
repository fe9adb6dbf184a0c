"""The Incidents pages: the list, declaring one (with its holding statement
previewed), and one incident's timeline with its update, resolve, void and
release actions."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from switchboard import refusals
from switchboard.console.page import PAGE, Page, done, form_str
from switchboard.incidents import parse_incident_id
from switchboard.refusals import Refused
from switchboard.runbooks import channel_infos
from switchboard.simulate import simulate

if TYPE_CHECKING:
    from switchboard.console.page import Add


class IncidentPages(Page):
    def routes(self, add: Add) -> None:
        page = self.guard.page
        add("GET", "/incidents", page(self.incidents))
        add("POST", "/incidents", page(self.declare))
        add("GET", "/incidents/preview", page(self.preview))
        add("POST", "/incidents/preview", page(self.preview))
        add("GET", "/incidents/{id}", page(self.incident))
        add("POST", "/incidents/{id}/{action}", page(self.incident_action))

    async def incidents_context(self, request: web.Request,
                          values: Any = None) -> dict[str, Any]:
        """The page; `values` (a form or query) refills the declaration form."""
        listing, _ = await self.d.store.page_incidents(True, limit=PAGE)
        values = values or {}
        filled = {k: form_str(values, k) for k in ("runbook", "title", "severity", "reason")}
        filled_channels = [c for c in values.getall("channel", [])
                           if isinstance(c, str)] if values else []
        return {"title": "Incidents", "incidents": listing, "values": filled,
                "ticked": filled_channels,
                "runbooks": sorted(self.d.runbooks.values(), key=lambda r: r.name),
                "all_channels": [c for c in self.d.config.channels if c.audience == "public"],
                "preview": [], **self.flash(request)}

    async def incidents(self, request: web.Request) -> web.StreamResponse:
        context = await self.incidents_context(request)
        return await self.guard.render(request, "incidents.html", context)

    def holding(self, runbook: str, title: str,
                scope: list[str] | None = None) -> list[dict[str, Any]]:
        """What the runbook posts as it is declared (the holding statement), rendered;
        on the channels ticked, else the runbook's."""
        book = self.d.runbooks.get(runbook)
        if book is None:
            return []
        # Steps due at 0m are the ones run as it is declared.
        timeline = simulate(book, channel_infos(self.d.config.channels),
                            for_=timedelta(minutes=1), title=title or None,
                            timezone=self.d.config.timezone)
        return [{"channels": scope or e.channels, "text": e.text} for e in timeline.events
                if e.event == "step" and e.offset == timedelta(0) and e.text
                and e.action == "post"]

    async def preview(self, request: web.Request) -> web.StreamResponse:
        """The holding statement: a fragment for htmx, the whole page (the form kept
        as filled) without JS."""
        values = await request.post() if request.method == "POST" else request.query
        scope = [c for c in values.getall("channel", []) if isinstance(c, str)]
        preview = self.holding(form_str(values, "runbook"), form_str(values, "title")[:300],
                               scope)
        if request.headers.get("HX-Request"):
            return await self.guard.render(request, "preview.html", {"preview": preview})
        return await self.guard.render(request, "incidents.html",
                                 {**await self.incidents_context(request, values),
                                  "preview": preview})

    async def declare(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        caller = self.caller(request)
        runbook, title = form_str(form, "runbook"), form_str(form, "title")
        try:
            if not caller.can("ops"):
                raise refusals.forbidden(f"declaring needs the ops role ({caller.name} is "
                                         f"{caller.role})")
            reason = form_str(form, "reason")
            if not reason:
                raise refusals.bad_request("a reason is required: say why you declare")
            channels = [c for c in form.getall("channel", []) if isinstance(c, str)]
            incident = await self.d.incidents.declare(
                runbook=runbook, title=title, actor=caller.name,
                severity=form_str(form, "severity") or None, channels=channels or None,
                reason=reason)
        except Refused as exc:
            ctx = await self.incidents_context(request, form)
            ctx["preview"] = self.holding(runbook, title, ctx["ticked"])
            return await self.guard.refused(request, "incidents.html", ctx, exc)
        raise done(f"/incidents/{incident.id}", f"INC-{incident.id} declared")

    async def incident_context(self, request: web.Request, incident_id: int) -> dict[str, Any]:
        incident = await self.d.store.incident(incident_id)
        if incident is None:
            raise web.HTTPNotFound(text=f"no incident INC-{incident_id}")
        return {"title": f"INC-{incident.id}", "incident": incident,
                "timeline": await self.d.store.timeline(incident_id),
                "in_cooldown": incident.state == "resolved" and not incident.held_done,
                **self.flash(request)}

    async def incident(self, request: web.Request) -> web.StreamResponse:
        incident_id = parse_incident_id(request.match_info["id"])
        context = await self.incident_context(request, incident_id)
        return await self.guard.render(request, "incident.html", context)

    async def incident_action(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        caller = self.caller(request)
        action = request.match_info["action"]
        try:
            incident_id = parse_incident_id(request.match_info["id"])
        except Refused as exc:
            raise web.HTTPNotFound(text=exc.message) from exc
        try:
            if not caller.can("ops"):
                raise refusals.forbidden(f"{action} needs the ops role")
            message = await self.incident_do(incident_id, action, form, caller.name)
        except Refused as exc:
            return await self.guard.refused(request, "incident.html",
                                      await self.incident_context(request, incident_id), exc)
        raise done(f"/incidents/{incident_id}", message)

    async def incident_do(self, incident_id: int, action: str, form: Any, actor: str) -> str:
        text = form_str(form, "text")
        if action == "update":
            if not text:
                raise refusals.bad_request("the update needs a text")
            posts = await self.d.incidents.update(incident_id, text, actor)
            return f"update posted to {len(posts)} channel(s)"
        if action == "resolve":
            await self.d.incidents.resolve(incident_id, actor=actor, note=text or None)
            return f"INC-{incident_id} resolved"
        if action in ("void", "release"):
            if not text:
                raise refusals.bad_request("a reason is required")
            if action == "void":
                await self.d.incidents.void(incident_id, actor=actor, reason=text)
                return f"INC-{incident_id} voided"
            await self.d.incidents.release(incident_id, actor=actor, reason=text)
            return f"the cooldown of INC-{incident_id} ended"
        raise web.HTTPNotFound(text=f"no action {action[:40]}")
