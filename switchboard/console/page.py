"""What every console page shares: the caller, the flash line, form reading,
post-redirect-get, and which incidents hold a channel (design §7.5).

Views call the services the API calls (incidents, the gate, the store's
transitions, people's checks) with the signed-in person as the caller, so
the console can do nothing the person's roles and teams would not let the
API do. Forms post back and redirect (they work without JavaScript); htmx
refreshes the live parts when the event stream says something moved.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from switchboard.auth import Caller
from switchboard.model import Post
from switchboard.poststates import PostState
from switchboard.text import decimal

if TYPE_CHECKING:
    from switchboard.console.guard import Guard, View

    Add = Callable[[str, str, View], None]

PAGE = 50


def form_str(form: Any, key: str) -> str:
    value = form.get(key, "")
    return value.strip() if isinstance(value, str) else ""


def form_ids(form: Any) -> list[int]:
    """The post ids a form's checkboxes name; anything that is not one is left out."""
    numbers = [decimal(i) for i in form.getall("id", []) if isinstance(i, str)]
    return [n for n in numbers if n is not None]


def done(location: str, message: str, refused: str = "") -> web.HTTPSeeOther:
    """Back to a page (post, redirect, get) saying what was done and what was refused."""
    sep = "&" if "?" in location else "?"
    tail = f"&refused={quote(refused)}" if refused else ""
    return web.HTTPSeeOther(f"{location}{sep}ok={quote(message)}{tail}")


def probe(channel: str) -> Post:
    """A stand-in post on `channel`, to ask whether a person's teams reach it."""
    return Post(0, channel, "marketing", "", None, PostState.SCHEDULED, 0.0, None, None, None, None,
                "", 0.0, None, 0.0)


class Page(ABC):
    """One page or a few close ones: its views and the routes that reach them."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.d = guard.d
        self.api = guard.api

    @abstractmethod
    def routes(self, add: Add) -> None:
        """Each view of the page, behind the guard, at its method and path."""

    def caller(self, request: web.Request) -> Caller:
        caller: Caller = request["caller"]
        return caller

    def flash(self, request: web.Request) -> dict[str, Any]:
        return {"ok": request.query.get("ok", "")[:300],
                "error": request.query.get("refused", "")[:600]}

    async def held_by(self, channel: str, kind: str) -> list[Any]:
        now = self.d.clock()
        if self.d.gate.decide(channel, kind, now).allowed:
            return []
        found = [await self.d.store.incident(i) for i in self.d.gate.controlling(channel, now)]
        return [i for i in found if i is not None]
