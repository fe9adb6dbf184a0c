"""A runbook's timeline on the real daemon, in seconds instead of hours.

The drill runbook posts a holding statement at 0s, reminds ops every 2s when
no operational update went out in the last 2s, escalates at 3s, and on
resolution posts an all-clear, then keeps the channels for a 2s cooldown.
Offsets are read from the outbox files' `sent_at` (the moment each send
started) against the incident's `declared_at`.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.daemon import DaemonProcess, base_config, free_port
from tests.fakes.fake_webhook import FakeWebhook
from tests.fakes.server import Hang

TOLERANCE = 0.5  # seconds either side of a step's offset

DRILL_TEMPLATE = """\
name: drill
title: Timeline drill
severity: major
scope: all
suppress: [marketing]
handover:
  role: ops
  notify: [ops-chat]
steps:
  - name: holding-statement
    at: 0s
    action: post
    template: "We know services are disrupted: {{ incident.title }}. Our teams are on it."
  - name: update-due
    every: EVERY
    action: remind
    channels: [ops-chat]
  - name: escalate
    at: ESCALATE
    action: notify
    channels: [ops-chat]
    template: "ESCALATION {{ incident.id }} still open: {{ incident.title }}"
resolve:
  cooldown: 2s
  held_posts: review
  steps:
    - name: all-clear
      action: post
      template: "ALL CLEAR: services are running normally again."
"""

OVERDUE = "switchboard_operational_update_overdue"


def drill_runbook(every: str = "2s", escalate: str = "3s") -> str:
    return DRILL_TEMPLATE.replace("EVERY", every).replace("ESCALATE", escalate)


DRILL = drill_runbook()


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def offsets(lines: list[dict[str, Any]], origin: datetime, marker: str) -> list[float]:
    """Seconds after `origin` at which lines whose text contains `marker` were sent."""
    return [(parse(line["sent_at"]) - origin).total_seconds() for line in lines
            if marker in line["text"]]


def near(actual: list[float], expected: list[float]) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - e) <= TOLERANCE for a, e in zip(actual, expected, strict=True))


def step_runs(incident: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [(e["step"], e["occurrence"], e["result"]) for e in incident["timeline"]
            if e["event"] == "step"]


def wait_sent(daemon: DaemonProcess, marker: str, count: int,
              name: str = "outbox.jsonl") -> list[dict[str, Any]]:
    """The lines of an outbox file whose text contains `marker`, once there are
    at least `count` of them."""
    def found() -> list[dict[str, Any]]:
        lines = [line for line in daemon.outbox(name) if marker in line["text"]]
        return lines if len(lines) >= count else []
    lines: list[dict[str, Any]] = daemon.wait_for(found)
    return lines


def wait_step(daemon: DaemonProcess, step: str, occurrence: int,
              incident: str = "INC-1") -> dict[str, Any]:
    """The timeline entry of a step's run, once it has been recorded."""
    def found() -> list[dict[str, Any]]:
        return [e for e in daemon.ok("GET", f"/api/v1/incidents/{incident}")["timeline"]
                if e["event"] == "step" and (e["step"], e["occurrence"]) == (step, occurrence)]
    entries: list[dict[str, Any]] = daemon.wait_for(found)
    assert len(entries) == 1, entries
    return entries[0]


def drill(tmp_path: Path, runbook: str = DRILL) -> DaemonProcess:
    return DaemonProcess(tmp_path, runbooks={"drill": runbook})


