"""One HTTP exchange for the channels that speak to their platform over aiohttp
(facebook, threads, telegram, teams): the answer read whole, or a ChannelError
that says whether the request may have reached the platform.

The session is the channel's `gated_session` (remote.py): the gate is asked once
the connection is ready, right before the request is written, and a request
that never got that far (refused, DNS, TLS, a connect timeout) is `not_sent`:
retried, and at worst `failed`, never `unknown`.

`maybe_sent` is False only where the platform cannot have acted: the connection
was never made. A timeout, a dropped connection or a 5xx may come after the
platform acted, which matters for the platforms that cannot recognise a repeat.
Messages never quote the URL: some carry a secret (a bot token, a signature).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from switchboard.channels.base import ChannelError, GateClosed
from switchboard.channels.remote import Attempt

_MAX_ERROR_BODY = 300


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def excerpt(self) -> str:
        return self.text.strip()[:_MAX_ERROR_BODY]


async def exchange(session: aiohttp.ClientSession, method: str, url: str | URL, *, platform: str,
                   timeout: float, may_start: Callable[[], bool] | None = None,
                   **kwargs: Any) -> Answer:
    """Send one request and read the whole answer, whatever its status; `may_start`
    is asked at the request's true start."""
    tried = Attempt(may_start)
    try:
        with tried.connecting():
            return await _exchange(session, method, url, platform=platform, timeout=timeout,
                                   **kwargs)
    except GateClosed:
        raise
    except ChannelError as exc:
        if not tried.started:  # nothing was written: it cannot have reached the platform
            exc.maybe_sent = False
        tried.failed(exc)
        raise


async def _exchange(session: aiohttp.ClientSession, method: str, url: str | URL, *,
                    platform: str, timeout: float, **kwargs: Any) -> Answer:
    try:
        # No redirects: a 307/308 would re-send the body and credentials elsewhere.
        async with session.request(method, url, allow_redirects=False, **kwargs) as response:
            text = await response.text(errors="replace")
            return Answer(response.status, response.headers, text)
    except TimeoutError as exc:
        raise ChannelError(f"{platform} did not answer within {timeout:g}s", reason="timeout",
                           maybe_sent=True) from exc
    except aiohttp.ClientConnectorError as exc:
        raise ChannelError(f"cannot reach {platform} at {exc.host}:{exc.port}",
                           reason="network") from exc
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise ChannelError(f"the {platform} URL is not a valid http(s) URL", permanent=True,
                           reason="rejected") from exc
    except aiohttp.ClientError as exc:
        raise ChannelError(f"lost the connection to {platform} ({type(exc).__name__})",
                           reason="network", maybe_sent=True) from exc


def not_retried(exc: ChannelError, platform: str) -> None:
    """For a platform that cannot recognise a repeat: a failure that may have reached
    it becomes final, so the post is left for review rather than sent twice."""
    if exc.permanent or not exc.maybe_sent:
        return
    exc.permanent = True
    exc.message = (f"{exc.message}; not retried: {platform} cannot tell a repeat from a "
                   "new message, so the post is left for review")
    exc.args = (exc.message,)
