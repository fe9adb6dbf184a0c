"""Marketing's everyday work on the real daemon, through the real CLI: show a
post and its history, edit it, act on many posts at once, filter the list,
and see the week or the month as a grid, with times in the configured zone.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.daemon import TOKENS, DaemonProcess, base_config, free_port
from tests.fakes.fake_webhook import FakeWebhook
from tests.fakes.server import Hold

LONDON = ZoneInfo("Europe/London")
# `2026-12-01 17:30 GMT` or `... 17:30:05 BST`: never microseconds, never an offset.
LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? (GMT|BST)")

REVIEW_RUNBOOK = """\
name: review-held
title: Held for review
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
    template: "We know services are disrupted: {{ incident.title }}."
resolve:
  cooldown: 1s
  held_posts: review
"""


def two_public_channels(tmp: Path) -> dict[str, Any]:
    return base_config(tmp, free_port(), channels=[
        {"id": "outbox", "kind": "outbox", "path": str(tmp / "outbox.jsonl")},
        {"id": "second", "kind": "outbox", "path": str(tmp / "second.jsonl")},
        {"id": "ops-chat", "kind": "outbox", "audience": "internal",
         "path": str(tmp / "ops-chat.jsonl")}])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the tests that only schedule posts well ahead of now."""
    tmp = tmp_path_factory.mktemp("workflow")
    daemon = DaemonProcess(tmp, config=two_public_channels(tmp),
                           runbooks={"review-held": REVIEW_RUNBOOK}).start()
    yield daemon
    daemon.kill()


def schedule(daemon: DaemonProcess, text: str, at: str = "+3h",
             channel: str = "outbox") -> dict[str, Any]:
    post: dict[str, Any] = daemon.ok("POST", "/api/v1/posts",
                                     {"channel": channel, "text": text, "at": at},
                                     role="marketing")
    return post


def get(daemon: DaemonProcess, post_id: int) -> dict[str, Any]:
    post: dict[str, Any] = daemon.ok("GET", f"/api/v1/posts/{post_id}")
    return post


def ok(result: Any) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return str(result.stdout)


def test_post_show_prints_every_transition_with_time_actor_and_reason(
        shared: DaemonProcess) -> None:
    post = schedule(shared, "Winter sale")
    ok(shared.cli("post", "cancel", str(post["id"]), role="marketing"))
    shown = ok(shared.cli("post", "show", str(post["id"])))
    assert f"post {post['id']}  cancelled  marketing on outbox" in shown
    assert "text:      Winter sale" in shown
    history = shown.split("history:\n", 1)[1].splitlines()
    assert len(history) == 2
    assert re.match(rf"  {LOCAL_TIME.pattern}  scheduled +marketing +created$", history[0])
    assert re.match(rf"  {LOCAL_TIME.pattern}  scheduled -> cancelled +marketing +"
                    r"cancel by marketing$", history[1])


def test_post_edit_changes_text_and_time_and_the_history_says_old_and_new(
        shared: DaemonProcess) -> None:
    post = schedule(shared, "Sale starts Monday", at="+3h")
    before = datetime.now(UTC)
    out = ok(shared.cli("post", "edit", str(post["id"]), "--text", "Sale starts Tuesday",
                        "--at", "+2h30m", role="marketing"))
    after = datetime.now(UTC)
    edited = get(shared, post["id"])
    assert (edited["text"], edited["state"]) == ("Sale starts Tuesday", "scheduled")
    due = datetime.fromisoformat(edited["due_at"])
    assert before + timedelta(hours=2, minutes=30) <= due <= after + timedelta(hours=2,
                                                                                minutes=30)
    assert LOCAL_TIME.search(out) and f"post {post['id']} scheduled for outbox at" in out
    change = edited["history"][-1]
    assert (change["actor"], change["from"], change["to"]) == ("marketing", "scheduled",
                                                               "scheduled")
    assert "text 'Sale starts Monday' -> 'Sale starts Tuesday'" in change["reason"]
    assert f"due_at {post['due_at']} -> {edited['due_at']}" in change["reason"]


