"""The product's promise under load: no marketing post starts after the declaration."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.daemon import DaemonProcess, base_config, free_port

CHANNELS = [f"brand-{i}" for i in range(5)]


def test_no_marketing_send_starts_after_the_declaration_is_acknowledged(tmp_path: Path) -> None:
    channels = [{"id": c, "kind": "outbox", "path": str(tmp_path / f"{c}.jsonl")}
                for c in CHANNELS]
    channels.append({"id": "ops-chat", "kind": "outbox", "audience": "internal",
                     "path": str(tmp_path / "ops-chat.jsonl")})
    daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), channels))
    daemon.start()
    try:
        declare_at = datetime.now(UTC) + timedelta(seconds=4)
        posts = []
        for i in range(2000):
            due = declare_at + timedelta(seconds=-1 + 2 * i / 2000)
            posts.append({"channel": CHANNELS[i % 5], "text": f"offer {i}",
                          "at": due.isoformat()})
        created = daemon.ok("POST", "/api/v1/posts", posts, role="marketing")
        time.sleep(max(0.0, (declare_at - datetime.now(UTC)).total_seconds()))
        incident = daemon.ok("POST", "/api/v1/incidents",
                             {"runbook": "security-incident", "title": "Race"}, role="ops")
        acknowledged = datetime.now(UTC)
        time.sleep(1.5)

        sent = {}
        for channel in CHANNELS:
            for line in daemon.outbox(f"{channel}.jsonl"):
                if line.get("kind") == "marketing":
                    assert line["post_id"] not in sent, "published twice"
                    sent[line["post_id"]] = datetime.fromisoformat(line["sent_at"])
        late = [pid for pid, when in sent.items() if when > acknowledged]
        assert late == [], f"{len(late)} marketing sends started after the acknowledgement"

        declared_at = datetime.fromisoformat(incident["declared_at"])
        by_id = {p["id"]: p for p in daemon.all_pages("/api/v1/posts?limit=1000")}
        before = [p for p in by_id.values()
                  if p["kind"] == "marketing" and datetime.fromisoformat(p["due_at"]) <
                  declared_at - timedelta(milliseconds=200)]
        after = [p for p in by_id.values()
                 if p["kind"] == "marketing" and datetime.fromisoformat(p["due_at"]) >
                 acknowledged]
        assert len(before) > 800 and len(after) > 800
        assert all(p["state"] == "published" for p in before)
        assert all(p["state"] == "suppressed" and p["incident_id"] == incident["id"]
                   for p in after)
        assert len(created) == 2000
        # every post is in exactly one of the two outcomes around the declaration
        states = {p["state"] for p in by_id.values() if p["kind"] == "marketing"}
        assert states <= {"published", "suppressed"}
        published = {pid for pid, p in by_id.items() if p["state"] == "published"
                     and p["kind"] == "marketing"}
        assert published == set(sent)
    finally:
        daemon.kill()
