"""The console tests' screenshots land in docs/console/ only on request: a
plain run must never rewrite the committed images."""

from __future__ import annotations

from pathlib import Path

from tests.console.conftest import DOCS_SHOTS, screenshot_dir


def test_a_plain_run_keeps_its_screenshots_in_its_scratch_directory(tmp_path: Path) -> None:
    assert screenshot_dir({}, tmp_path) == tmp_path
    assert screenshot_dir({"SWITCHBOARD_REFRESH_SCREENSHOTS": "0"}, tmp_path) == tmp_path


def test_asking_for_a_refresh_writes_the_committed_screenshots(tmp_path: Path) -> None:
    assert screenshot_dir({"SWITCHBOARD_REFRESH_SCREENSHOTS": "1"}, tmp_path) == DOCS_SHOTS
    assert DOCS_SHOTS.parts[-2:] == ("docs", "console")
