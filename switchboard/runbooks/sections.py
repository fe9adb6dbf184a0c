"""The runbook reader's common ground: names, scope, handover, templates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from switchboard.config import unknown_channel_message
from switchboard.runbooks.model import (
    _NAME,
    CHANNELS_SUMMARY,
    HANDOVER_NOTICE,
    HANDOVER_ROLES,
    POST_KINDS,
    ChannelInfo,
    Handover,
    Step,
)
from switchboard.templates import (
    Template,
    TemplateFailure,
    Templates,
)
from switchboard.yamldoc import Document, Path_, Problem, Section, dotted

_TOP_KEYS = {"name", "title", "severity", "scope", "suppress", "handover", "steps", "resolve",
             "approval"}


_STEP_KEYS = {"name", "at", "every", "start", "action", "template", "channels",
              "published_within"}


_RESOLVE_KEYS = {"auto", "quiet_period", "cooldown", "held_posts", "min_spacing", "steps"}


_RESOLVE_STEP_KEYS = {"name", "action", "template", "channels"}


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


class _Sections:
    def __init__(self, doc: Document, text: str, path: Path,
                 channels: Mapping[str, ChannelInfo], templates: Templates) -> None:
        self.doc, self.path, self.channels, self.templates = doc, path, channels, templates
        self.lines = text.splitlines()
        self.scalars = _scalar_marks(text)
        self.scope: tuple[str, ...] = ()
        self.role = "ops"
        self.handover_notify: tuple[str, ...] = ()

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
