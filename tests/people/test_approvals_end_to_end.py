"""Many voices, one plan B, on the real daemon: a libraries marketer's post waits
for another libraries approver, goes out once, is out of reach for another team,
and ops still takes every channel over in an incident; the audit names each
person."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.daemon import TOKENS, DaemonProcess, base_config

pytestmark = pytest.mark.integration

TAKEOVER = """\
name: takeover
title: Everything to ops
severity: major
scope: [lib-fb, lib-x, parks-fb]
resolve:
  cooldown: 0m
"""


CAREFUL = """\
name: careful
title: Updates checked by two
severity: major
scope: [parks-fb]
approval: two-person
resolve:
  cooldown: 0m
"""


def team_config(tmp: Path) -> dict[str, Any]:
    channels = [{"id": cid, "kind": "outbox", "path": str(tmp / f"{cid}.jsonl")}
                for cid in ("lib-fb", "lib-x", "parks-fb")]
    channels.append({"id": "ops-chat", "kind": "outbox", "audience": "internal",
                     "path": str(tmp / "ops-chat.jsonl")})
    return base_config(tmp, 0, channels=channels, teams=[
        {"id": "libraries", "channels": ["lib-fb", "lib-x"], "approval": "required"},
        {"id": "parks", "channels": ["parks-fb"]}])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("teams")
    proc = DaemonProcess(tmp, config=team_config(tmp), runbooks={"takeover": TAKEOVER,
                                                                  "careful": CAREFUL})
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


def cli(daemon: DaemonProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=daemon.url, SWITCHBOARD_TOKEN=token)
    return subprocess.run([sys.executable, "-m", "switchboard", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def person(daemon: DaemonProcess, name: str, role: str, *teams: str) -> str:
    """Add a person through the CLI (admin token) and return their first token."""
    added = cli(daemon, TOKENS["admin"], "user", "add", name, "--role", role,
                *(arg for team in teams for arg in ("--team", team)))
    assert added.returncode == 0, added.stderr
    issued = cli(daemon, TOKENS["admin"], "user", "token", name)
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.splitlines()[0]


def call(daemon: DaemonProcess, token: str, method: str, path: str,
         body: Any = None) -> requests.Response:
    return daemon.api(method, path, body, token=token)


def test_a_library_post_waits_for_another_approver_and_ops_still_takes_over(
        daemon: DaemonProcess) -> None:
    libby = person(daemon, "libby", "viewer", "libraries:marketing", "libraries:approver")
    alex = person(daemon, "alex", "viewer", "libraries:approver")
    parker = person(daemon, "parker", "viewer", "parks:marketing")
    olive = person(daemon, "olive", "ops")

    # The marketer schedules on a library channel: it waits for approval.
    made = call(daemon, libby, "POST", "/api/v1/posts",
                {"channel": "lib-fb", "text": "Story time at Central Library", "at": "+1h"})
    assert made.status_code == 201, made.text
    post = made.json()
    assert post["state"] == "pending_approval"
    assert post["created_by"] == "libby"

    # Sending now would skip the approval: refused.
    now = call(daemon, libby, "POST", "/api/v1/send", {"channel": "lib-fb", "text": "now!"})
    assert now.status_code == 409 and "need approval" in now.text

    # Not by its author, even an approver; not by another team.
    own = cli(daemon, libby, "post", "approve", str(post["id"]))
    assert own.returncode == 1 and "403" in own.stderr and "another approver" in own.stderr
    for path in (f"/api/v1/posts/{post['id']}/approve", f"/api/v1/posts/{post['id']}/cancel"):
        other = call(daemon, parker, "POST", path, {})
        assert other.status_code == 403, other.text
        assert "libraries" in other.json()["error"]["message"]
    wrong_team = call(daemon, parker, "POST", "/api/v1/posts",
                      {"channel": "lib-x", "text": "parks on a library channel", "at": "+1h"})
    assert wrong_team.status_code == 403 and "team libraries" in wrong_team.text

    # Another approver approves it for a new time; it goes out exactly once.
    approved = cli(daemon, alex, "post", "approve", str(post["id"]), "--at", "+1s")
    assert approved.returncode == 0, approved.stderr
    assert "scheduled" in approved.stdout
    daemon.wait_for(lambda: daemon.outbox("lib-fb.jsonl"))
    daemon.wait_for(lambda: daemon.ok("GET", f"/api/v1/posts/{post['id']}")["state"]
                    == "published")
    assert [line["text"] for line in daemon.outbox("lib-fb.jsonl")] == [
        "Story time at Central Library"]

    # Ops declares over every channel, the library ones too: an approved post is held.
    declared = call(daemon, olive, "POST", "/api/v1/incidents",
                    {"runbook": "takeover", "title": "Flooding across the city"})
    assert declared.status_code == 201, declared.text
    assert set(declared.json()["channels"]) >= {"lib-fb", "lib-x", "parks-fb"}
    late = call(daemon, libby, "POST", "/api/v1/posts",
                {"channel": "lib-x", "text": "Book sale this weekend", "at": "+1h"}).json()
    assert call(daemon, alex, "POST", f"/api/v1/posts/{late['id']}/approve",
                {"at": "now"}).status_code == 200
    daemon.wait_for(lambda: daemon.ok("GET", f"/api/v1/posts/{late['id']}")["state"]
                    == "suppressed")
    assert daemon.outbox("lib-x.jsonl") == []

    # The audit lists each action with its person and credential.
    audit = daemon.ok("GET", "/api/v1/audit")
    seen = [(e["person"], e["action"], e["target"]) for e in audit]
    assert (None, "POST /api/v1/users", None) in seen
    assert ("libby", "POST /api/v1/posts", None) in seen
    assert ("alex", "POST /api/v1/posts/{id}/approve", str(post["id"])) in seen
    assert ("olive", "POST /api/v1/incidents", None) in seen
    assert all(e["credential"].startswith(f"{e['person']}/token-") for e in audit if e["person"])
    assert not any(e["person"] == "parker" for e in audit)  # refused writes change nothing
    # An approver reads their own team's entries, and only those.
    team_view = call(daemon, alex, "GET", "/api/v1/audit").json()
    assert team_view and all("libraries" in e["teams"] for e in team_view)
    assert call(daemon, parker, "GET", "/api/v1/audit").status_code == 403
    shown = cli(daemon, TOKENS["admin"], "audit", "--person", "alex", "--since", "1h")
    assert shown.returncode == 0 and "approve" in shown.stdout and "libby" not in shown.stdout
    later = daemon.api("GET", "/api/v1/audit", params={"since": "2099-01-01T00:00:00+00:00"})
    assert later.status_code == 200 and later.json() == []


def test_a_pending_post_is_never_sent_and_a_passed_time_needs_a_new_one(
        daemon: DaemonProcess) -> None:
    maker = person(daemon, "maker", "viewer", "libraries:marketing")
    checker = person(daemon, "checker", "viewer", "libraries:approver")
    post = call(daemon, maker, "POST", "/api/v1/posts",
                {"channel": "lib-fb", "text": "due while pending", "at": "+1s"}).json()
    time.sleep(1.5)  # past its time: the dispatcher has had its due tick
    assert daemon.ok("GET", f"/api/v1/posts/{post['id']}")["state"] == "pending_approval"
    assert "due while pending" not in [p["text"] for p in daemon.outbox("lib-fb.jsonl")]
    late = call(daemon, checker, "POST", f"/api/v1/posts/{post['id']}/approve", {})
    assert late.status_code == 409 and "new time" in late.json()["error"]["message"]
    rejected = cli(daemon, checker, "post", "reject", str(post["id"]), "--reason",
                   "off-brand")
    assert rejected.returncode == 0, rejected.stderr
    shown = daemon.ok("GET", f"/api/v1/posts/{post['id']}")
    assert shown["state"] == "rejected"
    assert shown["history"][-1]["reason"] == "rejected by checker: off-brand"
    assert call(daemon, checker, "POST", f"/api/v1/posts/{post['id']}/reject",
                {}).status_code == 400  # a reason is required


def test_a_two_person_runbook_holds_an_ops_update_for_a_second_ops_person(
        daemon: DaemonProcess) -> None:
    first = person(daemon, "opal", "ops")
    marketer = person(daemon, "pat", "viewer", "parks:marketing")
    incident = call(daemon, first, "POST", "/api/v1/incidents",
                    {"runbook": "careful", "title": "Park closed"}).json()
    update = call(daemon, first, "POST", f"/api/v1/incidents/{incident['id']}/update",
                  {"text": "The park reopens at noon"})
    assert update.status_code == 201, update.text
    [post] = update.json()
    assert post["state"] == "pending_approval" and post["kind"] == "operational"
    for token in (first, marketer):  # not its author, not marketing
        refused = call(daemon, token, "POST", f"/api/v1/posts/{post['id']}/approve", {})
        assert refused.status_code == 403, refused.text
    assert "The park reopens at noon" not in [p["text"] for p in daemon.outbox("parks-fb.jsonl")]
    second = call(daemon, TOKENS["ops"], "POST", f"/api/v1/posts/{post['id']}/approve", {})
    assert second.status_code == 200, second.text
    daemon.wait_for(lambda: "The park reopens at noon" in
                    [p["text"] for p in daemon.outbox("parks-fb.jsonl")])
    timeline = daemon.ok("GET", f"/api/v1/incidents/{incident['id']}")["timeline"]
    assert [e["actor"] for e in timeline if e["event"] == "update_pending"] == ["opal"]
