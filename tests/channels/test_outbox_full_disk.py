"""The outbox on a full disk: a failed write leaves nothing behind (issue finding 4).

Two real ways to fill a disk: a file-size limit (RLIMIT_FSIZE, in a child
process so the test runner keeps its own), and, where the tests may mount
one, a tmpfs a few KiB large. Either way the post whose line did not fit
fails, the next line written is only the next post's, and sending the failed
post again writes it once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import DaemonProcess, base_config, free_port

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import asyncio, json, os, resource, sys
    from datetime import UTC, datetime
    from switchboard.channels.base import ChannelError, Message
    from switchboard.channels.outbox import OutboxChannel
    from switchboard.config import ChannelConfig

    path = sys.argv[1]

    def message(post_id, text):
        return Message(post_id, "brand", "marketing", text, None, datetime.now(UTC))

    async def main():
        channel = OutboxChannel(ChannelConfig("brand", "outbox", options={"path": path}))
        await channel.start()
        await channel.publish(message("1", "Already out"))
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        # Room for part of the next line only: the disk is full mid-line.
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 40, hard))
        outcome = []
        try:
            await channel.publish(message("2", "Summer offer: " + "x" * 200))
            outcome.append("published")
        except ChannelError as exc:
            outcome.append(exc.message)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space freed
        await channel.publish(message("3", "Holding statement: services suspended"))
        await channel.publish(message("2", "Summer offer: " + "x" * 200))  # released
        await channel.close()
        print(json.dumps(outcome))

    asyncio.run(main())
""")


def lines(path: Path) -> list[str]:
    return [str(record["post_id"]) for record in read(path)]


def test_a_write_past_the_file_size_limit_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    result = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    (outcome,) = json.loads(result.stdout)
    assert outcome.startswith("cannot write outbox") and "File too large" in outcome
    assert lines(path) == ["1", "3", "2"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the file-size limit test covers this")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Fill the disk until a write fails: the next line cannot get a block."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


@pytest.mark.integration
def test_a_post_that_failed_on_a_full_disk_is_never_written_later(small_disk: Path,
                                                                  tmp_path: Path) -> None:
    outbox = small_disk / "brand.jsonl"
    channels = [{"id": "brand", "kind": "outbox", "path": str(outbox)}]
    daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), channels),
                           runbooks={"drill": "name: drill\ntitle: Drill\nseverity: major\n"
                                              "suppress: [marketing]\n"})
    daemon.start()
    try:
        filler = fill(small_disk)
        offer = daemon.api("POST", "/api/v1/send", {"channel": "brand", "text": "Summer offer"},
                           role="marketing")
        assert offer.status_code == 502, offer.text
        (failed,) = daemon.ok("GET", "/api/v1/posts?state=failed")
        assert "No space left on device" in failed["error"]
        filler.unlink()  # the operator frees space
        daemon.ok("POST", "/api/v1/send", {"channel": "brand", "kind": "operational",
                                           "text": "Holding statement: services suspended"},
                  role="ops")
        assert [r["text"] for r in read(outbox)] == ["Holding statement: services suspended"]
        daemon.ok("POST", f"/api/v1/posts/{failed['id']}/release", role="marketing")
        daemon.wait_for(lambda: daemon.ok("GET", f"/api/v1/posts/{failed['id']}")["state"]
                        == "published")
        assert [r["text"] for r in read(outbox)] == ["Holding statement: services suspended",
                                                     "Summer offer"]
    finally:
        daemon.kill()


def read(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert not raw or raw.endswith(b"\n"), "the file ends in a torn line"
    return [json.loads(line) for line in raw.decode().splitlines()]
