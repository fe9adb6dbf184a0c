"""What happens to the marketing posts an incident held, on the real daemon.

Each held-post policy end to end (review, drop, reschedule with min_spacing),
overlapping incidents on one channel, a crash right after a declaration, and
the Eurostar demo, which ends with the held offers listed for review.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.daemon import ROOT, DaemonProcess, base_config, free_port

OFFER_DELAY = 0.3  # seconds from scheduling to due


def holding_runbook(name: str, policy: str, *, cooldown: str = "1s", spacing: str = "1s",
                    steps: str = "") -> str:
    return f"""\
name: {name}
title: Held posts ({policy})
severity: major
scope: all
suppress: [marketing]
handover:
  role: ops
  notify: [ops-chat]
{steps}resolve:
  cooldown: {cooldown}
  held_posts: {policy}
  min_spacing: {spacing}
"""


HOLDING_STATEMENT = """\
steps:
  - name: holding-statement
    at: 0s
    action: post
    template: "We know services are disrupted: {{ incident.title }}."
"""


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def soon(seconds: float = OFFER_DELAY) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def schedule(daemon: DaemonProcess, texts: list[str], channel: str = "outbox",
             **extra: Any) -> list[dict[str, Any]]:
    posts: list[dict[str, Any]] = daemon.ok(
        "POST", "/api/v1/posts", [{"channel": channel, "text": t, "at": soon(), **extra}
                                  for t in texts], role="marketing")
    return posts


def state(daemon: DaemonProcess, post: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = daemon.ok("GET", f"/api/v1/posts/{post['id']}")
    return found


def states(daemon: DaemonProcess, posts: list[dict[str, Any]]) -> list[str]:
    return [state(daemon, p)["state"] for p in posts]


def wait_states(daemon: DaemonProcess, posts: list[dict[str, Any]], expected: str,
                timeout: float = 10.0) -> None:
    daemon.wait_for(lambda: states(daemon, posts) == [expected] * len(posts), timeout)


def marketing_lines(daemon: DaemonProcess, name: str = "outbox.jsonl") -> list[dict[str, Any]]:
    return [line for line in daemon.outbox(name) if line.get("kind") == "marketing"]


def wait_lines(daemon: DaemonProcess, count: int,
               name: str = "outbox.jsonl") -> list[dict[str, Any]]:
    """The channel's marketing lines once there are at least `count`."""
    lines: list[dict[str, Any]] = daemon.wait_for(
        lambda: (found := marketing_lines(daemon, name)) and len(found) >= count and found)
    return lines


def declare(daemon: DaemonProcess, runbook: str, title: str = "Outage") -> dict[str, Any]:
    incident: dict[str, Any] = daemon.ok("POST", "/api/v1/incidents",
                                         {"runbook": runbook, "title": title}, role="ops")
    return incident


def resolve(daemon: DaemonProcess, incident: str) -> datetime:
    """Resolve; returns the end of the cooldown."""
    resolved = daemon.ok("POST", f"/api/v1/incidents/{incident}/resolve", role="ops")
    return parse(resolved["cooldown_until"])


def wait_released(daemon: DaemonProcess, incident: str,
                  timeout: float = 10.0) -> dict[str, Any]:
    """The incident's `channels_released` timeline entry, once its cooldown has ended
    and its held-post policy has run."""
    def released() -> list[dict[str, Any]]:
        return [e for e in daemon.ok("GET", f"/api/v1/incidents/{incident}")["timeline"]
                if e["event"] == "channels_released"]
    entries: list[dict[str, Any]] = daemon.wait_for(released, timeout)
    assert len(entries) == 1, entries
    return entries[0]


def outbox_control(daemon: DaemonProcess) -> tuple[str, list[str]]:
    channel = next(c for c in daemon.ok("GET", "/api/v1/channels") if c["id"] == "outbox")
    return channel["control"], channel["under_incident"]


# -- the policies ---------------------------------------------------------------

