"""A pair of daemons on one PostgreSQL: how fast the standby takes over, and what
declaring, scheduling and the leak race cost there.

- takeover: the failover harness (tests/reliability/failover.py) runs its
  faults on a pair; for each, the time from the fault to the first send that
  started after it, of a post due after it, by a node other than a stopped,
  frozen or killed one. Targets: <= 15 s after kill -9, SIGSTOP and cut
  connections (the lease is 10 s), <= 2 s after a graceful stop (the lease is
  handed over). A restart of PostgreSQL is reported, not judged.
- declare -> ack: sequential declarations of the shipped `security-incident`
  runbook, each resolved after, first at the leader, then at the standby;
  the 201 means committed (on a server with fsync and synchronous_commit on).
- bulk scheduling: `POST /api/v1/posts` with 5,000 posts per request on two
  connections, to the leader.
- leak race: marketing posts due from 1 s before to 1 s after a declaration
  made at the STANDBY; no send may start (outbox `sent_at`, either node's
  files) after its 201 was read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.dispatch import BATCH, TEXT
from bench.harness import (
    TOKENS,
    Client,
    Result,
    outbox_channels,
    r,
    read_outboxes,
    summary_ms,
    workdir,
)
from bench.incident import RUNBOOK, _declarations, _race, _schedule
from bench.load import closed_loop, request_bytes
from tests.daemon import DaemonProcess, base_config, free_port
from tests.postgres import PostgresServer, find_bindir
from tests.reliability.failover import FAULTS, FailoverRun

DSN_ENV = "SB_BENCH_DSN"
TAKEOVER_TARGET_S = {"kill9": 15.0, "sigstop": 15.0, "cut": 15.0, "sigterm": 2.0}


class DurablePostgres(PostgresServer):
    """The tests' throwaway cluster, but durable as in production: every commit
    waits for its WAL to reach the disk, so a 201 costs what it would."""

    def start(self, same_port: bool = False) -> None:
        if not same_port:
            self.port = free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.root} -c fsync=on "
                   "-c synchronous_commit=on -c max_connections=200")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "server.log"), "-w", "-t", "30", "-o", options, "start")


@contextlib.contextmanager
def durable_postgres() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix="sb-bench-pg-"))
    server = DurablePostgres(bindir, root)
    try:
        server.init()
        server.start()
        server.admin("CREATE DATABASE switchboard")
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


class Pair:
    """Two daemons on one database, each with outbox channels of its own files."""

    def __init__(self, tmp: Path, dsn: str, n_channels: int) -> None:
        self.nodes: list[DaemonProcess] = []
        self.paths: list[Path] = []
        for name in ("n0", "n1"):
            directory = tmp / name
            directory.mkdir()
            channels = outbox_channels(directory, n_channels)
            self.paths += [Path(c["path"]) for c in channels[:-1]]
            config = base_config(directory, 0, channels, max_lateness="1h",
                                 store={"backend": "postgresql", "dsn_env": DSN_ENV})
            self.nodes.append(DaemonProcess(directory, config=config,
                                            env={DSN_ENV: f"{dsn} application_name={name}"}))
        self.names = [f"brand-{i}" for i in range(n_channels)]

    def start(self) -> None:
        self.nodes[0].start(timeout=60)
        self.nodes[1].start(timeout=60)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def role(self, node: DaemonProcess) -> str:
        return str(requests.get(node.url + "/readyz", timeout=5).json().get("role"))

    def leader_and_standby(self) -> tuple[DaemonProcess, DaemonProcess]:
        roles = {self.role(n): n for n in self.nodes}
        if set(roles) != {"leader", "standby"}:
            raise RuntimeError(f"the pair's roles are {sorted(roles)}, not leader and standby")
        return roles["leader"], roles["standby"]


@contextlib.contextmanager
def pair(name: str, n_channels: int) -> Iterator[Pair]:
    with workdir(name) as tmp, durable_postgres() as server:
        both = Pair(tmp, server.dsn("switchboard"), n_channels)
        try:
            both.start()
            yield both
        finally:
            both.kill()


def failover(quick: bool) -> Result:
    faults = len(FAULTS) if quick else 2 * len(FAULTS)
    res = Result("failover", quick, params={
        "faults": faults, "takeover_posts": 1000 if quick else 3000,
        "declarations_each": 40 if quick else 200, "bulk_posts": 20_000 if quick else 200_000,
        "leak_posts": 1000 if quick else 4000, "lease_s": 10, "renew_s": 2,
        "postgres": _postgres_version()})
    if find_bindir() is None:
        # Like the baseline without SQLAlchemy: the other benchmarks still run.
        res.figures["skipped"] = "PostgreSQL is not installed (/usr/lib/postgresql/*/bin)"
        return res
    _takeover(res, faults, int(res.params["takeover_posts"]))
    with pair("failover-declare", 5) as both:
        leader, standby = both.leader_and_standby()
        count = int(res.params["declarations_each"])
        for where, node in (("leader", leader), ("standby", standby)):
            declare, _ = _declarations(Client(node.port, role="ops"), count, 0.05, {})
            stats = summary_ms(declare)
            res.figures[f"ack_at_{where}"] = stats
            res.figures[f"ack_p99_ms_at_{where}"] = stats["p99_ms"]
            res.at_most(f"ack_p99_ms_at_{where}", 20, " ms")
    with pair("failover-bulk", 10) as both:
        leader, _ = both.leader_and_standby()
        _bulk(res, leader, both.names, int(res.params["bulk_posts"]))
    with pair("failover-leak", 10) as both:
        _leak_at_standby(res, both, int(res.params["leak_posts"]))
    return res


def _takeover(res: Result, faults: int, posts: int) -> None:
    with workdir("failover-run") as tmp:
        report = FailoverRun(tmp, faults, posts, seed=20261201, outboxes=4,
                             say=lambda m: print(f"bench: {m}", file=sys.stderr,
                                                 flush=True)).run()
    res.figures["takeover_s"] = {k: sorted(v) for k, v in report.first_send_s.items()}
    res.figures["harness_violations"] = report.violations
    res.figures["harness_states"] = report.states
    for kind in FAULTS:
        worst = max(report.first_send_s.get(kind, []), default=None)
        res.figures[f"takeover_max_s_{kind}"] = worst
        if kind in TAKEOVER_TARGET_S:
            res.at_most(f"takeover_max_s_{kind}", TAKEOVER_TARGET_S[kind], " s")
    res.check("harness_held", not report.violations,
              "0 leaks, 0 duplicates, 0 lost through the faults")


def _bulk(res: Result, leader: DaemonProcess, names: list[str], count: int) -> None:
    first_due = time.time() + 86_400
    batches = []
    for start in range(0, count, BATCH):
        body = [{"channel": names[i % len(names)], "text": TEXT.format(i),
                 "at": datetime.fromtimestamp(first_due + i * 2.5, UTC).isoformat(
                     timespec="seconds")}
                for i in range(start, min(count, start + BATCH))]
        batches.append(request_bytes("POST", "/api/v1/posts", json.dumps(body).encode(),
                                     TOKENS["marketing"]))
    samples = asyncio.run(closed_loop(leader.port, batches, connections=2))
    scheduled = Client(leader.port).ok("GET", "/api/v1/status")["posts"]["scheduled"]
    wall = max(s.done for s in samples) - min(s.sent for s in samples)
    statuses = sorted({s.status for s in samples})
    res.figures.update(bulk_posts_per_s=round(count / wall), bulk_wall_s=r(wall, 2),
                       bulk_statuses=statuses, bulk_stored=scheduled)
    res.at_least("bulk_posts_per_s", 20_000, " posts/s")
    res.check("bulk_all_stored", statuses == [201] and scheduled == count,
              f"{count} stored, all 201")


def _leak_at_standby(res: Result, both: Pair, count: int) -> None:
    margin = 0.2
    leader, standby = both.leader_and_standby()
    declare_at = time.time() + 3.0 + count / 5000
    due_by_id = _schedule(Client(leader.port, role="marketing"), both.names,
                          [declare_at - 1 + 2 * i / count for i in range(count)])
    ops = Client(standby.port, role="ops")
    ops.ok("GET", "/api/v1/status")  # open the connection before the race
    time.sleep(max(0.0, declare_at - time.time()))
    started = time.perf_counter()
    incident = ops.ok("POST", "/api/v1/incidents", {"runbook": RUNBOOK, "title": "Leak race"})
    acknowledged = time.time()
    ack_ms = (time.perf_counter() - started) * 1000
    time.sleep(1.0 + 2.5)  # past the last due time, and the pipeline drained
    posts = leader.all_pages("/api/v1/posts?limit=1000")
    race = _race(read_outboxes(both.paths), posts, due_by_id, incident, acknowledged, margin)
    res.figures["leak_race_at_standby"] = {**race, "ack_ms": r(ack_ms, 2)}
    res.check("leak_sends_after_ack", race["sends_after_ack"] == 0, "0")
    res.check("leak_duplicates", race["duplicates"] == 0, "0")
    res.check("leak_due_after_suppressed", race["due_after"]["not_suppressed"] == 0,
              "every post due after the acknowledgement suppressed, tied to the incident")


def _postgres_version() -> str:
    bindir = find_bindir()
    if bindir is None:
        return "not installed"
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip()

