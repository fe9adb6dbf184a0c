"""A JSON-lines file: one object per published post, one per retraction.

The embedded default and the integration tests watch it. Each line goes to
the file in one `os.write` on an `O_APPEND` descriptor, with no buffer in
between: a crash leaves whole lines, a reader (`tail -f`) sees each post as
it goes out, and a write that fails (a full disk, a file-size limit) leaves
nothing behind. A line the disk took only part of is cut off again, so a
failed post never reaches the file later with another one, and releasing it
writes it once.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime
from pathlib import Path

from switchboard.channels.base import Channel, ChannelError, Message, Receipt
from switchboard.clock import Clock, system_clock
from switchboard.config import ChannelConfig
from switchboard.text import decimal


class OutboxChannel(Channel):
    kind = "outbox"
    claim_size = 25

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        super().__init__(config, clock=clock)
        self.path = Path(self.config.options["path"])
        self._fd: int | None = None

    async def start(self) -> None:
        self._open()

    def _open(self) -> int:
        if self._fd is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ChannelError(f"cannot open outbox {self.path}: {exc.strerror}",
                                   reason="io") from exc
        return self._fd

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def publish(self, message: Message) -> Receipt:
        sent_at = message.begin(self.clock)  # the gate, asked right before the line is written
        self._write({"post_id": _post_id(message.post_id), "channel": message.channel,
                     "kind": message.kind, "text": message.text, "link": message.link,
                     "sent_at": _rfc3339(sent_at)})
        return Receipt(remote_id=f"outbox:{message.post_id}")

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        self._write({"retract": _post_id(post_id), "channel": self.id, "remote_id": remote_id,
                     "retracted_at": _rfc3339(at)})

    def _write(self, record: dict[str, object]) -> None:
        fd = self._open()
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            start = os.fstat(fd).st_size  # one writer: the line will begin here
            try:
                written = 0
                while written < len(line):
                    # A short count without an error happens when the disk fills
                    # mid-line; the next call then reports why.
                    written += os.write(fd, line[written:])
            except OSError:
                # Remove the part of the line the file took. Shrinking needs no space.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        except OSError as exc:
            raise ChannelError(f"cannot write outbox {self.path}: {exc.strerror}",
                               reason="io") from exc


def _rfc3339(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def _post_id(post_id: str) -> int | str:
    """The post's id as the API gives it (an integer); any other id as it came."""
    number = decimal(post_id)
    return post_id if number is None else number
