"""Failover harness: two real daemons on one real PostgreSQL, faults at random moments.

The crash harness's big sibling (tests/reliability/crash.py). A pair of
daemons (`python -m switchboard run`, through tests/daemon.py) share one
PostgreSQL cluster of the run's own (tests/postgres.py); one holds the leader
lease and sends, the other stands by. Thousands of posts fall due over the run
on several outbox channels and one loopback webhook that, like Slack, ignores
Idempotency-Key (`idempotent: false` on the channel, dedup off in the fake),
so every raw request it receives counts. Each node writes its own outbox
files and posts the webhook with its own name in the query string: every send
says which process made it.

Faults, in a seeded order at seeded moments, each aimed at the leader of the
moment:

- `kill9`: SIGKILL;
- `sigstop`: SIGSTOP for longer than the lease, then SIGCONT: the woken node
  must not send (it lost the lease while frozen);
- `cut`: `pg_terminate_backend` of every connection of the leader (each node
  names itself in `application_name`);
- `pg_restart`: PostgreSQL itself stops and starts again on its port;
- `sigterm`: a graceful stop, which hands the lease over at once.

After a fault that ends a process a replacement is started, so the pair stays
a pair. Midway an incident is declared on the STANDBY, and the next fault
follows it within half a second. Invariants, from the outboxes, the raw
webhook requests and the database (design §3.1, §3.2, §7.3):

- no marketing send on an in-scope channel started after the declaration's
  201 arrived at the harness (outbox `sent_at`, the webhook body's `sent_at`);
- no post went out twice (outbox lines and raw webhook requests counted);
- nothing lost: every created post has its row; in the end every post is
  `published` (with exactly one send), `suppressed` (in-scope marketing, by the
  incident) or `unknown` with a reason, and none that nothing held is
  anything else; every in-scope marketing post due after the ack is suppressed;
- a node woken from SIGSTOP sends nothing until the next fault.

    python -m tests.reliability.failover --faults 20 --seed 7
    python -m tests.reliability.failover --faults 5 --posts 2000
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import requests

from tests.daemon import DaemonProcess, base_config
from tests.fakes.fake_webhook import HOOK_PATH, FakeWebhook
from tests.fakes.server import Answer, Hang, Request
from tests.postgres import PostgresServer, running_postgres
from tests.reliability.crash import _iso, _machine, _ts, declare_drill, print_report

FAULTS = ("kill9", "sigstop", "cut", "pg_restart", "sigterm")
ENDS_PROCESS = {"kill9", "sigterm"}  # a replacement node is started after these
LEASE_S = 10.0
STOP_FOR_S = LEASE_S + 3.0  # a SIGSTOP outlasts the lease
RECOVERY_S = 45.0           # no send this long after a fault fails the run
RUN_MIN, RUN_MAX = 1.0, 3.0
DSN_ENV = "SB_FAILOVER_DSN"
HOOK_ENV = "SB_FAILOVER_HOOK"
RUNBOOK = "failover-drill"
RUNBOOK_TEXT = f"name: {RUNBOOK}\ntitle: Failover drill\nseverity: major\nsuppress: [marketing]\n"
HOOK = "hook"
HOOK_SHARE = 0.15
OPERATIONAL_SHARE = 0.10
BURST_SHARE = 0.3
SLOW_HOOK_S, SLOW_HOOK_REQUESTS = 0.3, 12  # the webhook's pace around a SIGSTOP
BURST_LEAD_S = 0.1  # a fault's own burst falls due at most this long before it strikes

FINAL_STATES = {"published", "suppressed", "unknown"}
UNSENT_STATES = {"scheduled", "queued", "suppressed", "missed", "cancelled"}
OPEN_STATES = ("scheduled", "queued", "sending")


@dataclass(frozen=True)
class Sent:
    """One post as it reached an outlet: an outbox line or a raw webhook request."""

    post_id: int
    channel: str
    kind: str
    sent_at: float  # the send's start, as the sender recorded it
    node: str       # the process that sent it
    arrived: float | None = None  # when the webhook received it


@dataclass(frozen=True)
class Row:
    channel: str
    kind: str
    state: str
    due_at: float
    incident_id: int | None
    reason: str | None  # why it is unknown: its last event's reason, or its error


@dataclass
class FaultRecord:
    number: int
    kind: str
    target: str           # the node the fault hit (the leader), "" if none was found
    at: float             # Unix time the fault was injected
    after_declaration: bool = False
    new_leader: str = ""
    epoch_before: int | None = None
    epoch_after: int | None = None
    first_send_s: float | None = None  # fault -> the first send that started after it
    first_send_by: str = ""
    woke_at: float | None = None       # sigstop: when SIGCONT went
    cut_connections: int = 0
    caught_sending: int = 0  # posts the target had claimed for sending when it was hit
    replacement: str = ""
    until: float | None = None         # when the next fault began (or the run ended)


@dataclass
class Report:
    seed: int
    faults: int
    posts: int
    channels: list[str]
    in_scope: list[str]
    machine: str = ""
    started: str = ""
    seconds: float = 0.0
    declared_on: str = ""
    declared_role: str = ""
    ack_ms: float | None = None
    states: dict[str, int] = field(default_factory=dict)
    sends: int = 0
    webhook_requests: int = 0
    suppressed: int = 0
    unknown: int = 0
    # In-scope marketing webhook requests that started before the ack (body
    # `sent_at`) but arrived after it: allowed, counted to show the race was run.
    webhook_arrived_after_ack: int = 0
    two_leaders_seen: int = 0  # polls where two live nodes both said leader (fencing lag)
    first_send_s: dict[str, list[float]] = field(default_factory=dict)
    records: list[FaultRecord] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        held = "HELD" if not self.violations else f"{len(self.violations)} VIOLATION(S)"
        worst = {k: max(v) for k, v in self.first_send_s.items() if v}
        return (f"failover run seed={self.seed}: {len(self.records)}/{self.faults} faults, "
                f"{self.posts} posts, {self.seconds:.0f}s: {held}; states "
                f"{dict(sorted(self.states.items()))}; {self.sends} sends "
                f"({self.webhook_requests} raw webhook requests); declared on the "
                f"{self.declared_role} ({self.ack_ms} ms); worst fault -> first send {worst}")


# -- the checks (pure: they read what the run collected) ----------------------

def audit(created: dict[int, tuple[str, str]], posts: dict[int, Row], sends: list[Sent],
          in_scope: set[str], ack: float | None, incident: int | None) -> list[str]:
    """Every end-of-run invariant over the store's rows and every send; the
    violations found, in words. `created` maps each post the harness created
    to its (channel, kind)."""
    found: list[str] = []
    by_post: dict[int, list[Sent]] = {}
    for send in sends:
        by_post.setdefault(send.post_id, []).append(send)
    found += _lost(created, posts)
    found += _duplicates_and_strays(by_post, posts)
    found += _leaks(sends, in_scope, ack)
    for post_id, row in sorted(posts.items()):
        found += _outcome(post_id, row, len(by_post.get(post_id, [])), in_scope, ack, incident)
    return found


def _lost(created: dict[int, tuple[str, str]], posts: dict[int, Row]) -> list[str]:
    found = []
    missing = sorted(set(created) - set(posts))
    extra = sorted(set(posts) - set(created))
    if missing:
        found.append(f"{len(missing)} created posts are not in the store, e.g. {missing[:5]}")
    if extra:
        found.append(f"{len(extra)} posts nobody created, e.g. {extra[:5]}")
    for post_id, (channel, kind) in created.items():
        row = posts.get(post_id)
        if row is not None and (row.channel, row.kind) != (channel, kind):
            found.append(f"post {post_id} was created {kind} on {channel}, the store has "
                         f"{row.kind} on {row.channel}")
    return found


def _duplicates_and_strays(by_post: dict[int, list[Sent]], posts: dict[int, Row]) -> list[str]:
    found = []
    for post_id, its in sorted(by_post.items()):
        if len(its) > 1:
            found.append(f"post {post_id} went out {len(its)} times (by "
                         f"{', '.join(s.node for s in its)})")
        row = posts.get(post_id)
        if row is None:
            found.append(f"a send of post {post_id}, which is not in the store")
        elif row.state in UNSENT_STATES:
            found.append(f"post {post_id} went out but the store has it {row.state}")
        elif any((s.channel, s.kind) != (row.channel, row.kind) for s in its):
            found.append(f"post {post_id} ({row.kind} on {row.channel}) went out as "
                         f"{its[0].kind} on {its[0].channel}")
    return found


def _leaks(sends: list[Sent], in_scope: set[str], ack: float | None) -> list[str]:
    if ack is None:
        return []
    late = sorted((s for s in sends if s.kind == "marketing" and s.channel in in_scope
                   and s.sent_at > ack), key=lambda s: s.sent_at)
    if not late:
        return []
    first = late[0]
    return [f"{len(late)} marketing sends started after the declaration was acknowledged at "
            f"{_iso(ack)}; first: post {first.post_id} on {first.channel} by {first.node} at "
            f"{_iso(first.sent_at)}"]


def _outcome(post_id: int, row: Row, sent: int, in_scope: set[str], ack: float | None,
             incident: int | None) -> list[str]:
    held = ack is not None and row.kind == "marketing" and row.channel in in_scope
    what = f"post {post_id} ({row.kind} on {row.channel})"
    if row.state not in FINAL_STATES:
        return [f"{what} is left {row.state}"]
    if row.state == "published" and sent != 1:
        return [f"{what} is published with {sent} sends"]
    if row.state == "unknown" and not row.reason:
        return [f"{what} is unknown without a reason"]
    if row.state == "suppressed" and (not held or row.incident_id != incident):
        return [f"{what} is suppressed by INC-{row.incident_id}; nothing held it"]
    if held and ack is not None and row.due_at > ack and row.state != "suppressed":
        return [f"{what}, due after the declaration, is {row.state}, not suppressed"]
    return []


def sends_after_wake(sends: list[Sent], record: FaultRecord) -> list[str]:
    """A node woken from SIGSTOP lost the lease while frozen: from SIGCONT until
    the next fault (which might make it leader again) it must send nothing."""
    if record.woke_at is None:
        return []
    end = record.until if record.until is not None else float("inf")
    late = [s for s in sends if s.node == record.target and record.woke_at < s.sent_at < end]
    if not late:
        return []
    return [f"fault {record.number}: {record.target} sent {len(late)} posts after waking from "
            f"SIGSTOP at {_iso(record.woke_at)}; first: post {late[0].post_id} at "
            f"{_iso(min(s.sent_at for s in late))}"]


def first_send_after(sends: list[Sent], due: dict[int, float], at: float,
                     excluding: str | None) -> Sent | None:
    """The first send, by any node but `excluding`, of a post due after `at`: one
    claimed after the fault, not one already on its way when it struck."""
    after = [s for s in sends if s.sent_at > at and due.get(s.post_id, 0.0) > at
             and s.node != excluding]
    return min(after, key=lambda s: s.sent_at, default=None)


# -- what the nodes left behind -----------------------------------------------

class NodeWebhook(FakeWebhook):
    """The Slack-like receiver: no dedup. Each node posts to `HOOK_PATH?node=NAME`,
    so every raw request says which process sent it."""

    def route(self, request: Request) -> Answer:
        return super().route(replace(request, path=urlsplit(request.path).path))

    def url_for(self, node: str) -> str:
        return f"{self.url}?node={node}"


def read_outbox(path: Path, node: str, live: bool = True) -> tuple[list[Sent], list[str]]:
    """An outbox file's sends, and its torn or malformed lines (the last line
    of a live file may be being written: it is skipped, not reported)."""
    if not path.exists():
        return [], []
    sends: list[Sent] = []
    bad: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if not line.endswith("\n"):
            if not (live and number == len(lines)):
                bad.append(f"{path}:{number}: line not terminated")
            continue
        try:
            record = json.loads(line)
            if "retract" in record:
                continue
            sends.append(Sent(int(record["post_id"]), record["channel"], record["kind"],
                              _ts(record["sent_at"]), node))
        except (ValueError, KeyError, TypeError):
            bad.append(f"{path}:{number}: malformed line {line[:80]!r}")
    return sends, bad


def webhook_sends(requests_: list[Request]) -> tuple[list[Sent], list[str]]:
    sends: list[Sent] = []
    bad: list[str] = []
    for request in requests_:
        try:
            target = urlsplit(request.path)
            if request.method != "POST" or target.path != HOOK_PATH:
                raise ValueError(f"{request.method} {request.path}")
            node = parse_qs(target.query)["node"][0]
            body = request.json()
            sends.append(Sent(int(body["post_id"]), body["channel"], body["kind"],
                              _ts(body["sent_at"]), node, arrived=request.at))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            bad.append(f"webhook request at {_iso(request.at)} unreadable: {exc}")
    return sends, bad


@dataclass
class StoreView:
    posts: dict[int, Row]
    incidents: dict[int, str]
    holds: set[tuple[str, int]]


def read_store(dsn: str) -> StoreView:
    """The posts, incidents and holds as the database has them."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as db:
        reasons = {int(p): r for p, r in db.execute(
            "SELECT DISTINCT ON (post_id) post_id, reason FROM post_events "
            "WHERE to_state = 'unknown' ORDER BY post_id, id DESC")}
        posts = {int(i): Row(c, k, s, float(d), None if n is None else int(n),
                             reasons.get(int(i)) or e)
                 for i, c, k, s, d, n, e in db.execute(
                     "SELECT id, channel, kind, state, due_at, incident_id, error FROM posts")}
        incidents = {int(i): s for i, s in db.execute("SELECT id, state FROM incidents")}
        holds = {(c, int(i)) for c, i in db.execute(
            "SELECT channel, incident_id FROM channel_control WHERE until IS NULL")}
    return StoreView(posts, incidents, holds)


