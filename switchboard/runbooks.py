"""Runbooks (design §3.4): what happens to the channels during an incident.

A runbook is `runbooks/<name>.yaml`. Loading validates everything an operator
can get wrong (keys, durations, channels, actions, templates and whether the
rendered text fits the target channels), reports every problem across every
file as `FILE:LINE:COL: key: message`, and returns frozen `Runbook` objects the
engine can trust without further checks.

Channel knowledge comes in as a parameter (`ChannelInfo` by id, see
`channel_infos`) so this module does not depend on the channel implementations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Protocol

import yaml

from switchboard import yamldoc
from switchboard.config import SEVERITIES, ChannelConfig, unknown_channel_message
from switchboard.templates import (
    NO_SIGNAL,
    Context,
    IncidentView,
    SignalView,
    Template,
    TemplateFailure,
    Templates,
    format_duration,
)
from switchboard.textlength import length_rule
from switchboard.yamldoc import Document, InvalidFile, Path_, Problem, Section, dotted

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
_TOP_KEYS = {"name", "title", "severity", "scope", "suppress", "handover", "steps", "resolve",
             "approval"}
# `approval: two-person`: an ops update (`incident update`) waits for a second ops person.
APPROVALS = ("none", "two-person")
_STEP_KEYS = {"name", "at", "every", "start", "action", "template", "channels",
              "published_within"}
_RESOLVE_KEYS = {"auto", "quiet_period", "cooldown", "held_posts", "min_spacing", "steps"}
_RESOLVE_STEP_KEYS = {"name", "action", "template", "channels"}

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


# ---------------------------------------------------------------------------
# Loading


def load_runbooks(directory: Path, channels: Mapping[str, ChannelInfo],
                  timezone: tzinfo = UTC) -> dict[str, Runbook]:
    """Every `*.yaml` in `directory` by name; raises InvalidFile with all problems of all files."""
    runbooks, problems = _load_directory(directory, channels, timezone)
    if problems:
        raise InvalidFile(problems)
    return runbooks


def read_runbooks(directory: Path, channels: Mapping[str, ChannelInfo],
                  timezone: tzinfo = UTC) -> tuple[dict[str, Runbook], list[Problem]]:
    """The runbooks that loaded cleanly, and every problem of every file."""
    return _load_directory(directory, channels, timezone)


def check_runbooks(directory: Path, channels: Mapping[str, ChannelInfo],
                   timezone: tzinfo = UTC) -> list[Problem]:
    """Every problem in the runbook directory (empty when clean): `switchboard check`."""
    return _load_directory(directory, channels, timezone)[1]


def load_runbook(path: Path, channels: Mapping[str, ChannelInfo],
                 timezone: tzinfo = UTC) -> Runbook:
    """One runbook file; raises InvalidFile."""
    runbook, problems = _load_file(path, channels, Templates(timezone))
    if problems or runbook is None:
        raise InvalidFile(problems)
    return runbook


def _load_directory(directory: Path, channels: Mapping[str, ChannelInfo],
                    timezone: tzinfo) -> tuple[dict[str, Runbook], list[Problem]]:
    where = str(directory)
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        return {}, [Problem(where, 1, 1, "", f"runbook directory {what}")]
    problems: list[Problem] = []
    for stray in sorted(directory.glob("*.yml")):
        problems.append(Problem(str(stray), 1, 1, "",
                                f"runbook files end in .yaml: rename to {stray.stem}.yaml"))
    files = sorted(p for p in directory.glob("*.yaml") if not p.name.startswith("."))
    if not files:
        problems.append(Problem(where, 1, 1, "", "no runbooks (*.yaml) in the runbook directory"))
    templates = Templates(timezone)
    runbooks: dict[str, Runbook] = {}
    for path in files:
        runbook, found = _load_file(path, channels, templates)
        problems.extend(found)
        if runbook is not None:
            runbooks[runbook.name] = runbook
    return runbooks, problems


def _load_file(path: Path, channels: Mapping[str, ChannelInfo],
               templates: Templates) -> tuple[Runbook | None, list[Problem]]:
    try:
        doc = yamldoc.load(path)
        text = path.read_text(encoding="utf-8")
    except InvalidFile as exc:
        return None, exc.problems
    runbook = _Reader(doc, text, path, channels, templates).read()
    return (runbook if not doc.problems else None), doc.problems


class _Reader:
    """Reads one runbook document, recording problems instead of stopping at the first."""

    def __init__(self, doc: Document, text: str, path: Path,
                 channels: Mapping[str, ChannelInfo], templates: Templates) -> None:
        self.doc, self.path, self.channels, self.templates = doc, path, channels, templates
        self.lines = text.splitlines()
        self.scalars = _scalar_marks(text)
        self.scope: tuple[str, ...] = ()
        self.role = "ops"
        self.handover_notify: tuple[str, ...] = ()

    def read(self) -> Runbook | None:
        top = Section(self.doc, (), self.doc.data, _TOP_KEYS, required={"name", "title"})
        if not top.ok:
            return None
        name = self._name(top)
        title = top.get("title", str, "")
        if top.has("title") and not str(title).strip():
            self.doc.problem(top.at("title"), "must not be empty")
        severity = top.choice("severity", SEVERITIES, "major") or "major"
        scope = self._scope(top)
        self.scope = scope if scope is not None else tuple(
            c.id for c in self.channels.values() if c.audience == "public")
        suppress = self._suppress(top)
        handover = self._handover(top, suppress)
        steps = self._steps(top)
        resolve, resolve_steps = self._resolve(top)
        self._unique_names([*steps, *resolve_steps])
        runbook = Runbook(name=name, title=str(title), severity=severity, scope=scope,
                          suppress=suppress, handover=handover, steps=tuple(s for s, _ in steps),
                          resolve=resolve, path=self.path,
                          two_person=top.choice("approval", APPROVALS, "none") == "two-person")
        # Templates are test-rendered even when other keys have problems, so one
        # `check` shows them all; lengths only when the rest is sound (a broken
        # scope would make them wrong).
        _Sample(self, runbook, lengths=not self.doc.problems).check([*steps, *resolve_steps])
        return runbook

    # -- top level --------------------------------------------------------

    def _name(self, top: Section) -> str:
        name = str(top.get("name", str, "") or "")
        if not top.has("name"):
            return self.path.stem
        if not _NAME.fullmatch(name):
            self.doc.problem(top.at("name"), f"runbook name {name!r} must be lower-case letters, "
                                             "digits, '.', '_' or '-'")
        elif name != self.path.stem:
            self.doc.problem(top.at("name"), f"name {name!r} does not match the file name: "
                                             f"this file must be called {name}.yaml, or the "
                                             f"name be {self.path.stem!r}")
        return name

    def _scope(self, top: Section) -> tuple[str, ...] | None:
        value = top.value.get("scope", "all")
        if value == "all":
            if not any(c.audience == "public" for c in self.channels.values()):
                self.doc.problem(top.at("scope") if top.has("scope") else (),
                                 "scope 'all' takes over every public channel, but the config "
                                 "has none")
            return None
        if not isinstance(value, list):
            self.doc.problem(top.at("scope"), "must be 'all' or a list of channel ids")
            return None
        ids = top.str_list("scope")
        if not ids:
            self.doc.problem(top.at("scope"), "must list at least one channel (or be 'all')")
        for i, cid in enumerate(ids):
            self._channel_ok(("scope", i), cid, "public", "the scope lists the public channels "
                                                          "an incident takes over")
        return _merged(ids)

    def _suppress(self, top: Section) -> tuple[str, ...]:
        kinds = top.str_list("suppress", ["marketing"])
        for i, kind in enumerate(kinds):
            if kind == "operational":
                self.doc.problem(("suppress", i), "operational posts cannot be suppressed: "
                                                  "they are how ops talk during the incident")
            elif kind not in POST_KINDS:
                self.doc.problem(("suppress", i), f"unknown post kind {kind!r} "
                                                  f"(kinds: {', '.join(POST_KINDS)})")
        return tuple(kinds)

    def _handover(self, top: Section, suppress: tuple[str, ...]) -> Handover:
        held = (f"{' and '.join(suppress)} posts are held" if suppress
                else "nothing is suppressed")
        if not top.has("handover"):
            default = HANDOVER_NOTICE.format(role=self.role, held=held,
                                             channels=CHANNELS_SUMMARY)
            return Handover(notice=self._compile(("handover",), default, builtin=True))
        sec = Section(self.doc, ("handover",), top.value["handover"],
                      {"role", "notify", "template"})
        role = self.role = sec.choice("role", HANDOVER_ROLES, "ops") or "ops"
        notify = sec.str_list("notify")
        for i, cid in enumerate(notify):
            self._channel_ok(("handover", "notify", i), cid, "internal",
                             "handover notices go to internal channels")
        self.handover_notify = _merged(notify)
        source = sec.get("template", str, None)
        notice = self._compile(("handover", "template"),
                               source or HANDOVER_NOTICE.format(role=role, held=held,
                                                                channels=CHANNELS_SUMMARY),
                               builtin=source is None)
        return Handover(role=role, notify=self.handover_notify, notice=notice)

    # -- steps --------------------------------------------------------------

    def _steps(self, top: Section) -> list[tuple[Step, Path_]]:
        out: list[tuple[Step, Path_]] = []
        for i, item in enumerate(top.get("steps", list, [])):
            step = self._step(("steps", i), item)
            if step is not None:
                out.append((step, ("steps", i)))
        return out

    def _step(self, path: Path_, item: Any) -> Step | None:
        sec = Section(self.doc, path, item, _STEP_KEYS, required={"name", "action"})
        if not sec.ok:
            return None
        name = self._step_name(sec, "")
        action = sec.choice("action", ACTIONS)
        at, every, start = self._timing(sec, action)
        if action is None:
            return None
        return Step(name=name, action=action, at=at, every=every, start=start,
                    template=self._step_template(sec, action, every),
                    channels=self._step_channels(sec, action),
                    published_within=self._published_within(sec, action))

    def _step_name(self, sec: Section, fallback: str) -> str:
        name = sec.get("name", str, None)
        if name is None:
            return fallback
        if not _NAME.fullmatch(name):
            self.doc.problem(sec.at("name"), f"step name {name!r} must be lower-case letters, "
                                             "digits, '.', '_' or '-'")
        return str(name)

    def _timing(self, sec: Section, action: str | None,
                ) -> tuple[timedelta | None, timedelta | None, timedelta | None]:
        if sec.has("at") and sec.has("every"):
            self.doc.problem(sec.at("every"), "give either at: (once) or every: (repeating), "
                                              "not both")
            return None, None, None
        if not sec.has("at") and not sec.has("every"):
            self.doc.problem(sec.path, "missing at: (once, offset from the declaration) or "
                                       "every: (repeating until resolution)")
            return None, None, None
        at = sec.duration("at")
        every = sec.duration("every")
        start = sec.duration("start")
        if sec.has("start") and not sec.has("every"):
            self.doc.problem(sec.at("start"), "start: is only for every: steps")
        if every is not None and every <= timedelta(0):
            self.doc.problem(sec.at("every"), "must be more than 0s")
            every = None
        if action == "remind" and sec.has("at"):
            self.doc.problem(sec.at("at"), "remind steps repeat: use every: (a reminder fires "
                                           "when no operational update went out in that interval)")
        return at, every, start

    def _step_template(self, sec: Section, action: str,
                       every: timedelta | None) -> Template | None:
        if action == "retract":
            if sec.has("template"):
                self.doc.problem(sec.at("template"), "retract steps take no template")
            return None
        source = sec.get("template", str, None)
        if source is None:
            if action in ("post", "notify"):
                if not sec.has("template"):
                    self.doc.problem(sec.path, f"missing required key 'template' "
                                               f"(a {action} step needs its text)")
                return None
            default = (REMIND_TEXT.format(window=format_duration(every or timedelta(0)))
                       if action == "remind"
                       else HANDOVER_STEP.format(role=self.role, channels=CHANNELS_SUMMARY))
            return self._compile(sec.at("template"), default, builtin=True)
        if not source.strip():
            self.doc.problem(sec.at("template"), "must not be empty")
            return None
        return self._compile(sec.at("template"), source)

    def _step_channels(self, sec: Section, action: str) -> tuple[str, ...] | None:
        if not sec.has("channels"):
            if action in PUBLIC_ACTIONS:
                return None
            if not self.handover_notify:
                self.doc.problem(sec.path, f"no channels for this {action} step: give "
                                           "channels: or handover.notify")
            return self.handover_notify
        ids = sec.str_list("channels")
        if not ids and sec.get("channels", list, None) is not None:
            self.doc.problem(sec.at("channels"), "must list at least one channel")
        audience = "public" if action in PUBLIC_ACTIONS else "internal"
        why = (f"{action} steps go to public channels" if audience == "public"
               else f"{action} steps go to internal channels")
        for i, cid in enumerate(ids):
            where = (*sec.at("channels"), i)
            if self._channel_ok(where, cid, audience, why) and audience == "public" \
                    and cid not in self.scope:
                self.doc.problem(where, f"channel {cid!r} is not in the runbook's scope "
                                        f"({', '.join(self.scope) or 'none'})")
        return _merged(ids)

    def _published_within(self, sec: Section, action: str) -> timedelta | None:
        if action != "retract":
            if sec.has("published_within"):
                self.doc.problem(sec.at("published_within"), "only retract steps take "
                                                             "published_within")
            return None
        if not sec.has("published_within"):
            self.doc.problem(sec.path, "missing required key 'published_within' (how far back "
                                       "to retract marketing posts, e.g. 30m)")
            return None
        within = sec.duration("published_within")
        if within is not None and within <= timedelta(0):
            self.doc.problem(sec.at("published_within"), "must be more than 0s")
        return within

    # -- resolve --------------------------------------------------------------

    def _resolve(self, top: Section) -> tuple[ResolvePolicy, list[tuple[Step, Path_]]]:
        if not top.has("resolve"):
            return ResolvePolicy(), []
        sec = Section(self.doc, ("resolve",), top.value["resolve"], _RESOLVE_KEYS)
        default = ResolvePolicy()
        steps = self._resolve_steps(sec)
        policy = ResolvePolicy(
            auto=bool(sec.get("auto", bool, False)),
            quiet_period=self._non_negative(sec, "quiet_period", default.quiet_period),
            cooldown=self._non_negative(sec, "cooldown", default.cooldown),
            held_posts=sec.choice("held_posts", HELD_POLICIES, "review") or "review",
            min_spacing=self._non_negative(sec, "min_spacing", default.min_spacing),
            steps=tuple(s for s, _ in steps))
        if sec.has("min_spacing") and policy.min_spacing <= timedelta(0):
            self.doc.problem(sec.at("min_spacing"), "must be more than 0s: held posts would "
                                                    "all go out at once")
        return policy, steps

    def _non_negative(self, sec: Section, key: str, default: timedelta) -> timedelta:
        value = sec.duration(key, default)
        if value is None or value < timedelta(0):
            self.doc.problem(sec.at(key), "must not be negative")
            return default
        return value

    def _resolve_steps(self, sec: Section) -> list[tuple[Step, Path_]]:
        out: list[tuple[Step, Path_]] = []
        for i, item in enumerate(sec.get("steps", list, [])):
            path: Path_ = ("resolve", "steps", i)
            step_sec = Section(self.doc, path, item, _RESOLVE_STEP_KEYS, required={"action"})
            if not step_sec.ok:
                continue
            name = self._step_name(step_sec, f"resolve-{i + 1}")
            action = step_sec.choice("action", RESOLVE_ACTIONS)
            if action is None:
                continue
            out.append((Step(name=name, action=action, at=timedelta(0),
                             template=self._step_template(step_sec, action, None),
                             channels=self._step_channels(step_sec, action)), path))
        return out

    def _unique_names(self, steps: list[tuple[Step, Path_]]) -> None:
        seen: dict[str, Path_] = {}
        for step, path in steps:
            if not step.name:
                continue
            if step.name in seen:
                line, _ = self.doc.position((*seen[step.name], "name"))
                self.doc.problem((*path, "name"), f"duplicate step name {step.name!r} "
                                                  f"(first at line {line})")
            else:
                seen[step.name] = path

    # -- helpers --------------------------------------------------------------

    def _channel_ok(self, path: Path_, cid: str, audience: str, why: str) -> bool:
        info = self.channels.get(cid)
        if info is None:
            self.doc.problem(path, unknown_channel_message(cid, set(self.channels)))
            return False
        if info.audience != audience:
            self.doc.problem(path, f"channel {cid!r} is {info.audience}: {why}")
            return False
        return True

    def _compile(self, path: Path_, source: str, builtin: bool = False) -> Template | None:
        try:
            return self.templates.compile(source)
        except TemplateFailure as exc:
            if builtin:  # our own default texts always compile; a failure here is a bug
                raise
            self.template_problem(path, exc)
            return None

    def template_problem(self, path: Path_, exc: TemplateFailure, note: str = "") -> None:
        """A template problem at the template's own line inside the YAML value."""
        line, column = self._template_position(path, exc.line)
        self.doc.problems.append(Problem(self.doc.file, line, column, dotted(path),
                                         exc.message + note))

    def _template_position(self, path: Path_, template_line: int | None) -> tuple[int, int]:
        mark = self.scalars.get(path)
        if mark is None:
            return self.doc.position(path)
        line0, column0, style = mark
        offset = (template_line or 1) - 1
        if style in ("|", ">"):
            line0 += 1  # a block scalar's text starts on the line after its indicator
        elif offset == 0:
            return line0 + 1, column0 + 1
        index = min(line0 + offset, len(self.lines) - 1)
        text = self.lines[index]
        return index + 1, len(text) - len(text.lstrip()) + 1


