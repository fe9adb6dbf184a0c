"""Reloading the configuration (SIGHUP): prepare everything, then commit.

Prepare does all that can fail and touches nothing live: the config file, its
runbooks and the test renders of their templates are read in a worker thread
(the loop keeps serving meanwhile), new and changed channels are started, new
and changed feed pollers are built but not started. If any of it fails, what
was started is closed, `switchboard_config_last_reload_successful` drops to 0
and the daemon runs on exactly as it was.

Commit follows one marked point of no return and has no step that a bad
configuration can make fail: the settings, tokens, max_lateness and feeds are
swapped in one loop step, together with the dispatcher's channel map; what was
replaced is then wound down. Channels and feed pollers whose settings did not
change are kept as they run: a poller keeps its snapshot of the last document,
so an alert it has already seen is not taken for a new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from switchboard.auth import PersonLookup, Tokens
from switchboard.channels import Channel, close_channels, start_channels
from switchboard.clock import Clock, rfc3339
from switchboard.config import Config
from switchboard.metrics import Metrics
from switchboard.settings import Settings, load_settings
from switchboard.watch import FeedChanges, FeedWatch
from switchboard.yamldoc import InvalidFile

log = structlog.get_logger("switchboard")
RELOAD_PROBLEMS_SHOWN = 5


class LiveSettings(Protocol):
    """The parts of the running daemon a reload replaces, and where it says how it went."""

    settings: Settings
    tokens: Tokens
    last_reload: dict[str, Any] | None


class ChannelSwitch(Protocol):
    """The dispatcher, as a reload sees it."""

    max_lateness: float

    def channels(self) -> dict[str, Channel]: ...

    async def replace_channels(self, channels: dict[str, Channel]) -> None: ...


@dataclass(frozen=True)
class ChannelChanges:
    serving: dict[str, Channel]  # the dispatcher's new map: kept and started channels
    started: dict[str, Channel]  # new and changed, started by this reload
    replaced: dict[str, Channel]  # live ones to close once the dispatcher let them go


@dataclass(frozen=True)
class Prepared:
    """A new configuration with every fallible part already built."""

    settings: Settings
    tokens: Tokens
    channels: ChannelChanges | None  # None: the channels did not change
    feeds: FeedChanges


class Reloader:
    def __init__(self, live: LiveSettings, dispatcher: ChannelSwitch, feeds: FeedWatch,
                 metrics: Metrics, clock: Clock, people: PersonLookup | None,
                 committed: Callable[[], Awaitable[None]]) -> None:
        """`committed` runs after each successful reload (metrics that follow the config)."""
        self.live, self.dispatcher, self.feeds = live, dispatcher, feeds
        self.metrics, self.clock, self.people, self.committed = metrics, clock, people, committed
        self._one_at_a_time = asyncio.Lock()

    async def reload(self) -> bool:
        """Load the config file again; False (and nothing changed) if any part fails."""
        async with self._one_at_a_time:
            try:
                prepared = await self._prepare()
            except InvalidFile as exc:
                problems = [str(p) for p in exc.problems]
                log.error("reload_failed", problems=problems)
                return self._failed(problems)
            except Exception as exc:  # a channel that cannot start, say
                error = f"{type(exc).__name__}: {exc}"
                log.error("reload_failed", error=error)
                return self._failed([error])
            try:
                await self._commit(prepared)
            except Exception as exc:  # a fault of ours, not of the config: say so loudly
                log.exception("reload_commit_failed")
                return self._failed([f"applied in part ({type(exc).__name__}: {exc}); "
                                     "restart the daemon"])
        return True

    # -- phase 1: prepare (may fail; touches nothing live) ---------------------

    async def _prepare(self) -> Prepared:
        old = self.live.settings.config
        # Parsing, validating and test-rendering thousands of channels and templates
        # takes tens of milliseconds or more: never on the loop.
        new = await asyncio.to_thread(load_settings, old.path)
        _warn_if_restart_needed(old, new.config)
        tokens = Tokens(new.config.access, self.people)
        feeds = await self.feeds.prepare(new.config.feeds)
        try:
            channels = (await self._start_channels(new.config)
                        if new.config.channels != old.channels else None)
        except BaseException:
            await feeds.discard()
            raise
        return Prepared(new, tokens, channels, feeds)

    async def _start_channels(self, cfg: Config) -> ChannelChanges:
        # Channels whose config did not change are kept as they are (last error,
        # rate-limit waits); only the new and changed ones are started.
        live = self.dispatcher.channels()
        kept = {c.id: live[c.id] for c in cfg.channels
                if c.id in live and live[c.id].config == c}
        started = await start_channels([c for c in cfg.channels if c.id not in kept],
                                       self.clock)
        serving = {c.id: kept[c.id] if c.id in kept else started[c.id] for c in cfg.channels}
        replaced = {cid: ch for cid, ch in live.items() if cid not in kept}
        return ChannelChanges(serving, started, replaced)

    def _failed(self, problems: list[str]) -> bool:
        self.metrics.config_last_reload_successful.set(0)
        self._note(problems)
        return False

    # -- phase 2: commit (nothing here fails for a bad configuration) ----------

    async def _commit(self, new: Prepared) -> None:
        # ---- POINT OF NO RETURN: from here on the new configuration is applied. ----
        log.info("reload_committing", config=str(new.settings.config.path),
                 feeds_rebuilt=sorted(new.feeds.parsers),
                 channels_started=sorted(new.channels.started) if new.channels else [])
        # Replaced pollers finish a delivery in flight under the old settings first.
        await self.feeds.retire(new.feeds)
        # One loop step from here to the dispatcher's first wait: no request, signal
        # or send sees new settings with old feeds or channels.
        self.live.settings, self.live.tokens = new.settings, new.tokens
        self.dispatcher.max_lateness = new.settings.config.max_lateness.total_seconds()
        self.feeds.install(new.feeds)
        if new.channels is not None:
            await self.dispatcher.replace_channels(new.channels.serving)
            await close_channels(new.channels.replaced)
        try:
            await self.committed()
        except Exception:  # applied all the same; the metrics catch up at their next refresh
            log.exception("reload_metrics_refresh_failed")
        self._note([])
        self.metrics.config_last_reload_successful.set(1)
        self.metrics.config_last_reload_success_timestamp_seconds.set(self.clock())
        log.info("reloaded", config=str(new.settings.config.path),
                 runbooks=sorted(new.settings.runbooks))

    def _note(self, problems: list[str]) -> None:
        self.live.last_reload = {"at": rfc3339(self.clock()), "ok": not problems,
                                 "problems": problems[:RELOAD_PROBLEMS_SHOWN],
                                 "problem_count": len(problems)}


def _warn_if_restart_needed(old: Config, new: Config) -> None:
    if (new.listen_host, new.listen_port) != (old.listen_host, old.listen_port):
        log.warning("listen_change_needs_restart", listen=f"{old.listen_host}:{old.listen_port}")
    if new.database != old.database:
        log.warning("state_dir_change_needs_restart", state_dir=str(old.state_dir))
    if new.store != old.store:  # compared whole; the connection string is never logged
        log.warning("store_change_needs_restart", backend=old.store.backend)
