"""The real core in process, on a fake clock: store, gate, publisher, steps,
incidents and feed signals built in straight-line code as `app.py` builds them
(no HTTP listener, no state-dir lock), every part reading the time from one
`FakeTimer`.

    @drive
    async def test_something(tmp_path: Path) -> None:
        async with Rig(tmp_path) as rig:
            post = await rig.schedule("web", "Spring sale", at=600)
            await rig.advance(600)
            assert (await rig.post(post)).state == "published"

The state (database, outbox files) lives on tmpfs where the machine has one:
an fsync there costs nothing, so the suite takes the core's time, not the
disk's (on a busy disk, four times as long).

Time moves only through `rig.advance`: it runs the timer's jobs one moment
at a time and, after each, waits (in wall time, bounded) until the publisher's
workers and the store's threads are idle, so a send never sees a later moment
than the one its job ran at.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from switchboard.channels import build_channel, close_channels
from switchboard.channels.base import Channel, ChannelError, Message, Receipt
from switchboard.clock import Clock
from switchboard.config import ChannelConfig
from switchboard.gate import Gate
from switchboard.incidents import FeedSignals, Incidents
from switchboard.metrics import Metrics
from switchboard.model import NewPost, Post
from switchboard.poststates import PostState
from switchboard.publisher import Publisher
from switchboard.runbooks import channel_infos, load_runbooks
from switchboard.runbooks.context import RunContext
from switchboard.steps import StepRunner
from switchboard.store import Store
from switchboard.timer import FakeTimer, settle

P = ParamSpec("P")
START = 1_800_000_000.0  # the fake clock's start (Unix seconds)
TEST_TIMEOUT = 15.0  # wall seconds a single core test may take, all waiting included
IDLE_BOUND = 5.0  # wall seconds a wait for the core to go idle may take
TMPFS = Path("/dev/shm")

# One runbook most tests use: a holding statement, a reminder every 30m, an
# escalation at 60m, a 30m cooldown and the held posts rescheduled 5m apart.
OUTAGE = """\
name: outage
title: Outage
suppress: [marketing]
handover:
  notify: [ops-chat]
steps:
  - name: holding-statement
    at: 0m
    action: post
    template: "We know: {{ incident.title }}"
  - name: update-due
    every: 30m
    action: remind
    channels: [ops-chat]
  - name: escalate
    at: 60m
    action: notify
    channels: [ops-chat]
    template: "{{ incident.id }} open for an hour: {{ incident.title }}"
resolve:
  cooldown: 30m
  held_posts: reschedule
  min_spacing: 5m
  steps:
    - name: all-clear
      action: post
      template: "All clear: {{ incident.title }}"
"""


@dataclass
class Sent:
    """One post a scripted channel published: when the gate let it start."""

    post_id: int
    kind: str
    text: str
    at: float


class Scripted(Channel):
    """A channel a test steers: it records each attempt and each publication, can
    wait on an event before the true start (`before_start`) or after it, before
    answering (`before_answer`), and raises the errors queued in `failures`."""

    kind = "webhook"

    def __init__(self, config: ChannelConfig, *, clock: Clock) -> None:
        super().__init__(config, clock=clock)
        self.attempts: list[int] = []
        self.sent: list[Sent] = []
        self.retracted: list[str | None] = []
        self.failures: list[BaseException] = []
        self.retract_failures: list[ChannelError] = []
        self.before_start: asyncio.Event | None = None
        self.before_answer: asyncio.Event | None = None

    async def publish(self, message: Message) -> Receipt:
        self.attempts.append(int(message.post_id))
        if self.before_start is not None:
            await self.before_start.wait()
        at = message.begin(self.clock)  # the gate, asked at the true start
        if self.before_answer is not None:
            await self.before_answer.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(Sent(int(message.post_id), message.kind, message.text, at.timestamp()))
        return Receipt(remote_id=f"scripted-{message.post_id}")

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        if self.retract_failures:
            raise self.retract_failures.pop(0)
        self.retracted.append(remote_id)

    def release(self) -> None:
        """Let every paused send go on (and the next ones not pause)."""
        for event in (self.before_start, self.before_answer):
            if event is not None:
                event.set()
        self.before_start = self.before_answer = None


def channel_configs(tmp: Path) -> tuple[ChannelConfig, ...]:
    """`web` and `ops-chat` are real outbox files; `social` is a scripted channel."""
    return (
        ChannelConfig("web", "outbox", options={"path": str(tmp / "web.jsonl")}),
        ChannelConfig("social", "webhook", options={"url": "http://127.0.0.1:9/"}),
        ChannelConfig("ops-chat", "outbox", audience="internal",
                      options={"path": str(tmp / "ops-chat.jsonl")}),
    )


@dataclass
class Core:
    """One daemon's core: what a crash throws away and a restart builds again."""

    store: Store
    gate: Gate
    metrics: Metrics
    channels: dict[str, Channel]
    publisher: Publisher
    steps: StepRunner
    incidents: Incidents
    signals: FeedSignals
    recovered: dict[str, int] = field(default_factory=dict)

    @property
    def social(self) -> Scripted:
        channel = self.channels["social"]
        assert isinstance(channel, Scripted)
        return channel


