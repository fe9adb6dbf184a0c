"""Sign-in throttling: repeated failures for a name or from a client slow down.

Each key (a person's name, a client address) may fail `free` times; after
that every further attempt waits an exponentially growing delay after the
last failure (2 s, 4 s, ... capped at `cap`), during which it is refused
without the password even being checked. A success clears the name's count,
not the client's.
Keys forget their failures after `forget` seconds of quiet.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.clock import Clock


@dataclass
class _Failures:
    count: int
    last: float


class Throttle:
    def __init__(self, clock: Clock, free: int = 3, cap: float = 900.0,
                 forget: float = 3600.0, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.free, self.cap, self.forget, self.max_keys = free, cap, forget, max_keys
        self._failures: dict[str, _Failures] = {}

    def wait(self, *keys: str) -> float:
        """Seconds before any of `keys` may try again (0: now)."""
        now = self.clock()
        return max((self._wait(self._failures.get(k), now) for k in keys), default=0.0)

    def _wait(self, entry: _Failures | None, now: float) -> float:
        if entry is None or entry.count < self.free:
            return 0.0
        delay = min(2.0 ** (entry.count - self.free + 1), self.cap)
        return max(0.0, entry.last + delay - now)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        if len(self._failures) >= self.max_keys:
            self._prune(now)
        for key in keys:
            entry = self._failures.get(key)
            if entry is None or now - entry.last > self.forget:
                entry = self._failures[key] = _Failures(0, now)
            entry.count += 1
            entry.last = now

    def succeeded(self, *keys: str) -> None:
        """A right password: the name starts afresh."""
        for key in keys:
            self._failures.pop(key, None)

    def forgive(self, key: str) -> None:
        """Take back one failure (counted before a check that then succeeded). A
        client's other failures stand: its own sign-in does not clear its guesses."""
        entry = self._failures.get(key)
        if entry is not None:
            entry.count -= 1
            if entry.count <= 0:
                del self._failures[key]

    def _prune(self, now: float) -> None:
        # A flood of distinct keys must not grow memory without bound: drop the
        # quiet ones, then the oldest half.
        self._failures = {k: v for k, v in self._failures.items() if now - v.last <= self.forget}
        if len(self._failures) >= self.max_keys:
            keep = sorted(self._failures.items(), key=lambda kv: kv[1].last)
            self._failures = dict(keep[len(keep) // 2:])
