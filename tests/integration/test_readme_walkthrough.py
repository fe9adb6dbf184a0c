"""The README's walkthrough, followed literally on a fresh copy of the tree.

The walkthrough's code block is read from README.md and each line run in
order by bash in the copy's root, as a reader pasting it would, against the
daemon started on the embedded default config (on a free port instead of
8650, so a daemon a developer left running does not interfere). Every command
must succeed and has its effect checked; a command added to the README
without a check here fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from switchboard.timefmt import local_text, zone_named
from tests.daemon import free_port

ROOT = Path(__file__).resolve().parents[2]


def walkthrough(readme: str) -> list[str]:
    """The lines of the first sh block under `## A walkthrough` (comments kept: bash
    ignores them, as it would for the reader)."""
    section = readme.split("## A walkthrough", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and
            not line.lstrip().startswith("#")]


def fresh_tree(into: Path) -> Path:
    """The tracked files, as a clone would have them, and the suite's own virtualenv
    standing in for the one `make run` creates."""
    tree = into / "switchboard"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    (tree / ".venv").symlink_to(Path(sys.prefix))
    return tree


@dataclass
class Walk:
    tree: Path
    url: str
    env: dict[str, str]
    prelude: list[str] = field(default_factory=list)
    seen: dict[str, Any] = field(default_factory=dict)

    def api(self, path: str) -> Any:
        token = (self.tree / "var" / "tokens" / "admin.token").read_text().strip()
        response = requests.get(self.url + path, timeout=10,
                                headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        return response.json()

    def run(self, line: str) -> subprocess.CompletedProcess[str]:
        script = "\n".join([*self.prelude, line])
        return subprocess.run(["bash", "-c", script], cwd=self.tree, env=self.env,
                              capture_output=True, text=True, timeout=120)

    def posts(self, state: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api(f"/api/v1/posts?state={state}")
        return found

    def control(self) -> str:
        outbox = next(c for c in self.api("/api/v1/channels") if c["id"] == "outbox")
        return str(outbox["control"])

    def outbox(self) -> list[dict[str, Any]]:
        import json
        path = self.tree / "var" / "outbox.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def wait(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            assert time.monotonic() < deadline, "the command's effect did not show"
            time.sleep(0.05)
        return value


Check = Callable[[Walk, subprocess.CompletedProcess[str]], None]


def due(post: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(post["due_at"])


def imported(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    assert "imported 4 post(s) from config/examples/calendar.csv" in done.stdout
    posts = w.posts("scheduled")
    assert len(posts) == 4 and all(due(p) > datetime.now(UTC) for p in posts)
    w.seen["calendar"] = {p["id"] for p in posts}


def listed_scheduled(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    rows = [line for line in done.stdout.splitlines()[1:] if line.strip()]
    assert len(rows) == 4 and all(" scheduled " in r for r in rows)


def declared(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    number = len([k for k in w.seen if k.startswith("INC-")]) + 1
    incident = f"INC-{number}"
    assert done.stdout.startswith(f"{incident} declared: outbox under rail-disruption")
    assert w.control() == "ops"
    statement = w.wait(lambda: [line for line in w.outbox()
                                if line["kind"] == "operational" and "Our teams are on it"
                                in line["text"] and line["post_id"] not in w.seen.values()])
    w.seen[incident] = statement[-1]["post_id"]


def channels_shown(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    row = next(line for line in done.stdout.splitlines() if line.startswith("outbox "))
    assert row.split()[3] == w.control()


def scheduled_sale(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    match = re.match(r"post (\d+) scheduled for outbox", done.stdout)
    assert match, done.stdout
    w.seen["sale"] = int(match[1])


def slept(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    w.wait(lambda: [p for p in w.posts("suppressed") if p["id"] == w.seen["sale"]])


def listed_suppressed(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    rows = [line.split() for line in done.stdout.splitlines()[1:] if line.strip()]
    # DUE prints as three words (`2026-12-01 17:30 GMT`): INCIDENT is the eighth.
    assert [(int(r[0]), r[1], r[7]) for r in rows] == [(w.seen["sale"], "suppressed", "INC-1")]
    assert not [line for line in w.outbox() if "Flash sale" in line["text"]], "nothing leaked"


def updated(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    assert re.fullmatch(r"post \d+ published on outbox\n", done.stdout), done.stdout
    assert any("moving again slowly" in line["text"] for line in w.outbox())


def shown(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    events = w.api("/api/v1/incidents/INC-1")["timeline"]
    names = [e["event"] for e in events]
    assert {"declared", "posts_suppressed", "update_posted"} <= set(names)
    for name in ("declared", "posts_suppressed", "update_posted"):
        assert name in done.stdout


def resolved(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    assert done.stdout.startswith("INC-1 resolved")
    w.wait(lambda: [line for line in w.outbox() if "running normally again" in line["text"]])
    assert w.control() == "ops", "the cooldown keeps the channel"


def listed_cooldown(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    until = w.api("/api/v1/incidents/INC-1")["cooldown_until"]
    assert datetime.fromisoformat(until) - datetime.now(UTC) > timedelta(hours=1.9)
    row = next(line for line in done.stdout.splitlines() if line.startswith("INC-1 "))
    zone = zone_named(requests.get(w.url + "/healthz", timeout=10)
                      .headers.get("X-Switchboard-Timezone"))
    assert " cooldown " in row and local_text(until, zone) in row


def released_incident(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    assert done.stdout.startswith("INC-1: cooldown ended")
    assert w.control() == "marketing"


def listed_held(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    rows = [line.split() for line in done.stdout.splitlines()[1:] if line.strip()]
    assert [(int(r[0]), r[1]) for r in rows] == [(w.seen["sale"], "held")]


def released_post(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    post_id = int(done.stdout.split()[1])
    assert post_id == w.seen["sale"], "the README releases the flash sale, nothing else"
    post = w.api(f"/api/v1/posts/{post_id}")
    assert post["state"] == "scheduled" and "Flash sale" in post["text"]
    assert timedelta(minutes=29) < due(post) - datetime.now(UTC) <= timedelta(minutes=30)


def voided(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    assert done.stdout.startswith("INC-2 voided")
    assert w.control() == "marketing"
    retracted = [line["retract"] for line in w.outbox() if "retract" in line]
    assert retracted == [w.seen["INC-2"]], "INC-2's holding statement is withdrawn"
    all_clears = [line for line in w.outbox() if "running normally again" in line.get("text", "")]
    assert len(all_clears) == 1, "only INC-1 got an all-clear"


def simulated(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    assert "holding-statement" in done.stdout and "update-due" in done.stdout


def checked(w: Walk, done: subprocess.CompletedProcess[str]) -> None:
    assert "config/switchboard.yaml: ok" in done.stdout


CHECKS: list[tuple[str, Check]] = [
    (r"\$sb post import ", imported),
    (r"\$sb post list --state scheduled", listed_scheduled),
    (r"\$sb incident declare ", declared),
    (r"\$sb channels", channels_shown),
    (r"\$sb post schedule ", scheduled_sale),
    (r"sleep \d+", slept),
    (r"\$sb post list --state suppressed", listed_suppressed),
    (r"\$sb incident update INC-1 ", updated),
    (r"\$sb incident show INC-1", shown),
    (r"\$sb incident resolve INC-1 ", resolved),
    (r"\$sb incident list", listed_cooldown),
    (r"\$sb incident release INC-1 ", released_incident),
    (r"\$sb post list --state held", listed_held),
    (r"\$sb post release \d+ ", released_post),
    (r"\$sb incident void INC-2 ", voided),
    (r"\$sb simulate ", simulated),
    (r"\$sb check", checked),
]


def test_the_readme_walkthrough_works_when_followed_literally(tmp_path: Path) -> None:
    lines = walkthrough((ROOT / "README.md").read_text())
    tree = fresh_tree(tmp_path)
    port = free_port()
    config = tree / "config" / "switchboard.yaml"
    config.write_text(config.read_text().replace("listen: 127.0.0.1:8650",
                                                 f"listen: 127.0.0.1:{port}"))
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["SWITCHBOARD_URL"] = url
    daemon = subprocess.Popen([str(tree / ".venv" / "bin" / "switchboard"), "run", "-c",
                               "config/switchboard.yaml"], cwd=tree, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        walk = Walk(tree, url, env)
        walk.wait(lambda: _ready(url), timeout=30)
        for line in lines:
            command = line.split("#", 1)[0].strip()
            if re.fullmatch(r"export \w+=\S+|\w+=\S+", command):
                walk.prelude.append(command)
                continue
            checks = [c for pattern, c in CHECKS if re.match(pattern, command)]
            assert len(checks) == 1, f"no check (or several) for the README line {line!r}"
            done = walk.run(command)
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            checks[0](walk, done)
        assert walk.seen["sale"] and walk.seen["INC-2"], "the walkthrough reached its end"
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.communicate(timeout=30)


def _ready(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
