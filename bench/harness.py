"""What every benchmark shares: the result record, the daemon process, /proc readings.

The daemon is the real one, started by the integration tests' harness
(`tests.daemon.DaemonProcess`) on a free loopback port with outbox channels,
in a temporary directory on the same disk as everything else (no tmpfs: the
store's fsyncs are part of what is measured).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.daemon import TOKENS as TOKENS
from tests.daemon import DaemonProcess, base_config, free_port

MB = 1024 * 1024


@dataclass
class Result:
    """One benchmark's line of output.

    `target` says each target in words; `checks` says for each whether this run
    met it. In quick mode `pass` is null: small counts judge nothing.
    """

    name: str
    quick: bool
    params: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    target: dict[str, str] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Two shared cores and a shared disk: what else ran at the time, and how
        # long an fsync took, are part of the figure.
        self.params["loadavg_1m_before"] = round(os.getloadavg()[0], 2)
        self.params["fsync_ms_median"] = fsync_ms()

    def check(self, key: str, ok: bool, target: str) -> None:
        self.target[key] = target
        self.checks[key] = bool(ok)

    def at_most(self, key: str, limit: float, unit: str = "") -> None:
        value = self.figures[key]
        self.check(key, value is not None and value <= limit, f"<= {limit:g}{unit}")

    def at_least(self, key: str, limit: float, unit: str = "") -> None:
        value = self.figures[key]
        self.check(key, value is not None and value >= limit, f">= {limit:g}{unit}")

    @property
    def passed(self) -> bool | None:
        return None if self.quick else all(self.checks.values())

    def line(self) -> str:
        return json.dumps({"name": self.name, "params": self.params, "figures": self.figures,
                           "target": self.target, "checks": self.checks,
                           "pass": self.passed}, default=_as_text)


def _as_text(value: Any) -> Any:
    return str(value)


def r(value: float | None, digits: int = 3) -> float | None:
    """Round for printing; None stays None."""
    return None if value is None else round(value, digits)


def ratio(a: float | None, b: Any) -> float | None:
    """a / b to three significant figures (switchboard over baseline)."""
    if a is None or not b:
        return None
    return float(f"{a / b:.3g}")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p99, max (and count) of durations given in seconds, in milliseconds."""
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 2)
    return {"count": len(seconds), "p50_ms": ms(percentile(seconds, 50)),
            "p99_ms": ms(percentile(seconds, 99)), "max_ms": ms(max(seconds, default=None))}


def fsync_ms(samples: int = 20) -> float:
    """Median time of a 4 KiB write + fsync in the temporary directory (the disk the
    stores live on): every durable commit pays about this much."""
    times = []
    with tempfile.NamedTemporaryFile() as f:
        for _ in range(samples):
            started = time.perf_counter()
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


# -- /proc ----------------------------------------------------------------

def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- work directories and the daemon ---------------------------------------

@contextmanager
def workdir(name: str, keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"sb-bench-{name}-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def outbox_channels(tmp: Path, count: int, prefix: str = "brand") -> list[dict[str, Any]]:
    """`count` public outbox channels plus the internal `ops-chat` the runbooks name."""
    channels: list[dict[str, Any]] = [
        {"id": f"{prefix}-{i}", "kind": "outbox", "path": str(tmp / f"{prefix}-{i}.jsonl")}
        for i in range(count)]
    channels.append({"id": "ops-chat", "kind": "outbox", "audience": "internal",
                     "path": str(tmp / "ops-chat.jsonl")})
    return channels


def daemon(tmp: Path, channels: list[dict[str, Any]],
           feeds: list[dict[str, Any]] | None = None) -> DaemonProcess:
    return DaemonProcess(tmp, config=base_config(tmp, free_port(), channels, feeds))


def start_timed(proc: DaemonProcess, timeout: float = 60.0) -> float:
    """Start the daemon; seconds from spawning the process to the first /readyz 200.

    Polls every 5 ms with a fresh connection, so the figure is at most 5 ms high.
    """
    started = time.perf_counter()
    proc.start(wait=False)
    deadline = started + timeout
    while time.perf_counter() < deadline:
        assert proc.proc is not None
        if proc.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.proc.returncode}:\n{proc.log()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=2)
            conn.request("GET", "/readyz")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.005)
    raise TimeoutError(f"daemon not ready after {timeout}s:\n{proc.log()[-3000:]}")


@contextmanager
def running(proc: DaemonProcess) -> Iterator[DaemonProcess]:
    """The daemon, killed on the way out whatever happened."""
    try:
        if proc.proc is None:
            start_timed(proc)
        yield proc
    finally:
        proc.kill()


class Client:
    """A keep-alive HTTP/1.1 connection for timed sequential requests (http.client)."""

    def __init__(self, port: int, role: str | None = "admin", token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.token = token if token is not None else (TOKENS[role] if role else None)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else (body if isinstance(body, bytes)
                                          else json.dumps(body).encode())
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data}")
        return data

    def every(self, path: str) -> list[Any]:
        """Every row of a paged listing: pages of at most 1,000, following `Link`."""
        rows: list[Any] = []
        following: str | None = path
        while following is not None:
            self.conn.request("GET", following, headers={"Authorization": f"Bearer {self.token}"})
            response = self.conn.getresponse()
            raw = response.read()
            if response.status >= 300:
                raise RuntimeError(f"GET {following}: {response.status} {raw[:200]!r}")
            rows += json.loads(raw)
            link = response.getheader("Link") or ""
            following = link.split(">", 1)[0].lstrip("<") if 'rel="next"' in link else None
        return rows

    def close(self) -> None:
        self.conn.close()


def read_outboxes(paths: Sequence[Path]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in paths:
        if path.exists():
            lines += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return lines


def wait_until(predicate: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True
