"""The text as published is what gets checked and sent: links kept, and X's own counting.

`POST /api/v1/send` used to drop `link`; an X post was judged by `len(text)`, so a
post whose appended link took it over 280 was accepted and then failed at its due
time, and 141 CJK characters (282 as X weighs them) passed as 141.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonProcess, base_config, free_port
from tests.fakes.fake_x import FakeX

RUNBOOKS = {"noop": "name: noop\ntitle: Nothing\nseverity: minor\nsuppress: [marketing]\n"}
LINK = "https://www.example-transport.org/fares/spring-offer-2026?utm_source=switchboard"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[DaemonProcess, FakeX]]:
    with FakeX() as x:
        creds = x.credentials
        channels = [
            {"id": "outbox", "kind": "outbox", "path": str(tmp_path / "outbox.jsonl")},
            {"id": "x-main", "kind": "x", "api_url": x.url, "timeout": 2,
             "credentials": {f"{name}_env": f"SB_X_{name.upper()}" for name in creds}},
        ]
        env = {f"SB_X_{name.upper()}": value for name, value in creds.items()}
        daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), channels),
                               runbooks=RUNBOOKS, env=env)
        daemon.start()
        try:
            yield daemon, x
        finally:
            daemon.stop()


def test_an_immediate_send_keeps_its_link(rig: tuple[DaemonProcess, FakeX]) -> None:
    daemon, x = rig
    sent = daemon.ok("POST", "/api/v1/send", {"channel": "outbox", "text": "Spring fares are "
                                              "out", "link": LINK}, role="marketing")
    assert sent["state"] == "published"
    assert sent["link"] == LINK
    [line] = daemon.outbox()
    assert line["link"] == LINK
    sent = daemon.ok("POST", "/api/v1/send", {"channel": "x-main", "text": "Spring fares",
                                              "link": LINK}, role="marketing")
    assert sent["state"] == "published"
    assert x.texts == [f"Spring fares {LINK}"]


def test_an_x_post_whose_link_takes_it_over_280_is_refused_when_scheduled(
        rig: tuple[DaemonProcess, FakeX]) -> None:
    daemon, x = rig
    text = "Our spring timetable changes. " * 9  # 270 characters
    refused = daemon.api("POST", "/api/v1/posts", {"channel": "x-main", "text": text,
                                                   "link": LINK, "at": "+1h"}, role="marketing")
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert "with its link is 294 characters" in message and "at most 280" in message
    # Any link counts 23 on X, however long: 250 characters and this 83-character
    # link are 274 as X counts them, which it takes.
    ok = daemon.ok("POST", "/api/v1/send", {"channel": "x-main", "text": text[:250],
                                            "link": LINK}, role="marketing")
    assert ok["state"] == "published", ok
    assert x.texts == [f"{text[:250]} {LINK}"]


def test_cjk_text_is_weighed_as_x_weighs_it(rig: tuple[DaemonProcess, FakeX]) -> None:
    daemon, x = rig
    refused = daemon.api("POST", "/api/v1/posts", {"channel": "x-main", "text": "運" * 141,
                                                   "at": "+1h"}, role="marketing")
    assert refused.status_code == 422, refused.text
    assert "is 282 characters as channel x-main counts them" in \
        refused.json()["error"]["message"]
    ok = daemon.ok("POST", "/api/v1/send", {"channel": "x-main", "text": "運" * 140},
                   role="marketing")
    assert ok["state"] == "published", ok
    assert x.texts == ["運" * 140]


def test_an_incident_update_is_weighed_as_x_weighs_it(rig: tuple[DaemonProcess, FakeX]) -> None:
    daemon, x = rig
    incident = daemon.ok("POST", "/api/v1/incidents", {"runbook": "noop", "title": "Signal fault",
                                                       "channels": ["x-main"]}, role="ops")
    refused = daemon.api("POST", f"/api/v1/incidents/{incident['id']}/update",
                         {"text": "運" * 141}, role="ops")
    assert refused.status_code == 422, refused.text
    assert "282 characters as channel x-main counts them" in refused.json()["error"]["message"]
    assert x.texts == []
