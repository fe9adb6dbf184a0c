"""What every group of endpoints shares: JSON answers and errors, bodies read
within their deadline and limit, Idempotency-Key bookkeeping and list paging."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from aiohttp import web

from switchboard import refusals
from switchboard.auth import Caller
from switchboard.clock import rfc3339
from switchboard.keylocks import KeyedLocks
from switchboard.refusals import Refused
from switchboard.store import KeyedRequest, RequestKey
from switchboard.store import fingerprint as body_fingerprint
from switchboard.text import decimal, first_bad_text

if TYPE_CHECKING:
    from switchboard.store import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY_TIMEOUT = web.AppKey("body_timeout", float)
BODY_LIMIT = web.AppKey("body_limit", int)
PAGE_DEFAULT, PAGE_MAX = 100, 1000
IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


# -- bodies ----------------------------------------------------------------


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


async def read_at_most(request: web.Request, limit: int) -> bytes:
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


async def json_body(request: web.Request, optional: bool = False) -> Any:
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


async def json_object(request: web.Request, optional: bool = False) -> dict[str, Any]:
    body = await json_body(request, optional)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise refusals.bad_request("the body must be one JSON object")
    return body


# -- fields ------------------------------------------------------------------


def required_str(body: Any, key: str) -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise refusals.bad_request(f"{key} is required and must be a non-empty string")
    return value


def optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise refusals.bad_request(f"{key} must be a string")
    return value


def text_field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise refusals.bad_request(f"{key} must be a string")
    return value


def parse_int(value: str, what: str) -> int:
    parsed = decimal(value)
    if parsed is None:
        raise refusals.bad_request(f"bad {what} {value[:40]!r}")
    return parsed


def with_times(entry: dict[str, Any]) -> dict[str, Any]:
    """Stored Unix times (`at`, `*_at`, `*_until`) as RFC 3339, like every other time."""
    return {k: rfc3339(v) if isinstance(v, float) and k.endswith(("at", "_until")) else v
            for k, v in entry.items()}


# -- Idempotency-Key -----------------------------------------------------------


def request_key(request: web.Request, caller: Caller, body: Any) -> RequestKey | None:
    """The caller's Idempotency-Key for this route, with the digest of its body."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not (0 < len(key) <= 255 and key.isascii() and key.isprintable()):
        raise refusals.bad_request(f"{IDEMPOTENCY_KEY} must be 1 to 255 printable ASCII "
                                   "characters")
    return RequestKey(f"{caller.name} {request.method} {request.path}", key,
                      body_fingerprint(body))


async def earlier_request(store: Store, key: RequestKey | None) -> KeyedRequest | None:
    """The request this key was first sent with, if any; the same key with another
    body is refused (it would silently answer for a request never made)."""
    if key is None:
        return None
    earlier = await store.keyed(key.scope, key.key)
    if earlier is not None and earlier.fingerprint != key.fingerprint:
        raise refusals.unprocessable(f"{IDEMPOTENCY_KEY} {key.key!r} was already used for "
                                     "a different request; use a new key")
    return earlier


class KeyLocks:
    """One request at a time per Idempotency-Key: a repeat racing its first request
    waits for it, then finds it and gets its answer. Between daemons sharing a
    store, the store's key table decides (the loser is told 409, `key_in_use`)."""

    def __init__(self) -> None:
        self._locks = KeyedLocks()

    @contextlib.asynccontextmanager
    async def hold(self, request: web.Request, caller: Caller) -> AsyncIterator[None]:
        key = request.headers.get(IDEMPOTENCY_KEY)
        if key is None or request.method != "POST":
            yield
            return
        async with self._locks.hold((caller.name, request.path, key)):
            yield


def replayed(response: web.Response) -> web.Response:
    response.headers[REPLAYED] = "true"
    return response


# -- paging ----------------------------------------------------------------------


def page_limit(request: web.Request) -> int:
    limit = parse_int(request.query.get("limit", str(PAGE_DEFAULT)), "limit")
    if not 1 <= limit <= PAGE_MAX:
        raise refusals.bad_request(f"limit must be 1 to {PAGE_MAX}, not {limit}; "
                                   "follow the Link header for the next page")
    return limit


def cursor(request: web.Request, size: int) -> list[Any] | None:
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


def cursor_text(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def due_key(key: list[Any] | None) -> tuple[float, int] | None:
    """A post listing's cursor as the store's (due time, id) key."""
    return None if key is None else (float(key[0]), int(key[1]))


async def paged(request: web.Request, reads: Executor, rows: Callable[[], list[Any]],
                last: list[Any] | None, total: int) -> web.Response:
    """A list endpoint's answer: the page is read on the store's reader thread
    and encoded in a worker thread (a viewer's listing never holds the loop a
    declaration needs); paging travels in the headers, the body is a JSON array."""
    body = await asyncio.get_running_loop().run_in_executor(
        reads, lambda: json.dumps(rows(), default=str).encode())
    headers = {"X-Total-Count": str(total)}
    if last is not None:
        query = {**request.query, "cursor": cursor_text(last)}
        headers["Link"] = f'<{request.rel_url.with_query(query)}>; rel="next"'
    return web.Response(body=body, content_type="application/json", charset="utf-8",
                        headers=headers)
