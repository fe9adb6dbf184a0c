"""Prints posts to standard output: the local stand-in for an ops chat."""

from __future__ import annotations

import sys
from datetime import datetime

from switchboard.channels.base import Channel, Message, Receipt


class ConsoleChannel(Channel):
    kind = "console"
    claim_size = 25

    async def publish(self, message: Message) -> Receipt:
        stamp = message.begin(self.clock).isoformat(timespec="seconds")
        print(f"[{self.id}] {stamp} {message.kind}: {message.text}", file=sys.stdout, flush=True)
        return Receipt(remote_id=None)

    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        print(f"[{self.id}] retracted post {post_id}", file=sys.stdout, flush=True)