def test_review_holds_each_post_until_marketing_releases_or_drops_it(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, runbooks={"hold": holding_runbook("hold", "review")})
    daemon.start()
    try:
        declare(daemon, "hold")
        posts = schedule(daemon, [f"offer {i}" for i in range(5)])
        wait_states(daemon, posts, "suppressed")
        refused = daemon.api("POST", f"/api/v1/posts/{posts[0]['id']}/release", role="marketing")
        assert refused.status_code == 409, "nothing is released while the incident holds it"

        cooldown_end = resolve(daemon, "INC-1")
        wait_states(daemon, posts, "held")
        for post in posts:
            found = state(daemon, post)
            assert found["incident_id"] == "INC-1"
            # Suppressed until it went to review, and that not before the cooldown ended.
            assert [h["to"] for h in found["history"]][-2:] == ["suppressed", "held"]
            assert parse(found["history"][-1]["at"]) >= cooldown_end
        listed = daemon.cli("post", "list", "--state", "held", role="marketing")
        assert listed.returncode == 0, listed.stderr
        assert sum(" held " in line for line in listed.stdout.splitlines()) == 5

        now_, later, dropped, cli_released, cli_dropped = posts
        released_at = datetime.now(UTC)
        released = daemon.ok("POST", f"/api/v1/posts/{now_['id']}/release", role="marketing")
        assert released["state"] == "scheduled"
        assert parse(released["due_at"]) >= released_at
        before = datetime.now(UTC)
        deferred = daemon.ok("POST", f"/api/v1/posts/{later['id']}/release", {"at": "+2s"},
                             role="marketing")
        after = datetime.now(UTC)
        assert before + timedelta(seconds=2) <= parse(deferred["due_at"]) <= \
            after + timedelta(seconds=2)
        assert daemon.ok("POST", f"/api/v1/posts/{dropped['id']}/drop",
                         role="marketing")["state"] == "dropped"
        cli = daemon.cli("post", "release", str(cli_released["id"]), role="marketing")
        assert (cli.returncode, cli.stdout.strip()) == (0, f"post {cli_released['id']} scheduled")
        cli = daemon.cli("post", "drop", str(cli_dropped["id"]), role="marketing")
        assert (cli.returncode, cli.stdout.strip()) == (0, f"post {cli_dropped['id']} dropped")

        daemon.wait_for(lambda: len(marketing_lines(daemon)) == 3)
        time.sleep(0.5)
        lines = marketing_lines(daemon)
        sent = {line["post_id"]: parse(line["sent_at"]) for line in lines}
        assert len(lines) == 3, "each released post exactly once"
        assert set(sent) == {p["id"] for p in (now_, later, cli_released)}
        dues = {p["id"]: parse(state(daemon, p)["due_at"]) for p in (now_, later, cli_released)}
        for post_id, due in dues.items():
            assert sent[post_id] >= due, "never before its release time"
        assert sent[later["id"]] >= parse(deferred["due_at"]), "released for +2s: not before"
        assert [line["post_id"] for line in lines] == sorted(dues, key=lambda i: dues[i]), \
            "sent in the order of their release times"
        assert states(daemon, [dropped, cli_dropped]) == ["dropped", "dropped"]
        again = daemon.cli("post", "release", str(dropped["id"]), role="marketing")
        assert again.returncode == 1 and "dropped" in again.stderr
        assert daemon.ok("GET", "/api/v1/posts?state=held") == []
    finally:
        daemon.kill()


def test_drop_drops_every_held_post_after_the_cooldown(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, runbooks={"hold": holding_runbook("hold", "drop")})
    daemon.start()
    try:
        declare(daemon, "hold")
        posts = schedule(daemon, [f"offer {i}" for i in range(3)])
        wait_states(daemon, posts, "suppressed")
        cooldown_end = resolve(daemon, "INC-1")
        wait_states(daemon, posts, "dropped")
        assert all(parse(state(daemon, p)["history"][-1]["at"]) >= cooldown_end
                   for p in posts)
        time.sleep(1.0)
        assert marketing_lines(daemon) == []
        released = daemon.ok("GET", "/api/v1/incidents/INC-1")["timeline"][-1]
        assert (released["event"], released["held_posts"], released["dropped"]) == \
            ("channels_released", "drop", 3)
    finally:
        daemon.kill()


