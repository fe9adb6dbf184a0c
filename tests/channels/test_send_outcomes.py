"""What a send leaves in the store, through the real dispatcher (design 7.1).

- keys sent to platforms are an install id + the post id: two stores that
  both have a post 1 (a restore, staging, a fresh state_dir) never share one;
- a send that never reached the platform is `failed`, never `unknown`;
- a receiver that ignores idempotency keys and may have the post is sent it
  once, and the post is `unknown`.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from switchboard.channels import build_channel
from switchboard.channels.base import Channel
from switchboard.config import ChannelConfig
from switchboard.store import SqliteStore
from tests.channels.desk import Desk
from tests.channels.harness import network_harness
from tests.daemon import DaemonProcess, base_config, free_port
from tests.fakes.fake_mastodon import FakeMastodon
from tests.fakes.fake_webhook import FakeWebhook
from tests.fakes.server import Fail

DRILL = "name: drill\ntitle: Drill\nseverity: major\nsuppress: [marketing]\n"
RETRIES = {"max_retries": 2, "retry_base": 0.01}


def mastodon(fake: FakeMastodon) -> dict[str, Channel]:
    channel = build_channel(ChannelConfig(
        id="masto", kind="mastodon", timeout=2.0, options={"api_base_url": fake.url, **RETRIES},
        secrets={"access_token": fake.access_token}))
    return {"masto": channel}


def webhook(url: str, **options: object) -> dict[str, Channel]:
    channel = build_channel(ChannelConfig(id="hook", kind="webhook", audience="internal",
                                          timeout=2.0, options={**RETRIES, **options},
                                          secrets={"url": url}))
    return {"hook": channel}


def send_one(state_dir: Path, channels: dict[str, Channel], text: str,
             kind: str = "operational") -> tuple[SqliteStore, int]:
    async def scenario() -> tuple[SqliteStore, int]:
        desk = Desk(state_dir, channels)
        await desk.open()
        post_id = await desk.post(next(iter(channels)), kind, text)
        await desk.settled(post_id)
        await desk.close()
        return desk.backend, post_id

    return asyncio.run(scenario())


def test_each_store_keeps_one_install_id_of_its_own(tmp_path: Path) -> None:
    first = SqliteStore.open(tmp_path / "a" / "switchboard.db")
    other = SqliteStore.open(tmp_path / "b" / "switchboard.db")
    key = first.install_id()
    assert key and key != other.install_id()
    first.close()
    other.close()
    assert SqliteStore.open(tmp_path / "a" / "switchboard.db").install_id() == key


def test_a_restored_store_whose_install_id_was_deleted_makes_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.db"
    store = SqliteStore.open(path)
    old = store.install_id()
    store.close()
    db = sqlite3.connect(path)  # what docs/operations.md tells the operator to run
    with db:
        db.execute("DELETE FROM meta WHERE key = 'install_id'")
    db.close()
    restored = SqliteStore.open(path)
    new = restored.install_id()
    restored.close()
    assert new and new != old
    assert SqliteStore.open(path).install_id() == new


def test_a_second_store_posting_to_the_same_account_gets_its_own_status(
        tmp_path: Path) -> None:
    with FakeMastodon() as fake:
        live, live_post = send_one(tmp_path / "live", mastodon(fake), "Trams run until 1am")
        fresh, fresh_post = send_one(tmp_path / "staging", mastodon(fake),
                                     "Station closed for cleaning")
        assert live_post == fresh_post == 1, "both stores number their first post 1"
        assert fake.texts == ["Trams run until 1am", "Station closed for cleaning"]
        keys = [r.header("Idempotency-Key") for r in fake.requests]
        assert keys == [f"{live.install_id()}-1", f"{fresh.install_id()}-1"]
        remote_ids = [live.post(1).remote_id, fresh.post(1).remote_id]  # type: ignore[union-attr]
        assert remote_ids == [s.id for s in fake.statuses]


def test_a_webhook_that_was_never_reached_leaves_the_post_failed(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store, post_id = send_one(tmp_path, webhook(f"http://127.0.0.1:{port}/hook"),
                              "Escalators out of order")
    post = store.post(post_id)
    assert post is not None
    assert post.state == "failed", post.state
    assert post.error is not None and "after 3 attempts" in post.error


@pytest.mark.parametrize("kind", ["bluesky", "facebook", "threads", "telegram", "teams"])
def test_a_platform_that_was_never_reached_leaves_the_post_failed(
        kind: str, tmp_path: Path) -> None:
    harness = network_harness(kind)
    assert harness.fake is not None
    harness.fake.stop()  # nothing listens on its port now: every connection is refused
    config = replace(harness.config, options={**harness.config.options, **RETRIES})
    store, post_id = send_one(tmp_path, {config.id: build_channel(config)},
                              "Lift at platform 2 out of order")
    post = store.post(post_id)
    assert post is not None
    assert post.state == "failed", f"{post.state}: {post.error}"
    assert post.error is not None and "after 3 attempts" in post.error


def test_a_receiver_that_ignores_keys_and_answers_502_gets_the_post_once(
        tmp_path: Path) -> None:
    with FakeWebhook(idempotent=False) as hook:
        hook.script(Fail(502, apply=True))  # took the post, then a gateway error
        store, post_id = send_one(tmp_path, webhook(hook.url, idempotent=False),
                                  "Ferry cancelled")
        assert len(hook.requests) == 1
        assert hook.texts == ["Ferry cancelled"]
    post = store.post(post_id)
    assert post is not None
    assert post.state == "unknown", post.state


@pytest.mark.integration
def test_post_send_to_a_refused_webhook_exits_1_and_the_post_is_failed(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channels = [{"id": "ops-chat", "kind": "webhook", "audience": "internal",
                 "url_env": "SB_HOOK", "max_retries": 1, "retry_base": "0.01s"},
                {"id": "brand", "kind": "outbox", "path": str(tmp_path / "brand.jsonl")}]
    daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), channels),
                           runbooks={"drill": DRILL}, env={"SB_HOOK": f"http://127.0.0.1:{port}/hook"})
    daemon.start()
    try:
        sent = daemon.cli("post", "send", "--channel", "ops-chat", "--kind", "operational",
                          "--text", "Lift out of order at Central", role="ops")
        assert sent.returncode == 1, sent.stdout + sent.stderr
        assert "failed" in sent.stderr and "cannot reach webhook host" in sent.stderr
        (post,) = daemon.ok("GET", "/api/v1/posts")
        assert post["state"] == "failed"
    finally:
        daemon.kill()
