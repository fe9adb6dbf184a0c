"""Scheduled posts: start-up with a big store, and lateness of sends at a steady rate.

Each runs the baseline (bench.baseline) at the same counts in the same run.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import baseline
from bench.harness import (
    Client,
    Result,
    cpu_seconds,
    daemon,
    outbox_channels,
    r,
    ratio,
    read_outboxes,
    rss_mb,
    running,
    start_timed,
    summary_ms,
    wait_until,
    workdir,
)
from switchboard.store import Store

TEXT = "Spring offer {}: 20% off all advance tickets this weekend. Book now."
BATCH = 5000  # posts per API request: ~0.6 MB, under the 1 MiB body limit


def fill_store(path: Path, dues: Iterable[float], channels: list[str], now: float) -> None:
    """A store with the real schema (made by `Store.open`) holding one scheduled post
    and its `created` event per due time, as `Store.add_posts` writes them."""
    asyncio.run(_create(path))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")  # setup only: nothing here is timed
    db.execute("BEGIN")
    rows = [(i, channels[i % len(channels)], "marketing", TEXT.format(i), due, now)
            for i, due in enumerate(dues, start=1)]
    db.executemany("INSERT INTO posts (id, channel, kind, text, state, due_at, created_by, "
                   "created_at, updated_at) VALUES (?, ?, ?, ?, 'scheduled', ?, 'bench', ?, ?)",
                   [(*row, now) for row in rows])
    db.executemany("INSERT INTO post_events (post_id, at, from_state, to_state, actor, reason) "
                   "VALUES (?, ?, NULL, 'scheduled', 'bench', 'created')",
                   [(row[0], now) for row in rows])
    db.execute("COMMIT")
    db.close()
    synced(path)


async def _create(path: Path) -> None:
    """An empty store, migrated, as the daemon's first start leaves it."""
    store = await Store.open(path)
    await store.close()


@dataclass
class Backlog:
    """A month of future marketing posts, from tomorrow on: the store the §6 targets
    speak of ("1,000,000 scheduled posts"), and the same posts as baseline jobs.

    Built once per run and copied into each benchmark's directory."""

    count: int
    store: Path
    jobs: Path | None  # None when the baseline cannot run (no SQLAlchemy)
    store_fill_s: float
    jobs_fill_s: float


_backlogs: dict[int, Backlog] = {}


def backlog(count: int) -> Backlog:
    if count not in _backlogs:
        where = Path(tempfile.mkdtemp(prefix="sb-bench-backlog-"))
        atexit.register(shutil.rmtree, where, ignore_errors=True)
        now = time.time()
        dues = [now + 86_400 + i * 2.5 for i in range(count)]
        started = time.perf_counter()
        fill_store(where / "switchboard.db", dues, [f"brand-{i}" for i in range(10)], now)
        store_fill = time.perf_counter() - started
        started = time.perf_counter()
        jobs = None if baseline.skipped() else where / "jobs.sqlite"
        if jobs is not None:
            baseline.fill(jobs, enumerate(dues, start=1))
            synced(jobs)
        _backlogs[count] = Backlog(count, where / "switchboard.db", jobs, store_fill,
                                   time.perf_counter() - started)
    return _backlogs[count]


def backlog_size(quick: bool) -> int:
    return 100_000 if quick else 1_000_000


def copy_store(source: Path, tmp: Path) -> Path:
    """Put a store where a daemon configured on `tmp` finds it, on the disk.

    Synced before the daemon starts: a fresh copy is some 300 MB of dirty page
    cache, and the kernel would write it back in the middle of the measurement,
    behind every fsync the daemon makes (its first commits took 100-200 ms).
    A store a daemon restarts on has long been written; the copy stays cached."""
    target = tmp / "state" / "switchboard.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    synced(target)
    return target


