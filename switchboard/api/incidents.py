"""`/api/v1/incidents`: list, show, declare, update, resolve, void and release."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import TYPE_CHECKING

from aiohttp import web

from switchboard import refusals
from switchboard.api.common import (
    cursor,
    earlier_request,
    json_object,
    ok,
    optional_str,
    page_limit,
    paged,
    replayed,
    request_key,
    required_str,
    with_times,
)
from switchboard.auth import Caller
from switchboard.incidents import incident_json, parse_incident_id
from switchboard.posts import post_json

if TYPE_CHECKING:
    from switchboard.api.services import Services


class IncidentsApi:
    def __init__(self, services: Services, reads: Executor) -> None:
        self.d = services
        self._reads = reads

    async def list_incidents(self, request: web.Request) -> web.Response:
        everything = request.query.get("all", "").lower() in ("1", "true", "yes")
        limit, before = page_limit(request), cursor(request, 1)
        incidents, total = await self.d.store.page_incidents(
            everything, before=None if before is None else int(before[0]), limit=limit + 1)
        last = [incidents[limit - 1].id] if len(incidents) > limit else None
        return await paged(request, self._reads,
                           lambda: [incident_json(i) for i in incidents[:limit]], last, total)

    async def get_incident(self, request: web.Request) -> web.Response:
        incident_id = parse_incident_id(request.match_info["id"])
        incident = await self.d.store.incident(incident_id)
        if incident is None:
            raise refusals.not_found(f"no incident INC-{incident_id}")
        out = incident_json(incident)
        out["timeline"] = [with_times({"at": e.at, "event": e.event, "actor": e.actor,
                                       **e.detail})
                           for e in await self.d.store.timeline(incident_id)]
        # The marketing posts this incident held, by what became of them.
        tied = await self.d.store.list_posts(incident_id=incident_id, limit=100_000)
        out["held_posts"] = {}
        # Its own statements and updates carry its id too; they were never held.
        out["posts"] = [p.id for p in tied if p.kind not in incident.suppress]
        for post in tied:
            if post.kind in incident.suppress:
                out["held_posts"].setdefault(post.state, []).append(post.id)
        return ok(out)

    async def declare(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await json_object(request)
        key = request_key(request, caller, body)
        earlier = await earlier_request(self.d.store, key)
        if earlier is not None:
            first = await self.d.store.incident(earlier.refs[0])
            assert first is not None
            return replayed(ok(incident_json(first), earlier.status))
        channels = body.get("channels")
        if channels is not None and not (isinstance(channels, list)
                                         and all(isinstance(c, str) for c in channels)):
            raise refusals.bad_request("channels must be a list of channel ids")
        incident = await self.d.incidents.declare(
            runbook=required_str(body, "runbook"), title=required_str(body, "title"),
            actor=caller.name, severity=optional_str(body, "severity"), channels=channels,
            reason=optional_str(body, "reason"), request=key)
        return ok(incident_json(incident), 201)

    async def update_incident(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await json_object(request)
        posts = await self.d.incidents.update(parse_incident_id(request.match_info["id"]),
                                              required_str(body, "text"), caller.name)
        return ok([post_json(p) for p in posts], 201)

    async def resolve_incident(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await json_object(request, optional=True)
        incident = await self.d.incidents.resolve(parse_incident_id(request.match_info["id"]),
                                                  actor=caller.name,
                                                  note=optional_str(body, "note"))
        return ok(incident_json(incident))

    async def void_incident(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await json_object(request)
        voided = await self.d.incidents.void(parse_incident_id(request.match_info["id"]),
                                             actor=caller.name,
                                             reason=required_str(body, "reason"))
        return ok({**incident_json(voided.incident), "rescheduled": voided.rescheduled,
                   "held": voided.held, "retracted": voided.retracted,
                   "retract_failed": voided.retract_failed})

    async def release_incident(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await json_object(request)
        incident = await self.d.incidents.release(parse_incident_id(request.match_info["id"]),
                                                  actor=caller.name,
                                                  reason=required_str(body, "reason"))
        return ok(incident_json(incident))
