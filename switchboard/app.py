"""The composition root: builds the daemon in straight-line code, tears it down
in reverse, and hands SIGHUP to the reloader (`switchboard.reload`).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from switchboard import __version__
from switchboard.api import Api, Services
from switchboard.auth import Tokens
from switchboard.channels import close_channels, start_channels
from switchboard.clock import rfc3339, system_clock
from switchboard.config import Config
from switchboard.console import Console
from switchboard.gate import Gate
from switchboard.incidents import FeedSignals, Incidents
from switchboard.leadership import Leader, LeaderOnly, LeaseKeeper, SoleLeader
from switchboard.listener import GuardedSite, Limits, app_runner, bind_listener
from switchboard.metrics import Metrics
from switchboard.people import People
from switchboard.poststates import PostState
from switchboard.publisher import Publisher
from switchboard.reload import Reloader
from switchboard.review import Review
from switchboard.roles import Confirmations, Roles
from switchboard.runbooks.context import RunContext
from switchboard.settings import Settings
from switchboard.settings import load_settings as load_settings  # where callers look for it
from switchboard.steps import StepRunner
from switchboard.store import StateLock, Store, StoreUnavailable
from switchboard.store.postgres import PostgresStore
from switchboard.systemd import Notifier
from switchboard.throttle import Throttle
from switchboard.timer import SchedulerTimer, Timer
from switchboard.watch import FeedWatch

log = structlog.get_logger("switchboard")
STORE_CHECK_EVERY = 1.0  # seconds between checks that the database file is still ours


class Daemon:
    """Every live part of a running switchboard, wired once in `build`."""

    def __init__(self, settings: Settings, timer: Timer | None = None) -> None:
        self.settings = settings
        # The one clock of the whole daemon: a test passes a FakeTimer and moves it.
        self._own_timer = SchedulerTimer(system_clock) if timer is None else None
        self.timer: Timer = self._own_timer or timer  # type: ignore[assignment]
        self.clock = self.timer.now
        self.metrics = Metrics(CollectorRegistry())
        self.tokens = Tokens(settings.config.access)
        self.throttle = Throttle(self.clock)
        self.ready = False
        self.started_at = self.clock()
        self.stop_event = asyncio.Event()
        self.cleanup: list[Callable[[], Awaitable[Any]]] = []
        # set in build()
        self.store: Store
        self.gate: Gate
        self.publisher: Publisher
        self.steps: StepRunner
        self.incidents: Incidents
        self.signals: FeedSignals
        self.review: Review
        self.feeds: FeedWatch
        self.people: People
        self.reloader: Reloader
        self.leader: Leader = SoleLeader()
        self.roles: Roles | None = None  # on a shared database only
        self.notifier = Notifier()
        self.limits = Limits.from_env(os.environ)
        self._context: tuple[Settings, RunContext] | None = None
        self._zeroing: asyncio.Task[None] | None = None
        # The outcome of the last SIGHUP, for `status` (None: no reload yet).
        self.last_reload: dict[str, Any] | None = None

    @property
    def config(self) -> Config:
        return self.settings.config

    def context(self) -> RunContext:
        # Built once per settings (a reload swaps them): with thousands of channels
        # a fresh map on every call costs a millisecond each time.
        if self._context is None or self._context[0] is not self.settings:
            cfg = self.settings.config
            self._context = (self.settings, RunContext(
                self.settings.runbooks, {c.id: c for c in cfg.channels}, cfg.timezone))
        return self._context[1]

    async def build(self) -> None:
        """Straight-line wiring; each part registers its teardown (run in reverse)."""
        cfg = self.config
        listener = await self._open_store()
        confirm, keeper = None, None
        if cfg.store.shared:
            # One writer is the lease's holder (design §7.1): it repairs at takeover.
            self.leader = keeper = LeaseKeeper(self.store, self.metrics)
            confirm = Confirmations(keeper, self.store)
        else:
            self.metrics.leader.set(1)
            self.metrics.leader_epoch.set(1)
            await self._recover()
        self.people = People(self.store, self.clock, lambda: self.config)
        self.tokens = Tokens(cfg.access, self.people.caller_for_digest)
        await self._bootstrap_people()

        self.gate = Gate()
        if self._own_timer is not None:
            self._own_timer.start()
            self.cleanup.append(_sync(self._own_timer.stop))
        self.timer.call_at("store-check", self.clock() + STORE_CHECK_EVERY, self._watch_store)

        channels = await start_channels(cfg.channels, self.clock)
        # Closes whichever channels are live at the end (reloads replace some).
        self.cleanup.append(lambda: close_channels(
            self.publisher.channels() if hasattr(self, "publisher") else channels))

        # One direction: store -> gate -> publisher -> steps -> incidents -> API.
        self.publisher = Publisher(self.store, self.gate, channels, self.timer, self.metrics,
                                   cfg.max_lateness, self.leader)
        # A standby's incident and step timers do nothing: the leader runs them.
        timer = self.timer if keeper is None else LeaderOnly(self.timer, keeper)
        self.steps = StepRunner(self.store, self.publisher, timer, self.metrics,
                                self.context, self.leader)
        self.incidents = Incidents(self.store, self.gate, self.publisher, self.steps,
                                   timer, self.metrics, self.context,
                                   None if confirm is None else confirm.confirm_holds)
        self.signals = FeedSignals(self.incidents)
        self.review = Review(self.store, self.publisher, self.timer, lambda: self.config)
        if confirm is None or keeper is None:
            await self.incidents.load()
            await self.publisher.start()
            self.cleanup.append(self.publisher.drain)
        else:
            # Run after the drain (teardown runs backwards): the lease is handed over
            # once this daemon's sends in flight have their outcomes recorded.
            await self.publisher.start(paused=True)
            self.roles = Roles(keeper, confirm, self.store, self.gate, self.publisher,
                               self.steps, self.incidents, self.timer, cfg.store.dsn or "")
            self.cleanup.append(self.roles.stop)
            self.cleanup.append(self.publisher.drain)
            await self.roles.start()

        self.feeds = FeedWatch(cfg.feeds, self.signals, self.metrics, self.clock)
        await self.feeds.start()
        self.cleanup.append(lambda: self.feeds.stop())
        self.reloader = Reloader(self, self.publisher, self.feeds, self.metrics, self.clock,
                                 self.people.caller_for_digest, self._reloaded)

        api = Api(self.api_services())
        app = api.application()
        Console(api).mount(app)  # the web console and its event stream, on the same port
        runner = app_runner(app, self.limits)
        await runner.setup()
        await GuardedSite(runner, listener, self.limits).start()
        self.cleanup.append(runner.cleanup)
        self.metrics.config_last_reload_successful.set(1)
        self.metrics.config_last_reload_success_timestamp_seconds.set(self.clock())
        self.zero_counters()

    async def _open_store(self) -> socket.socket:
        """The store, after the one-writer lock (SQLite: state_dir's flock) and the
        listener: the port is bound before any repair, so a second daemon changes
        nothing. Returns the bound listener."""
        cfg = self.config
        listen = f"{cfg.listen_host}:{cfg.listen_port}"
        if not cfg.store.shared:
            lock = StateLock.take(cfg.state_dir, f"pid {os.getpid()}, listening on {listen}")
            self.cleanup.append(_sync(lock.release))
        listener = bind_listener(cfg.listen_host, cfg.listen_port)
        self.cleanup.append(_sync(listener.close))
        if cfg.store.shared:
            backend = await asyncio.to_thread(PostgresStore.open, cfg.store.dsn or "")
            self.store = await Store.over(backend)
        else:
            self.store = await Store.open(cfg.database)
        self.cleanup.append(self.store.close)
        await self.store.start_checkpoints()
        return listener

    async def _recover(self) -> None:
        recovered = await self.store.recover(self.clock())
        if recovered["unknown"]:
            log.warning("posts_unknown_after_crash", count=recovered["unknown"])
        if recovered["not_sent"]:
            log.warning("immediate_sends_not_sent_after_restart", count=recovered["not_sent"])

    def leadership(self) -> dict[str, Any]:
        """Which role this daemon plays (`/readyz`, `status`)."""
        return {"role": self.leader.role, "epoch": self.leader.epoch}

    def api_services(self) -> Services:
        """The services the API calls; reloads are seen through the getters."""
        return Services(
            store=self.store, clock=self.clock, gate=self.gate, publisher=self.publisher,
            incidents=self.incidents, signals=self.signals, people=self.people,
            throttle=self.throttle,
            metrics=self.metrics, limits=self.limits,
            current_config=lambda: self.config, current_tokens=lambda: self.tokens,
            current_feeds=lambda: self.feeds, is_ready=lambda: self.ready,
            is_alive=lambda: self.timer.running, check_store=self.check_store,
            refresh_metrics=self.refresh_metrics, status=self.status,
            channel_list=self.channel_list, review=self.review,
            current_runbooks=lambda: self.settings.runbooks, leadership=self.leadership)

    async def _bootstrap_people(self) -> None:
        written = await self.people.bootstrap(self.config.state_dir,
                                              self.config.admin_password_file)
        if written is not None:
            # The password itself goes only into the 0600 file, never to the log.
            print(f"switchboard: created the person 'admin'; its first password is in "
                  f"{written} (mode 0600): sign in, set a new one with `switchboard user "
                  "password admin`, then delete the file", file=sys.stderr, flush=True)
            log.info("admin_person_created", password_file=str(written))

    async def teardown(self) -> None:
        while self.cleanup:
            step = self.cleanup.pop()
            try:
                await step()
            except Exception:
                log.exception("teardown_step_failed")

    # -- reload ------------------------------------------------------------

    async def reload(self) -> bool:
        """SIGHUP: False if the new configuration was refused (nothing changed)."""
        return await self.reloader.reload()

    async def _reloaded(self) -> None:
        await self.incidents.refresh_metrics()
        self.zero_counters()

    # -- views -------------------------------------------------------------

    def zero_counters(self) -> None:
        """Labelled counters appear at 0 for every channel and feed, so `rate()` and
        `increase()` see the first event instead of starting from it. Beyond the
        first ZERO_NOW channels, the rest follow from a task, ZERO_NOW a loop step:
        10,000 channels would otherwise add a third of a second to start-up."""
        for feed in self.config.feeds:
            for status in ("firing", "resolved"):
                self.metrics.feed_signals.labels(feed=feed.id, status=status)
        ids = [c.id for c in self.config.channels]
        self._zero_channels(ids[:ZERO_NOW])
        if len(ids) > ZERO_NOW:
            self._zeroing = asyncio.get_running_loop().create_task(self._zero_later(ids))

    async def _zero_later(self, ids: list[str]) -> None:
        for start in range(ZERO_NOW, len(ids), ZERO_NOW):
            await asyncio.sleep(0)
            self._zero_channels(ids[start:start + ZERO_NOW])

    def _zero_channels(self, ids: list[str]) -> None:
        for channel in ids:
            for kind in ("marketing", "operational"):
                self.metrics.posts_published.labels(channel=channel, kind=kind)
            self.metrics.posts_suppressed.labels(channel=channel)

    async def check_store(self) -> bool:
        """Is the database file still the one this daemon writes? If not, every write
        already fails (503) and no post is claimed; this makes it seen (metric,
        /readyz, log) even when nothing writes."""
        was_failed = self.store.failure is not None
        try:
            await self.store.check_file()
        except StoreUnavailable as exc:
            if not was_failed:
                log.error("store_failed", reason=exc.reason, error=exc.message)
        failure = self.store.failure
        self.metrics.store_healthy.set(0 if failure else 1)
        for reason in STORE_FAILURES:
            self.metrics.store_failed.labels(reason=reason).set(
                1 if failure is not None and failure.reason == reason else 0)
        return failure is None

    async def _watch_store(self) -> None:
        try:
            await self.check_store()
        finally:
            self.timer.call_at("store-check", self.clock() + STORE_CHECK_EVERY,
                               self._watch_store)

    async def refresh_metrics(self) -> None:
        await self.check_store()
        counts = await self.store.count_by_state()
        self.metrics.posts_scheduled.set(counts.get(PostState.SCHEDULED, 0)
                                         + counts.get(PostState.QUEUED, 0))
        self.metrics.posts_unknown.set(counts.get(PostState.UNKNOWN, 0))
        self.metrics.posts_held.set(counts.get(PostState.HELD, 0))
        await self.incidents.refresh_metrics()

    async def status(self) -> dict[str, Any]:
        counts = await self.store.count_by_state()
        counts[PostState.SCHEDULED] = (counts.get(PostState.SCHEDULED, 0)
                                       + counts.pop(PostState.QUEUED, 0))
        now = self.clock()
        return {
            "version": __version__,
            "ready": self.ready,
            "started_at": rfc3339(self.started_at),
            "config": str(self.config.path),
            "incidents_active": [f"INC-{i.id}" for i in await self.store.incidents()],
            "channels_under_incident": sorted(self.gate.channels_under_control(now)),
            "posts": counts,
            "next_due": rfc3339(await self.store.next_due()),
            "runbooks": sorted(self.settings.runbooks),
            "feeds": [f.id for f in self.config.feeds],
            "last_reload": self.last_reload,
            **self.leadership(),
        }

    def channel_list(self) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        for cid, worker in self.publisher.workers.items():
            item = worker.channel.describe()
            incidents = self.gate.controlling(cid, now)
            item["under_incident"] = [f"INC-{i}" for i in incidents]
            item["control"] = "ops" if incidents else "marketing"
            item["queued"] = len(worker.queue)
            out.append(item)
        return out


STORE_FAILURES = ("deleted", "replaced", "unwritable")
ZERO_NOW = 1000  # channels whose counters are made before ready (see zero_counters)


def _sync(fn: Callable[[], Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        fn()
    return run


async def serve(settings: Settings) -> int:
    """`switchboard run`: build, serve until SIGTERM/SIGINT, drain, exit 0."""
    daemon = Daemon(settings)
    loop = asyncio.get_running_loop()
    try:
        await daemon.build()
    except BaseException:
        await daemon.teardown()
        raise
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop_event.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(daemon.reload()))
    # Everything built so far lives as long as the daemon: keep it out of the
    # collector's full passes, which otherwise pause the loop for milliseconds.
    gc.collect()
    gc.freeze()
    daemon.ready = True
    daemon.metrics.ready.set(1)
    daemon.notifier.ready(f"serving on {settings.config.listen_host}:"
                          f"{settings.config.listen_port}")
    watchdog = loop.create_task(_watchdog(daemon))
    log.info("ready", listen=f"{settings.config.listen_host}:{settings.config.listen_port}",
             version=__version__, config=str(settings.config.path))
    await daemon.stop_event.wait()
    log.info("stopping")
    daemon.ready = False
    daemon.metrics.ready.set(0)
    daemon.notifier.stopping()
    watchdog.cancel()
    await daemon.teardown()
    log.info("stopped")
    return 0


async def _watchdog(daemon: Daemon) -> None:
    interval = daemon.notifier.watchdog_interval
    if interval is None:
        return
    while True:
        # Only a loop that still runs its scheduler pets the watchdog.
        if daemon.timer.running:
            daemon.notifier.watchdog()
        await asyncio.sleep(interval)