def test_an_edited_post_goes_out_at_its_new_time_with_its_new_text(
        shared: DaemonProcess) -> None:
    post = schedule(shared, "Old words", at="+1h", channel="second")
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    edited = shared.ok("PATCH", f"/api/v1/posts/{post['id']}",
                       {"text": "New words", "at": soon}, role="marketing")
    assert edited["due_at"] == datetime.fromisoformat(soon).isoformat(timespec="microseconds")
    lines = shared.wait_for(lambda: [line for line in shared.outbox("second.jsonl")
                                     if line["post_id"] == post["id"]], timeout=10)
    assert [line["text"] for line in lines] == ["New words"]
    assert datetime.fromisoformat(lines[0]["sent_at"]) >= datetime.fromisoformat(soon)


def test_a_due_post_waiting_behind_a_slow_send_can_still_be_edited_and_goes_out_once(
        tmp_path: Path) -> None:
    with FakeWebhook() as hook:
        config = base_config(tmp_path, free_port(), channels=[
            {"id": "chat", "kind": "webhook", "url_env": "SB_TEST_HOOK", "timeout": 30}])
        daemon = DaemonProcess(tmp_path, config=config, runbooks={},
                               env={"SB_TEST_HOOK": hook.url})
        (tmp_path / "runbooks" / "noop.yaml").write_text(
            "name: noop\ntitle: Nothing\nseverity: minor\nsuppress: [marketing]\n")
        hook.script(Hold(then="answer"))
        daemon.start()
        try:
            def at(seconds: float) -> str:
                return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
            slow = schedule(daemon, "First, slow", at=at(0.2), channel="chat")
            daemon.wait_for(lambda: len(hook.requests) == 1)
            waiting = schedule(daemon, "Second, old words", at=at(0.2), channel="chat")
            # Due and claimed, it waits in the channel's queue behind the slow send.
            daemon.wait_for(lambda: get(daemon, waiting["id"])["history"][-1]["to"] == "queued")
            edited = daemon.api("PATCH", f"/api/v1/posts/{waiting['id']}",
                                {"text": "Second, new words", "at": at(0.5)}, role="marketing")
            assert edited.status_code == 200, edited.text
            assert edited.json()["state"] == "scheduled"
            assert hook.release() == 1, "the edit came while the slow send was under way"
            daemon.wait_for(lambda: len(hook.messages) == 2, timeout=15)
            time.sleep(0.5)
            assert hook.texts == ["First, slow", "Second, new words"], "sent once, new text"
            history = get(daemon, waiting["id"])["history"]
            assert [h["to"] for h in history][-4:] == ["scheduled", "queued", "sending",
                                                      "published"]
            assert history[-4]["from"] == "queued" and "edited:" in history[-4]["reason"]
            assert slow["id"] < waiting["id"]
        finally:
            daemon.kill()


def test_an_edit_is_checked_like_a_new_post_and_refused_whole(shared: DaemonProcess) -> None:
    post = schedule(shared, "Keep me")
    path = f"/api/v1/posts/{post['id']}"
    refusals = {
        "past time": ({"at": "2020-01-01T09:00:00Z"}, "marketing", 422, "in the past"),
        "too long": ({"text": "x" * 281}, "marketing", 422, "at most 280"),
        "internal channel": ({"channel": "ops-chat"}, "marketing", 422, "internal"),
        "unknown channel": ({"channel": "nope"}, "marketing", 404, "no channel"),
        "kind is fixed": ({"kind": "operational"}, "marketing", 400, "kind"),
        "viewer": ({"text": "Hi"}, "viewer", 403, "viewer"),
        "ops on marketing": ({"text": "Hi"}, "ops", 403, "cannot edit marketing"),
    }
    for why, (body, role, status, words) in refusals.items():
        answer = shared.api("PATCH", path, body, role=role)
        assert answer.status_code == status, (why, answer.text)
        assert words in answer.json()["error"]["message"], (why, answer.text)
    cli = shared.cli("post", "edit", str(post["id"]), "--at", "2020-01-01 09:00",
                     role="marketing")
    assert cli.returncode == 1 and "422" in cli.stderr and "in the past" in cli.stderr
    unchanged = get(shared, post["id"])
    assert (unchanged["text"], unchanged["due_at"], unchanged["channel"]) == (
        "Keep me", post["due_at"], "outbox")
    assert len(unchanged["history"]) == 1
    ok(shared.cli("post", "cancel", str(post["id"]), role="marketing"))
    late = shared.api("PATCH", path, {"text": "Too late"}, role="marketing")
    assert late.status_code == 409 and "cancelled" in late.json()["error"]["message"]