async def build_core(tmp: Path, timer: FakeTimer, context: Callable[[], RunContext],
                     configs: tuple[ChannelConfig, ...], max_lateness: timedelta,
                     database: Path | None = None) -> Core:
    """Store -> gate -> publisher -> steps -> incidents -> feed signals, as app.py."""
    store = await Store.open(database or tmp / "switchboard.db")
    recovered = await store.recover(timer.now())
    gate = Gate()
    metrics = Metrics(CollectorRegistry())
    channels: dict[str, Channel] = {}
    for config in configs:
        channel = (Scripted(config, clock=timer.now) if config.id == "social"
                   else build_channel(config, timer.now))
        await channel.start()
        channels[config.id] = channel
    publisher = Publisher(store, gate, channels, timer, metrics, max_lateness)
    steps = StepRunner(store, publisher, timer, metrics, context)
    incidents = Incidents(store, gate, publisher, steps, timer, metrics, context)
    signals = FeedSignals(incidents)
    await incidents.load()
    await publisher.start()
    return Core(store, gate, metrics, channels, publisher, steps, incidents, signals, recovered)


class Rig:
    """The core on a fake clock, over runbooks written as YAML in tmp."""

    def __init__(self, tmp: Path, runbooks: dict[str, str] | None = None,
                 max_lateness: timedelta = timedelta(minutes=10)) -> None:
        self._own_tmp = TMPFS.is_dir()
        self.tmp = (Path(tempfile.mkdtemp(prefix="switchboard-core-", dir=TMPFS))
                    if self._own_tmp else tmp)
        self.timer = FakeTimer(START)
        self.max_lateness = max_lateness
        self.configs = channel_configs(self.tmp)
        books = self.tmp / "runbooks"
        books.mkdir(exist_ok=True)
        for name, text in (runbooks or {"outage": OUTAGE}).items():
            (books / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
        self.runbooks = load_runbooks(books, channel_infos(self.configs))
        self._context = RunContext(self.runbooks, {c.id: c for c in self.configs},
                                   ZoneInfo("UTC"))
        self.core: Core

    def context(self) -> RunContext:
        return self._context

    # -- life ----------------------------------------------------------------

    async def __aenter__(self) -> Rig:
        self.core = await self._build()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self.stop(self.core)
        finally:
            if self._own_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)

    async def _build(self) -> Core:
        return await build_core(self.tmp, self.timer, self.context, self.configs,
                                self.max_lateness)

    async def stop(self, core: Core) -> None:
        """A clean stop: paused sends go on, workers drain, the store closes."""
        core.social.release()
        await core.publisher.drain(timeout=IDLE_BOUND)
        await close_channels(core.channels)
        await core.store.close()

    async def crash(self, down_for: float = 0.0) -> Core:
        """The process dies where it stands (a send in flight never answers, its
        timers are gone); `down_for` seconds later the next one opens the same
        database, repairs it and builds the core again."""
        old = self.core
        for worker in old.publisher.workers.values():
            if worker._task is not None:
                worker._task.cancel()
        self.timer.cancel_prefix("")
        await settle()
        await close_channels(old.channels)
        await old.store.close()
        await self.timer.advance(down_for)
        self.core = await self._build()
        await self.idle()
        return self.core

    # -- shortcuts -----------------------------------------------------------

    @property
    def now(self) -> float:
        return self.timer.now()

    @property
    def store(self) -> Store:
        return self.core.store

    @property
    def incidents(self) -> Incidents:
        return self.core.incidents

    @property
    def social(self) -> Scripted:
        return self.core.social

    async def schedule(self, channel: str, text: str, at: float, kind: str = "marketing",
                       expires_at: float | None = None) -> int:
        """A post due `at` seconds after the start of the clock, as the API adds one."""
        due = START + at
        [post_id] = await self.store.add_posts(
            [NewPost(channel, kind, text, due, expires_at=expires_at)], "marketing", self.now)
        self.core.publisher.poke(due)
        return post_id

    async def post(self, post_id: int) -> Post:
        post = await self.store.post(post_id)
        assert post is not None
        return post

    async def states(self, ids: list[int]) -> list[str]:
        return [str(p.state) for p in await self.store.posts(ids)]

    async def declare(self, runbook: str = "outage", title: str = "Lines down",
                      channels: list[str] | None = None) -> int:
        incident = await self.incidents.declare(runbook=runbook, title=title, actor="ops",
                                                channels=channels)
        await self.idle()
        return incident.id

    async def resolve(self, incident_id: int) -> None:
        await self.incidents.resolve(incident_id, actor="ops")
        await self.idle()

    def outbox(self, channel: str) -> list[dict[str, Any]]:
        """The lines an outbox channel wrote: published posts and retractions."""
        path = self.tmp / f"{channel}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def published(self, channel: str) -> list[tuple[int, str, float]]:
        """(post id, text, moment of the true start) of each post out on `channel`."""
        if channel == "social":
            return [(s.post_id, s.text, s.at) for s in self.social.sent]
        return [(int(r["post_id"]), r["text"], _seconds(r["sent_at"]))
                for r in self.outbox(channel) if "post_id" in r]

    def texts(self, channel: str) -> list[str]:
        return [text for _, text, _ in self.published(channel)]

    def gauge(self, name: str, **labels: str) -> float:
        value = self.core.metrics.registry.get_sample_value(f"switchboard_{name}", labels)
        return 0.0 if value is None else value

    # -- time and waiting ----------------------------------------------------

    async def advance(self, seconds: float) -> None:
        """Move the fake clock `seconds` on, one due job at a time, waiting after each
        until the core is idle: every send happens at the moment its job ran."""
        target = self.now + seconds
        await self.idle()
        while (due := self.timer.next_at()) is not None and due <= target:
            await self.timer.advance_to(due)
            await self.idle()
        await self.timer.advance_to(target)
        await self.idle()

    async def idle(self) -> None:
        """Wait until nothing is moving: no post queued in a worker or claimed but
        unanswered (a paused send aside), no shared transaction pending, and the
        store's writer caught up, the same two rounds in a row."""
        deadline = time.monotonic() + IDLE_BOUND
        last: object = None
        while True:
            await settle()
            mark = await self._mark()
            if mark == last and self._quiet():
                return
            last = mark
            if time.monotonic() > deadline:
                raise AssertionError(f"the core did not go idle: {mark}")
            await asyncio.sleep(0.001)

    async def until(self, condition: Callable[[], Awaitable[bool]], what: str) -> None:
        """Wait (wall time, bounded) for `condition`: a send that a thread runs, say."""
        deadline = time.monotonic() + IDLE_BOUND
        while not await condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.001)

    async def _mark(self) -> object:
        # The store call runs on the writer thread after every write asked before it.
        counts = await self.store.count_by_state()
        return (sorted(counts.items()), len(self.social.attempts), len(self.social.sent))

    def _quiet(self) -> bool:
        publisher = self.core.publisher
        paused = self.social.before_start is not None or self.social.before_answer is not None
        for worker in publisher.workers.values():
            if worker.queue and not (paused and worker.channel is self.social):
                return False
        shared = (publisher.claims, publisher.records)
        return not any(s._pending or s._tasks for s in shared)


def fail_once(store: object, name: str, error: Callable[[], Exception], *, times: int = 1,
              when: Callable[..., bool] | None = None) -> list[int]:
    """Make the store's `name` raise `error()` on its next `times` calls (only the
    calls whose arguments `when` accepts, if given); the list returned counts the
    calls that failed. A fresh error each time: one raised again would carry the
    tracebacks of the earlier raises."""
    real = getattr(store, name)
    failed: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if len(failed) < times and (when is None or when(*args, **kwargs)):
            failed.append(1)
            raise error()
        return await real(*args, **kwargs)

    setattr(store, name, flaky)
    return failed


def disk_full() -> Exception:
    """The error a store call meets when its disk fills: `fail_once`'s usual one."""
    return OSError("disk full")


def drive(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """An `async def` test run to its end on a fresh loop (bounded in wall time)."""
    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), TEST_TIMEOUT))
    return run


def _seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


__all__ = ["OUTAGE", "START", "Core", "PostState", "Rig", "Scripted", "Sent", "disk_full",
           "drive", "fail_once"]
