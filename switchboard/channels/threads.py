"""A Threads profile, through the Threads API (graph.threads.net) over aiohttp.

Publishing is two calls: `POST /{user-id}/threads` makes a media container
(`media_type=TEXT`), `POST /{user-id}/threads_publish` publishes it. Before
each post the channel reads `/{user-id}/threads_publishing_limit` and holds
the post while the profile's 24-hour allowance (250 posts) is used up, instead
of spending a call on a certain refusal.

A container is published at most once: after a publish call that may have
reached Threads (a timeout, a dropped connection, a 5xx) the channel asks the
container's status before trying again, and a `PUBLISHED` container is taken
as the post, found by its text among the profile's latest threads. An
unpublished container costs nothing; Threads drops it after 24 hours.

Length: 500 characters, emoji counted by their UTF-8 bytes, as Threads counts.
Errors have the Graph shape; throttling codes are transient, an expired token
(190) is permanent and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from switchboard.channels.base import ChannelError, Message, Receipt
from switchboard.channels.facebook import (
    EXPIRED_LOGIN_CODES,
    PERMISSION_CODES,
    THROTTLING_CODES,
    TRANSIENT_CODES,
)
from switchboard.channels.http import Answer, exchange
from switchboard.channels.remote import HttpChannel, compose, reporting
from switchboard.channels.retry import RateLimited, Retrier, RetryPolicy
from switchboard.clock import Clock, system_clock
from switchboard.config import ChannelConfig

DEFAULT_API_URL = "https://graph.threads.net"
DEFAULT_API_VERSION = "v1.0"
_RECENT = 25
# How long a used-up allowance holds posts back before it is read again: the
# oldest post of the 24 hours may leave the window at any time.
_QUOTA_RECHECK = 3600.0


class ThreadsChannel(HttpChannel):
    kind = "threads"

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        super().__init__(config, clock=clock)
        options = config.options
        self._retrier = Retrier(RetryPolicy.from_options(options), self.clock)
        self._user_id = str(options.get("user_id", ""))
        base = str(options.get("api_url") or DEFAULT_API_URL).rstrip("/")
        self._api = f"{base}/{options.get('api_version') or DEFAULT_API_VERSION}"
        self._token = config.secrets.get("access_token", "")

    def session_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def publish(self, message: Message) -> Receipt:
        return await reporting(self, self._publish(compose(message), message.may_start))

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        await reporting(self, self._delete(post_id, remote_id))

    async def _publish(self, text: str, may_start: Callable[[], bool] | None) -> Receipt:
        container: str | None = None
        uncertain = False  # a publish call of this container may have reached Threads

        async def attempt() -> Receipt:
            nonlocal container, uncertain
            if container is not None and uncertain:
                status = await self._status(container, may_start)
                if status == "PUBLISHED":
                    return await self._find(text, may_start)
                if status in ("EXPIRED", "ERROR"):
                    container = None  # unusable: start over with a new one
                uncertain = False
            if container is None:
                await self._check_allowance(may_start)
                container = await self._create_container(text, may_start)
            try:
                body = _checked(await self._request(
                    "POST", f"/{self._user_id}/threads_publish", may_start,
                    data={"creation_id": container}))
            except ChannelError as exc:
                uncertain = uncertain or (exc.maybe_sent and not exc.permanent)
                raise
            return Receipt(remote_id=str(body["id"]))

        return await self._retrier.run("publish", attempt, may_start)

    async def _check_allowance(self, may_start: Callable[[], bool] | None) -> None:
        body = _checked(await self._request(
            "GET", f"/{self._user_id}/threads_publishing_limit", may_start,
            params={"fields": "quota_usage,config"}))
        for entry in body.get("data") or []:
            used = entry.get("quota_usage")
            total = (entry.get("config") or {}).get("quota_total")
            if isinstance(used, int) and isinstance(total, int) and used >= total:
                raise RateLimited(f"the Threads profile has published {used} of its {total} "
                                  "posts allowed in 24 hours",
                                  reset_at=self.clock() + _QUOTA_RECHECK)

    async def _create_container(self, text: str, may_start: Callable[[], bool] | None) -> str:
        body = _checked(await self._request("POST", f"/{self._user_id}/threads", may_start,
                                            data={"media_type": "TEXT", "text": text}))
        return str(body["id"])

    async def _status(self, container: str, may_start: Callable[[], bool] | None) -> str:
        body = _checked(await self._request("GET", f"/{container}", may_start,
                                            params={"fields": "status,error_message"}))
        return str(body.get("status") or "")

    async def _find(self, text: str, may_start: Callable[[], bool] | None) -> Receipt:
        """The post an earlier publish call made, found by its text among the latest."""
        listed = _checked(await self._request("GET", f"/{self._user_id}/threads", may_start,
                                              params={"fields": "id,text,timestamp",
                                                      "limit": str(_RECENT)}))
        found = next((str(t["id"]) for t in listed.get("data") or [] if t.get("text") == text),
                     None)
        return Receipt(remote_id=found, already_existed=True)

    async def _delete(self, post_id: str, remote_id: str | None) -> None:
        if remote_id is None:
            raise ChannelError(f"no Threads post id known for post {post_id}", permanent=True,
                               reason="rejected")

        async def attempt() -> None:
            answer = await self._request("DELETE", f"/{remote_id}", None)
            error = _error_of(answer)
            if error is not None and error.get("code") == 100 and \
                    error.get("error_subcode") == 33:
                return  # already gone: the retraction's goal is met
            try:
                _checked(answer)
            except ChannelError as exc:
                if exc.reason == "auth":
                    exc.message += " (deleting needs the threads_delete permission)"
                    exc.args = (exc.message,)
                raise

        await self._retrier.run("retract", attempt)

    async def _request(self, method: str, path: str, may_start: Callable[[], bool] | None,
                       **kwargs: Any) -> Answer:
        """One Threads API call; the gate is asked once its connection is ready."""
        session = self._session
        if session is None:
            raise RuntimeError(f"threads channel {self.id} used before start()")
        return await exchange(session, method, self._api + path, platform="Threads",
                              timeout=self.config.timeout, may_start=may_start, **kwargs)


def _error_of(answer: Answer) -> dict[str, Any] | None:
    body = answer.json()
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _checked(answer: Answer) -> dict[str, Any]:
    error = _error_of(answer)
    if error is None and 200 <= answer.status < 300:
        body = answer.json()
        return body if isinstance(body, dict) else {}
    error = error or {}
    code, subcode = error.get("code"), error.get("error_subcode")
    said = f"{answer.status}: {error.get('message') or answer.excerpt()}"
    if code is not None:
        said += f" (code {code}{f', subcode {subcode}' if subcode else ''})"
    if code in THROTTLING_CODES:
        raise RateLimited(f"Threads throttled the profile: {said}", reset_at=None)
    if code in EXPIRED_LOGIN_CODES:
        raise ChannelError(f"the Threads access token is expired or revoked: {said}; make a "
                           "new long-lived token", permanent=True, reason="auth")
    if code in PERMISSION_CODES:
        raise ChannelError(f"the Threads token lacks a permission: {said}", permanent=True,
                           reason="auth")
    if code in TRANSIENT_CODES or error.get("is_transient") or answer.status >= 500:
        raise ChannelError(f"Threads server error: {said}", reason="server_error",
                           maybe_sent=True)
    raise ChannelError(f"Threads refused the request: {said}", permanent=True,
                       reason="auth" if answer.status in (401, 403) else "rejected")
