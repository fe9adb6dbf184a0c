"""The baseline: what a Python user builds first.

One APScheduler 3.11 job per post, in `SQLAlchemyJobStore` on an SQLite file
with the library's and SQLite's defaults (rollback journal,
`synchronous=FULL`), run by `AsyncIOScheduler` like the daemon's own timer.
The job stands for the post's send: it appends one JSON line with the moment
it started, the way switchboard's outbox channel does.

It runs in its own process (`command(...)` builds the command line) so its
start-up time and memory are measured like the daemon's. `fill` stores jobs
exactly as `add_job` would (same table, same pickled state) but in one
transaction, because `add_job` commits one job at a time and a million would
take hours; the time `add_job` itself takes is measured by `schedule`.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import signal
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

if TYPE_CHECKING:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

_outbox: IO[str] | None = None


def skipped() -> dict[str, str] | None:
    """Why the baseline cannot run here (SQLAlchemy missing), or None if it can."""
    try:
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"baseline needs SQLAlchemy: {exc}"}
    return None


async def publish(post_id: int, due: float) -> None:
    """The job: one line per run, with the time the run started."""
    sent_at = time.time()
    assert _outbox is not None
    _outbox.write(json.dumps({"post_id": post_id, "due": due, "sent_at": sent_at}) + "\n")
    _outbox.flush()


def _scheduler(db: Path) -> tuple[AsyncIOScheduler, SQLAlchemyJobStore]:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    store = SQLAlchemyJobStore(url=f"sqlite:///{db}")
    return AsyncIOScheduler(jobstores={"default": store}, timezone=UTC), store


def _job(scheduler: AsyncIOScheduler, post_id: int, due: float) -> Job:
    run_date = datetime.fromtimestamp(due, UTC)
    return Job(scheduler, id=str(post_id), func=publish, trigger=DateTrigger(run_date=run_date),
               executor="default", args=(post_id, due), kwargs={}, name="publish",
               misfire_grace_time=None, coalesce=True, max_instances=1, next_run_time=run_date)


def fill(db: Path, posts: Iterable[tuple[int, float]], chunk: int = 20_000) -> None:
    """Store one job per (post id, due time): the rows `add_job` writes, in one transaction."""
    scheduler, store = _scheduler(db)
    store.start(scheduler, "default")  # creates the table, as the scheduler would
    rows: list[dict[str, Any]] = []
    with store.engine.begin() as conn:
        for post_id, due in posts:
            job = _job(scheduler, post_id, due)
            rows.append({"id": job.id, "next_run_time": due,
                         "job_state": pickle.dumps(job.__getstate__(), store.pickle_protocol)})
            if len(rows) >= chunk:
                conn.execute(store.jobs_t.insert(), rows)
                rows = []
        if rows:
            conn.execute(store.jobs_t.insert(), rows)
    store.shutdown()


def command(*args: str) -> list[str]:
    """The baseline process's command line (`main` below, with `args`)."""
    return [sys.executable, "-c", "import sys; from bench.baseline import main; "
            "sys.exit(main(sys.argv[1:]))", *args]


def main(argv: list[str]) -> int:
    mode, db = argv[0], Path(argv[1])
    if mode == "serve":
        asyncio.run(_serve(db, Path(argv[2])))
    elif mode == "schedule":
        print(json.dumps(asyncio.run(_schedule(db, int(argv[2]), float(argv[3]),
                                               float(argv[4])))), flush=True)
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


async def _serve(db: Path, outbox: Path) -> None:
    """Start the scheduler on the stored jobs, say so, run until SIGTERM."""
    global _outbox
    _outbox = open(outbox, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    scheduler, _ = _scheduler(db)
    scheduler.start()
    await asyncio.sleep(0)  # let the scheduler's first wake-up (due-job scan) run
    print(json.dumps({"ready": time.time()}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    scheduler.shutdown(wait=False)


async def _schedule(db: Path, count: int, budget: float, first_due: float) -> dict[str, Any]:
    """`add_job` one post at a time on a running scheduler until `count` or `budget` s."""
    scheduler, _ = _scheduler(db)
    scheduler.start()
    started = time.perf_counter()
    added = 0
    while added < count and time.perf_counter() - started < budget:
        due = first_due + added
        scheduler.add_job(publish, DateTrigger(run_date=datetime.fromtimestamp(due, UTC)),
                          args=(added, due), id=str(added), misfire_grace_time=None)
        added += 1
    elapsed = time.perf_counter() - started
    scheduler.shutdown(wait=False)
    return {"added": added, "seconds": elapsed}
