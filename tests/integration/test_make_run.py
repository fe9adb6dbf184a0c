"""`make run` on a fresh tree serves /readyz on the embedded default config."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_URL = "http://127.0.0.1:8650"


def test_make_run_serves_ready_on_the_embedded_default(tmp_path: Path) -> None:
    require_tool("make")
    try:
        requests.get(DEFAULT_URL + "/readyz", timeout=0.5)
        pytest.fail("something already listens on 127.0.0.1:8650; stop it to run this test")
    except requests.ConnectionError:
        pass
    tree = tmp_path / "switchboard"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    venv = Path(sys.prefix)
    # The suite's own virtualenv is already installed: `-o` keeps make from reinstalling it.
    proc = subprocess.Popen(["make", "run", f"VENV={venv}", "-o", f"{venv}/.installed"],
                            cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "MAKEFLAGS": ""})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(DEFAULT_URL + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("make run did not serve /readyz within 30 s")
        token = (tree / "var" / "tokens" / "admin.token").read_text().strip()
        assert oct((tree / "var" / "tokens" / "admin.token").stat().st_mode & 0o777) == "0o600"
        status = requests.get(DEFAULT_URL + "/api/v1/status", timeout=5,
                              headers={"Authorization": f"Bearer {token}"})
        assert status.json()["ready"] is True
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        out = proc.communicate(timeout=30)[0].decode()
    assert "SWITCHBOARD_TOKEN_FILE" in out, out
    assert '"event": "stopped"' in out, "the daemon drained and stopped cleanly"
