"""Ending incidents early, through the real CLI against the real daemon.

`incident void` undoes a false alarm (holding statement retracted on the
platform, no all-clear, no cooldown, held offers back on the schedule);
`incident release` ends a cooldown now; `incident list` shows cooldowns; the
hand-over channels are told when held posts wait for review.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from switchboard.timefmt import local_text
from tests.daemon import DaemonProcess, base_config, free_port
from tests.fakes.fake_mastodon import FakeMastodon
from tests.fakes.server import Hold

HOLDING = "We know about it: {{ incident.title }}."
ALL_CLEAR = "All clear: services are back to normal."

RUNBOOK = f"""\
name: disruption
title: Disruption
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
    template: "{HOLDING}"
resolve:
  cooldown: 2h
  held_posts: review
  steps:
    - action: post
      template: "{ALL_CLEAR}"
"""


@dataclass
class Rig:
    daemon: DaemonProcess
    mastodon: FakeMastodon

    def cli(self, *args: str, role: str = "ops") -> Any:
        """Run a CLI command with --json; the parsed answer (the command must succeed)."""
        done = self.daemon.cli(*args, "--json", role=role)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return json.loads(done.stdout)

    def post(self, post_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self.daemon.ok("GET", f"/api/v1/posts/{post_id}")
        return found

    def wait_state(self, post_id: int, wanted: str, timeout: float = 10.0) -> dict[str, Any]:
        found: dict[str, Any] = self.daemon.wait_for(
            lambda: (p := self.post(post_id))["state"] == wanted and p, timeout)
        return found

    def control(self) -> dict[str, str]:
        return {c["id"]: c["control"] for c in self.cli("channels", role="viewer")}

    def notices(self) -> list[str]:
        return [line["text"] for line in self.daemon.outbox("ops-chat.jsonl")]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with FakeMastodon() as mastodon:
        channels = [
            {"id": "outbox", "kind": "outbox", "path": str(tmp_path / "outbox.jsonl")},
            {"id": "masto", "kind": "mastodon", "api_base_url": mastodon.url,
             "access_token_env": "SB_MASTODON_TOKEN", "max_retries": 0},
            {"id": "ops-chat", "kind": "outbox", "audience": "internal",
             "path": str(tmp_path / "ops-chat.jsonl")},
        ]
        daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), channels),
                               runbooks={"disruption": RUNBOOK},
                               env={"SB_MASTODON_TOKEN": mastodon.access_token})
        daemon.start()
        try:
            yield Rig(daemon, mastodon)
        finally:
            daemon.kill()


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def declare_with_a_held_offer(rig: Rig) -> tuple[dict[str, Any], dict[str, Any]]:
    """An offer due in a moment, an incident declared before it: the offer is suppressed
    and the holding statement is out on both public channels."""
    offer = rig.cli("post", "schedule", "--channel", "outbox", "--at", soon(1.0),
                    "--text", "Flash sale: 30% off", role="marketing")
    incident = rig.cli("incident", "declare", "--runbook", "disruption", "--title",
                       "Signal failure at Ashford")
    rig.wait_state(offer["id"], "suppressed")
    rig.daemon.wait_for(lambda: len(rig.mastodon.live) == 1)
    rig.daemon.wait_for(lambda: any(line.get("kind") == "operational"
                                    for line in rig.daemon.outbox()))
    return incident, offer


def test_void_retracts_the_holding_statement_and_gives_the_channels_back_at_once(
        rig: Rig) -> None:
    incident, offer = declare_with_a_held_offer(rig)
    statement = next(line for line in rig.daemon.outbox() if line.get("kind") == "operational")
    status = rig.mastodon.live[0]

    voided = rig.cli("incident", "void", incident["id"], "--reason",
                     "False alarm: a test signal from the depot")

    assert voided["state"] == "voided"
    assert voided["in_cooldown"] is False
    assert rig.control() == {"outbox": "marketing", "masto": "marketing",
                             "ops-chat": "marketing"}, "no cooldown: back with marketing now"
    deletes = [r for r in rig.mastodon.requests if r.method == "DELETE"]
    assert [r.path for r in deletes] == [f"/api/v1/statuses/{status.id}"]
    assert rig.mastodon.live == []
    retractions = [line for line in rig.daemon.outbox() if "retract" in line]
    assert [r["retract"] for r in retractions] == [statement["post_id"]]
    assert len(voided["retracted"]) == 2
    assert voided["rescheduled"] == [offer["id"]]

    history = rig.wait_state(offer["id"], "published")["history"]
    assert ("suppressed", "scheduled", "ops-desk") in [(h["from"], h["to"], h["actor"])
                                                       for h in history]
    texts = [line.get("text") for line in rig.daemon.outbox()] + \
        [s.text for s in rig.mastodon.statuses]
    assert ALL_CLEAR not in texts, "a false alarm gets no all-clear"
    shown = rig.cli("incident", "show", incident["id"], role="viewer")
    voided_entry = next(e for e in shown["timeline"] if e["event"] == "voided")
    assert voided_entry["reason"] == "False alarm: a test signal from the depot"
    assert voided_entry["actor"] == "ops-desk"


def test_void_sends_offers_whose_slot_has_passed_to_review_instead(rig: Rig) -> None:
    config = rig.daemon.config
    rig.daemon.kill()
    rig.daemon.write_config({**config, "max_lateness": "1s"})
    rig.daemon.start()
    incident, offer = declare_with_a_held_offer(rig)
    # Voided more than max_lateness after its slot: sending it now would be late.
    rig.daemon.wait_for(lambda: datetime.now(UTC) - datetime.fromisoformat(
        rig.post(offer["id"])["due_at"]) > timedelta(seconds=1.5))

    voided = rig.cli("incident", "void", incident["id"], "--reason", "False alarm")

    assert voided["held"] == [offer["id"]] and voided["rescheduled"] == []
    assert rig.post(offer["id"])["state"] == "held"
    notice = rig.daemon.wait_for(lambda: [n for n in rig.notices() if "voided" in n])[0]
    assert "1 waiting for review: switchboard post list --state held" in notice


def test_only_an_active_incident_can_be_voided(rig: Rig) -> None:
    incident, _ = declare_with_a_held_offer(rig)
    rig.cli("incident", "resolve", incident["id"])
    done = rig.daemon.cli("incident", "void", incident["id"], "--reason", "oops", role="ops")
    assert done.returncode == 1
    assert "only an active incident can be voided" in done.stderr
    assert f"switchboard incident release {incident['id']}" in done.stderr
    assert rig.control()["outbox"] == "ops", "the cooldown goes on"


def test_incident_list_shows_incidents_in_cooldown_and_when_it_ends(rig: Rig) -> None:
    incident, _ = declare_with_a_held_offer(rig)
    resolved = rig.cli("incident", "resolve", incident["id"])

    listed = rig.cli("incident", "list", role="viewer")
    assert [(i["id"], i["in_cooldown"], i["cooldown_until"]) for i in listed] == [
        (incident["id"], True, resolved["cooldown_until"])]
    table = rig.daemon.cli("incident", "list", role="viewer").stdout
    row = next(line for line in table.splitlines() if line.startswith(incident["id"]))
    shown = local_text(resolved["cooldown_until"], ZoneInfo(rig.daemon.config["timezone"]))
    assert " cooldown " in row and shown in row


def test_release_ends_the_cooldown_now_and_tells_ops_how_many_posts_to_review(
        rig: Rig) -> None:
    incident, offer = declare_with_a_held_offer(rig)
    rig.cli("incident", "resolve", incident["id"])
    assert rig.control()["outbox"] == "ops"

    released = rig.cli("incident", "release", incident["id"], "--reason",
                       "Reviewed with the duty manager")

    assert released["in_cooldown"] is False
    assert rig.control()["outbox"] == "marketing"
    assert rig.post(offer["id"])["state"] == "held", "the runbook's review policy ran"
    assert rig.cli("incident", "list", role="viewer") == []
    notice = rig.daemon.wait_for(lambda: [n for n in rig.notices() if "review" in n])[0]
    assert f"{incident['id']} (Signal failure at Ashford)" in notice
    assert "1 held post is waiting for review: switchboard post list --state held" in notice
    # The command the notice names lists the post.
    assert [p["id"] for p in rig.cli("post", "list", "--state", "held",
                                     role="marketing")] == [offer["id"]]
    shown = rig.cli("incident", "show", incident["id"], role="viewer")
    ended = next(e for e in shown["timeline"] if e["event"] == "cooldown_ended")
    assert ended["reason"] == "Reviewed with the duty manager"


def test_release_refuses_an_incident_that_is_still_active(rig: Rig) -> None:
    incident, _ = declare_with_a_held_offer(rig)
    done = rig.daemon.cli("incident", "release", incident["id"], "--reason", "now",
                          "--json", role="ops")
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["code"] == "conflict"
    assert rig.control()["outbox"] == "ops"


def test_void_keeps_what_an_overlapping_incident_still_stands_on(rig: Rig) -> None:
    first, _ = declare_with_a_held_offer(rig)
    rig.cli("incident", "declare", "--runbook", "disruption", "--title", "Power cut at Lille")
    second = rig.daemon.wait_for(lambda: [s for s in rig.mastodon.live if "Lille" in s.text])

    voided = rig.cli("incident", "void", first["id"], "--reason", "False alarm")

    assert len(voided["retracted"]) == 2, "the first holding statement, on both channels"
    assert [s.text for s in rig.mastodon.live] == [second[0].text]
    assert rig.control()["outbox"] == "ops", "the second incident still holds the channels"


def test_a_void_cut_short_by_a_crash_finishes_its_retractions_after_the_restart(
        rig: Rig) -> None:
    incident, _ = declare_with_a_held_offer(rig)
    status = rig.mastodon.live[0]
    # The platform stalls on the delete (and drops it), and the daemon dies meanwhile.
    rig.mastodon.script(Hold(then="drop", apply=False))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(rig.daemon.api, "POST", f"/api/v1/incidents/{incident['id']}/void",
                              {"reason": "False alarm"}, role="ops")
        rig.daemon.wait_for(lambda: any(r.method == "DELETE" for r in rig.mastodon.requests))
        rig.daemon.kill()
        assert rig.mastodon.release() == 1, "the delete was still stalled when the daemon died"
        with contextlib.suppress(requests.RequestException):
            pending.result()
    assert [s.id for s in rig.mastodon.live] == [status.id], "the delete never took effect"

    rig.daemon.start()

    rig.daemon.wait_for(lambda: rig.mastodon.live == [], timeout=15)
    assert rig.cli("incident", "show", incident["id"], role="viewer")["state"] == "voided"
    assert rig.control()["masto"] == "marketing"
