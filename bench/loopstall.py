"""Loop stalls: the largest delay of a declaration (and of /healthz) while the
daemon does something big (design §7.1, "Bounded under abuse").

Two probes run the whole time: one declares an incident on its own channel
(`probe`) and resolves it, again and again, timing each declaration to its
201; the other asks `/healthz` every 10 ms. Each phase reports the largest
and the 99th-percentile time of the probes that ran during it:

- idle: nothing else (the floor);
- listing: a viewer pages through every post of the store (1,000,000 in
  full mode), 1,000 a page, following the `Link` header;
- hold: 10,000 posts fall due on channel `held` under an incident and are
  held (reported, not judged);
- release: that incident ends and its 10,000 held posts are rescheduled
  (held-post policy `reschedule`, cooldown 0 s);
- reload: SIGHUP with an unchanged configuration;
- slow_connections: 1,000 unauthenticated sockets that send half a request
  head and wait;
- slow_disk: a second daemon (an empty store) whose every fsync takes 100 ms
  (the benchmark-only shim in bench/slowdisk/, loaded by the daemon's Python
  through PYTHONPATH; nothing in switchboard/ knows of it), probed for 5 s.

Target: 50 ms for the largest declaration delay in each of the first phases;
under slow_disk every declaration must still be answered (201) and /healthz
must answer within 50 ms.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench.dispatch import BATCH, TEXT, backlog, backlog_size, copy_store
from bench.harness import TOKENS, Client, Result, outbox_channels, percentile, running, workdir
from bench.stalls import recorded
from tests.daemon import DaemonProcess, base_config, free_port

TARGET_MS = 50.0
FSYNC_DELAY_MS = 100
SLOW_DISK_SECONDS = 5.0
SHIM = Path(__file__).resolve().parent / "slowdisk"
# With SB_BENCH_SLOW_CALLBACK_MS set, both daemons run under the loop-lag trace
# (bench/looplag/): it names each callback that held the loop that long.
TRACE = Path(__file__).resolve().parent / "looplag"
PAGE = 1000
_PROBE_RUNBOOK = """
name: probe
title: Probe
severity: minor
scope: [probe]
suppress: [marketing]
steps: []
resolve:
  cooldown: 0s
  held_posts: review
"""
_HOLD_RUNBOOK = """
name: hold
title: Hold
severity: minor
scope: [held]
suppress: [marketing]
steps: []
resolve:
  cooldown: 0s
  held_posts: reschedule
  min_spacing: 1s
"""


class Probes:
    """Declarations and /healthz, each timed and stamped, on two threads."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.declared: list[tuple[float, float]] = []  # (started, seconds)
        self.health: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._declare, daemon=True),
                         threading.Thread(target=self._healthz, daemon=True)]

    def __enter__(self) -> Probes:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _declare(self) -> None:
        ops = Client(self.port, role="ops")
        while not self._stop.is_set():
            started = time.perf_counter()
            status, incident = ops.call("POST", "/api/v1/incidents",
                                        {"runbook": "probe", "title": "probe"})
            self.declared.append((started, time.perf_counter() - started))
            if status != 201:
                self.errors.append(f"declare {status}: {incident}")
                break
            ops.call("POST", f"/api/v1/incidents/{incident['id']}/resolve", {})
            self._stop.wait(0.02)

    def _healthz(self) -> None:
        client = Client(self.port, role=None)
        while not self._stop.is_set():
            started = time.perf_counter()
            status, _ = client.call("GET", "/healthz")
            self.health.append((started, time.perf_counter() - started))
            if status != 200:
                self.errors.append(f"healthz {status}")
            self._stop.wait(0.01)

    def window(self, since: float, until: float) -> dict[str, Any]:
        def stats(samples: list[tuple[float, float]]) -> dict[str, Any]:
            # A probe that started before the window but was still waiting in it counts.
            seconds = [s for t, s in samples if t <= until and t + s >= since]
            ms = [round(s * 1000, 2) for s in seconds]
            return {"count": len(ms), "max_ms": max(ms, default=None),
                    "p99_ms": percentile(ms, 99)}
        return {"declare": stats(self.declared), "healthz": stats(self.health)}


