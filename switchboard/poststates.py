"""The life of a post: its states and the one table of moves between them.

The store refuses any move this table does not list (`IllegalMove`), so a
post can never skip the claim (`scheduled` straight to `sending`), be sent
twice (`published` back to `queued`) or be sent again automatically after
an outcome nobody knows (`unknown` back to `queued`).

`queued` is internal: claimed by the dispatcher, not yet sending; start-up
puts it back to `scheduled` (nothing was sent). Users see it as `scheduled`.
`pending_approval` waits for a team's approver: the dispatcher only claims
`scheduled`, so a pending post cannot go out.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class PostState(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    PUBLISHED = "published"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    HELD = "held"
    DROPPED = "dropped"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    MISSED = "missed"
    UNKNOWN = "unknown"
    RETRACTED = "retracted"
    PENDING_APPROVAL = "pending_approval"
    REJECTED = "rejected"


class PostOrigin(StrEnum):
    """How a post came in: with a due time of its own, or to be sent at once (an
    API send, an incident's statement). Lateness only means something for the first."""

    SCHEDULE = "schedule"
    SEND_NOW = "send_now"


S = PostState
# The states a post may be created in.
INITIAL: frozenset[PostState] = frozenset({S.SCHEDULED, S.QUEUED, S.PENDING_APPROVAL})
# Every legal move; a state missing from a set may never follow it.
TRANSITIONS: dict[PostState, frozenset[PostState]] = {
    # an edited marketing post waits for approval again (people.state_after_edit)
    S.SCHEDULED: frozenset({S.QUEUED, S.SUPPRESSED, S.MISSED, S.CANCELLED,
                            S.PENDING_APPROVAL}),
    # claimed: sent, handed back (drain, restart), or stopped before it starts
    S.QUEUED: frozenset({S.SENDING, S.SCHEDULED, S.SUPPRESSED, S.FAILED, S.EXPIRED,
                         S.MISSED, S.CANCELLED}),
    # the platform's answer, or the gate closing at the very start of the send
    S.SENDING: frozenset({S.PUBLISHED, S.FAILED, S.UNKNOWN, S.SUPPRESSED}),
    S.PUBLISHED: frozenset({S.RETRACTED}),
    # an interrupted immediate send asked again goes straight back to the queue
    S.FAILED: frozenset({S.QUEUED, S.SCHEDULED, S.DROPPED}),
    # after the incident: a held-post policy, or a person's review
    S.SUPPRESSED: frozenset({S.SCHEDULED, S.HELD, S.EXPIRED, S.DROPPED}),
    S.HELD: frozenset({S.SCHEDULED, S.DROPPED}),
    # only a person releases a post whose send may have happened
    S.UNKNOWN: frozenset({S.SCHEDULED, S.DROPPED}),
    S.MISSED: frozenset({S.SCHEDULED, S.DROPPED}),
    S.PENDING_APPROVAL: frozenset({S.SCHEDULED, S.REJECTED}),
    S.DROPPED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
    S.RETRACTED: frozenset(),
    S.REJECTED: frozenset(),
}
# What the platform's answer to a send may make of it.
OUTCOMES: frozenset[PostState] = frozenset({S.PUBLISHED, S.FAILED, S.UNKNOWN})


class IllegalMove(ValueError):
    """A change of state the post state machine does not allow; nothing was changed."""


def check_move(from_states: Iterable[str], to_state: str) -> PostState:
    """The target state, if every one of `from_states` may move to it; else IllegalMove."""
    target = _state(to_state)
    for origin in from_states:
        if target not in TRANSITIONS[_state(origin)]:
            allowed = ", ".join(sorted(TRANSITIONS[_state(origin)])) or "none: it is final"
            raise IllegalMove(f"a post cannot go from {origin} to {target} "
                              f"(from {origin}: {allowed})")
    return target


def check_initial(state: str) -> PostState:
    target = _state(state)
    if target not in INITIAL:
        raise IllegalMove(f"a post cannot be created {target} "
                          f"(it starts {', '.join(sorted(INITIAL))})")
    return target


def check_outcome(state: str) -> PostState:
    target = _state(state)
    if target not in OUTCOMES:
        raise IllegalMove(f"a send cannot end {target} (it ends {', '.join(sorted(OUTCOMES))})")
    return target


def _state(name: str) -> PostState:
    try:
        return PostState(name)
    except ValueError:
        raise IllegalMove(f"no post state {name!r} "
                          f"(states: {', '.join(PostState)})") from None


ALL_STATES: tuple[PostState, ...] = tuple(PostState)
