"""A missing external tool skips the operations tests locally and fails them in CI."""

from __future__ import annotations

import pytest

from tests.operations.required_tools import require_tool

ABSENT = "switchboard-no-such-tool"


def test_a_missing_tool_skips_the_test_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=ABSENT):
        require_tool(ABSENT)


def test_a_missing_tool_fails_the_test_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_tool(ABSENT)


def test_a_present_tool_is_found_by_absolute_path() -> None:
    assert require_tool("sh").startswith("/")
