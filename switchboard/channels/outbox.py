"""A JSON-lines file: one object per published post, one per retraction.

The embedded default and the integration tests watch it. Each line is written
with a single `write` on an append-mode file and flushed at once, so a crash
leaves whole lines and a reader (`tail -f`) sees each post as it goes out.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import IO

from switchboard.channels.base import Channel, ChannelError, Message, Receipt
from switchboard.config import ChannelConfig


class OutboxChannel(Channel):
    kind = "outbox"
    claim_size = 25

    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        self.path = Path(self.config.options["path"])
        self._file: IO[str] | None = None

    async def start(self) -> None:
        self._open()

    def _open(self) -> IO[str]:
        if self._file is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise ChannelError(f"cannot open outbox {self.path}: {exc.strerror}",
                                   reason="io") from exc
        return self._file

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def publish(self, message: Message) -> Receipt:
        self._write({"post_id": _post_id(message.post_id), "channel": message.channel,
                     "kind": message.kind, "text": message.text, "link": message.link,
                     "sent_at": _rfc3339(message.sent_at)})
        return Receipt(remote_id=f"outbox:{message.post_id}")

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        self._write({"retract": _post_id(post_id), "channel": self.id, "remote_id": remote_id,
                     "retracted_at": _rfc3339(at)})

    def _write(self, record: dict[str, object]) -> None:
        out = self._open()
        try:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
        except OSError as exc:
            raise ChannelError(f"cannot write outbox {self.path}: {exc.strerror}",
                               reason="io") from exc


def _rfc3339(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def _post_id(post_id: str) -> int | str:
    """The post's id as the API gives it (an integer); any other id as it came."""
    return int(post_id) if post_id.isdigit() else post_id