class _Sample:
    """Test renders of every template against a sample incident.

    Each template is rendered twice: as if declared by hand (`signal` empty)
    and as if declared by a feed signal whose labels all exist. That finds
    undefined names and texts too long for their channels before an incident
    ever runs.
    """

    def __init__(self, reader: _Reader, runbook: Runbook, lengths: bool = True) -> None:
        self.reader, self.runbook, self.lengths = reader, runbook, lengths
        self.public = reader.scope

    def check(self, steps: list[tuple[Step, Path_]]) -> None:
        handover = self.runbook.handover
        if handover.notice is not None and handover.notify:
            probe = Step("handover", "handover", at=timedelta(0), template=handover.notice,
                         channels=handover.notify)
            self._check(probe, ("handover", "template"))
        for step, path in steps:
            self._check(step, (*path, "template"))

    def _check(self, step: Step, path: Path_) -> None:
        if step.template is None:
            return
        targets = step.targets(self.public)
        longest: tuple[int, str] = (0, "")
        for declared_by, signal in (("by hand, so signal is empty", NO_SIGNAL),
                                    ("by a feed signal", _sample_signal())):
            for channel in targets or ("",):
                context = self.context(step, signal, channel)
                try:
                    text = step.template.render(context)
                except TemplateFailure as exc:
                    self.reader.template_problem(path, exc, f" (sample incident declared "
                                                            f"{declared_by})")
                    return
                info = self.reader.channels.get(channel)
                longest = max(longest, (info.length(text) if info else len(text), channel))
        if self.lengths:
            self._check_length(path, targets, longest[0])

    def _check_length(self, path: Path_, targets: tuple[str, ...], length: int) -> None:
        limits = sorted((self.reader.channels[c].max_length, c) for c in targets
                        if c in self.reader.channels)
        if limits and length > limits[0][0]:
            limit, channel = limits[0]
            self.reader.doc.problem(path, f"the sample text is {length} characters, over the "
                                          f"{limit} allowed on channel {channel!r}")

    def context(self, step: Step, signal: SignalView, channel: str) -> Context:
        declared = SAMPLE_DECLARED_AT
        incident = IncidentView(
            id="INC-123", title=self.runbook.title, severity=self.runbook.severity,
            runbook=self.runbook.name, declared_at=declared, channels=self.public,
            reason="sample reason", source=signal.source or "manual")
        # A step whose timing is itself a problem renders at +0.
        first = step.first if step.at is not None or step.every is not None else timedelta(0)
        return Context(incident=incident, now=declared + first, signal=signal,
                       channel=channel)