# -- the nodes and the faults ---------------------------------------------------

class Node:
    """One daemon process of the pair, in a directory of its own."""

    def __init__(self, name: str, process: DaemonProcess) -> None:
        self.name = name
        self.process = process
        self.frozen = False
        self.gone = False

    def readyz(self, timeout: float = 0.5) -> dict[str, Any] | None:
        """/readyz's JSON when it answers 200, else None (down, frozen, not ready)."""
        if self.frozen or self.gone:
            return None
        try:
            response = requests.get(self.process.url + "/readyz", timeout=timeout)
        except requests.RequestException:
            return None
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body

    def role(self) -> str | None:
        body = self.readyz()
        return None if body is None else str(body.get("role", "leader"))


def freeze(node: Node) -> None:
    node.process.signal(signal.SIGSTOP)
    node.frozen = True


def thaw(node: Node) -> None:
    node.process.signal(signal.SIGCONT)
    node.frozen = False


def kill9(node: Node) -> None:
    node.process.kill()
    node.gone = True


def graceful_stop(node: Node) -> int:
    node.gone = True
    return node.process.stop(timeout=60)


def cut_connections(dsn: str, application_name: str) -> int:
    """`pg_terminate_backend` of every session that names itself `application_name`."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as db:
        rows = db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = %s AND pid <> pg_backend_pid()",
                          (application_name,)).fetchall()
    return sum(1 for (done,) in rows if done)


def restart_postgres(server: PostgresServer) -> None:
    """Stop the server (fast: sessions are cut) and start it on the same port."""
    server.stop("fast")
    server.start(same_port=True)


# -- the run --------------------------------------------------------------------

class FailoverRun:
    def __init__(self, tmp: Path, faults: int, posts: int, seed: int, outboxes: int = 4,
                 say: Callable[[str], None] = print) -> None:
        if faults < 1:
            raise ValueError("a failover run needs at least one fault")
        self.tmp, self.seed, self.say = tmp, seed, say
        self.rng = random.Random(seed)
        self.outboxes = [f"brand-{i}" for i in range(outboxes)]
        self.channels = [*self.outboxes, HOOK]
        self.in_scope = {*self.outboxes[:(outboxes + 1) // 2], HOOK}
        self.plan = self._plan(faults)
        self.posts = posts
        self.hook = NodeWebhook(idempotent=False)
        self.nodes: list[Node] = []
        self.created: dict[int, tuple[str, str]] = {}
        self.due: dict[int, float] = {}
        self.ack: float | None = None
        self.incident: int | None = None
        self.server: PostgresServer | None = None
        self.dsn = ""
        self.report = Report(seed, faults, posts, self.channels, sorted(self.in_scope),
                             machine=_machine(),
                             started=datetime.now(UTC).isoformat(timespec="seconds"))

    def _plan(self, faults: int) -> list[str]:
        """Every kind of fault equally often (as near as the count allows), shuffled."""
        kinds = [FAULTS[i % len(FAULTS)] for i in range(faults)]
        self.rng.shuffle(kinds)
        return kinds

    def run(self) -> Report:
        began = time.monotonic()
        with ExitStack() as stack:
            self.server = stack.enter_context(running_postgres())
            self.server.admin("CREATE DATABASE switchboard")
            self.dsn = self.server.dsn("switchboard")
            stack.enter_context(self.hook)
            stack.callback(self._kill_all)
            self._start_pair()
            self._schedule()
            declare_before = len(self.plan) // 2
            for number, kind in enumerate(self.plan, start=1):
                self._fault(number, kind, declaring=number - 1 == declare_before)
            self._finish()
        self.report.seconds = round(time.monotonic() - began, 1)
        return self.report

    def violation(self, message: str) -> None:
        if message not in self.report.violations:
            self.report.violations.append(message)
            self.say(f"VIOLATION: {message}")

    # -- nodes ---------------------------------------------------------------

    def _node_config(self, name: str, directory: Path) -> dict[str, Any]:
        channels: list[dict[str, Any]] = [
            {"id": c, "kind": "outbox", "path": str(self.tmp / "out" / name / f"{c}.jsonl")}
            for c in self.outboxes]
        channels.append({"id": HOOK, "kind": "webhook", "url_env": HOOK_ENV, "timeout": 5.0,
                         "idempotent": False})
        # max_lateness far beyond the run: a takeover must not turn posts `missed`.
        return base_config(directory, 0, channels, max_lateness="1h",
                           store={"backend": "postgresql", "dsn_env": DSN_ENV})

    def start_node(self) -> Node:
        name = f"n{len(self.nodes)}"
        directory = self.tmp / name
        directory.mkdir(parents=True)
        (self.tmp / "out" / name).mkdir(parents=True)
        process = DaemonProcess(directory, config=self._node_config(name, directory),
                                runbooks={RUNBOOK: RUNBOOK_TEXT},
                                env={DSN_ENV: f"{self.dsn} application_name={name}",
                                     HOOK_ENV: self.hook.url_for(name)})
        node = Node(name, process)
        self.nodes.append(node)  # before it starts: a start that times out is killed too
        process.start(timeout=60)
        return node

    def _start_pair(self) -> None:
        first = self.start_node()
        self.wait_leader(None, 30)
        second = self.start_node()
        roles = (first.role(), second.role())
        self.say(f"pair up: {first.name} {roles[0]}, {second.name} {roles[1]}")
        if roles != ("leader", "standby"):
            self.violation(f"a fresh pair answered roles {roles}, not leader and standby")

    def live(self) -> list[Node]:
        return [n for n in self.nodes if not n.gone]

    def leaders(self) -> list[tuple[Node, int | None]]:
        found = []
        for node in self.live():
            body = node.readyz()
            if body is not None and body.get("role", "leader") == "leader":
                epoch = body.get("epoch")
                found.append((node, None if epoch is None else int(epoch)))
        if len(found) > 1:
            self.report.two_leaders_seen += 1
        return found

    def wait_leader(self, excluding: Node | None, timeout: float) -> tuple[Node, int | None]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [(n, e) for n, e in self.leaders() if n is not excluding]
            if len(found) == 1:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"no single leader after {timeout}s; roles "
                           f"{[(n.name, n.role()) for n in self.live()]}")

    def _kill_all(self) -> None:
        for node in self.nodes:
            if node.frozen:
                thaw(node)
            node.process.kill()

    # -- posts ---------------------------------------------------------------

    def _schedule(self) -> None:
        """Background posts due from now to about the last fault, some in bursts."""
        rng = self.rng
        span = len(self.plan) * 10.0
        start = time.time() + 1.0
        bursts = [start + rng.uniform(0, span) for _ in range(2 * len(self.plan))]
        count = self.posts - self._per_fault * len(self.plan)
        self._create([rng.choice(bursts) if rng.random() < BURST_SHARE
                      else start + rng.uniform(0, span) for _ in range(count)])
        self.say(f"scheduled {len(self.created)} posts over {span:.0f}s, and "
                 f"{self._per_fault} more due around each fault")

    @property
    def _per_fault(self) -> int:
        return self.posts // 3 // len(self.plan)

    def _create(self, dues: list[float]) -> None:
        """Posts created through the API, on the nodes in turn: both serve it."""
        rng = self.rng
        body: list[dict[str, str]] = []
        for due in dues:
            channel = HOOK if rng.random() < HOOK_SHARE else rng.choice(self.outboxes)
            kind = "operational" if rng.random() < OPERATIONAL_SHARE else "marketing"
            body.append({"channel": channel, "kind": kind, "at": _iso(due),
                         "text": f"failover {self.seed} post {len(self.created) + len(body)}: "
                                 f"{kind} on {channel}"})
        live = [n for n in self.live() if not n.frozen]
        for i in range(0, len(body), 1000):
            node = live[(i // 1000) % len(live)]
            created = node.process.ok("POST", "/api/v1/posts", body[i:i + 1000])
            for post in created:
                self.created[int(post["id"])] = (post["channel"], post["kind"])
                self.due[int(post["id"])] = _ts(post["due_at"])

    # -- faults --------------------------------------------------------------

    def _fault(self, number: int, kind: str, declaring: bool) -> None:
        rng = self.rng
        # The fault strikes while a burst of posts, due just before it, goes out.
        strike = time.time() + (rng.uniform(0, 0.5) if declaring
                                else rng.uniform(RUN_MIN, RUN_MAX))
        self._create([strike - rng.uniform(0, BURST_LEAD_S) for _ in range(self._per_fault)])
        if declaring:
            self._declare()
        if kind == "sigstop":
            # A slow receiver keeps the webhook's claimed posts waiting in the
            # leader's worker: the freeze catches them claimed but not begun.
            self.hook.script(*[Hang(SLOW_HOOK_S) for _ in range(SLOW_HOOK_REQUESTS)])
        time.sleep(max(0.0, strike - time.time()))
        target, epoch = self.wait_leader(None, 30)
        if self.report.records:
            self.report.records[-1].until = time.time()
        record = FaultRecord(number, kind, target.name, time.time(), declaring,
                             epoch_before=epoch)
        self.report.records.append(record)
        self._inject(record, target)
        self._recover(record, target)
        self._check_incident(f"after fault {number} ({kind})")
        self.say(self._describe(record))

    def _inject(self, record: FaultRecord, target: Node) -> None:
        assert self.server is not None
        if record.kind == "kill9":
            kill9(target)
            record.caught_sending = self._sending()
        elif record.kind == "sigterm":
            code = graceful_stop(target)
            if code != 0:
                self.violation(f"fault {record.number}: graceful stop of {target.name} "
                               f"exited {code}")
        elif record.kind == "sigstop":
            freeze(target)
            record.caught_sending = self._sending()
        elif record.kind == "cut":
            record.cut_connections = cut_connections(self.dsn, target.name)
            if record.cut_connections == 0:
                self.violation(f"fault {record.number}: {target.name} had no connection to cut")
        else:
            restart_postgres(self.server)

    def _sending(self) -> int:
        return sum(1 for r in read_store(self.dsn).posts.values() if r.state == "sending")

    def _recover(self, record: FaultRecord, target: Node) -> None:
        """Wait for a leader and for sends to resume; thaw a frozen node after the
        lease has passed; start a replacement where a process ended."""
        excluding = target if record.kind in ("kill9", "sigterm", "sigstop") else None
        try:
            leader, epoch = self.wait_leader(excluding, RECOVERY_S)
        except TimeoutError as exc:
            self.violation(f"fault {record.number} ({record.kind}): {exc}")
            leader, epoch = None, None
        record.new_leader = leader.name if leader else ""
        record.epoch_after = epoch
        sent = self._wait_first_send(record, excluding)
        if sent is not None:
            record.first_send_s = round(sent.sent_at - record.at, 3)
            record.first_send_by = sent.node
            self.report.first_send_s.setdefault(record.kind, []).append(record.first_send_s)
        if record.kind == "sigstop":
            time.sleep(max(0.0, record.at + STOP_FOR_S - time.time()))
            thaw(target)
            record.woke_at = time.time()
            self._check_woken(record, target)
        if record.kind in ENDS_PROCESS:
            record.replacement = self.start_node().name

    def _wait_first_send(self, record: FaultRecord, excluding: Node | None) -> Sent | None:
        deadline = time.monotonic() + RECOVERY_S
        other = excluding.name if excluding is not None else None
        while time.monotonic() < deadline:
            sent = first_send_after(self.read_sends(), self.due, record.at, other)
            if sent is not None:
                return sent
            time.sleep(0.1)
        self.violation(f"fault {record.number} ({record.kind}): no send in {RECOVERY_S}s")
        return None

    def _check_woken(self, record: FaultRecord, node: Node) -> None:
        """Woken, the old leader must find it lost the lease and stand by."""
        deadline = time.monotonic() + 5
        role = node.role()
        while role != "standby" and time.monotonic() < deadline:
            time.sleep(0.05)
            role = node.role()
        if role != "standby":
            self.violation(f"fault {record.number}: {node.name}, woken from SIGSTOP after the "
                           f"lease passed, says {role}, not standby")

    def _declare(self) -> None:
        leader, _ = self.wait_leader(None, 30)
        standby = next((n for n in self.live() if n is not leader and not n.frozen), None)
        target = standby or leader
        self.report.declared_on = target.name
        self.report.declared_role = str(target.role())
        declared = declare_drill(target.process.api, RUNBOOK, "Failover drill",
                                 sorted(self.in_scope))
        self.report.ack_ms = declared.ms
        if declared.incident is None:
            self.violation(declared.refusal)
            return
        self.ack, self.incident = declared.at, declared.incident
        self.say(f"declared INC-{self.incident} on the {self.report.declared_role} "
                 f"{target.name}: 201 in {declared.ms} ms at {_iso(declared.at)}")

    def _check_incident(self, when: str) -> None:
        if self.incident is None:
            return
        view = read_store(self.dsn)
        if view.incidents.get(self.incident) != "active":
            self.violation(f"{when}: INC-{self.incident} is {view.incidents.get(self.incident)}")
        held = {c for c, i in view.holds if i == self.incident}
        if held != self.in_scope:
            self.violation(f"{when}: INC-{self.incident} holds {sorted(held)}")
        sends = self.read_sends()
        for violation in _leaks(sends, self.in_scope, self.ack):
            self.violation(f"{when}: {violation}")

    @staticmethod
    def _describe(record: FaultRecord) -> str:
        extra = f", {record.cut_connections} connections cut" if record.kind == "cut" else ""
        if record.kind in ("kill9", "sigstop"):
            extra += f", {record.caught_sending} posts caught sending"
        return (f"fault {record.number:2} {record.kind:10} on {record.target}: leader "
                f"{record.new_leader or '-'} (epoch {record.epoch_before} -> "
                f"{record.epoch_after}), first send after {record.first_send_s}s by "
                f"{record.first_send_by or '-'}{extra}"
                f"{', replaced by ' + record.replacement if record.replacement else ''}"
                f"{', after the declaration' if record.after_declaration else ''}")

    # -- the end ---------------------------------------------------------------

    def read_sends(self, live: bool = True) -> list[Sent]:
        sends, bad = webhook_sends(self.hook.requests)
        for node in self.nodes:
            for channel in self.outboxes:
                got, torn = read_outbox(self.tmp / "out" / node.name / f"{channel}.jsonl",
                                        node.name, live)
                sends += got
                bad += torn
        for message in bad:
            self.violation(message)
        return sends

    def _finish(self) -> None:
        last_due = max(self.due.values())
        deadline = time.monotonic() + max(0.0, last_due - time.time()) + 90
        while True:
            states = Counter(r.state for r in read_store(self.dsn).posts.values())
            left = sum(states[s] for s in OPEN_STATES)
            if left == 0 and time.time() > last_due:
                break
            if time.monotonic() > deadline:
                self.violation(f"{left} posts still open 90s after the last was due")
                break
            time.sleep(0.25)
        for node in self.live():
            code = graceful_stop(node)
            if code != 0:
                self.violation(f"final graceful stop of {node.name} exited {code}")
        self._final_checks()

    def _final_checks(self) -> None:
        view = read_store(self.dsn)
        sends = self.read_sends(live=False)
        for message in audit(self.created, view.posts, sends, self.in_scope, self.ack,
                             self.incident):
            self.violation(f"final: {message}")
        for record in self.report.records:
            for message in sends_after_wake(sends, record):
                self.violation(message)
        self._check_incident("final")
        states = Counter(r.state for r in view.posts.values())
        self.report.states = dict(states)
        self.report.sends = len(sends)
        self.report.webhook_requests = len(self.hook.requests)
        self.report.suppressed = states["suppressed"]
        self.report.unknown = states["unknown"]
        if self.ack is not None:
            self.report.webhook_arrived_after_ack = sum(
                1 for s in sends if s.arrived is not None and s.arrived > self.ack
                and s.sent_at <= self.ack and s.kind == "marketing")


@contextmanager
def run_directory(keep: bool) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="switchboard-failover-"))
    try:
        yield tmp
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.failover",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--seed", type=int, help="default: a fresh one, printed")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**9)
    with run_directory(args.keep) as tmp:
        print(f"seed {seed}; run directory {tmp}", flush=True)
        report = FailoverRun(tmp, args.faults, args.posts, seed,
                             say=lambda m: print(m, flush=True)).run()
    failed = print_report(report, args.json)
    with suppress(BrokenPipeError):
        sys.stdout.flush()
    return failed


if __name__ == "__main__":
    sys.exit(main())
