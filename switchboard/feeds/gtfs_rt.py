"""GTFS-realtime service alerts (protobuf `FeedMessage`), polled.

https://gtfs.org/documentation/realtime/reference/#message-alert

One signal per alert entity, keyed by the entity id. Deleted entities and
alerts whose every active period has ended are resolved; an alert whose
periods all lie ahead is left out until it starts. Labels: route_id,
stop_id, agency_id, trip_id (each several values joined with ","), cause and
effect (enum names such as CONSTRUCTION, DETOUR), severity (from
severity_level: INFO minor, WARNING major, SEVERE critical; the enum name is
`native_severity`). The title, description and url are the translation in
the feed's `language` (default `en`; one without a language is the feed's
own and counts as that), else English, else the first.

Incrementality DIFFERENTIAL is read as a full dataset, as almost every
producer sends FULL_DATASET.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError
from google.transit import gtfs_realtime_pb2

from switchboard.feeds.parser import FeedParser, current_time
from switchboard.feeds.payload import MAX_LABEL_CHARS, malformed
from switchboard.feeds.severity import with_severity
from switchboard.feeds.signal import Signal
from switchboard.feeds.translations import choose

KIND = "gtfs-rt"
Alert = gtfs_realtime_pb2.Alert


class GtfsRealtimeParser(FeedParser):
    kind = KIND
    accept = "application/x-protobuf, application/octet-stream;q=0.9, */*;q=0.1"

    def parse(self, body: bytes, headers: Mapping[str, str],
              now: datetime | None = None) -> list[Signal]:
        if not body:
            raise malformed(KIND, "empty body")
        message = gtfs_realtime_pb2.FeedMessage()
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise malformed(KIND, f"not a GTFS-realtime FeedMessage ({exc})") from None
        # Random bytes often decode as *some* protobuf; the required header tells
        # a real feed apart.
        if not message.IsInitialized() or not message.header.gtfs_realtime_version:
            raise malformed(KIND, "not a GTFS-realtime FeedMessage (no header)")
        when = current_time(now)
        at = (datetime.fromtimestamp(message.header.timestamp, UTC)
              if 0 < message.header.timestamp < 2**37 else when)
        signals = (self._signal(entity, at, when) for entity in message.entity
                   if entity.HasField("alert"))
        return [signal for signal in signals if signal is not None]

    def _signal(self, entity: Any, at: datetime, now: datetime) -> Signal | None:
        alert = entity.alert
        state = "resolved" if entity.is_deleted else _period_state(alert, now.timestamp())
        if state == "pending":
            return None
        selectors = list(alert.informed_entity)
        labels = {
            "route_id": _joined([s.route_id for s in selectors]
                                + [s.trip.route_id for s in selectors]),
            "stop_id": _joined(s.stop_id for s in selectors),
            "agency_id": _joined(s.agency_id for s in selectors),
            "trip_id": _joined(s.trip.trip_id for s in selectors),
            "cause": _enum_name(Alert.Cause, alert.cause),
            "effect": _enum_name(Alert.Effect, alert.effect),
        }
        native = (_enum_name(Alert.SeverityLevel, alert.severity_level)
                  if alert.HasField("severity_level") else "")
        if native:
            labels["severity_level"] = native
        language = self.config.language
        notes = {"description": _translation(alert.description_text, language),
                 "url": _translation(alert.url, language)}
        key = _str(entity.id)
        if not key:
            raise malformed(KIND, "an alert entity has no id")
        return Signal(
            source=self.config.id, key=key,
            status="resolved" if state == "ended" or entity.is_deleted else "firing",
            title=_translation(alert.header_text, language) or notes["description"] or key,
            at=at, labels=with_severity(
                KIND, {name: value for name, value in labels.items() if value},
                native if native != "UNKNOWN_SEVERITY" else ""),
            annotations={name: value for name, value in notes.items() if value},
            expires_at=_last_end(alert))


def _period_state(alert: Any, now: float) -> str:
    """"active", "ended" (every period over) or "pending" (none begun yet).

    No period at all means active for as long as it is in the feed; 0 is an
    open start or end.
    """
    periods = list(alert.active_period)
    if not periods:
        return "active"
    if any(p.start <= now and (p.end == 0 or now < p.end) for p in periods):
        return "active"
    if all(p.end != 0 and p.end <= now for p in periods):
        return "ended"
    return "pending"


def _last_end(alert: Any) -> datetime | None:
    ends = [p.end for p in alert.active_period]
    if not ends or 0 in ends or max(ends) >= 2**37:
        return None
    return datetime.fromtimestamp(max(ends), UTC)


def _translation(text: Any, language: str) -> str:
    """The wanted language, else English, else the first; a translation without a
    language is the feed's own, read as the wanted one."""
    chosen = choose(list(text.translation), lambda t: _str(t.language) or language, language)
    return " ".join(_str(chosen.text).split())[:MAX_LABEL_CHARS] if chosen is not None else ""


def _enum_name(enum: Any, value: int) -> str:
    try:
        return str(enum.Name(value))
    except ValueError:
        return str(value)


def _joined(values: Iterable[str | bytes]) -> str:
    return ",".join(dict.fromkeys(text for value in values if (text := _str(value))))[
        :MAX_LABEL_CHARS]


def _str(value: str | bytes) -> str:
    """protobuf hands back bytes for a proto2 string that is not valid UTF-8."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
