"""A light load generator: raw keep-alive HTTP/1.1 over asyncio streams.

The machine has two cores and the daemon needs one, so the client must cost
little: requests are pre-built bytes, responses are read by Content-Length
(aiohttp's server always sends it for the JSON answers used here), and there
is no per-request object beyond a tuple. `open_loop` sends at a fixed rate
whatever the answers do, and times each request from the moment it was
*meant* to be sent, so a server that falls behind shows as latency instead of
silently slowing the load (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass


def request_bytes(method: str, path: str, body: bytes = b"", token: str | None = None,
                  content_type: str = "application/json") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    if body:
        head.append(f"Content-Type: {content_type}")
    if token:
        head.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2 ** 24)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "transfer-encoding" and "chunked" in value:
                return status, await self._chunked()
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True)
class Sample:
    scheduled: float  # perf_counter time the request was meant to start
    sent: float       # when it was written
    done: float       # when the whole answer was read
    status: int


async def open_loop(port: int, requests: Sequence[bytes], rate: float,
                    connections: int = 32) -> list[Sample]:
    """Send `requests` at `rate` per second on a pool of keep-alive connections."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    opened = [await Connection.open(port) for _ in range(connections)]
    for conn in opened:
        pool.put_nowait(conn)
    samples: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(request: bytes, scheduled: float) -> None:
        conn = await pool.get()
        sent = time.perf_counter()
        status, _ = await conn.exchange(request)
        samples.append(Sample(scheduled, sent, time.perf_counter(), status))
        pool.put_nowait(conn)

    start = time.perf_counter() + 0.05
    interval = 1.0 / rate
    i = 0
    while i < len(requests):
        now = time.perf_counter()
        # Launch everything whose time has come (the loop wakes ~1 ms late at best).
        while i < len(requests) and start + i * interval <= now:
            task = asyncio.create_task(one(requests[i], start + i * interval))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < len(requests):
            await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
    if tasks:
        await asyncio.gather(*tasks)
    for conn in opened:
        conn.close()
    return samples


async def closed_loop(port: int, requests: Sequence[bytes],
                      connections: int = 2) -> list[Sample]:
    """Send `requests` as fast as the server answers, `connections` at a time."""
    queue = list(reversed(requests))
    samples: list[Sample] = []

    async def worker() -> None:
        conn = await Connection.open(port)
        while queue:
            request = queue.pop()
            sent = time.perf_counter()
            status, _ = await conn.exchange(request)
            samples.append(Sample(sent, sent, time.perf_counter(), status))
        conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return samples
