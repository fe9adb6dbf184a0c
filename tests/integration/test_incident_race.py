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
        # Until every post has its outcome: sent, or held by the incident.
        by_id = daemon.wait_for(lambda: (
            posts := {p["id"]: p for p in daemon.all_pages("/api/v1/posts?limit=1000")
                      if p["kind"] == "marketing"}) and all(
            p["state"] in ("published", "suppressed") for p in posts.values()) and posts,
            timeout=30, every=0.2)

        sent = {}
        for channel in CHANNELS:
            for line in daemon.outbox(f"{channel}.jsonl"):
                if line.get("kind") == "marketing":
                    assert line["post_id"] not in sent, "published twice"
                    sent[line["post_id"]] = datetime.fromisoformat(line["sent_at"])
        late = [pid for pid, when in sent.items() if when > acknowledged]
        assert late == [], f"{len(late)} marketing sends started after the acknowledgement"

        # Posts due long enough before the declaration went out: "long enough" is the
        # dispatcher's own lag in this run (the latest any post went out after its due
        # time), so a loaded machine moves the line instead of failing the test.
        declared_at = datetime.fromisoformat(incident["declared_at"])
        due = {pid: datetime.fromisoformat(p["due_at"]) for pid, p in by_id.items()}
        lag = max(when - due[pid] for pid, when in sent.items())
        before = [p for pid, p in by_id.items() if due[pid] < declared_at - lag]
        after = [p for pid, p in by_id.items() if due[pid] > acknowledged]
        assert len(before) >= 200 and len(after) >= 200, (len(before), len(after), lag)
        assert all(p["state"] == "published" for p in before)
        assert all(p["state"] == "suppressed" and p["incident_id"] == incident["id"]
                   for p in after)
        assert len(created) == 2000
        # every post is in exactly one of the two outcomes around the declaration
        assert len(by_id) == 2000
        published = {pid for pid, p in by_id.items() if p["state"] == "published"}
        assert published == set(sent)
    finally:
        daemon.kill()
