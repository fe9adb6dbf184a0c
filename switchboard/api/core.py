"""The HTTP listener (design §4.2): health, metrics, the control API and feeds.

Every error is JSON `{"error": {"code", "message"}}`. Authentication happens
in one middleware from the route's declared role; feed endpoints carry their
own token or signature and are checked by the feed. The endpoints themselves
live with their nouns (posts, send, approvals, incidents, people, feeds, health);
this module holds the route table and the middleware every route passes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from switchboard.api.approvals import ApprovalsApi
from switchboard.api.common import BODY_LIMIT, BODY_TIMEOUT, Handler, KeyLocks, error
from switchboard.api.feeds import FeedsApi
from switchboard.api.health import HealthApi
from switchboard.api.incidents import IncidentsApi
from switchboard.api.people import PeopleApi
from switchboard.api.posts import PostsApi
from switchboard.api.send import SendApi
from switchboard.auth import Caller, digest_matches
from switchboard.model import AuditEntry, NewPost, Post
from switchboard.refusals import Refused
from switchboard.store import KeyTaken, StoreUnavailable

if TYPE_CHECKING:
    from switchboard.api.services import Services
    from switchboard.posts import ChannelLimit

log = structlog.get_logger("api")

# (method, path, handler, the least role that may call it)
Route = tuple[str, str, Handler, str | None]


class Api:
    def __init__(self, services: Services) -> None:
        self.d = services
        self.keys = KeyLocks()
        self._reads = ThreadPoolExecutor(2, thread_name_prefix="api-list")
        self.health = HealthApi(services)
        self.posts = PostsApi(services, self._reads)
        self.sends = SendApi(services, self.posts)
        self.approvals = ApprovalsApi(services, self.posts)
        self.incidents = IncidentsApi(services, self._reads)
        self.people = PeopleApi(services)
        self.feeds = FeedsApi(services)

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.d.config.max_body_bytes,
                              middlewares=[self._errors, self._auth])
        app[BODY_TIMEOUT] = self.d.limits.body_timeout
        app[BODY_LIMIT] = self.d.config.max_body_bytes
        app.on_cleanup.append(self._close_reads)
        self.roles: dict[tuple[str, str], str | None] = {}
        self._routes(app.router)
        app.on_response_prepare.append(self._zone_header)
        return app

    def _routes(self, r: web.UrlDispatcher) -> None:
        for method, path, handler, role in self._table():
            resource = r.add_route(method, path, handler)
            canonical = resource.resource.canonical if resource.resource else path
            self.roles[(method, canonical)] = role

    def _table(self) -> list[Route]:
        """Every route with the least role that may call it (None: open, or checked by
        the handler itself). Approvers are checked per post (their team), the audit
        per reader, feed deliveries by each feed's own credential."""
        health, posts, incidents = self.health, self.posts, self.incidents
        approvals, people = self.approvals, self.people
        actions: list[Route] = [("POST", f"/api/v1/posts/{{id}}/{action}", posts.post_action,
                                 "marketing") for action in ("cancel", "release", "drop")]
        return [
            ("GET", "/healthz", health.healthz, None),
            ("GET", "/readyz", health.readyz, None),
            ("GET", "/metrics", health.metrics, None),
            ("GET", "/api/v1/status", health.status, "viewer"),
            ("GET", "/api/v1/channels", health.channels, "viewer"),
            ("GET", "/api/v1/posts", posts.list_posts, "viewer"),
            ("POST", "/api/v1/posts", posts.schedule_posts, "viewer"),
            ("POST", "/api/v1/posts/import", posts.import_posts, "viewer"),
            ("GET", "/api/v1/posts/{id}", posts.get_post, "viewer"),
            ("PATCH", "/api/v1/posts/{id}", posts.edit_post, "viewer"),
            ("POST", "/api/v1/posts/actions", posts.post_actions, "marketing"),
            *actions,
            ("POST", "/api/v1/posts/{id}/approve", approvals.approve_post, "viewer"),
            ("POST", "/api/v1/posts/{id}/reject", approvals.reject_post, "viewer"),
            ("POST", "/api/v1/send", self.sends.send, "viewer"),
            ("GET", "/api/v1/incidents", incidents.list_incidents, "viewer"),
            ("POST", "/api/v1/incidents", incidents.declare, "ops"),
            ("GET", "/api/v1/incidents/{id}", incidents.get_incident, "viewer"),
            ("POST", "/api/v1/incidents/{id}/update", incidents.update_incident, "ops"),
            ("POST", "/api/v1/incidents/{id}/resolve", incidents.resolve_incident, "ops"),
            ("POST", "/api/v1/incidents/{id}/void", incidents.void_incident, "ops"),
            ("POST", "/api/v1/incidents/{id}/release", incidents.release_incident, "ops"),
            ("GET", "/api/v1/feeds", self.feeds.feeds_status, "viewer"),
            ("POST", "/feeds/{feed_id}", self.feeds.feed, None),
            ("GET", "/api/v1/users", people.list_users, "admin"),
            ("POST", "/api/v1/users", people.add_user, "admin"),
            ("PATCH", "/api/v1/users/{name}", people.update_user, "admin"),
            ("POST", "/api/v1/users/{name}/tokens", people.new_user_token, "admin"),
            ("GET", "/api/v1/audit", people.audit, "viewer"),
            ("POST", "/api/v1/session", people.session, None),
        ]

    async def _close_reads(self, app: web.Application) -> None:
        self._reads.shutdown(wait=False, cancel_futures=True)

    async def _zone_header(self, request: web.Request, response: web.StreamResponse) -> None:
        # The CLI prints times in the daemon's configured zone, so it is told which.
        response.headers["X-Switchboard-Timezone"] = self.d.config.timezone.key

    # -- what the console shares with the API ---------------------------------

    def limits(self) -> dict[str, ChannelLimit]:
        """Each channel's length limit and audience, as posts are checked against."""
        return self.posts.limits()

    def new_post(self, request: web.Request, item: Any, now: float,
                 limits: dict[str, ChannelLimit], default_kind: str = "marketing") -> NewPost:
        return self.posts.new_post(request, item, now, limits, default_kind)

    async def check_post_access(self, request: web.Request, post_id: int) -> None:
        await self.posts.check_access(request, post_id)

    async def pending(self, request: web.Request, post_id: int) -> Post:
        return await self.approvals.pending(request, post_id)

    # -- middleware --------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as exc:
            return error(exc.status, exc.code, exc.message)
        except KeyTaken as exc:
            return error(409, "key_in_use", exc.message)
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
        async with self.keys.hold(request, caller):
            response = await handler(request)
        if request.method != "GET" and response.status < 400:
            try:
                await self.record_audit(request, caller, canonical, response.status)
            except Exception:
                # The write itself is committed: answering 500 would invite a repeat.
                log.exception("audit_write_failed", path=canonical)
        return response

    async def record_audit(self, request: web.Request, caller: Caller, canonical: str,
                           status: int) -> None:
        """Every write that succeeded, with its person and credential (never the token)."""
        target = request.match_info.get("id") or request.match_info.get("name")
        await self.d.store.record_audit(AuditEntry(
            at=self.d.clock(), person=caller.name if caller.person else None,
            credential=caller.audit_credential, action=f"{request.method} {canonical}",
            target=target, teams=tuple(sorted(request.get("teams", ()))), status=status))
