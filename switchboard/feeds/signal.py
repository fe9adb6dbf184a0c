"""The normalised event every feed turns its payload into."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Status = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Signal:
    """One event from a feed.

    `key` is stable for the life of the upstream alert/incident (e.g. the
    Alertmanager fingerprint), so a repeat updates an incident instead of
    opening a second one; it is already prefixed by nothing: the incident
    layer combines it with `source` (the feed id).
    """

    source: str
    key: str
    status: Status
    title: str
    at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None
    # The sender's id of this one delivery (PagerDuty's event id): a replay of
    # the same event is recognised by it.
    event_id: str | None = None
    # Alertmanager's groupKey and the group's own status: by default a rule
    # declares one incident per group, which its alerts then update.
    group: str | None = None
    group_status: Status | None = None
    # Only news about an incident (a note, a responder added): it goes on the
    # timeline of the incident it names and never declares one.
    timeline_only: bool = False

    def fields(self) -> dict[str, str]:
        """What rules match against: labels, plus title and status."""
        return {**self.labels, "title": self.title, "status": self.status}


class FeedError(Exception):
    """A delivery or poll that was refused; `reason` is the metric label.

    Reasons: `unauthorized` (401), `malformed` (400), `too_large` (413),
    `unsupported` (415), `fetch` (poll transport failure), `http_status`.
    """

    def __init__(self, reason: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.http_status = http_status
