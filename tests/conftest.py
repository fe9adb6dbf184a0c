from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonProcess, running

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """The tool's path; skipped on a laptop without it, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(f"{message} (CI must install it: see .ci/run)")
        pytest.skip(message)
    return path


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """The real daemon on the default test config (two outbox channels, shipped runbooks)."""
    yield from running(tmp_path)
