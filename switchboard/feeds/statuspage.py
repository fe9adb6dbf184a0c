"""Atlassian Statuspage JSON API: `/api/v2/incidents/unresolved.json` (or
`incidents.json`, `summary.json`: same `incidents` list), polled.

One signal per incident keyed by its id; resolved and postmortem incidents
are resolved, every other status (investigating, identified, monitoring)
is firing. Labels: impact, incident_status, components (names joined with
","), page (the page's name), severity (impact none/minor minor, major
major, critical critical).

Scheduled maintenance (in `scheduled_maintenances`, as `summary.json` and
`scheduled-maintenances/*.json` give it, or an incident with impact
maintenance or a `scheduled_for`) is labelled `maintenance: "true"`: no
rule declares it unless the rule says `maintenance: true`. Completed
maintenance is resolved.

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
from switchboard.feeds.severity import with_severity
from switchboard.feeds.signal import Signal

KIND = "statuspage"
RESOLVED_STATUSES = frozenset({"resolved", "postmortem", "completed"})
MAINTENANCE_STATUSES = frozenset({"scheduled", "in_progress", "verifying"})


class StatuspageParser(FeedParser):
    kind = KIND
    accept = "application/json"

    def parse(self, body: bytes, headers: Mapping[str, str],
              now: datetime | None = None) -> list[Signal]:
        document = as_object(KIND, load_json(KIND, body), "the payload")
        page = scalar_text(loose_object(document.get("page")).get("name"))
        if "incidents" not in document and "scheduled_maintenances" in document:
            incidents: list[Any] = []
        else:
            incidents = as_list(KIND, document.get("incidents"), "incidents")
        maintenances = (as_list(KIND, document["scheduled_maintenances"],
                                "scheduled_maintenances")
                        if "scheduled_maintenances" in document else [])
        when = current_time(now)
        return [self._signal(as_object(KIND, item, f"{where}[{i}]"), f"{where}[{i}]",
                             page, when)
                for where, items in (("incidents", incidents),
                                     ("scheduled_maintenances", maintenances))
                for i, item in enumerate(items)]

    def _signal(self, incident: dict[str, Any], what: str, page: str | None,
                now: datetime) -> Signal:
        key = field(KIND, incident, "id", what)
        status = (scalar_text(incident.get("status")) or "").lower()
        components = [scalar_text(loose_object(c).get("name"))
                      for c in loose_list(incident.get("components"))]
        impact = scalar_text(incident.get("impact"))
        labels = {
            "impact": impact,
            "incident_status": status,
            "components": ",".join(name for name in components if name),
            "page": page,
        }
        if (what.startswith("scheduled_maintenances") or impact == "maintenance"
                or incident.get("scheduled_for") or status in MAINTENANCE_STATUSES):
            labels["maintenance"] = "true"
            impact = impact if impact and impact != "none" else "maintenance"
        latest = loose_object(next(iter(loose_list(incident.get("incident_updates"))), None))
        notes = {"shortlink": scalar_text(incident.get("shortlink")),
                 "latest_update": scalar_text(latest.get("body"))}
        return Signal(
            source=self.config.id, key=key,
            status="resolved" if status in RESOLVED_STATUSES else "firing",
            title=scalar_text(incident.get("name")) or key,
            at=parse_time(incident.get("updated_at")) or now,
            labels=with_severity(KIND, {name: value for name, value in labels.items() if value},
                                 impact),
            annotations={name: value for name, value in notes.items() if value})
