"""Atlassian Statuspage JSON API: `/api/v2/incidents/unresolved.json` (or
`incidents.json`, `summary.json`: same `incidents` list), polled.

One signal per incident keyed by its id; resolved and postmortem incidents
are resolved, every other status (investigating, identified, monitoring)
is firing. Labels: impact, incident_status, components (names joined with
","), page (the page's name).

A bad incident refuses the whole payload instead of being skipped: the
poller would read a skipped incident as gone, i.e. resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from switchboard.feeds.parser import FeedParser, current_time
from switchboard.feeds.payload import (
    as_list,
    as_object,
    field,
    load_json,
    loose_list,
    loose_object,
    parse_time,
    scalar_text,
)
from switchboard.feeds.signal import Signal

KIND = "statuspage"
RESOLVED_STATUSES = frozenset({"resolved", "postmortem", "completed"})


class StatuspageParser(FeedParser):
    kind = KIND
    accept = "application/json"

    def parse(self, body: bytes, headers: Mapping[str, str],
              now: datetime | None = None) -> list[Signal]:
        document = as_object(KIND, load_json(KIND, body), "the payload")
        page = scalar_text(loose_object(document.get("page")).get("name"))
        incidents = as_list(KIND, document.get("incidents"), "incidents")
        return [self._signal(as_object(KIND, item, f"incidents[{i}]"), f"incidents[{i}]",
                             page, current_time(now))
                for i, item in enumerate(incidents)]

    def _signal(self, incident: dict[str, Any], what: str, page: str | None,
                now: datetime) -> Signal:
        key = field(KIND, incident, "id", what)
        status = (scalar_text(incident.get("status")) or "").lower()
        components = [scalar_text(loose_object(c).get("name"))
                      for c in loose_list(incident.get("components"))]
        labels = {
            "impact": scalar_text(incident.get("impact")),
            "incident_status": status,
            "components": ",".join(name for name in components if name),
            "page": page,
        }
        latest = loose_object(next(iter(loose_list(incident.get("incident_updates"))), None))
        notes = {"shortlink": scalar_text(incident.get("shortlink")),
                 "latest_update": scalar_text(latest.get("body"))}
        return Signal(
            source=self.config.id, key=key,
            status="resolved" if status in RESOLVED_STATUSES else "firing",
            title=scalar_text(incident.get("name")) or key,
            at=parse_time(incident.get("updated_at")) or now,
            labels={name: value for name, value in labels.items() if value},
            annotations={name: value for name, value in notes.items() if value})
