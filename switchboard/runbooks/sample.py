"""Test renders of every template against a sample incident, at load."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol

from switchboard.runbooks.model import SAMPLE_DECLARED_AT, ChannelInfo, Runbook, Step
from switchboard.templates import (
    NO_SIGNAL,
    Context,
    IncidentView,
    SignalView,
    TemplateFailure,
)
from switchboard.yamldoc import Document, Path_


class _SampleReader(Protocol):
    """What the sample renders need of the runbook reader: where to report."""

    doc: Document
    scope: tuple[str, ...]
    channels: Mapping[str, ChannelInfo]

    def template_problem(self, path: Path_, exc: TemplateFailure, note: str = "") -> None: ...


class _Sample:
    """Test renders of every template against a sample incident.

    Each template is rendered twice: as if declared by hand (`signal` empty)
    and as if declared by a feed signal whose labels all exist. That finds
    undefined names and texts too long for their channels before an incident
    ever runs.
    """

    def __init__(self, reader: _SampleReader, runbook: Runbook, lengths: bool = True) -> None:
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
