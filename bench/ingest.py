"""Alertmanager ingest: webhook v4 deliveries of 10 alerts to `POST /feeds/alertmanager`.

What the deliveries hold (so that ingest is measured, not thousands of
incidents): 200 pre-built payloads rotate, each of 10 alerts with their own
fingerprints (2,000 keys), labels that match no rule (`severity: warning`),
one in five of them `resolved`. Every 100th delivery also carries one alert
that matches the feed's rule (`severity: critical, service: rail`) with the
same fingerprint each time: the first declares one incident (runbook
rail-disruption), the rest are repeats that update it (a durable timeline
write each, fsync included). So 99 % of deliveries are read-only for the
store, and 1 % write, which is pessimistic for a real Alertmanager (it repeats
a firing group every `repeat_interval`, hours by default).

Two measurements: latency at an offered 2,000 deliveries/s (open loop, timed
from each delivery's scheduled start, 32 keep-alive connections), and
capacity: deliveries/s with 16 connections sending as fast as answers come.
The load generator runs in this process on the same two cores as the daemon.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import (
    TOKENS,
    Client,
    Result,
    cpu_seconds,
    daemon,
    outbox_channels,
    r,
    running,
    summary_ms,
    workdir,
)
from bench.load import closed_loop, open_loop, request_bytes

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / \
    "alertmanager-v4-firing.json"
FEED = {"id": "alertmanager", "kind": "alertmanager", "token_env": "SB_TEST_FEED",
        "rules": [{"match": {"severity": "critical", "service": "rail"},
                   "runbook": "rail-disruption"}]}
VARIANTS, ALERTS, MATCH_EVERY = 200, 10, 100


def payloads() -> tuple[list[bytes], bytes]:
    """(ordinary deliveries, the one with the rule-matching alert added)."""
    fixture = json.loads(FIXTURE.read_text())
    template = fixture["alerts"][0]
    ordinary = []
    for v in range(VARIANTS):
        group = copy.deepcopy(fixture)
        group["commonLabels"] = {"alertname": "HighLatency", "severity": "warning"}
        group["alerts"] = [_alert(template, f"{v:04x}{a:04x}{'0' * 8}", f"web-{v % 20}",
                                  "warning", "resolved" if (v + a) % 5 == 0 else "firing")
                           for a in range(ALERTS)]
        ordinary.append(json.dumps(group).encode())
    group = json.loads(ordinary[0])
    group["alerts"][0] = _alert(template, "ra11ra11ra11ra11", "rail", "critical", "firing")
    return ordinary, json.dumps(group).encode()


def _alert(template: dict[str, Any], fingerprint: str, service: str, severity: str,
           status: str) -> dict[str, Any]:
    alert = copy.deepcopy(template)
    alert["status"] = status
    alert["fingerprint"] = fingerprint
    alert["labels"] = {**alert["labels"], "alertname": "HighLatency", "service": service,
                       "severity": severity, "instance": f"{service}.example.org:443"}
    return alert


def alertmanager_ingest(quick: bool) -> Result:
    rate, seconds = 2000, (3 if quick else 20)
    count = rate * seconds
    res = Result("alertmanager_ingest", quick, params={
        "offered_per_s": rate, "seconds": seconds, "deliveries": count,
        "alerts_per_delivery": ALERTS, "payload_variants": VARIANTS,
        "rule_matching_share": 1 / MATCH_EVERY, "connections": 32,
        "capacity_connections": 16})
    ordinary, matching = payloads()
    res.params["payload_bytes"] = len(ordinary[0])

    def delivery(k: int) -> bytes:
        body = matching if k % MATCH_EVERY == MATCH_EVERY // 2 else ordinary[k % VARIANTS]
        return request_bytes("POST", "/feeds/alertmanager", body, TOKENS["feed"])

    requests = [delivery(k) for k in range(count)]
    with workdir("ingest") as tmp, \
            running(daemon(tmp, outbox_channels(tmp, 5), feeds=[FEED])) as proc:
        assert proc.proc is not None
        cpu_before, own_before = cpu_seconds(proc.proc.pid), time.process_time()
        samples = asyncio.run(open_loop(proc.port, requests, rate, connections=32))
        cpu = cpu_seconds(proc.proc.pid) - cpu_before
        own = time.process_time() - own_before
        capacity_count = count // 2
        capacity = asyncio.run(closed_loop(proc.port, requests[:capacity_count],
                                           connections=16))
        incidents = Client(proc.port).ok("GET", "/api/v1/incidents?all=true")
    wall = max(s.done for s in samples) - min(s.scheduled for s in samples)
    latency = summary_ms([s.done - s.scheduled for s in samples])
    capacity_wall = max(s.done for s in capacity) - min(s.sent for s in capacity)
    statuses = Counter(s.status for s in samples) + Counter(s.status for s in capacity)
    res.figures.update(
        achieved_per_s=round(len(samples) / wall), p50_ms=latency["p50_ms"],
        p99_ms=latency["p99_ms"], max_ms=latency["max_ms"],
        service_p99_ms=summary_ms([s.done - s.sent for s in samples])["p99_ms"],
        capacity_per_s=round(capacity_count / capacity_wall),
        statuses={str(k): v for k, v in sorted(statuses.items())},
        incidents=len(incidents), daemon_cpu_pct=r(100 * cpu / wall, 1),
        client_cpu_pct=r(100 * own / wall, 1))
    res.at_most("p99_ms", 50, " ms at 2000 deliveries/s")
    res.at_least("capacity_per_s", 2000, " deliveries/s")
    res.check("all_accepted", set(statuses) == {202}, "every delivery answered 202")
    res.check("one_incident", len(incidents) == 1, "the repeated matching alert: 1 incident")
    return res
