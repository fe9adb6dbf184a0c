"""Incidents: how fast a declaration is acknowledged, and the leak race around it.

A declaration is acknowledged by HTTP 201 from `POST /api/v1/incidents`; by
design it is durable (committed with synchronous=FULL) and the gate is closed
before that answer is written, so the time to the 201 is the time to safety.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.dispatch import BATCH, TEXT
from bench.harness import (
    Client,
    Result,
    daemon,
    outbox_channels,
    r,
    read_outboxes,
    running,
    summary_ms,
    workdir,
)

RUNBOOK = "security-incident"  # shipped; scope: all public channels; 1 h cooldown


def declare_ack(quick: bool) -> Result:
    """Sequential declarations, each resolved after: first on an idle daemon, then
    while it publishes 500 posts/s on other channels.

    Idle: each declaration of the runbook takes all public channels; its steps
    (holding statement, handover notice) and the resolve step run in the pause
    between two declarations, so each is timed on its own. Under load: the
    declarations name one channel (`brand-0`) while scheduled marketing posts
    fall due on the others; reported beside the target, not judged.
    """
    count, n_channels, pause = (40 if quick else 200), 5, 0.05
    load_seconds, rate = (4 if quick else 10), 500
    res = Result("declare_ack", quick, params={
        "declarations": count, "channels": n_channels, "runbook": RUNBOOK, "pause_s": pause,
        "connection": "keep-alive", "under_load_rate_per_s": rate,
        "under_load_seconds": load_seconds})
    with workdir("declare") as tmp, \
            running(daemon(tmp, outbox_channels(tmp, n_channels))) as proc:
        ops = Client(proc.port, role="ops")
        declare, resolve = _declarations(ops, count, pause, {})
        idle_active = len([i for i in ops.every("/api/v1/incidents?limit=1000")
                           if i["state"] == "active"])
        first_due = time.time() + 2.0
        _schedule(Client(proc.port, role="marketing"),
                  [f"brand-{i}" for i in range(1, n_channels)],
                  [first_due + i / rate for i in range(rate * load_seconds)])
        time.sleep(max(0.0, first_due - time.time()))
        loaded: list[float] = []
        while time.time() < first_due + load_seconds - 0.3:
            loaded += _declarations(ops, 1, pause, {"channels": ["brand-0"]})[0]
    stats = summary_ms(declare)
    res.figures.update(ack_p50_ms=stats["p50_ms"], ack_p99_ms=stats["p99_ms"],
                       ack_max_ms=stats["max_ms"], resolve=summary_ms(resolve),
                       left_active=idle_active, under_load=summary_ms(loaded))
    res.at_most("ack_p99_ms", 20, " ms")
    return res


def _declarations(ops: Client, count: int, pause: float,
                  extra: dict[str, Any]) -> tuple[list[float], list[float]]:
    declare, resolve = [], []
    for k in range(count):
        started = time.perf_counter()
        status, incident = ops.call("POST", "/api/v1/incidents",
                                    {"runbook": RUNBOOK, "title": f"Bench {k}", **extra})
        declare.append(time.perf_counter() - started)
        if status != 201:
            raise RuntimeError(f"declare answered {status}: {incident}")
        time.sleep(pause)
        started = time.perf_counter()
        ops.ok("POST", f"/api/v1/incidents/{incident['id']}/resolve", {"note": "bench"})
        resolve.append(time.perf_counter() - started)
        time.sleep(pause)
    return declare, resolve


def _schedule(client: Client, channels: list[str], dues: list[float]) -> dict[int, float]:
    """Marketing posts due at `dues`, round-robin over `channels`; {post id: due}."""
    due_by_id: dict[int, float] = {}
    for start in range(0, len(dues), BATCH):
        body = [{"channel": channels[i % len(channels)], "text": TEXT.format(i),
                 "at": datetime.fromtimestamp(dues[i], UTC).isoformat()}
                for i in range(start, min(len(dues), start + BATCH))]
        created = client.ok("POST", "/api/v1/posts", body)
        due_by_id.update((p["id"], dues[start + k]) for k, p in enumerate(created))
    return due_by_id


def leak_race(quick: bool) -> Result:
    """Marketing posts due from 1 s before to 1 s after a declaration, many channels.

    No marketing send may start after the acknowledgement (outbox `sent_at`
    against the client's clock once the 201 was read); posts due before the
    declaration must have gone out. As in tests/integration/test_incident_race.py,
    "before" leaves out the last 200 ms before `declared_at`: a post due then may
    be in its send pipeline, and suppressing it is right (counted, not failed).
    """
    count, n_channels = (2000, 5) if quick else (10_000, 10)
    margin = 0.2
    res = Result("leak_race", quick, params={"posts": count, "channels": n_channels,
                                             "window_s": 2.0, "runbook": RUNBOOK,
                                             "before_margin_ms": margin * 1000})
    with workdir("leak") as tmp:
        channels = outbox_channels(tmp, n_channels)
        names = [c["id"] for c in channels[:-1]]
        with running(daemon(tmp, channels)) as proc:
            marketing = Client(proc.port, role="marketing")
            declare_at = time.time() + 3.0 + count / 5000
            due_by_id = _schedule(marketing, names,
                                  [declare_at - 1 + 2 * i / count for i in range(count)])
            ops = Client(proc.port, role="ops")
            ops.ok("GET", "/api/v1/status")  # open the connection before the race
            time.sleep(max(0.0, declare_at - time.time()))
            started = time.perf_counter()
            incident = ops.ok("POST", "/api/v1/incidents",
                              {"runbook": RUNBOOK, "title": "Leak race"})
            acknowledged = time.time()
            ack_ms = (time.perf_counter() - started) * 1000
            time.sleep(1.0 + 1.5)  # past the last due time, and the pipeline drained
            posts = Client(proc.port).every("/api/v1/posts?limit=1000")
            lines = read_outboxes([Path(c["path"]) for c in channels[:-1]])
    res.figures.update(_race(lines, posts, due_by_id, incident, acknowledged, margin))
    res.figures["ack_ms"] = r(ack_ms, 2)
    f = res.figures
    res.check("sends_after_ack", f["sends_after_ack"] == 0, "0")
    res.check("duplicates", f["duplicates"] == 0, "0")
    res.check("due_before_published", f["due_before"]["not_published"] == 0,
              "every post due before declared_at - 200 ms published")
    res.check("due_after_suppressed", f["due_after"]["not_suppressed"] == 0,
              "every post due after the acknowledgement suppressed, tied to the incident")
    res.check("outbox_matches_store", f["outbox_matches_store"], "outbox lines = published")
    return res


def _race(lines: list[dict[str, Any]], posts: list[dict[str, Any]], due_by_id: dict[int, float],
          incident: dict[str, Any], acknowledged: float, margin: float) -> dict[str, Any]:
    sent: Counter[int] = Counter()
    late = 0
    for line in lines:
        if line.get("kind") != "marketing":
            continue
        sent[int(line["post_id"])] += 1
        if datetime.fromisoformat(line["sent_at"]).timestamp() > acknowledged:
            late += 1
    declared = datetime.fromisoformat(incident["declared_at"]).timestamp()
    state = {p["id"]: p for p in posts if p["id"] in due_by_id}
    before = [i for i, d in due_by_id.items() if d < declared - margin]
    edge = [i for i, d in due_by_id.items() if declared - margin <= d <= acknowledged]
    after = [i for i, d in due_by_id.items() if d > acknowledged]
    published = {i for i, p in state.items() if p["state"] == "published"}

    def states(ids: list[int]) -> dict[str, int]:
        return dict(Counter(state[i]["state"] for i in ids))

    return {
        "sends_after_ack": late,
        "duplicates": sum(n - 1 for n in sent.values()),
        "declared_to_ack_ms": r((acknowledged - declared) * 1000, 2),
        "due_before": {"posts": len(before), "states": states(before),
                       "not_published": len([i for i in before if i not in published])},
        "due_in_margin": {"posts": len(edge), "states": states(edge)},
        "due_after": {"posts": len(after), "states": states(after),
                      "not_suppressed": len([i for i in after
                                             if state[i]["state"] != "suppressed"
                                             or state[i]["incident_id"] != incident["id"]])},
        "outbox_matches_store": set(sent) == published,
        "declared_at_offset_s": r(declared - (min(due_by_id.values()) + 1), 3),
    }