def test_cancel_of_several_ids_reports_what_was_done_and_what_was_refused_and_why(
        shared: DaemonProcess) -> None:
    first, second, third = (schedule(shared, f"Offer {i}") for i in range(3))
    ok(shared.cli("post", "cancel", str(third["id"]), role="marketing"))
    result = shared.cli("post", "cancel", str(first["id"]), str(second["id"]),
                        str(third["id"]), "999999", role="marketing")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"cancelled 2: {first['id']}, {second['id']}"
    assert lines[1] == "refused 2:"
    assert lines[2].startswith(f"  {third['id']}: post {third['id']} is cancelled")
    assert lines[3] == "  999999: no post 999999"
    assert [get(shared, p["id"])["state"] for p in (first, second)] == ["cancelled"] * 2


def test_cancel_by_filter_flags_touches_only_the_posts_that_match(
        shared: DaemonProcess) -> None:
    inside = schedule(shared, "Inside the window", at="+40h30m", channel="second")
    outside = schedule(shared, "Outside the window", at="+41h30m", channel="second")
    elsewhere = schedule(shared, "Other channel", at="+40h30m", channel="outbox")
    result = shared.cli("post", "cancel", "--channel", "second", "--from", "+40h",
                        "--to", "+41h", role="marketing")
    assert ok(result).splitlines() == [f"cancelled 1: {inside['id']}"]
    assert [get(shared, p["id"])["state"] for p in (inside, outside, elsewhere)] == [
        "cancelled", "scheduled", "scheduled"]
    both = shared.cli("post", "cancel", str(outside["id"]), "--channel", "second",
                      role="marketing")
    assert both.returncode == 2 and "not both" in both.stderr


def test_post_list_filters_by_due_window_and_incident(shared: DaemonProcess) -> None:
    early, middle, late = (schedule(shared, f"Window {h}", at=f"+{h}h", channel="second")
                           for h in (20, 22, 24))
    listed = json.loads(ok(shared.cli("post", "list", "--channel", "second", "--from", "+21h",
                                      "--to", "+23h", "--json")))
    assert [p["id"] for p in listed] == [middle["id"]]
    paged = shared.api("GET", "/api/v1/posts?channel=second&from=%2B21h&to=%2B25h&limit=1")
    assert [p["id"] for p in paged.json()] == [middle["id"]]
    assert paged.headers["X-Total-Count"] == "2" and 'rel="next"' in paged.headers["Link"]
    rest = shared.api("GET", paged.links["next"]["url"])
    assert [p["id"] for p in rest.json()] == [late["id"]] and "Link" not in rest.headers
    upto = shared.ok("GET", "/api/v1/posts?channel=second&to=%2B21h")
    assert early["id"] in [p["id"] for p in upto]
    assert late["id"] not in [p["id"] for p in upto]
    table = ok(shared.cli("post", "list", "--channel", "second", "--from", "+21h"))
    assert LOCAL_TIME.search(table) and "Window 22" in table and "Window 20" not in table
    none = json.loads(ok(shared.cli("post", "list", "--incident", "INC-999", "--json")))
    assert none == []
    bad = shared.cli("post", "list", "--from", "tomorrow")
    assert bad.returncode == 1 and "400" in bad.stderr


def test_post_calendar_week_shows_each_post_on_its_local_day(shared: DaemonProcess) -> None:
    monday = date.today() + timedelta(days=21 - date.today().weekday())
    wednesday = monday + timedelta(days=2)
    schedule(shared, "Calendar lunch offer for everyone", at=f"{wednesday} 12:15")
    schedule(shared, "Late offer", at=f"{wednesday} 23:30")
    out = ok(shared.cli("post", "calendar", "--week", "--date", str(wednesday)))
    lines = out.splitlines()
    assert lines[0].startswith(f"Week of {monday:%a %d %b %Y} (Europe/London")
    day_rows = [line for line in lines if line.startswith(f"{wednesday:%a %d %b}")]
    assert day_rows == [f"{wednesday:%a %d %b} │ 12:15 outbox Calendar lunch offer for "
                        "everyone"]
    after = lines[lines.index(day_rows[0]) + 1]
    assert after.endswith("│ 23:30 outbox Late offer")
    assert f"{monday:%a %d %b} │ -" in lines