def loop_stall(quick: bool) -> Result:
    posts, held = backlog_size(quick), (2_000 if quick else 10_000)
    slow = 1_000
    res = Result("loop_stall", quick, params={
        "posts_listed": posts, "page": PAGE, "held_posts_released": held,
        "slow_connections": slow, "probe_pause_s": 0.02, "healthz_every_s": 0.01})
    with workdir("loopstall") as tmp:
        copy_store(backlog(posts).store, tmp)
        with running(_daemon(tmp)) as proc, Probes(proc.port) as probes:
            incident: dict[str, Any] = {}
            phases: dict[str, Callable[[], dict[str, Any]]] = {
                "idle": lambda: _idle(),
                "listing": lambda: _listing(proc, posts),
                "hold": lambda: _hold(proc, held, incident),
                "release": lambda: _release(proc, incident),
                "reload": lambda: _reload(proc),
                "slow_connections": lambda: _slow_connections(proc, slow),
            }
            for name, phase in phases.items():
                with recorded(proc, name), _timed() as span:
                    detail = phase()
                res.figures[name] = {**probes.window(*span()), **detail}
        res.figures["probe_errors"] = probes.errors[:5]
        res.figures["slow_disk"] = _slow_disk(tmp / "slowdisk")
    for name in ("listing", "release", "reload", "slow_connections"):
        key = f"{name}_declare_max_ms"
        res.figures[key] = res.figures[name]["declare"]["max_ms"]
        res.at_most(key, TARGET_MS, " ms")
    res.check("probes_answered", not res.figures["probe_errors"], "every probe answered")
    slow = res.figures["slow_disk"]
    res.figures["slow_disk_healthz_max_ms"] = slow["healthz"]["max_ms"]
    res.figures["slow_disk_declare_max_ms"] = slow["declare"]["max_ms"]
    res.check("slow_disk_declarations_answered",
              not slow["probe_errors"] and bool(slow["declare"]["count"]),
              f"every declaration answered (201) with fsync {FSYNC_DELAY_MS} ms")
    res.at_most("slow_disk_healthz_max_ms", TARGET_MS, " ms")
    return res


def _slow_disk(tmp: Path) -> dict[str, Any]:
    """The probes alone, against a daemon whose every fsync takes FSYNC_DELAY_MS."""
    tmp.mkdir()
    proc = _daemon(tmp, env={"SB_BENCH_FSYNC_DELAY_MS": str(FSYNC_DELAY_MS)}, shims=[SHIM])
    with (running(proc), Probes(proc.port) as probes, recorded(proc, "slow_disk"),
          _timed() as span):
        time.sleep(SLOW_DISK_SECONDS)
    return {**probes.window(*span()), "probe_errors": probes.errors[:5],
            "fsync_delay_ms": FSYNC_DELAY_MS, "seconds": SLOW_DISK_SECONDS}


def _daemon(tmp: Path, env: dict[str, str] | None = None,
            shims: list[Path] | None = None) -> DaemonProcess:
    channels = outbox_channels(tmp, 10)
    channels += [{"id": c, "kind": "outbox", "path": str(tmp / f"{c}.jsonl")}
                 for c in ("probe", "held")]
    config = base_config(tmp, free_port(), channels)
    return DaemonProcess(tmp, config=config, env={**(env or {}), **_path(shims or [])},
                         runbooks={"probe": _PROBE_RUNBOOK, "hold": _HOLD_RUNBOOK})


def _path(shims: list[Path]) -> dict[str, str]:
    """PYTHONPATH with the shims first (the trace, when asked for, before them all:
    only the first `sitecustomize` is imported, and the trace imports the next)."""
    if os.environ.get("SB_BENCH_SLOW_CALLBACK_MS"):
        shims = [TRACE, *shims]
    if not shims:
        return {}
    path = [str(shim) for shim in shims] + [os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(path).rstrip(os.pathsep)}


