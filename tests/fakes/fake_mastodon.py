"""A fake Mastodon server (post and delete a status), for the real Mastodon.py client.

    with FakeMastodon() as m:
        config = ChannelConfig(..., options={"api_base_url": m.url},
                               secrets={"access_token": m.access_token})
        m.script(RateLimit(time.time() + 1.5), Fail(503))

Like Mastodon it honours `Idempotency-Key` (the same key returns the status
created first and creates no other), refuses text over `max_chars` and blank
text with 422, answers 401 to a wrong bearer token, and announces rate-limit
resets in `X-RateLimit-Reset` as an ISO 8601 time.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

from tests.fakes.server import Answer, FakeServer, Request

_STATUS = re.compile(r"^/api/v1/statuses/(?P<id>[0-9]+)$")


@dataclass
class Status:
    id: str
    text: str
    idempotency_key: str | None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    deleted: bool = False


class FakeMastodon(FakeServer):
    def __init__(self, access_token: str = "fake-mastodon-token", max_chars: int = 500) -> None:
        super().__init__()
        self.access_token = access_token
        self.max_chars = max_chars
        self.statuses: list[Status] = []  # every status created, deleted ones included
        self._by_key: dict[str, Status] = {}
        self._ids = itertools.count(110000000000000001)

    @property
    def live(self) -> list[Status]:
        with self._lock:
            return [s for s in self.statuses if not s.deleted]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.live]

    def route(self, request: Request) -> Answer:
        if request.header("Authorization") != f"Bearer {self.access_token}":
            return self.error(401, "The access token is invalid")
        if request.method == "POST" and request.path == "/api/v1/statuses":
            return self._create(request)
        match = _STATUS.match(request.path)
        if request.method == "DELETE" and match:
            return self._delete(match["id"])
        return self.error(404, "Record not found")

    def error(self, status: int, message: str | None = None) -> Answer:
        defaults = {401: "The access token is invalid", 403: "This action is not allowed",
                    404: "Record not found", 422: "Validation failed",
                    503: "Service Unavailable"}
        return Answer(status, {"error": message or defaults.get(status, f"Error {status}")})

    def rate_limited(self, reset_at: float | None) -> Answer:
        headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0"}
        if reset_at is not None:
            # Milliseconds, rounded up: never announce a time before the one asked for.
            when = datetime.fromtimestamp(math.ceil(reset_at * 1000) / 1000, UTC)
            headers["X-RateLimit-Reset"] = when.isoformat(timespec="milliseconds")
        return Answer(429, {"error": "Too many requests"}, headers)

    def _create(self, request: Request) -> Answer:
        key = request.header("Idempotency-Key")
        if key is not None and key in self._by_key:
            return Answer(200, self._render(self._by_key[key]))
        text = str(request.fields().get("status") or "")
        if not text.strip():
            return self.error(422, "Validation failed: Text can't be blank")
        if len(text) > self.max_chars:
            return self.error(422, f"Validation failed: Text character limit of "
                                   f"{self.max_chars} exceeded")
        status = Status(id=str(next(self._ids)), text=text, idempotency_key=key)
        self.statuses.append(status)
        if key is not None:
            self._by_key[key] = status
        return Answer(200, self._render(status))

    def _delete(self, status_id: str) -> Answer:
        status = next((s for s in self.statuses if s.id == status_id and not s.deleted), None)
        if status is None:
            return self.error(404)
        status.deleted = True
        return Answer(200, {**self._render(status), "text": status.text})

    def _render(self, status: Status) -> dict[str, object]:
        url = f"{self.base_url}/@switchboard/{status.id}"
        return {
            "id": status.id, "uri": url, "url": url,
            "created_at": status.created_at.isoformat(timespec="milliseconds"),
            "content": f"<p>{escape(status.text)}</p>", "visibility": "public",
            "sensitive": False, "spoiler_text": "", "language": "en",
            "in_reply_to_id": None, "in_reply_to_account_id": None, "reblog": None,
            "media_attachments": [], "mentions": [], "tags": [], "emojis": [],
            "replies_count": 0, "reblogs_count": 0, "favourites_count": 0,
            "account": {"id": "1", "username": "switchboard", "acct": "switchboard",
                        "display_name": "switchboard", "url": f"{self.base_url}/@switchboard"},
        }
