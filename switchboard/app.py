"""The composition root: builds the daemon in straight-line code, tears it down
in reverse, and hands SIGHUP to the reloader (`switchboard.reload`).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from switchboard import __version__
from switchboard.api import Api, Services
from switchboard.auth import Tokens
from switchboard.channels import close_channels, start_channels
from switchboard.clock import Clock, rfc3339, system_clock
from switchboard.config import Config
from switchboard.console import Console
from switchboard.dispatcher import Dispatcher
from switchboard.gate import Gate
from switchboard.incidents import Context, Incidents
from switchboard.listener import GuardedSite, Limits, app_runner, bind_listener
from switchboard.metrics import Metrics
from switchboard.model import Post
from switchboard.people import People
from switchboard.posts import (
    EDITABLE_STATES,
    ChannelLimit,
    describe_changes,
    post_edit,
    release_times,
)
from switchboard.poststates import PostState
from switchboard.refusals import Refused, conflict, not_found
from switchboard.reload import Reloader
from switchboard.settings import Settings
from switchboard.settings import load_settings as load_settings  # where callers look for it
from switchboard.steps import StepRunner
from switchboard.store import StateLock, Store, StoreUnavailable
from switchboard.systemd import Notifier
from switchboard.throttle import Throttle
from switchboard.watch import FeedWatch

log = structlog.get_logger("switchboard")
STORE_CHECK_EVERY = 1.0  # seconds between checks that the database file is still ours
RELEASABLE = ("held", "unknown", "failed", "missed")


class Daemon:
    """Every live part of a running switchboard, wired once in `build`."""

    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics(CollectorRegistry())
        self.tokens = Tokens(settings.config.access)
        self.throttle = Throttle(clock)
        self.ready = False
        self.started_at = clock()
        self.stop_event = asyncio.Event()
        self.cleanup: list[Callable[[], Awaitable[Any]]] = []
        # set in build()
        self.store: Store
        self.gate: Gate
        self.scheduler: AsyncIOScheduler
        self.dispatcher: Dispatcher
        self.incidents: Incidents
        self.feeds: FeedWatch
        self.people: People
        self.reloader: Reloader
        self.notifier = Notifier()
        self.limits = Limits.from_env(os.environ)
        self._context: tuple[Settings, Context] | None = None
        self._zeroing: asyncio.Task[None] | None = None
        # The outcome of the last SIGHUP, for `status` (None: no reload yet).
        self.last_reload: dict[str, Any] | None = None

    @property
    def config(self) -> Config:
        return self.settings.config

    def context(self) -> Context:
        # Built once per settings (a reload swaps them): with thousands of channels
        # a fresh map on every call costs a millisecond each time.
        if self._context is None or self._context[0] is not self.settings:
            cfg = self.settings.config
            self._context = (self.settings, Context(
                self.settings.runbooks, {c.id: c for c in cfg.channels}, cfg.timezone))
        return self._context[1]

    async def build(self) -> None:
        """Straight-line wiring; each part registers its teardown (run in reverse)."""
        cfg = self.config
        listen = f"{cfg.listen_host}:{cfg.listen_port}"
        # One writer: the lock comes before the store is read, and the port is
        # bound before start-up repair, so a second daemon changes nothing.
        lock = StateLock.take(cfg.state_dir, f"pid {os.getpid()}, listening on {listen}")
        self.cleanup.append(_sync(lock.release))
        listener = bind_listener(cfg.listen_host, cfg.listen_port)
        self.cleanup.append(_sync(listener.close))
        self.store = Store.open(cfg.database)
        self.cleanup.append(_sync(self.store.close))
        self.store.start_checkpoints()
        recovered = self.store.recover(self.clock())
        if recovered["unknown"]:
            log.warning("posts_unknown_after_crash", count=recovered["unknown"])
        if recovered["not_sent"]:
            log.warning("immediate_sends_not_sent_after_restart", count=recovered["not_sent"])
        self.people = People(self.store, self.clock, lambda: self.config)
        self.tokens = Tokens(cfg.access, self.people.caller_for_digest)
        self._bootstrap_people()

        self.gate = Gate()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.start()
        self.cleanup.append(_sync(lambda: self.scheduler.shutdown(wait=False)))
        self.scheduler.add_job(self._watch_store, "interval", seconds=STORE_CHECK_EVERY,
                               id="store-check", coalesce=True, max_instances=1)

        channels = await start_channels(cfg.channels)
        # Closes whichever channels are live at the end (reloads replace some).
        self.cleanup.append(lambda: close_channels(
            self.dispatcher.workers_channels() if hasattr(self, "dispatcher") else channels))

        self.dispatcher = Dispatcher(self.store, self.gate, channels, self.scheduler,
                                     self.metrics, self.clock, cfg.max_lateness)
        self.incidents = Incidents(self.store, self.gate, self.dispatcher, self.scheduler,
                                   self.metrics, self.clock, self.context)
        self.dispatcher.on_published = self.incidents.posts_published
        self.incidents.engine = StepRunner(self.store, self.incidents, self.scheduler,
                                           self.metrics, self.clock)
        self.incidents.load()
        self.dispatcher.start()
        self.cleanup.append(self.dispatcher.drain)

        self.feeds = FeedWatch(cfg.feeds, self.incidents, self.metrics, self.clock)
        await self.feeds.start()
        self.cleanup.append(lambda: self.feeds.stop())
        self.reloader = Reloader(self, self.dispatcher, self.feeds, self.metrics, self.clock,
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

    def api_services(self) -> Services:
        """The services the API calls; reloads are seen through the getters."""
        return Services(
            store=self.store, clock=self.clock, gate=self.gate, dispatcher=self.dispatcher,
            incidents=self.incidents, people=self.people, throttle=self.throttle,
            metrics=self.metrics, limits=self.limits,
            current_config=lambda: self.config, current_tokens=lambda: self.tokens,
            current_feeds=lambda: self.feeds, is_ready=lambda: self.ready,
            is_alive=lambda: self.scheduler.running, check_store=self.check_store,
            refresh_metrics=self.refresh_metrics, status=self.status,
            channel_list=self.channel_list, review=self.review, edit_post=self.edit_post,
            review_many=self.review_many, current_runbooks=lambda: self.settings.runbooks)

    def _bootstrap_people(self) -> None:
        written = self.people.bootstrap(self.config.state_dir, self.config.admin_password_file)
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
        self.incidents.refresh_metrics()
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

    def check_store(self) -> bool:
        """Is the database file still the one this daemon writes? If not, every write
        already fails (503) and no post is claimed; this makes it seen (metric,
        /readyz, log) even when nothing writes."""
        was_failed = self.store.failure is not None
        try:
            self.store.check_file()
        except StoreUnavailable as exc:
            if not was_failed:
                log.error("store_failed", reason=exc.reason, error=exc.message)
        failure = self.store.failure
        self.metrics.store_healthy.set(0 if failure else 1)
        for reason in STORE_FAILURES:
            self.metrics.store_failed.labels(reason=reason).set(
                1 if failure is not None and failure.reason == reason else 0)
        return failure is None

    async def _watch_store(self) -> None:  # a coroutine: APScheduler runs it on the loop
        self.check_store()

    def refresh_metrics(self) -> None:
        self.check_store()
        counts = self.store.count_by_state()
        self.metrics.posts_scheduled.set(counts.get(PostState.SCHEDULED, 0)
                                         + counts.get(PostState.QUEUED, 0))
        self.metrics.posts_unknown.set(counts.get(PostState.UNKNOWN, 0))
        self.metrics.posts_held.set(counts.get(PostState.HELD, 0))
        self.incidents.refresh_metrics()

    def status(self) -> dict[str, Any]:
        counts = self.store.count_by_state()
        counts[PostState.SCHEDULED] = (counts.get(PostState.SCHEDULED, 0)
                                       + counts.pop(PostState.QUEUED, 0))
        now = self.clock()
        return {
            "version": __version__,
            "ready": self.ready,
            "started_at": rfc3339(self.started_at),
            "config": str(self.config.path),
            "incidents_active": [f"INC-{i.id}" for i in self.store.incidents()],
            "channels_under_incident": sorted(self.gate.channels_under_control(now)),
            "posts": counts,
            "next_due": rfc3339(self.store.next_due()),
            "runbooks": sorted(self.settings.runbooks),
            "feeds": [f.id for f in self.config.feeds],
            "last_reload": self.last_reload,
        }

    def channel_list(self) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        for cid, worker in self.dispatcher.workers.items():
            item = worker.channel.describe()
            incidents = self.gate.controlling(cid, now)
            item["under_incident"] = [f"INC-{i}" for i in incidents]
            item["control"] = "ops" if incidents else "marketing"
            item["queued"] = len(worker.queue)
            out.append(item)
        return out

    def review(self, post_id: int, action: str, actor: str, at: float | None) -> Post:
        """cancel / release / drop one post (marketing's review of held posts)."""
        post = self.store.post(post_id)
        if post is None:
            raise not_found(f"no post {post_id}")
        now = self.clock()
        # `queued` is shown as scheduled: it can be cancelled until its send starts.
        moves = {"cancel": ("cancelled", ("scheduled", "queued")),
                 "release": ("scheduled", RELEASABLE),
                 "drop": ("dropped", ("held", "unknown", "failed", "missed", "suppressed"))}
        to_state, allowed = moves[action]
        fields: dict[str, Any] = {}
        if action == "release":
            fields["due_at"] = now if at is None else at
            fields["error"] = None
        if not self.store.transition([post_id], PostState(to_state),
                                     tuple(PostState(a) for a in allowed), now, actor,
                                     f"{action} by {actor}", **fields):
            raise conflict(f"post {post_id} is {post.state}; {action} needs it "
                           f"{' or '.join(allowed)}")
        if action == "release":
            self.dispatcher.poke(fields["due_at"])
        updated = self.store.post(post_id)
        assert updated is not None
        return updated

    def edit_post(self, post_id: int, body: dict[str, Any], role: str, actor: str,
                  channels: dict[str, ChannelLimit]) -> Post:
        """`post edit`: new text, time, channel or expiry for a post not yet sending.

        A marketing post on a channel that needs approval waits for an approver
        again after any edit: what was approved is not what would go out.
        """
        post = self.store.post(post_id)
        if post is None:
            raise not_found(f"no post {post_id}")
        changes = post_edit(post, body, role=role, now=self.clock(),
                            tz=self.config.timezone, channels=channels)
        if changes:
            if post.state == "queued" and not self._take_back(post):
                raise conflict(f"post {post_id} is being sent; it can no longer be edited")
            reason = describe_changes(post, changes)
            again = post.kind == "marketing" and self.config.needs_approval(
                changes.get("channel", post.channel))
            if again and post.state != "pending_approval":
                reason += "; needs approval again"
            if not self.store.update_post_fields(post_id, changes, EDITABLE_STATES,
                                                 self.clock(), actor, reason,
                                                 "pending_approval" if again else None):
                # Out of its queue but not edited: back to the schedule, never stranded.
                self.store.transition([post_id], PostState.SCHEDULED, (PostState.QUEUED,),
                                      self.clock(),
                                      actor, "edit failed; returned to the schedule")
                self.dispatcher.arm()
                raise conflict(f"post {post_id} changed state meanwhile; see post show")
            # Earlier or later: the timer must follow the new time.
            self.dispatcher.arm()
        updated = self.store.post(post_id)
        assert updated is not None
        return updated

    def _take_back(self, post: Post) -> bool:
        """Take a `queued` post out of its channel's queue before it is edited.

        Only a post still waiting in the queue is safe to change: once a worker
        took it into a batch, its copy could be sent with the old text.
        """
        worker = self.dispatcher.workers.get(post.channel)
        if worker is None:
            return False
        for entry in list(worker.queue):
            if entry[0].id == post.id:
                worker.queue.remove(entry)
                waiter = entry[1]
                if waiter is not None and not waiter.done():
                    waiter.set_result(post)
                return True
        return False

    def review_many(self, ids: list[int], action: str, actor: str, at: float | None,
                    spacing: timedelta | None,
                    may_act: Callable[[Post], None] = lambda post: None) -> dict[str, Any]:
        """Bulk cancel / release / drop; each post on its own, so one refusal stops nothing.

        `may_act` raises Refused for a post the caller's rights do not reach. A
        spaced release gives each channel's posts one slot per `spacing`, the
        first at `at` (or now).
        """
        posts = {p.id: p for p in self.store.posts(ids)}
        refused: list[dict[str, Any]] = []
        for post in list(posts.values()):
            try:
                may_act(post)
            except Refused as exc:
                refused.append({"id": post.id, "reason": exc.message})
                del posts[post.id]
        turned_away = {r["id"] for r in refused}
        start = self.clock() if at is None else at
        times: dict[int, float] = {}
        if action == "release":
            ready = [p for p in posts.values() if p.state in RELEASABLE]
            times = release_times(ready, start, spacing or timedelta())
        done: list[int] = []
        for post_id in ids:
            if post_id in turned_away:
                continue
            if post_id not in posts:
                refused.append({"id": post_id, "reason": f"no post {post_id}"})
                continue
            try:
                self.review(post_id, action, actor, times.get(post_id, at))
            except Refused as exc:
                refused.append({"id": post_id, "reason": exc.message})
                continue
            done.append(post_id)
        return {"action": action, "done": done, "refused": refused,
                "due_at": {str(i): rfc3339(times[i]) for i in done if i in times}}


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
        if daemon.scheduler.running:
            daemon.notifier.watchdog()
        await asyncio.sleep(interval)