def test_reschedule_requeues_after_the_cooldown_spaced_per_channel(tmp_path: Path) -> None:
    channels = [{"id": c, "kind": "outbox", "path": str(tmp_path / f"{c}.jsonl")}
                for c in ("outbox", "outbox-b")]
    channels.append({"id": "ops-chat", "kind": "outbox", "audience": "internal",
                     "path": str(tmp_path / "ops-chat.jsonl")})
    daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), channels),
                           runbooks={"hold": holding_runbook("hold", "reschedule")})
    daemon.start()
    try:
        declare(daemon, "hold")
        a = schedule(daemon, ["a1", "a2", "a3"])
        b = schedule(daemon, ["b1", "b2"], channel="outbox-b")
        short = schedule(daemon, ["flash sale, today only"],
                         expires=(datetime.now(UTC) + timedelta(seconds=1)).isoformat())
        wait_states(daemon, a + b + short, "suppressed")
        sleep_until(parse(short[0]["expires_at"]) + timedelta(seconds=0.1))

        cooldown_end = resolve(daemon, "INC-1")
        released = wait_released(daemon, "INC-1")
        released_at = parse(released["at"])
        assert released_at >= cooldown_end
        assert (released["rescheduled"], released["expired"]) == (5, 1)
        assert states(daemon, short) == ["expired"]
        dues = {p["text"]: parse(state(daemon, p)["due_at"]) for p in a + b}
        for first, second in (("a1", "a2"), ("a2", "a3"), ("b1", "b2")):
            assert abs((dues[second] - dues[first]).total_seconds() - 1.0) < 0.01
        for first in ("a1", "b1"):
            assert cooldown_end <= dues[first] <= released_at, \
                "each channel starts when the cooldown has let go of it"

        for name, texts in (("outbox.jsonl", ["a1", "a2", "a3"]),
                            ("outbox-b.jsonl", ["b1", "b2"])):
            lines = wait_lines(daemon, len(texts), name)
            assert [line["text"] for line in lines] == texts
            for line in lines:
                assert parse(line["sent_at"]) >= dues[line["text"]], \
                    "each at its slot in the train, never before"
        wait_states(daemon, a + b, "published")
    finally:
        daemon.kill()


# -- several incidents, crashes -------------------------------------------------

def test_a_channel_returns_to_marketing_only_when_the_last_incident_lets_go(
        tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, runbooks={
        "first": holding_runbook("first", "review"),
        "second": holding_runbook("second", "review", cooldown="2s")})
    daemon.start()
    try:
        declare(daemon, "first", "Signal failure")
        declare(daemon, "second", "Strike")
        early = schedule(daemon, ["offer while both hold"])
        wait_states(daemon, early, "suppressed")
        assert state(daemon, early[0])["incident_id"] == "INC-1", "the earliest incident"

        first_end = resolve(daemon, "INC-1")
        assert parse(wait_released(daemon, "INC-1")["at"]) >= first_end
        assert states(daemon, early) == ["held"], "INC-1's own review"
        moved = state(daemon, early[0])["history"][-1]
        assert moved["to"] == "held" and parse(moved["at"]) >= first_end, moved
        assert outbox_control(daemon) == ("ops", ["INC-2"])
        assert daemon.metric("switchboard_channel_under_incident", {"channel": "outbox"}) == 1.0
        refused = daemon.api("POST", "/api/v1/send", {"channel": "outbox", "text": "sale!"},
                             role="marketing")
        assert refused.status_code == 409 and "INC-2" in refused.json()["error"]["message"]
        middle = schedule(daemon, ["offer between the two"])
        wait_states(daemon, middle, "suppressed")
        assert state(daemon, middle[0])["incident_id"] == "INC-2"
        # Released by marketing while INC-2 still holds the channel: held again, not sent.
        daemon.ok("POST", f"/api/v1/posts/{early[0]['id']}/release", role="marketing")
        wait_states(daemon, early, "suppressed")
        assert state(daemon, early[0])["incident_id"] == "INC-2"

        second_end = resolve(daemon, "INC-2")
        assert outbox_control(daemon) == ("ops", ["INC-2"]), "cooldown"
        assert parse(wait_released(daemon, "INC-2")["at"]) >= second_end
        assert outbox_control(daemon) == ("marketing", [])
        assert daemon.metric("switchboard_channel_under_incident", {"channel": "outbox"}) == 0.0
        assert states(daemon, early + middle) == ["held", "held"]
        for post in early + middle:
            moved = state(daemon, post)["history"][-1]
            assert moved["to"] == "held" and parse(moved["at"]) >= second_end, moved
        late = schedule(daemon, ["offer after both"])
        wait_states(daemon, late, "published")
        assert [line["post_id"] for line in marketing_lines(daemon)] == [late[0]["id"]]
    finally:
        daemon.kill()


