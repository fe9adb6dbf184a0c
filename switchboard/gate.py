"""The gate: may this post go to this channel now, and if not, why?

It is the only place that decides suppression. Scheduled dispatch and
immediate sends both ask it at the moment a post is claimed for sending.

The gate keeps an in-memory copy of the channel holds. Incidents update it
once their declaration has committed and before the caller is answered, so a
send that starts after the acknowledgement always sees the closed gate; the
store's claim (`queued -> sending`) checks the committed holds in its own
transaction besides, so a hold this copy has not seen (another writer) binds
too. Sending also needs a store write (the `sending` state): if the store
cannot be written, nothing goes out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    incident_id: int | None = None
    reason: str = ""


@dataclass
class _Hold:
    suppress: frozenset[str]
    until: float | None  # None while the incident is active; end of cooldown after

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until


OPEN = Decision(True)


class Gate:
    def __init__(self) -> None:
        self._holds: dict[str, dict[int, _Hold]] = {}

    def hold(self, channel: str, incident_id: int, suppress: Iterable[str],
             until: float | None = None) -> None:
        self._holds.setdefault(channel, {})[incident_id] = _Hold(frozenset(suppress), until)

    def hold_many(self, channels: Iterable[str], incident_id: int,
                  suppress: Iterable[str]) -> None:
        """One incident's holds on many channels (a declaration): one shared record,
        so 10,000 channels cost a dictionary entry each."""
        hold = _Hold(frozenset(suppress), None)
        for channel in channels:
            self._holds.setdefault(channel, {})[incident_id] = hold

    def set_until(self, incident_id: int, until: float) -> None:
        for holds in self._holds.values():
            if incident_id in holds:
                holds[incident_id].until = until

    def release(self, incident_id: int) -> None:
        for holds in self._holds.values():
            holds.pop(incident_id, None)

    def incidents(self) -> set[int]:
        """Every incident holding a channel, in cooldown or not."""
        return {i for holds in self._holds.values() for i in holds}

    def held(self) -> set[tuple[str, int]]:
        """Every (channel, incident id) held, in cooldown or not."""
        return {(c, i) for c, holds in self._holds.items() for i in holds}

    def drop(self, channel: str, incident_id: int) -> None:
        """One hold gone from the store (another daemon voided or released it)."""
        holds = self._holds.get(channel)
        if holds is not None:
            holds.pop(incident_id, None)
            if not holds:
                del self._holds[channel]

    def decide(self, channel: str, kind: str, now: float) -> Decision:
        # The earliest declared incident is named: it is the one ops are
        # following, and the post is tied to it for the held-post review.
        for incident_id in sorted(self._holds.get(channel, {})):
            hold = self._holds[channel][incident_id]
            if hold.active(now) and kind in hold.suppress:
                state = "under" if hold.until is None else "in cooldown after"
                return Decision(False, incident_id,
                                f"channel {channel} is {state} incident INC-{incident_id}")
        return OPEN

    def controlling(self, channel: str, now: float) -> list[int]:
        return sorted(i for i, h in self._holds.get(channel, {}).items() if h.active(now))

    def declared_on(self, channel: str) -> list[int]:
        """The incidents holding `channel` that are still active (not in cooldown)."""
        return sorted(i for i, h in self._holds.get(channel, {}).items() if h.until is None)

    def channels_under_control(self, now: float) -> set[str]:
        return {c for c in self._holds if self.controlling(c, now)}