@contextmanager
def _timed() -> Iterator[Callable[[], tuple[float, float]]]:
    started = time.perf_counter()
    ended: list[float] = []
    yield lambda: (started, ended[0])
    ended.append(time.perf_counter())


def _idle() -> dict[str, Any]:
    time.sleep(2.0)
    return {}


def _listing(proc: DaemonProcess, expected: int) -> dict[str, Any]:
    """Page through every post, in a process of its own: decoding 1,000-post pages
    holds the GIL for milliseconds at a time, and in this process that would
    delay the probes' threads, not the daemon."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        listed, pages, seconds = pool.submit(_list_every_post, proc.url).result()
    return {"listed": listed, "pages": pages, "all_listed": listed >= expected,
            "seconds": round(seconds, 2)}


def _list_every_post(base: str) -> tuple[int, int, float]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKENS['viewer']}"
    url: str | None = f"{base}/api/v1/posts?limit={PAGE}"
    listed = pages = 0
    started = time.perf_counter()
    while url is not None:
        response = session.get(url, timeout=60)
        response.raise_for_status()
        listed += len(response.json())
        pages += 1
        following = response.links.get("next", {}).get("url")
        url = None if following is None else base + following
    return listed, pages, time.perf_counter() - started


def _hold(proc: DaemonProcess, count: int, incident: dict[str, Any]) -> dict[str, Any]:
    """Declare on channel `held` and let `count` posts fall due there (held, not judged)."""
    ops, marketing = Client(proc.port, role="ops"), Client(proc.port, role="marketing")
    incident.update(ops.ok("POST", "/api/v1/incidents", {"runbook": "hold", "title": "hold"}))
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    for start in range(0, count, BATCH):
        marketing.ok("POST", "/api/v1/posts", [
            {"channel": "held", "text": TEXT.format(f"held-{i}"), "at": when}
            for i in range(start, min(count, start + BATCH))])
    _wait(lambda: _count(proc, "suppressed") >= count, 120)
    return {"held": count}


def _release(proc: DaemonProcess, incident: dict[str, Any]) -> dict[str, Any]:
    """Resolve: the cooldown is 0 s, so every held post is rescheduled at once."""
    started = time.perf_counter()
    Client(proc.port, role="ops").ok("POST", f"/api/v1/incidents/{incident['id']}/resolve", {})
    _wait(lambda: _count(proc, "suppressed") == 0, 300)
    return {"rescheduled": _count(proc, "scheduled"),
            "seconds": round(time.perf_counter() - started, 2)}


def _count(proc: DaemonProcess, state: str) -> int:
    """Posts in `state` on channel `held`, from the listing's X-Total-Count."""
    response = requests.get(f"{proc.url}/api/v1/posts?state={state}&channel=held&limit=1",
                            timeout=60,
                            headers={"Authorization": f"Bearer {TOKENS['viewer']}"})
    return int(response.headers["X-Total-Count"])


def _reload(proc: DaemonProcess) -> dict[str, Any]:
    before = proc.log().count('"reloaded"')
    started = time.perf_counter()
    proc.signal(signal.SIGHUP)
    _wait(lambda: proc.log().count('"reloaded"') > before, 60)
    seconds = time.perf_counter() - started
    time.sleep(0.5)
    return {"seconds": round(seconds, 2)}


def _slow_connections(proc: DaemonProcess, count: int) -> dict[str, Any]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
            sock.sendall(b"POST /feeds/alertmanager HTTP/1.1\r\nHost: switchboard\r\n")
            socks.append(sock)
        time.sleep(2.0)
    finally:
        for sock in socks:
            sock.close()
    return {"held_open": len(socks)}


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done in {timeout:g} s")
        time.sleep(0.2)
