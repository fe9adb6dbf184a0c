"""A fake Slack-compatible incoming webhook: records the JSON bodies it accepts.

    with FakeWebhook() as hook:
        config = ChannelConfig(..., secrets={"url": hook.url})
        hook.script(Fail(500), RateLimit(time.time() + 1))
        ...
        assert [m["text"] for m in hook.messages] == ["hello"]

Answers like Slack: 200 "ok", 400 "invalid_payload"/"no_text", 429 with
`Retry-After` in seconds. With `idempotent=True` (the default) it also drops a
repeated `Idempotency-Key`, as a receiver that honours the header would;
`idempotent=False` behaves like Slack itself, which does not.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tests.fakes.server import Answer, FakeServer, Request

HOOK_PATH = "/services/T0000/B0000/fakewebhooksecret"
_SLACK_ERRORS = {400: "invalid_payload", 403: "invalid_token", 404: "no_service",
                 410: "channel_is_archived", 500: "internal_error", 503: "service_unavailable"}


class FakeWebhook(FakeServer):
    def __init__(self, idempotent: bool = True) -> None:
        super().__init__()
        self.idempotent = idempotent
        self.messages: list[dict[str, Any]] = []  # accepted bodies, in order
        self._keys: set[str] = set()

    @property
    def url(self) -> str:
        return self.base_url + HOOK_PATH

    @property
    def texts(self) -> list[str]:
        with self._lock:
            return [str(m.get("text")) for m in self.messages]

    def route(self, request: Request) -> Answer:
        if request.method != "POST" or request.path != HOOK_PATH:
            return self.error(404)
        try:
            body = request.json()
        except ValueError:
            return self.error(400)
        if not isinstance(body, dict):
            return self.error(400)
        if not body.get("text"):
            return self.error(400, "no_text")
        key = request.header("Idempotency-Key")
        if self.idempotent and key is not None:
            if key in self._keys:
                return Answer(200, "ok")
            self._keys.add(key)
        self.messages.append(body)
        return Answer(200, "ok")

    def error(self, status: int, message: str | None = None) -> Answer:
        return Answer(status, message or _SLACK_ERRORS.get(status, f"error_{status}"))

    def rate_limited(self, reset_at: float | None) -> Answer:
        headers = {}
        if reset_at is not None:
            headers["Retry-After"] = str(max(0, math.ceil(reset_at - time.time())))
        return Answer(429, "rate_limited", headers)
