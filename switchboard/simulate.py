"""`switchboard simulate`: a runbook's timeline on a fake clock.

Computes, without touching any channel or the store, what would happen if an
incident were declared under the runbook now and resolved at the end of
`for_`: the takeover, every step with its rendered text, the resolution,
the cooldown and what becomes of the held posts. Like `amtool config routes
test`, it lets an operator see a runbook's effect before an incident does.

Reminders fire when no operational update went out within their interval. The
simulation knows only the runbook's own posts, so it assumes ops sent no
manual update: in a real incident some of these reminders would stay silent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from switchboard.feeds.signal import Signal
from switchboard.runbooks import ChannelInfo, Runbook, Step
from switchboard.templates import Context, IncidentView, SignalView, TemplateFailure

SIMULATED_ID = "INC-SIM"


@dataclass(frozen=True)
class Event:
    """One line of the timeline.

    `event`: declared | handover | step | signal-resolved | resolved |
    resolve-step | cooldown-ended | held-posts.
    """

    offset: timedelta
    at: datetime
    event: str
    summary: str
    step: str | None = None
    action: str | None = None
    channels: tuple[str, ...] = ()
    text: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Timeline:
    runbook: Runbook
    incident: IncidentView
    start: datetime
    duration: timedelta
    timezone: tzinfo
    declared_by_signal: bool
    events: tuple[Event, ...]


def simulate(runbook: Runbook, channels: Mapping[str, ChannelInfo], *,
             for_: timedelta = timedelta(hours=3), start: datetime | None = None,
             signal: Signal | None = None, title: str | None = None,
             timezone: tzinfo = UTC) -> Timeline:
    """The incident's timeline from declaration at `start` (default: this minute) to the
    handling of held posts after resolution at `start + for_`."""
    if start is None:
        start = datetime.now(timezone).replace(second=0, microsecond=0)
    # Offsets are added in UTC: aware arithmetic in a local zone is wall-clock
    # arithmetic and would be an hour out across a DST change.
    start = start.astimezone(UTC)
    view = SignalView.of(signal)
    incident = IncidentView(
        id=SIMULATED_ID, title=title or (signal.title if signal else "") or runbook.title,
        severity=runbook.severity, runbook=runbook.name, declared_at=start,
        channels=runbook.public_channels(channels), reason="",
        source=signal.source if signal else "manual")
    run = _Run(runbook, channels, incident, view, start, for_, timezone)
    return Timeline(runbook=runbook, incident=incident, start=start, duration=for_,
                    timezone=timezone, declared_by_signal=signal is not None,
                    events=tuple(run.events()))


class _Run:
    def __init__(self, runbook: Runbook, channels: Mapping[str, ChannelInfo],
                 incident: IncidentView, signal: SignalView, start: datetime,
                 for_: timedelta, timezone: tzinfo) -> None:
        self.runbook, self.channels, self.incident = runbook, channels, incident
        self.signal, self.start, self.for_, self.tz = signal, start, for_, timezone
        # The runbook's own operational posts: what a reminder looks back for.
        self.posts = sorted(offset for step in runbook.steps if step.action == "post"
                            for offset in step.offsets(for_))

    def events(self) -> list[Event]:
        timed: list[tuple[timedelta, int, int, Event]] = []
        for order, step in enumerate(self.runbook.steps):
            for offset in step.offsets(self.for_):
                timed.extend((offset, 1, order, e) for e in self.step(step, offset, "step"))
        timed.sort(key=lambda item: item[:3])
        return [*self.declaration(), *(e for *_, e in timed), *self.resolution()]

    def event(self, offset: timedelta, event: str, summary: str, **fields: Any) -> Event:
        return Event(offset=offset, at=self.start + offset, event=event, summary=summary,
                     **fields)

    def declaration(self) -> list[Event]:
        book, incident = self.runbook, self.incident
        by = f"by signal from {incident.source}" if self.signal else "by hand"
        taken = ", ".join(incident.channels) or "no channels"
        suppressed = (f"{' and '.join(book.suppress)} posts suppressed" if book.suppress
                      else "nothing suppressed")
        out = [self.event(timedelta(0), "declared",
                          f"{incident.id} declared {by}: {_quote(incident.title)} "
                          f"({incident.severity});"
                          f" {book.handover.role} has control of {taken}; {suppressed}",
                          channels=incident.channels)]
        notice = book.handover.notice
        if notice is not None and book.handover.notify:
            probe = Step("handover", "handover", at=timedelta(0), template=notice,
                         channels=book.handover.notify)
            out.extend(self.step(probe, timedelta(0), "handover", named=False))
        return out

    def step(self, step: Step, offset: timedelta, kind: str, named: bool = True) -> list[Event]:
        targets = step.targets(self.incident.channels)
        name = step.name if named else None
        if step.action == "retract":
            within = step.published_within or timedelta(0)
            since = (self.start + offset - within).astimezone(self.tz)
            return [self.event(offset, kind, f"delete marketing posts published on "
                                             f"{_list(targets)} in the last {_offset(within)[1:]}"
                                             f" (since {since:%H:%M})",
                               step=name, action=step.action, channels=targets)]
        reminder = ""
        if step.action == "remind":
            window = step.every or timedelta(0)
            sent = [p for p in self.posts if offset - window < p <= offset]
            if sent:
                return [self.event(offset, kind, f"stays silent: the runbook posted at "
                                                 f"{_offset(sent[-1])}, within the last "
                                                 f"{_offset(window)[1:]}",
                                   step=name, action=step.action, channels=targets)]
            reminder = (f"fires if no operational update in the last {_offset(window)[1:]} "
                        "(none assumed): ")
        return self.rendered(step, offset, kind, name, targets, reminder)

    def rendered(self, step: Step, offset: timedelta, kind: str, name: str | None,
                 targets: tuple[str, ...], prefix: str) -> list[Event]:
        assert step.template is not None
        groups: dict[str, list[str]] = {}
        for channel in targets:
            context = Context(self.incident, self.start + offset, self.signal, channel)
            try:
                text = step.template.render(context)
            except TemplateFailure as exc:
                notify = _list(self.runbook.handover.notify)
                return [self.event(offset, kind, f"{prefix}fails: {exc.message}; recorded on "
                                                 f"the timeline and reported to {notify}",
                                   step=name, action=step.action, channels=targets,
                                   error=exc.message)]
            groups.setdefault(text, []).append(channel)
        out = []
        for text, chans in groups.items():
            too_long = [c for c in chans if c in self.channels
                        and self.channels[c].length(text) > self.channels[c].max_length]
            measured = max((self.channels[c].length(text) for c in too_long), default=0)
            error = (f"too long for {_list(tuple(too_long))} ({measured} characters, limit "
                     f"{min(self.channels[c].max_length for c in too_long)})"
                     if too_long else None)
            summary = f"-> {_list(tuple(chans))}: {prefix}{_quote(text)}"
            out.append(self.event(offset, kind, summary + (f" [{error}]" if error else ""),
                                  step=name, action=step.action, channels=tuple(chans),
                                  text=text, error=error))
        return out

    def resolution(self) -> list[Event]:
        policy, end = self.runbook.resolve, self.for_
        out = []
        if policy.auto and self.signal:
            cleared = max(end - policy.quiet_period, timedelta(0))
            out.append(self.event(cleared, "signal-resolved",
                                  f"the signal from {self.incident.source} clears; "
                                  f"resolve.auto waits {_offset(policy.quiet_period)[1:]} "
                                  "for a re-fire"))
            how = f"automatically after {_offset(end - cleared)[1:]} with no re-fire"
        elif policy.auto:
            how = "by hand (resolve.auto needs a feed signal: pass a signal to see it)"
        else:
            how = "by hand (switchboard incident resolve)"
        out.append(self.event(end, "resolved", f"{self.incident.id} resolved {how}; channels "
                                               f"stay under control for the "
                                               f"{_offset(policy.cooldown)[1:]} cooldown"))
        for step in policy.steps:
            out.extend(self.step(step, end, "resolve-step"))
        released = end + policy.cooldown
        out.append(self.event(released, "cooldown-ended",
                              f"cooldown over: channels back with marketing: "
                              f"{_list(self.incident.channels)} (unless another incident "
                              "holds them)",
                              channels=self.incident.channels))
        out.append(self.event(released, "held-posts", self.held(released)))
        return out

    def held(self, released: timedelta) -> str:
        policy = self.runbook.resolve
        if policy.held_posts == "drop":
            return "held_posts: drop: every suppressed post is dropped"
        if policy.held_posts == "reschedule":
            first = (self.start + released).astimezone(self.tz)
            return (f"held_posts: reschedule: suppressed posts not yet expired are re-queued "
                    f"from {first:%H:%M}, {_offset(policy.min_spacing)[1:]} apart per channel")
        return ("held_posts: review: suppressed posts become held until marketing releases or "
                "drops each (switchboard post release / post drop)")


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _list(ids: tuple[str, ...]) -> str:
    return ", ".join(ids) or "no channels"


def _offset(value: timedelta) -> str:
    """+0m, +30m, +1h, +1h30m, +45s."""
    total = int(value.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("+", total)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + \
        (f"{seconds}s" if seconds else "")
    return sign + (text or "0m")


format_offset = _offset


# ---------------------------------------------------------------------------
# Output


def format_text(timeline: Timeline) -> str:
    """One readable line per event, after a short header."""
    book, tz = timeline.runbook, timeline.timezone
    start = timeline.start.astimezone(tz)
    by = "a feed signal" if timeline.declared_by_signal else "hand"
    lines = [
        f"runbook {book.name} ({book.title}, {book.severity}) simulated for "
        f"{_offset(timeline.duration)[1:]} from {start:%Y-%m-%d %H:%M %Z}, declared by {by}",
        "(a fake clock: nothing is sent; reminders assume no manual operational updates)",
        "",
    ]
    for e in timeline.events:
        label = e.action if e.event in ("step", "resolve-step") else e.event
        step = ""
        if e.step:
            step = f"{e.step} " if e.summary.startswith("->") else f"{e.step}: "
        at = e.at.astimezone(tz)
        lines.append(f"{_offset(e.offset):<8}{at:%a %H:%M}  {label:<17}{step}{e.summary}")
    return "\n".join(lines) + "\n"


def to_json(timeline: Timeline) -> list[dict[str, Any]]:
    """The events as JSON-ready objects (`--json` prints this list)."""
    return [{
        "offset": _offset(e.offset),
        "offset_seconds": int(e.offset.total_seconds()),
        "at": e.at.astimezone(timeline.timezone).isoformat(),
        "event": e.event,
        "step": e.step,
        "action": e.action,
        "channels": list(e.channels),
        "text": e.text,
        "summary": e.summary,
        "error": e.error,
    } for e in timeline.events]


# ---------------------------------------------------------------------------
# --signal FILE


def load_signal(path: Path, at: datetime | None = None) -> Signal:
    """A signal from a JSON file: a Signal-shaped object (`labels`, `annotations`,
    `title`, `source`, ...) or a flat object taken as the labels. Raises ValueError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from exc
    return signal_from_json(data, str(path), at)


