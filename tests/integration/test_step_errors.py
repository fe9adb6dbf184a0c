"""A runbook step whose outcome the store cannot take at first (a full disk): the
error stays inside the step, and the outcome reaches the timeline once it can."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.app import Daemon, load_settings
from switchboard.store import StoreUnavailable
from switchboard.timer import FakeTimer
from tests.daemon import DaemonProcess, base_config


def test_a_step_whose_record_hits_a_full_disk_lands_on_the_timeline_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SB_TEST_ADMIN", "SB_TEST_OPS", "SB_TEST_MARKETING", "SB_TEST_VIEWER"):
        monkeypatch.setenv(name, f"{name.lower()}-token-0123456789")
    setup = DaemonProcess(tmp_path, base_config(tmp_path, 0))  # writes config and runbooks
    config = yaml.safe_load(setup.config_path.read_text())
    settings = load_settings(setup.config_path)
    assert config["state_dir"] == str(settings.config.state_dir)
    escaped, recorded = asyncio.run(_declare_on_a_full_disk(settings))
    assert escaped == []
    # The first step to finish (the handover notice) met the full disk.
    assert ("handover", "ok") in recorded


async def _declare_on_a_full_disk(settings: Any) -> tuple[list[str], list[tuple[str, str]]]:
    timer = FakeTimer(time.time())
    daemon = Daemon(settings, timer=timer)
    await daemon.build()
    try:
        escaped: list[str] = []
        real = daemon.store.finish_step
        failures = {"left": 1}

        async def finish_on_a_full_disk(*args: Any) -> None:
            if failures["left"]:
                failures["left"] -= 1
                raise StoreUnavailable("full", "the disk is full")
            await real(*args)

        daemon.store.finish_step = finish_on_a_full_disk  # type: ignore[method-assign]
        incident = await daemon.incidents.declare(runbook="service-outage",
                                                  title="Payments down", actor="ops",
                                                  channels=["outbox"])
        recorded: list[tuple[str, str]] = []
        for _ in range(40):
            try:  # a job that raised would escape the timer's advance
                await timer.advance(5.0)
            except Exception as exc:
                escaped.append(repr(exc))
            await asyncio.sleep(0.01)  # the outbox writes in a thread of its own
            recorded = [(e.detail["step"], e.detail["result"])
                        for e in await daemon.store.timeline(incident.id) if e.event == "step"]
            if not failures["left"] and ("handover", "ok") in recorded:
                break
        return escaped, recorded
    finally:
        await daemon.teardown()