def synced(path: Path) -> None:
    """Write `path` (and its directory entry) to the disk now, untimed."""
    for each in (path, path.parent):
        fd = os.open(each, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def import_seconds() -> float:
    """How long a fresh interpreter takes to import the daemon (part of start-up)."""
    code = ("import time; t = time.perf_counter(); import switchboard.app; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout)


# -- dispatch_startup -------------------------------------------------------

def dispatch_startup(quick: bool) -> Result:
    count, runs = backlog_size(quick), (2 if quick else 3)
    res = Result("dispatch_startup", quick, params={"posts": count, "runs": runs,
                                                    "channels": 10})
    data = backlog(count)
    with workdir("startup") as tmp:
        channels = outbox_channels(tmp, 10)
        proc = daemon(tmp, channels)
        db = copy_store(data.store, tmp)
        res.params.update(fill_s=r(data.store_fill_s, 1), db_mb=r(db.stat().st_size / 2**20, 1))
        times, rss = [], []
        for _ in range(runs):
            try:
                times.append(start_timed(proc))
                assert proc.proc is not None
                rss.append(rss_mb(proc.proc.pid))
                time.sleep(1.0)  # and once it has settled
                rss.append(rss_mb(proc.proc.pid))
                scheduled = Client(proc.port).ok("GET", "/api/v1/status")["posts"]["scheduled"]
                if scheduled != count:
                    raise RuntimeError(f"daemon sees {scheduled} scheduled posts, not {count}")
                proc.stop()
            finally:
                proc.kill()
        res.figures.update(start_to_ready_s=r(max(times)),
                           start_to_ready_median_s=r(statistics.median(times)),
                           start_runs_s=[r(t) for t in times], rss_mb=r(max(rss), 1),
                           import_s=r(import_seconds()))
    res.at_most("start_to_ready_s", 3.0, " s")
    res.at_most("rss_mb", 200, " MB")

    base = baseline.skipped() or startup_baseline(data, runs)
    res.figures["baseline"] = base
    res.figures["ratio_switchboard_over_baseline"] = {
        "start_to_ready": ratio(res.figures["start_to_ready_s"], base.get("start_to_ready_s")),
        "rss": ratio(res.figures["rss_mb"], base.get("rss_mb"))}
    return res


def startup_baseline(data: Backlog, runs: int) -> dict[str, Any]:
    assert data.jobs is not None
    with workdir("startup-baseline") as tmp:
        db = tmp / "jobs.sqlite"
        shutil.copyfile(data.jobs, db)
        times, rss = [], []
        for _ in range(runs):
            seconds, proc = start_baseline(db, tmp / "outbox.jsonl")
            try:
                times.append(seconds)
                rss.append(rss_mb(proc.pid))
                time.sleep(1.0)
                rss.append(rss_mb(proc.pid))
            finally:
                stop_baseline(proc)
        return {"jobs": data.count, "fill_s": r(data.jobs_fill_s, 1),
                "db_mb": r(db.stat().st_size / 2**20, 1), "start_to_ready_s": r(max(times)),
                "start_runs_s": [r(t) for t in times], "rss_mb": r(max(rss), 1)}


def start_baseline(db: Path, outbox: Path) -> tuple[float, subprocess.Popen[str]]:
    """Spawn the baseline scheduler; seconds until it says it is running."""
    started = time.perf_counter()
    proc = subprocess.Popen(baseline.command("serve", str(db), str(outbox)),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"baseline exited with {proc.wait()}")
    return time.perf_counter() - started, proc


def stop_baseline(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- dispatch_lateness ------------------------------------------------------

def dispatch_lateness(quick: bool) -> Result:
    rate, seconds, n_channels = 500, (5 if quick else 30), 5
    count = rate * seconds
    data = backlog(backlog_size(quick))
    res = Result("dispatch_lateness", quick, params={
        "rate_per_s": rate, "seconds": seconds, "posts": count, "channels": n_channels,
        "backlog_posts": data.count})
    with workdir("lateness") as tmp:
        channels = outbox_channels(tmp, n_channels)
        names = [c["id"] for c in channels[:-1]]
        copy_store(data.store, tmp)
        with running(daemon(tmp, channels)) as proc:
            client = Client(proc.port, role="marketing")
            first_due = time.time() + 2.0 + count / 5000
            dues = [first_due + i / rate for i in range(count)]
            due_by_id: dict[int, float] = {}
            for start in range(0, count, BATCH):
                body = [{"channel": names[i % n_channels], "text": TEXT.format(i),
                         "at": _rfc3339(dues[i])} for i in range(start, min(count, start + BATCH))]
                created = client.ok("POST", "/api/v1/posts", body)
                due_by_id.update((p["id"], dues[start + k]) for k, p in enumerate(created))
            assert proc.proc is not None
            time.sleep(max(0.0, first_due - time.time()))
            cpu_before = cpu_seconds(proc.proc.pid)
            time.sleep(seconds)
            cpu = cpu_seconds(proc.proc.pid) - cpu_before
            paths = [Path(c["path"]) for c in channels[:-1]]
            wait_until(lambda: len(read_outboxes(paths)) >= count, timeout=30)
            lines = read_outboxes(paths)
            states = Client(proc.port).ok("GET", "/api/v1/status")["posts"]
        res.figures.update(_lateness(lines, due_by_id))
        res.figures["states"] = states
        res.figures["daemon_cpu_pct"] = r(100 * cpu / seconds, 1)
    res.at_most("p99_ms", 50, " ms")
    res.check("exactly_once", res.figures["duplicates"] == 0 and res.figures["missing"] == 0
              and states.get("published") == count and states.get("scheduled") == data.count,
              "every post published once, the backlog untouched")

    base = baseline.skipped() or lateness_baseline(rate, seconds, data)
    res.figures["baseline"] = base
    res.figures["ratio_switchboard_over_baseline"] = {
        "p50": ratio(res.figures["p50_ms"], base.get("p50_ms")),
        "p99": ratio(res.figures["p99_ms"], base.get("p99_ms"))}
    return res


def _lateness(lines: list[dict[str, Any]], due_by_id: dict[int, float]) -> dict[str, Any]:
    sent: Counter[int] = Counter()
    late: list[float] = []
    for line in lines:
        post_id = int(line["post_id"])
        sent[post_id] += 1
        if post_id in due_by_id and sent[post_id] == 1:
            at = datetime.fromisoformat(line["sent_at"]).timestamp()
            late.append(at - due_by_id[post_id])
    stats = summary_ms(late)
    return {"published": len(sent), "duplicates": sum(n - 1 for n in sent.values()),
            "missing": len(set(due_by_id) - set(sent)), "p50_ms": stats["p50_ms"],
            "p99_ms": stats["p99_ms"], "max_ms": stats["max_ms"],
            "early": sum(1 for x in late if x < 0)}


def lateness_baseline(rate: int, seconds: int, data: Backlog) -> dict[str, Any]:
    """The same posts at the same rate as one job each. A scheduler that falls
    behind gets as long again as the run (plus 10 s) to catch up; posts still
    not run then count with the lateness they had reached when it was stopped,
    which makes p50/p99 lower bounds (`lower_bound: true`)."""
    count = rate * seconds
    assert data.jobs is not None
    with workdir("lateness-baseline") as tmp:
        db, outbox = tmp / "jobs.sqlite", tmp / "outbox.jsonl"
        shutil.copyfile(data.jobs, db)
        first_due = time.time() + 3.0 + count / 15_000  # after the fill and the start-up
        dues = [first_due + i / rate for i in range(count)]
        first_id = data.count + 1
        baseline.fill(db, enumerate(dues, start=first_id))
        _, proc = start_baseline(db, outbox)
        try:
            time.sleep(max(0.0, first_due - time.time()))
            cpu_before = cpu_seconds(proc.pid)
            time.sleep(seconds)
            cpu = cpu_seconds(proc.pid) - cpu_before
            wait_until(lambda: _count_lines(outbox) >= count, timeout=seconds + 10)
        finally:
            stopped = time.time()
            stop_baseline(proc)
        lines = [json.loads(x) for x in outbox.read_text().splitlines()] if outbox.exists() else []
    sent = Counter(int(x["post_id"]) for x in lines)
    late = [x["sent_at"] - x["due"] for x in lines]
    unrun = [stopped - due for i, due in enumerate(dues, start=first_id) if i not in sent]
    stats = summary_ms(late + unrun)
    return {"posts": count, "published": len(sent), "not_run_when_stopped": len(unrun),
            "duplicates": sum(n - 1 for n in sent.values()), "lower_bound": bool(unrun),
            "p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"], "max_ms": stats["max_ms"],
            "cpu_pct": r(100 * cpu / seconds, 1),
            "p99_within_50ms": stats["p99_ms"] is not None and stats["p99_ms"] <= 50}


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")
