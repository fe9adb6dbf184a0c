"""A council's estate: fifty public channels under one `scope: all` runbook.

The hand-over notice goes to an internal outbox, which mirrors no platform and
so has no 280-character limit; the notice summarises the scope instead of
listing fifty channel ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.daemon import DaemonProcess, base_config, free_port

ESTATE = 50

RUNBOOK = """\
name: estate-outage
title: Council systems outage
severity: major
scope: all
suppress: [marketing]
handover:
  role: ops
  notify: [ops-chat]
"""


def estate(tmp_path: Path) -> DaemonProcess:
    channels: list[dict[str, Any]] = [
        {"id": f"service-{i:02d}", "kind": "outbox", "path": str(tmp_path / f"s{i:02d}.jsonl")}
        for i in range(ESTATE)]
    channels.append({"id": "ops-chat", "kind": "outbox", "audience": "internal",
                     "path": str(tmp_path / "ops-chat.jsonl")})
    return DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), channels),
                         runbooks={"estate-outage": RUNBOOK})


def test_check_accepts_a_scope_all_runbook_over_fifty_channels(tmp_path: Path) -> None:
    daemon = estate(tmp_path)
    done = daemon.cli("check", "-c", str(daemon.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"({ESTATE + 1} channels" in done.stdout


def test_the_hand_over_notice_summarises_fifty_channels(tmp_path: Path) -> None:
    daemon = estate(tmp_path).start()
    try:
        declared = daemon.cli("incident", "declare", "--runbook", "estate-outage", "--title",
                              "Phone lines down", role="ops")
        assert declared.returncode == 0, declared.stderr
        notice = daemon.wait_for(lambda: daemon.outbox("ops-chat.jsonl"))[0]["text"]
    finally:
        daemon.kill()
    assert notice.startswith("INC-1 declared: Phone lines down. ops has control of 50 channels "
                             "(service-00, service-01, service-02 and 47 more: "
                             "switchboard incident show INC-1)")
    assert "service-49" not in notice
    assert len(notice) < 280
