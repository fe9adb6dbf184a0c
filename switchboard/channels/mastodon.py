"""A Mastodon account, through Mastodon.py's blocking client in a worker thread.

Every status is posted with `Idempotency-Key: <install id>-<post id>`, so a
retry after a timeout whose first attempt got through returns that status
instead of creating a second one: retrying network failures is safe here.
The install id keeps the keys of two stores (a restore, staging) apart within
Mastodon's one-hour key window. The calls run in the account's own threads,
and the gate is asked there, before each call and once its connection is
open (see remote.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
)

from switchboard.channels.base import Channel, ChannelError, GateClosed, Message, Receipt
from switchboard.channels.remote import (
    Attempt,
    ChannelThreads,
    compose,
    gate_requests,
    never_reached,
    reporting,
)
from switchboard.channels.retry import RateLimited, Retrier, RetryPolicy
from switchboard.clock import Clock, system_clock
from switchboard.config import ChannelConfig


class MastodonChannel(Channel):
    kind = "mastodon"

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        super().__init__(config, clock=clock)
        self._retrier = Retrier(RetryPolicy.from_options(config.options), self.clock)
        self._threads = ChannelThreads(config.id)
        # version_check_mode="none" and no mastodon_version: the constructor
        # makes no request, so building channels never touches the network.
        # ratelimit_method="throw": a 429 comes back to us instead of sleeping
        # a worker thread; the Retrier waits for the reset.
        self._client = Mastodon(
            access_token=config.secrets.get("access_token"),
            api_base_url=str(config.options["api_base_url"]),
            request_timeout=config.timeout,
            ratelimit_method="throw",
            version_check_mode="none",
            session=gate_requests(requests.Session()))

    async def close(self) -> None:
        self._threads.close()
        self._client.session.close()

    async def publish(self, message: Message) -> Receipt:
        return await reporting(self, self._publish(message.platform_key, compose(message),
                                                   message.may_start))

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        await reporting(self, self._delete(post_id, remote_id))

    async def _publish(self, key: str, text: str,
                       may_start: Callable[[], bool] | None) -> Receipt:
        async def attempt() -> Receipt:
            status = await self._call(Attempt(may_start), self._client.status_post, text,
                                      idempotency_key=key)
            return Receipt(remote_id=str(status["id"]))

        return await self._retrier.run("publish", attempt, may_start)

    async def _delete(self, post_id: str, remote_id: str | None) -> None:
        if remote_id is None:
            raise ChannelError(f"no Mastodon status id known for post {post_id}",
                               permanent=True, reason="rejected")

        async def attempt() -> None:
            try:
                await self._call(Attempt(None), self._client.status_delete, remote_id)
            except ChannelError as exc:
                if isinstance(exc.__cause__, MastodonNotFoundError):
                    return  # already gone: the retraction's goal is met
                raise

        await self._retrier.run("retract", attempt)

    async def _call(self, attempt: Attempt, method: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> Any:
        try:
            return await self._threads.run(attempt, method, *args, **kwargs)
        except MastodonRatelimitError as exc:
            # Mastodon.py has parsed X-RateLimit-Reset (ISO time) into Unix time
            # on the client, corrected for the server's clock via Date.
            reset = getattr(self._client, "ratelimit_reset", None)
            raise RateLimited(f"Mastodon rate limit: {exc}",
                              reset_at=float(reset) if reset else None) from exc
        except MastodonError as exc:
            if isinstance(exc.__context__, GateClosed):  # asked once connected: no
                raise exc.__context__ from None
            error = _channel_error(exc)
            # Mastodon.py raises its network error inside the handler of requests' one.
            error.not_sent = isinstance(exc, MastodonNetworkError) and never_reached(
                exc.__context__)
            raise error from exc


def _channel_error(exc: MastodonError) -> ChannelError:
    if isinstance(exc, MastodonNetworkError):
        if isinstance(exc.__context__, requests.Timeout):
            return ChannelError(f"Mastodon did not answer in time: {exc}", reason="timeout")
        return ChannelError(f"cannot reach Mastodon: {exc}", reason="network")
    if isinstance(exc, MastodonServerError):
        return ChannelError(f"Mastodon server error: {_describe(exc)}", reason="server_error")
    if isinstance(exc, MastodonAPIError):
        status = _status(exc)
        if status == 408:
            return ChannelError(f"Mastodon timed out: {_describe(exc)}", reason="timeout")
        reason = "auth" if status in (401, 403) else "rejected"
        return ChannelError(f"Mastodon refused the request: {_describe(exc)}", permanent=True,
                            reason=reason)
    return ChannelError(f"Mastodon client error: {exc}", permanent=True, reason="error")


def _status(exc: MastodonAPIError) -> int | None:
    # Mastodon.py raises API errors as (text, status code, reason, server message).
    status = exc.args[1] if len(exc.args) > 1 else None
    return status if isinstance(status, int) else None


def _describe(exc: MastodonAPIError) -> str:
    """Status line plus the server's own message, which the operator needs to see."""
    if len(exc.args) < 4:
        return str(exc)
    _, status, reason, message = exc.args[:4]
    head = f"{status} {reason}"
    return f"{head}: {message}" if message else head
