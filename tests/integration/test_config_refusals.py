"""Config and input that used to fail silently, against the real daemon (design §7.1).

A channel named twice (runbook scope, feed rule, API, CLI) is held once instead
of making every declaration a 500; lone surrogates, past times, unknown states
and severities, and marketing on internal channels are refused with a message
instead of being stored to fail later.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.daemon import TOKENS, DaemonProcess, base_config, free_port

RUNBOOK = """\
name: twice
title: Held twice
severity: major
scope: [pub-a, pub-b, pub-a]
suppress: [marketing]
"""


def config(tmp: Path) -> dict[str, Any]:
    channels = [{"id": cid, "kind": "outbox", "path": str(tmp / f"{cid}.jsonl")}
                for cid in ("pub-a", "pub-b")]
    channels.append({"id": "ops-chat", "kind": "outbox", "audience": "internal",
                     "path": str(tmp / "ops-chat.jsonl")})
    feeds = [{"id": "am", "kind": "alertmanager", "token_env": "SB_TEST_FEED", "rules": [
        {"match": {"alertname": "Twice"}, "runbook": "twice", "channels": ["pub-b", "pub-b"]},
        {"match": {"service": "lifts"}, "runbook": "twice", "channels": ["pub-a"]}]}]
    return base_config(tmp, 0, channels=channels, feeds=feeds)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("refusals")
    proc = DaemonProcess(tmp, config=config(tmp), runbooks={"twice": RUNBOOK}).start()
    try:
        yield proc
    finally:
        proc.kill()


def raw(daemon: DaemonProcess, path: str, body: bytes, role: str) -> requests.Response:
    """A body as a sender writes it (json.dumps keeps a lone surrogate as `\\udc80`)."""
    return requests.post(daemon.url + path, data=body, timeout=30, headers={
        "Authorization": f"Bearer {TOKENS[role]}", "Content-Type": "application/json"})


def alerts(*alerts: dict[str, Any]) -> bytes:
    items = [{"status": "firing", "startsAt": "2026-09-21T10:00:00Z", **a} for a in alerts]
    return json.dumps({"version": "4", "status": "firing", "alerts": items}).encode()


def deliver(daemon: DaemonProcess, body: bytes) -> requests.Response:
    return requests.post(daemon.url + "/feeds/am", data=body, timeout=30,
                         headers={"Authorization": f"Bearer {TOKENS['feed']}"})


def incidents(daemon: DaemonProcess) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = daemon.ok("GET", "/api/v1/incidents")
    return listed


def message(response: requests.Response) -> str:
    text: str = response.json()["error"]["message"]
    return text


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


# -- a channel named twice ------------------------------------------------------------

def test_a_runbook_whose_scope_names_a_channel_twice_still_declares(
        daemon: DaemonProcess) -> None:
    declared = daemon.api("POST", "/api/v1/incidents", {"runbook": "twice", "title": "Scope"},
                          role="ops")
    assert declared.status_code == 201, declared.text
    assert declared.json()["channels"] == ["pub-a", "pub-b"]
    refused = daemon.api("POST", "/api/v1/send", {"channel": "pub-a", "text": "Offer"},
                         role="marketing")
    assert refused.status_code == 409


def test_an_api_declaration_naming_a_channel_twice_holds_it_once(daemon: DaemonProcess) -> None:
    declared = daemon.api("POST", "/api/v1/incidents", {
        "runbook": "twice", "title": "API", "channels": ["pub-b", "pub-b"]}, role="ops")
    assert declared.status_code == 201, declared.text
    assert declared.json()["channels"] == ["pub-b"]


def test_a_cli_declaration_with_the_same_channel_twice_declares(daemon: DaemonProcess) -> None:
    result = daemon.cli("incident", "declare", "--runbook", "twice", "--title", "CLI",
                        "--channel", "pub-a", "--channel", "pub-a", "--json", role="ops")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["channels"] == ["pub-a"]


def test_a_feed_rule_naming_a_channel_twice_declares(daemon: DaemonProcess) -> None:
    answer = deliver(daemon, alerts({"fingerprint": "rule-twice",
                                     "labels": {"alertname": "Twice"},
                                     "annotations": {"summary": "Rule twice"}}))
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcomes"] == ["declared"]
    [incident] = [i for i in incidents(daemon) if i["title"] == "Rule twice"]
    assert incident["channels"] == ["pub-b"]
    assert daemon.metric("switchboard_feed_errors_total", {"feed": "am"}) is None


# -- lone surrogates ---------------------------------------------------------------------

def test_a_lone_surrogate_in_a_post_or_an_incident_is_a_400(daemon: DaemonProcess) -> None:
    before = daemon.ok("GET", "/api/v1/posts")
    post = raw(daemon, "/api/v1/posts", b'{"channel": "pub-a", "text": "Offer \\udc80", '
                                        b'"at": "+1h"}', "marketing")
    assert post.status_code == 400, post.text
    assert message(post) == ("text is not valid Unicode text: it holds a lone surrogate "
                             "(\\udc80 at character 7)")
    declared = raw(daemon, "/api/v1/incidents", b'{"runbook": "twice", "title": "Lifts '
                                                b'\\udc80"}', "ops")
    assert declared.status_code == 400, declared.text
    assert message(declared).startswith("title is not valid Unicode text")
    assert daemon.ok("GET", "/api/v1/posts") == before
    assert not [i for i in incidents(daemon) if i["title"].startswith("Lifts")]


def test_a_cli_argument_that_is_not_utf8_is_refused(daemon: DaemonProcess) -> None:
    # "\udc80" reaches the child's argv as the byte 0x80, which Python reads back as it.
    result = daemon.cli("incident", "declare", "--runbook", "twice", "--title",
                        "Lifts \udc80", role="ops")
    assert result.returncode == 2
    assert "switchboard: title: not valid UTF-8 text" in result.stderr
    assert not [i for i in incidents(daemon) if i["title"].startswith("Lifts")]


def test_an_alert_with_a_lone_surrogate_declares_and_so_does_the_next(
        daemon: DaemonProcess) -> None:
    answer = deliver(daemon, alerts(
        {"fingerprint": "lift-broken", "labels": {"alertname": "Lift", "service": "lifts"},
         "annotations": {"summary": "Lift \udc80 stuck"}},
        {"fingerprint": "after-broken", "labels": {"alertname": "Twice"},
         "annotations": {"summary": "Clean one after"}}))
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcomes"] == ["declared", "declared"]
    titles = {i["title"]: i["channels"] for i in incidents(daemon)}
    assert titles["Lift \ufffd stuck"] == ["pub-a"]
    assert titles["Clean one after"] == ["pub-b"]


# -- the smaller silent acceptances --------------------------------------------------

def test_a_state_typo_in_the_post_list_is_refused_naming_the_states(
        daemon: DaemonProcess) -> None:
    listed = daemon.api("GET", "/api/v1/posts", params={"state": "scheduled,schedled"})
    assert listed.status_code == 400
    assert message(listed) == (
        "unknown state 'schedled' (states: scheduled, sending, published, failed, suppressed, "
        "held, dropped, cancelled, expired, missed, unknown, retracted, pending_approval, "
        "rejected)")
    cli = daemon.cli("post", "list", "--state", "schedled")
    assert cli.returncode == 1 and "unknown state 'schedled'" in cli.stderr


def test_a_past_time_is_refused_when_scheduling(daemon: DaemonProcess) -> None:
    refused = daemon.api("POST", "/api/v1/posts", {"channel": "pub-a", "text": "Late offer",
                                                   "at": ago(60)}, role="marketing")
    assert refused.status_code == 422
    assert "is in the past" in message(refused)
    cli = daemon.cli("post", "schedule", "--channel", "pub-a", "--at", ago(60),
                     "--text", "Late offer", role="marketing")
    assert cli.returncode == 1 and "is in the past" in cli.stderr
    assert not [p for p in daemon.ok("GET", "/api/v1/posts") if p["text"] == "Late offer"]


def test_a_past_time_in_an_import_is_refused(daemon: DaemonProcess, tmp_path: Path) -> None:
    calendar = tmp_path / "calendar.csv"
    calendar.write_text(f"channel,at,text\npub-a,+1h,Fine offer\npub-a,{ago(3600)},Old offer\n")
    result = daemon.cli("post", "import", str(calendar), role="marketing")
    assert result.returncode == 1
    assert "is in the past" in result.stderr
    assert not [p for p in daemon.ok("GET", "/api/v1/posts") if p["text"].endswith(" offer")
                and p["text"] != "Later offer"]


def test_a_past_release_time_is_refused(daemon: DaemonProcess) -> None:
    post = daemon.ok("POST", "/api/v1/posts", {"channel": "pub-a", "text": "Later offer",
                                               "at": "+1d"}, role="marketing")
    result = daemon.cli("post", "release", str(post["id"]), "--at", ago(600),
                        role="marketing")
    assert result.returncode == 1
    assert "422: at " in result.stderr and "is in the past" in result.stderr


def test_an_unknown_severity_is_refused_naming_the_valid_ones(daemon: DaemonProcess) -> None:
    refused = daemon.api("POST", "/api/v1/incidents", {"runbook": "twice", "title": "Sev",
                                                       "severity": "sev1"}, role="ops")
    assert refused.status_code == 422
    assert message(refused) == "unknown severity 'sev1' (severities: minor, major, critical)"
    cli = daemon.cli("incident", "declare", "--runbook", "twice", "--title", "Sev",
                     "--severity", "sev1", role="ops")
    assert cli.returncode == 2
    assert "invalid choice: 'sev1' (choose from 'minor', 'major', 'critical')" in cli.stderr
    assert not [i for i in incidents(daemon) if i["title"] == "Sev"]


def test_a_marketing_post_on_an_internal_channel_is_refused(daemon: DaemonProcess) -> None:
    for path in ("/api/v1/posts", "/api/v1/send"):
        refused = daemon.api("POST", path, {"channel": "ops-chat", "text": "Offer"},
                             role="marketing")
        assert refused.status_code == 422, (path, refused.text)
        assert message(refused) == ("channel ops-chat is internal: marketing posts go to "
                                    "public channels")
    assert daemon.outbox("ops-chat.jsonl") == []


def test_the_daemon_will_not_start_with_a_max_lateness_under_a_second(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(),
                                                        max_lateness="0s"))
    result = subprocess.run([sys.executable, "-m", "switchboard", "run", "-c",
                             str(daemon.config_path)], env=daemon.env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert f"{daemon.config_path}:5:1: max_lateness: must be at least 1s" in result.stderr
