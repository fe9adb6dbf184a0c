"""What the console refuses: strangers, forged forms, framing, inline script,
actions a person's roles do not allow; and what every page carries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.console.conftest import PASSWORDS, session, sign_in
from tests.daemon import DaemonProcess

pytestmark = pytest.mark.integration

PAGES = ["/", "/incidents", "/compose", "/calendar", "/calendar?view=month", "/posts",
         "/held", "/import", "/runbooks", "/runbooks?runbook=rail-disruption", "/audit",
         "/users"]
GETS = [*PAGES, "/banners", "/incidents/1", "/incidents/preview", "/posts/1/edit"]
POSTS = ["/send", "/incidents", "/incidents/preview", "/incidents/1/resolve", "/compose",
         "/compose/count", "/posts/actions", "/posts/1/edit", "/held", "/import", "/users",
         "/signout"]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def csrf_of(client: requests.Session, url: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(url, timeout=30).text)
    assert found is not None
    return found.group(1)


def test_an_unauthenticated_request_to_every_console_route_goes_to_sign_in(
        daemon: DaemonProcess) -> None:
    for method, paths in (("GET", GETS), ("POST", POSTS)):
        for path in paths:
            answer = requests.request(method, daemon.url + path, allow_redirects=False,
                                      timeout=30)
            assert answer.status_code == 303, (method, path, answer.status_code)
            assert answer.headers["Location"].startswith("/signin?next="), (method, path)
    assert requests.get(daemon.url + "/api/v1/events", timeout=30).status_code == 401


def test_a_form_post_without_the_sessions_csrf_token_is_refused_and_does_nothing(
        daemon: DaemonProcess) -> None:
    ops = session(daemon, "oscar")
    declare = {"runbook": "rail-disruption", "title": "Forged", "reason": "forged"}
    assert ops.post(daemon.url + "/incidents", data=declare, allow_redirects=False,
                    timeout=30).status_code == 403
    other = csrf_of(session(daemon, "mia"), daemon.url + "/")
    assert ops.post(daemon.url + "/incidents", data={**declare, "csrf": other},
                    allow_redirects=False, timeout=30).status_code == 403
    titles = [i["title"] for i in daemon.ok("GET", "/api/v1/incidents?all=true")]
    assert "Forged" not in titles


def test_every_page_carries_the_security_headers_and_the_cookie_is_locked_down(
        daemon: DaemonProcess) -> None:
    admin = session(daemon, "admin")
    for path in [*PAGES, "/incidents/preview?runbook=rail-disruption"]:
        answer = admin.get(daemon.url + path, timeout=30)
        assert answer.status_code == 200, (path, answer.text[:300])
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "<script>" not in answer.text, path
        assert answer.headers["X-Frame-Options"] == "DENY", path
        assert answer.headers["Cache-Control"] == "no-store", path
    signin = requests.get(daemon.url + "/signin", timeout=30)
    assert "frame-ancestors 'none'" in signin.headers["Content-Security-Policy"]
    form = {"name": "mia", "password": PASSWORDS["mia"]}
    plain = requests.post(daemon.url + "/signin", data=form, allow_redirects=False, timeout=30)
    cookie = plain.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    behind_tls = requests.post(daemon.url + "/signin", data=form, allow_redirects=False,
                               headers={"X-Forwarded-Proto": "https"}, timeout=30)
    assert "Secure" in behind_tls.headers["Set-Cookie"]


def test_a_disabled_persons_console_session_stops_at_once(daemon: DaemonProcess) -> None:
    daemon.ok("POST", "/api/v1/users", {"name": "dora", "role": "marketing",
                                         "password": "dora-marketing-pass"})
    PASSWORDS["dora"] = "dora-marketing-pass"
    dora = session(daemon, "dora")
    assert dora.get(daemon.url + "/posts", allow_redirects=False, timeout=30).status_code == 200
    daemon.ok("PATCH", "/api/v1/users/dora", {"disabled": True})
    answer = dora.get(daemon.url + "/posts", allow_redirects=False, timeout=30)
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/signin")


def test_wrong_passwords_are_refused_and_signing_out_ends_the_session(
        daemon: DaemonProcess) -> None:
    wrong = requests.post(daemon.url + "/signin", data={"name": "mia", "password": "nope"},
                          allow_redirects=False, timeout=30)
    assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
    mia = session(daemon, "mia")
    token = csrf_of(mia, daemon.url + "/")
    mia.post(daemon.url + "/signout", data={"csrf": token}, allow_redirects=False, timeout=30)
    mia.cookies.clear()
    assert mia.get(daemon.url + "/", allow_redirects=False, timeout=30).status_code == 303


def test_what_marketing_may_not_do_is_absent_and_refused_by_the_server(
        daemon: DaemonProcess) -> None:
    mia = session(daemon, "mia")
    page = mia.get(daemon.url + "/incidents", timeout=30).text
    assert 'action="/incidents"' not in page and 'href="/users"' not in page
    token = csrf_of(mia, daemon.url + "/")
    answer = mia.post(daemon.url + "/incidents", data={
        "csrf": token, "runbook": "rail-disruption", "title": "Not mine", "reason": "x"},
        allow_redirects=False, timeout=30)
    assert answer.status_code == 403 and "ops role" in answer.text
    assert mia.get(daemon.url + "/users", timeout=30).status_code == 403
    # Her team reaches outbox and web, not the internal ops chat.
    answer = mia.post(daemon.url + "/compose", data={
        "csrf": token, "channel": "ops-chat", "text": "Offer", "at": "2099-01-01T10:00",
        "action": "schedule"}, allow_redirects=False, timeout=30)
    assert answer.status_code in (403, 422), answer.status_code
    titles = [i["title"] for i in daemon.ok("GET", "/api/v1/incidents?all=true")]
    assert "Not mine" not in titles


def test_what_people_wrote_is_shown_escaped(daemon: DaemonProcess) -> None:
    daemon.ok("POST", "/api/v1/posts", {"channel": "web", "text": "<script>alert(1)</script>",
                                        "at": "+5d"}, role="marketing")
    page = session(daemon, "mia").get(daemon.url + "/posts?channel=web", timeout=30).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


def test_the_event_stream_needs_a_session_or_a_token(daemon: DaemonProcess) -> None:
    answer = requests.get(daemon.url + "/api/v1/events", stream=True, timeout=30,
                          headers={"Authorization": "Bearer viewer-token-0123456789"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    answer.close()
    assert requests.get(daemon.url + "/api/v1/events", timeout=30,
                        headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_every_page_passes_an_axe_check_with_no_serious_violations(
        daemon: DaemonProcess, browser: Any) -> None:
    # The check's own script is injected, so this context alone waives the page's CSP.
    page = sign_in(browser, daemon, "admin", bypass_csp=True)
    incident = daemon.ok("POST", "/api/v1/incidents", {
        "runbook": "rail-disruption", "title": "Axe check", "channels": ["web"],
        "reason": "accessibility check"}, role="ops")
    number = incident["id"].removeprefix("INC-")
    post = daemon.ok("POST", "/api/v1/posts", {"channel": "outbox", "text": "Axe",
                                               "at": "+6d"}, role="marketing")
    found: dict[str, list[str]] = {}
    for path in [*PAGES, f"/incidents/{number}", f"/posts/{post['id']}/edit", "/signout"]:
        if path == "/signout":
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url("**/signin")
        else:
            page.goto(path)
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [f"{v['id']} ({v['impact']}): {v['help']}" for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
        if bad:
            found[path] = bad
    daemon.ok("POST", f"/api/v1/incidents/{incident['id']}/void", {"reason": "check done"},
              role="ops")
    assert found == {}
    page.context.close()


def test_forged_ids_in_forms_and_paths_are_refused_never_a_server_error(
        daemon: DaemonProcess) -> None:
    # Superscript two and fullwidth digits are digits to Python's isdigit, not ids.
    post = daemon.ok("POST", "/api/v1/posts", {"channel": "outbox", "text": "Carols",
                                               "at": "+3d"}, role="marketing")
    mia = session(daemon, "mia")
    token = csrf_of(mia, daemon.url + "/")
    for path, action in (("/posts/actions", "cancel"), ("/held", "release")):
        answer = mia.post(daemon.url + path, data={
            "csrf": token, "action": action, "id": ["\u00b2", "\uff11", "9" * 40]},
            allow_redirects=False, timeout=30)
        assert answer.status_code in (303, 400), (path, answer.status_code, answer.text)
    for path in ("/posts/\u00b2/edit", "/posts/" + "9" * 40 + "/edit"):
        assert mia.get(daemon.url + path, timeout=30).status_code == 404, path
    assert daemon.ok("GET", f"/api/v1/posts/{post['id']}")["state"] == "scheduled"
