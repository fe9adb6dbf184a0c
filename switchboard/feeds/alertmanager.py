"""Alertmanager webhook receiver (payload version "4"), one signal per alert.

Each signal carries the group's `groupKey` and status: rules declare one
incident per group unless they say `per: alert`. An alert without its own
`status` (older senders, some relays) takes the group's.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from switchboard.feeds.auth import check_bearer
from switchboard.feeds.parser import FeedParser, current_time
from switchboard.feeds.payload import (
    as_list,
    as_object,
    load_json,
    malformed,
    parse_time,
    scalar_text,
    string_map,
)
from switchboard.feeds.severity import with_severity
from switchboard.feeds.signal import Signal, Status

KIND = "alertmanager"


class AlertmanagerParser(FeedParser):
    kind = KIND
    push = True

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> None:
        check_bearer(self.config.id, headers, self.config.token_sha256)

    def parse(self, body: bytes, headers: Mapping[str, str],
              now: datetime | None = None) -> list[Signal]:
        group = as_object(KIND, load_json(KIND, body), "the payload")
        if group.get("version") != "4":
            raise malformed(KIND, f"version must be \"4\", not {group.get('version')!r}")
        common_labels = string_map(KIND, group.get("commonLabels"), "commonLabels")
        common_notes = string_map(KIND, group.get("commonAnnotations"), "commonAnnotations")
        alerts = as_list(KIND, group.get("alerts"), "alerts")
        group_status = _group_status(group.get("status"))
        group_key = scalar_text(group.get("groupKey"))
        signals = [self._signal(i, alert, common_labels, common_notes, current_time(now),
                                group_status) for i, alert in enumerate(alerts)]
        if group_key is None:
            return signals
        return [replace(signal, group=group_key, group_status=group_status or signal.status)
                for signal in signals]

    def _signal(self, i: int, item: Any, common_labels: dict[str, str],
                common_notes: dict[str, str], now: datetime,
                group_status: Status | None) -> Signal:
        what = f"alerts[{i}]"
        alert = as_object(KIND, item, what)
        own = alert.get("status")
        status = _status(own if own is not None or group_status is None else group_status,
                         what)
        labels = {**common_labels, **string_map(KIND, alert.get("labels"), f"{what}.labels")}
        notes = {**common_notes,
                 **string_map(KIND, alert.get("annotations"), f"{what}.annotations")}
        if url := scalar_text(alert.get("generatorURL")):
            notes.setdefault("generator_url", url)
        key = scalar_text(alert.get("fingerprint")) or _fingerprint(labels)
        title = notes.get("summary") or notes.get("title") or labels.get("alertname") or key
        when = parse_time(alert.get("endsAt" if status == "resolved" else "startsAt"))
        return Signal(source=self.config.id, key=key, status=status, title=title,
                      at=when or now, labels=with_severity(KIND, labels, labels.get("severity")),
                      annotations=notes)


def _group_status(value: Any) -> Status | None:
    return value if value in ("firing", "resolved") else None


def _status(value: Any, what: str) -> Status:
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise malformed(KIND, f"{what}.status must be \"firing\" or \"resolved\", not {value!r}")


def _fingerprint(labels: dict[str, str]) -> str:
    """Stand-in for a missing fingerprint: stable for the same label set, as
    Alertmanager's own is, so repeats still update one incident."""
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]
