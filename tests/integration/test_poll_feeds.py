"""A polled feed on the real daemon: a status page incident opens and clears."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.daemon import DaemonProcess, base_config, free_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


class StatusPage:
    """`/api/v2/incidents/unresolved.json` whose incidents a test sets."""

    def __init__(self) -> None:
        self.document = json.loads((FIXTURES / "statuspage-incidents-unresolved.json").read_text())
        self.requests = 0
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page.requests += 1
                body = json.dumps(page.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v2/incidents/" \
                   "unresolved.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def open_incident(self) -> None:
        incident = copy.deepcopy(json.loads(
            (FIXTURES / "statuspage-incidents.json").read_text())["incidents"][0])
        incident.update(status="investigating", impact="major", resolved_at=None)
        self.document["incidents"] = [incident]

    def clear(self) -> None:
        self.document["incidents"] = []


@pytest.fixture
def status_page() -> Iterator[StatusPage]:
    page = StatusPage()
    yield page
    page.server.shutdown()
    page.server.server_close()


def test_a_status_page_incident_declares_and_its_clearing_tells_ops(
        tmp_path: Path, status_page: StatusPage) -> None:
    feeds = [{"id": "upstream", "kind": "statuspage", "url": status_page.url, "every": "1s",
              "timeout": 2, "rules": [{"match": {"impact": ["major", "critical"]},
                                       "runbook": "service-outage"}]}]
    daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), feeds=feeds))
    daemon.start()
    try:
        daemon.wait_for(lambda: status_page.requests >= 1)
        assert daemon.ok("GET", "/api/v1/incidents") == []
        status_page.open_incident()
        incidents = daemon.wait_for(lambda: daemon.ok("GET", "/api/v1/incidents"), timeout=10)
        assert [(i["runbook"], i["source"]) for i in incidents] == [("service-outage",
                                                                     "upstream")]
        assert daemon.metric("switchboard_feed_last_success_timestamp_seconds",
                             {"feed": "upstream"}) > 0
        seen = status_page.requests
        daemon.wait_for(lambda: status_page.requests >= seen + 2, timeout=10)
        assert len(daemon.ok("GET", "/api/v1/incidents")) == 1, "repeats update, never reopen"

        status_page.clear()
        incident_id = incidents[0]["id"]

        def cleared() -> bool:
            shown = daemon.ok("GET", f"/api/v1/incidents/{incident_id}")
            return any(e["event"] == "signal_resolved" for e in shown["timeline"])

        daemon.wait_for(cleared, timeout=10)
        assert daemon.ok("GET", "/api/v1/incidents")[0]["state"] == "active", \
            "service-outage resolves by hand only"
        notices = [line["text"] for line in daemon.outbox("ops-chat.jsonl")]
        assert any("reports it has cleared" in text for text in notices)
    finally:
        daemon.kill()
