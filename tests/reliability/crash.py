"""Crash harness: the real daemon, killed with SIGKILL at random moments while it publishes.

One run schedules thousands of posts due over several outbox channels, one
webhook channel (a `FakeWebhook` on loopback), a Bluesky account (`FakeBluesky`,
talked to by the atproto SDK) and a Facebook Page (`FakeFacebook`), kills the daemon `kills` times
after a random 0.2-1.5 s of work each, and declares an incident through the
API half-way. While the daemon is dead the harness checks a copy of its store
against what reached the outboxes and the webhook; after each restart it
checks what start-up recovery did. The invariants (design §3.1, §3.2, §6):

- the store passes `PRAGMA integrity_check`;
- no marketing send on an in-scope channel started after the declaration's
  201 arrived (`sent_at` of the outbox line or webhook body);
- no post reached an outbox or the webhook twice. Raw webhook requests are
  counted: the receiver ignores Idempotency-Key (its dedup is switched off, as
  Slack's does not exist) and the channel is configured `idempotent: false`; on
  Bluesky and Facebook every post the platform holds counts (deleted or not),
  matched to its post by its text;
- no post is lost: every created post has exactly one row, in one state, and
  the outputs agree with it: a `published` post has exactly one send; a send
  belongs to a `published` post or to one the kill left `sending` (`unknown`
  after the restart), never to one that is scheduled, queued or suppressed;
- after each restart: `sending` became `unknown`, `queued` went back to
  `scheduled`, and the incident is still active with its channels held.

The run is planned from a seeded RNG (posts, kill times, the declaration);
what the kills hit still depends on the machine's timing, so the figures vary
a little between runs of one seed.

    python -m tests.reliability.crash                  # full: 20 kills, 5,000 posts
    python -m tests.reliability.crash --kills 6 --posts 1500 --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.daemon import DaemonProcess, base_config, free_port
from tests.fakes.fake_bluesky import FakeBluesky
from tests.fakes.fake_facebook import FakeFacebook
from tests.fakes.fake_webhook import HOOK_PATH, FakeWebhook

ENV_PROFILE = "SWITCHBOARD_CRASH"  # ci (default) | full
ENV_SEED = "SWITCHBOARD_CRASH_SEED"
DEFAULT_SEED = 20240611

RUNBOOK = "crash-drill"
RUNBOOK_TEXT = f"name: {RUNBOOK}\ntitle: Crash drill\nseverity: major\nsuppress: [marketing]\n"
HOOK = "hook"
HOOK_SHARE = 0.12         # of the posts, to the webhook channel
BLUESKY, FACEBOOK = "bsky", "fb"
PLATFORM_SHARE = 0.06     # of the posts, to each of the Bluesky and Facebook channels
OPERATIONAL_SHARE = 0.10  # operational posts go out under the incident too
BURST_SHARE = 0.4         # posts due at the same instant as others: big claims
RUN_MIN, RUN_MAX = 0.2, 1.5
KILL_AFTER_ACK_MAX = 0.3  # the declaring round is killed this soon after the 201
BURST_LEAD = 0.1         # a round's own burst falls due at most this long before its kill

# Where a post may be while the daemon is dead, and once it has drained.
DEAD_STATES = {"scheduled", "queued", "sending", "published", "suppressed", "unknown"}
FINAL_STATES = {"published", "suppressed", "unknown"}
UNSENT_STATES = {"scheduled", "queued", "suppressed"}


@dataclass(frozen=True)
class Profile:
    name: str
    kills: int
    posts: int
    outboxes: int
    webhook: bool = True
    platforms: bool = True  # a Bluesky and a Facebook channel


PROFILES = {
    "ci": Profile("ci", kills=6, posts=1500, outboxes=5),
    "full": Profile("full", kills=20, posts=5000, outboxes=5),
}


def profile_from_env() -> tuple[Profile, int]:
    name = os.environ.get(ENV_PROFILE, "ci").strip().lower() or "ci"
    if name not in PROFILES:
        raise ValueError(f"{ENV_PROFILE}={name!r}: use one of {', '.join(PROFILES)}")
    return PROFILES[name], int(os.environ.get(ENV_SEED, DEFAULT_SEED))


@dataclass(frozen=True)
class Planned:
    channel: str
    kind: str
    due_at: float


@dataclass(frozen=True)
class Send:
    """One post as it reached an outlet: an outbox line or a raw webhook request."""

    post_id: int
    channel: str
    kind: str
    sent_at: float


@dataclass(frozen=True)
class Row:
    channel: str
    kind: str
    state: str
    due_at: float
    incident_id: int | None
    published_at: float | None


@dataclass
class StoreView:
    integrity: str
    posts: dict[int, Row]
    incidents: dict[int, str]
    holds: set[tuple[str, int]]


@dataclass
class KillRecord:
    """What one SIGKILL interrupted, as found in the store while the daemon was dead."""

    round: int
    ran_for: float
    sending_sent: int = 0     # sends that went out; the record did not
    sending_unsent: int = 0   # claimed for sending, not sent yet
    queued: int = 0
    published_so_far: int = 0
    declared: bool = False
    restart_seconds: float = 0.0


@dataclass
class Report:
    profile: str
    seed: int
    kills: int
    posts: int
    channels: list[str]
    in_scope: list[str]
    machine: str = ""
    started: str = ""
    seconds: float = 0.0
    declared_at_round: int = -1
    states: dict[str, int] = field(default_factory=dict)
    unknown_sent: int = 0
    unknown_unsent: int = 0
    published_marketing_in_scope_before: int = 0
    due_around_declaration: int = 0  # in-scope marketing posts due within 150 ms of the 201
    suppressed: int = 0
    webhook_requests: int = 0
    platform_posts: dict[str, int] = field(default_factory=dict)  # posts each platform holds
    kills_mid_dispatch: int = 0
    rounds: list[KillRecord] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        held = "HELD" if not self.violations else f"{len(self.violations)} VIOLATION(S)"
        return (f"crash run {self.profile} seed={self.seed}: {self.kills} kills, {self.posts} "
                f"posts, {len(self.channels)} channels, {self.seconds:.1f}s: {held}; "
                f"states {dict(sorted(self.states.items()))}, unknown sent "
                f"{self.unknown_sent} / unsent {self.unknown_unsent}, kills mid-dispatch "
                f"{self.kills_mid_dispatch}/{self.kills}, posts on the platforms "
                f"{self.platform_posts}")


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Declared:
    """A drill's declaration as the harness saw it: the incident, or why not."""

    incident: int | None
    at: float  # when the answer was read (time.time())
    ms: float  # how long the answer took
    refusal: str = ""


