"""External tools the operations tests run (promtool, amtool, systemd-analyze).

On a laptop without them the tests skip; in CI (`CI=true`) a missing tool is a
failure, so a broken CI image cannot turn these checks into silent skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# Debian's packages put them here even when /usr/bin is not on PATH (sudo, cron).
_FALLBACK_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin")


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(what: str) -> None:
    """Skip the test, or fail it in CI, because `what` is not available."""
    if running_in_ci():
        pytest.fail(f"{what} (CI=true, so this is an error: install it in .ci/run)")
    pytest.skip(what)


def require_tool(name: str) -> str:
    """The absolute path of `name`; skips (or fails in CI) when it is not installed."""
    found = shutil.which(name)
    if found is None:
        found = next((str(Path(d, name)) for d in _FALLBACK_DIRS
                      if os.access(Path(d, name), os.X_OK)), None)
    if found is None:
        missing(f"{name} is not installed")
    assert found is not None
    return found


def run_tool(*args: str | Path, cwd: Path | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool, capturing stdout and stderr as text; never raises on exit status."""
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, encoding="utf-8", errors="replace", timeout=120,
                          check=False)
