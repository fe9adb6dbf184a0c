"""A Microsoft Teams channel or chat, through a Workflows ("When a Teams webhook
request is received") webhook, for internal audiences.

Workflows accept Adaptive Cards only (the Office 365 connector MessageCard is
retired), wrapped in a message: `{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <card>}]}`. The flow
answers 202 once it has taken the request.

The URL carries the flow's signature (`sig=`), so it is a secret (`url_env` /
`url_file`) and no message quotes it. A flow cannot recognise a repeated
request, so an attempt that may have reached it (a timeout, a dropped
connection, a 5xx) is not retried: the post is left for review instead of
showing twice; one that never reached it (refused, DNS, TLS) is retried, then
`failed`. A 429 (`Retry-After`) is retried after its wait. Retraction
posts a short "withdrawn" card: a flow cannot delete what it posted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from yarl import URL

from switchboard.channels.base import ChannelError, Message, Receipt
from switchboard.channels.http import Answer, exchange, not_retried
from switchboard.channels.remote import HttpChannel, reporting
from switchboard.channels.retry import RateLimited, Retrier, RetryPolicy, retry_after
from switchboard.clock import Clock, system_clock
from switchboard.config import ChannelConfig

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"


class TeamsChannel(HttpChannel):
    kind = "teams"

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        super().__init__(config, clock=clock)
        self._retrier = Retrier(RetryPolicy.from_options(config.options), self.clock)
        self._url = config.secrets.get("url", "")

    async def publish(self, message: Message) -> Receipt:
        await reporting(self, self._deliver(card(message.text, message.link),
                                            message.may_start, once=True))
        return Receipt(remote_id=None)

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        notice = card(f"Withdrawn: the message for post {post_id} no longer applies.", None)
        # A second "withdrawn" card harms nobody, so the notice is retried.
        await reporting(self, self._deliver(notice, None, once=False))

    async def _deliver(self, body: dict[str, Any], may_start: Callable[[], bool] | None,
                       once: bool) -> None:
        async def attempt() -> None:
            try:
                _check(await self._request(body, may_start), self.clock())
            except ChannelError as exc:
                if once:
                    not_retried(exc, "the Teams workflow")
                raise

        await self._retrier.run("deliver", attempt, may_start)

    async def _request(self, body: dict[str, Any],
                       may_start: Callable[[], bool] | None) -> Answer:
        """One webhook call; the gate is asked once its connection is ready."""
        session = self._session
        if session is None:
            raise RuntimeError(f"teams channel {self.id} used before start()")
        # Sent exactly as given: re-quoting would rewrite the signed query string.
        return await exchange(session, "POST", URL(self._url, encoded=True), json=body,
                              platform="the Teams workflow", timeout=self.config.timeout,
                              may_start=may_start)


def card(text: str, link: str | None) -> dict[str, Any]:
    """The message a Workflows webhook posts: one Adaptive Card with the text and,
    when there is a link, a button that opens it."""
    content: dict[str, Any] = {
        "$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": "1.4",
        "body": [{"type": "TextBlock", "text": text, "wrap": True}],
    }
    if link:
        content["actions"] = [{"type": "Action.OpenUrl", "title": "Open link", "url": link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
         "content": content}]}


def _check(answer: Answer, now: float) -> None:
    if 200 <= answer.status < 300:
        return
    body = answer.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        detail = f"{error.get('code')}: {error.get('message')}"
    else:
        detail = answer.excerpt()
    said = f"the Teams workflow answered {answer.status}" + (f": {detail}" if detail else "")
    if answer.status == 429:
        raise RateLimited(said, reset_at=retry_after(answer.headers.get("Retry-After"), now))
    if answer.status >= 500 or answer.status == 408:
        raise ChannelError(said, reason="server_error" if answer.status >= 500 else "timeout",
                           maybe_sent=True)
    raise ChannelError(said, permanent=True,
                       reason="auth" if answer.status in (401, 403) else "rejected")

