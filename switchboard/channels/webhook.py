"""A chat webhook (Slack-compatible JSON POST), mostly for the internal ops channels.

The body is `{"text": ...}`, which Slack, Mattermost, Rocket.Chat and Teams
workflows all render, plus `event`, `post_id`, `channel`, `kind` and `sent_at`
for receivers that want them. `Idempotency-Key: <install id>-<post id>` lets a
receiver that honours it drop the copy a retry after a timeout may deliver.
A receiver that ignores it (Slack does) is configured `idempotent: false`, the
default for hooks.slack.com URLs: after an attempt that may have reached it
(a timeout, a 5xx) there is no retry and the post is `unknown`, for review.
An attempt that never reached it (connection refused, DNS, TLS) is retried
either way. The gate is asked once the connection is ready, right before the
request is written (see remote.py).

Retraction: a webhook cannot delete what it posted. `retract` posts a short
notice instead (`event: "retract"`), so readers learn the message was
withdrawn and a receiver that can delete (a bridge, an archive) can act on it;
a permanent error here would only add a failure to every incident timeline
whose scope includes the chat.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from switchboard.channels.base import ChannelError, Message, Receipt
from switchboard.channels.remote import Attempt, HttpChannel, compose, reporting
from switchboard.channels.retry import RateLimited, Retrier, RetryPolicy, retry_after
from switchboard.clock import Clock, system_clock
from switchboard.config import ChannelConfig

_MAX_ERROR_BODY = 300
# Receivers known to ignore Idempotency-Key: `idempotent` defaults to false there.
_IGNORES_KEYS = ("hooks.slack.com",)


def honours_idempotency_keys(url: str, configured: bool | None) -> bool:
    """The channel's `idempotent` option, or its default for the receiver's host."""
    if configured is not None:
        return configured
    host = (urlsplit(url).hostname or "").lower()
    return not any(host == h or host.endswith("." + h) for h in _IGNORES_KEYS)


class WebhookChannel(HttpChannel):
    kind = "webhook"

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        super().__init__(config, clock=clock)
        self._url = config.secrets.get("url", "")
        self.idempotent = honours_idempotency_keys(self._url, config.options.get("idempotent"))
        self._retrier = Retrier(RetryPolicy.from_options(config.options,
                                                         retry_maybe_sent=self.idempotent),
                                self.clock)

    def session_headers(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.config.options.get("headers") or {}).items()}

    async def publish(self, message: Message) -> Receipt:
        body = {"text": compose(message), "event": "post", "post_id": message.post_id,
                "channel": message.channel, "kind": message.kind,
                "sent_at": message.sent_at.isoformat()}
        if message.link:
            body["link"] = message.link
        key = message.platform_key
        await reporting(self, self._deliver(body, key=key, may_start=message.may_start))
        # The key names the delivery: the retraction notice derives its own from it.
        return Receipt(remote_id=key)

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        body = {"text": f"Withdrawn: the message for post {post_id} no longer applies.",
                "event": "retract", "post_id": post_id, "channel": self.id,
                "kind": "retraction", "sent_at": at.isoformat()}
        await reporting(self, self._deliver(body, key=f"{remote_id or post_id}:retract"))

    async def _deliver(self, body: dict[str, Any], key: str,
                       may_start: Callable[[], bool] | None = None) -> None:
        session = self._session
        if session is None:
            raise RuntimeError(f"webhook channel {self.id} used before start()")

        async def attempt() -> None:
            tried = Attempt(may_start)
            try:
                await self._post(session, tried, body, key)
            except ChannelError as exc:
                tried.failed(exc)
                raise

        await self._retrier.run("deliver", attempt, may_start)

    async def _post(self, session: aiohttp.ClientSession, attempt: Attempt,
                    body: dict[str, Any], key: str) -> None:
        try:
            # No redirects: a 307/308 would re-send the body and headers to
            # wherever the receiver points; a moved webhook is a config change.
            with attempt.connecting():
                async with session.post(self._url, json=body, allow_redirects=False,
                                        headers={"Idempotency-Key": key}) as response:
                    text = await response.text(errors="replace")
            _check(response.status, response.headers, text, self.clock())
        except TimeoutError as exc:
            raise ChannelError(f"webhook did not answer within {self.config.timeout:g}s",
                               reason="timeout") from exc
        # The URL is a secret (Slack puts the token in its path): no message
        # below may quote it, and aiohttp's own messages do.
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise ChannelError("webhook URL is not a valid http(s) URL (check url_env / "
                               "url_file)", permanent=True, reason="rejected") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ChannelError(f"cannot reach webhook host {exc.host}:{exc.port}",
                               reason="network") from exc
        except aiohttp.ClientError as exc:
            raise ChannelError(f"cannot reach webhook: {type(exc).__name__}",
                               reason="network") from exc


def _check(status: int, headers: Any, text: str, now: float) -> None:
    if 200 <= status < 300:
        return
    detail = text.strip()[:_MAX_ERROR_BODY]
    said = f"webhook answered {status}: {detail}" if detail else f"webhook answered {status}"
    if status == 429:
        raise RateLimited(said, reset_at=retry_after(headers.get("Retry-After"), now))
    if status >= 500 or status == 408:
        raise ChannelError(said, reason="server_error" if status >= 500 else "timeout")
    raise ChannelError(said, permanent=True, reason="auth" if status in (401, 403) else "rejected")

