"""People on the real daemon: the first admin, personal tokens that stop at once,
passwords checked with argon2 and throttled, and never a secret in the log."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.daemon import TOKENS, DaemonProcess, base_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("people")
    config = base_config(tmp, 0, teams=[{"id": "comms", "channels": ["outbox"]}])
    proc = DaemonProcess(tmp, config=config)
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


def cli(daemon: DaemonProcess, *args: str, stdin: str | None = None,
        token: str = TOKENS["admin"]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=daemon.url, SWITCHBOARD_TOKEN=token)
    return subprocess.run([sys.executable, "-m", "switchboard", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


def sign_in(daemon: DaemonProcess, name: str, password: str) -> requests.Response:
    return requests.post(daemon.url + "/api/v1/session",
                         json={"name": name, "password": password}, timeout=30)


def test_the_first_start_creates_an_admin_whose_password_is_only_in_a_private_file(
        daemon: DaemonProcess) -> None:
    path = Path(daemon.config["state_dir"]) / "admin-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 16
    assert str(path) in daemon.log() and password not in daemon.log()
    answer = sign_in(daemon, "admin", password)
    assert answer.status_code == 200, answer.text
    assert answer.json()["role"] == "admin"
    # A restart finds people and creates nobody, whatever the file holds.
    path.write_text("not-the-password-any-more\n")
    daemon.stop()
    daemon.start()
    assert sign_in(daemon, "admin", password).status_code == 200
    assert [u["name"] for u in daemon.ok("GET", "/api/v1/users")].count("admin") == 1


def test_the_first_password_can_come_from_a_configured_file(tmp_path: Path) -> None:
    secret = tmp_path / "first-admin"
    secret.write_text("correct horse battery staple\n")
    proc = DaemonProcess(tmp_path, config=base_config(
        tmp_path, 0, people={"admin_password_file": str(secret)}))
    proc.start()
    try:
        assert sign_in(proc, "admin", "correct horse battery staple").status_code == 200
        assert not (tmp_path / "state" / "admin-password").exists()
    finally:
        proc.kill()


def test_a_disabled_person_or_a_revoked_token_stops_at_once(daemon: DaemonProcess) -> None:
    assert cli(daemon, "user", "add", "dana", "--role", "viewer", "--team",
               "comms:marketing").returncode == 0
    token = cli(daemon, "user", "token", "dana").stdout.splitlines()[0]
    status = daemon.api("GET", "/api/v1/status", token=token)
    assert status.status_code == 200
    assert cli(daemon, "user", "disable", "dana").returncode == 0
    assert daemon.api("GET", "/api/v1/status", token=token).status_code == 401
    assert cli(daemon, "user", "enable", "dana").returncode == 0
    assert daemon.api("GET", "/api/v1/status", token=token).status_code == 200
    assert cli(daemon, "user", "token", "dana", "--revoke").returncode == 0
    assert daemon.api("GET", "/api/v1/status", token=token).status_code == 401
    listed = cli(daemon, "user", "list")
    assert "dana" in listed.stdout and "comms:marketing" in listed.stdout
    assert token not in daemon.log()


def test_people_are_managed_by_admins_only_with_clear_refusals(daemon: DaemonProcess) -> None:
    for role in ("viewer", "marketing", "ops"):
        assert daemon.api("GET", "/api/v1/users", role=role).status_code == 403
    unknown_team = cli(daemon, "user", "add", "erin", "--role", "viewer", "--team",
                       "nowhere:marketing")
    assert unknown_team.returncode == 1 and "no team named 'nowhere'" in unknown_team.stderr
    bad_role = cli(daemon, "user", "add", "erin", "--role", "viewer", "--team", "comms:boss")
    assert bad_role.returncode == 1 and "marketing, approver, viewer" in bad_role.stderr
    assert cli(daemon, "user", "add", "erin", "--role", "viewer").returncode == 0
    again = cli(daemon, "user", "add", "erin", "--role", "ops")
    assert again.returncode == 1 and "exists already" in again.stderr
    assert daemon.api("PATCH", "/api/v1/users/nobody", {}).status_code == 404


def test_repeated_wrong_passwords_slow_down_and_are_counted(daemon: DaemonProcess) -> None:
    assert cli(daemon, "user", "add", "fran", "--role", "viewer").returncode == 0
    set_pw = cli(daemon, "user", "password", "fran", stdin="a long enough secret\n")
    assert set_pw.returncode == 0, set_pw.stderr
    short = cli(daemon, "user", "password", "fran", stdin="short\n")
    assert short.returncode == 1 and "at least 12" in short.stderr
    assert sign_in(daemon, "fran", "a long enough secret").status_code == 200
    before = daemon.metric("switchboard_login_failures_total",
                           {"reason": "bad_credentials"}) or 0
    # Guesses sent in parallel get no more tries than guesses in a row.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: sign_in(daemon, "fran", "guess-guess-guess"),
                                range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [401] * 3 + [429] * 5, codes
    throttled = sign_in(daemon, "fran", "a long enough secret")
    assert throttled.status_code == 429  # even the right password waits its turn
    assert int(throttled.headers["Retry-After"]) >= 1
    assert daemon.metric("switchboard_login_failures_total",
                         {"reason": "bad_credentials"}) == before + 3
    assert (daemon.metric("switchboard_login_failures_total", {"reason": "throttled"}) or 0) >= 1
    # Unknown names fail the same way; nothing secret reaches the log.
    assert sign_in(daemon, "nobody-here", "whatever-whatever").status_code in (401, 429)
    assert "guess-guess-guess" not in daemon.log()
    assert "a long enough secret" not in daemon.log()
