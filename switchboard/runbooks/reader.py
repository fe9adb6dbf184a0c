"""Loading runbook files: every problem of every file, or the runbooks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, tzinfo
from pathlib import Path

from switchboard import yamldoc
from switchboard.config import SEVERITIES
from switchboard.runbooks.model import APPROVALS, ChannelInfo, Runbook
from switchboard.runbooks.sample import _Sample
from switchboard.runbooks.sections import _TOP_KEYS
from switchboard.runbooks.steps import _StepSections
from switchboard.templates import (
    Templates,
)
from switchboard.yamldoc import InvalidFile, Problem, Section


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


class _Reader(_StepSections):
    """Reads one runbook document, recording problems instead of stopping at the first."""

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
