"""systemd/switchboard.service: what systemd makes of it, and how tight its sandbox is."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.operations.required_tools import require_tool, run_tool, running_in_ci

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "switchboard.service"
INSTALLED_SCRIPT = "/opt/switchboard/bin/switchboard"
MAX_EXPOSURE = 2.0


def settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; keys may repeat, as systemd allows."""
    out: list[tuple[str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {raw!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in settings(UNIT.read_text(encoding="utf-8"))
            if s == section and k == key]


def value(key: str, section: str = "Service") -> str:
    found = values(key, section)
    assert len(found) == 1, f"{key}= appears {len(found)} times"
    return found[0]


def switchboard_script(tmp_path: Path) -> Path:
    """The installed console script, so verify checks a real executable.

    Without the project installed (a bare checkout) a stand-in keeps the
    rest of the unit checked; CI must have the real one.
    """
    for candidate in (Path(sys.executable).parent / "switchboard",):
        if os.access(candidate, os.X_OK):
            return candidate
    if running_in_ci():
        pytest.fail(f"no switchboard console script beside {sys.executable}: "
                    "CI must `pip install -e .` before the tests")
    stand_in = tmp_path / "bin" / "switchboard"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stand_in.chmod(0o755)
    return stand_in


def test_unit_runs_the_daemon_as_documented() -> None:
    assert value("ExecStart") == f"{INSTALLED_SCRIPT} run -c /etc/switchboard/switchboard.yaml"
    assert values("ExecReload") == [
        f"{INSTALLED_SCRIPT} check -c /etc/switchboard/switchboard.yaml",
        "/bin/kill -HUP $MAINPID",
    ]
    assert value("Type") == "notify"
    assert value("NotifyAccess") == "main"
    assert value("WatchdogSec") == "30s"
    assert value("Restart") == "on-failure"
    assert value("WantedBy", "Install") == "multi-user.target"


def test_unit_keeps_state_and_config_in_systemd_managed_directories() -> None:
    assert value("DynamicUser") == "yes"
    assert value("StateDirectory") == "switchboard"
    assert value("ConfigurationDirectory") == "switchboard"
    assert value("ProtectSystem") == "strict"


def test_credentials_come_from_the_credential_store_under_switchboard_names() -> None:
    credentials = values("LoadCredential")
    assert credentials
    for entry in credentials:
        name, _, source = entry.partition(":")
        # A bare name is looked up in /etc/credstore and skipped when absent;
        # an absolute path would make a missing file fatal at start.
        assert source == f"switchboard.{name}", entry
    assert {"admin.token", "ops.token", "alertmanager.token", "pagerduty.secret"} <= {
        entry.partition(":")[0] for entry in credentials}


def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    """verify exits 0 even on a misspelt key, so any output at all is a failure.

    verify insists that ExecStart's binary exists, so a copy of the unit runs
    the console script installed here; nothing else in it changes.
    """
    analyze = require_tool("systemd-analyze")
    original = UNIT.read_text(encoding="utf-8")
    assert original.count(INSTALLED_SCRIPT) == 2, "ExecStart and ExecReload only"
    copy = tmp_path / "switchboard.service"
    copy.write_text(original.replace(INSTALLED_SCRIPT, str(switchboard_script(tmp_path))),
                    encoding="utf-8")
    changed = [(a, b) for a, b in zip(original.splitlines(), copy.read_text().splitlines(),
                                      strict=True) if a != b]
    assert [a.partition("=")[0] for a, _ in changed] == ["ExecStart", "ExecReload"]

    env = {k: v for k, v in os.environ.items() if k != "SYSTEMD_LOG_LEVEL"}
    result = run_tool(analyze, "verify", copy, env=env)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_analyze_verify_would_catch_a_misspelt_key(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    copy = tmp_path / "switchboard.service"
    copy.write_text(UNIT.read_text(encoding="utf-8")
                    .replace(INSTALLED_SCRIPT, str(switchboard_script(tmp_path)))
                    .replace("ProtectHome=yes", "ProtectHom=yes"), encoding="utf-8")
    result = run_tool(analyze, "verify", copy)
    assert "Unknown key" in result.stdout + result.stderr


def test_sandbox_exposure_is_at_most_two() -> None:
    analyze = require_tool("systemd-analyze")
    result = run_tool(analyze, "security", "--offline=yes", "--no-pager", UNIT,
                      env={**os.environ, "SYSTEMD_COLORS": "0"})
    output = result.stdout + result.stderr
    score = re.search(r"Overall exposure level for switchboard\.service: (\d+\.\d+)", output)
    assert score, output
    assert float(score.group(1)) <= MAX_EXPOSURE, output
