"""A channel's last error outlives the daemon: `switchboard channels` still says why
an account failed after a restart and after a reload that changed the channel,
until a send on it succeeds."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from tests.daemon import DaemonProcess, base_config
from tests.fakes.fake_webhook import FakeWebhook
from tests.fakes.server import Fail


def hook_config(tmp: Path, url: str, timeout: float) -> dict[str, Any]:
    channels = [{"id": "hook", "kind": "webhook", "url_env": "SB_HOOK_URL", "timeout": timeout,
                 "max_retries": 0},
                {"id": "ops-chat", "kind": "outbox", "audience": "internal",
                 "path": str(tmp / "ops-chat.jsonl")}]
    return base_config(tmp, 0, channels=channels)


def last_error(daemon: DaemonProcess) -> Any:
    (hook,) = [c for c in daemon.ok("GET", "/api/v1/channels") if c["id"] == "hook"]
    return hook["last_error"]


def send(daemon: DaemonProcess, text: str) -> dict[str, Any]:
    post = daemon.ok("POST", "/api/v1/posts", {"channel": "hook", "text": text, "at": "now",
                                               "kind": "operational"},
                     role="ops")
    return daemon.wait_for(lambda: (p := daemon.ok("GET", f"/api/v1/posts/{post['id']}"))
                           ["state"] not in ("scheduled", "queued", "sending") and p)


def test_the_last_error_survives_a_restart_and_a_reload_until_a_send_succeeds(
        tmp_path: Path) -> None:
    with FakeWebhook() as hook:
        hook.script(Fail(403))  # refused for good: the post fails, the error stays
        daemon = DaemonProcess(tmp_path, hook_config(tmp_path, hook.url, 5.0),
                               env={"SB_HOOK_URL": hook.url})
        daemon.start()
        try:
            assert send(daemon, "Lifts out at Central")["state"] == "failed"
            error = last_error(daemon)
            assert error is not None and "403" in error["message"]

            daemon.stop()
            daemon.start()
            assert last_error(daemon) == error, "a restart forgot why the channel failed"

            # A reload that changes the channel builds a new one: the error goes with it.
            changed = hook_config(tmp_path, hook.url, 6.0)
            changed["listen"] = daemon.config["listen"]
            daemon.write_config(changed)
            daemon.signal(signal.SIGHUP)
            daemon.wait_for(lambda: "reloaded" in daemon.log())
            assert last_error(daemon) == error, "a reload forgot why the channel failed"

            assert send(daemon, "Lifts at Central work again")["state"] == "published"
            assert last_error(daemon) is None
            daemon.stop()
            daemon.start()
            assert last_error(daemon) is None, "a cleared error came back after a restart"
        finally:
            daemon.kill()
