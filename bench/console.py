"""Console pages with a million posts stored: every page <= 100 ms at p95.

The posts go in through the API (as `bulk_schedule` does), spread one every
2.5 s over the coming month on ten channels, so the calendar's first week
holds far more posts than it shows. Then a signed-in admin fetches each page
SAMPLES times, one request at a time on a keep-alive connection, with an
incident active (banners and held channels on every page). The time is
request sent to the last byte of the page read.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.dispatch import BATCH, TEXT
from bench.harness import (
    TOKENS,
    Client,
    Result,
    daemon,
    outbox_channels,
    percentile,
    r,
    running,
    workdir,
)
from bench.load import closed_loop, request_bytes

SAMPLES = 40
PAGES = ["/", "/incidents", "/incidents/1", "/compose", "/calendar", "/calendar?view=month",
         "/calendar?channel=brand-3", "/posts", "/posts?state=scheduled&channel=brand-1",
         "/held", "/import", "/runbooks", "/audit", "/users"]


def console_pages(quick: bool) -> Result:
    count = 50_000 if quick else 1_000_000
    res = Result("console_pages", quick, params={"posts": count, "samples_per_page": SAMPLES,
                                                 "channels": 10})
    first_due = time.time() + 3600
    with workdir("console") as tmp:
        channels = outbox_channels(tmp, 10)
        names = [c["id"] for c in channels[:-1]]
        requests = [request_bytes("POST", "/api/v1/posts", json.dumps([
            {"channel": names[i % len(names)], "text": TEXT.format(i),
             "at": _rfc3339(first_due + i * 2.5)}
            for i in range(start, min(count, start + BATCH))]).encode(), TOKENS["marketing"])
            for start in range(0, count, BATCH)]
        with running(daemon(tmp, channels)) as proc:
            asyncio.run(closed_loop(proc.port, requests, connections=2))
            Client(proc.port, role="ops").ok("POST", "/api/v1/incidents", {
                "runbook": "rail-disruption", "title": "Benchmark incident",
                "channels": ["brand-0"], "reason": "benchmark"})
            cookie = _sign_in(proc.port, tmp)
            timings = {path: _fetch(proc.port, path, cookie) for path in PAGES}
            stored = Client(proc.port).ok("GET", "/api/v1/status")["posts"]
    res.figures["stored"] = stored
    worst = 0.0
    for path, seconds in timings.items():
        p95 = percentile(seconds, 95) or 0.0
        worst = max(worst, p95)
        res.figures[f"p95_ms {path}"] = r(p95 * 1000, 1)
    res.figures["worst_p95_ms"] = r(worst * 1000, 1)
    res.at_most("worst_p95_ms", 100, " ms")
    return res


def _sign_in(port: int, tmp: Path) -> str:
    password = (tmp / "state" / "admin-password").read_text().strip()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/signin", body=f"name=admin&password={password}",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    conn.close()
    set_cookie = response.getheader("Set-Cookie") or ""
    if response.status != 303 or not set_cookie:
        raise RuntimeError(f"sign-in failed: {response.status}")
    return set_cookie.split(";", 1)[0]


def _fetch(port: int, path: str, cookie: str) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    try:
        for _ in range(SAMPLES):
            started = time.perf_counter()
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            times.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status}")
    finally:
        conn.close()
    return times


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()
