"""The other pages in a real browser: keyboard alone, paging and bulk actions on
Posts, approvals, Runbooks' simulation, and Users for admins."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.conftest import PASSWORDS, sign_in
from tests.daemon import DaemonProcess

pytestmark = pytest.mark.integration


def test_a_person_signs_in_and_acts_with_the_keyboard_alone_and_sees_where_focus_is(
        daemon: DaemonProcess, browser: Any) -> None:
    context = browser.new_context(base_url=daemon.url)
    page = context.new_page()
    page.goto("/signin")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "name"
    page.keyboard.type("mia")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORDS["mia"])
    page.keyboard.press("Enter")
    page.wait_for_url(daemon.url + "/")
    # Through the navigation to Compose, by Tab and Enter only.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Compose":
            break
    page.keyboard.press("Enter")
    page.wait_for_url("**/compose")
    context.close()


def test_posts_pages_through_every_post_and_cancels_the_picked_ones(
        daemon: DaemonProcess, browser: Any) -> None:
    made = daemon.ok("POST", "/api/v1/posts", [
        {"channel": "web", "text": f"Paged post {i:02d}", "at": f"+{2 + i}h"}
        for i in range(60)], role="marketing")
    page = sign_in(browser, daemon, "mia")
    page.goto("/posts?state=scheduled&channel=web")
    assert "60 post(s)" in page.locator("main").inner_text()
    seen: list[str] = []
    while True:
        seen += [t for t in page.locator("tbody td:last-child").all_inner_texts()
                 if t.startswith("Paged post")]
        following = page.get_by_role("link", name="Next page")
        if following.count() == 0:
            break
        following.click()
    assert sorted(seen) == [f"Paged post {i:02d}" for i in range(60)]
    page.goto("/posts?state=scheduled&channel=web")
    for post in made[:2]:
        page.get_by_label(f"Pick post {post['id']}", exact=True).check()
    page.get_by_role("button", name="Cancel picked").click()
    page.get_by_text("cancel: 2 post(s)").wait_for()
    states = {p["id"]: daemon.ok("GET", f"/api/v1/posts/{p['id']}")["state"] for p in made[:3]}
    assert states == {made[0]["id"]: "cancelled", made[1]["id"]: "cancelled",
                      made[2]["id"]: "scheduled"}
    page.context.close()


def test_runbooks_simulates_a_runbook_for_everyone(daemon: DaemonProcess,
                                                  browser: Any) -> None:
    page = sign_in(browser, daemon, "mia")
    page.goto("/runbooks")
    page.get_by_label("Runbook", exact=True).select_option("rail-disruption")
    page.get_by_label("Resolved after (hours)").fill("2")
    page.get_by_role("button", name="Simulate").click()
    simulation = page.locator("pre").inner_text()
    assert "INC-SIM declared" in simulation and "holding-statement" in simulation
    page.context.close()


def test_an_admin_adds_and_disables_people_and_nobody_else_sees_users(
        daemon: DaemonProcess, browser: Any) -> None:
    page = sign_in(browser, daemon, "admin")
    page.goto("/users")
    page.get_by_label("Name", exact=True).fill("nina")
    page.get_by_label("Role", exact=True).select_option("marketing")
    page.get_by_label("comms approver").check()
    page.get_by_label("Password (12 characters or more)").fill("nina-approver-pass")
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_text("nina added").wait_for()
    person = next(p for p in daemon.ok("GET", "/api/v1/users") if p["name"] == "nina")
    assert person["role"] == "marketing" and person["teams"] == {"comms": ["approver"]}
    page.get_by_role("button", name="Disable nina").click()
    page.get_by_text("nina disabled").wait_for()
    assert next(p for p in daemon.ok("GET", "/api/v1/users")
                if p["name"] == "nina")["disabled"] is True
    mia = sign_in(browser, daemon, "mia")
    assert mia.get_by_role("link", name="Users").count() == 0
    assert mia.goto("/users").status == 403
    mia.context.close()
    page.context.close()


def test_a_post_on_a_channel_needing_approval_waits_until_another_approver_approves_it(
        daemon: DaemonProcess, browser: Any) -> None:
    author = sign_in(browser, daemon, "lena")
    author.goto("/compose")
    author.get_by_label("Channel").select_option("lib")
    assert "needs approval" in author.get_by_label("Channel").inner_text()
    author.get_by_label("Text", exact=True).fill("Story time on Saturday")
    author.get_by_label("Send at").fill("2099-06-01T10:00")
    author.get_by_role("button", name="Schedule").click()
    author.get_by_text("waiting for approval").wait_for()
    post = next(p for p in daemon.all_pages("/api/v1/posts?state=pending_approval")
                if p["text"] == "Story time on Saturday")
    approver = sign_in(browser, daemon, "ari")
    approver.goto("/posts?state=pending_approval&channel=lib")
    approver.get_by_label(f"Pick post {post['id']}", exact=True).check()
    approver.get_by_role("button", name="Approve picked").click()
    approver.get_by_text("approve: 1 post(s)").wait_for()
    assert daemon.ok("GET", f"/api/v1/posts/{post['id']}")["state"] == "scheduled"
    author.context.close()
    approver.context.close()


def test_neither_the_author_nor_someone_outside_the_team_can_approve(
        daemon: DaemonProcess, browser: Any) -> None:
    approver = sign_in(browser, daemon, "ari")
    approver.goto("/compose")
    approver.get_by_label("Channel").select_option("lib")
    approver.get_by_label("Text", exact=True).fill("My own post")
    approver.get_by_label("Send at").fill("2099-06-02T10:00")
    approver.get_by_role("button", name="Schedule").click()
    approver.get_by_text("waiting for approval").wait_for()
    post = next(p for p in daemon.all_pages("/api/v1/posts?state=pending_approval")
                if p["text"] == "My own post")
    outsider = sign_in(browser, daemon, "mia")  # comms only
    for page in (approver, outsider):
        page.goto("/posts?state=pending_approval&channel=lib")
        page.get_by_label(f"Pick post {post['id']}", exact=True).check()
        page.get_by_role("button", name="Approve picked").click()
        page.get_by_text("approve: 0 post(s)").wait_for()
    assert "another approver must approve it" in approver.locator("p.error").inner_text()
    assert "approver role of team library" in outsider.locator("p.error").inner_text()
    assert daemon.ok("GET", f"/api/v1/posts/{post['id']}")["state"] == "pending_approval"
    approver.context.close()
    outsider.context.close()


def test_send_now_from_the_now_page_publishes_on_a_free_channel(
        daemon: DaemonProcess, browser: Any) -> None:
    page = sign_in(browser, daemon, "mia")
    page.get_by_label("Text to send now on web").fill("Doors open early today")
    page.get_by_role("button", name="Send now on web").click()
    page.get_by_text("on web: published").wait_for()
    assert [line["text"] for line in daemon.outbox("web.jsonl")] == ["Doors open early today"]
    page.context.close()


def test_ops_voids_a_false_alarm_from_its_page_with_a_reason(daemon: DaemonProcess,
                                                            browser: Any) -> None:
    incident = daemon.ok("POST", "/api/v1/incidents", {
        "runbook": "rail-disruption", "title": "False alarm", "channels": ["outbox"],
        "reason": "sensor"}, role="ops")
    number = incident["id"].removeprefix("INC-")
    page = sign_in(browser, daemon, "oscar")
    page.goto(f"/incidents/{number}")
    page.get_by_role("button", name="Void").click()  # the reason is required first
    assert daemon.ok("GET", f"/api/v1/incidents/{number}")["state"] == "active"
    page.get_by_label("Why it was a false alarm").fill("the sensor was faulty")
    page.get_by_role("button", name="Void").click()
    page.get_by_text(f"INC-{number} voided").wait_for()
    assert daemon.ok("GET", f"/api/v1/incidents/{number}")["state"] == "voided"
    page.context.close()


def test_the_calendar_shows_one_teams_channels_with_times_in_the_configured_zone(
        daemon: DaemonProcess, browser: Any) -> None:
    for channel, text in (("lib", "Library quiz night"), ("web", "Website sale")):
        daemon.ok("POST", "/api/v1/posts", {"channel": channel, "text": text,
                                            "at": "2099-07-01T18:30:00+00:00"}, role="admin")
    page = sign_in(browser, daemon, "admin")
    page.goto("/calendar?view=month&start=2099-07-01&team=library")
    month = page.locator("main").inner_text()
    assert "Library quiz night" in month and "Website sale" not in month
    page.get_by_role("link", name="Library quiz night").click()
    # 18:30 UTC is 19:30 in London's summer time, and says so.
    assert "Wed 01 Jul 2099 19:30 BST" in page.locator("main").inner_text()
    assert page.get_by_label("Send at").input_value() == "2099-07-01T19:30"
    page.context.close()


def test_an_open_incident_page_shows_new_timeline_entries_without_a_reload(
        daemon: DaemonProcess, browser: Any) -> None:
    incident = daemon.ok("POST", "/api/v1/incidents", {
        "runbook": "rail-disruption", "title": "Live timeline", "channels": ["outbox"],
        "reason": "drill"}, role="ops")
    number = incident["id"].removeprefix("INC-")
    page = sign_in(browser, daemon, "mia")
    page.goto(f"/incidents/{number}")
    page.evaluate("window.notReloaded = true")
    assert "update_posted" not in page.locator("#timeline").inner_text()
    daemon.ok("POST", f"/api/v1/incidents/{incident['id']}/update",
              {"text": "Buses replace trains"}, role="ops")
    page.locator("#timeline", has_text="Buses replace trains").wait_for()
    assert page.evaluate("window.notReloaded") is True
    daemon.ok("POST", f"/api/v1/incidents/{incident['id']}/void", {"reason": "drill over"},
              role="ops")
    page.context.close()
