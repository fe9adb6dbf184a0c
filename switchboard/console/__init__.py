"""The web console (design §7.5), served by the daemon at `/` on its listener.

Server-rendered Jinja2 pages with htmx (vendored under `static/`, no build
step), a session cookie per signed-in person, a CSRF token on every form,
and server-sent events (`GET /api/v1/events`) for the live parts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from switchboard.auth import sha256_hex
from switchboard.console.calendar import CalendarPage
from switchboard.console.guard import COOKIE, HERE, Guard, same_origin, with_headers
from switchboard.console.importer import ImportPage
from switchboard.console.incidents import IncidentPages
from switchboard.console.now import NowPage
from switchboard.console.page import Page
from switchboard.console.people import PeoplePages
from switchboard.console.posting import Posting
from switchboard.console.posts import PostPages
from switchboard.console.runbooks import RunbooksPage

if TYPE_CHECKING:
    from switchboard.api import Api, Handler

__all__ = ["Console"]


class Console:
    def __init__(self, api: Api) -> None:
        self.guard = Guard(api)
        posting = Posting(self.guard)  # the Now page sends through it as Compose does
        self.pages: tuple[Page, ...] = (
            NowPage(self.guard, posting), IncidentPages(self.guard), posting,
            CalendarPage(self.guard), PostPages(self.guard), ImportPage(self.guard),
            RunbooksPage(self.guard), PeoplePages(self.guard))
        self.pulse = self.guard.pulse

    def mount(self, app: web.Application) -> None:
        """The console's routes on the API's application. The API's bearer-token
        check knows none of them (it passes routes without a role): each console
        view checks its own session, and the event stream a session or a token."""
        def add(method: str, path: str, view: Handler) -> None:
            app.router.add_route(method, path, view)

        self.guard.setup(app)
        app.on_shutdown.append(self.pulse.stop)
        add("GET", "/signin", self.signin_form)
        add("POST", "/signin", self.signin)
        add("POST", "/signout", self.guard.page(self.signout))
        add("GET", "/api/v1/events", self.guard.events)
        for page in self.pages:
            page.routes(add)
        app.router.add_static("/static/", HERE / "static", append_version=False)

    async def signin_form(self, request: web.Request) -> web.StreamResponse:
        return await self.guard.render(request, "signin.html", {"title": "Sign in", "error": "",
                                                        "next": _next(request.query)})

    async def signin(self, request: web.Request) -> web.StreamResponse:
        """A person's password, checked and throttled as `POST /api/v1/session` does."""
        if not same_origin(request):  # another site signing a browser in as someone
            return await self.guard.failure(request, 403, "Sign in from the console's own page.")
        form = await request.post()
        name = str(form.get("name", ""))[:64].strip()
        password = str(form.get("password", ""))
        d = self.guard.d
        keys = (f"name:{name}", f"client:{request.remote}")
        error, status = "", 200
        wait = d.throttle.wait(*keys)
        if wait > 0:
            d.metrics.login_failures.labels(reason="throttled").inc()
            error, status = (f"Too many failed sign-ins: try again in {int(wait) + 1} s.", 429)
        else:
            d.throttle.failed(*keys)  # before the slow check: parallel guesses count too
            holder, stored = await d.people.password_holder(name)
            matches = await asyncio.get_running_loop().run_in_executor(
                None, d.people.password_matches, stored, password)
            if holder is not None and matches:
                d.throttle.succeeded(keys[0])
                d.throttle.forgive(keys[1])
                response = web.HTTPSeeOther(_next(form))
                await self.guard.start_session(response, request, holder.name)
                raise with_headers(response)
            d.metrics.login_failures.labels(reason="bad_credentials").inc()
            error, status = "Wrong name or password.", 401
        return await self.guard.render(request, "signin.html", {
            "title": "Sign in", "error": error, "next": _next(form)}, status)

    async def signout(self, request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(COOKIE, "")
        await self.guard.d.store.end_console_session(sha256_hex(token))
        response = web.HTTPSeeOther("/signin")
        response.del_cookie(COOKIE, path="/")
        raise with_headers(response)


def _next(values: Any) -> str:
    """Where to go after signing in: a path on this console only, never elsewhere."""
    target = str(values.get("next", "/") or "/")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target
