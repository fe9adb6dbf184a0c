"""A Bluesky account (or any atproto PDS), through the atproto SDK's async client.

Each post is written with `com.atproto.repo.putRecord` under a record key made
from the install id and the post id (shaped as a TID, the key kind posts use),
so a retry after a timeout whose first attempt got through writes the same
record again instead of a second post: retrying network failures is safe here.

The session comes from an app password (`com.atproto.server.createSession`);
the SDK refreshes it before the access token runs out, and an expired or
revoked session is replaced by a new login once before the error counts.
Links become facets (UTF-8 byte offsets), so they are clickable. A 429 and the
`RateLimit-Remaining: 0` of a successful answer both hold the account until
`RateLimit-Reset`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import regex
from atproto import AsyncClient, models
from atproto_client.client.session import Session, SessionEvent
from atproto_client.exceptions import (
    BadRequestError,
    InvokeTimeoutError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    UnauthorizedError,
)
from atproto_client.request import AsyncRequest
from atproto_client.utils import facet_detection
from atproto_core.exceptions import AtProtocolError

from switchboard.channels.base import Channel, ChannelError, Message, Receipt
from switchboard.channels.httpx_gate import gated_transports, httpx_trace
from switchboard.channels.remote import Attempt, ChannelThreads, compose, reporting
from switchboard.channels.retry import RateLimited, Retrier, RetryPolicy
from switchboard.clock import Clock, system_clock
from switchboard.config import ChannelConfig
from switchboard.text import decimal

T = TypeVar("T")

DEFAULT_SERVICE = "https://bsky.social"
POST_COLLECTION = "app.bsky.feed.post"
_SESSION_ERRORS = ("ExpiredToken", "InvalidToken")
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable, as atproto TIDs use

# The gate of the send under way: each request the SDK makes for it asks it once
# its connection is ready, right before it is written (see remote.py).
_may_start: ContextVar[Callable[[], bool] | None] = ContextVar("bluesky_may_start",
                                                                default=None)


class BlueskyChannel(Channel):
    kind = "bluesky"

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        super().__init__(config, clock=clock)
        self._retrier = Retrier(RetryPolicy.from_options(config.options), self.clock)
        self._identifier = str(config.options.get("identifier", ""))
        self._password = config.secrets.get("app_password", "")
        self._threads = ChannelThreads(config.id)
        self._transport = _Transport(self.clock, timeout=httpx.Timeout(config.timeout),
                                     **gated_transports(self._threads))
        self._client = AsyncClient(str(config.options.get("service") or DEFAULT_SERVICE),
                                   request=self._transport)
        self._did: str | None = None  # the account's DID while a session is held
        self._session_did: str | None = None
        self._client.on_session_change(self._on_session)

    async def close(self) -> None:
        await self._transport.close()
        self._threads.close()

    async def publish(self, message: Message) -> Receipt:
        return await reporting(self, self._publish(message))

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        await reporting(self, self._delete(post_id, remote_id))

    async def _publish(self, message: Message) -> Receipt:
        text = compose(message)
        rkey = record_key(message.install_id, message.post_id,
                          message.created_at or message.sent_at)
        try:
            record = models.AppBskyFeedPost.Record(
                text=text, created_at=_iso(message.sent_at), facets=link_facets(text) or None)
        except ValueError as exc:  # the lexicon's own limits (3,000 bytes of text)
            raise ChannelError(f"not a valid Bluesky post: {exc}", permanent=True,
                               reason="rejected") from exc

        async def attempt() -> Receipt:
            async def put() -> Receipt:
                response = await self._client.com.atproto.repo.put_record(
                    models.ComAtprotoRepoPutRecord.Data(
                        repo=await self._login(), collection=POST_COLLECTION, rkey=rkey,
                        record=record))
                return Receipt(remote_id=str(response.uri))

            return await self._request(put, message.may_start)

        return await self._retrier.run("publish", attempt, message.may_start)

    async def _delete(self, post_id: str, remote_id: str | None) -> None:
        if not remote_id or not remote_id.startswith("at://"):
            raise ChannelError(f"no Bluesky record known for post {post_id}", permanent=True,
                               reason="rejected")
        repo, collection, rkey = remote_id[len("at://"):].split("/", 2)

        async def attempt() -> None:
            async def delete() -> None:
                await self._login()
                # deleteRecord succeeds for a record already gone: the goal is met.
                await self._client.com.atproto.repo.delete_record(
                    models.ComAtprotoRepoDeleteRecord.Data(repo=repo, collection=collection,
                                                          rkey=rkey))

            await self._request(delete, None)

        await self._retrier.run("retract", attempt)

    async def _request(self, call: Callable[[], Awaitable[T]],
                       may_start: Callable[[], bool] | None) -> T:
        """One platform call, the gate asked at the true start of each request it
        makes; an expired session is replaced by one new login, then tried again."""
        token = _may_start.set(may_start)
        try:
            try:
                return await call()
            except (BadRequestError, UnauthorizedError) as exc:
                if _error_name(exc) not in _SESSION_ERRORS or self._did is None:
                    raise
                self._did = None  # log in again, then the same call once more
                return await call()
        except AtProtocolError as exc:
            raise self._channel_error(exc) from exc
        except httpx.HTTPError as exc:
            # The SDK passes some transport failures through as they are (a
            # connection closed before any answer is a protocol error to httpx).
            raise ChannelError(f"lost the connection to Bluesky ({type(exc).__name__})",
                               reason="network", maybe_sent=True) from exc
        finally:
            _may_start.reset(token)

    async def _login(self) -> str:
        if self._did is None:
            if not self._identifier or not self._password:
                raise ChannelError("Bluesky needs identifier and app_password_env / "
                                   "app_password_file", permanent=True, reason="auth")
            try:
                await self._client.login(self._identifier, self._password,
                                         fetch_bsky_profile=False)
            except (BadRequestError, UnauthorizedError) as exc:
                raise ChannelError(f"Bluesky refused the app password for "
                                   f"{self._identifier}: {exc}", permanent=True,
                                   reason="auth") from exc
            if self._session_did is None:
                raise ChannelError("Bluesky gave no session", permanent=True, reason="auth")
            self._did = self._session_did
        return self._did

    async def _on_session(self, event: SessionEvent, session: Session) -> None:
        self._session_did = session.did

    def _channel_error(self, exc: AtProtocolError) -> ChannelError:
        if isinstance(exc, RateLimitExceededError):
            return RateLimited(f"Bluesky rate limit: {exc}", reset_at=_reset_at(exc, self.clock()))
        if isinstance(exc, InvokeTimeoutError):
            return ChannelError(f"Bluesky did not answer within {self.config.timeout:g}s",
                                reason="timeout")
        status = _status(exc)
        if isinstance(exc, NetworkError) and status is None:
            return ChannelError(f"cannot reach Bluesky: {exc.__cause__ or exc}",
                                reason="network")
        if status is not None and (status >= 500 or status == 408):
            return ChannelError(f"Bluesky server error: {exc}",
                                reason="server_error" if status >= 500 else "timeout")
        if isinstance(exc, UnauthorizedError):
            return ChannelError(f"Bluesky refused the session: {exc}", permanent=True,
                                reason="auth")
        return ChannelError(f"Bluesky refused the post: {exc}", permanent=True,
                            reason="rejected")


class _Transport(AsyncRequest):  # type: ignore[misc]  # the SDK ships no type marker
    """The SDK's HTTP transport: each request asks the gate once its connection is
    ready, right before it is written, and one that never got that far is marked
    `not_sent`. It remembers the account's `RateLimit-*` answers, per method
    (logins have a window of their own)."""

    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clock = clock
        self._exhausted_until: dict[str, float] = {}  # XRPC method -> its window's reset

    async def _send_request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        nsid = url.rsplit("/", 1)[-1].split("?", 1)[0]
        until = self._exhausted_until.get(nsid)
        if until is not None and until > self._clock():
            # The last answer said the window is used up: a request now would only
            # meet a 429, so wait for the reset like after one.
            raise RateLimited("Bluesky rate limit: no requests left until the reset",
                              reset_at=until)
        tried = Attempt(_may_start.get())
        kwargs["extensions"] = {**kwargs.get("extensions", {}), "trace": httpx_trace(tried)}
        try:
            response: httpx.Response = await super()._send_request(method, url, **kwargs)
        except ChannelError:
            raise
        except (AtProtocolError, httpx.HTTPError) as exc:
            if not tried.started:  # refused, DNS, TLS, a connect timeout: nothing left
                raise tried.failed(ChannelError(
                    f"cannot reach Bluesky: {exc.__cause__ or exc}", reason="network")) from exc
            if isinstance(exc, RequestErrorBase) and exc.response is not None:
                self._note(nsid, exc.response.headers)
            raise
        self._note(nsid, response.headers)
        return response

    def _note(self, nsid: str, headers: Any) -> None:
        remaining, reset = headers.get("ratelimit-remaining"), headers.get("ratelimit-reset")
        if remaining is None or reset is None:
            return
        self._exhausted_until.pop(nsid, None)
        if remaining.strip() == "0":
            with contextlib.suppress(ValueError):
                self._exhausted_until[nsid] = float(reset)


def record_key(install_id: str, post_id: str, created_at: datetime) -> str:
    """A TID for the post's record. Every send of one post has the same key, so a
    retry or a released `unknown` post sent again rewrites its record instead of
    adding one; and no two posts share one, or the second would overwrite the
    first. The 53 timestamp bits are the post's creation time to the second,
    with the post's id (modulo a million) as its microseconds: two posts made in
    the same second never share their id, whatever order their ids were drawn
    in (concurrent writers, two daemons), and the key stays within a second of
    the post's creation. The 10 clock-id bits hash the install and the post, for
    a second store's posts of the same ids."""
    micros = (int(created_at.timestamp()) * 1_000_000
              + _post_number(post_id) % 1_000_000) & ((1 << 53) - 1)
    digest = hashlib.sha256(f"{install_id}:{post_id}".encode()).digest()
    clock_id = int.from_bytes(digest[:2], "big") & 0x3FF
    value = (micros << 10) | clock_id
    return "".join(_TID_ALPHABET[(value >> (5 * (12 - i))) & 31] for i in range(13))