def test_post_calendar_month_is_a_seven_column_grid(shared: DaemonProcess) -> None:
    first = (date.today().replace(day=1) + timedelta(days=70)).replace(day=1)
    day = first + timedelta(days=9)
    schedule(shared, "Month grid offer", at=f"{day} 09:45", channel="second")
    out = ok(shared.cli("post", "calendar", "--month", "--date", str(first),
                        "--channel", "second"))
    lines = out.splitlines()
    assert lines[0] == f"{first:%B %Y} (Europe/London)"
    header = lines[2]
    assert [c.strip() for c in header.strip("|").split("|")] == ["Mon", "Tue", "Wed", "Thu",
                                                                 "Fri", "Sat", "Sun"]
    assert all(len(line) == len(header) for line in lines[1:])
    cells = [line for line in lines if "09:45 Month" in line]
    assert len(cells) == 1
    column = [c for c in cells[0].strip("|").split("|")].index(
        next(c for c in cells[0].strip("|").split("|") if "09:45" in c))
    assert column == day.weekday()


def test_bulk_release_by_filter_spaces_posts_per_channel(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, config=two_public_channels(tmp_path),
                           runbooks={"review-held": REVIEW_RUNBOOK}).start()
    try:
        soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
        posts = daemon.ok("POST", "/api/v1/posts", [
            {"channel": c, "text": f"Held {c} {i}", "at": soon}
            for c, n in (("outbox", 3), ("second", 2)) for i in range(n)], role="marketing")
        incident = daemon.ok("POST", "/api/v1/incidents",
                             {"runbook": "review-held", "title": "Signal failure"}, role="ops")
        daemon.wait_for(lambda: all(get(daemon, p["id"])["state"] == "suppressed"
                                    for p in posts))
        daemon.ok("POST", f"/api/v1/incidents/{incident['id']}/resolve", {}, role="ops")
        daemon.wait_for(lambda: all(get(daemon, p["id"])["state"] == "held" for p in posts))

        past = daemon.cli("post", "release", "--state", "held", "--at", "2020-01-01 09:00",
                          role="marketing")
        assert past.returncode == 1 and "422" in past.stderr and "in the past" in past.stderr
        assert {get(daemon, p["id"])["state"] for p in posts} == {"held"}

        start = datetime.now(UTC) + timedelta(hours=1)
        result = daemon.cli("post", "release", "--filter", f"state=held,incident={incident['id']}",
                            "--at", start.isoformat(), "--spacing", "5m", "--json",
                            role="marketing")
        summary = json.loads(ok(result))
        assert sorted(summary["done"]) == sorted(p["id"] for p in posts)
        assert summary["refused"] == []
        for channel, count in (("outbox", 3), ("second", 2)):
            mine = [p for p in posts if p["channel"] == channel]
            dues = [datetime.fromisoformat(get(daemon, p["id"])["due_at"]) for p in mine]
            assert [(d - dues[0]).total_seconds() for d in dues] == [300.0 * i
                                                                     for i in range(count)]
            assert abs((dues[0] - start).total_seconds()) < 0.001
        assert {get(daemon, p["id"])["state"] for p in posts} == {"scheduled"}
    finally:
        daemon.kill()


