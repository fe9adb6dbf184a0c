"""A Telegram channel, through the Bot API (`sendMessage`, `deleteMessage`) over aiohttp.

The bot must be an administrator of the channel with the right to post (and to
delete, for retractions). `chat_id` is the channel's `@username` or its numeric
id (`-100...`).

Telegram cannot recognise a repeated `sendMessage`, so an attempt that may have
reached it (a timeout, a dropped connection, a 5xx) is not retried: the post is
left for review instead of appearing twice; one that never reached it (refused,
DNS, TLS) is retried, then `failed`. A 429 is a refusal that names its
wait (`parameters.retry_after`), and is retried after it. A bot can delete a
channel message only within 48 hours of posting; a refused deletion says so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from switchboard.channels.base import ChannelError, Message, Receipt
from switchboard.channels.http import Answer, exchange, not_retried
from switchboard.channels.remote import HttpChannel, compose, reporting
from switchboard.channels.retry import RateLimited, Retrier, RetryPolicy
from switchboard.clock import Clock, system_clock
from switchboard.config import ChannelConfig

DEFAULT_API_URL = "https://api.telegram.org"
_GONE = ("message to delete not found", "message_id_invalid")
_TOO_OLD = "message can't be deleted"


class TelegramChannel(HttpChannel):
    kind = "telegram"

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        super().__init__(config, clock=clock)
        self._retrier = Retrier(RetryPolicy.from_options(config.options), self.clock)
        self._chat_id = str(config.options.get("chat_id", ""))
        base = str(config.options.get("api_url") or DEFAULT_API_URL).rstrip("/")
        self._bot_url = f"{base}/bot{config.secrets.get('bot_token', '')}"

    async def publish(self, message: Message) -> Receipt:
        return await reporting(self, self._publish(compose(message), message.may_start))

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        await reporting(self, self._delete(post_id, remote_id))

    async def _publish(self, text: str, may_start: Callable[[], bool] | None) -> Receipt:
        async def attempt() -> Receipt:
            try:
                result = await self._call("sendMessage", {"chat_id": self._chat_id,
                                                          "text": text}, may_start)
            except ChannelError as exc:
                not_retried(exc, "Telegram")
                raise
            return Receipt(remote_id=str(result["message_id"]))

        return await self._retrier.run("publish", attempt, may_start)

    async def _delete(self, post_id: str, remote_id: str | None) -> None:
        if remote_id is None:
            raise ChannelError(f"no Telegram message id known for post {post_id}",
                               permanent=True, reason="rejected")

        async def attempt() -> None:
            try:
                await self._call("deleteMessage", {"chat_id": self._chat_id,
                                                   "message_id": int(remote_id)}, None)
            except ChannelError as exc:
                detail = exc.message.lower()
                if any(g in detail for g in _GONE):
                    return  # already gone: the retraction's goal is met
                if _TOO_OLD in detail:
                    raise ChannelError(
                        f"Telegram refused to delete message {remote_id} of post {post_id}: "
                        "a bot can delete channel messages only within 48 hours of posting "
                        "(and needs the right to delete); delete it in the channel by hand",
                        permanent=True, reason="rejected") from exc
                raise

        await self._retrier.run("retract", attempt)

    async def _call(self, method: str, body: dict[str, Any],
                    may_start: Callable[[], bool] | None) -> Any:
        answer = await self._request(method, body, may_start)
        return _result(answer, self.clock())

    async def _request(self, method: str, body: dict[str, Any],
                       may_start: Callable[[], bool] | None) -> Answer:
        """One Bot API call; the gate is asked once its connection is ready."""
        session = self._session
        if session is None:
            raise RuntimeError(f"telegram channel {self.id} used before start()")
        return await exchange(session, "POST", f"{self._bot_url}/{method}", json=body,
                              platform="Telegram", timeout=self.config.timeout,
                              may_start=may_start)


def _result(answer: Answer, now: float) -> Any:
    """The `result` of an `{"ok": true}` answer; otherwise the error Telegram described
    (a wait it names counts from `now`)."""
    body = answer.json()
    if isinstance(body, dict) and body.get("ok") is True:
        return body.get("result")
    raise _error(answer, body if isinstance(body, dict) else {}, now)


def _error(answer: Answer, body: dict[str, Any], now: float) -> ChannelError:
    code = int(body.get("error_code") or answer.status)
    said = f"{code}: {body.get('description') or answer.excerpt()}"
    if code == 429:
        retry_after = (body.get("parameters") or {}).get("retry_after")
        reset = now + float(retry_after) if isinstance(retry_after, int | float) \
            else None
        return RateLimited(f"Telegram rate limit: {said}", reset_at=reset)
    if code >= 500:
        return ChannelError(f"Telegram server error: {said}", reason="server_error",
                            maybe_sent=True)
    reason = "auth" if code in (401, 403) else "rejected"
    return ChannelError(f"Telegram refused the request: {said}", permanent=True,
                        reason=reason)
