"""A Facebook Page, through the Graph API over aiohttp.

`POST /{page-id}/feed` publishes, `DELETE /{post-id}` retracts, with a Page
access token (`page_token_env` / `page_token_file`) in the Authorization header.

Facebook has no idempotency key. After an attempt that may have reached it (a
timeout, a dropped connection, a 5xx) the channel reads the Page's latest
posts before trying again, and takes a post with the same message as this one
instead of publishing it a second time.

Rate limits: Graph answers carry usage headers (`X-App-Usage`, `X-Page-Usage`,
`X-Business-Use-Case-Usage`) in percent of the allowance. From `slow_down_at`
percent on (default 75) the channel spaces its calls, up to `rate_limit_wait`
between two at 100%, so the Page is slowed before Facebook blocks it; a block
(codes 4, 17, 32, 613, 80001 and kin) waits `estimated_time_to_regain_access`.
An expired or revoked token (code 190) is permanent and says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from switchboard.channels.base import ChannelError, Message, Receipt
from switchboard.channels.http import Answer, exchange
from switchboard.channels.remote import HttpChannel, reporting
from switchboard.channels.retry import RateLimited, Retrier, RetryPolicy
from switchboard.clock import Clock, system_clock
from switchboard.config import ChannelConfig

DEFAULT_API_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v23.0"
# Graph error codes for throttling: application, user, page, custom and
# business-use-case limits (https://developers.facebook.com/docs/graph-api/overview/rate-limiting).
THROTTLING_CODES = frozenset({4, 17, 32, 613, 80001, 80002, 80004, 80005, 80006, 80008})
EXPIRED_LOGIN_CODES = frozenset({102, 190})
PERMISSION_CODES = frozenset({10, 200, 210, 220, 230, 299})
TRANSIENT_CODES = frozenset({1, 2})
DUPLICATE_CODE = 506
_RECENT_POSTS = 25
_CLOCK_SKEW = 120.0  # seconds Facebook's clock may lag ours when dating a post
_USAGE_HEADERS = ("x-app-usage", "x-page-usage", "x-ad-account-usage")


class FacebookChannel(HttpChannel):
    kind = "facebook"

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        super().__init__(config, clock=clock)
        options = config.options
        self._retrier = Retrier(RetryPolicy.from_options(options), self.clock)
        self._policy = self._retrier.policy
        self._page_id = str(options.get("page_id", ""))
        base = str(options.get("api_url") or DEFAULT_API_URL).rstrip("/")
        self._api = f"{base}/{options.get('api_version') or DEFAULT_API_VERSION}"
        self._slow_down_at = float(options.get("slow_down_at", 75))
        self._token = config.secrets.get("page_token", "")
        self._not_before = 0.0  # Unix time before which no call goes out (usage headers)

    def session_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def publish(self, message: Message) -> Receipt:
        return await reporting(self, self._publish(message))

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        await reporting(self, self._delete(post_id, remote_id))

    async def _publish(self, message: Message) -> Receipt:
        form = {"message": message.text}
        if message.link:
            form["link"] = message.link  # Facebook shows it as a link preview
        uncertain = False

        async def attempt() -> Receipt:
            nonlocal uncertain
            if uncertain:
                found = await self._find(message.text, message.sent_at, message.may_start)
                if found is not None:
                    return Receipt(remote_id=found, already_existed=True)
            try:
                answer = await self._request("POST", f"/{self._page_id}/feed",
                                             message.may_start, data=form)
                body = self._check(answer)
            except ChannelError as exc:
                uncertain = uncertain or (exc.maybe_sent and not exc.permanent)
                if exc.reason == "duplicate" and uncertain:
                    # An unanswered earlier attempt did publish it, and it has
                    # scrolled out of the recent posts we read: it is out once.
                    return Receipt(remote_id=None, already_existed=True)
                raise
            return Receipt(remote_id=str(body["id"]))

        return await self._retrier.run("publish", attempt, message.may_start)

    async def _find(self, text: str, since: datetime,
                    may_start: Callable[[], bool] | None) -> str | None:
        """The id of the Page post an earlier attempt of this send made, if it did: same
        message, created since the send began (an older post with the same words is
        someone else's)."""
        answer = await self._request("GET", f"/{self._page_id}/posts", may_start,
                                     params={"fields": "id,message,created_time",
                                             "limit": str(_RECENT_POSTS)})
        posts = self._check(answer).get("data") or []
        earliest = since.timestamp() - _CLOCK_SKEW
        return next((str(p["id"]) for p in posts if p.get("message") == text
                     and _created(p) >= earliest), None)

    async def _delete(self, post_id: str, remote_id: str | None) -> None:
        if remote_id is None:
            raise ChannelError(f"no Facebook post id known for post {post_id}", permanent=True,
                               reason="rejected")

        async def attempt() -> None:
            answer = await self._request("DELETE", f"/{remote_id}", None)
            error = _graph_error(answer)
            if error is not None and error.get("code") == 100 and \
                    error.get("error_subcode") == 33:
                return  # the post no longer exists: the retraction's goal is met
            self._check(answer)

        await self._retrier.run("retract", attempt)

    async def _request(self, method: str, path: str, may_start: Callable[[], bool] | None,
                       **kwargs: Any) -> Answer:
        """One Graph call: paced by the usage headers, then the request, which asks the
        gate once its connection is ready."""
        session = self._session
        if session is None:
            raise RuntimeError(f"facebook channel {self.id} used before start()")
        wait = self._not_before - self.clock()
        if wait > self._policy.rate_limit_max_wait:
            raise RateLimited("Facebook usage is at its limit", reset_at=self._not_before)
        if wait > 0:
            await asyncio.sleep(wait)
        answer = await exchange(session, method, self._api + path, platform="Facebook",
                                timeout=self.config.timeout, may_start=may_start, **kwargs)
        self._pace(answer.headers)
        return answer

    def _pace(self, headers: Mapping[str, str]) -> None:
        """Space the next call by how close the Page is to its allowance."""
        usage, regain = _usage(headers)
        now = self.clock()
        if regain > 0:
            self._not_before = max(self._not_before, now + regain)
        elif usage >= self._slow_down_at:
            share = min(1.0, (usage - self._slow_down_at) / max(1.0, 100 - self._slow_down_at))
            self._not_before = max(self._not_before, now + self._policy.rate_limit_wait * share)

    def _check(self, answer: Answer) -> dict[str, Any]:
        error = _graph_error(answer)
        if error is None and 200 <= answer.status < 300:
            body = answer.json()
            return body if isinstance(body, dict) else {}
        raise self._channel_error(answer, error or {})

    def _channel_error(self, answer: Answer, error: dict[str, Any]) -> ChannelError:
        code, subcode = error.get("code"), error.get("error_subcode")
        said = f"{answer.status}: {error.get('message') or answer.excerpt()}"
        if code is not None:
            said += f" (code {code}{f', subcode {subcode}' if subcode else ''})"
        if code in THROTTLING_CODES:
            _, regain = _usage(answer.headers)
            return RateLimited(f"Facebook throttled the Page: {said}",
                               reset_at=self.clock() + regain if regain else None)
        if code in EXPIRED_LOGIN_CODES:
            return ChannelError(f"the Facebook Page token is expired or revoked: {said}; make "
                                "a new Page access token", permanent=True, reason="auth")
        if code in PERMISSION_CODES:
            return ChannelError(f"the Facebook Page token lacks a permission: {said}",
                                permanent=True, reason="auth")
        if code == DUPLICATE_CODE:
            return ChannelError(f"Facebook refused a duplicate post: {said}", permanent=True,
                                reason="duplicate")
        if code in TRANSIENT_CODES or error.get("is_transient") or answer.status >= 500:
            return ChannelError(f"Facebook server error: {said}", reason="server_error",
                                maybe_sent=True)
        return ChannelError(f"Facebook refused the request: {said}", permanent=True,
                            reason="auth" if answer.status in (401, 403) else "rejected")


def _graph_error(answer: Answer) -> dict[str, Any] | None:
    body = answer.json()
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _created(post: Mapping[str, Any]) -> float:
    """A post's `created_time` (`2026-12-01T09:30:00+0000`) as Unix time; 0 if unreadable."""
    try:
        return datetime.strptime(str(post.get("created_time")), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return 0.0


def _usage(headers: Mapping[str, str]) -> tuple[float, float]:
    """Highest usage in percent over every usage header, and the seconds until
    access is regained (0 when not blocked)."""
    usage, regain = 0.0, 0.0
    for name in _USAGE_HEADERS:
        usage = max(usage, _percent(_json_header(headers, name)))
    buc = _json_header(headers, "x-business-use-case-usage")
    for entries in (buc.values() if isinstance(buc, dict) else ()):
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, dict):
                usage = max(usage, _percent(entry))
                minutes = entry.get("estimated_time_to_regain_access")
                if isinstance(minutes, int | float):
                    regain = max(regain, float(minutes) * 60)
    return usage, regain


def _percent(entry: Any) -> float:
    if not isinstance(entry, dict):
        return 0.0
    values = [entry.get(k) for k in ("call_count", "total_cputime", "total_time")]
    return max((float(v) for v in values if isinstance(v, int | float)), default=0.0)


def _json_header(headers: Mapping[str, str], name: str) -> Any:
    value = headers.get(name)
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None