def test_steps_run_at_their_offsets_and_reminders_wait_for_silence(tmp_path: Path) -> None:
    daemon = drill(tmp_path).start()
    try:
        offer = daemon.ok("POST", "/api/v1/posts", {"channel": "outbox", "text": "offer: 2 for 1",
                                                    "at": "+1s"}, role="marketing")
        incident = daemon.ok("POST", "/api/v1/incidents",
                             {"runbook": "drill", "title": "Trains stuck"}, role="ops")
        assert incident["id"] == "INC-1"
        t0 = parse(incident["declared_at"])
        labels = {"incident": "INC-1"}

        # 0s: hand-over notice and holding statement; 2s: first reminder (the
        # holding statement belongs to the declaration, not to this interval).
        assert near(offsets(wait_sent(daemon, "We know services", 1), t0, ""), [0.0])
        assert near(offsets(wait_sent(daemon, "declared: Trains stuck", 1, "ops-chat.jsonl"),
                            t0, ""), [0.0])
        assert near(offsets(wait_sent(daemon, "no operational update", 1, "ops-chat.jsonl"),
                            t0, ""), [2.0])
        # The gauge goes up before the reminder is sent.
        assert daemon.metric(OVERDUE, labels) == 1.0

        # 2.5s: ops post an update; the overdue gauge clears at once ...
        sleep_until(t0 + timedelta(seconds=2.5))
        update = daemon.ok("POST", "/api/v1/incidents/INC-1/update",
                           {"text": "Update: trains moving slowly, next update soon."},
                           role="ops")
        assert [p["state"] for p in update] == ["published"]
        assert daemon.metric(OVERDUE, labels) == 0.0

        # ... 3s: escalation; 4s: the reminder stays silent (update at 2.5s).
        assert near(offsets(wait_sent(daemon, "ESCALATION INC-1", 1, "ops-chat.jsonl"), t0, ""),
                    [3.0])
        silent = wait_step(daemon, "update-due", 1)
        assert silent["result"] == "skipped", silent
        assert near([(parse(silent["at"]) - t0).total_seconds()], [4.0])
        assert ("update-due", 1, "skipped") in step_runs(daemon.ok("GET", "/api/v1/incidents/1"))
        assert near(offsets(daemon.outbox("ops-chat.jsonl"), t0, "no operational update"),
                    [2.0])
        assert daemon.metric(OVERDUE, labels) == 0.0

        # 6s: silence since 4s, so the reminder fires and the gauge is up again.
        assert near(offsets(wait_sent(daemon, "no operational update", 2, "ops-chat.jsonl"),
                            t0, ""), [2.0, 6.0])
        assert daemon.metric(OVERDUE, labels) == 1.0

        resolved = daemon.ok("POST", "/api/v1/incidents/INC-1/resolve", {"note": "all moving"},
                             role="ops")
        r = parse(resolved["resolved_at"])
        cooldown_end = parse(resolved["cooldown_until"])
        assert abs((cooldown_end - r).total_seconds() - 2.0) < 0.01
        assert daemon.metric(OVERDUE, labels) == 0.0
        during = daemon.ok("POST", "/api/v1/posts", {"channel": "outbox", "text": "offer: cooldown",
                                                     "at": (r + timedelta(seconds=1)).isoformat()},
                           role="marketing")
        after = daemon.ok("POST", "/api/v1/posts", {"channel": "outbox", "text": "offer: later",
                                                    "at": (r + timedelta(seconds=2.8)).isoformat()},
                          role="marketing")
        assert near(offsets(wait_sent(daemon, "ALL CLEAR", 1), r, ""), [0.0])
        daemon.wait_for(lambda: [line for line in daemon.outbox()
                                 if line.get("post_id") == after["id"]])
        marketing = [line for line in daemon.outbox() if line["kind"] == "marketing"]
        assert [line["post_id"] for line in marketing] == [after["id"]]
        assert parse(marketing[0]["sent_at"]) >= parse(after["due_at"])
        assert parse(marketing[0]["sent_at"]) >= cooldown_end
        released = daemon.wait_for(lambda: [
            e for e in daemon.ok("GET", "/api/v1/incidents/INC-1")["timeline"]
            if e["event"] == "channels_released"])
        assert parse(released[0]["at"]) >= cooldown_end
        wait_step(daemon, "all-clear", 0)
        for post in (offer, during):
            state = daemon.ok("GET", f"/api/v1/posts/{post['id']}")
            assert (state["state"], state["incident_id"]) == ("held", "INC-1"), state
            assert parse(state["history"][-1]["at"]) >= cooldown_end
        # No reminder after the resolution: 8s would have been the next one, and the
        # daemon's timer has gone past it to send the post due at r + 2.8s.
        assert parse(marketing[0]["sent_at"]) > t0 + timedelta(seconds=8)
        assert len(offsets(daemon.outbox("ops-chat.jsonl"), t0, "no operational update")) == 2

        shown = daemon.ok("GET", "/api/v1/incidents/INC-1")
        assert step_runs(shown) == [
            ("handover", 0, "ok"), ("holding-statement", 0, "ok"), ("update-due", 0, "ok"),
            ("escalate", 0, "ok"), ("update-due", 1, "skipped"), ("update-due", 2, "ok"),
            ("all-clear", 0, "ok")]
        events = [e["event"] for e in shown["timeline"]]
        for expected in ("declared", "posts_suppressed", "update_posted", "resolved",
                         "channels_released"):
            assert expected in events, events
        assert events.index("update_posted") < events.index("resolved") < \
            events.index("channels_released")
        released = next(e for e in shown["timeline"] if e["event"] == "channels_released")
        assert (released["held_posts"], released["held"]) == ("review", 2)
    finally:
        daemon.kill()


