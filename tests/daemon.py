"""The real daemon as a process on a free loopback port, for integration tests.

`DaemonProcess` writes a config into a temporary directory, starts
`python -m switchboard run`, waits for `/readyz`, and gives the test a small
API client, the outbox lines and the captured log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
TOKENS = {
    "admin": "admin-token-0123456789",
    "ops": "ops-token-0123456789",
    "marketing": "marketing-token-0123456789",
    "viewer": "viewer-token-0123456789",
    "feed": "feed-token-0123456789",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM a helper process (Prometheus, Alertmanager), SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def base_config(tmp: Path, port: int, channels: list[dict[str, Any]] | None = None,
                feeds: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "listen": f"127.0.0.1:{port}",
        "state_dir": str(tmp / "state"),
        "timezone": "Europe/London",
        "runbooks_dir": str(tmp / "runbooks"),
        "max_lateness": "10m",
        "access": [
            {"name": "admin", "role": "admin", "token_env": "SB_TEST_ADMIN"},
            {"name": "ops-desk", "role": "ops", "token_env": "SB_TEST_OPS"},
            {"name": "marketing", "role": "marketing", "token_env": "SB_TEST_MARKETING"},
            {"name": "viewer", "role": "viewer", "token_env": "SB_TEST_VIEWER"},
        ],
        "channels": channels if channels is not None else [
            {"id": "outbox", "kind": "outbox", "path": str(tmp / "outbox.jsonl")},
            {"id": "ops-chat", "kind": "outbox", "audience": "internal",
             "path": str(tmp / "ops-chat.jsonl")},
        ],
        "feeds": feeds if feeds is not None else [],
        **extra,
    }


class DaemonProcess:
    def __init__(self, tmp: Path, config: dict[str, Any] | None = None,
                 runbooks: dict[str, str] | None = None, env: dict[str, str] | None = None):
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config if config is not None else base_config(tmp, self.port)
        self.config["listen"] = f"127.0.0.1:{self.port}"
        self.config_path = tmp / "switchboard.yaml"
        self.log_path = tmp / "daemon.log"
        self.env = {**os.environ, "SB_TEST_ADMIN": TOKENS["admin"], "SB_TEST_OPS": TOKENS["ops"],
                    "SB_TEST_MARKETING": TOKENS["marketing"], "SB_TEST_VIEWER": TOKENS["viewer"],
                    "SB_TEST_FEED": TOKENS["feed"], **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        runbook_dir = tmp / "runbooks"
        if runbooks is None:
            shutil.copytree(ROOT / "runbooks", runbook_dir, dirs_exist_ok=True)
        else:
            runbook_dir.mkdir(exist_ok=True)
            for name, text in runbooks.items():
                (runbook_dir / f"{name}.yaml").write_text(text)
        self.write_config()

    def write_config(self, config: dict[str, Any] | None = None) -> None:
        if config is not None:
            self.config = config
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    # -- process -------------------------------------------------------------

    def start(self, wait: bool = True, timeout: float = 20.0) -> DaemonProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "run", "-c", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.tmp)
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def logged(self, event: str) -> list[dict[str, Any]]:
        """The daemon's log entries of one event, in order (its own timestamps)."""
        entries = [json.loads(line) for line in self.log().splitlines()
                   if line.startswith("{") and f'"{event}"' in line]
        return [e for e in entries if e.get("event") == event]

    def logged_at(self, event: str) -> list[datetime]:
        return [datetime.fromisoformat(e["timestamp"]) for e in self.logged(event)]

    # -- API -----------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, role: str | None = "admin",
            token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is None and role is not None:
            token = TOKENS[role]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url + path, json=body, headers=headers,
                                timeout=30, **kwargs)

    def ok(self, method: str, path: str, body: Any = None, role: str = "admin") -> Any:
        response = self.api(method, path, body, role=role)
        assert response.status_code < 300, (response.status_code, response.text)
        return response.json()

    def all_pages(self, path: str, role: str = "admin") -> list[Any]:
        """Every item of a paged list endpoint, following its `Link: rel="next"`."""
        items: list[Any] = []
        url: str | None = self.url + path
        while url is not None:
            response = requests.get(url, headers={"Authorization": f"Bearer {TOKENS[role]}"},
                                    timeout=30)
            assert response.status_code == 200, (response.status_code, response.text)
            items += response.json()
            following = response.links.get("next", {}).get("url")
            url = None if following is None else requests.compat.urljoin(self.url, following)
        return items

    def cli(self, *args: str, role: str = "admin") -> subprocess.CompletedProcess[str]:
        env = {**self.env, "SWITCHBOARD_URL": self.url, "SWITCHBOARD_TOKEN": TOKENS[role]}
        env.pop("SWITCHBOARD_TOKEN_FILE", None)
        return subprocess.run([sys.executable, "-m", "switchboard", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        text = requests.get(self.url + "/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric_name, _, label_text = sample.partition("{")
            if metric_name != name:
                continue
            if labels and not all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                continue
            return float(value)
        return None

    def outbox(self, name: str = "outbox.jsonl") -> list[dict[str, Any]]:
        path = self.tmp / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_for(self, predicate: Any, timeout: float = 10.0, every: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met in {timeout}s\n{self.log()[-3000:]}")
            time.sleep(every)


def running(tmp: Path, **kwargs: Any) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(tmp, **kwargs).start()
    try:
        yield daemon
    finally:
        daemon.kill()
