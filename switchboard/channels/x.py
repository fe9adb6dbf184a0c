"""An X (Twitter) account, through tweepy's blocking v2 client in a worker thread.

tweepy is told not to wait on rate limits: the channel's `Retrier` does that,
per account, without holding a thread asleep. The threads are the account's
own (`ChannelThreads`), and the gate is asked in the thread, before the call
and once its connection is open: a hung account delays no other, and no
send starts after a declaration.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
import tweepy

from switchboard.channels.base import Channel, ChannelError, Message, Receipt
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

DEFAULT_API_URL = "https://api.twitter.com"


class XChannel(Channel):
    kind = "x"

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        super().__init__(config, clock=clock)
        self._retrier = Retrier(RetryPolicy.from_options(config.options), self.clock)
        self._threads = ChannelThreads(config.id)
        secrets = config.secrets
        self._client = tweepy.Client(
            consumer_key=secrets.get("consumer_key"),
            consumer_secret=secrets.get("consumer_secret"),
            access_token=secrets.get("access_token"),
            access_token_secret=secrets.get("access_token_secret"),
            wait_on_rate_limit=False)
        self._client.session = gate_requests(_XSession(
            str(config.options.get("api_url") or DEFAULT_API_URL), config.timeout))

    async def close(self) -> None:
        self._threads.close()
        self._client.session.close()

    async def publish(self, message: Message) -> Receipt:
        return await reporting(self, self._publish(compose(message), message.may_start))

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        await reporting(self, self._delete(post_id, remote_id))

    async def _publish(self, text: str, may_start: Callable[[], bool] | None) -> Receipt:
        uncertain = False  # an earlier attempt may have reached X without us hearing back

        async def attempt() -> Receipt:
            nonlocal uncertain
            try:
                response = await self._threads.run(Attempt(may_start), self._client.create_tweet,
                                                   text=text, user_auth=True)
            except tweepy.Forbidden as exc:
                if uncertain and _is_duplicate(exc):
                    # An earlier attempt that we never heard back from (timeout,
                    # dropped connection, 5xx from a gateway after X acted) did
                    # create the tweet, and X now refuses the same text as a
                    # duplicate. The post is out once, which is what we wanted:
                    # report it published, not failed, and do not post it again.
                    # X does not say which tweet it was, so there is no id to
                    # retract. (The duplicate could in theory be an older tweet
                    # with the same text; X would have refused this post anyway.)
                    return Receipt(remote_id=None, already_existed=True)
                raise _channel_error(exc) from exc
            except (requests.RequestException, tweepy.TwitterServerError) as exc:
                error = _channel_error(exc)
                if never_reached(exc):
                    error.not_sent = True
                else:
                    uncertain = True
                raise error from exc
            except tweepy.TweepyException as exc:
                raise _channel_error(exc) from exc
            return Receipt(remote_id=str(response.data["id"]))

        return await self._retrier.run("publish", attempt, may_start)

    async def _delete(self, post_id: str, remote_id: str | None) -> None:
        if remote_id is None:
            raise ChannelError(f"X gave no tweet id for post {post_id} (it was found already "
                               "published after a retry), so it cannot be deleted",
                               permanent=True, reason="rejected")

        async def attempt() -> None:
            try:
                response = await self._threads.run(Attempt(None), self._client.delete_tweet,
                                                   remote_id, user_auth=True)
            except tweepy.NotFound:
                return  # already gone: the retraction's goal is met
            except (requests.RequestException, tweepy.TweepyException) as exc:
                raise _channel_error(exc) from exc
            if not (response.data or {}).get("deleted", False):
                raise ChannelError(f"X did not delete tweet {remote_id}", permanent=True,
                                   reason="rejected")

        await self._retrier.run("retract", attempt)


class _XSession(requests.Session):
    """tweepy hard-codes https://api.twitter.com and passes no timeout; this supplies both.

    The host is swapped here, before requests applies the OAuth 1.0a signature,
    rather than in a transport adapter: the signature covers the URL, so it
    must name the host the request really goes to.
    """

    def __init__(self, api_url: str, timeout: float) -> None:
        super().__init__()
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes,
                *args: Any, **kwargs: Any) -> requests.Response:
        if isinstance(url, str) and url.startswith(DEFAULT_API_URL + "/"):
            url = self.api_url + url[len(DEFAULT_API_URL):]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


def _is_duplicate(exc: tweepy.HTTPException) -> bool:
    return any("duplicate content" in str(m).lower() for m in exc.api_messages)


def _channel_error(exc: Exception) -> ChannelError:
    if isinstance(exc, tweepy.TooManyRequests):
        return RateLimited(f"X rate limit: {_describe(exc)}", reset_at=exc.reset_time)
    if isinstance(exc, tweepy.TwitterServerError):
        return ChannelError(f"X server error: {_describe(exc)}", reason="server_error")
    if isinstance(exc, tweepy.Unauthorized):
        return ChannelError(f"X refused the credentials: {_describe(exc)}", permanent=True,
                            reason="auth")
    if isinstance(exc, tweepy.Forbidden):
        duplicate = _is_duplicate(exc)
        return ChannelError(f"X refused the post: {_describe(exc)}", permanent=True,
                            reason="duplicate" if duplicate else "rejected")
    if isinstance(exc, tweepy.HTTPException):
        status = exc.response.status_code
        transient = status == 408
        return ChannelError(f"X refused the request: {_describe(exc)}", permanent=not transient,
                            reason="timeout" if transient else "rejected")
    if isinstance(exc, requests.Timeout):
        return ChannelError(f"X did not answer in time: {exc}", reason="timeout")
    if isinstance(exc, requests.RequestException):
        return ChannelError(f"cannot reach X: {exc}", reason="network")
    return ChannelError(f"X client error: {exc}", permanent=True, reason="error")


def _describe(exc: tweepy.HTTPException) -> str:
    """Status line plus the platform's own words, which the operator needs to see."""
    response = exc.response
    head = f"{response.status_code} {response.reason}"
    messages = [str(m) for m in exc.api_messages]
    return f"{head}: {'; '.join(messages)}" if messages else head