def signal_from_json(data: object, where: str = "signal",
                     at: datetime | None = None) -> Signal:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be a JSON object")
    structured = {"labels", "annotations", "title", "source", "key", "status"} & set(data)
    labels = _strings(data.get("labels", {}), where, "labels") if structured \
        else _strings(data, where, "")
    annotations = _strings(data.get("annotations", {}), where, "annotations") \
        if structured else {}
    status = str(data.get("status", "firing")) if structured else "firing"
    if status not in ("firing", "resolved"):
        raise ValueError(f"{where}: status must be firing or resolved, not {status!r}")
    return Signal(source=str(data.get("source", "simulated-feed")) if structured
                  else "simulated-feed",
                  key=str(data.get("key", "simulated")) if structured else "simulated",
                  status="resolved" if status == "resolved" else "firing",
                  title=str(data.get("title", "")) if structured else labels.get("title", ""),
                  at=at or datetime.now(UTC), labels=labels, annotations=annotations)


def _strings(value: object, where: str, key: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {key or 'the signal'} must be a JSON object")
    out = {}
    for name, item in value.items():
        if isinstance(item, dict | list):
            raise ValueError(f"{where}: {key + '.' if key else ''}{name} must be a string, "
                             "number or boolean")
        out[str(name)] = item if isinstance(item, str) else json.dumps(item)
    return out


__all__ = ["Event", "Timeline", "format_offset", "format_text", "load_signal",
           "signal_from_json", "simulate", "to_json"]