def test_a_kill_right_after_the_declaration_keeps_the_gate_closed(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, runbooks={
        "hold": holding_runbook("hold", "review", steps=HOLDING_STATEMENT)})
    daemon.start()
    try:
        offers = daemon.ok("POST", "/api/v1/posts", [
            {"channel": "outbox", "text": f"offer {i}", "at": soon(1.0 + i * 0.25)}
            for i in range(5)], role="marketing")
        declare(daemon, "hold", "Crash drill")
        daemon.kill()  # SIGKILL straight after the acknowledgement
        daemon.start()

        incident = daemon.ok("GET", "/api/v1/incidents/INC-1")
        assert incident["state"] == "active"
        assert outbox_control(daemon) == ("ops", ["INC-1"])
        assert daemon.metric("switchboard_incidents_active") == 1.0
        sleep_until(parse(offers[-1]["due_at"]) + timedelta(seconds=0.5))
        wait_states(daemon, offers, "suppressed")
        assert {state(daemon, p)["incident_id"] for p in offers} == {"INC-1"}
        assert marketing_lines(daemon) == []

        # The holding statement is neither repeated nor lost without trace: it went
        # out once, or the crash cut its step short and the timeline says so.
        daemon.wait_for(lambda: [e for e in daemon.ok("GET", "/api/v1/incidents/INC-1")
                                 ["timeline"] if e.get("step") == "holding-statement"])
        runs = [e for e in daemon.ok("GET", "/api/v1/incidents/INC-1")["timeline"]
                if e.get("step") == "holding-statement"]
        statements = [line for line in daemon.outbox() if "We know" in line.get("text", "")]
        assert len(runs) == 1 and len(statements) <= 1
        if runs[0]["result"] == "ok":
            assert len(statements) == 1
        else:
            assert runs[0]["result"] == "failed" and "restart" in runs[0]["detail"]
    finally:
        daemon.kill()


# -- the demo -------------------------------------------------------------------

def test_the_eurostar_demo_ends_with_the_held_offers_listed() -> None:
    user_outbox = ROOT / "var" / "outbox.jsonl"
    before = user_outbox.stat().st_size if user_outbox.exists() else None
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "demo" / "eurostar.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=90)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert took < 60, f"the demo took {took:.0f}s"

    lines = done.stdout.rstrip().splitlines()
    last_command = max(i for i, line in enumerate(lines) if "$ switchboard" in line)
    assert lines[last_command].endswith("$ switchboard post list --state held")
    rows = lines[last_command + 2:]
    assert len(rows) == 3, rows
    assert all(row.split()[1:4] == ["held", "outbox", "marketing"] and "INC-1" in row
               for row in rows), rows
    story = done.stdout
    for seen in ("202", "We know services are disrupted", "RETRACTED", "409",
                 "no operational update", "open for an hour", "running normally again",
                 "back to our normal timetable"):
        assert seen in story, seen
    assert (user_outbox.stat().st_size if user_outbox.exists() else None) == before, \
        "the demo keeps to its own state directory"
