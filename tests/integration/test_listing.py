"""List endpoints page (design §7.8): `limit` <= 1000, an opaque cursor in
`Link: <...>; rel="next"`, the total in `X-Total-Count`, the body a JSON array."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from switchboard.model import NewPost
from switchboard.store import SqliteStore
from tests.daemon import TOKENS, DaemonProcess


def _get(daemon: DaemonProcess, path: str) -> requests.Response:
    return requests.get(daemon.url + path, timeout=30,
                        headers={"Authorization": f"Bearer {TOKENS['viewer']}"})


def _schedule(daemon: DaemonProcess, count: int, channel: str = "outbox") -> list[int]:
    start = time.time() + 3600
    body = [{"channel": channel, "text": f"offer {i}", "at": _rfc3339(start + (i % 7) * 60)}
            for i in range(count)]
    return [p["id"] for p in daemon.ok("POST", "/api/v1/posts", body, role="marketing")]


def _rfc3339(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def test_a_post_listing_pages_through_every_post_once_in_due_order(
        daemon: DaemonProcess) -> None:
    ids = _schedule(daemon, 250)
    first = _get(daemon, "/api/v1/posts?state=scheduled&limit=100")
    assert first.status_code == 200 and len(first.json()) == 100
    assert first.headers["X-Total-Count"] == "250"
    assert "state=scheduled" in first.links["next"]["url"]
    seen, url = list(first.json()), first.links["next"]["url"]
    pages = 1
    while url:
        page = _get(daemon, url)
        assert page.status_code == 200 and page.headers["X-Total-Count"] == "250"
        seen += page.json()
        url = page.links.get("next", {}).get("url")
        pages += 1
    assert pages == 3
    assert sorted(p["id"] for p in seen) == sorted(ids)  # each post once
    keys = [(p["due_at"], p["id"]) for p in seen]
    assert keys == sorted(keys)


def test_the_last_page_has_no_next_link(daemon: DaemonProcess) -> None:
    _schedule(daemon, 3)
    response = _get(daemon, "/api/v1/posts")
    assert len(response.json()) == 3 and "next" not in response.links
    assert response.headers["X-Total-Count"] == "3"


def test_a_limit_over_1000_or_a_forged_cursor_is_refused(daemon: DaemonProcess) -> None:
    for query in ("limit=999999999999", "limit=1001", "limit=0", "cursor=bm90LWEta2V5",
                  "cursor=%%%"):
        response = _get(daemon, f"/api/v1/posts?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"]["code"] == "bad_request"
    assert _get(daemon, "/api/v1/incidents?limit=5000").status_code == 400


def test_incidents_page_newest_first(daemon: DaemonProcess) -> None:
    for i in range(5):
        daemon.ok("POST", "/api/v1/incidents", {"runbook": "service-outage",
                                                "title": f"outage {i}"}, role="ops")
    first = _get(daemon, "/api/v1/incidents?limit=2")
    assert [i["title"] for i in first.json()] == ["outage 4", "outage 3"]
    assert first.headers["X-Total-Count"] == "5"
    rest = daemon.all_pages(first.links["next"]["url"], role="viewer")
    assert [i["title"] for i in rest] == ["outage 2", "outage 1", "outage 0"]


def test_the_cli_lists_one_page_and_says_how_to_get_the_next(daemon: DaemonProcess) -> None:
    _schedule(daemon, 120)
    one = daemon.cli("post", "list", "--json", role="viewer")
    assert one.returncode == 0 and len(json.loads(one.stdout)) == 100
    assert "100 of 120 posts shown" in one.stderr and "--cursor " in one.stderr
    cursor = one.stderr.split("--cursor ")[1].split()[0]
    rest = daemon.cli("post", "list", "--json", "--cursor", cursor, role="viewer")
    assert len(json.loads(rest.stdout)) == 20 and rest.stderr == ""
    every = daemon.cli("post", "list", "--json", "--all", "--limit", "50", role="viewer")
    assert len(json.loads(every.stdout)) == 120 and every.stderr == ""


def test_a_deep_page_of_scheduled_posts_is_one_index_range_not_a_sort(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "switchboard.db")
    try:
        store.add_posts([NewPost("outbox", "marketing", f"p{i}", 1000.0 + i % 50)
                         for i in range(2000)], "m", 1.0)
        pages, after = [], None
        while page := store.page_posts(["scheduled", "queued"], after=after, limit=300):
            pages.append(page)
            after = (page[-1].due_at, page[-1].id)
        listed = [p for page in pages for p in page]
        assert len(listed) == 2000 and len({p.id for p in listed}) == 2000
        assert [(p.due_at, p.id) for p in listed] == sorted((p.due_at, p.id) for p in listed)
        # The statements a deep page runs, as SQLite plans them: no sort of the
        # whole state, an index range from the cursor on.
        statements: list[str] = []
        with store._reading() as db:
            db.set_trace_callback(statements.append)
        store.page_posts(["scheduled", "queued"], "outbox", after=after, limit=101)
        store.page_posts(["scheduled", "queued"], after=after, limit=101)
        with store._reading() as db:
            db.set_trace_callback(None)
            plans = [db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall() for sql in statements]
        assert len(plans) == 4
        for plan in plans:
            details = " ".join(row[-1] for row in plan)
            assert "TEMP B-TREE" not in details and "due_at>?" in details, details
        assert store.count_posts(["scheduled"]) == 2000
        assert store.count_posts(["scheduled"], "outbox") == 2000
    finally:
        store.close()
