"""What a loaded runbook is: its steps, handover and resolve policy, frozen."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from switchboard.config import ChannelConfig
from switchboard.templates import (
    Template,
)
from switchboard.textlength import length_rule

ACTIONS = ("post", "notify", "remind", "retract", "handover")


RESOLVE_ACTIONS = ("post", "notify")


HELD_POLICIES = ("review", "drop", "reschedule")


POST_KINDS = ("marketing", "operational")


HANDOVER_ROLES = ("ops", "admin")


# Actions whose targets are public (the incident's channels) or internal (ops).
PUBLIC_ACTIONS = ("post", "retract")


INTERNAL_ACTIONS = ("notify", "remind", "handover")


# Texts used when the runbook does not give its own; `{role}`, `{held}`,
# `{channels}` and `{window}` are filled in at load, so every step's template renders from the
# ordinary context alone.
# A scope of a few channels is named in full; a large estate (a council's fifty
# accounts) is summarised, so the notice stays short on any internal channel.
CHANNELS_SUMMARY = ("{% set n = incident.channels | length %}"
                    "{% if n <= 3 %}{{ incident.channels | join(', ') }}"
                    "{% else %}{{ n }} channels ({{ incident.channels[:3] | join(', ') }} and "
                    "{{ n - 3 }} more: switchboard incident show {{ incident.id }}){% endif %}")


HANDOVER_NOTICE = ("{{{{ incident.id }}}} declared: {{{{ incident.title }}}}. {role} has control "
                   "of {channels}; {held}.")


HANDOVER_STEP = ("{{{{ incident.id }}}}: {role} has control of {channels} "
                 "({{{{ incident.title }}}}).")


REMIND_TEXT = ("{{{{ incident.id }}}}: no operational update in the last {window}; "
               "one is due now ({{{{ incident.title }}}}).")


_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


# `approval: two-person`: an ops update (`incident update`) waits for a second ops person.
APPROVALS = ("none", "two-person")


# The sample incident every template is test-rendered against at load.
SAMPLE_DECLARED_AT = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ChannelInfo:
    """What runbook validation needs to know about one configured channel."""

    id: str
    audience: str
    max_length: int
    # How the channel's platform counts a text (X weighs CJK as 2 and any link
    # as 23, Bluesky counts graphemes); plain characters by default.
    length: Callable[[str], int] = field(default=len, compare=False)


class _Audienced(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def audience(self) -> str: ...


def channel_infos(channels: Iterable[ChannelConfig]) -> dict[str, ChannelInfo]:
    """ChannelInfo by id for the configured channels (the limit each channel enforces,
    counted as its platform counts)."""
    return {c.id: ChannelInfo(c.id, c.audience, c.text_limit, length_rule(c.kind))
            for c in channels}


@dataclass(frozen=True)
class Step:
    """One thing a runbook does, once (`at`) or repeatedly (`every`) until resolution.

    `channels` None means "the incident's public channels" (post, retract);
    internal actions always have their targets filled in at load.
    `template` is set for every action but retract (remind and handover have
    default texts).
    """

    name: str
    action: str
    at: timedelta | None = None
    every: timedelta | None = None
    start: timedelta | None = None
    template: Template | None = None
    channels: tuple[str, ...] | None = None
    published_within: timedelta | None = None

    @property
    def first(self) -> timedelta:
        """Offset from the declaration of the first run."""
        if self.at is not None:
            return self.at
        assert self.every is not None
        return self.every if self.start is None else self.start

    def offsets(self, until: timedelta) -> Iterator[timedelta]:
        """Offsets from the declaration of every run strictly before `until`."""
        offset = self.first
        while offset < until:
            yield offset
            if self.every is None:
                return
            offset += self.every

    def targets(self, incident_channels: Sequence[str]) -> tuple[str, ...]:
        return self.channels if self.channels is not None else tuple(incident_channels)


@dataclass(frozen=True)
class Handover:
    role: str = "ops"
    notify: tuple[str, ...] = ()
    # Sent to `notify` when the incident is declared.
    notice: Template | None = None


@dataclass(frozen=True)
class ResolvePolicy:
    auto: bool = False
    quiet_period: timedelta = timedelta(minutes=10)
    cooldown: timedelta = timedelta(0)
    held_posts: str = "review"
    min_spacing: timedelta = timedelta(minutes=5)
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    severity: str
    scope: tuple[str, ...] | None  # None: every public channel
    suppress: tuple[str, ...]
    handover: Handover
    steps: tuple[Step, ...]
    resolve: ResolvePolicy
    path: Path = field(default=Path(), compare=False)
    two_person: bool = False

    def public_channels(self, all_channels: Mapping[str, _Audienced] | Iterable[_Audienced],
                        ) -> tuple[str, ...]:
        """The channels this runbook takes over: its scope list, or every public channel."""
        if self.scope is not None:
            return self.scope
        items = all_channels.values() if isinstance(all_channels, Mapping) else all_channels
        return tuple(c.id for c in items if c.audience == "public")

    def step(self, name: str) -> Step | None:
        return next((s for s in (*self.steps, *self.resolve.steps) if s.name == name), None)