class _SampleLabels(dict[str, str]):
    """Labels of the sample signal: every name exists, so only real mistakes fail."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def _sample_signal() -> SignalView:
    return SignalView(source="sample-feed", key="sample", status="firing",
                      title="Sample signal title", at=SAMPLE_DECLARED_AT,
                      labels=_SampleLabels(), annotations=_SampleLabels())


def _merged(ids: Iterable[str]) -> tuple[str, ...]:
    """Channel ids in their order, each once: a channel listed twice is held (or
    posted to) once, never a second hold that the store would refuse."""
    return tuple(dict.fromkeys(ids))


def _scalar_marks(text: str) -> dict[Path_, tuple[int, int, str]]:
    """(line, column, style), 0-based, of every scalar value: where template text starts."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    out: dict[Path_, tuple[int, int, str]] = {}

    def walk(node: yaml.Node | None, path: Path_) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, (*path, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))
        elif isinstance(node, yaml.ScalarNode):
            out[path] = (node.start_mark.line, node.start_mark.column, node.style or "")

    walk(root, ())
    return out


__all__ = ["ACTIONS", "HELD_POLICIES", "RESOLVE_ACTIONS", "SAMPLE_DECLARED_AT", "SEVERITIES",
           "ChannelInfo", "Handover", "ResolvePolicy", "Runbook", "Step", "channel_infos",
           "check_runbooks", "load_runbook", "load_runbooks", "read_runbooks"]
