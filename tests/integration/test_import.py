"""`switchboard post import`: one transaction, every bad line named, safe to repeat."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonProcess

ROWS = 20_000


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(tmp_path).start()
    yield proc
    proc.kill()


def calendar(path: Path, rows: int, bad_lines: dict[int, str] | None = None) -> Path:
    """A CSV calendar; `bad_lines` replaces the row on that file line (header is line 1)."""
    lines = ["channel,at,text"]
    for i in range(rows):
        lines.append(f"outbox,2030-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z,"
                     f"Offer number {i}")
    for line, text in (bad_lines or {}).items():
        lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def stored(daemon: DaemonProcess) -> int:
    return int(daemon.ok("GET", "/api/v1/status")["posts"].get("scheduled", 0))


def test_an_import_with_bad_rows_stores_nothing_and_names_every_bad_line(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    path = calendar(tmp_path / "cal.csv", ROWS, {
        724: "outbox,not a time,Offer",
        ROWS + 1: "nowhere,2030-01-01T00:00:00Z,Offer"})

    result = daemon.cli("post", "import", str(path), role="marketing")

    assert result.returncode == 1
    problems = [ln for ln in result.stderr.splitlines() if ln.startswith("cal.csv:")]
    assert [p.split(":")[1] for p in problems] == ["724", str(ROWS + 1)]
    assert "bad time 'not a time'" in problems[0]
    assert "no channel named 'nowhere'" in problems[1]
    assert "nothing was imported" in result.stderr
    assert stored(daemon) == 0


def test_importing_the_same_file_twice_creates_nothing_new(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    path = calendar(tmp_path / "cal.csv", ROWS)

    first = daemon.cli("post", "import", str(path), "--json", role="marketing")
    again = daemon.cli("post", "import", str(path), "--json", role="marketing")

    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert json.loads(first.stdout)["created"] == ROWS
    assert (json.loads(again.stdout)["created"], json.loads(again.stdout)["existing"]) == (0, ROWS)
    assert stored(daemon) == ROWS


def test_a_dry_run_checks_every_row_and_stores_nothing(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    good = calendar(tmp_path / "good.csv", 50)
    bad = calendar(tmp_path / "bad.csv", 50, {3: "outbox,2030-01-01T00:00:00Z,"})

    ok = daemon.cli("post", "import", str(good), "--dry-run", role="marketing")
    refused = daemon.cli("post", "import", str(bad), "--dry-run", role="marketing")

    assert ok.returncode == 0 and "50 row(s) ok" in ok.stdout
    assert refused.returncode == 1 and "bad.csv:3: text is required" in refused.stderr
    assert stored(daemon) == 0


def test_a_key_column_names_the_row_and_json_lines_name_their_line(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    semicolons = tmp_path / "cal.csv"
    semicolons.write_text("Key;Channel;AT;Text\nspring-1;outbox;2030-03-01T09:00:00Z;Spring\n")
    assert daemon.cli("post", "import", str(semicolons), role="marketing").returncode == 0
    # Same key, new wording: still the one row the calendar means.
    semicolons.write_text("key;channel;at;text\nspring-1;outbox;2030-03-01T09:00:00Z;Spring!\n")
    assert daemon.cli("post", "import", str(semicolons), role="marketing").returncode == 0
    assert [p["text"] for p in daemon.ok("GET", "/api/v1/posts")] == ["Spring"]

    lines = tmp_path / "cal.jsonl"
    lines.write_text('{"channel": "outbox", "at": "2030-01-01T00:00:00Z", "text": "a"}\n\n'
                     '{"channel": "outbox", "at": "2030-01-01T00:00:00Z"}\n{broken\n')
    result = daemon.cli("post", "import", str(lines), role="marketing")
    assert result.returncode == 1
    assert "cal.jsonl:3: text is required" in result.stderr
    assert "cal.jsonl:4: bad JSON" in result.stderr
