"""The HTTP listener (design §4.2): health, metrics, the control API and feeds.

Every error is JSON `{"error": {"code", "message"}}`. Authentication happens
in one middleware from the route's declared role; feed endpoints carry their
own token or signature and are checked by the feed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from switchboard import people, refusals
from switchboard.auth import Caller, digest_matches
from switchboard.clock import rfc3339
from switchboard.incidents import incident_json, parse_incident_id
from switchboard.model import AuditEntry, NewPost, Post
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
from switchboard.store import (
    INTERRUPTED_SEND,
    POST_STATES,
    KeyedRequest,
    RequestKey,
    StoreUnavailable,
)
from switchboard.store import fingerprint as body_fingerprint
from switchboard.text import first_bad_text
from switchboard.yamldoc import parse_duration

if TYPE_CHECKING:
    from switchboard.auth import Tokens
    from switchboard.clock import Clock
    from switchboard.config import Config
    from switchboard.gate import Gate
    from switchboard.incidents import FeedSignals, Incidents
    from switchboard.listener import Limits
    from switchboard.metrics import Metrics
    from switchboard.people import People
    from switchboard.publisher import Publisher
    from switchboard.review import Review
    from switchboard.runbooks import Runbook
    from switchboard.store import Store
    from switchboard.throttle import Throttle
    from switchboard.watch import FeedWatch

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A bulk action by filter touches at most this many posts at once.
ACTION_LIMIT = 10_000
ROLE_KEY = web.AppKey("role_required", dict)
BODY_TIMEOUT = web.AppKey("body_timeout", float)
BODY_LIMIT = web.AppKey("body_limit", int)
# Signed feed bodies read at once (each up to max_body_bytes): memory stays
# bounded whatever number of signed-looking deliveries arrive together.
FEED_BODIES_AT_ONCE = 32
PAGE_DEFAULT, PAGE_MAX = 100, 1000
log = structlog.get_logger("api")
IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
# A calendar file is read as one body, bigger than the API's JSON limit, so
# that a whole import is one transaction (all rows or none).
IMPORT_MAX_BYTES = 64 * 1024 * 1024
SEND_WAIT = 120.0  # seconds an immediate send waits for its outcome before a 202


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


@dataclass(frozen=True)
class Services:
    """What the API calls, handed over by the composition root: the API never
    holds the daemon. The parts a reload replaces (config, tokens, feed watch)
    and readiness are read through getters, so a request sees the current ones."""

    store: Store
    clock: Clock
    gate: Gate
    publisher: Publisher
    incidents: Incidents
    signals: FeedSignals
    people: People
    throttle: Throttle
    metrics: Metrics
    limits: Limits
    current_config: Callable[[], Config]
    current_tokens: Callable[[], Tokens]
    current_feeds: Callable[[], FeedWatch]
    is_ready: Callable[[], bool]
    is_alive: Callable[[], bool]  # the loop still runs its timers
    check_store: Callable[[], Awaitable[bool]]
    refresh_metrics: Callable[[], Awaitable[None]]
    status: Callable[[], Awaitable[dict[str, Any]]]
    channel_list: Callable[[], list[dict[str, Any]]]
    review: Review  # cancel / release / drop / edit posts
    current_runbooks: Callable[[], dict[str, Runbook]]

    @property
    def runbooks(self) -> dict[str, Runbook]:
        return self.current_runbooks()

    @property
    def config(self) -> Config:
        return self.current_config()

    @property
    def tokens(self) -> Tokens:
        return self.current_tokens()

    @property
    def feeds(self) -> FeedWatch:
        return self.current_feeds()

    @property
    def ready(self) -> bool:
        return self.is_ready()


class Api:
    def __init__(self, services: Services) -> None:
        self.d = services
        self._feed_bodies = asyncio.Semaphore(FEED_BODIES_AT_ONCE)
        self._reads = ThreadPoolExecutor(2, thread_name_prefix="api-list")

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.d.config.max_body_bytes,
                              middlewares=[self._errors, self._auth])
        app[BODY_TIMEOUT] = self.d.limits.body_timeout
        app[BODY_LIMIT] = self.d.config.max_body_bytes
        app.on_cleanup.append(self._close_reads)
        r = app.router
        self.roles: dict[tuple[str, str], str | None] = {}
        self._add(r, "GET", "/healthz", self.healthz, None)
        self._add(r, "GET", "/readyz", self.readyz, None)
        self._add(r, "GET", "/metrics", self.metrics, None)
        self._add(r, "GET", "/api/v1/status", self.status, "viewer")
        self._add(r, "GET", "/api/v1/channels", self.channels, "viewer")
        self._add(r, "GET", "/api/v1/posts", self.list_posts, "viewer")
        self._add(r, "POST", "/api/v1/posts", self.schedule_posts, "viewer")
        self._add(r, "POST", "/api/v1/posts/import", self.import_posts, "viewer")
        self._add(r, "GET", "/api/v1/posts/{id}", self.get_post, "viewer")
        self._add(r, "PATCH", "/api/v1/posts/{id}", self.edit_post, "viewer")
        self._add(r, "POST", "/api/v1/posts/actions", self.post_actions, "marketing")
        for action in ("cancel", "release", "drop"):
            self._add(r, "POST", f"/api/v1/posts/{{id}}/{action}", self.post_action, "marketing")
        self._add(r, "POST", "/api/v1/send", self.send, "viewer")
        self._add(r, "GET", "/api/v1/incidents", self.list_incidents, "viewer")
        self._add(r, "POST", "/api/v1/incidents", self.declare, "ops")
        self._add(r, "GET", "/api/v1/incidents/{id}", self.get_incident, "viewer")
        self._add(r, "POST", "/api/v1/incidents/{id}/update", self.update_incident, "ops")
        self._add(r, "POST", "/api/v1/incidents/{id}/resolve", self.resolve_incident, "ops")
        self._add(r, "POST", "/api/v1/incidents/{id}/void", self.void_incident, "ops")
        self._add(r, "POST", "/api/v1/incidents/{id}/release", self.release_incident, "ops")
        self._add(r, "GET", "/api/v1/feeds", self.feeds_status, "viewer")
        self._add(r, "POST", "/feeds/{feed_id}", self.feed, None)
        app.on_response_prepare.append(self._zone_header)
        self._people_routes(r)
        return app

    async def _close_reads(self, app: web.Application) -> None:
        self._reads.shutdown(wait=False, cancel_futures=True)

    async def _zone_header(self, request: web.Request, response: web.StreamResponse) -> None:
        # The CLI prints times in the daemon's configured zone, so it is told which.
        response.headers["X-Switchboard-Timezone"] = self.d.config.timezone.key

    def _people_routes(self, r: web.UrlDispatcher) -> None:
        # Approvers are checked per post (their team), the audit per reader.
        self._add(r, "POST", "/api/v1/posts/{id}/approve", self.approve_post, "viewer")
        self._add(r, "POST", "/api/v1/posts/{id}/reject", self.reject_post, "viewer")
        self._add(r, "GET", "/api/v1/users", self.list_users, "admin")
        self._add(r, "POST", "/api/v1/users", self.add_user, "admin")
        self._add(r, "PATCH", "/api/v1/users/{name}", self.update_user, "admin")
        self._add(r, "POST", "/api/v1/users/{name}/tokens", self.new_user_token, "admin")
        self._add(r, "GET", "/api/v1/audit", self.audit, "viewer")
        self._add(r, "POST", "/api/v1/session", self.session, None)

    def _add(self, router: web.UrlDispatcher, method: str, path: str, handler: Handler,
             role: str | None) -> None:
        resource = router.add_route(method, path, handler)
        self.roles[(method, resource.resource.canonical if resource.resource else path)] = role

    # -- middleware --------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as exc:
            return error(exc.status, exc.code, exc.message)
        except StoreUnavailable as exc:
            # Nothing was recorded: never a 500, never an acknowledgement.
            log.error("store_unavailable", path=request.path, reason=exc.reason)
            return error(503, f"store_{exc.reason}", exc.message)
        except web.HTTPRequestEntityTooLarge:
            return error(413, "too_large", f"request body over {self.d.config.max_body_bytes} "
                                           "bytes")
        except web.HTTPException as exc:
            if exc.status >= 400:
                return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
            raise
        except Exception:
            log.exception("api_error", path=request.path)
            return error(500, "internal", "internal error; see the daemon log")

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        canonical = route.resource.canonical if route.resource else request.path
        role = self.roles.get((request.method, canonical))
        if request.path == "/metrics" and self.d.config.metrics_token_sha256:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not token or not digest_matches(token, self.d.config.metrics_token_sha256):
                return error(401, "unauthorized", "a valid bearer token is needed for /metrics")
        if role is None:
            return await handler(request)
        caller = await self.d.tokens.identify(request.headers.get("Authorization"))
        if caller is None:
            return error(401, "unauthorized", "a valid bearer token is needed")
        if not caller.can(role):
            return error(403, "forbidden", f"the {caller.role} role cannot do this "
                                           f"({role} or higher needed)")
        request["caller"] = caller
        response = await handler(request)
        if request.method != "GET" and response.status < 400:
            try:
                await self._audit(request, caller, canonical, response.status)
            except Exception:
                # The write itself is committed: answering 500 would invite a repeat.
                log.exception("audit_write_failed", path=canonical)
        return response

    async def _audit(self, request: web.Request, caller: Caller, canonical: str,
                     status: int) -> None:
        """Every write that succeeded, with its person and credential (never the token)."""
        target = request.match_info.get("id") or request.match_info.get("name")
        await self.d.store.record_audit(AuditEntry(
            at=self.d.clock(), person=caller.name if caller.person else None,
            credential=caller.audit_credential, action=f"{request.method} {canonical}",
            target=target, teams=tuple(sorted(request.get("teams", ()))), status=status))

    # -- health ------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        alive = self.d.is_alive()
        return ok({"status": "ok" if alive else "scheduler stopped"}, 200 if alive else 503)

    async def readyz(self, request: web.Request) -> web.Response:
        store_ok = await self.d.check_store()
        ready = self.d.ready and store_ok
        body: dict[str, Any] = {"ready": ready}
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

    # -- posts -------------------------------------------------------------

    async def list_posts(self, request: web.Request) -> web.Response:
        states = [s for s in request.query.get("state", "").split(",") if s]
        _check_states(states)
        if PostState.SCHEDULED in states:
            states.append(PostState.QUEUED)
        channel = request.query.get("channel") or None
        limit, after = _page_limit(request), _cursor(request, 2)
        window = self._due_window(request.query)
        store = self.d.store
        posts = await store.page_posts(states, channel, after=_key(after), limit=limit + 1,
                                       **window)
        total = await store.count_posts(states, channel, **window)
        last = posts[limit - 1] if len(posts) > limit else None
        cursor = None if last is None else [last.due_at, last.id]
        return await self._paged(request, lambda: [post_json(p) for p in posts[:limit]],
                                 cursor, total)

    async def get_post(self, request: web.Request) -> web.Response:
        post = await self.d.store.post(_int(request.match_info["id"], "post id"))
        if post is None:
            raise refusals.not_found(f"no post {request.match_info['id']}")
        out = post_json(post)
        out["history"] = [_times(h) for h in await self.d.store.post_history(post.id)]
        return ok(out)

    async def schedule_posts(self, request: web.Request) -> web.Response:
        caller = _poster(request)
        body = await _json(request)
        key = _request_key(request, caller, body)
        earlier = await self._earlier(key)
        if earlier is not None:
            first = [post_json(p) for p in await self.d.store.posts(earlier.refs)]
            return _replayed(ok(first if isinstance(body, list) else first[0], earlier.status))
        items = body if isinstance(body, list) else [body]
        if not items:
            raise refusals.bad_request("no posts given")
        now = self.d.clock()
        limits = self._limits()
        new = []
        for i, item in enumerate(items):
            try:
                new.append(self._new_post(request, item, now, limits))
            except Refused as exc:
                prefix = f"posts[{i}]: " if isinstance(body, list) else ""
                raise Refused(exc.status, exc.code, prefix + exc.message) from exc
        ids = await self.d.store.add_posts(new, caller.name, now, request=key)
        self.d.publisher.poke(min(p.due_at for p in new))
        posts = await self.d.store.posts(ids)
        return ok([post_json(p) for p in posts] if isinstance(body, list)
                  else post_json(posts[0]), 201)

    async def import_posts(self, request: web.Request) -> web.Response:
        """A calendar file (CSV or JSON lines) as the body: every row checked, then all
        stored in one transaction or none; rows stored before are not stored again."""
        caller = _poster(request)
        filename = request.query.get("filename", "calendar.csv")[:200]
        dry_run = request.query.get("dry_run", "").lower() in ("1", "true", "yes")
        data = await _read_at_most(request, IMPORT_MAX_BYTES)
        now = self.d.clock()
        # Off the loop: checking 100,000 rows takes seconds of parsing.
        config = self.d.config

        def admit(post: NewPost) -> None:
            people.check_post(caller, post.channel, post.kind, config)
            if post.kind == "marketing" and config.needs_approval(post.channel):
                post.state = PostState.PENDING_APPROVAL

        rows, problems = await asyncio.to_thread(
            check_import, data, filename, role=_posting_role(caller), now=now,
            tz=config.timezone, channels=self._limits(), admit=admit)
        for _, post in rows:
            self._note_team(request, post.channel)
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

    async def _earlier(self, key: RequestKey | None) -> KeyedRequest | None:
        """The request this key was first sent with, if any; the same key with another
        body is refused (it would silently answer for a request never made)."""
        if key is None:
            return None
        earlier = await self.d.store.keyed(key.scope, key.key)
        if earlier is not None and earlier.fingerprint != key.fingerprint:
            raise refusals.unprocessable(f"{IDEMPOTENCY_KEY} {key.key!r} was already used for "
                                         "a different request; use a new key")
        return earlier

    def _new_post(self, request: web.Request, item: Any, now: float,
                  limits: dict[str, ChannelLimit], default_kind: str = "marketing") -> NewPost:
        """One post checked for the caller: kind by role, channel by team; a marketing
        post on a channel that needs approval waits as `pending_approval`."""
        caller: Caller = request["caller"]
        kind = (item.get("kind") or default_kind) if isinstance(item, dict) else default_kind
        post = new_post(item, role=_role_for(caller, str(kind)), now=now,
                        tz=self.d.config.timezone, channels=limits, default_kind=default_kind)
        people.check_post(caller, post.channel, post.kind, self.d.config)
        self._note_team(request, post.channel)
        if post.kind == "marketing" and self.d.config.needs_approval(post.channel):
            post.state = PostState.PENDING_APPROVAL
        return post

    def _note_team(self, request: web.Request, channel: str) -> None:
        """The channel's team, for the audit entry of this request."""
        team = self.d.config.team_of(channel)
        if team is not None:
            request.setdefault("teams", set()).add(team.id)

    def _limits(self) -> dict[str, ChannelLimit]:
        return {cid: ChannelLimit(cid, w.channel.max_length, w.channel.audience,
                                  w.channel.length)
                for cid, w in self.d.publisher.workers.items()}

    async def post_action(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        post_id = _int(request.match_info["id"], "post id")
        action = request.path.rsplit("/", 1)[1]
        body = await _object(request, optional=True)
        await self._check_post_access(request, post_id)
        at = None
        if action == "release" and body.get("at"):
            at = parse_future(str(body["at"]), self.d.clock(), self.d.config.timezone)
        post = await self.d.review.review(post_id, action, caller.name, at)
        return ok(post_json(post))

    async def send(self, request: web.Request) -> web.Response:
        caller = _poster(request)
        body = await _object(request)
        key = _request_key(request, caller, body)
        earlier = await self._earlier(key)
        if earlier is not None:
            return _replayed(await self._send_again(earlier.refs[0], caller.name))
        default_kind = "operational" if caller.role == "ops" else "marketing"
        new = self._new_post(request, {k: v for k, v in body.items()
                                       if k in ("channel", "kind", "text", "link")},
                             self.d.clock(), self._limits(), default_kind)
        if new.state == PostState.PENDING_APPROVAL:
            raise refusals.conflict(f"marketing posts on {new.channel} need approval: "
                                    "schedule it and have an approver approve it")
        decision = self.d.gate.decide(new.channel, new.kind, self.d.clock())
        if not decision.allowed:
            raise refusals.conflict(f"{decision.reason}: {new.kind} posts are held until "
                                    "it is resolved")
        post = (await self.d.publisher.submit([(new.channel, new.text)], caller.name,
                                              kind=new.kind, link=new.link, request=key,
                                              immediate=True))[0]
        return _send_answer(post)

    async def _send_again(self, post_id: int, actor: str) -> web.Response:
        """A repeat of an immediate send: the first answer, unless a restart caught the
        send before it started; then (and only then) it goes now."""
        post = await self.d.store.post(post_id)
        assert post is not None
        interrupted = post.state == PostState.FAILED and post.error == INTERRUPTED_SEND
        if interrupted and await self.d.store.transition(
                [post_id], PostState.QUEUED, (PostState.FAILED,), self.d.clock(), actor,
                f"asked again with the same {IDEMPOTENCY_KEY}", error=None):
            waiter: asyncio.Future[Post] = asyncio.get_running_loop().create_future()
            queued = await self.d.store.post(post_id)
            assert queued is not None
            await self.d.publisher.route([queued], {queued.id: waiter})
            await asyncio.wait([waiter], timeout=SEND_WAIT)
            post = await self.d.store.post(post_id)
            assert post is not None
        return _send_answer(post)

    def _due_window(self, query: Mapping[str, str]) -> dict[str, Any]:
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
        caller = _poster(request)
        post_id = _int(request.match_info["id"], "post id")
        body = await _object(request)
        post = await self.d.store.post(post_id)
        if post is None:
            raise refusals.not_found(f"no post {post_id}")
        # The caller's team rights must reach the post's channel, and the new one.
        for channel in (post.channel, body.get("channel")):
            if isinstance(channel, str) and self.d.config.channel(channel) is not None:
                people.check_post(caller, channel, post.kind, self.d.config)
                self._note_team(request, channel)
        post = await self.d.review.edit_post(post_id, body, _role_for(caller, post.kind),
                                             caller.name,
                                self._limits())
        return ok(post_json(post))

    async def post_actions(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await _object(request)
        action = body.get("action")
        if action not in ("cancel", "release", "drop"):
            raise refusals.bad_request("action must be one of cancel, release, drop")
        ids = await self._action_ids(body, caller)
        now, tz = self.d.clock(), self.d.config.timezone
        at = parse_future(_as_text(body, "at"), now, tz) if body.get("at") else None
        spacing = None
        if body.get("spacing"):
            if action != "release":
                raise refusals.bad_request("spacing only applies to release")
            try:
                spacing = parse_offset(_as_text(body, "spacing").removeprefix("+"))
            except ValueError as exc:
                raise refusals.bad_request(f"spacing: {exc}") from exc
        if at is not None and action != "release":
            raise refusals.bad_request("at only applies to release")
        def may_act(post: Post) -> None:
            people.check_marketing(caller, post.channel, self.d.config)
            self._note_team(request, post.channel)
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
        query = {k: str(v) if k == "incident" and isinstance(v, int) else _as_text(where, k)
                 for k, v in where.items() if v not in (None, "")}
        states = [s for s in query.get("state", "").split(",") if s]
        _check_states(states)
        if "scheduled" in states:
            states.append("queued")
        posts = await self.d.store.list_posts(states, query.get("channel"), limit=ACTION_LIMIT + 1,
                                        **self._due_window(query))
        if len(posts) > ACTION_LIMIT:
            raise refusals.unprocessable(f"the filter matches more than {ACTION_LIMIT} posts; "
                                         "narrow it (from, to, channel)")
        # A filter selects only what the caller's team rights reach.
        return [p.id for p in posts if people.may_act(caller, p, self.d.config)]

    async def feeds_status(self, request: web.Request) -> web.Response:
        return ok(self.d.feeds.status(self.d.clock()))

    # -- incidents ---------------------------------------------------------

    async def list_incidents(self, request: web.Request) -> web.Response:
        everything = request.query.get("all", "").lower() in ("1", "true", "yes")
        limit, before = _page_limit(request), _cursor(request, 1)
        incidents, total = await self.d.store.page_incidents(
            everything, before=None if before is None else int(before[0]), limit=limit + 1)
        last = [incidents[limit - 1].id] if len(incidents) > limit else None
        return await self._paged(request, lambda: [incident_json(i) for i in incidents[:limit]],
                                 last, total)

    async def _paged(self, request: web.Request, rows: Callable[[], list[Any]],
                     last: list[Any] | None, total: int) -> web.Response:
        """A list endpoint's answer: the page is read on the store's reader thread
        and encoded in a worker thread (a viewer's listing never holds the loop a
        declaration needs); paging travels in the headers, the body is a JSON array."""
        body = await asyncio.get_running_loop().run_in_executor(
            self._reads, lambda: _encode(rows()))
        headers = {"X-Total-Count": str(total)}
        if last is not None:
            query = {**request.query, "cursor": _cursor_text(last)}
            headers["Link"] = f'<{request.rel_url.with_query(query)}>; rel="next"'
        return web.Response(body=body, content_type="application/json", charset="utf-8",
                            headers=headers)

    async def get_incident(self, request: web.Request) -> web.Response:
        incident_id = parse_incident_id(request.match_info["id"])
        incident = await self.d.store.incident(incident_id)
        if incident is None:
            raise refusals.not_found(f"no incident INC-{incident_id}")
        out = incident_json(incident)
        out["timeline"] = [_times({"at": e.at, "event": e.event, "actor": e.actor, **e.detail})
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
        body = await _object(request)
        key = _request_key(request, caller, body)
        earlier = await self._earlier(key)
        if earlier is not None:
            first = await self.d.store.incident(earlier.refs[0])
            assert first is not None
            return _replayed(ok(incident_json(first), earlier.status))
        channels = body.get("channels")
        if channels is not None and not (isinstance(channels, list)
                                         and all(isinstance(c, str) for c in channels)):
            raise refusals.bad_request("channels must be a list of channel ids")
        incident = await self.d.incidents.declare(
            runbook=_str(body, "runbook"), title=_str(body, "title"), actor=caller.name,
            severity=_opt_str(body, "severity"), channels=channels,
            reason=_opt_str(body, "reason"), request=key)
        return ok(incident_json(incident), 201)

    async def update_incident(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await _object(request)
        posts = await self.d.incidents.update(parse_incident_id(request.match_info["id"]),
                                              _str(body, "text"), caller.name)
        return ok([post_json(p) for p in posts], 201)

    async def resolve_incident(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await _object(request, optional=True)
        incident = await self.d.incidents.resolve(parse_incident_id(request.match_info["id"]),
                                            actor=caller.name, note=_opt_str(body, "note"))
        return ok(incident_json(incident))

    async def void_incident(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await _object(request)
        voided = await self.d.incidents.void(parse_incident_id(request.match_info["id"]),
                                             actor=caller.name, reason=_str(body, "reason"))
        return ok({**incident_json(voided.incident), "rescheduled": voided.rescheduled,
                   "held": voided.held, "retracted": voided.retracted,
                   "retract_failed": voided.retract_failed})

    async def release_incident(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        body = await _object(request)
        incident = await self.d.incidents.release(parse_incident_id(request.match_info["id"]),
                                            actor=caller.name, reason=_str(body, "reason"))
        return ok(incident_json(incident))

    # -- people, approvals and audit --------------------------------------

    async def _check_post_access(self, request: web.Request, post_id: int) -> None:
        """A person acts on a post only on their teams' channels (403 naming the team)."""
        post = await self.d.store.post(post_id)
        if post is None:
            raise refusals.not_found(f"no post {post_id}")
        people.check_marketing(request["caller"], post.channel, self.d.config)
        self._note_team(request, post.channel)

    async def approve_post(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        post_id = _int(request.match_info["id"], "post id")
        body = await _object(request, optional=True)
        post = await self._pending(request, post_id)
        _not_an_editor(caller, post_id, await self.d.store.post_history(post_id))
        now = self.d.clock()
        # An ops update is for now, whenever its second person approves it.
        due = now if post.kind == "operational" else post.due_at
        if body.get("at") is not None:
            due = parse_future(_as_text(body, "at"), now, self.d.config.timezone)
        elif due < now:  # its slot has gone: only a person can pick the next one
            raise refusals.conflict(f"post {post_id} was due at {rfc3339(due)}, which has "
                                    "passed: approve it with a new time (at)")
        if not await self.d.store.transition([post_id], PostState.SCHEDULED,
                                       (PostState.PENDING_APPROVAL,), now, caller.name,
                                       f"approved by {caller.name}", due_at=max(due, now)):
            raise refusals.conflict(f"post {post_id} is no longer pending approval")
        self.d.publisher.poke(max(due, now))
        return ok(post_json(await self._reload(post_id)))

    async def reject_post(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        post_id = _int(request.match_info["id"], "post id")
        reason = _str(await _object(request), "reason")
        await self._pending(request, post_id)
        if not await self.d.store.transition([post_id], PostState.REJECTED,
                                             (PostState.PENDING_APPROVAL,),
                                       self.d.clock(), caller.name,
                                       f"rejected by {caller.name}: {reason}"):
            raise refusals.conflict(f"post {post_id} is no longer pending approval")
        return ok(post_json(await self._reload(post_id)))

    async def _pending(self, request: web.Request, post_id: int) -> Any:
        post = await self.d.store.post(post_id)
        if post is None:
            raise refusals.not_found(f"no post {post_id}")
        people.check_approver(request["caller"], post, self.d.config)
        self._note_team(request, post.channel)
        if post.state != PostState.PENDING_APPROVAL:
            raise refusals.conflict(f"post {post_id} is {post.state}, not pending approval")
        return post

    async def _reload(self, post_id: int) -> Any:
        post = await self.d.store.post(post_id)
        assert post is not None
        return post

    async def list_users(self, request: web.Request) -> web.Response:
        return ok([people.person_json(p) for p in await self.d.people.store.people()])

    async def add_user(self, request: web.Request) -> web.Response:
        body = await _object(request)
        person = await self.d.people.add(body, await self._password_hash(body))
        return ok(people.person_json(person), 201)

    async def update_user(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await _object(request)
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
        limit = _int(request.query.get("limit", "1000"), "limit")
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
        body = await _object(request)
        name, password = _str(body, "name"), _str(body, "password")
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

    # -- feeds -------------------------------------------------------------

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


async def read_body(request: web.Request) -> bytes:
    """The whole body, within the body deadline; a declared length over the limit
    is refused before anything is read."""
    limit = request.app[BODY_LIMIT]
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit,
                                            actual_size=request.content_length)
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT]):
            return await request.read()
    except TimeoutError as exc:
        raise Refused(408, "body_timeout", "the request body did not arrive in "
                                           f"{request.app[BODY_TIMEOUT]:g} s") from exc


def _send_answer(post: Post) -> web.Response:
    if post.state == PostState.SUPPRESSED:
        raise refusals.conflict(f"an incident took channel {post.channel} before the send "
                                f"started (INC-{post.incident_id}); post {post.id} is held")
    if post.state == PostState.FAILED:
        return error(502, "publish_failed", f"post {post.id} failed: {post.error}")
    # 202: still on its way (a rate limit, a slow platform); do not send it again.
    return ok(post_json(post), 201 if post.state == PostState.PUBLISHED else 202)


def _request_key(request: web.Request, caller: Caller, body: Any) -> RequestKey | None:
    """The caller's Idempotency-Key for this route, with the digest of its body."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not (0 < len(key) <= 255 and key.isascii() and key.isprintable()):
        raise refusals.bad_request(f"{IDEMPOTENCY_KEY} must be 1 to 255 printable ASCII "
                                   "characters")
    return RequestKey(f"{caller.name} {request.method} {request.path}", key,
                      body_fingerprint(body))


def _replayed(response: web.Response) -> web.Response:
    response.headers[REPLAYED] = "true"
    return response


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise refusals.Refused(413, "too_large", f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise refusals.Refused(413, "too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: web.Request, optional: bool = False) -> Any:
    raw = await read_body(request)
    if not raw:
        if optional:
            return None
        raise refusals.bad_request("a JSON body is needed")
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise refusals.bad_request("malformed JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit number
        raise refusals.bad_request(f"malformed JSON: {exc}") from exc
    bad = first_bad_text(body)
    if bad is not None:  # `"\udc80"`: JSON allows it, nothing after the API can store it
        raise refusals.bad_request(f"{bad[0]} {bad[1]}")
    return body


# What `?state=` may ask for: the states users see (`queued` shows as scheduled).
LISTED_STATES = tuple(s for s in POST_STATES if s != PostState.QUEUED)


def _check_states(states: list[str]) -> None:
    unknown = [s for s in states if s not in LISTED_STATES]
    if unknown:
        raise refusals.bad_request(f"unknown state {unknown[0][:40]!r} "
                                   f"(states: {', '.join(LISTED_STATES)})")


async def _object(request: web.Request, optional: bool = False) -> dict[str, Any]:
    body = await _json(request, optional)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise refusals.bad_request("the body must be one JSON object")
    return body


def _str(body: Any, key: str) -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise refusals.bad_request(f"{key} is required and must be a non-empty string")
    return value


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise refusals.bad_request(f"{key} must be a string")
    return value


def _not_an_editor(caller: Caller, post_id: int, history: list[dict[str, Any]]) -> None:
    """Who changed a post cannot approve it, as its author cannot: the text that
    would go out must have been seen by a second person."""
    if any(h["actor"] == caller.name and str(h["reason"] or "").startswith("edited:")
           for h in history):
        raise refusals.forbidden(f"{caller.name} edited post {post_id}: another approver "
                                 "must approve it")


def _posting_role(caller: Caller) -> str:
    """The role a calendar's rows are checked against: both kinds for whoever holds
    both powers (a person's team role gives marketing; its channels are checked
    per row)."""
    marketing, ops = caller.can("marketing"), caller.can("ops")
    if marketing and ops:
        return "admin"
    return "marketing" if marketing else "ops" if ops else caller.role


def _role_for(caller: Caller, kind: str) -> str:
    """The role a post of `kind` is checked against: a person's team role gives
    marketing (which channels it reaches is checked after)."""
    if kind == "marketing" and caller.can("marketing"):
        return "marketing"
    if kind == "operational" and caller.can("ops"):
        return "ops"
    return caller.role


def _as_text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise refusals.bad_request(f"{key} must be a string")
    return value


def _poster(request: web.Request) -> Caller:
    """Posting takes the marketing or the ops power (which kind is checked per post);
    a viewer is refused before its body is even read."""
    caller: Caller = request["caller"]
    if not (caller.can("marketing") or caller.can("ops")):
        raise refusals.forbidden(f"the {caller.role} role cannot post "
                                 "(marketing or ops needed)")
    return caller


def _page_limit(request: web.Request) -> int:
    limit = _int(request.query.get("limit", str(PAGE_DEFAULT)), "limit")
    if not 1 <= limit <= PAGE_MAX:
        raise refusals.bad_request(f"limit must be 1 to {PAGE_MAX}, not {limit}; "
                                   "follow the Link header for the next page")
    return limit


def _cursor(request: web.Request, size: int) -> list[Any] | None:
    """The key a `cursor` parameter carries (opaque to callers: base64 of JSON)."""
    text = request.query.get("cursor")
    if text is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4)))
    except (ValueError, UnicodeError, binascii.Error):
        key = None
    if not (isinstance(key, list) and len(key) == size and all(
            isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 2 ** 62
            for v in key)):
        raise refusals.bad_request("bad cursor: use the one in the Link header as it is")
    return key


def _cursor_text(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _key(cursor: list[Any] | None) -> tuple[float, int] | None:
    return None if cursor is None else (float(cursor[0]), int(cursor[1]))


def _encode(items: list[dict[str, Any]]) -> bytes:
    return json.dumps(items, default=str).encode()


def _int(value: str, what: str) -> int:
    # ASCII digits only ('²' is a digit to Python), and within SQLite's 64 bits.
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise refusals.bad_request(f"bad {what} {value[:40]!r}")
    return int(value)


def _times(entry: dict[str, Any]) -> dict[str, Any]:
    """Stored Unix times (`at`, `*_at`, `*_until`) as RFC 3339, like every other time."""
    return {k: rfc3339(v) if isinstance(v, float) and k.endswith(("at", "_until")) else v
            for k, v in entry.items()}
