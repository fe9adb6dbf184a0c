"""A runbook step whose outcome the store cannot take at first (a full disk): the
error stays inside the step, and the outcome reaches the timeline once it can."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent

from switchboard import steps
from switchboard.app import Daemon, load_settings
from switchboard.store import StoreUnavailable
from tests.daemon import DaemonProcess, base_config


def test_a_step_whose_record_hits_a_full_disk_lands_on_the_timeline_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "STEP_RETRY", 0.2)
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
    daemon = Daemon(settings)
    await daemon.build()
    try:
        escaped: list[str] = []

        def on_error(event: JobExecutionEvent) -> None:
            escaped.append(f"{event.job_id}: {event.exception!r}")

        daemon.scheduler.add_listener(on_error, EVENT_JOB_ERROR)
        real = daemon.store.finish_step
        failures = {"left": 1}

        def finish_on_a_full_disk(*args: Any) -> None:
            if failures["left"]:
                failures["left"] -= 1
                raise StoreUnavailable("full", "the disk is full")
            real(*args)

        daemon.store.finish_step = finish_on_a_full_disk  # type: ignore[method-assign]
        incident = daemon.incidents.declare(runbook="service-outage", title="Payments down",
                                            actor="ops", channels=["outbox"])
        recorded: list[tuple[str, str]] = []
        for _ in range(100):
            await asyncio.sleep(0.05)
            recorded = [(e.detail["step"], e.detail["result"])
                        for e in daemon.store.timeline(incident.id) if e.event == "step"]
            if not failures["left"] and ("handover", "ok") in recorded:
                break
        return escaped, recorded
    finally:
        await daemon.teardown()