def test_a_restart_between_two_occurrences_neither_repeats_nor_skips(tmp_path: Path) -> None:
    # Reminders every 5s, escalation at 7s: the daemon is down from 5.6s to 10.3s,
    # so both come due while it is down; 4.7s leave room for a slow start.
    daemon = drill(tmp_path, drill_runbook(every="5s", escalate="7s")).start()
    try:
        incident = daemon.ok("POST", "/api/v1/incidents",
                             {"runbook": "drill", "title": "Power cut"}, role="ops")
        t0 = parse(incident["declared_at"])
        wait_step(daemon, "update-due", 0)  # holding statement and reminder 0 done
        daemon.kill()
        killed = (datetime.now(UTC) - t0).total_seconds()
        assert killed < 7.0, f"down only at {killed:.1f}s: the escalation was due at 7s"
        sleep_until(t0 + timedelta(seconds=10.3))
        daemon.start()
        ready = (datetime.now(UTC) - t0).total_seconds()
        assert ready < 14.5, f"the daemon took until {ready:.1f}s to start"
        wait_sent(daemon, "no operational update", 3, "ops-chat.jsonl")
        wait_step(daemon, "update-due", 2)

        ops = daemon.outbox("ops-chat.jsonl")
        assert near(offsets(daemon.outbox(), t0, "We know services"), [0.0]), "not repeated"
        assert len(offsets(ops, t0, "declared: Power cut")) == 1
        reminders = offsets(ops, t0, "no operational update")
        assert len(reminders) == 3, reminders
        assert abs(reminders[0] - 5.0) <= TOLERANCE
        # reminder 1 came due while the daemon was down: it runs once, at start-up
        assert 10.3 <= reminders[1] <= ready + TOLERANCE
        assert abs(reminders[2] - 15.0) <= TOLERANCE, "back on the 5s grid"
        escalations = offsets(ops, t0, "ESCALATION")
        assert len(escalations) == 1 and 10.3 <= escalations[0] <= ready + TOLERANCE

        runs = step_runs(daemon.ok("GET", "/api/v1/incidents/INC-1"))
        counts = Counter((step, occurrence) for step, occurrence, _ in runs)
        assert counts == Counter({("handover", 0): 1, ("holding-statement", 0): 1,
                                  ("update-due", 0): 1, ("update-due", 1): 1,
                                  ("update-due", 2): 1, ("escalate", 0): 1}), runs
        assert {result for *_, result in runs} == {"ok"}
    finally:
        daemon.kill()


def test_an_overdue_update_stays_overdue_across_a_restart(tmp_path: Path) -> None:
    daemon = drill(tmp_path, drill_runbook(every="5s", escalate="1h")).start()
    try:
        incident = daemon.ok("POST", "/api/v1/incidents",
                             {"runbook": "drill", "title": "Lifts out"}, role="ops")
        t0 = parse(incident["declared_at"])
        sleep_until(t0 + timedelta(seconds=5.5))
        assert daemon.metric(OVERDUE, {"incident": "INC-1"}) == 1.0
        daemon.kill()
        daemon.start()
        assert (datetime.now(UTC) - t0).total_seconds() < 10, "no reminder due yet"
        assert daemon.metric(OVERDUE, {"incident": "INC-1"}) == 1.0
        daemon.ok("POST", "/api/v1/incidents/INC-1/update", {"text": "Lifts back soon."},
                  role="ops")
        assert daemon.metric(OVERDUE, {"incident": "INC-1"}) == 0.0
    finally:
        daemon.kill()


def test_a_step_cut_short_by_a_crash_is_reported_not_rerun(tmp_path: Path) -> None:
    # Re-running it could publish the holding statement twice; skipping it
    # silently would leave ops believing it went out.
    with FakeWebhook() as hook:
        config = base_config(tmp_path, free_port(), channels=[
            {"id": "chat", "kind": "webhook", "url_env": "SB_TEST_HOOK", "timeout": 60},
            {"id": "ops-chat", "kind": "outbox", "audience": "internal",
             "path": str(tmp_path / "ops-chat.jsonl")}])
        daemon = DaemonProcess(tmp_path, config=config, runbooks={"drill": DRILL},
                               env={"SB_TEST_HOOK": hook.url})
        hook.script(Hang(60, then="answer"))
        daemon.start()
        try:
            daemon.ok("POST", "/api/v1/incidents", {"runbook": "drill", "title": "Flood"},
                      role="ops")
            daemon.wait_for(lambda: len(hook.requests) == 1)  # the holding statement hangs
            daemon.kill()
            daemon.start()

            def interrupted() -> list[dict[str, Any]]:
                shown = daemon.ok("GET", "/api/v1/incidents/INC-1")
                return [e for e in shown["timeline"]
                        if e["event"] == "step" and e["step"] == "holding-statement"]
            entries = daemon.wait_for(interrupted)
            assert [(e["occurrence"], e["result"]) for e in entries] == [(0, "failed")]
            assert "restart" in entries[0]["detail"]
            daemon.wait_for(lambda: [  # ops are told, on the hand-over channel
                line for line in daemon.outbox("ops-chat.jsonl")
                if "step holding-statement failed: interrupted by a restart" in line["text"]])
            time.sleep(1.0)
            assert len(hook.requests) == 1, "never re-sent automatically"
            posts = daemon.ok("GET", "/api/v1/posts?channel=chat")
            assert [p["state"] for p in posts] == ["unknown"]
        finally:
            daemon.kill()
