"""The console's plumbing: sessions, CSRF, security headers, rendering.

A signed-in browser holds a random session token in an HttpOnly cookie; the
store keeps only its SHA-256 digest, with the session's CSRF token and when
it was last seen. Every request looks the person up again, so a disabled
person's sessions stop at once, and an idle session ends after
`SWITCHBOARD_CONSOLE_IDLE` seconds (30 minutes unless set).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
import jinja2
import structlog
from aiohttp import web

from switchboard import people
from switchboard.auth import Caller, sha256_hex
from switchboard.console.live import Pulse
from switchboard.refusals import Refused
from switchboard.text import decimal

if TYPE_CHECKING:
    from switchboard.api import Api

log = structlog.get_logger("console")
HERE = Path(__file__).parent
COOKIE = "sb_session"
IDLE_DEFAULT = 30 * 60.0
TOUCH_EVERY = 30.0  # seconds: a session's last-seen time is written at most this often
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                "Cache-Control": "no-store"}
View = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Settings:
    """The console's knobs, from the environment like the listener's limits."""

    idle: float = IDLE_DEFAULT
    secure_cookies: bool = False
    trusted_proxies: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        idle = float(env.get("SWITCHBOARD_CONSOLE_IDLE", IDLE_DEFAULT))
        if idle <= 0:
            raise ValueError("SWITCHBOARD_CONSOLE_IDLE must be a positive number of seconds")
        proxies = env.get("SWITCHBOARD_CONSOLE_TRUSTED_PROXIES", "")
        return cls(idle=idle,
                   secure_cookies=env.get("SWITCHBOARD_CONSOLE_SECURE_COOKIES", "") in
                   ("1", "true", "yes"),
                   trusted_proxies=frozenset(p.strip() for p in proxies.split(",") if p.strip()))


@dataclass(frozen=True)
class Session:
    digest: str
    caller: Caller
    csrf: str


class Guard:
    """What every console view shares: sessions, CSRF, security headers, rendering."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.d = api.d
        self.settings = Settings.from_env(os.environ)
        self.pulse = Pulse(api.d)

    def setup(self, app: web.Application) -> None:
        env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"),
                                   autoescape=jinja2.select_autoescape(default=True))
        env.filters["when"] = self.when
        env.globals["zone"] = self.zone_name

    # -- times in the configured zone ---------------------------------------

    def when(self, at: float | None) -> str:
        if at is None:
            return "—"
        local = datetime.fromtimestamp(at, UTC).astimezone(self.d.config.timezone)
        return local.strftime("%a %d %b %Y %H:%M %Z")

    def zone_name(self) -> str:
        return str(self.d.config.timezone)

    # -- sessions -----------------------------------------------------------

    async def session(self, request: web.Request) -> Session | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        digest = sha256_hex(token)
        found = await self.d.store.console_session(digest)
        if found is None:
            return None
        name, csrf, seen = found
        now = self.d.clock()
        person = await self.d.store.person(name)
        if person is None or person.disabled or now - seen > self.settings.idle:
            await self.d.store.end_console_session(digest)
            return None
        if now - seen > TOUCH_EVERY:
            await self.d.store.touch_console_session(digest, now)
        return Session(digest, people.caller(person, f"{name}/console"), csrf)

    async def start_session(self, response: web.StreamResponse, request: web.Request,
                      name: str) -> None:
        token = secrets.token_urlsafe(32)
        now = self.d.clock()
        await self.d.store.end_idle_console_sessions(now - self.settings.idle)
        await self.d.store.add_console_session(sha256_hex(token), name, secrets.token_urlsafe(32),
                                         now)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Lax", path="/",
                            secure=self.secure(request))

    def secure(self, request: web.Request) -> bool:
        """Secure cookies over TLS: ours, or a trusted proxy's (X-Forwarded-Proto)."""
        if self.settings.secure_cookies or request.scheme == "https":
            return True
        return (request.remote in self.settings.trusted_proxies
                and request.headers.get("X-Forwarded-Proto", "").lower() == "https")

    # -- the guard around every console view ---------------------------------

    def page(self, view: View) -> View:
        """Signed in (else to /signin), CSRF checked on POST, headers on the answer."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = await self.session(request)
            if session is None:
                if request.headers.get("HX-Request"):
                    return web.Response(status=401, headers={"HX-Redirect": "/signin"})
                raise web.HTTPSeeOther(f"/signin?next={quote(request.path_qs, safe='')}")
            request["caller"] = session.caller
            request["session"] = session
            # Read before the view reads anything: a change after this is pushed.
            request["pulse"] = await self.pulse.current()
            if request.method == "POST" and not await self.csrf_ok(request, session):
                return await self.failure(request, 403, "This form has expired or did not come "
                                                  "from the console: reload the page and "
                                                  "try again.")
            try:
                response = await view(request)
            except web.HTTPException as exc:
                if exc.status < 400:  # a redirect after a successful POST
                    if request.method == "POST":
                        await self.audit(request, session.caller, exc.status)
                    raise
                return await self.failure(request, exc.status, exc.text or exc.reason)
            if request.method == "POST" and response.status < 400:
                await self.audit(request, session.caller, response.status)
            return with_headers(response)
        return guarded

    async def events(self, request: web.Request) -> web.StreamResponse:
        """`GET /api/v1/events`: viewer or better, by console session or bearer token."""
        if await self.session(request) is None:
            caller = await self.d.tokens.identify(request.headers.get("Authorization"))
            if caller is None or not caller.can("viewer"):
                raise web.HTTPUnauthorized(text="sign in, or send a bearer token")
        return await self.pulse.events(request, decimal(request.query.get("since", "")))

    async def csrf_ok(self, request: web.Request, session: Session) -> bool:
        """The session's token, in the form or the X-CSRF-Token header (htmx); and no
        other site's Origin, where the browser names one."""
        if not same_origin(request):
            return False
        sent = request.headers.get("X-CSRF-Token")
        if sent is None:
            form = await request.post()
            value = form.get("csrf")
            sent = value if isinstance(value, str) else None
        return bool(sent) and hmac.compare_digest(str(sent), session.csrf)

    async def failure(self, request: web.Request, status: int, message: str) -> web.Response:
        return await self.render(request, "failure.html", {"title": f"{status}: refused"
                                                     if status == 403 else str(status),
                                                     "error": message}, status)

    async def audit(self, request: web.Request, caller: Caller, status: int) -> None:
        route = request.match_info.route
        canonical = route.resource.canonical if route.resource else request.path
        try:
            await self.api.record_audit(request, caller, f"console {canonical}", status)
        except Exception:  # the action itself is done; the failure is in the log
            log.exception("audit_write_failed", path=request.path)

    async def render(self, request: web.Request, template: str, context: dict[str, Any],
               status: int = 200) -> web.Response:
        caller: Caller | None = request.get("caller")
        session: Session | None = request.get("session")
        base = {"me": caller, "csrf": session.csrf if session else "",
                "pulse": request.get("pulse", 0),
                "can": powers(caller), "path": request.path, "zone": self.zone_name(),
                "banners": await self.banners() if caller else [], "ok": "", "error": "",
                "title": "switchboard"}
        response = aiohttp_jinja2.render_template(template, request, {**base, **context},
                                                  status=status)
        return with_headers(response)

    async def banners(self) -> list[dict[str, Any]]:
        """Every active incident and every cooldown, for the red banner."""
        out = []
        for incident in await self.d.incidents.listing(False):
            cooling = incident.state != "active"
            out.append({"id": incident.id, "title": incident.title, "cooldown": cooling,
                        "until": incident.cooldown_until, "channels": incident.channels})
        return out

    async def refused(self, request: web.Request, template: str, context: dict[str, Any],
                exc: Refused) -> web.Response:
        return await self.render(request, template, {**context, "error": exc.message}, exc.status)


def same_origin(request: web.Request) -> bool:
    """No Origin (an old browser, a script), or this very host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host


def powers(caller: Caller | None) -> dict[str, bool]:
    if caller is None:
        return {}
    return {"ops": caller.can("ops"), "marketing": caller.can("marketing"),
            "admin": caller.role == "admin",
            "audit": caller.role == "admin" or any("approver" in r
                                                   for r in caller.teams.values())}


R = TypeVar("R", bound=web.StreamResponse)


def with_headers(response: R) -> R:
    for key, value in PAGE_HEADERS.items():
        response.headers[key] = value
    return response
