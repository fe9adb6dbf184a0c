"""Bulk scheduling through the API: `POST /api/v1/posts` with lists of posts.

Each request carries BATCH posts (about 0.6 MB of JSON, under the 1 MiB body
limit) and is one transaction in the daemon. Bodies are built before the
clock starts; two connections keep the daemon busy while the client reads an
answer (the daemon serves one request at a time on its one event loop, so
more would only queue). The rate is posts stored per second of wall time,
first request sent to last answer read, answers (the created posts) included.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from bench import baseline
from bench.dispatch import BATCH, TEXT
from bench.harness import (
    TOKENS,
    Client,
    Result,
    daemon,
    outbox_channels,
    r,
    ratio,
    running,
    workdir,
)
from bench.load import closed_loop, request_bytes


def bulk_schedule(quick: bool) -> Result:
    count = 50_000 if quick else 1_000_000
    res = Result("bulk_schedule", quick, params={"posts": count, "posts_per_request": BATCH,
                                                 "connections": 2, "channels": 10})
    first_due = time.time() + 86_400
    with workdir("bulk") as tmp:
        channels = outbox_channels(tmp, 10)
        names = [c["id"] for c in channels[:-1]]
        requests = []
        for start in range(0, count, BATCH):
            body = [{"channel": names[i % len(names)], "text": TEXT.format(i),
                     "at": _rfc3339(first_due + i * 2.5)}
                    for i in range(start, min(count, start + BATCH))]
            data = json.dumps(body).encode()
            requests.append(request_bytes("POST", "/api/v1/posts", data, TOKENS["marketing"]))
        res.params["request_mb"] = r(max(len(x) for x in requests) / 2**20, 2)
        with running(daemon(tmp, channels)) as proc:
            samples = asyncio.run(closed_loop(proc.port, requests, connections=2))
            scheduled = Client(proc.port).ok("GET", "/api/v1/status")["posts"]["scheduled"]
    wall = max(s.done for s in samples) - min(s.sent for s in samples)
    per_request = sorted(s.done - s.sent for s in samples)
    statuses = sorted({s.status for s in samples})
    res.figures.update(posts_per_s=round(count / wall), wall_s=r(wall, 2),
                       request_p50_ms=r(1000 * per_request[len(per_request) // 2], 1),
                       request_max_ms=r(1000 * per_request[-1], 1), statuses=statuses,
                       stored=scheduled)
    res.at_least("posts_per_s", 20_000, " posts/s")
    res.check("all_stored", statuses == [201] and scheduled == count, f"{count} stored, all 201")

    base = baseline.skipped() or schedule_baseline(count, budget=3.0 if quick else 20.0)
    res.figures["baseline"] = base
    res.figures["ratio_switchboard_over_baseline"] = {
        "posts_per_s": ratio(res.figures["posts_per_s"], base.get("posts_per_s"))}
    return res


def schedule_baseline(count: int, budget: float) -> dict[str, Any]:
    """`add_job` per post for at most `budget` seconds; the rest is extrapolated."""
    with workdir("bulk-baseline") as tmp:
        out = subprocess.run(baseline.command("schedule", str(tmp / "jobs.sqlite"), str(count),
                                              str(budget), str(time.time() + 86_400)),
                             capture_output=True, text=True, check=True, timeout=budget + 120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    rate = got["added"] / got["seconds"]
    return {"jobs_added": got["added"], "seconds": r(got["seconds"], 2),
            "posts_per_s": round(rate, 1),
            "extrapolated_s_for_all": None if got["added"] == count else round(count / rate),
            "measured_all": got["added"] == count}


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
