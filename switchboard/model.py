"""The records of the domain: posts, incidents and people as the core passes them.

They sit below every module that uses them, the store included: `posts.py`,
`incidents.py` and `people.py` work through the store, and the store builds
and takes these records, so neither side imports the other for a type. No
behaviour lives here beyond typing a row once as it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from switchboard.poststates import PostOrigin, PostState

# -- posts -------------------------------------------------------------------


@dataclass
class Post:
    id: int
    channel: str
    kind: str
    text: str
    link: str | None
    state: PostState
    due_at: float
    expires_at: float | None
    incident_id: int | None
    remote_id: str | None
    error: str | None
    created_by: str
    created_at: float
    published_at: float | None
    updated_at: float
    origin: PostOrigin = PostOrigin.SCHEDULE

    def __post_init__(self) -> None:
        # Rows come from SQL as plain text: typed here, once, for every reader.
        self.state = PostState(self.state)
        self.origin = PostOrigin(self.origin)


@dataclass
class NewPost:
    channel: str
    kind: str
    text: str
    due_at: float
    link: str | None = None
    expires_at: float | None = None
    state: PostState = PostState.SCHEDULED
    origin: PostOrigin = PostOrigin.SCHEDULE
    # The incident an operational post speaks for (holding statements, updates).
    incident_id: int | None = None

    def stored(self, post_id: int, actor: str, now: float) -> Post:
        """The post as the store keeps it once added with this id (no read back)."""
        return Post(post_id, self.channel, self.kind, self.text, self.link, self.state,
                    self.due_at, self.expires_at, self.incident_id, None, None, actor, now,
                    None, now, self.origin)


@dataclass(frozen=True)
class SendOutcome:
    post_id: int
    state: PostState  # published | failed | unknown (poststates.OUTCOMES)
    remote_id: str | None = None
    published_at: float | None = None
    error: str | None = None
    reason: str | None = None


# -- incidents ---------------------------------------------------------------


@dataclass
class Incident:
    id: int
    title: str
    runbook: str
    severity: str
    state: str
    channels: list[str]
    suppress: list[str]
    reason: str | None
    source: str
    signal_key: str | None
    signal: dict[str, Any] | None
    declared_at: float
    declared_by: str
    resolved_at: float | None
    resolved_by: str | None
    resolve_note: str | None
    cooldown_until: float | None
    held_done: bool
    last_operational_at: float | None
    auto_resolve_at: float | None


@dataclass
class TimelineEntry:
    at: float
    event: str
    actor: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hold:
    """One incident's claim on one channel; `until` is None while it is active."""

    channel: str
    incident_id: int
    until: float | None


@dataclass(frozen=True)
class IncidentHolds:
    """One incident's holds: the channels, the kinds it keeps off them, its end."""

    incident_id: int
    suppress: list[str]
    until: float | None
    channels: list[str]


# -- people ------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A stored account; `role` is organisation-wide, `teams` maps team id to roles."""

    name: str
    role: str
    disabled: bool
    password_hash: str | None = field(repr=False)
    created_at: float
    updated_at: float
    teams: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class AuditEntry:
    """One write: who (person, or None for a machine token), with which credential."""

    at: float
    person: str | None
    credential: str
    action: str
    target: str | None
    teams: tuple[str, ...]
    status: int


@dataclass(frozen=True)
class HeldPlan:
    """What the end of a cooldown does with an incident's suppressed posts: under
    `drop` and `review` every one of `ids` moves to `to_state`; under `reschedule`
    each of `moves` goes back on the schedule at its own time and `expired` expire."""

    policy: str
    reason: str
    ids: tuple[int, ...] = ()
    to_state: str | None = None
    moves: tuple[tuple[int, float], ...] = ()
    expired: tuple[int, ...] = ()
    expired_reason: str = ""

    def chunks(self, size: int) -> list[HeldPlan]:
        """The plan in parts of at most `size` posts each (at least one part)."""
        parts = [replace(self, ids=self.ids[i:i + size], moves=(), expired=())
                 for i in range(0, len(self.ids), size)]
        parts += [replace(self, ids=(), moves=self.moves[i:i + size], expired=())
                  for i in range(0, len(self.moves), size)]
        parts += [replace(self, ids=(), moves=(), expired=self.expired[i:i + size])
                  for i in range(0, len(self.expired), size)]
        return parts or [self]

