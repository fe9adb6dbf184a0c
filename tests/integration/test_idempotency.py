"""Idempotency-Key on the requests that create something, against the real daemon.

A caller that lost its answer (a dropped connection, a killed daemon) asks
again with the same key and gets the first answer: never a second post,
never a second incident, never the same text on the platform twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.daemon import DaemonProcess, base_config
from tests.fakes.fake_webhook import FakeWebhook
from tests.fakes.server import Answer, FakeServer, Hold, Request, Reset
from tests.integration.test_one_writer import hook_config, states


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(tmp_path, base_config(tmp_path, 0)).start()
    yield proc
    proc.kill()


def keyed(daemon: DaemonProcess, path: str, body: Any, key: str,
          role: str = "admin") -> requests.Response:
    return daemon.api("POST", path, body, role=role, headers={"Idempotency-Key": key})


def test_a_repeated_schedule_with_the_same_key_returns_the_first_posts_and_creates_none(
        daemon: DaemonProcess) -> None:
    body = [{"channel": "outbox", "at": "+1h", "text": f"Offer {i}"} for i in range(3)]
    first = keyed(daemon, "/api/v1/posts", body, "cal-42", role="marketing")
    again = keyed(daemon, "/api/v1/posts", body, "cal-42", role="marketing")
    assert first.status_code == again.status_code == 201
    assert [p["id"] for p in again.json()] == [p["id"] for p in first.json()]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(daemon.ok("GET", "/api/v1/posts")) == 3


def test_the_same_key_with_another_body_is_refused_and_creates_nothing(
        daemon: DaemonProcess) -> None:
    keyed(daemon, "/api/v1/posts", {"channel": "outbox", "at": "+1h", "text": "a"}, "k1",
          role="marketing")
    other = keyed(daemon, "/api/v1/posts", {"channel": "outbox", "at": "+1h", "text": "b"},
                  "k1", role="marketing")
    assert other.status_code == 422
    assert "already used for a different request" in other.json()["error"]["message"]
    assert [p["text"] for p in daemon.ok("GET", "/api/v1/posts")] == ["a"]


def test_a_repeated_declaration_with_the_same_key_is_one_incident(
        daemon: DaemonProcess) -> None:
    body = {"runbook": "service-outage", "title": "Payments down"}
    first = keyed(daemon, "/api/v1/incidents", body, "decl-1", role="ops")
    again = keyed(daemon, "/api/v1/incidents", body, "decl-1", role="ops")
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert len(daemon.ok("GET", "/api/v1/incidents")) == 1


@pytest.mark.parametrize(("path", "body", "role"), [
    ("/api/v1/posts", [{"channel": "outbox", "at": "+1h", "text": "Offer"}], "marketing"),
    ("/api/v1/incidents", {"runbook": "service-outage", "title": "Payments down"}, "ops")])
def test_repeats_racing_their_first_request_make_one_thing_and_no_server_error(
        daemon: DaemonProcess, path: str, body: Any, role: str) -> None:
    # A client retrying at once, several times, while its first request is still
    # being written: the store's awaits let them interleave.
    answers: list[requests.Response] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        answers.append(keyed(daemon, path, body, "race-1", role=role))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {201, 409}, [a.text for a in answers]
    assert 201 in codes
    made = {str(a.json()["id"] if isinstance(a.json(), dict) else a.json()[0]["id"])
            for a in answers if a.status_code == 201}
    assert len(made) == 1, made
    listed = daemon.ok("GET", path)
    assert len(listed) == 1


def test_a_key_that_is_not_printable_ascii_or_too_long_is_refused(daemon: DaemonProcess) -> None:
    body = {"channel": "outbox", "at": "+1h", "text": "x"}
    for key in ("k" * 256, "tab\tkey"):
        refused = keyed(daemon, "/api/v1/posts", body, key, role="marketing")
        assert refused.status_code == 400, key
        assert "Idempotency-Key must be" in refused.json()["error"]["message"]
    assert daemon.ok("GET", "/api/v1/posts") == []


def test_a_key_belongs_to_its_caller(daemon: DaemonProcess) -> None:
    body = {"channel": "outbox", "at": "+1h", "text": "same words"}
    mine = keyed(daemon, "/api/v1/posts", body, "shared", role="marketing").json()
    theirs = keyed(daemon, "/api/v1/posts", body, "shared", role="admin").json()
    assert mine["id"] != theirs["id"]


def test_an_immediate_send_interrupted_by_a_kill_is_not_sent_at_restart_unless_asked_again(
        tmp_path: Path) -> None:
    with FakeWebhook() as hook:
        daemon = DaemonProcess(tmp_path, hook_config(tmp_path, 0),
                               env={"SB_HOOK_URL": hook.url})
        hook.script(Hold(then="drop", apply=False))
        daemon.start()
        try:
            # The platform stalls: a scheduled post holds the channel's sender,
            # the immediate send waits behind it, and the daemon dies.
            daemon.ok("POST", "/api/v1/posts", {"channel": "hook", "at": "now",
                                                "text": "scheduled first"})
            daemon.wait_for(lambda: hook.requests)
            body = {"channel": "hook", "text": "Service restored", "kind": "operational"}
            caller = threading.Thread(target=_ignore_errors, args=(
                lambda: keyed(daemon, "/api/v1/send", body, "send-7", role="ops"),))
            caller.start()
            db = tmp_path / "state" / "switchboard.db"
            daemon.wait_for(lambda: "queued" in states(db).values())
            daemon.kill()
            assert hook.release() == 1, "the first send was still stalled when the daemon died"
            caller.join(10)

            daemon.start()
            time.sleep(1.0)  # a restart that re-sent it would have done so by now
            assert "Service restored" not in hook.texts
            post = daemon.ok("GET", "/api/v1/posts", role="viewer")[-1]
            assert (post["text"], post["state"]) == ("Service restored", "failed")
            assert "Idempotency-Key" in post["error"]

            retried = keyed(daemon, "/api/v1/send", body, "send-7", role="ops")
            assert retried.status_code == 201, retried.text
            assert retried.json()["id"] == post["id"]
            assert keyed(daemon, "/api/v1/send", body, "send-7", role="ops").status_code == 201
            assert hook.texts.count("Service restored") == 1
        finally:
            daemon.kill()


def test_a_post_shown_scheduled_but_queued_behind_a_slow_send_can_be_cancelled(
        tmp_path: Path) -> None:
    with FakeWebhook() as hook:
        daemon = DaemonProcess(tmp_path, hook_config(tmp_path, 0),
                               env={"SB_HOOK_URL": hook.url})
        hook.script(Hold())
        daemon.start()
        try:
            daemon.ok("POST", "/api/v1/posts", {"channel": "hook", "at": "now", "text": "slow"})
            daemon.wait_for(lambda: hook.requests)
            behind = daemon.ok("POST", "/api/v1/posts", {"channel": "hook", "at": "now",
                                                         "text": "not any more"})
            db = tmp_path / "state" / "switchboard.db"
            daemon.wait_for(lambda: states(db)[behind["id"]] == "queued")
            assert daemon.ok("GET", f"/api/v1/posts/{behind['id']}")["state"] == "scheduled"

            cancelled = daemon.api("POST", f"/api/v1/posts/{behind['id']}/cancel",
                                   role="marketing")

            assert cancelled.status_code == 200, cancelled.text
            assert hook.release() == 1, "the cancel came while the slow send was under way"
            daemon.wait_for(lambda: hook.texts == ["slow"], timeout=10)
            time.sleep(0.5)
            assert hook.texts == ["slow"]
            assert states(db)[behind["id"]] == "cancelled"
        finally:
            daemon.kill()


class DropsFirst(FakeServer):
    """A daemon stand-in whose first connection drops, as a killed daemon's would."""

    def route(self, request: Request) -> Answer:
        return Answer(201, {"id": 1, "state": "scheduled", "channel": "outbox",
                            "due_at": "2030-01-01T00:00:00Z"})


def test_the_cli_retries_a_dropped_request_with_the_same_key(daemon: DaemonProcess) -> None:
    with DropsFirst() as fake:
        fake.script(Reset())
        env_url = fake.base_url
        result = daemon.cli("post", "schedule", "--channel", "outbox", "--at", "+1h",
                            "--text", "once", "--url", env_url, role="marketing")
        assert result.returncode == 0, result.stderr
        keys = [r.header("Idempotency-Key") for r in fake.requests]
    assert len(keys) == 2 and keys[0] is not None and keys[0] == keys[1]
    second = daemon.cli("post", "schedule", "--channel", "outbox", "--at", "+1h",
                        "--text", "once", role="marketing")
    third = daemon.cli("post", "schedule", "--channel", "outbox", "--at", "+1h",
                       "--text", "once", role="marketing")
    assert second.returncode == third.returncode == 0
    assert len(daemon.ok("GET", "/api/v1/posts")) == 2  # one key per invocation


def _ignore_errors(call: Any) -> None:
    # The daemon is killed under this request: a dropped connection is what the caller sees.
    with contextlib.suppress(requests.RequestException):
        call()