def declare_drill(api: Callable[..., Any], runbook: str, title: str,
                  channels: list[str]) -> Declared:
    """Declare through the API (`DaemonProcess.api`); the moment the 201 was read
    is the one after which no marketing send may start."""
    started = time.perf_counter()
    response = api("POST", "/api/v1/incidents",
                   {"runbook": runbook, "title": title, "channels": channels}, role="ops")
    acknowledged = time.time()
    ms = round((time.perf_counter() - started) * 1000, 2)
    if response.status_code != 201:
        return Declared(None, acknowledged, ms,
                        f"declaration answered {response.status_code}: {response.text}")
    return Declared(_incident_number(response.json()["id"]), acknowledged, ms)


def print_report(report: Any, json_path: Path | None) -> int:
    """A harness run's report on stdout (and in `json_path`); 1 if it failed."""
    out = json.dumps(asdict(report), indent=2)
    if json_path:
        json_path.write_text(out + "\n")
    print(out)
    print(report.summary())
    return 1 if report.violations else 0


def _incident_number(value: Any) -> int:
    return int(str(value).removeprefix("INC-"))


class CrashRun:
    def __init__(self, tmp: Path, profile: Profile, seed: int,
                 say: Callable[[str], None] = print) -> None:
        self.tmp, self.profile, self.seed, self.say = tmp, profile, seed, say
        self.rng = random.Random(seed)
        self.outboxes = [f"brand-{i}" for i in range(profile.outboxes)]
        self.platforms = [BLUESKY, FACEBOOK] if profile.platforms else []
        self.channels = self.outboxes + ([HOOK] if profile.webhook else []) + self.platforms
        # About half the outboxes, the webhook and Bluesky are in the incident's
        # scope; the rest (Facebook among them) must keep publishing.
        self.in_scope = self.outboxes[:(profile.outboxes + 1) // 2] + (
            [HOOK] if profile.webhook else []) + self.platforms[:1]
        self.hook = FakeWebhook(idempotent=False)
        self.bluesky = FakeBluesky()
        self.facebook = FakeFacebook()
        self.by_text: dict[str, int] = {}
        self.planned: dict[int, Planned] = {}
        self.incident: int | None = None
        self.ack: float | None = None
        self.report = Report(profile.name, seed, profile.kills, profile.posts, self.channels,
                             self.in_scope, machine=_machine(),
                             started=datetime.now(UTC).isoformat(timespec="seconds"))

    # -- the run -------------------------------------------------------------

    def run(self) -> Report:
        began = time.monotonic()
        with self.hook, self.bluesky, self.facebook:
            daemon = self._daemon()
            started = time.monotonic()
            daemon.start()
            startup = time.monotonic() - started
            try:
                self._schedule(daemon, startup)
                declare_round = self.profile.kills // 2
                self.report.declared_at_round = declare_round + 1  # 1-based, as the kills
                for round_ in range(self.profile.kills):
                    self._round(daemon, round_, declaring=round_ == declare_round)
                self._finish(daemon)
            finally:
                daemon.kill()
        self.report.seconds = round(time.monotonic() - began, 1)
        return self.report

    def _daemon(self) -> DaemonProcess:
        channels: list[dict[str, Any]] = [
            {"id": c, "kind": "outbox", "path": str(self.tmp / "out" / f"{c}.jsonl")}
            for c in self.outboxes]
        if self.profile.webhook:
            # The receiver ignores Idempotency-Key, and the channel is told so.
            channels.append({"id": HOOK, "kind": "webhook", "url_env": "SB_CRASH_HOOK",
                             "timeout": 5.0, "idempotent": False})
        if self.profile.platforms:
            channels.append({"id": BLUESKY, "kind": "bluesky", "service": self.bluesky.url,
                             "identifier": self.bluesky.handle,
                             "app_password_env": "SB_CRASH_BSKY", "timeout": 5.0})
            channels.append({"id": FACEBOOK, "kind": "facebook", "api_url": self.facebook.url,
                             "page_id": self.facebook.page_id,
                             "page_token_env": "SB_CRASH_FB", "timeout": 5.0})
        # max_lateness far beyond the run: downtime must not turn posts `missed`.
        config = base_config(self.tmp, free_port(), channels, max_lateness="1h")
        return DaemonProcess(self.tmp, config=config, runbooks={RUNBOOK: RUNBOOK_TEXT},
                             env={"SB_CRASH_HOOK": self.hook.url,
                                  "SB_CRASH_BSKY": self.bluesky.app_password,
                                  "SB_CRASH_FB": self.facebook.page_token})

    def _schedule(self, daemon: DaemonProcess, startup: float) -> None:
        """Half the posts: background load due from now until about the last kill."""
        rng, profile = self.rng, self.profile
        span = profile.kills * ((RUN_MIN + RUN_MAX) / 2 + startup) * 0.9
        start = time.time() + 1.0
        bursts = [start + rng.uniform(0, span) for _ in range(2 * profile.kills)]
        dues = [rng.choice(bursts) if rng.random() < BURST_SHARE else start + rng.uniform(0, span)
                for _ in range(profile.posts - self._per_round * profile.kills)]
        self._create(daemon, dues)
        self.say(f"scheduled {len(self.planned)} posts over {span:.1f}s on "
                 f"{len(self.channels)} channels (start-up {startup:.2f}s), and "
                 f"{self._per_round} more per round")

    @property
    def _per_round(self) -> int:
        return self.profile.posts // 2 // self.profile.kills

    def _create(self, daemon: DaemonProcess, dues: list[float]) -> None:
        rng = self.rng
        body = []
        for due in dues:
            channel = self._pick_channel()
            kind = "operational" if rng.random() < OPERATIONAL_SHARE else "marketing"
            body.append({"channel": channel, "kind": kind, "at": _iso(due),
                         "text": f"crash {self.seed} post {len(self.planned) + len(body)}: "
                                 f"{kind} on {channel}"})
        for i in range(0, len(body), 1000):
            created = daemon.ok("POST", "/api/v1/posts", body[i:i + 1000])
            for post in created:
                self.planned[int(post["id"])] = Planned(post["channel"], post["kind"],
                                                        _ts(post["due_at"]))
                self.by_text[post["text"]] = int(post["id"])
            if len(created) != len(body[i:i + 1000]):
                self.violation(f"asked for {len(body[i:i + 1000])} posts, the daemon created "
                               f"{len(created)}")

    def _pick_channel(self) -> str:
        draw = self.rng.random()
        if self.profile.webhook and draw < HOOK_SHARE:
            return HOOK
        for n, platform_ in enumerate(self.platforms):
            if draw < HOOK_SHARE + PLATFORM_SHARE * (n + 1):
                return platform_
        return self.rng.choice(self.outboxes)

    def _round(self, daemon: DaemonProcess, round_: int, declaring: bool) -> None:
        """Run 0.2-1.5 s, then SIGKILL. Each round adds a burst of posts due just
        before its kill (or around its declaration), so kills land mid-dispatch."""
        rng = self.rng
        began, now = time.monotonic(), time.time()
        if declaring:
            declare_after = rng.uniform(RUN_MIN, RUN_MAX - KILL_AFTER_ACK_MAX)
            self._create(daemon, [now + declare_after + rng.uniform(-0.15, 0.15)
                                  for _ in range(self._per_round)])
            time.sleep(max(0.0, began + declare_after - time.monotonic()))
            self._declare(daemon)
            time.sleep(rng.uniform(0, KILL_AFTER_ACK_MAX))
        else:
            ran_for = rng.uniform(RUN_MIN, RUN_MAX)
            due = now + ran_for - rng.uniform(0.0, BURST_LEAD)
            self._create(daemon, [due + rng.uniform(0, 0.02) for _ in range(self._per_round)])
            time.sleep(max(0.0, began + ran_for - time.monotonic()))
        ran_for = time.monotonic() - began
        daemon.kill()
        record = KillRecord(round_ + 1, round(ran_for, 3), declared=declaring)
        before = self._check_dead(record)
        restarted_at = time.time()
        started = time.monotonic()
        daemon.start()
        record.restart_seconds = round(time.monotonic() - started, 2)
        self._check_restarted(daemon, before, restarted_at)
        self.report.rounds.append(record)
        self.say(f"kill {record.round:2}/{self.profile.kills} after {record.ran_for:.2f}s: "
                 f"sending {record.sending_sent} sent + {record.sending_unsent} unsent, "
                 f"queued {record.queued}, published {record.published_so_far}"
                 f"{', declared' if declaring else ''}; restart {record.restart_seconds:.2f}s")

    def _declare(self, daemon: DaemonProcess) -> None:
        declared = declare_drill(daemon.api, RUNBOOK, "Crash drill", list(self.in_scope))
        if declared.incident is None:
            self.violation(declared.refusal)
            return
        self.ack, self.incident = declared.at, declared.incident
        self.say(f"declared INC-{self.incident} on {', '.join(self.in_scope)}; "
                 f"201 at {_iso(self.ack)}")

    def _finish(self, daemon: DaemonProcess) -> None:
        """Let every due post go out, stop cleanly, and check the end state."""
        last_due = max(p.due_at for p in self.planned.values())
        deadline = time.monotonic() + max(0.0, last_due - time.time()) + 60
        while True:
            view = self.read_store(live=True)
            open_ = sum(1 for r in view.posts.values()
                        if r.state in ("scheduled", "queued", "sending"))
            if open_ == 0 and time.time() > last_due:
                break
            if time.monotonic() > deadline:
                self.violation(f"{open_} posts still open 60s after the last one was due")
                break
            time.sleep(0.2)
        unknown_metric = daemon.metric("switchboard_posts_unknown")
        active_metric = daemon.metric("switchboard_incidents_active")
        code = daemon.stop()
        if code != 0:
            self.violation(f"graceful stop exited {code}")
        view = self.read_store()
        sends = self._check(view, self.read_sends(), FINAL_STATES, "final")
        states = Counter(r.state for r in view.posts.values())
        if unknown_metric != states["unknown"]:
            self.violation(f"switchboard_posts_unknown was {unknown_metric}, the store has "
                           f"{states['unknown']} unknown posts")
        if self.incident is not None and active_metric != 1:
            self.violation(f"switchboard_incidents_active was {active_metric}, not 1")
        self._check_outcomes(view)
        self.report.states = dict(states)
        sent = {s.post_id for s in sends}
        unknown = [i for i, r in view.posts.items() if r.state == "unknown"]
        self.report.unknown_sent = sum(1 for i in unknown if i in sent)
        self.report.unknown_unsent = len(unknown) - self.report.unknown_sent
        self.report.suppressed = states["suppressed"]
        self.report.webhook_requests = len(self.hook.requests)
        self.report.platform_posts = {BLUESKY: len(self.bluesky.records),
                                      FACEBOOK: len(self.facebook.posts)}
        self.report.kills_mid_dispatch = sum(
            1 for r in self.report.rounds if r.sending_sent + r.sending_unsent + r.queued)
        if self.ack is not None:
            in_scope = [r for r in view.posts.values()
                        if r.kind == "marketing" and r.channel in self.in_scope]
            self.report.published_marketing_in_scope_before = sum(
                1 for r in in_scope if r.state == "published")
            self.report.due_around_declaration = sum(
                1 for r in in_scope if abs(r.due_at - self.ack) <= 0.15)

    # -- what the daemon left behind ------------------------------------------

    @property
    def database(self) -> Path:
        return self.tmp / "state" / "switchboard.db"

    def read_store(self, live: bool = False) -> StoreView:
        """The store as SQLite sees it; a dead daemon's files are copied first, so that
        the daemon's own start-up still finds (and must recover) what the kill left."""
        if live:
            db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        else:
            copy = self.tmp / "copy"
            shutil.rmtree(copy, ignore_errors=True)
            copy.mkdir()
            for suffix in ("", "-wal"):
                source = Path(f"{self.database}{suffix}")
                if source.exists():
                    shutil.copyfile(source, copy / source.name)
            db = sqlite3.connect(copy / self.database.name)
        try:
            integrity = "; ".join(r[0] for r in db.execute("PRAGMA integrity_check"))
            posts = {int(r[0]): Row(*r[1:]) for r in db.execute(
                "SELECT id, channel, kind, state, due_at, incident_id, published_at FROM posts")}
            incidents = {int(i): s for i, s in db.execute("SELECT id, state FROM incidents")}
            holds = {(c, int(i)) for c, i in db.execute(
                "SELECT channel, incident_id FROM channel_control WHERE until IS NULL")}
        finally:
            db.close()
        return StoreView(integrity, posts, incidents, holds)

    def recovery_events(self, since: float) -> dict[int, tuple[str, str]]:
        """Start-up's own transitions (actor `daemon`) recorded after `since`."""
        db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        try:
            return {int(p): (f, t) for p, f, t in db.execute(
                "SELECT post_id, from_state, to_state FROM post_events WHERE at >= ? "
                "AND actor = 'daemon' AND from_state IN ('queued', 'sending')", (since,))}
        finally:
            db.close()

    def read_sends(self, live: bool = False) -> list[Send]:
        """Every outbox line and every raw webhook request, torn ones reported."""
        sends: list[Send] = []
        for channel in self.outboxes:
            path = self.tmp / "out" / f"{channel}.jsonl"
            if not path.exists():
                continue
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            for number, line in enumerate(lines, start=1):
                if live and number == len(lines) and not line.endswith("\n"):
                    continue  # being written as we read
                try:
                    record = json.loads(line)
                    sends.append(Send(int(record["post_id"]), record["channel"],
                                      record["kind"], _ts(record["sent_at"])))
                except (ValueError, KeyError, TypeError):
                    self.violation(f"{path.name}:{number}: torn or malformed line {line[:80]!r}")
                    continue
                if not line.endswith("\n"):
                    self.violation(f"{path.name}:{number}: line not terminated")
        for request in self.hook.requests:
            try:
                body = request.json()
                if request.method != "POST" or request.path != HOOK_PATH:
                    raise ValueError(f"{request.method} {request.path}")
                sends.append(Send(int(body["post_id"]), body["channel"], body["kind"],
                                  _ts(body["sent_at"])))
            except (ValueError, KeyError, TypeError) as exc:
                self.violation(f"webhook request at {_iso(request.at)} unreadable: {exc}")
        return sends + self._platform_sends()

    def _platform_sends(self) -> list[Send]:
        """Every post Bluesky and Facebook hold, retracted ones included. Bluesky's
        record carries the send's start (`createdAt`); Facebook's post only its
        arrival, which is no earlier."""
        held: list[tuple[str, str, float]] = [
            (BLUESKY, r.text, _ts(r.value["createdAt"].replace("Z", "+00:00")))
            for r in list(self.bluesky.records)]
        held += [(FACEBOOK, p.message, p.created.timestamp()) for p in list(self.facebook.posts)]
        sends = []
        for channel, text, started in held:
            post_id = self.by_text.get(text)
            if post_id is None:
                self.violation(f"{channel} holds a post nobody scheduled: {text[:60]!r}")
                continue
            kind = text.split(": ", 1)[1].split(" on ", 1)[0]
            sends.append(Send(post_id, channel, kind, started))
        return sends

    # -- checks --------------------------------------------------------------

    def violation(self, message: str) -> None:
        if message not in self.report.violations:
            self.report.violations.append(message)
            self.say(f"VIOLATION: {message}")

    def _check_dead(self, record: KillRecord) -> StoreView:
        view = self.read_store()
        sends = self._check(view, self.read_sends(), DEAD_STATES, f"after kill {record.round}")
        sent = {s.post_id for s in sends}
        for row_id, row in view.posts.items():
            if row.state == "sending":
                if row_id in sent:
                    record.sending_sent += 1
                else:
                    record.sending_unsent += 1
            elif row.state == "queued":
                record.queued += 1
            elif row.state == "published":
                record.published_so_far += 1
        return view

    def _check(self, view: StoreView, sends: list[Send], allowed: set[str],
               when: str) -> list[Send]:
        """The invariants that hold whenever the daemon is not running."""
        if view.integrity != "ok":
            self.violation(f"{when}: integrity_check: {view.integrity}")
        missing = set(self.planned) - set(view.posts)
        extra = set(view.posts) - set(self.planned)
        if missing:
            self.violation(f"{when}: {len(missing)} posts lost from the store, e.g. "
                           f"{sorted(missing)[:5]}")
        if extra:
            self.violation(f"{when}: {len(extra)} posts nobody created, e.g. {sorted(extra)[:5]}")
        by_post: dict[int, list[Send]] = {}
        for send in sends:
            by_post.setdefault(send.post_id, []).append(send)
        for post_id, its in by_post.items():
            row = view.posts.get(post_id)
            if len(its) > 1:
                self.violation(f"{when}: post {post_id} published {len(its)} times "
                               f"({', '.join(s.channel for s in its)})")
            if row is None:
                self.violation(f"{when}: a send for post {post_id}, which is not in the store")
                continue
            if any(s.channel != row.channel or s.kind != row.kind for s in its):
                self.violation(f"{when}: post {post_id} ({row.kind} on {row.channel}) went out "
                               f"as {its[0].kind} on {its[0].channel}")
            if row.state in UNSENT_STATES:
                self.violation(f"{when}: post {post_id} went out but the store has it "
                               f"{row.state}")
        for post_id, row in view.posts.items():
            if row.state not in allowed:
                self.violation(f"{when}: post {post_id} is {row.state}")
            if row.state == "published" and len(by_post.get(post_id, [])) != 1:
                self.violation(f"{when}: post {post_id} is published with "
                               f"{len(by_post.get(post_id, []))} sends")
            if row.state == "published" and row.channel in self.outboxes and post_id in by_post:
                sent_at = by_post[post_id][0].sent_at
                if row.published_at is None or abs(row.published_at - sent_at) > 1e-5:
                    self.violation(f"{when}: post {post_id}: published_at {row.published_at} "
                                   f"but the outbox line says {sent_at}")
            if row.state == "suppressed" and (row.incident_id != self.incident
                                              or row.kind != "marketing"
                                              or row.channel not in self.in_scope):
                self.violation(f"{when}: post {post_id} ({row.kind} on {row.channel}) is "
                               f"suppressed by INC-{row.incident_id}")
        self._check_no_leak(sends, when)
        self._check_incident(view, when)
        return sends

    def _check_no_leak(self, sends: Iterable[Send], when: str) -> None:
        if self.ack is None:
            return
        late = [s for s in sends if s.kind == "marketing" and s.channel in self.in_scope
                and s.sent_at > self.ack]
        if late:
            first = min(late, key=lambda s: s.sent_at)
            self.violation(f"{when}: {len(late)} marketing sends started after the declaration "
                           f"was acknowledged at {_iso(self.ack)}; first: post {first.post_id} "
                           f"on {first.channel} at {_iso(first.sent_at)}")

    def _check_incident(self, view: StoreView, when: str) -> None:
        if self.incident is None:
            return
        if view.incidents.get(self.incident) != "active":
            self.violation(f"{when}: INC-{self.incident} is "
                           f"{view.incidents.get(self.incident)}, not active")
        held = {c for c, i in view.holds if i == self.incident}
        if held != set(self.in_scope):
            self.violation(f"{when}: INC-{self.incident} holds {sorted(held)}, not "
                           f"{sorted(self.in_scope)}")

    def _check_restarted(self, daemon: DaemonProcess, before: StoreView,
                         restarted_at: float) -> None:
        """What start-up did with the kill's leftovers; the incident still holds."""
        events = self.recovery_events(since=restarted_at)
        live = self.read_store(live=True)
        if live.integrity != "ok":
            self.violation(f"after restart: integrity_check: {live.integrity}")
        for post_id, row in before.posts.items():
            now = live.posts.get(post_id)
            if row.state == "sending":
                if now is None or now.state != "unknown":
                    self.violation(f"after restart: post {post_id} was sending at the kill and "
                                   f"is {now.state if now else 'gone'}, not unknown")
                elif events.get(post_id) != ("sending", "unknown"):
                    self.violation(f"after restart: post {post_id} has no sending -> unknown "
                                   "record")
            elif row.state == "queued" and events.get(post_id) != ("queued", "scheduled"):
                self.violation(f"after restart: post {post_id} was queued at the kill and "
                               "was not put back to scheduled")
        sends = self.read_sends(live=True)
        fresh = self.read_store(live=True)  # read after the sends: a send's post has left
        for send in sends:                   # scheduled / queued / suppressed for good
            row = fresh.posts.get(send.post_id)
            if row is not None and row.state in UNSENT_STATES:
                self.violation(f"after restart: post {send.post_id} went out but is "
                               f"{row.state}")
        self._check_no_leak(sends, "after restart")
        if self.incident is None:
            return
        active = [_incident_number(i["id"]) for i in daemon.ok("GET", "/api/v1/incidents")]
        if self.incident not in active:
            self.violation(f"after restart: INC-{self.incident} is not active ({active})")
        control = {c["id"]: c["control"] for c in daemon.ok("GET", "/api/v1/channels")}
        wrong = {c: v for c, v in control.items()
                 if v != ("ops" if c in self.in_scope else "marketing")}
        if wrong:
            self.violation(f"after restart: channel control {wrong}")

    def _check_outcomes(self, view: StoreView) -> None:
        """End state per post: what the incident should have done to each."""
        for post_id, row in view.posts.items():
            in_scope_marketing = row.kind == "marketing" and row.channel in self.in_scope
            if not in_scope_marketing or self.ack is None:
                if row.state not in ("published", "unknown"):
                    self.violation(f"final: post {post_id} ({row.kind} on {row.channel}) is "
                                   f"{row.state}; nothing held it")
            elif row.due_at > self.ack and row.state != "suppressed":
                self.violation(f"final: in-scope marketing post {post_id} due after the "
                               f"declaration is {row.state}, not suppressed")


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPU {cpu}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.crash",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--kills", type=int)
    parser.add_argument("--posts", type=int)
    parser.add_argument("--seed", type=int, help="default: a fresh one, printed")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    args = parser.parse_args(argv)
    base = PROFILES[args.profile]
    profile = Profile(base.name, args.kills or base.kills, args.posts or base.posts,
                      base.outboxes, base.webhook, base.platforms)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**9)
    tmp = Path(tempfile.mkdtemp(prefix="switchboard-crash-"))
    print(f"seed {seed}; run directory {tmp}", flush=True)
    try:
        report = CrashRun(tmp, profile, seed, say=lambda m: print(m, flush=True)).run()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return print_report(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
