"""`/api/v1/posts`: list, show, schedule, import a calendar, edit, and cancel,
release or drop one post or many. Who may post what is checked here, per post."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from aiohttp import web

from switchboard import people, refusals
from switchboard.api.common import (
    cursor,
    due_key,
    earlier_request,
    json_body,
    json_object,
    ok,
    page_limit,
    paged,
    parse_int,
    read_at_most,
    replayed,
    request_key,
    text_field,
    with_times,
)
from switchboard.auth import Caller
from switchboard.incidents import parse_incident_id
from switchboard.model import NewPost, Post
from switchboard.posts import (
    ChannelLimit,
    check_import,
    new_post,
    parse_future,
    parse_offset,
    parse_when,
    post_json,
)
from switchboard.poststates import PostState
from switchboard.refusals import Refused
from switchboard.store import POST_STATES

if TYPE_CHECKING:
    from switchboard.api.services import Services

# A bulk action by filter touches at most this many posts at once.
ACTION_LIMIT = 10_000
# A calendar file is read as one body, bigger than the API's JSON limit, so
# that a whole import is one transaction (all rows or none).
IMPORT_MAX_BYTES = 64 * 1024 * 1024
# What `?state=` may ask for: the states users see (`queued` shows as scheduled).
LISTED_STATES = tuple(s for s in POST_STATES if s != PostState.QUEUED)


class PostsApi:
    def __init__(self, services: Services, reads: Executor) -> None:
        self.d = services
        self._reads = reads

    async def list_posts(self, request: web.Request) -> web.Response:
        states = [s for s in request.query.get("state", "").split(",") if s]
        check_states(states)
        if PostState.SCHEDULED in states:
            states.append(PostState.QUEUED)
        channel = request.query.get("channel") or None
        limit, after = page_limit(request), cursor(request, 2)
        window = self.due_window(request.query)
        store = self.d.store
        posts = await store.page_posts(states, channel, after=due_key(after), limit=limit + 1,
                                       **window)
        total = await store.count_posts(states, channel, **window)
        last = posts[limit - 1] if len(posts) > limit else None
        next_key = None if last is None else [last.due_at, last.id]
        return await paged(request, self._reads, lambda: [post_json(p) for p in posts[:limit]],
                           next_key, total)

    async def get_post(self, request: web.Request) -> web.Response:
        post = await self.d.store.post(parse_int(request.match_info["id"], "post id"))
        if post is None:
            raise refusals.not_found(f"no post {request.match_info['id']}")
        out = post_json(post)
        out["history"] = [with_times(h) for h in await self.d.store.post_history(post.id)]
        return ok(out)

    async def schedule_posts(self, request: web.Request) -> web.Response:
        caller = poster(request)
        body = await json_body(request)
        key = request_key(request, caller, body)
        earlier = await earlier_request(self.d.store, key)
        if earlier is not None:
            first = [post_json(p) for p in await self.d.store.posts(earlier.refs)]
            return replayed(ok(first if isinstance(body, list) else first[0], earlier.status))
        items = body if isinstance(body, list) else [body]
        if not items:
            raise refusals.bad_request("no posts given")
        now = self.d.clock()
        limits = self.limits()
        new = []
        for i, item in enumerate(items):
            try:
                new.append(self.new_post(request, item, now, limits))
            except Refused as exc:
                prefix = f"posts[{i}]: " if isinstance(body, list) else ""
                raise Refused(exc.status, exc.code, prefix + exc.message) from exc
        ids = await self.d.store.add_posts(new, caller.name, now, request=key)
        self.d.publisher.poke(min(p.due_at for p in new))
        posts = [p.stored(i, caller.name, now) for p, i in zip(new, ids, strict=True)]
        return ok([post_json(p) for p in posts] if isinstance(body, list)
                  else post_json(posts[0]), 201)

    async def import_posts(self, request: web.Request) -> web.Response:
        """A calendar file (CSV or JSON lines) as the body: every row checked, then all
        stored in one transaction or none; rows stored before are not stored again."""
        caller = poster(request)
        filename = request.query.get("filename", "calendar.csv")[:200]
        dry_run = request.query.get("dry_run", "").lower() in ("1", "true", "yes")
        data = await read_at_most(request, IMPORT_MAX_BYTES)
        now = self.d.clock()
        # Off the loop: checking 100,000 rows takes seconds of parsing.
        config = self.d.config

        def admit(post: NewPost) -> None:
            people.check_post(caller, post.channel, post.kind, config)
            if post.kind == "marketing" and config.needs_approval(post.channel):
                post.state = PostState.PENDING_APPROVAL

        rows, problems = await asyncio.to_thread(
            check_import, data, filename, role=posting_role(caller), now=now,
            tz=config.timezone, channels=self.limits(), admit=admit)
        for _, post in rows:
            self.note_team(request, post.channel)
        if problems:
            return web.json_response({"error": {
                "code": "invalid_rows", "problems": problems,
                "message": f"{len(problems)} problem(s) in {filename}; nothing was imported"}},
                status=422)
        if dry_run:
            return ok({"dry_run": True, "rows": len(rows)})
        created, existing = await self.d.store.import_posts(rows, caller.name, now)
        if created:
            self.d.publisher.poke(min(post.due_at for _, post in rows))
        return ok({"created": len(created), "existing": len(existing), "ids": created},
                  201 if created else 200)

    def new_post(self, request: web.Request, item: Any, now: float,
                 limits: dict[str, ChannelLimit], default_kind: str = "marketing") -> NewPost:
        """One post checked for the caller: kind by role, channel by team; a marketing
        post on a channel that needs approval waits as `pending_approval`."""
        caller: Caller = request["caller"]
        kind = (item.get("kind") or default_kind) if isinstance(item, dict) else default_kind
        post = new_post(item, role=role_for(caller, str(kind)), now=now,
                        tz=self.d.config.timezone, channels=limits, default_kind=default_kind)
        people.check_post(caller, post.channel, post.kind, self.d.config)
        self.note_team(request, post.channel)
        if post.kind == "marketing" and self.d.config.needs_approval(post.channel):
            post.state = PostState.PENDING_APPROVAL
        return post

    def note_team(self, request: web.Request, channel: str) -> None:
        """The channel's team, for the audit entry of this request."""
        team = self.d.config.team_of(channel)
        if team is not None:
            request.setdefault("teams", set()).add(team.id)

    def limits(self) -> dict[str, ChannelLimit]:
        return {cid: ChannelLimit(cid, w.channel.max_length, w.channel.audience,
                                  w.channel.length)
                for cid, w in self.d.publisher.workers.items()}

    async def check_access(self, request: web.Request, post_id: int) -> None:
        """A person acts on a post only on their teams' channels (403 naming the team)."""
        post = await self.d.store.post(post_id)
        if post is None:
            raise refusals.not_found(f"no post {post_id}")
        people.check_marketing(request["caller"], post.channel, self.d.config)
        self.note_team(request, post.channel)

    def due_window(self, query: Mapping[str, str]) -> dict[str, Any]:
        """`from`, `to` (due times, any form `--at` takes) and `incident` of a post query."""
        now, tz = self.d.clock(), self.d.config.timezone
        out: dict[str, Any] = {}
        for key, field in (("from", "due_from"), ("to", "due_to")):
            if query.get(key):
                out[field] = parse_when(query[key], now, tz)
        if query.get("incident"):
            out["incident_id"] = parse_incident_id(query["incident"])
        return out

    async def edit_post(self, request: web.Request) -> web.Response:
        caller = poster(request)
        post_id = parse_int(request.match_info["id"], "post id")
        body = await json_object(request)
        post = await self.d.store.post(post_id)
        if post is None:
            raise refusals.not_found(f"no post {post_id}")
        # The caller's team rights must reach the post's channel, and the new one.
        for channel in (post.channel, body.get("channel")):
            if isinstance(channel, str) and self.d.config.channel(channel) is not None:
                people.check_post(caller, channel, post.kind, self.d.config)
                self.note_team(request, channel)
        post = await self.d.review.edit_post(post_id, body, role_for(caller, post.kind),
                                             caller.name, self.limits())
        return ok(post_json(post))

    async def post_action(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        post_id = parse_int(request.match_info["id"], "post id")
        action = request.path.rsplit("/", 1)[1]
        body = await json_object(request, optional=True)
        await self.check_access(request, post_id)
        at = None
        if action == "release" and body.get("at"):
            at = parse_future(str(body["at"]), self.d.clock(), self.d.config.timezone)
        post = await self.d.review.review(post_id, action, caller.name, at)
        return ok(post_json(post))

    async def post_actions(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await json_object(request)
        action = body.get("action")
        if action not in ("cancel", "release", "drop"):
            raise refusals.bad_request("action must be one of cancel, release, drop")
        ids = await self._action_ids(body, caller)
        now, tz = self.d.clock(), self.d.config.timezone
        at = parse_future(text_field(body, "at"), now, tz) if body.get("at") else None
        spacing = None
        if body.get("spacing"):
            if action != "release":
                raise refusals.bad_request("spacing only applies to release")
            try:
                spacing = parse_offset(text_field(body, "spacing").removeprefix("+"))
            except ValueError as exc:
                raise refusals.bad_request(f"spacing: {exc}") from exc
        if at is not None and action != "release":
            raise refusals.bad_request("at only applies to release")
        def may_act(post: Post) -> None:
            people.check_marketing(caller, post.channel, self.d.config)
            self.note_team(request, post.channel)
        return ok(await self.d.review.review_many(ids, action, caller.name, at, spacing, may_act))

    async def _action_ids(self, body: dict[str, Any], caller: Caller) -> list[int]:
        ids, where = body.get("ids"), body.get("filter")
        if (ids is None) == (where is None):
            raise refusals.bad_request("give either ids (a list of post ids) or filter")
        if ids is not None:
            if not (isinstance(ids, list) and ids and all(
                    isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids)):
                raise refusals.bad_request("ids must be a non-empty list of post ids")
            return list(dict.fromkeys(ids))
        if not isinstance(where, dict) or not where:
            raise refusals.bad_request("filter must be an object with one or more of state, "
                                       "channel, incident, from, to")
        unknown = set(where) - {"state", "channel", "incident", "from", "to"}
        if unknown:
            raise refusals.bad_request(f"unknown filter key(s): {', '.join(sorted(unknown))}")
        query = {k: str(v) if k == "incident" and isinstance(v, int) else text_field(where, k)
                 for k, v in where.items() if v not in (None, "")}
        states = [s for s in query.get("state", "").split(",") if s]
        check_states(states)
        if "scheduled" in states:
            states.append("queued")
        posts = await self.d.store.list_posts(states, query.get("channel"),
                                              limit=ACTION_LIMIT + 1, **self.due_window(query))
        if len(posts) > ACTION_LIMIT:
            raise refusals.unprocessable(f"the filter matches more than {ACTION_LIMIT} posts; "
                                         "narrow it (from, to, channel)")
        # A filter selects only what the caller's team rights reach.
        return [p.id for p in posts if people.may_act(caller, p, self.d.config)]


def check_states(states: list[str]) -> None:
    unknown = [s for s in states if s not in LISTED_STATES]
    if unknown:
        raise refusals.bad_request(f"unknown state {unknown[0][:40]!r} "
                                   f"(states: {', '.join(LISTED_STATES)})")


def poster(request: web.Request) -> Caller:
    """Posting takes the marketing or the ops power (which kind is checked per post);
    a viewer is refused before its body is even read."""
    caller: Caller = request["caller"]
    if not (caller.can("marketing") or caller.can("ops")):
        raise refusals.forbidden(f"the {caller.role} role cannot post "
                                 "(marketing or ops needed)")
    return caller


def posting_role(caller: Caller) -> str:
    """The role a calendar's rows are checked against: both kinds for whoever holds
    both powers (a person's team role gives marketing; its channels are checked
    per row)."""
    marketing, ops = caller.can("marketing"), caller.can("ops")
    if marketing and ops:
        return "admin"
    return "marketing" if marketing else "ops" if ops else caller.role


def role_for(caller: Caller, kind: str) -> str:
    """The role a post of `kind` is checked against: a person's team role gives
    marketing (which channels it reaches is checked after)."""
    if kind == "marketing" and caller.can("marketing"):
        return "marketing"
    if kind == "operational" and caller.can("ops"):
        return "ops"
    return caller.role
