"""Console sessions on a fake clock: the idle timeout, a disabled person, sign-out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from switchboard.auth import sha256_hex
from switchboard.console.guard import COOKIE, IDLE_DEFAULT, Guard, Session
from switchboard.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[Guard, Clock]]:
    store = asyncio.run(Store.open(tmp_path / "switchboard.db"))
    clock = Clock()
    asyncio.run(store.add_person("mia", "marketing", {}, clock()))
    daemon = SimpleNamespace(store=store, clock=clock,
                             config=SimpleNamespace(timezone=ZoneInfo("Europe/London")))
    try:
        yield Guard(SimpleNamespace(d=daemon)), clock  # type: ignore[arg-type]
    finally:
        asyncio.run(store.close())


def current_session(guard: Guard, request: Any) -> Session | None:
    return asyncio.run(guard.session(request))


def signed_in(console: Guard, headers: dict[str, str] | None = None) -> tuple[Any, str]:
    response = web.Response()
    asyncio.run(console.start_session(response, make_mocked_request(
        "POST", "/signin", headers=headers or {}), "mia"))
    cookie = response.cookies[COOKIE]
    request = make_mocked_request("GET", "/", headers={"Cookie": f"{COOKIE}={cookie.value}"})
    return request, cookie.value


def test_a_session_ends_after_the_idle_timeout_and_not_before(
        console: tuple[Guard, Clock]) -> None:
    guard, clock = console
    request, _ = signed_in(guard)
    clock.now += IDLE_DEFAULT - 1
    assert current_session(guard, request) is not None  # used: the idle time starts again
    clock.now += IDLE_DEFAULT - 1
    assert current_session(guard, request) is not None
    clock.now += IDLE_DEFAULT + 1
    assert current_session(guard, request) is None
    clock.now += 1
    assert current_session(guard, request) is None  # ended for good, not just refused once


def test_only_the_tokens_digest_is_stored_and_a_disabled_person_is_signed_out(
        console: tuple[Guard, Clock]) -> None:
    guard, clock = console
    request, token = signed_in(guard)
    store = guard.d.store
    assert asyncio.run(store.console_session(token)) is None
    assert asyncio.run(store.console_session(sha256_hex(token))) is not None
    session = current_session(guard, request)
    assert session is not None and session.caller.name == "mia" and session.caller.person
    asyncio.run(store.update_person("mia", clock(), disabled=True))
    assert current_session(guard, request) is None


def test_each_session_has_its_own_csrf_token(console: tuple[Guard, Clock]) -> None:
    guard, _ = console
    first = current_session(guard, signed_in(guard)[0])
    second = current_session(guard, signed_in(guard)[0])
    assert first is not None and second is not None
    assert first.csrf != second.csrf and len(first.csrf) >= 32
