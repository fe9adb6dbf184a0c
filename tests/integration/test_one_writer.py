"""One writer per state_dir, and the store, not a process's memory, decides sends.

Two real daemon processes: the second one on the same state_dir must refuse
before it reads or repairs anything, whatever its port. A hold written into
the store by another process stops marketing as surely as a declaration.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.model import NewPost
from switchboard.store import SqliteStore
from tests.daemon import DaemonProcess, base_config, free_port
from tests.fakes.fake_webhook import FakeWebhook
from tests.fakes.server import Hold


@pytest.fixture
def hook() -> Iterator[FakeWebhook]:
    with FakeWebhook() as fake:
        yield fake


def hook_config(tmp: Path, port: int) -> dict[str, Any]:
    # The tests hold a send until they release it; the client waits longer than that.
    channels = [{"id": "hook", "kind": "webhook", "url_env": "SB_HOOK_URL", "timeout": 30},
                {"id": "outbox", "kind": "outbox", "path": str(tmp / "outbox.jsonl")},
                {"id": "ops-chat", "kind": "outbox", "audience": "internal",
                 "path": str(tmp / "ops-chat.jsonl")}]
    return base_config(tmp, port, channels=channels)


def states(db: Path) -> dict[int, str]:
    with sqlite3.connect(db) as conn:
        return {int(i): s for i, s in conn.execute("SELECT id, state FROM posts")}


def run_second(config_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchboard", "run", "-c", str(config_path)],
                          env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("port", ["another port", "the same config"])
def test_a_second_daemon_on_the_same_state_dir_refuses_before_touching_the_store(
        tmp_path: Path, hook: FakeWebhook, port: str) -> None:
    first_dir = tmp_path / "first"
    first_dir.mkdir()
    first = DaemonProcess(first_dir, hook_config(first_dir, 0), env={"SB_HOOK_URL": hook.url})
    hook.script(Hold())
    first.start()
    try:
        # One post mid-send (the platform stalls until released), one queued behind it.
        sending = first.ok("POST", "/api/v1/posts", {"channel": "hook", "at": "now",
                                                     "text": "in flight"})["id"]
        first.wait_for(lambda: hook.requests)
        queued = first.ok("POST", "/api/v1/posts", {"channel": "hook", "at": "now",
                                                    "text": "queued behind"})["id"]
        db = first.config_path.parent / "state" / "switchboard.db"
        first.wait_for(lambda: states(db)[queued] == "queued")
        if port == "the same config":
            second_config = first.config_path
        else:
            second_dir = tmp_path / "second"
            second_dir.mkdir()
            config = hook_config(second_dir, free_port())
            config["state_dir"] = first.config["state_dir"]
            config["runbooks_dir"] = first.config["runbooks_dir"]
            second_config = second_dir / "switchboard.yaml"
            second_config.write_text(yaml.safe_dump(config))

        second = run_second(second_config, first.env)

        assert second.returncode == 1, second.stderr
        assert "in use by another switchboard" in second.stderr
        assert f"pid {first.proc.pid}" in second.stderr if first.proc else False
        assert f"127.0.0.1:{first.port}" in second.stderr
        assert states(db) == {sending: "sending", queued: "queued"}
        assert hook.release() == 1, "the first send was still in flight throughout"
        # The first daemon carries on: each post reaches the platform once.
        first.wait_for(lambda: hook.texts == ["in flight", "queued behind"], timeout=15)
        time.sleep(0.3)
        assert hook.texts == ["in flight", "queued behind"]
    finally:
        first.kill()


def test_a_hold_written_into_the_store_by_another_process_stops_marketing(
        tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path).start()
    try:
        db = tmp_path / "state" / "switchboard.db"
        # Another writer of the same store (a second daemon, a script): the running
        # daemon's in-memory gate never hears of this incident.
        with sqlite3.connect(db) as other:
            cur = other.execute(
                "INSERT INTO incidents (title, runbook, severity, state, channels, suppress, "
                "source, declared_at, declared_by) VALUES ('Power cut', 'outage', 'major', "
                "'active', '[\"outbox\"]', '[\"marketing\"]', 'manual', ?, 'ops')",
                (time.time(),))
            other.execute("INSERT INTO channel_control (channel, incident_id, until) "
                          "VALUES ('outbox', ?, NULL)", (cur.lastrowid,))
        post = daemon.ok("POST", "/api/v1/posts", {"channel": "outbox", "at": "now",
                                                   "text": "Flash sale"}, role="marketing")
        held = daemon.wait_for(lambda: (p := daemon.ok("GET", f"/api/v1/posts/{post['id']}"))
                               ["state"] == "suppressed" and p)
        assert held["incident_id"] == f"INC-{cur.lastrowid}"
        time.sleep(0.3)
        assert daemon.outbox() == []
    finally:
        daemon.kill()


def test_a_daemon_whose_port_is_taken_exits_before_repairing_its_store(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    db = tmp_path / "state" / "switchboard.db"
    store = SqliteStore.open(db)
    [post] = store.add_posts([NewPost("outbox", "marketing", "claimed", time.time(),
                                      state="queued")], "marketing", time.time())
    store.close()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", daemon.port))
        taken.listen()
        result = run_second(daemon.config_path, daemon.env)
    assert result.returncode == 1
    assert "address already in use" in result.stderr.lower()
    assert states(db) == {post: "queued"}  # start-up repair never ran