def _post_number(post_id: str) -> int:
    return decimal(post_id) or 0


def link_facets(text: str) -> list[models.AppBskyRichtextFacet.Main]:
    """Link facets for every URL in the text, with UTF-8 byte offsets."""
    facets = []
    for match in regex.finditer(r"https?://[^\s]+[^\s.,;:!?)\]'\"]", text):
        start = len(text[:match.start()].encode("utf-8"))
        end = start + len(match.group().encode("utf-8"))
        facets.append(models.AppBskyRichtextFacet.Main(
            features=[models.AppBskyRichtextFacet.Link(uri=match.group())],
            index=models.AppBskyRichtextFacet.ByteSlice(byte_start=start, byte_end=end)))
    seen = {(f.index.byte_start, f.index.byte_end) for f in facets}
    # Bare domains ("example.org/fares") as the Bluesky app links them.
    for facet in facet_detection.detect_facets(text):
        span = (facet.index.byte_start, facet.index.byte_end)
        if isinstance(facet.features[0], models.AppBskyRichtextFacet.Link) and not any(
                s[0] < span[1] and span[0] < s[1] for s in seen):
            facets.append(facet)
    return sorted(facets, key=lambda f: f.index.byte_start)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_name(exc: RequestErrorBase) -> str | None:
    content = exc.response.content if exc.response is not None else None
    name = getattr(content, "error", None)
    return str(name) if name else None


def _status(exc: AtProtocolError) -> int | None:
    response = getattr(exc, "response", None)
    return None if response is None else int(response.status_code)


def _reset_at(exc: RateLimitExceededError, now: float) -> float | None:
    """The reset a 429 names: its `RateLimit-Reset`, or its `Retry-After` from `now`."""
    if exc.reset_at is not None:
        return float(exc.reset_at.timestamp())
    if exc.retry_after is not None:
        return now + float(exc.retry_after)
    return None
