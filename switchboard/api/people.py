"""People: users and their tokens, the console's sign-in session and the audit."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from switchboard import people, refusals
from switchboard.api.common import json_object, ok, parse_int, required_str
from switchboard.clock import rfc3339
from switchboard.posts import parse_when
from switchboard.refusals import Refused
from switchboard.yamldoc import parse_duration

if TYPE_CHECKING:
    from switchboard.api.services import Services


class PeopleApi:
    def __init__(self, services: Services) -> None:
        self.d = services

    async def list_users(self, request: web.Request) -> web.Response:
        return ok([people.person_json(p) for p in await self.d.people.store.people()])

    async def add_user(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        person = await self.d.people.add(body, await self._password_hash(body))
        return ok(people.person_json(person), 201)

    async def update_user(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await json_object(request)
        person = await self.d.people.update(name, body, await self._password_hash(body))
        return ok(people.person_json(person, await self.d.store.person_tokens(name)))

    async def _password_hash(self, body: dict[str, Any]) -> str | None:
        """A given password's argon2 hash, computed off the event loop."""
        if body.get("password") is None:
            return None
        return await asyncio.get_running_loop().run_in_executor(
            None, self.d.people.hash_password, body["password"])

    async def new_user_token(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        token = await self.d.people.new_token(name)
        return ok({"name": name, "token": token}, 201)

    async def audit(self, request: web.Request) -> web.Response:
        allowed = people.may_see_audit(request["caller"])
        team = request.query.get("team")
        teams: list[str] | None = None if allowed is None else list(allowed)
        if team is not None:
            if allowed is not None and team not in allowed:
                raise refusals.forbidden(f"the audit of team {team[:64]} is for its "
                                         "approvers and admins")
            teams = [team]
        since = self._since(request.query.get("since"))
        limit = parse_int(request.query.get("limit", "1000"), "limit")
        if limit > 1000:
            raise refusals.bad_request("limit is at most 1000")
        entries = await self.d.store.audit(person=request.query.get("person"), teams=teams,
                                           since=since, limit=limit)
        return ok([{"at": rfc3339(e.at), "person": e.person, "credential": e.credential,
                    "action": e.action, "target": e.target, "teams": list(e.teams),
                    "status": e.status} for e in entries])

    def _since(self, value: str | None) -> float | None:
        """A time as everywhere, or a duration (`2h`, `-2h`): that long ago."""
        if not value:
            return None
        now = self.d.clock()
        try:
            return now - parse_duration(value.removeprefix("-")).total_seconds()
        except ValueError:
            return parse_when(value, now, self.d.config.timezone)

    async def session(self, request: web.Request) -> web.Response:
        """Check a person's password (the console's sign-in), throttled per name and
        per client; neither the password nor the name is logged."""
        body = await json_object(request)
        name, password = required_str(body, "name"), required_str(body, "password")
        keys = (f"name:{name[:64]}", f"client:{request.remote}")
        wait = self.d.throttle.wait(*keys)
        if wait > 0:
            self.d.metrics.login_failures.labels(reason="throttled").inc()
            return web.json_response(
                {"error": {"code": "too_many_requests",
                           "message": f"too many failed sign-ins for this name or client: "
                                      f"try again in {int(wait) + 1} s"}},
                status=429, headers={"Retry-After": str(int(wait) + 1)})
        # Counted as a failure before the (slow) check, so that guesses sent in
        # parallel cannot all slip past the throttle; a success takes it back.
        self.d.throttle.failed(*keys)
        holder, stored = await self.d.people.password_holder(name)
        matches = await asyncio.get_running_loop().run_in_executor(
            None, self.d.people.password_matches, stored, password)
        if holder is None or not matches:
            self.d.metrics.login_failures.labels(reason="bad_credentials").inc()
            raise Refused(401, "unauthorized", "wrong name or password")
        self.d.throttle.succeeded(keys[0])
        self.d.throttle.forgive(keys[1])
        return ok(people.person_json(holder))
