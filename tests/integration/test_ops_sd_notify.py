"""sd_notify as systemd sees it: the real daemon, and a datagram socket of our own
in NOTIFY_SOCKET standing in for systemd's.

`Type=notify` trusts READY=1 to mean "serving"; `WatchdogSec=` kills the service
when WATCHDOG=1 stops coming; `systemctl stop` expects STOPPING=1 and exit 0.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest
import requests

from tests.daemon import DaemonProcess

WATCHDOG_USEC = 1_000_000  # so WATCHDOG=1 every 0.5 s
MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux, 104 on the BSDs


@dataclass
class Message:
    at: float
    fields: dict[str, str]
    ready_status: int | None = None  # GET /readyz, asked the moment READY=1 arrived


@dataclass
class FakeSystemd:
    """Receives notifications in a thread, stamping each with its arrival time.

    On READY=1 it asks `/readyz` before doing anything else, so the answer shows
    what a client would see the instant systemd reports the unit started.
    """

    sock: socket.socket
    readyz_url: str = ""
    messages: list[Message] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            message = Message(time.monotonic(), parse(data))
            if message.fields.get("READY") == "1":
                message.ready_status = readyz(self.readyz_url)
            self.messages.append(message)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def with_key(self, key: str) -> list[Message]:
        return [m for m in list(self.messages) if key in m.fields]

    def wait_for(self, key: str, timeout: float = 20.0) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.with_key(key)
            if found:
                return found[0]
            time.sleep(0.02)
        raise TimeoutError(f"no {key} notification in {timeout}s; got {self.messages}")


def parse(data: bytes) -> dict[str, str]:
    """One datagram: newline-separated VAR=value assignments."""
    fields = {}
    for line in data.decode().splitlines():
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line!r} in {data!r}"
        fields[key] = value
    return fields


def readyz(url: str) -> int:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return 0  # nothing listening


def socket_path(tmp_path: Path) -> Path:
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) <= MAX_UNIX_PATH:
        return path
    # a deep pytest basetemp can outgrow sun_path: fall back to a short directory
    return Path(tempfile.mkdtemp(prefix="sb-notify-")) / "notify.sock"


def bound_socket(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    return sock


def notified_daemon(tmp_path: Path, sock: socket.socket, notify_socket: str,
                    **env: str) -> Iterator[tuple[DaemonProcess, FakeSystemd]]:
    """The daemon started with NOTIFY_SOCKET, and what it sent there."""
    # WATCHDOG_PID empty: a pytest that itself runs under a watched unit must not
    # hand its own pid down and switch the daemon's watchdog off.
    daemon = DaemonProcess(tmp_path, env={"NOTIFY_SOCKET": notify_socket,
                                          "WATCHDOG_PID": "", **env})
    systemd = FakeSystemd(sock, readyz_url=daemon.url + "/readyz")
    systemd.start()
    try:
        daemon.start(wait=False)
        yield daemon, systemd
    finally:
        daemon.kill()
        systemd.stop()
        sock.close()


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[DaemonProcess, FakeSystemd]]:
    path = socket_path(tmp_path)
    yield from notified_daemon(tmp_path, bound_socket(str(path)), str(path),
                               WATCHDOG_USEC=str(WATCHDOG_USEC))


def test_ready_is_sent_once_and_only_when_readyz_answers(
        watched: tuple[DaemonProcess, FakeSystemd]) -> None:
    daemon, systemd = watched

    ready = systemd.wait_for("READY")

    assert ready.ready_status == 200, "READY=1 came before /readyz said ready"
    assert ready.fields["STATUS"] == f"serving on 127.0.0.1:{daemon.port}"
    assert daemon.api("GET", "/api/v1/status").json()["ready"] is True
    time.sleep(1.0)
    assert len(systemd.with_key("READY")) == 1


def test_watchdog_is_petted_every_half_watchdog_usec(
        watched: tuple[DaemonProcess, FakeSystemd]) -> None:
    _, systemd = watched
    ready = systemd.wait_for("READY")

    time.sleep(2.5)
    window = [m for m in systemd.with_key("WATCHDOG") if ready.at <= m.at <= ready.at + 2.5]

    assert all(m.fields["WATCHDOG"] == "1" for m in window)
    assert 3 <= len(window) <= 8, f"{len(window)} WATCHDOG=1 in 2.5 s, expected ~5"
    gaps = [b.at - a.at for a, b in pairwise(window)]
    assert max(gaps) < 0.9, f"gaps between WATCHDOG=1: {gaps}"


def test_sigterm_says_stopping_stops_the_watchdog_and_exits_zero(
        watched: tuple[DaemonProcess, FakeSystemd]) -> None:
    daemon, systemd = watched
    systemd.wait_for("READY")
    systemd.wait_for("WATCHDOG")

    daemon.signal(signal.SIGTERM)
    assert daemon.proc is not None
    assert daemon.proc.wait(20) == 0, daemon.log()
    stopping = systemd.wait_for("STOPPING", timeout=5)
    time.sleep(0.7)  # longer than a watchdog interval: one more would have arrived

    assert stopping.fields["STOPPING"] == "1"
    assert not [m for m in systemd.with_key("WATCHDOG") if m.at > stopping.at], \
        "WATCHDOG=1 after STOPPING=1"
    assert len(systemd.with_key("STOPPING")) == 1


def test_no_watchdog_without_watchdog_usec_or_for_another_pid(tmp_path: Path) -> None:
    # WATCHDOG_PID names the process systemd watches; a child that inherits the
    # variables (here: a pid that is not the daemon's) must not pet the watchdog.
    path = socket_path(tmp_path)
    for daemon, systemd in notified_daemon(tmp_path, bound_socket(str(path)), str(path),
                                           WATCHDOG_USEC=str(WATCHDOG_USEC),
                                           WATCHDOG_PID=str(os.getpid())):
        systemd.wait_for("READY")
        time.sleep(1.5)
        assert systemd.with_key("WATCHDOG") == []
        daemon.signal(signal.SIGTERM)
        systemd.wait_for("STOPPING")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux's")
def test_an_abstract_notify_socket_is_written_with_a_leading_at(tmp_path: Path) -> None:
    name = f"switchboard-test-{os.getpid()}-{time.monotonic_ns()}"
    for daemon, systemd in notified_daemon(tmp_path, bound_socket(b"\0" + name.encode()),
                                           "@" + name, WATCHDOG_USEC=str(WATCHDOG_USEC)):
        ready = systemd.wait_for("READY")
        assert ready.ready_status == 200
        systemd.wait_for("WATCHDOG")
        daemon.signal(signal.SIGTERM)
        assert daemon.proc is not None and daemon.proc.wait(20) == 0
        systemd.wait_for("STOPPING", timeout=5)
