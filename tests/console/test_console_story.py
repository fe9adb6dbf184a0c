"""Marketing and ops in a real browser against the real daemon: schedule, edit,
import, then an incident declared from the Incidents page reaching marketing's
open Now page live, and the held posts reviewed afterwards."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.console.conftest import screenshot, session, sign_in
from tests.daemon import DaemonProcess

pytestmark = pytest.mark.integration
LONDON = ZoneInfo("Europe/London")


def local_input(delta: timedelta) -> str:
    return (datetime.now(LONDON) + delta).strftime("%Y-%m-%dT%H:%M")


def posts_of(daemon: DaemonProcess, state: str = "") -> list[dict[str, Any]]:
    query = f"?state={state}" if state else ""
    return daemon.all_pages(f"/api/v1/posts{query}")


def test_marketing_schedules_from_compose_and_a_too_long_post_is_refused_by_counter_and_server(
        daemon: DaemonProcess, browser: Any) -> None:
    page = sign_in(browser, daemon, "mia")
    page.goto("/compose")
    page.get_by_label("Channel").select_option("outbox")
    for n in (1, 2):
        page.get_by_label("Text", exact=True).fill(f"Winter timetable, part {n}")
        page.get_by_label("Send at").fill(local_input(timedelta(days=2, hours=n)))
        page.get_by_role("button", name="Schedule").click()
        page.wait_for_selector("p.ok")
        assert "scheduled on outbox" in page.locator("p.ok").inner_text()
    page.get_by_label("Channel").select_option("outbox")
    page.get_by_label("Text", exact=True).fill("x" * 290)
    counter = page.locator("#count")
    counter.filter(has_text="too long by 10").wait_for()
    assert "290 / 280" in counter.inner_text()
    assert page.locator("#compose-preview").inner_text().endswith("x" * 290)
    schedule = page.get_by_role("button", name="Schedule")
    assert schedule.is_disabled()
    # Forced past the counter, the server refuses it all the same and keeps the text.
    page.get_by_label("Send at").fill(local_input(timedelta(days=2, hours=3)))
    # Enabled and clicked in one script turn: a count re-render (the text's input, an SSE
    # change) landing between two Playwright calls would disable the button again.
    with page.expect_navigation():
        page.evaluate("() => { const b = document.querySelector("
                      "'#compose-buttons button[value=schedule]');"
                      " b.disabled = false; b.click(); }")
    refusal = page.locator("p.error[role=alert]")
    refusal.wait_for()
    assert "290 characters" in refusal.inner_text() and "280" in refusal.inner_text()
    assert page.get_by_label("Text", exact=True).input_value() == "x" * 290
    texts = [p["text"] for p in posts_of(daemon)]
    assert "Winter timetable, part 1" in texts and "Winter timetable, part 2" in texts
    assert "x" * 290 not in texts
    page.context.close()


def test_marketing_edits_a_post_from_the_calendar(daemon: DaemonProcess, browser: Any,
                                                  shots: Path) -> None:
    post = daemon.ok("POST", "/api/v1/posts", {"channel": "outbox", "text": "Carol concert",
                                               "at": "+3d"}, role="marketing")
    page = sign_in(browser, daemon, "mia")
    day = (datetime.now(LONDON) + timedelta(days=3)).date().isoformat()
    page.goto(f"/calendar?view=week&start={day}")
    page.get_by_role("link", name="Carol concert").click()
    page.get_by_label("Text", exact=True).fill("Carol concert, now with mince pies")
    page.get_by_label("Send at").fill(local_input(timedelta(days=3, hours=1)))
    page.get_by_role("button", name="Save").click()
    page.locator("p.ok").wait_for()
    stored = daemon.ok("GET", f"/api/v1/posts/{post['id']}")
    assert stored["text"] == "Carol concert, now with mince pies"
    assert stored["state"] == "scheduled"
    page.goto(f"/calendar?view=week&start={day}")
    screenshot(page, shots, "calendar.png")
    page.context.close()


def test_an_import_shows_every_bad_line_then_the_fixed_file_imports(
        daemon: DaemonProcess, browser: Any, tmp_path: Any) -> None:
    at = (datetime.now(LONDON) + timedelta(days=4)).strftime("%Y-%m-%d %H:%M")
    bad = tmp_path / "december.csv"
    bad.write_text("channel,at,text\n"
                   f"outbox,{at},Gift cards on sale\n"
                   f"nowhere,{at},Lost channel\n"
                   f"web,{at},Late opening\n"
                   f"outbox,not a time,Broken time\n")
    page = sign_in(browser, daemon, "mia")
    page.goto("/import")
    page.get_by_label("Calendar file").set_input_files(str(bad))
    page.get_by_role("button", name="Import").click()
    problems = page.locator("ul.problems li")
    problems.first.wait_for()
    lines = problems.all_inner_texts()
    assert len(lines) == 2, lines
    assert lines[0].startswith("december.csv:3:") and "nowhere" in lines[0]
    assert lines[1].startswith("december.csv:5:")
    assert not [p for p in posts_of(daemon) if p["text"] == "Gift cards on sale"]
    bad.write_text("channel,at,text\n"
                   f"outbox,{at},Gift cards on sale\n"
                   f"web,{at},Late opening\n")
    page.get_by_label("Calendar file").set_input_files(str(bad))
    page.get_by_role("button", name="Dry run").click()
    page.get_by_text("dry run: all 2 row(s)").wait_for()
    page.get_by_label("Calendar file").set_input_files(str(bad))
    page.get_by_role("button", name="Import").click()
    page.get_by_text("imported 2 post(s)").wait_for()
    texts = [p["text"] for p in posts_of(daemon)]
    assert "Gift cards on sale" in texts and "Late opening" in texts
    page.context.close()


SEEN_SCRIPT = """() => {
  window.seen = {};
  new MutationObserver(() => {
    const alerts = [...document.querySelectorAll('[role=alert]')];
    if (!window.seen.banner && alerts.some(e => e.textContent.includes('INC-1'))) {
      window.seen.banner = Date.now();
    }
    const button = document.querySelector('button[data-channel=outbox]');
    if (!window.seen.held && button && button.disabled) window.seen.held = Date.now();
  }).observe(document.body, {subtree: true, childList: true, attributes: true,
                             characterData: true});
}"""


def test_an_incident_declared_by_ops_reaches_marketings_open_page_live_and_is_handled(
        daemon: DaemonProcess, browser: Any, shots: Path) -> None:
    marketing = sign_in(browser, daemon, "mia")
    violations: list[str] = []
    marketing.on("console", lambda m: violations.append(m.text)
                 if "Content Security Policy" in m.text else None)
    assert marketing.locator("button[data-channel=outbox]").is_enabled()
    marketing.evaluate("window.notReloaded = true")
    composing = marketing.context.new_page()
    composing.goto("/compose?channel=outbox")
    composing.get_by_label("Text", exact=True).fill("Half-price tickets")
    assert composing.get_by_role("button", name="Send now").is_enabled()
    ops = sign_in(browser, daemon, "oscar")
    ops.goto("/incidents")
    ops.get_by_label("Runbook", exact=True).select_option("rail-disruption")
    ops.get_by_label("Title", exact=True).fill("Signal failure at Clapham")
    ops.get_by_label("outbox", exact=True).check()
    ops.get_by_label("Reason (required)").fill("trains stopped on all lines")
    ops.get_by_role("button", name="Preview holding statement").click()
    assert "Signal failure at Clapham" in ops.locator("#preview").inner_text()
    assert ops.get_by_label("Reason (required)").input_value() == "trains stopped on all lines"
    assert ops.get_by_label("outbox", exact=True).is_checked()
    # The page notes, by its own clock (the daemon's host's), when the banner and the
    # held button appear: the latency is the page's, not this test's polling.
    marketing.evaluate(SEEN_SCRIPT)
    ops.get_by_role("button", name="Declare").click()
    ops.wait_for_url("**/incidents/1?*")

    banner = marketing.locator("[role=alert]", has_text="INC-1")
    banner.wait_for()
    held = marketing.locator("button[data-channel=outbox]")
    held.and_(marketing.locator("[disabled]")).wait_for()
    declared_ms = datetime.fromisoformat(
        daemon.ok("GET", "/api/v1/incidents/1")["declared_at"]).timestamp() * 1000
    seen = marketing.evaluate("window.seen")
    assert seen["banner"] - declared_ms < 2000 and seen["held"] - declared_ms < 2000, seen
    assert "INC-1" in held.inner_text() and "Signal failure at Clapham" in held.inner_text()
    assert marketing.locator("button[data-channel=web]").is_enabled()
    assert marketing.evaluate("window.notReloaded") is True
    compose_send = composing.locator("button[data-send=outbox][disabled]")
    compose_send.wait_for()
    assert "INC-1" in compose_send.inner_text()
    assert composing.get_by_label("Text", exact=True).input_value() == "Half-price tickets"
    composing.close()
    screenshot(marketing, shots, "now-incident.png")
    forced = daemon.api("POST", "/api/v1/send", {"channel": "outbox", "text": "Flash sale!"},
                        role="marketing")
    assert forced.status_code == 409, forced.text
    client = session(daemon, "mia")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get(daemon.url + "/").text)
    assert token is not None
    through_console = client.post(daemon.url + "/send", data={
        "csrf": token.group(1), "channel": "outbox", "text": "Flash sale!"}, timeout=30)
    assert through_console.status_code == 409 and "INC-1" in through_console.text
    assert not [line for line in daemon.outbox() if line["text"] == "Flash sale!"]

    # Two marketing posts come due during the incident: both held.
    for text in ("Boxing day offer", "New year offer"):
        daemon.ok("POST", "/api/v1/posts", {"channel": "outbox", "text": text, "at": "+1s"},
                  role="marketing")
    daemon.wait_for(lambda: len(posts_of(daemon, "suppressed")) == 2)

    ops.get_by_label("Update text").fill("Trains are running again from 14:00.")
    ops.get_by_role("button", name="Post update").click()
    ops.get_by_text("update posted to 1 channel(s)").wait_for()
    ops.locator("#timeline", has_text="update_posted").wait_for()
    screenshot(ops, shots, "incident.png")
    ops.get_by_role("button", name="Resolve").click()
    ops.get_by_text("INC-1 resolved").wait_for()
    marketing.locator("[role=alert]", has_text="Cooldown after").wait_for()
    ops.get_by_label("Why the cooldown ends early").fill("all lines checked")
    ops.get_by_role("button", name="End cooldown").click()
    ops.get_by_text("the cooldown of INC-1 ended").wait_for()
    assert "cooldown_ended" in ops.locator("#timeline").inner_text()
    marketing.locator("button[data-channel=outbox]:not([disabled])").wait_for()

    marketing.goto("/held")
    held_posts = posts_of(daemon, "held")
    assert len(held_posts) == 2
    first, second = sorted(held_posts, key=lambda p: p["id"])
    marketing.get_by_label(f"Pick held post {first['id']}").check()
    marketing.get_by_role("button", name="Release picked, spaced").click()
    marketing.get_by_text("released spaced: 1 post(s)").wait_for()
    marketing.get_by_label(f"Pick held post {second['id']}").check()
    marketing.get_by_role("button", name="Drop picked").click()
    marketing.get_by_text("dropped: 1 post(s)").wait_for()
    assert daemon.ok("GET", f"/api/v1/posts/{second['id']}")["state"] == "dropped"
    assert daemon.ok("GET", f"/api/v1/posts/{first['id']}")["state"] in (
        "scheduled", "queued", "sending", "published")
    assert violations == []
    audit = daemon.ok("GET", "/api/v1/audit")
    assert {(e["person"], e["action"], e["target"]) for e in audit} >= {
        ("oscar", "POST console /incidents", None),
        ("oscar", "POST console /incidents/{id}/{action}", "1"),
        ("mia", "POST console /held", None)}
    ops.context.close()
    marketing.context.close()
