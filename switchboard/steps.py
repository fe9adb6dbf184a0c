"""Running a runbook's steps during a live incident.

Each (incident, step, occurrence) runs at most once: the run is claimed in the
store before it starts, so a restart runs the steps that came due while the
daemon was down and never repeats the finished ones. A repeating step that
missed several occurrences during downtime runs once, not in a burst. A run
that a crash cut short may or may not have acted: it is not run again but
recorded as failed and reported, like the `unknown` post it may have left.

A reminder looks back one interval from the time it was scheduled for. The
runbook's own posts count at the time their step was scheduled for, so a
holding statement at 0m starts the first interval instead of filling it (what
`switchboard simulate` shows), whatever the send latency.

A failing step (channel error, template error) is recorded on the timeline
and reported to the hand-over channels; it never stops the incident.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog

from switchboard.channels.base import ChannelError
from switchboard.clock import to_datetime
from switchboard.feeds.signal import Signal
from switchboard.leadership import Leader, SoleLeader
from switchboard.metrics import Metrics
from switchboard.model import Incident
from switchboard.publisher import Publisher
from switchboard.runbooks import Runbook, Step
from switchboard.runbooks.context import RunContext
from switchboard.store import Fenced, Store
from switchboard.templates import (
    Context,
    IncidentView,
    SignalView,
    TemplateFailure,
    format_duration,
)
from switchboard.timer import Timer


@dataclass(frozen=True)
class Outcome:
    result: str  # ok | skipped | failed
    detail: str = ""


class StepFailed(Exception):
    pass


HANDOVER = "handover"
STEP_RETRY = 30.0  # seconds before a step the store could not take is tried again
RENDER_CHUNK = 500  # texts rendered per loop step for a post over many channels


def handover_step(runbook: Runbook) -> Step:
    """The notice to the hand-over channels that ops now has control (at +0)."""
    return Step(name=HANDOVER, action="handover", at=timedelta(0),
                template=runbook.handover.notice, channels=runbook.handover.notify)


class StepRunner:
    def __init__(self, store: Store, publisher: Publisher, timer: Timer, metrics: Metrics,
                 context: Callable[[], RunContext], leader: Leader | None = None) -> None:
        self.store, self.publisher, self.timer = store, publisher, timer
        self.metrics, self.clock, self.context = metrics, timer.now, context
        # Only the leader runs steps; each (incident, step, occurrence) is claimed
        # in the store with the leader's fence, so it runs once whichever node.
        self.leader: Leader = leader or SoleLeader()
        # (incident id, state) this daemon has armed the steps of: an incident
        # declared or resolved at a standby is armed by the leader when it learns of it.
        self.armed: set[tuple[int, str]] = set()
        self.log = structlog.get_logger("steps")

    # -- the incident's life ------------------------------------------------

    def on_declared(self, incident: Incident, runbook: Runbook) -> None:
        self.armed.add((incident.id, "active"))
        if runbook.handover.notify:
            self._schedule(incident, handover_step(runbook), 0, incident.declared_at)
        for step in runbook.steps:
            self._schedule(incident, step, 0, self._due(incident, step, 0))

    def on_resolved(self, incident: Incident, runbook: Runbook) -> None:
        self.armed.add((incident.id, "resolved"))
        self.timer.cancel_prefix(f"step-{incident.id}-")
        self.metrics.operational_update_overdue.labels(incident=f"INC-{incident.id}").set(0)
        for i, step in enumerate(runbook.resolve.steps):
            self._schedule(incident, step, 0, self.clock() + i * 1e-3, resolve=True)

    async def resume(self, incident: Incident, runbook: Runbook) -> None:
        """After a restart: due steps run (once), future ones are armed again."""
        self.armed.add((incident.id, incident.state))
        runs = await self.store.step_runs(incident.id)
        for name, cut_short, _, result in runs:
            if result == "started":
                await self._interrupted(incident, runbook, name, cut_short)
        done = {(s, o) for s, o, _, _ in runs}
        if incident.state != "active":
            for step in runbook.resolve.steps:
                if (step.name, 0) not in done:
                    self._schedule(incident, step, 0, self.clock(), resolve=True)
            return
        if runbook.handover.notify and (handover_step(runbook).name, 0) not in done:
            self._schedule(incident, handover_step(runbook), 0, self.clock())
        now = self.clock()
        for step in runbook.steps:
            if step.action == "remind":
                await self._restore_overdue(incident, runbook, step, runs)
            occurrence = self._latest_due(incident, step, now)
            if occurrence is None:
                self._schedule(incident, step, 0, self._due(incident, step, 0))
            elif (step.name, occurrence) in done:
                if step.every is not None:
                    self._schedule(incident, step, occurrence + 1,
                                   self._due(incident, step, occurrence + 1))
            else:
                self._schedule(incident, step, occurrence, now)

    async def _restore_overdue(self, incident: Incident, runbook: Runbook, step: Step,
                         runs: list[tuple[str, int, float, str]]) -> None:
        """The gauge lives in memory: a reminder that fired before the restart, with no
        update since, is still overdue after it."""
        mine = {o: r for s, o, _, r in runs if s == step.name}
        if not mine or mine[max(mine)] != "ok":
            return
        last = await self._last_update(incident, runbook)
        if last is None or last <= self._due(incident, step, max(mine)):
            self.metrics.operational_update_overdue.labels(
                incident=f"INC-{incident.id}").set(1)

    async def _interrupted(self, incident: Incident, runbook: Runbook, name: str,
                     occurrence: int) -> None:
        step = (runbook.step(name) or (handover_step(runbook) if name == HANDOVER else None)
                or Step(name=name, action="unknown"))
        await self._record(incident, runbook, step, occurrence, Outcome(
            "failed", "interrupted by a restart: it may or may not have completed and is not "
                      "run again; check its posts (state unknown) and the channels"))

    def _due(self, incident: Incident, step: Step, occurrence: int) -> float:
        every = step.every.total_seconds() if step.every is not None else 0.0
        return incident.declared_at + step.first.total_seconds() + occurrence * every

    def _latest_due(self, incident: Incident, step: Step, now: float) -> int | None:
        first = incident.declared_at + step.first.total_seconds()
        if now < first:
            return None
        if step.every is None:
            return 0
        return int((now - first) // step.every.total_seconds())

    def _schedule(self, incident: Incident, step: Step, occurrence: int, at: float,
                  resolve: bool = False) -> None:
        self.timer.call_at(
            f"step-{incident.id}-{step.name}-{occurrence}{'-resolve' if resolve else ''}",
            at, self.run, incident.id, step.name, occurrence, resolve)

    # -- one run -----------------------------------------------------------

    async def run(self, incident_id: int, step_name: str, occurrence: int,
                  resolve: bool = False) -> None:
        incident = await self.store.incident(incident_id)
        runbook = self.context().runbooks.get(incident.runbook) if incident else None
        if incident is None or runbook is None:
            return
        step = runbook.step(step_name) or (
            handover_step(runbook) if step_name == handover_step(runbook).name else None)
        if step is None or (incident.state != "active" and not resolve):
            return
        if not self.leader.may_act():
            return  # a standby's timer: the leader runs this one (it re-arms at takeover)
        try:
            if not await self.store.claim_step(incident_id, step_name, occurrence, self.clock(),
                                               self.leader.fence()):
                return
        except Fenced:
            return  # the lease passed meanwhile: the new leader runs it
        except Exception:
            # Not claimed (a full disk, say): nothing ran; the step is tried again.
            self.log.exception("step_claim_failed", incident=f"INC-{incident_id}",
                               step=step_name)
            self._schedule(incident, step, occurrence, self.clock() + STEP_RETRY, resolve)
            return
        try:
            outcome = await self._act(incident, runbook, step, occurrence)
        except (StepFailed, TemplateFailure, ChannelError) as exc:
            outcome = Outcome("failed", str(exc))
        except Exception as exc:
            self.log.exception("step_crashed", incident=f"INC-{incident_id}", step=step_name)
            outcome = Outcome("failed", f"internal error: {exc}")
        await self._record_once(incident, runbook, step, occurrence, outcome)
        if step.every is not None and not resolve:
            self._schedule(incident, step, occurrence + 1,
                           self._due(incident, step, occurrence + 1))

    async def _record_once(self, incident: Incident, runbook: Runbook, step: Step,
                           occurrence: int, outcome: Outcome) -> None:
        """Record the outcome on the timeline; if the store cannot take it now (a full
        disk), try again later rather than let the error escape the job."""
        try:
            await self._record(incident, runbook, step, occurrence, outcome)
        except Exception:
            self.log.exception("step_record_failed", incident=f"INC-{incident.id}",
                               step=step.name, result=outcome.result, detail=outcome.detail)
            self.timer.call_at(f"record-{incident.id}-{step.name}-{occurrence}",
                               self.clock() + STEP_RETRY, self._record_once, incident, runbook,
                               step, occurrence, outcome)

    async def _record(self, incident: Incident, runbook: Runbook, step: Step, occurrence: int,
                outcome: Outcome) -> None:
        await self.store.finish_step(incident.id, step.name, occurrence, outcome.result)
        await self.store.log(incident.id, self.clock(), "step", f"runbook:{runbook.name}",
                       {"step": step.name, "action": step.action, "occurrence": occurrence,
                        "result": outcome.result, "detail": outcome.detail})
        self.metrics.runbook_steps.labels(runbook=runbook.name, action=step.action,
                                          result=outcome.result).inc()
        if outcome.result == "failed":
            self.log.error("step_failed", incident=f"INC-{incident.id}", step=step.name,
                           error=outcome.detail)
            await self.publisher.notify(incident.id, list(runbook.handover.notify),
                                  f"INC-{incident.id}: runbook step {step.name} failed: "
                                  f"{outcome.detail}", "step-failed")

    async def _act(self, incident: Incident, runbook: Runbook, step: Step,
                   occurrence: int) -> Outcome:
        if step.action == "post":
            return await self._post(incident, step)
        if step.action in ("notify", "handover"):
            targets = list(step.targets(incident.channels))
            text = (self.render(incident, step, targets[0] if targets else "")
                    if step.template is not None else
                    f"INC-{incident.id} ({incident.title}): {runbook.handover.role} has control "
                    f"of {', '.join(incident.channels)}; {', '.join(incident.suppress)} posts "
                    f"are held. Runbook: {runbook.name}.")
            await self.publisher.notify(incident.id, targets, text, step.name)
            return Outcome("ok", text)
        if step.action == "remind":
            return await self._remind(incident, runbook, step, occurrence)
        if step.action == "retract":
            return await self._retract(incident, step)
        raise StepFailed(f"unknown action {step.action}")

    async def _post(self, incident: Incident, step: Step) -> Outcome:
        ctx = self.context()
        targets = [c for c in step.targets(incident.channels)
                   if c in ctx.channels and ctx.channels[c].audience == "public"]
        # Rendered per channel, stored in one transaction, sent on every channel side
        # by side: a statement over 10,000 channels is out in seconds, not minutes.
        texts: list[tuple[str, str]] = []
        for start in range(0, len(targets), RENDER_CHUNK):
            texts += self.render_each(incident, step, targets[start:start + RENDER_CHUNK])
            await asyncio.sleep(0)  # a declaration is not kept waiting by 10,000 renders
        posts = await self.publisher.submit(texts, f"runbook:{step.name}",
                                            incident_id=incident.id)
        failed = [f"{p.channel}: {p.error or p.state}" for p in posts if p.state != "published"]
        if failed:
            raise StepFailed("; ".join(failed))
        return Outcome("ok", f"posted to {', '.join(targets)}")

    async def _remind(self, incident: Incident, runbook: Runbook, step: Step,
                occurrence: int) -> Outcome:
        window = step.every or step.first
        since = self._due(incident, step, occurrence) - window.total_seconds()
        last = await self._last_update(incident, runbook)
        if last is not None and last > since:
            return Outcome("skipped", "an operational update went out within the interval")
        self.metrics.operational_update_overdue.labels(incident=f"INC-{incident.id}").set(1)
        text = (self.render(incident, step, "") if step.template is not None else
                f"INC-{incident.id} ({incident.title}): an operational update is due; none in "
                f"the last {format_duration(window)}. Post one with: "
                f"switchboard incident update INC-{incident.id} --text ...")
        await self.publisher.notify(incident.id, list(step.targets(incident.channels)), text,
                                    step.name)
        return Outcome("ok", "reminded")

    async def _last_update(self, incident: Incident, runbook: Runbook) -> float | None:
        """When the latest operational update went out on the incident's channels; a
        runbook post counts at the time its step was scheduled for."""
        last: float | None = None
        for entry in await self.store.timeline(incident.id):
            if entry.event != "post_sent":
                continue
            at = entry.at
            name = entry.actor.removeprefix("runbook:")
            step = next((s for s in runbook.steps if s.name == name), None)
            if entry.actor.startswith("runbook:") and step is not None:
                occurrence = self._latest_due(incident, step, at)
                if occurrence is not None:
                    at = self._due(incident, step, occurrence)
            last = at if last is None else max(last, at)
        return last

    async def _retract(self, incident: Incident, step: Step) -> Outcome:
        within = (step.published_within.total_seconds() if step.published_within else 0.0)
        posts = await self.store.published_since(list(step.targets(incident.channels)),
                                                 incident.declared_at - within,
                                                 incident.suppress)
        posts = [p for p in posts if (p.published_at or 0) <= incident.declared_at]
        errors = []
        for post in posts:
            if post.channel not in self.publisher.workers:
                continue  # a channel gone from the config has nothing left to delete
            why_not = await self.publisher.retract(post, f"runbook:{step.name}",
                                                   f"retracted for INC-{incident.id}")
            if why_not is not None:
                errors.append(why_not)
        if errors:
            raise StepFailed("; ".join(errors))
        return Outcome("ok", f"retracted {len(posts)} post(s)")

    def render(self, incident: Incident, step: Step, channel: str) -> str:
        return self.render_each(incident, step, [channel])[0][1]

    def render_each(self, incident: Incident, step: Step,
                    channels: list[str]) -> list[tuple[str, str]]:
        """(channel, text) for each channel; the views are built once for all."""
        template = step.template
        if template is None:
            raise StepFailed(f"step {step.name} has no template")
        signal = incident.signal
        view = IncidentView(
            id=f"INC-{incident.id}", title=incident.title, severity=incident.severity,
            runbook=incident.runbook, declared_at=to_datetime(incident.declared_at),
            channels=tuple(incident.channels), reason=incident.reason or "",
            source=incident.source)
        signal_view = SignalView.of(None if signal is None else Signal(
            source=signal["source"], key=signal["key"], status=signal["status"],
            title=signal["title"], at=to_datetime(incident.declared_at),
            labels=signal.get("labels", {}), annotations=signal.get("annotations", {})))
        now = to_datetime(self.clock())
        return [(channel, template.render(Context(incident=view, now=now, signal=signal_view,
                                                  channel=channel)))
                for channel in channels]
