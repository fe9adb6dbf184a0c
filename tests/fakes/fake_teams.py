"""A fake Microsoft Teams Workflows webhook ("When a Teams webhook request is received").

    with FakeTeams() as teams:
        config = ChannelConfig(..., secrets={"url": teams.url})
        teams.script(RateLimit(time.time() + 1))

The shapes follow Microsoft's documentation:
- the request is a message with one Adaptive Card attachment, `{"type": "message",
  "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
  "content": {"type": "AdaptiveCard", ...}}]}`; Workflows support Adaptive Cards
  only, not the connectors' MessageCard
  (https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using);
- the flow's trigger answers 202 Accepted with no body; errors are Power
  Automate's `{"error": {"code", "message"}}`: 400 `InvalidRequestContent`, 401
  `DirectApiAuthorizationRequired` for a missing or wrong `sig`, 404
  `WorkflowNotFound`, 429 `WorkflowTriggerIsThrottled` with `Retry-After` in
  seconds (https://learn.microsoft.com/power-automate/limits-and-config).

Like a flow it posts a repeated request a second time.
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.server import Answer, FakeServer, Request

HOOK_PATH = "/workflows/fakeworkflowid/triggers/manual/paths/invoke"
SIGNATURE = "fakeSignatureForTests"


class FakeTeams(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, Any]] = []  # every card posted, in order

    @property
    def url(self) -> str:
        return (f"{self.base_url}{HOOK_PATH}?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun"
                f"&sv=1.0&sig={SIGNATURE}")

    @property
    def texts(self) -> list[str]:
        with self._lock:
            return [card_text(c) for c in self.cards]

    def route(self, request: Request) -> Answer:
        parts = urlsplit(request.path)
        if parts.path != HOOK_PATH:
            return self._error(404, "WorkflowNotFound", "The workflow could not be found.")
        if parse_qs(parts.query).get("sig") != [SIGNATURE]:
            return self._error(401, "DirectApiAuthorizationRequired",
                               "The request must be authenticated only by Shared Access "
                               "scheme.")
        body = request.json() if "json" in (request.header("Content-Type") or "") else None
        attachments = body.get("attachments") if isinstance(body, dict) else None
        if not isinstance(attachments, list) or not attachments or any(
                a.get("contentType") != "application/vnd.microsoft.card.adaptive"
                or (a.get("content") or {}).get("type") != "AdaptiveCard"
                for a in attachments):
            return self._error(400, "InvalidRequestContent",
                               "The request content must be a message with Adaptive Card "
                               "attachments.")
        self.cards.extend(a["content"] for a in attachments)
        return Answer(202, b"")

    def error(self, status: int, message: str | None = None) -> Answer:
        codes = {400: "InvalidRequestContent", 401: "DirectApiAuthorizationRequired",
                 403: "AuthorizationFailed", 500: "InternalServerError",
                 502: "BadGateway", 503: "ServiceUnavailable"}
        return self._error(status, codes.get(status, "Error"), message or f"Error {status}")

    def rate_limited(self, reset_at: float | None) -> Answer:
        answer = self._error(429, "WorkflowTriggerIsThrottled",
                             "The workflow trigger is throttled.")
        if reset_at is None:
            return answer
        return Answer(429, answer.body,
                      {"Retry-After": str(max(1, math.ceil(reset_at - time.time())))})

    def _error(self, status: int, code: str, message: str) -> Answer:
        return Answer(status, {"error": {"code": code, "message": message}})


def card_text(card: dict[str, Any]) -> str:
    """The text of a card's first TextBlock."""
    for block in card.get("body") or []:
        if block.get("type") == "TextBlock":
            return str(block.get("text", ""))
    return ""