def test_holding_statements_and_updates_carry_their_incident_and_an_integer_post_id(
        tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, config=two_public_channels(tmp_path),
                           runbooks={"review-held": REVIEW_RUNBOOK}).start()
    try:
        incident = daemon.ok("POST", "/api/v1/incidents",
                             {"runbook": "review-held", "title": "Power cut"}, role="ops")
        statement = daemon.wait_for(lambda: [line for line in daemon.outbox()
                                             if "Power cut" in line["text"]])[0]
        assert isinstance(statement["post_id"], int)
        assert get(daemon, statement["post_id"])["incident_id"] == incident["id"]
        update = daemon.cli("incident", "update", incident["id"], "--text", "Trains move again",
                            "--json", role="ops")
        posts = json.loads(ok(update))
        assert {p["incident_id"] for p in posts} == {incident["id"]}
        tied = json.loads(ok(daemon.cli("post", "list", "--incident", incident["id"],
                                        "--json")))
        assert {p["kind"] for p in tied} == {"operational"} and len(tied) >= 3
        shown = daemon.ok("GET", f"/api/v1/incidents/{incident['id']}")
        assert shown["held_posts"] == {}, "its own statements were never held"
    finally:
        daemon.kill()


def test_the_cli_prints_times_in_the_configured_zone_with_its_abbreviation(
        shared: DaemonProcess) -> None:
    winter = ok(shared.cli("post", "schedule", "--channel", "outbox", "--at",
                           f"{date.today().year + 1}-12-20 17:30", "--text", "Winter",
                           role="marketing"))
    assert winter.strip().endswith(f"at {date.today().year + 1}-12-20 17:30 GMT")
    summer = ok(shared.cli("post", "schedule", "--channel", "outbox", "--at",
                           f"{date.today().year + 1}-07-01T08:00:00Z", "--text", "Summer",
                           role="marketing"))
    assert summer.strip().endswith(f"at {date.today().year + 1}-07-01 09:00 BST")
    api = shared.ok("GET", "/api/v1/posts?channel=outbox&from=%2B100d")
    assert any(p["due_at"].endswith("+00:00") for p in api), "the API keeps RFC 3339"


def test_feeds_shows_last_success_last_error_staleness_and_signals(tmp_path: Path) -> None:
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    feeds = [{"id": "alertmanager", "kind": "alertmanager", "token_env": "SB_TEST_FEED",
              "rules": [{"match": {"severity": "none-such"}, "runbook": "rail-disruption"}]}]
    daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), feeds=feeds))
    daemon.start()
    try:
        headers = {"Authorization": f"Bearer {TOKENS['feed']}",
                   "Content-Type": "application/json"}
        good = (fixtures / "alertmanager-v4-firing.json").read_bytes()
        count = len(json.loads(good)["alerts"])
        assert daemon.api("POST", "/feeds/alertmanager", role=None, data=good,
                          headers=headers).status_code == 202
        time.sleep(0.3)
        assert daemon.api("POST", "/feeds/alertmanager", role=None, data=b'{"alerts": [',
                          headers=headers).status_code == 400
        [feed] = json.loads(ok(daemon.cli("feeds", "--json", role="viewer")))
        assert (feed["id"], feed["kind"], feed["mode"], feed["signals"]) == (
            "alertmanager", "alertmanager", "push", count)
        assert feed["last_success"] is not None and feed["staleness_seconds"] >= 0.3
        assert feed["last_error"]["reason"] == "malformed"
        assert feed["last_error"]["message"]
        table = ok(daemon.cli("feeds", role="viewer"))
        row = table.splitlines()[1]
        assert row.startswith("alertmanager") and "malformed:" in row
        assert LOCAL_TIME.search(row)
    finally:
        daemon.kill()


def test_status_shows_a_failed_last_reload_with_its_first_problems(
        daemon: DaemonProcess) -> None:
    import signal
    good = daemon.config_path.read_text()
    assert "reload" not in ok(daemon.cli("status"))
    daemon.config_path.write_text(good.replace("max_lateness:", "max_latenes:"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(lambda: daemon.metric("switchboard_config_last_reload_successful") == 0.0)
    out = ok(daemon.cli("status"))
    failed = out.split("last reload FAILED at ", 1)[1].splitlines()
    assert LOCAL_TIME.match(failed[0])
    assert "previous configuration is still running" in failed[0]
    assert any(str(daemon.config_path) in line and "max_latenes" in line for line in failed[1:])
    daemon.config_path.write_text(good)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(lambda: daemon.metric("switchboard_config_last_reload_successful") == 1.0)
    assert "reload" not in ok(daemon.cli("status"))
    assert json.loads(ok(daemon.cli("status", "--json")))["last_reload"]["ok"] is True
