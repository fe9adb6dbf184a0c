"""The console's tests: the real daemon process, a real Chromium driven by
Playwright (Debian's browser, never a downloaded one), two people signed in."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.daemon import DaemonProcess, base_config
from tests.operations.required_tools import missing, require_tool

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORDS = {"mia": "mia-marketing-pass-1", "oscar": "oscar-ops-pass-12",
             "lena": "lena-library-pass-1", "ari": "ari-approver-pass-1"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("console")
    channels = [
        {"id": "outbox", "kind": "outbox", "path": str(tmp / "outbox.jsonl")},
        {"id": "web", "kind": "outbox", "path": str(tmp / "web.jsonl")},
        {"id": "lib", "kind": "outbox", "path": str(tmp / "lib.jsonl")},
        {"id": "ops-chat", "kind": "outbox", "audience": "internal",
         "path": str(tmp / "ops-chat.jsonl")},
    ]
    config = base_config(tmp, 0, channels=channels,
                         teams=[{"id": "comms", "channels": ["outbox", "web"]},
                                {"id": "library", "channels": ["lib"], "approval": "required"}])
    # The test client is the "proxy" here: its X-Forwarded-Proto is believed.
    proc = DaemonProcess(tmp, config=config,
                         env={"SWITCHBOARD_CONSOLE_TRUSTED_PROXIES": "127.0.0.1"})
    proc.start()
    try:
        proc.ok("POST", "/api/v1/users", {"name": "mia", "role": "viewer",
                                           "teams": {"comms": ["marketing"]},
                                           "password": PASSWORDS["mia"]})
        proc.ok("POST", "/api/v1/users", {"name": "oscar", "role": "ops",
                                           "password": PASSWORDS["oscar"]})
        for name, role in (("lena", "marketing"), ("ari", "approver")):
            proc.ok("POST", "/api/v1/users", {"name": name, "role": "viewer",
                                               "teams": {"library": [role]},
                                               "password": PASSWORDS[name]})
        PASSWORDS["admin"] = (tmp / "state" / "admin-password").read_text().strip()
        yield proc
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        found = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield found
        finally:
            found.close()


def sign_in(browser: Any, daemon: DaemonProcess, name: str, **options: Any) -> Any:
    """A browser context of its own (its own cookies) with `name` signed in."""
    context = browser.new_context(base_url=daemon.url, viewport={"width": 1280, "height": 900},
                                  **options)
    page = context.new_page()
    page.goto("/signin")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(daemon.url + "/")
    return page


def session(daemon: DaemonProcess, name: str) -> requests.Session:
    """A plain HTTP client signed in through the sign-in form."""
    client = requests.Session()
    answer = client.post(daemon.url + "/signin", data={"name": name,
                                                        "password": PASSWORDS[name]},
                         allow_redirects=False, timeout=30)
    assert answer.status_code == 303, answer.text
    return client


DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def screenshot_dir(environ: Mapping[str, str], scratch: Path) -> Path:
    """Where the screenshots go: the committed ones in docs/console/ only when
    the operator asks to refresh them, so that a plain run (CI included) leaves
    the checkout clean."""
    if environ.get("SWITCHBOARD_REFRESH_SCREENSHOTS") == "1":
        return DOCS_SHOTS
    return scratch


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(os.environ, tmp_path_factory.mktemp("screenshots"))


def screenshot(page: Any, shots: Path, name: str) -> Path:
    """Always taken, wherever it goes: a real PNG proves the page rendered."""
    shots.mkdir(parents=True, exist_ok=True)
    path = shots / name
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes().startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    return path
