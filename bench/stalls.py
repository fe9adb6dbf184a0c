"""Where the event loop was held: py-spy samples of a daemon, read as loop stalls.

`bench/loopstall.py` records each phase with py-spy when SB_BENCH_PYSPY_DIR
names a directory (py-spy installed; `pip install py-spy`): one speedscope
file per phase, every thread sampled 1,000 times a second, idle ones too.

`python -m bench.stalls DIR [--ms 20]` then prints, per phase, every run of
consecutive samples in which the main thread (the event loop) was running
Python rather than waiting in `select`, longer than `--ms`: its length and
the frames of switchboard (or aiohttp) it spent most samples in, with what
the store's threads did meanwhile. A loop that waits for the GIL held by
another thread shows as idle in `select` here; the other threads' columns
say who held it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.daemon import DaemonProcess

RATE = int(os.environ.get("SB_BENCH_PYSPY_RATE", "1000"))  # samples a second
_IDLE_LEAVES = {"select", "poll", "epoll", "wait", "_worker", "sleep"}
_OURS = ("switchboard/", "aiohttp/", "apscheduler/")


@contextmanager
def recorded(daemon: DaemonProcess, name: str) -> Iterator[None]:
    """Record the daemon with py-spy for the block, if SB_BENCH_PYSPY_DIR is set."""
    where = os.environ.get("SB_BENCH_PYSPY_DIR")
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if not where or spy is None or daemon.proc is None:
        yield
        return
    pid = daemon.proc.pid
    Path(where).mkdir(parents=True, exist_ok=True)
    out = Path(where) / f"{name}.speedscope.json"
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(RATE), "--idle",
                             "--threads", "--nonblocking", "--format", "speedscope",
                             "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


@dataclass
class Stall:
    start_ms: float
    length_ms: float
    frames: list[tuple[str, int]]
    others: dict[str, str]


def stalls(path: Path, threshold_ms: float, thread: str = "MainThread",
           rate: int = RATE) -> list[Stall]:
    """Runs of `thread` (by name: the loop's, or e.g. "store-writer") busy that long."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    profiles = {p["name"]: p for p in data["profiles"]}
    main = next((p for n, p in profiles.items() if thread in n), None)
    if main is None:
        return []
    step = 1000 / rate
    found: list[Stall] = []
    run: list[list[int]] = []
    start = 0
    for index, stack in enumerate([*main["samples"], []]):
        if stack and not _idle(frames, stack):
            if not run:
                start = index
            run.append(stack)
            continue
        if run and len(run) * step >= threshold_ms:
            found.append(Stall(start * step, len(run) * step, _top(frames, run),
                               _others(frames, profiles, main, start, len(run))))
        run = []
    return found


def _idle(frames: list[dict[str, Any]], stack: list[int]) -> bool:
    # py-spy names a method by its class: "EpollSelector.select", "Condition.wait".
    return str(frames[stack[-1]]["name"]).rsplit(".", 1)[-1] in _IDLE_LEAVES


def _where(frame: dict[str, Any]) -> str:
    file = str(frame.get("file", ""))
    for mark in _OURS:
        if mark in file:
            file = mark + file.split(mark, 1)[1]
            break
    else:
        file = os.path.basename(file)
    return f"{frame['name']} ({file}:{frame.get('line', '?')})"


def _top(frames: list[dict[str, Any]], run: list[list[int]]) -> list[tuple[str, int]]:
    """The deepest frame of our code in each sample, counted; the leaf if none."""
    counts: Counter[str] = Counter()
    for stack in run:
        ours = [i for i in stack if any(m in str(frames[i].get("file", "")) for m in _OURS)]
        counts[_where(frames[(ours or stack)[-1]])] += 1
        leaf = frames[stack[-1]]
        if ours and ours[-1] != stack[-1]:
            counts["  leaf " + _where(leaf)] += 1
    return counts.most_common(6)


def _others(frames: list[dict[str, Any]], profiles: dict[str, Any], main: dict[str, Any],
            start: int, length: int) -> dict[str, str]:
    """What each other thread was mostly doing during the stall."""
    out = {}
    for name, profile in profiles.items():
        if profile is main:
            continue
        window = [s for s in profile["samples"][start:start + length] if s]
        busy = [s for s in window if not _idle(frames, s)]
        if busy:
            leaf = Counter(_where(frames[s[-1]]) for s in busy).most_common(1)[0][0]
            out[name.split(" ")[-1].strip('"')] = f"{len(busy)} of {length} busy, {leaf}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--ms", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=RATE, help="the rate recorded at")
    parser.add_argument("--thread", default="MainThread",
                        help="whose busy runs: MainThread (the loop), store-writer, ...")
    args = parser.parse_args()
    for path in sorted(args.dir.glob("*.speedscope.json")):
        found = stalls(path, args.ms, args.thread, args.rate)
        print(f"== {path.name.split('.')[0]}: {len(found)} runs of {args.thread} "
              f">= {args.ms:g} ms")
        for stall in sorted(found, key=lambda s: -s.length_ms)[:8]:
            print(f"  at {stall.start_ms / 1000:7.2f} s: {stall.length_ms:6.1f} ms")
            for where, n in stall.frames:
                print(f"      {n:5d}  {where}")
            for thread, what in stall.others.items():
                print(f"      other thread {thread}: {what}")


if __name__ == "__main__":
    main()
