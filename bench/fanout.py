"""Fan-out: one incident over thousands of channels (design §6).

The daemon has `channels` public outbox channels plus `ops-chat`. It is
started twice, each timed from spawning the process to the first `/readyz`
200: the first start creates the 10,000 outbox files (the outbox channel's
own cost, about 86 us a file on this disk, reported as `first_start_s`); the
second, judged, is every later start. Then one declaration of
a runbook whose scope is every public channel and whose first step posts a
holding statement at 0 m. The acknowledgement is the 201; "out" is the
latest outbox `sent_at` of the holding statement, counted from the moment the
request was sent. Every channel must get the statement exactly once.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import Client, Result, outbox_channels, r, running, start_timed, workdir
from bench.stalls import recorded
from tests.daemon import DaemonProcess, base_config, free_port

STATEMENT = "We are investigating an issue affecting our services. More soon."
_RUNBOOK = f"""
name: fanout
title: Fan-out
severity: major
scope: all
suppress: [marketing]
steps:
  - name: holding-statement
    at: 0m
    action: post
    template: "{STATEMENT}"
resolve:
  cooldown: 0s
  held_posts: review
"""


def fanout(quick: bool) -> Result:
    count = 1_000 if quick else 10_000
    timeout = 60.0 if quick else 120.0
    res = Result("fanout", quick, params={"channels": count, "channel_kind": "outbox",
                                          "runbook_scope": "all public channels",
                                          "wait_limit_s": timeout})
    with workdir("fanout") as tmp:
        channels = outbox_channels(tmp, count)
        proc = DaemonProcess(tmp, config=base_config(tmp, free_port(), channels),
                             runbooks={"fanout": _RUNBOOK})
        try:
            first = start_timed(proc, timeout=120.0)
            proc.stop()
            ready = start_timed(proc, timeout=120.0)
        except BaseException:
            proc.kill()
            raise
        with running(proc), recorded(proc, "fanout"):
            ops = Client(proc.port, role="ops")
            ops.ok("GET", "/api/v1/status")  # open the connection before the clock
            started_wall, started = time.time(), time.perf_counter()
            status, incident = ops.call("POST", "/api/v1/incidents",
                                        {"runbook": "fanout", "title": "Fan-out"})
            ack = time.perf_counter() - started
            if status != 201:
                raise RuntimeError(f"declare answered {status}: {incident}")
            paths = [Path(c["path"]) for c in channels[:-1]]
            waited = _wait_for_lines(paths, timeout)
        lines = _statement_lines(paths)
    sent = [datetime.fromisoformat(line["sent_at"]).timestamp() for line in lines]
    per_channel = Counter(line["channel"] for line in lines)
    res.figures.update(
        ready_s=r(ready, 2), first_start_s=r(first, 2), ack_ms=r(ack * 1000, 2),
        statements_out=len(per_channel),
        duplicates=sum(n - 1 for n in per_channel.values()),
        all_out_s=r(max(sent) - started_wall, 3) if len(per_channel) == count else None,
        first_out_s=r(min(sent) - started_wall, 3) if sent else None,
        statements_per_s=r(len(sent) / max(1e-9, max(sent) - min(sent)), 0)
        if len(sent) > 1 else None,
        waited_s=r(waited, 1))
    res.at_most("ack_ms", 50, " ms")
    res.at_most("all_out_s", 2, " s")
    res.at_most("ready_s", 2, " s")
    res.check("every_channel_once", len(per_channel) == count and
              res.figures["duplicates"] == 0, f"the statement once on each of {count:,}")
    return res


def _wait_for_lines(paths: list[Path], timeout: float) -> float:
    """Until each outbox has something in it (or `timeout`): seconds waited."""
    started = time.monotonic()
    left = list(paths)
    while left and time.monotonic() - started < timeout:
        left = [p for p in left if not _written(p)]
        if left:
            time.sleep(0.1)
    return time.monotonic() - started


def _written(path: Path) -> bool:
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False


def _statement_lines(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        if not path.exists():
            continue
        for text in path.read_text().splitlines():
            line = json.loads(text)
            if line.get("kind") == "operational" and line.get("text", "").strip() == STATEMENT:
                out.append(line)
    return out
