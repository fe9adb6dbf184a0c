"""Edits and bulk actions under teams and approvals, on the real daemon, through
the real CLI: an approved post that is edited waits for an approver again (never
the editor), and a bulk action reaches only the caller's teams' channels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.daemon import DaemonProcess
from tests.people.test_approvals_end_to_end import TAKEOVER, call, cli, person, team_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("team-workflow")
    proc = DaemonProcess(tmp, config=team_config(tmp), runbooks={"takeover": TAKEOVER})
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def people(daemon: DaemonProcess) -> dict[str, str]:
    return {"libby": person(daemon, "libby", "viewer", "libraries:marketing"),
            "alex": person(daemon, "alex", "viewer", "libraries:approver"),
            "ada": person(daemon, "ada", "viewer", "libraries:approver"),
            "parker": person(daemon, "parker", "viewer", "parks:marketing")}


def made(daemon: DaemonProcess, token: str, channel: str, text: str) -> dict[str, Any]:
    answer = call(daemon, token, "POST", "/api/v1/posts",
                  {"channel": channel, "text": text, "at": "+5h"})
    assert answer.status_code == 201, answer.text
    post: dict[str, Any] = answer.json()
    return post


def test_an_edited_approved_post_waits_for_an_approver_who_did_not_edit_it(
        daemon: DaemonProcess, people: dict[str, str]) -> None:
    post = made(daemon, people["libby"], "lib-fb", "Story time at 10")
    approved = cli(daemon, people["alex"], "post", "approve", str(post["id"]))
    assert approved.returncode == 0, approved.stderr
    edited = cli(daemon, people["alex"], "post", "edit", str(post["id"]), "--text",
                 "Story time at 11")
    assert edited.returncode == 0, edited.stderr
    now = daemon.ok("GET", f"/api/v1/posts/{post['id']}")
    assert (now["state"], now["text"]) == ("pending_approval", "Story time at 11")
    assert now["history"][-1]["reason"].endswith("; needs approval again")
    own = cli(daemon, people["alex"], "post", "approve", str(post["id"]))
    assert own.returncode == 1 and "403" in own.stderr and "alex edited post" in own.stderr
    other = cli(daemon, people["ada"], "post", "approve", str(post["id"]))
    assert other.returncode == 0, other.stderr
    assert daemon.ok("GET", f"/api/v1/posts/{post['id']}")["state"] == "scheduled"


def test_an_edit_needs_team_rights_on_the_post_and_on_its_new_channel(
        daemon: DaemonProcess, people: dict[str, str]) -> None:
    parks = made(daemon, people["parker"], "parks-fb", "Park run on Saturday")
    foreign = call(daemon, people["libby"], "PATCH", f"/api/v1/posts/{parks['id']}",
                   {"text": "Hijacked"})
    assert foreign.status_code == 403 and "parks" in foreign.json()["error"]["message"]
    moved = call(daemon, people["parker"], "PATCH", f"/api/v1/posts/{parks['id']}",
                 {"channel": "lib-x"})
    assert moved.status_code == 403 and "libraries" in moved.json()["error"]["message"]
    kept = daemon.ok("GET", f"/api/v1/posts/{parks['id']}")
    assert (kept["text"], kept["channel"]) == ("Park run on Saturday", "parks-fb")


def test_a_bulk_cancel_reaches_only_the_callers_teams(
        daemon: DaemonProcess, people: dict[str, str]) -> None:
    mine = made(daemon, people["parker"], "parks-fb", "Parks offer")
    theirs = made(daemon, people["libby"], "lib-x", "Library offer")
    by_ids = cli(daemon, people["parker"], "post", "cancel", str(mine["id"]), str(theirs["id"]))
    assert by_ids.returncode == 1
    assert by_ids.stdout.splitlines()[0] == f"cancelled 1: {mine['id']}"
    assert f"  {theirs['id']}: channel lib-x belongs to team libraries" in by_ids.stdout
    another = made(daemon, people["parker"], "parks-fb", "Parks offer two")
    library = made(daemon, people["libby"], "lib-fb", "Library offer two")
    assert cli(daemon, people["ada"], "post", "approve", str(library["id"])).returncode == 0
    by_filter = cli(daemon, people["parker"], "post", "cancel", "--filter", "state=scheduled",
                    "--json")
    assert by_filter.returncode == 0, (by_filter.stdout, by_filter.stderr)
    summary = json.loads(by_filter.stdout)
    # Every scheduled parks post, and no library post (not even as a refusal).
    assert another["id"] in summary["done"] and summary["refused"] == []
    parks = {p["id"] for p in daemon.ok("GET", "/api/v1/posts?channel=parks-fb")}
    assert set(summary["done"]) <= parks
    states = {p["id"]: daemon.ok("GET", f"/api/v1/posts/{p['id']}")["state"]
              for p in (mine, theirs, another, library)}
    assert states == {mine["id"]: "cancelled", theirs["id"]: "pending_approval",
                      another["id"]: "cancelled", library["id"]: "scheduled"}
