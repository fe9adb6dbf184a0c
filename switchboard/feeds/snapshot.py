"""What a poll feed showed last time, and what changed since.

Status pages and CAP indexes drop an item once it is over instead of
marking it resolved, so a key that was firing and is gone is resolved.
Items that are still there and unchanged are not emitted again: a feed
polled every minute would otherwise repeat every open incident each minute.

The snapshot lives in memory only. After a restart the first poll emits
everything present once (firing and resolved alike), which lets an
incident that ended while the daemon was down be resolved; an item that
vanished during the downtime is not noticed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime

from switchboard.feeds.signal import Signal

GONE_NOTE = "no longer in the feed"


@dataclass(frozen=True)
class Snapshot:
    digests: dict[str, str] = field(default_factory=dict)  # every key present
    firing: dict[str, Signal] = field(default_factory=dict)

    def diff(self, signals: list[Signal], now: datetime) -> tuple[list[Signal], Snapshot]:
        """Signals to emit (new, changed, gone) and the snapshot to keep once they are."""
        current = latest_per_key(signals)
        digests = {key: digest(signal) for key, signal in current.items()}
        emit = [signal for key, signal in current.items()
                if self.digests.get(key) != digests[key]]
        emit += [replace(signal, status="resolved", at=now,
                         annotations={**signal.annotations, "resolution": GONE_NOTE})
                 for key, signal in self.firing.items() if key not in current]
        firing = {key: s for key, s in current.items() if s.status == "firing"}
        return emit, Snapshot(digests, firing)


def latest_per_key(signals: list[Signal]) -> dict[str, Signal]:
    """One signal per key: the newest, later in the payload on a tie.

    A CAP index can hold an alert and its Update or Cancel at once; the
    newer message is the one that stands.
    """
    out: dict[str, Signal] = {}
    for signal in signals:
        seen = out.get(signal.key)
        if seen is None or signal.at >= seen.at:
            out[signal.key] = signal
    return out


def digest(signal: Signal) -> str:
    """What counts as a change: status, title and labels (not annotations,
    whose prose some feeds reword on every poll)."""
    canonical = json.dumps([signal.status, signal.title, sorted(signal.labels.items())],
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
